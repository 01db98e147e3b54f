"""The ``json-schema`` verifier: the answer must hold JSON that a JSON Schema accepts.

The JSON is taken from the whole answer, else the first fenced code block that parses
(```` ```json ... ``` ````), else the first balanced ``{...}`` or ``[...]`` in the text (not
with ``strict: true``). Validation is the ``jsonschema`` library's, for the draft the
schema declares (``$schema``; default the latest); the schema is checked once, when the
verifier is built, and may only ``$ref`` into itself (nothing is fetched). A failed check
names the JSON path of the most relevant error (``jsonschema``'s ``best_match``), and
:func:`repair_prompt` turns it into a message a live runtime can send back to the model
for one repair attempt.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, ClassVar

from modelmix.errors import ConfigError
from modelmix.routing.cascade._base import Check, Verifier, bool_option, check_options

__all__ = ["JsonSchemaVerifier", "extract_json", "repair_prompt"]

#: Longest answer searched for embedded JSON (characters); longer ones are cut.
MAX_SCAN = 1_000_000
#: Opening brackets tried when looking for embedded JSON.
MAX_CANDIDATES = 32
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_-]*)[ \t]*\n(.*?)```", re.DOTALL)
_NOT_FOUND = object()


def _loads(text: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        return _NOT_FOUND


def _bracket_pairs(text: str) -> list[tuple[int, int]]:
    """(start, end) of every balanced ``{...}`` / ``[...]`` span, by start, in one pass
    that skips JSON strings (so a hostile ``[[[[...`` costs linear time)."""
    pairs: list[tuple[int, int]] = []
    stack: list[int] = []
    in_string = escaped = False
    for i, c in enumerate(text):
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = bool(stack)
        elif c in "{[":
            stack.append(i)
        elif c in "}]" and stack:
            pairs.append((stack.pop(), i + 1))
    return sorted(pairs)


def _embedded(text: str) -> Iterator[str]:
    """Balanced ``{...}`` / ``[...]`` candidates, first opener first."""
    for start, end in _bracket_pairs(text)[:MAX_CANDIDATES]:
        yield text[start:end]


def extract_json(answer: str, *, strict: bool = False) -> tuple[Any, str] | None:
    """The JSON value in ``answer`` and where it was found (``"whole answer"``,
    ``"fenced block"``, ``"embedded"``); None when there is none. ``strict``: only the
    whole answer or a fenced block."""
    text = answer[:MAX_SCAN]
    value = _loads(text.strip())
    if value is not _NOT_FOUND:
        return value, "whole answer"
    for m in _FENCE.finditer(text):
        value = _loads(m.group(2).strip())
        if value is not _NOT_FOUND:
            return value, "fenced block"
    if strict:
        return None
    for candidate in _embedded(text):
        value = _loads(candidate)
        if value is not _NOT_FOUND:
            return value, "embedded"
    return None


def _local_refs(node: Any, path: str = "$") -> Iterator[tuple[str, str]]:
    """Every ``$ref`` of a schema with where it is, e.g. ``("$.properties.a", "#/$defs/x")``."""
    if isinstance(node, Mapping):
        ref = node.get("$ref")
        if isinstance(ref, str):
            yield path, ref
        for key, value in node.items():
            yield from _local_refs(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _local_refs(value, f"{path}[{i}]")


def _pointer(schema: Any, ref: str) -> bool:
    """Whether the local reference ``#/a/b`` points into ``schema``."""
    node = schema
    for raw in ref[1:].lstrip("/").split("/") if ref != "#" else []:
        part = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, Mapping) and part in node:
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return False
    return True


def _validator(schema: Any, formats: bool) -> Any:
    """A ``jsonschema`` validator for ``schema``. Raises ConfigError when it is no schema."""
    from jsonschema import FormatChecker, SchemaError, validators

    where = "verifier 'json-schema': option 'schema'"
    if not isinstance(schema, Mapping | bool):
        raise ConfigError(f"{where} must be a JSON Schema object, got {type(schema).__name__}")
    cls = validators.validator_for(schema)
    try:
        cls.check_schema(schema)
    except SchemaError as exc:
        raise ConfigError(f"{where} is not a valid JSON Schema at {exc.json_path}: "
                          f"{exc.message}") from None
    for path, ref in _local_refs(schema):
        if not ref.startswith("#") or not _pointer(schema, ref):
            raise ConfigError(f"{where}: $ref {ref!r} at {path} does not point into the "
                              "schema (only local references, nothing is fetched)")
    return cls(schema, format_checker=FormatChecker() if formats else None)


def _describe(error: Any) -> str:
    message = str(error.message)
    return message if len(message) <= 200 else message[:197] + "..."


class JsonSchemaVerifier(Verifier):
    """Accepts an answer whose JSON the schema validates (see the module doc).

    Score: 0.0 valid; 1.0 no JSON found; ``0.5 + 0.1 * errors`` (at most 1.0) for JSON the
    schema rejects.

    Example::

        v = JsonSchemaVerifier.from_options({"schema": {"type": "object",
                                                        "required": ["qty"]}})
        v.check("", '{"qty": 3}').ok           # True
        v.check("", '{"qty": "x"}')            # ok=False, "... at $.qty: ..."
    """

    name: ClassVar[str] = "json-schema"
    OPTIONS: ClassVar[tuple[str, ...]] = ("schema", "strict", "check_formats")

    def __init__(self, schema: Mapping[str, Any] | bool, *, strict: bool = False,
                 check_formats: bool = False) -> None:
        self.schema = schema
        self.strict = strict
        self._validator = _validator(schema, check_formats)

    def __repr__(self) -> str:
        return f"JsonSchemaVerifier(strict={self.strict}, schema={json.dumps(self.schema)[:60]})"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> JsonSchemaVerifier:
        """Options: ``schema`` (required), ``strict``, ``check_formats`` (booleans).

        Raises:
            ConfigError: no schema, a schema ``jsonschema`` rejects, a non-local ``$ref``.
        """
        check_options(cls.name, options, cls.OPTIONS)
        if "schema" not in options:
            raise ConfigError("verifier 'json-schema': option 'schema' is required (a JSON "
                              "Schema object)")
        return cls(options["schema"], strict=bool_option(cls.name, options, "strict", False),
                   check_formats=bool_option(cls.name, options, "check_formats", False))

    def check(self, prompt: str, answer: str) -> Check:
        """Extract the JSON of ``answer`` and validate it (``prompt`` is not read)."""
        from referencing.exceptions import Unresolvable

        found = extract_json(answer, strict=self.strict)
        if found is None:
            where = "the answer or a fenced block" if self.strict else "the answer"
            return Check(ok=False, score=1.0, reason=f"no JSON found in {where}")
        value, where = found
        try:
            errors = list(self._validator.iter_errors(value))
        except (Unresolvable, RecursionError) as exc:
            return Check(ok=False, score=1.0, reason=f"cannot validate: {exc}")
        if not errors:
            return Check(ok=True, score=0.0, reason=f"valid JSON ({where})")
        from jsonschema.exceptions import best_match

        first = best_match(errors)
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        return Check(ok=False, score=min(1.0, 0.5 + 0.1 * len(errors)),
                     reason=f"invalid JSON at {first.json_path}: {_describe(first)}{more}")

    def repair_prompt(self, answer: str, check: Check) -> str:
        """:func:`repair_prompt` with this verifier's schema."""
        return repair_prompt(answer, check, schema=self.schema)


def repair_prompt(answer: str, check: Check, *,
                  schema: Mapping[str, Any] | bool | None = None) -> str:
    """The message a runtime sends after a failed check, for one repair attempt.

    It states why the answer was refused (``check.reason``) and asks for the corrected
    JSON only when JSON was wanted (a ``schema``, or a reason about JSON), else for the
    corrected answer; with ``schema`` it includes the schema. The answer itself is not repeated:
    the runtime sends it back as the assistant turn before this message.

    Example::

        fixed = client.chat(messages + [{"role": "assistant", "content": answer},
                                        {"role": "user", "content": repair_prompt(answer, c)}])
    """
    lines = [f"Your previous answer was not accepted: {check.reason}."]
    wants_json = schema is not None or "JSON" in check.reason
    if wants_json and extract_json(answer) is not None and extract_json(
            answer, strict=True) is None:
        lines.append("Put the JSON alone in your reply, with no text around it.")
    if schema is not None:
        lines.append("The JSON must match this JSON Schema:")
        lines.append(json.dumps(schema, indent=1, sort_keys=True))
    lines.append("Reply with only the corrected JSON." if wants_json else
                 "Correct the answer and reply with the whole corrected answer.")
    return "\n".join(lines)
