"""Server-sent events exactly as OpenAI sends them for chat completion streams."""

from __future__ import annotations

from typing import Any

import orjson

from modelmix.protocol._chat import ChatChunk, ChatResponse

__all__ = ["DONE_EVENT", "chunk_event", "error_event", "response_json"]

#: The stream terminator OpenAI sends.
DONE_EVENT = b"data: [DONE]\n\n"


def chunk_to_dict(chunk: ChatChunk, include_usage: bool) -> dict[str, Any]:
    """The chunk as OpenAI shapes it: ``delta`` holds only the fields present, and
    ``usage`` appears (null until the last chunk) only when the client asked for it."""
    data = chunk.model_dump()
    for choice in data["choices"]:
        choice["delta"] = {k: v for k, v in choice["delta"].items() if v is not None}
    if include_usage:
        data["usage"] = data.get("usage")
    else:
        data.pop("usage", None)
    return data


def chunk_event(chunk: ChatChunk, include_usage: bool) -> bytes:
    """One ``data: {...}\\n\\n`` event."""
    return b"data: " + orjson.dumps(chunk_to_dict(chunk, include_usage)) + b"\n\n"


def error_event(body: dict[str, Any]) -> bytes:
    """A mid-stream error event (``data: {"error": {...}}``), as OpenAI sends one."""
    return b"data: " + orjson.dumps(body) + b"\n\n"


def response_json(response: ChatResponse) -> bytes:
    return orjson.dumps(response.model_dump())
