"""What ``POST /v1/responses`` answers: a ``response`` object, or its stream of events.

Shapes are the ``openai`` SDK's ``types/responses`` (``Response``, ``ResponseOutputMessage``,
``ResponseFunctionToolCall``, ``Response*Event``), built from a chat completion or its
chunks. Example::

    body = response_from_chat(completion, response_id=new_response_id(),
                              created_at=now(), echo=request_echo(request))
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import orjson

from modelmix.protocol._chat import ChatChunk, ChatResponse, ResponseMessage, Usage
from modelmix.protocol._responses import ResponsesRequest, TurnMessages

__all__ = [
    "ResponseEvents",
    "assistant_turn",
    "new_response_id",
    "request_echo",
    "response_from_chat",
    "response_object",
]

#: finish_reason -> incomplete_details.reason (anything else is a complete response).
_INCOMPLETE = {"length": "max_output_tokens", "content_filter": "content_filter"}


def new_response_id() -> str:
    """An id shaped like OpenAI's: ``resp_`` plus 48 hex characters."""
    return f"resp_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


def _item_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}{uuid.uuid4().hex[:16]}"


def request_echo(request: ResponsesRequest) -> dict[str, Any]:
    """The request's settings as the response object repeats them."""
    text = request.text
    fmt = (text.format.model_dump(by_alias=True, exclude_none=True)
           if text is not None and text.format is not None else {"type": "text"})
    return {
        "instructions": request.instructions,
        "metadata": request.metadata or {},
        "parallel_tool_calls": request.parallel_tool_calls is not False,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "tool_choice": request.tool_choice if request.tool_choice is not None else "auto",
        "tools": [t.model_dump() for t in request.tools or ()],
        "max_output_tokens": request.max_output_tokens,
        "previous_response_id": request.previous_response_id,
        "store": request.keep,
        "text": {"format": fmt, "verbosity": text.verbosity if text else None},
        "truncation": "disabled",
        "reasoning": {"effort": request.reasoning.effort if request.reasoning else None,
                      "summary": None},
        "user": request.user,
        "service_tier": request.service_tier,
        "prompt_cache_key": request.prompt_cache_key,
        "safety_identifier": request.safety_identifier,
        "background": False,
    }


def response_object(*, response_id: str, created_at: int, model: str, echo: dict[str, Any],
                    status: str, output: list[dict[str, Any]],
                    usage: Usage | None = None, error: dict[str, Any] | None = None,
                    incomplete: str | None = None) -> dict[str, Any]:
    """A ``response`` object (``status``: in_progress, completed, incomplete, failed)."""
    finished = status in ("completed", "incomplete", "failed")
    return {
        "id": response_id, "object": "response", "created_at": created_at,
        "status": status, "completed_at": int(time.time()) if finished else None,
        "error": error,
        "incomplete_details": {"reason": incomplete} if incomplete else None,
        "model": model, "output": output, **echo, "usage": _usage(usage),
    }


def _usage(usage: Usage | None) -> dict[str, Any] | None:
    """Chat usage as Responses usage (input / output tokens, cached and reasoning)."""
    if usage is None:
        return None
    extra = usage.model_extra or {}
    cached = (extra.get("prompt_tokens_details") or {}).get("cached_tokens") or 0
    reasoning = (extra.get("completion_tokens_details") or {}).get("reasoning_tokens") or 0
    return {"input_tokens": usage.prompt_tokens,
            "input_tokens_details": {"cached_tokens": cached},
            "output_tokens": usage.completion_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning},
            "total_tokens": usage.total_tokens}


def _text_part(kind: str, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def _message_item(status: str) -> dict[str, Any]:
    return {"id": _item_id("msg"), "type": "message", "status": status,
            "role": "assistant", "content": []}


def _call_item(call_id: str | None, name: str, arguments: str, status: str
               ) -> dict[str, Any]:
    return {"id": _item_id("fc"), "type": "function_call", "status": status,
            "arguments": arguments, "call_id": call_id or f"call_{uuid.uuid4().hex[:24]}",
            "name": name}


def _output(message: ResponseMessage, status: str) -> list[dict[str, Any]]:
    """A chat message as output items: its text (and refusal) as a message, then one
    function_call item per tool call."""
    out: list[dict[str, Any]] = []
    refusal = (message.model_extra or {}).get("refusal")
    if message.content or refusal or (message.content is not None and not message.tool_calls):
        item = _message_item(status)
        if message.content is not None and (message.content or not refusal):
            item["content"].append(_text_part("output_text", message.content))
        if refusal:
            item["content"].append(_text_part("refusal", refusal))
        out.append(item)
    for call in message.tool_calls or ():
        function = call.get("function") or {}
        out.append(_call_item(call.get("id"), function.get("name") or "",
                              function.get("arguments") or "", "completed"))
    return out


def response_from_chat(completion: ChatResponse, *, response_id: str, created_at: int,
                       echo: dict[str, Any]) -> dict[str, Any]:
    """The ``response`` object answering a finished chat completion (first choice)."""
    choice = completion.choices[0] if completion.choices else None
    incomplete = _INCOMPLETE.get(choice.finish_reason or "") if choice else None
    status = "incomplete" if incomplete else "completed"
    output = _output(choice.message, status) if choice else []
    return response_object(response_id=response_id, created_at=created_at,
                           model=completion.model, echo=echo, status=status, output=output,
                           usage=completion.usage, incomplete=incomplete)


def assistant_turn(output: list[dict[str, Any]]) -> TurnMessages:
    """The output items as the chat assistant message a follow-up call sends back."""
    text = "".join(part.get("text") or part.get("refusal") or ""
                   for item in output if item["type"] == "message"
                   for part in item["content"])
    calls = [{"id": item["call_id"], "type": "function",
              "function": {"name": item["name"], "arguments": item["arguments"]}}
             for item in output if item["type"] == "function_call"]
    if not calls and not any(item["type"] == "message" for item in output):
        return []
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = calls
    elif message["content"] is None:
        message["content"] = ""
    return [message]


# -- streaming ----------------------------------------------------------------------------


@dataclass
class _Part:
    kind: str  # output_text | refusal
    text: str = ""


@dataclass
class ResponseEvents:
    """The Responses event stream of one chat completion stream.

    Feed it chunks; each call returns the server-sent events to write. Text opens a
    message item and an ``output_text`` part; each tool call is a ``function_call`` item;
    :meth:`finish` closes what is open and ends with ``response.completed`` (or
    ``response.incomplete``), :meth:`fail` with ``error`` and ``response.failed``.
    """

    response_id: str
    created_at: int
    model: str
    echo: dict[str, Any]
    output: list[dict[str, Any]] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    _seq: int = 0
    _message: dict[str, Any] | None = None
    _part: _Part | None = None
    _calls: dict[int, dict[str, Any]] = field(default_factory=dict)  # chat index -> item
    _events: list[bytes] = field(default_factory=list)

    def start(self) -> list[bytes]:
        """``response.created`` and ``response.in_progress``."""
        for kind in ("response.created", "response.in_progress"):
            self._emit(kind, response=self.snapshot("in_progress"))
        return self._flush()

    def feed(self, chunk: ChatChunk) -> list[bytes]:
        """The events for one chat chunk (its first choice)."""
        self.model = chunk.model or self.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices[:1]:
            if choice.delta.content:
                self._text("output_text", choice.delta.content)
            refusal = (choice.delta.model_extra or {}).get("refusal")
            if refusal:
                self._text("refusal", refusal)
            for call in choice.delta.tool_calls or ():
                self._tool_delta(call)
            self.finish_reason = choice.finish_reason or self.finish_reason
        return self._flush()

    def finish(self) -> list[bytes]:
        """Close open items; ``response.completed`` or ``response.incomplete``."""
        self._close_message()
        self._close_calls()
        status = self.status
        self._emit(f"response.{status}", response=self.snapshot(status))
        return self._flush()

    def fail(self, error: dict[str, Any]) -> list[bytes]:
        """An ``error`` event (OpenAI's ``{message, type, param, code}``) and
        ``response.failed`` carrying it."""
        self._emit("error", code=error.get("code"), message=error.get("message", ""),
                   param=error.get("param"))
        failed = {"code": error.get("code") or "server_error",
                  "message": error.get("message", "")}
        self._emit("response.failed", response=self.snapshot("failed", error=failed))
        return self._flush()

    @property
    def status(self) -> str:
        return "incomplete" if _INCOMPLETE.get(self.finish_reason or "") else "completed"

    def snapshot(self, status: str, error: dict[str, Any] | None = None) -> dict[str, Any]:
        """The response object as it stands (``status`` as given)."""
        incomplete = _INCOMPLETE.get(self.finish_reason or "") if status == "incomplete" \
            else None
        return response_object(
            response_id=self.response_id, created_at=self.created_at, model=self.model,
            echo=self.echo, status=status, output=self.output,
            usage=self.usage if status != "in_progress" else None, error=error,
            incomplete=incomplete)

    # -- items --------------------------------------------------------------------------

    def _text(self, kind: str, delta: str) -> None:
        self._close_calls()
        if self._message is None:
            self._message = self._add_item(_message_item("in_progress"))
        if self._part is not None and self._part.kind != kind:
            self._close_part()
        message = self._message
        where = {"item_id": message["id"], "output_index": self._index(message),
                 "content_index": len(message["content"])}  # parts are added when done
        if self._part is None:
            self._part = _Part(kind)
            self._emit("response.content_part.added", **where, part=_text_part(kind, ""))
        self._part.text += delta
        if kind == "output_text":
            self._emit("response.output_text.delta", **where, delta=delta, logprobs=[])
        else:
            self._emit("response.refusal.delta", **where, delta=delta)

    def _close_part(self) -> None:
        part, message = self._part, self._message
        if part is None or message is None:
            return
        self._part = None
        where = {"item_id": message["id"], "output_index": self._index(message),
                 "content_index": len(message["content"])}
        if part.kind == "output_text":
            self._emit("response.output_text.done", **where, text=part.text, logprobs=[])
        else:
            self._emit("response.refusal.done", **where, refusal=part.text)
        done = _text_part(part.kind, part.text)
        message["content"].append(done)
        self._emit("response.content_part.done", **where, part=done)

    def _close_message(self) -> None:
        self._close_part()
        if self._message is not None:
            message, self._message = self._message, None
            message["status"] = "incomplete" if self.status == "incomplete" else "completed"
            self._emit("response.output_item.done", output_index=self._index(message),
                       item=message)

    def _tool_delta(self, call: dict[str, Any]) -> None:
        index = call.get("index", 0)
        function = call.get("function") or {}
        item = self._calls.get(index)
        if item is None:
            self._close_message()
            item = self._add_item(_call_item(call.get("id"), function.get("name") or "",
                                             "", "in_progress"))
            self._calls[index] = item
        elif function.get("name") and not item["name"]:
            item["name"] = function["name"]
        arguments = function.get("arguments") or ""
        if arguments:
            item["arguments"] += arguments
            self._emit("response.function_call_arguments.delta", item_id=item["id"],
                       output_index=self._index(item), delta=arguments)

    def _close_calls(self) -> None:
        for item in self._calls.values():
            where = {"item_id": item["id"], "output_index": self._index(item)}
            self._emit("response.function_call_arguments.done", **where,
                       arguments=item["arguments"], name=item["name"])
            item["status"] = "completed"
            self._emit("response.output_item.done", output_index=where["output_index"],
                       item=item)
        self._calls.clear()

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, out in enumerate(self.output) if out is item)

    def _add_item(self, item: dict[str, Any]) -> dict[str, Any]:
        self.output.append(item)
        self._emit("response.output_item.added", output_index=len(self.output) - 1,
                   item=item)
        return item

    def _emit(self, kind: str, **data: Any) -> None:
        body = orjson.dumps({"type": kind, "sequence_number": self._seq, **data})
        self._seq += 1
        self._events.append(b"event: " + kind.encode() + b"\ndata: " + body + b"\n\n")

    def _flush(self) -> list[bytes]:
        events, self._events = self._events, []
        return events
