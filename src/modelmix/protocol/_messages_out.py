"""Chat completion answers as Anthropic Messages API answers: the ``message`` object, the
stream's server-sent events and the error body.

Mirrors the ``anthropic`` SDK's ``Message``, ``RawMessageStreamEvent`` and
``ErrorResponse`` types. What chat completions cannot tell is said, not invented:
``stop_sequence`` is set only when the upstream names the stop sequence it hit (vLLM's
``stop_reason``), and a stream's ``message_start`` counts 0 input tokens (the real count
comes in ``message_delta``, which the SDK merges).

Example::

    body = message_json(done.response, stops=["END"])
    state = MessageStream(model="auto")
    events = [e for chunk in chunks for e in state.on_chunk(chunk)] + state.end()
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelmix.errors import BudgetExceeded, ModelmixError
from modelmix.protocol._chat import ChatChunk, ChatResponse, Usage

__all__ = ["FINISH_TO_STOP_REASON", "RAW_ARGUMENTS", "STOP_REASON_TO_FINISH", "MessageStream",
           "message_json", "messages_error_body", "messages_event", "tool_input"]

#: Anthropic ``stop_reason`` -> OpenAI ``finish_reason`` (upstream direction).
STOP_REASON_TO_FINISH = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
#: OpenAI ``finish_reason`` -> Anthropic ``stop_reason`` (this endpoint's answers; a
#: ``stop`` that hit one of the request's stop sequences is told apart where the
#: upstream says which, see :func:`_stop`).
FINISH_TO_STOP_REASON = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}
#: The ``input`` key holding a tool call's arguments when the upstream's were not a JSON
#: object (the client's tool then sees them, and the model can be told to retry).
RAW_ARGUMENTS = "_raw_arguments"

#: Anthropic error ``type`` by HTTP status (docs/endpoints.md#messages).
_ERROR_TYPES = {
    400: "invalid_request_error", 408: "invalid_request_error", 413: "invalid_request_error",
    401: "authentication_error", 402: "billing_error", 403: "permission_error",
    404: "not_found_error", 429: "rate_limit_error", 503: "overloaded_error",
    504: "timeout_error",
}


def messages_error_body(exc: ModelmixError, request_id: str | None = None
               ) -> tuple[int, dict[str, Any]]:
    """The HTTP status and Anthropic error body (``{"type": "error", "error": {type,
    message}, "request_id"}``) for ``exc``: its own status, but a spent budget is 402
    ``billing_error`` (retrying cannot help; the SDK raises PaymentRequiredError and does
    not retry, where it would retry a 429)."""
    status = 402 if isinstance(exc, BudgetExceeded) else exc.status_code
    body: dict[str, Any] = {"type": "error", "error": {
        "type": _ERROR_TYPES.get(status, "api_error"), "message": exc.message}}
    if request_id:
        body["request_id"] = request_id
    return status, body


def messages_event(event: str, data: dict[str, Any]) -> bytes:
    """One server-sent event as Anthropic sends it: ``event:`` line, ``data:`` line."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _message_id(chat_id: str | None) -> str:
    if chat_id and chat_id.startswith("msg_"):
        return chat_id
    return f"msg_{uuid.uuid4().hex[:24]}"


def _stop(finish: str | None, matched: Any, stops: list[str]) -> tuple[str, str | None]:
    """``stop_reason`` and ``stop_sequence`` for a chat ``finish_reason``."""
    if finish == "stop" and isinstance(matched, str) and matched in stops:
        return "stop_sequence", matched
    return FINISH_TO_STOP_REASON.get(finish or "stop", "end_turn"), None


def _usage(usage: Usage | None) -> dict[str, int]:
    """Anthropic usage: cached prompt tokens (``prompt_tokens_details.cached_tokens``)
    are ``cache_read_input_tokens``, the rest ``input_tokens``."""
    if usage is None:
        return {"input_tokens": 0, "output_tokens": 0}
    details = (usage.model_extra or {}).get("prompt_tokens_details") or {}
    cached = (details.get("cached_tokens") or 0) if isinstance(details, dict) else 0
    return {"input_tokens": max(0, usage.prompt_tokens - cached),
            "output_tokens": usage.completion_tokens,
            "cache_creation_input_tokens": 0, "cache_read_input_tokens": cached}


def tool_input(arguments: str | None) -> dict[str, Any]:
    """A tool call's JSON arguments as the ``input`` object (:data:`RAW_ARGUMENTS` when
    they are not a JSON object)."""
    try:
        value = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError:
        value = None
    return value if isinstance(value, dict) else {RAW_ARGUMENTS: arguments}


def _stops(stop: str | list[str] | None) -> list[str]:
    return [stop] if isinstance(stop, str) else list(stop or ())


def message_json(response: ChatResponse, stop: str | list[str] | None) -> bytes:
    """The ``message`` object for a finished chat completion (first choice)."""
    choice = response.choices[0] if response.choices else None
    content: list[dict[str, Any]] = []
    if choice is not None and choice.message.content:
        content.append({"type": "text", "text": choice.message.content})
    for call in (choice.message.tool_calls or []) if choice is not None else []:
        fn = call.get("function") or {}
        content.append({"type": "tool_use", "id": call.get("id") or _tool_id(),
                        "name": fn.get("name", ""), "input": tool_input(fn.get("arguments"))})
    matched = (choice.model_extra or {}).get("stop_reason") if choice is not None else None
    reason, sequence = _stop(choice.finish_reason if choice else None, matched, _stops(stop))
    return orjson.dumps({
        "id": _message_id(response.id), "type": "message", "role": "assistant",
        "model": response.model, "content": content, "stop_reason": reason,
        "stop_sequence": sequence, "usage": _usage(response.usage)})


def _tool_id() -> str:
    return f"toolu_{uuid.uuid4().hex[:24]}"


@dataclass
class MessageStream:
    """Turns one stream of chat chunks into Messages events (one per stream): a
    ``message_start`` and ``ping`` before the first content, a content block per text run
    and per tool call, then ``message_delta`` (stop reason, usage) and ``message_stop``.

    Attributes:
        model: named in ``message_start`` when the stream ends before any chunk.
        stop: the request's stop sequences.
    """

    model: str
    stop: str | list[str] | None = None
    started: bool = False
    block: int = -1
    kind: str | None = None  # the open block's type: "text", "tool_use" or None
    tools: dict[int, int] = field(default_factory=dict)  # chat tool call index -> block
    finish: str | None = None
    matched: Any = None
    usage: Usage | None = None

    def on_chunk(self, chunk: ChatChunk) -> list[bytes]:
        """The events for one chat chunk (none for an empty delta)."""
        out = self._start(chunk.id, chunk.model)
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                out += self._text(choice.delta.content)
            for call in choice.delta.tool_calls or []:
                out += self._tool_call(call)
            if choice.finish_reason:
                self.finish = choice.finish_reason
                self.matched = (choice.model_extra or {}).get("stop_reason")
        return out

    def end(self) -> list[bytes]:
        """The closing events: the open block's stop, ``message_delta``, ``message_stop``."""
        out = self._start(None, self.model) + self._close()
        reason, sequence = _stop(self.finish, self.matched, _stops(self.stop))
        out.append(messages_event("message_delta", {
            "type": "message_delta",
            "delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": _usage(self.usage)}))
        out.append(messages_event("message_stop", {"type": "message_stop"}))
        return out

    def _start(self, chat_id: str | None, model: str) -> list[bytes]:
        if self.started:
            return []
        self.started = True
        message: dict[str, Any] = {
            "id": _message_id(chat_id), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0}}
        return [messages_event("message_start", {"type": "message_start", "message": message}),
                messages_event("ping", {"type": "ping"})]

    def _open(self, block: dict[str, Any]) -> list[bytes]:
        out = self._close()
        self.block += 1
        self.kind = block["type"]
        return [*out, messages_event("content_block_start", {"type": "content_block_start",
                                                  "index": self.block, "content_block": block})]

    def _close(self) -> list[bytes]:
        if self.kind is None:
            return []
        self.kind = None
        return [messages_event("content_block_stop",
                               {"type": "content_block_stop", "index": self.block})]

    def _delta(self, index: int, delta: dict[str, Any]) -> bytes:
        return messages_event("content_block_delta", {"type": "content_block_delta", "index": index,
                                           "delta": delta})

    def _text(self, text: str) -> list[bytes]:
        out = self._open({"type": "text", "text": ""}) if self.kind != "text" else []
        return [*out, self._delta(self.block, {"type": "text_delta", "text": text})]

    def _tool_call(self, call: dict[str, Any]) -> list[bytes]:
        """A tool call delta: the first for its index opens a ``tool_use`` block; argument
        text goes out as ``input_json_delta`` to that call's block."""
        out: list[bytes] = []
        fn = call.get("function") or {}
        position = call.get("index", len(self.tools))
        if position not in self.tools:
            out = self._open({"type": "tool_use", "id": call.get("id") or _tool_id(),
                              "name": fn.get("name") or "", "input": {}})
            self.tools[position] = self.block
        if fn.get("arguments"):
            out.append(self._delta(self.tools[position], {
                "type": "input_json_delta", "partial_json": fn["arguments"]}))
        return out
