"""Every free text of a chat request, in a fixed order, and the request rebuilt with each
text mapped: how the guard reads what a request would carry upstream and rewrites it with
placeholders. Keys of user data (metadata, schemas, extra fields) count as texts too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelmix.errors import InvalidRequest
from modelmix.protocol import ChatRequest

__all__ = ["MAX_TEXTS", "TextMap", "check_text_count", "request_texts", "rewrite"]

#: Most texts (:func:`request_texts`) a screened request may hold; more is a 400.
#:
#: The detector's cost has a fixed part per text (every recognizer runs once per text,
#: and :func:`~modelmix.guard._context.key_context` rescans short pairs): ~0.4 ms per
#: one-word text on a 2-core 2.8 GHz Xeon, so 40,000 one-word content parts (1.2 MB)
#: took 11 s, where 1 MB of prose takes 1.7 s. The texts are not joined into one scan
#: instead: a cue in one text would then raise a score in the next, and the per-text
#: health and name ties and the key/value pairing would read other texts, so results
#: would change. 10,000 texts cost ~4 s there, about as much as 2.4 MB of prose, well
#: inside what ``server.max_body_bytes`` (32 MiB) already allows; a long agent session
#: (500 turns with tool calls and 128 tool schemas) holds ~5,000. For comparison,
#: OpenAI's Chat Completions API takes at most 128 ``tools`` and 128 ``tool_calls`` per
#: message and 500 images per request; Anthropic's Messages API at most 100,000
#: messages and 100 images per request; neither documents a limit on text parts.
MAX_TEXTS = 10_000

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


def check_text_count(request: ChatRequest, texts: list[str]) -> None:
    """Refuse a request whose ``texts`` (:func:`request_texts`) number over
    :data:`MAX_TEXTS`.

    Raises:
        InvalidRequest: (400, code ``array_above_max_length``) naming, as ``param``, the
            field that holds the most texts (``messages.3.content``, ``messages``,
            ``metadata``...).
    """
    if len(texts) <= MAX_TEXTS:
        return
    param = _largest_field(request.model_dump(exclude_none=True))
    raise InvalidRequest(
        f"{param}: the request holds {len(texts):,} texts (content parts, messages, "
        f"tool fields, keys and values); the data guard scans at most {MAX_TEXTS:,} per "
        "request: merge text parts or split the request",
        param=param, code="array_above_max_length")


def _largest_field(data: dict[str, Any]) -> str:
    """The field of a request body holding the most texts: one message's content when it
    alone holds over half of :data:`MAX_TEXTS`, else the top-level field."""
    counts: dict[str, int] = {}
    for key, value in data.items():
        if key == "messages" and isinstance(value, list):
            for i, message in enumerate(value):
                content = message.get("content") if isinstance(message, dict) else None
                if isinstance(content, list) and len(content) > MAX_TEXTS // 2:
                    return f"messages.{i}.content"
        if key not in _NO_TEXT or key == "messages":
            counts[key] = _count(value)
    return max(counts, key=counts.__getitem__) if counts else "messages"


def _count(value: Any) -> int:
    """Strings in ``value`` (JSON-like), dictionary keys included."""
    n = 0
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            n += 1
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, dict):
            n += len(item)
            stack.extend(item.values())
    return n
