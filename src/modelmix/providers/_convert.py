"""Helpers shared by adapters that translate OpenAI chat requests to another wire protocol
(Anthropic Messages, Gemini generateContent) and build OpenAI-shaped results back.

The adapters own their protocol's shapes; this module holds only what is the same for
all of them: reading OpenAI messages, tools and stop sequences, and emitting stream
chunks in the order OpenAI sends them (role, deltas, finish, usage).
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from dataclasses import dataclass, field
from typing import Any

from modelmix.errors import ProviderBadRequest, ProviderError
from modelmix.protocol import (
    ChatChunk,
    ChatMessage,
    ChunkChoice,
    Delta,
    Usage,
    new_completion_id,
    now,
)

__all__ = [
    "ChunkBuilder",
    "DataURL",
    "ErrorTranslator",
    "FunctionTool",
    "b64decode",
    "bad_request",
    "dumps",
    "forced_function",
    "function_tools",
    "make_usage",
    "new_tool_call_id",
    "parse_data_url",
    "stop_sequences",
    "system_text",
    "tool_call_arguments",
    "tool_names_by_id",
    "tool_result_object",
]

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*),(?P<data>.*)$",
                       re.DOTALL)


@dataclass(frozen=True)
class DataURL:
    """A ``data:`` URL (RFC 2397) with base64 payload: MIME type and the base64 text."""

    mime_type: str
    base64: str


@dataclass(frozen=True)
class FunctionTool:
    """An OpenAI ``{"type": "function", "function": {...}}`` tool, unpacked."""

    name: str
    description: str | None
    parameters: dict[str, Any]


def bad_request(deployment: str, message: str) -> ProviderBadRequest:
    """A :class:`ProviderBadRequest` for a request this adapter cannot translate."""
    return ProviderBadRequest(f"{deployment}: {message}", deployment=deployment)


def b64decode(text: str, deployment: str) -> bytes:
    """Decode base64 text (a data URL's payload, a thought signature...).

    Raises:
        ProviderBadRequest: ``text`` is not valid base64.
    """
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise bad_request(deployment, "invalid base64 data") from exc


def parse_data_url(url: str, deployment: str) -> DataURL | None:
    """Split a base64 ``data:`` URL; None when ``url`` is not a data URL.

    Raises:
        ProviderBadRequest: a data URL that is not base64-encoded.
    """
    if not url.startswith("data:"):
        return None
    match = _DATA_URL.match(url)
    if match is None or ";base64" not in match["params"]:
        raise bad_request(deployment, "image data URLs must be base64-encoded")
    return DataURL(match["mime"] or "application/octet-stream", match["data"].strip())


def system_text(messages: list[ChatMessage]) -> str:
    """The ``system`` and ``developer`` messages' text, joined by blank lines."""
    parts = [m.text() for m in messages if m.role in ("system", "developer")]
    return "\n\n".join(p for p in parts if p)


def stop_sequences(stop: str | list[str] | None) -> list[str] | None:
    """OpenAI ``stop`` (a string or up to 4 strings) as a list, or None when empty."""
    if stop is None:
        return None
    items = [stop] if isinstance(stop, str) else list(stop)
    return [s for s in items if s] or None


def function_tools(tools: list[dict[str, Any]] | None) -> list[FunctionTool]:
    """The function tools of an OpenAI ``tools`` list (other tool types are skipped)."""
    out: list[FunctionTool] = []
    for tool in tools or []:
        fn = tool.get("function")
        if tool.get("type", "function") != "function" or not isinstance(fn, dict):
            continue
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        out.append(FunctionTool(str(fn.get("name", "")), fn.get("description"), params))
    return out


def forced_function(tool_choice: str | dict[str, Any] | None) -> str | None:
    """The function name when ``tool_choice`` forces one specific function, else None."""
    if isinstance(tool_choice, dict):
        fn = tool_choice.get("function")
        if isinstance(fn, dict) and fn.get("name"):
            return str(fn["name"])
    return None


def tool_call_arguments(call: dict[str, Any], deployment: str) -> dict[str, Any]:
    """The parsed JSON ``function.arguments`` of an assistant tool call.

    Raises:
        ProviderBadRequest: the arguments are not a JSON object.
    """
    raw = (call.get("function") or {}).get("arguments") or "{}"
    try:
        args = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError as exc:
        raise bad_request(deployment, f"tool call {call.get('id')!r} arguments are not "
                                      "valid JSON") from exc
    if not isinstance(args, dict):
        raise bad_request(deployment, f"tool call {call.get('id')!r} arguments must be a "
                                      "JSON object")
    return args


def tool_names_by_id(messages: list[ChatMessage]) -> dict[str, str]:
    """Map each assistant tool call id to its function name (tool results carry only ids)."""
    names: dict[str, str] = {}
    for msg in messages:
        for call in msg.tool_calls or []:
            name = (call.get("function") or {}).get("name")
            if call.get("id") and name:
                names[str(call["id"])] = str(name)
    return names


def tool_result_object(text: str) -> dict[str, Any]:
    """A tool message's content as a JSON object; anything else goes under ``output``."""
    try:
        value: Any = json.loads(text)
    except ValueError:
        value = text
    return value if isinstance(value, dict) else {"output": value}


def dumps(value: Any) -> str:
    """Compact JSON text, as OpenAI sends tool call arguments."""
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def new_tool_call_id() -> str:
    """A tool call id shaped like OpenAI's (``call_`` plus 24 hex characters)."""
    return f"call_{uuid.uuid4().hex[:24]}"


def make_usage(prompt: int | None, completion: int | None, total: int | None = None) -> Usage:
    """A :class:`Usage` from token counts; ``total`` defaults to their sum."""
    p, c = prompt or 0, completion or 0
    return Usage(prompt_tokens=p, completion_tokens=c, total_tokens=total or p + c)


@dataclass
class ChunkBuilder:
    """Builds the ``chat.completion.chunk`` objects of one stream (shared id and model)."""

    model: str
    id: str = field(default_factory=new_completion_id)
    created: int = field(default_factory=now)

    def _chunk(self, delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(id=self.id, created=self.created, model=self.model,
                         choices=[ChunkChoice(delta=delta, finish_reason=finish)])

    def role(self) -> ChatChunk:
        """The first chunk: ``delta.role == "assistant"`` and empty content."""
        return self._chunk(Delta(role="assistant", content=""))

    def content(self, text: str) -> ChatChunk:
        return self._chunk(Delta(content=text))

    def tool_call(self, index: int, *, call_id: str | None = None, name: str | None = None,
                  arguments: str = "", extra: dict[str, Any] | None = None) -> ChatChunk:
        """A tool call delta: the first one for an index carries id, type and name."""
        call: dict[str, Any] = {"index": index}
        if call_id is not None:
            call.update(id=call_id, type="function")
        fn: dict[str, Any] = {"arguments": arguments}
        if name is not None:
            fn = {"name": name, **fn}
        call["function"] = fn
        if extra:
            call.update(extra)
        return self._chunk(Delta(tool_calls=[call]))

    def finish(self, reason: str) -> ChatChunk:
        return self._chunk(Delta(), finish=reason)

    def usage(self, usage: Usage) -> ChatChunk:
        """The last chunk: no choices, only usage (OpenAI's ``include_usage`` shape)."""
        return ChatChunk(id=self.id, created=self.created, model=self.model, choices=[],
                         usage=usage)


class ErrorTranslator:
    """Base for an adapter's one place that turns SDK and transport exceptions into the
    :class:`~modelmix.errors.ProviderError` taxonomy (``raise ... from exc``).

    Use as ``with translator:`` around SDK calls; subclasses implement :meth:`map`.
    ``mid_stream`` is set by a stream once it has yielded: an upstream error after that
    point breaks a started answer, whatever status it carries.

    Example::

        with _Translate(deployment.name):
            response = await sdk.create(...)
    """

    def __init__(self, deployment: str):
        self.deployment = deployment
        self.mid_stream = False

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, ProviderError):
            return None
        error = self.map(exc)
        if error is not None:
            raise error from exc
        return None

    def map(self, exc: BaseException) -> ProviderError | None:
        """The modelmix error for ``exc``, or None to let it propagate unchanged."""
        raise NotImplementedError
