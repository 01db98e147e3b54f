"""Consistent placeholders for sensitive values, and their restoration.

One :class:`Pseudonymizer` belongs to one request and is never shared: it maps each
detected raw value to a placeholder such as ``<PERSON_1>`` (the same value always gets
the same placeholder), replaces values in outgoing text and restores them in answers.
:class:`StreamRestorer` restores a text that arrives in pieces, holding back only what
could still become a placeholder, so a placeholder split across stream chunks is
restored too; :class:`ChunkRestorer` applies it to OpenAI stream chunks.

Example::

    p = Pseudonymizer()
    text = p.replace_spans("Mail bob@x.org", [Entity("EMAIL_ADDRESS", 5, 14)])
    text                               # 'Mail <EMAIL_ADDRESS_1>'
    p.restore("Wrote <EMAIL_ADDRESS_1>")  # 'Wrote bob@x.org'
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from modelmix.guard._base import Entity
from modelmix.protocol import ChatChunk, ChatResponse

__all__ = ["PLACEHOLDER", "ChunkRestorer", "Pseudonymizer", "StreamRestorer"]

#: What a placeholder looks like: ``<`` TYPE ``_`` number ``>``; ``<`` only comes first.
PLACEHOLDER = re.compile(r"<([A-Z][A-Z0-9_]*)_(\d+)>")


class Pseudonymizer:
    """Placeholders for one request's sensitive values.

    Args:
        avoid: text the request already holds; placeholders that occur in it literally
            are skipped, so restoring never rewrites the caller's own text.
    """

    def __init__(self, avoid: str = ""):
        self._avoid = avoid
        self._to_placeholder: dict[tuple[str, str], str] = {}
        self._by_value: dict[str, str] = {}
        self._to_raw: dict[str, str] = {}
        self._counts: dict[str, int] = {}
        self._pattern: re.Pattern[str] | None = None

    def __repr__(self) -> str:  # never show raw values
        return f"Pseudonymizer({len(self._to_raw)} placeholders)"

    @property
    def placeholders(self) -> dict[str, str]:
        """Placeholder -> entity type (no raw values)."""
        return {ph: etype for (etype, _), ph in self._to_placeholder.items()}

    def __len__(self) -> int:
        return len(self._to_raw)

    def placeholder(self, entity_type: str, raw: str) -> str:
        """The placeholder of ``raw`` (created on first sight)."""
        key = (entity_type, raw)
        found = self._to_placeholder.get(key) or self._by_value.get(raw)
        if found is not None:
            return found
        n = self._counts.get(entity_type, 0)
        while True:
            n += 1
            candidate = f"<{entity_type}_{n}>"
            if candidate not in self._avoid:
                break
        self._counts[entity_type] = n
        self._to_placeholder[key] = self._by_value[raw] = candidate
        self._to_raw[candidate] = raw
        self._pattern = None
        return candidate

    def learn(self, text: str, entities: Iterable[Entity]) -> None:
        """Give every entity of ``text`` a placeholder without replacing anything."""
        for ent in entities:
            if ent.end > ent.start:
                self.placeholder(ent.type, text[ent.start:ent.end])

    def replace_spans(self, text: str, entities: Sequence[Entity],
                      types: frozenset[str] | None = None) -> str:
        """``text`` with each entity span (of ``types``; None: all) replaced, then every
        other occurrence of a known value of those types replaced too."""
        chosen = [e for e in entities if e.end > e.start and (types is None or e.type in types)]
        out: list[str] = []
        pos = 0
        for ent in sorted(chosen, key=lambda e: e.start):
            if ent.start < pos:
                continue  # overlapping span: the first one wins
            out.append(text[pos:ent.start])
            out.append(self.placeholder(ent.type, text[ent.start:ent.end]))
            pos = ent.end
        out.append(text[pos:])
        return self.replace_known("".join(out), types)

    def replace_known(self, text: str, types: frozenset[str] | None = None) -> str:
        """Replace every known raw value (of ``types``; None: all) found in ``text``,
        longest first, where it does not run into surrounding letters or digits."""
        if not self._to_raw or not text:
            return text
        if types is None:
            pattern = self._compiled()
        else:
            raws = [raw for (etype, raw) in self._to_placeholder if etype in types]
            if not raws:
                return text
            pattern = _pattern_for(raws)
        return pattern.sub(lambda m: self._by_value[m.group(0)], text)

    def _compiled(self) -> re.Pattern[str]:
        if self._pattern is None:
            self._pattern = _pattern_for(list(self._by_value))
        return self._pattern

    def restore(self, text: str) -> str:
        """``text`` with this request's placeholders turned back into raw values;
        other placeholder-like text is left alone."""
        if not self._to_raw or "<" not in text:
            return text
        return PLACEHOLDER.sub(lambda m: self._to_raw.get(m.group(0), m.group(0)), text)

    def could_start(self, tail: str) -> bool:
        """Whether ``tail`` (starting with ``<``) may be the start of a placeholder."""
        return any(len(tail) < len(ph) and ph.startswith(tail) for ph in self._to_raw)

    def restore_response(self, response: ChatResponse) -> ChatResponse:
        """A copy of ``response`` with contents and tool-call arguments restored."""
        if not self._to_raw:
            return response
        out = response.model_copy(deep=True)
        for choice in out.choices:
            msg = choice.message
            if msg.content:
                msg.content = self.restore(msg.content)
            for call in msg.tool_calls or ():
                fn = call.get("function")
                if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
                    fn["arguments"] = self.restore(fn["arguments"])
        return out


def _pattern_for(raws: list[str]) -> re.Pattern[str]:
    parts = []
    for raw in sorted(set(raws), key=len, reverse=True):
        head = r"(?<!\w)" if raw[:1].isalnum() else ""
        tail = r"(?!\w)" if raw[-1:].isalnum() else ""
        parts.append(f"{head}{re.escape(raw)}{tail}")
    return re.compile("|".join(parts))


class StreamRestorer:
    """Restores placeholders in a text that arrives in pieces.

    ``feed`` returns what can be shown now; text that could still be the start of a
    placeholder waits for the next piece. ``flush`` returns what is left at the end.
    """

    def __init__(self, pseudonymizer: Pseudonymizer):
        self._p = pseudonymizer
        self._held = ""
        self._longest = max((len(ph) for ph in pseudonymizer.placeholders), default=0)

    def feed(self, piece: str) -> str:
        text = self._held + piece
        cut = self._hold_from(text)
        self._held = text[cut:]
        return self._p.restore(text[:cut])

    def flush(self) -> str:
        text, self._held = self._held, ""
        return self._p.restore(text)

    def _hold_from(self, text: str) -> int:
        """Index of the earliest ``<`` after which the rest may begin a placeholder."""
        start = max(0, len(text) - self._longest + 1)
        i = text.find("<", start)
        while i != -1:
            if self._p.could_start(text[i:]):
                return i
            i = text.find("<", i + 1)
        return len(text)


@dataclass(slots=True)
class ChunkRestorer:
    """Restores a stream of chunks: the content of each choice and the arguments of
    each tool call, each with its own :class:`StreamRestorer`."""

    pseudonymizer: Pseudonymizer
    _texts: dict[tuple[int, int], StreamRestorer] = field(default_factory=dict)

    def _restorer(self, choice: int, tool: int) -> StreamRestorer:
        key = (choice, tool)
        found = self._texts.get(key)
        if found is None:
            found = self._texts[key] = StreamRestorer(self.pseudonymizer)
        return found

    def feed(self, chunk: ChatChunk) -> ChatChunk:
        """``chunk`` with restored text; held-back text is released at finish."""
        if not chunk.choices:
            return chunk
        out = chunk.model_copy(deep=True)
        for choice in out.choices:
            delta = choice.delta
            if delta.content:
                delta.content = self._restorer(choice.index, -1).feed(delta.content)
            for call in delta.tool_calls or ():
                _feed_call(call, self._restorer(choice.index, _tool_index(call)))
            if choice.finish_reason is not None:
                self._release(choice.index, delta)
        return out

    def _release(self, index: int, delta: Any) -> None:
        for (choice, tool), restorer in sorted(self._texts.items()):
            if choice != index:
                continue
            rest = restorer.flush()
            if not rest:
                continue
            if tool == -1:
                delta.content = (delta.content or "") + rest
            else:
                delta.tool_calls = [*(delta.tool_calls or []),
                                    {"index": tool, "function": {"arguments": rest}}]

    def leftover(self, last: ChatChunk | None) -> ChatChunk | None:
        """A chunk carrying text still held when the stream ended without a finish
        reason (None when nothing is held)."""
        choices: list[dict[str, Any]] = []
        for (choice, tool), restorer in sorted(self._texts.items()):
            rest = restorer.flush()
            if not rest:
                continue
            delta: dict[str, Any] = ({"content": rest} if tool == -1 else
                                     {"tool_calls": [{"index": tool,
                                                      "function": {"arguments": rest}}]})
            choices.append({"index": choice, "delta": delta})
        if not choices or last is None:
            return None
        return ChatChunk.model_validate({"id": last.id, "created": last.created,
                                         "model": last.model, "choices": choices})


def _tool_index(call: dict[str, Any]) -> int:
    index = call.get("index", 0)
    return index if isinstance(index, int) else 0


def _feed_call(call: dict[str, Any], restorer: StreamRestorer) -> None:
    fn = call.get("function")
    if isinstance(fn, dict) and isinstance(fn.get("arguments"), str):
        fn["arguments"] = restorer.feed(fn["arguments"])
