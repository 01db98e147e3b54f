"""Every free text of a chat request, in a fixed order, and the request rebuilt with each
text mapped: how the guard reads what a request would carry upstream and rewrites it with
placeholders. Keys of user data (metadata, schemas, extra fields) count as texts too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelmix.protocol import ChatRequest

__all__ = ["TextMap", "request_texts", "rewrite"]

#: Top-level request fields that carry no free text (numbers, flags, the model name). All
#: others are scanned whole, keys included: ``tools`` (names, descriptions, schemas and
#: their property names), ``tool_choice``, ``response_format``, ``stop``, ``user``,
#: ``metadata``, ``logit_bias`` and any extra field: callers put identifiers anywhere.
_NO_TEXT = frozenset({
    "model", "messages", "stream", "stream_options", "max_tokens", "max_completion_tokens",
    "temperature", "top_p", "n", "seed", "presence_penalty", "frequency_penalty",
    "logprobs", "top_logprobs", "parallel_tool_calls", "timeout",
})
#: Message and part fields that carry no free text (media is not scanned). A message's
#: ``name``, tool-call ids and function names are scanned.
_NO_TEXT_IN_MESSAGE = frozenset({"role", "type", "image_url", "input_audio", "file"})
_NO_TEXT_IN_CALL = frozenset({"type", "index"})
#: Keys of the OpenAI request shapes and JSON Schema: their values are scanned, the keys
#: themselves (fixed words) need not be.
_KNOWN_KEYS = frozenset({
    "content", "text", "name", "tool_calls", "tool_call_id", "function", "function_call",
    "arguments", "id", "description", "parameters", "properties", "required", "items",
    "enum", "json_schema", "schema", "strict", "additionalProperties", "anyOf", "oneOf",
    "allOf", "default", "title", "format", "minimum", "maximum", "pattern", "const",
})

TextMap = Callable[[str], str]


def _walk(value: Any, fn: TextMap, skip: frozenset[str] = frozenset()) -> Any:
    """``value`` (JSON-like) with every string passed through ``fn``, dictionary keys
    included (except the ``skip`` keys, whose values are kept as they are), in a fixed
    order."""
    if isinstance(value, str):
        return fn(value)
    if isinstance(value, list):
        return [_walk(v, fn, skip) for v in value]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if k in skip:
                out[k] = v
            else:
                key = fn(k) if isinstance(k, str) and k not in _KNOWN_KEYS else k
                out[key] = _walk(v, fn, skip)
        return out
    return value


def _map_message(msg: dict[str, Any], fn: TextMap) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in msg.items():
        if key in _NO_TEXT_IN_MESSAGE:
            out[key] = value
        elif key == "tool_calls":
            out[key] = _walk(value, fn, _NO_TEXT_IN_CALL)
        else:  # content (text or parts), function_call, extra fields
            out[key] = _walk(value, fn, _NO_TEXT_IN_MESSAGE)
    return out


def _map_request(data: dict[str, Any], fn: TextMap) -> dict[str, Any]:
    """The request body with every free text passed through ``fn`` (fixed order)."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if key == "messages":
            out[key] = [_map_message(m, fn) for m in value]
        elif key in _NO_TEXT:
            out[key] = value
        else:  # user, metadata and other fields forwarded upstream
            out[key] = _walk(value, fn)
    return out


def request_texts(request: ChatRequest) -> list[str]:
    """Every free text of ``request`` that would reach an upstream, in a fixed order."""
    texts: list[str] = []

    def keep(text: str) -> str:
        texts.append(text)
        return text

    _map_request(request.model_dump(exclude_none=True), keep)
    return texts


def rewrite(request: ChatRequest, fn: TextMap) -> ChatRequest:
    """``request`` with every text :func:`request_texts` lists passed through ``fn``."""
    body = _map_request(request.model_dump(exclude_none=True), fn)
    return ChatRequest.model_validate(body)
