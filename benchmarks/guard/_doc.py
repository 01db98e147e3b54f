"""Building texts with gold entity spans for the guard corpus."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Doc", "parse_marked"]


@dataclass
class Doc:
    """A text under construction; ``add_entity`` records the gold span of what it appends."""

    parts: list[str] = field(default_factory=list)
    entities: list[dict[str, Any]] = field(default_factory=list)
    tags: set[str] = field(default_factory=set)
    length: int = 0

    def add(self, text: str) -> Doc:
        self.parts.append(text)
        self.length += len(text)
        return self

    def add_entity(self, kind: str, value: str) -> Doc:
        self.entities.append({"type": kind, "start": self.length, "end": self.length + len(value)})
        return self.add(value)

    def add_json_string(self, kind: str | None, value: str) -> Doc:
        """``value`` as a JSON string literal; the gold span is its escaped content."""
        literal = json.dumps(value, ensure_ascii=False)
        self.add('"')
        if kind:
            self.add_entity(kind, literal[1:-1])
        else:
            self.add(literal[1:-1])
        return self.add('"')

    def extend(self, other: Doc) -> Doc:
        for entity in other.entities:
            self.entities.append({**entity, "start": entity["start"] + self.length,
                                  "end": entity["end"] + self.length})
        self.tags |= other.tags
        return self.add("".join(other.parts))

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def record(self, ident: str, label: str) -> dict[str, Any]:
        text = self.text
        for entity in self.entities:
            assert 0 <= entity["start"] < entity["end"] <= len(text), (ident, entity)
        return {"id": ident, "label": label, "tags": sorted(self.tags), "text": text,
                "entities": sorted(self.entities, key=lambda e: e["start"])}


_MARK = re.compile(r"\[\[([A-Z_]+)\|(.*?)\]\]")


def parse_marked(line: str) -> Doc:
    """A hand-written line where ``[[TYPE|value]]`` marks a gold entity; ``\\n`` is a newline."""
    doc = Doc()
    line = line.replace("\\n", "\n")
    pos = 0
    for match in _MARK.finditer(line):
        doc.add(line[pos:match.start()])
        doc.add_entity(match.group(1), match.group(2))
        pos = match.end()
    doc.add(line[pos:])
    return doc
