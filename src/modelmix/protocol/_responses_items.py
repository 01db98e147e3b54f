"""Responses API input items (messages, function calls and their outputs) and their
content parts, and how they become chat completion messages (protocol/_responses.py).

The unions are tagged ``type-<type>`` so that a validation error's location is the
field path alone (``input.0.content.1.detail``, errors.invalid_request).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag

from modelmix.errors import InvalidRequest
from modelmix.protocol._echo import named

__all__ = ["Item", "TurnMessages", "append_item", "check_items", "typed_items", "unsupported"]

#: Chat messages (dicts of the chat completion body) of one conversation turn.
TurnMessages = list[dict[str, Any]]

_ITEM_TYPES = ("message", "function_call", "function_call_output")


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class InputText(_Wire):
    type: Literal["input_text"]
    text: str


class InputImage(_Wire):
    type: Literal["input_image"]
    image_url: str | None = None
    file_id: str | None = None
    detail: Literal["auto", "low", "high", "original"] | None = None


class InputFile(_Wire):
    type: Literal["input_file"]
    file_data: str | None = None
    file_id: str | None = None
    file_url: str | None = None
    filename: str | None = None
    detail: Literal["auto", "low", "high"] | None = None


class OutputText(_Wire):
    """An assistant's text, as a previous response's output carries it."""

    type: Literal["output_text"]
    text: str
    annotations: list[Any] | None = None
    logprobs: list[Any] | None = None


class Refusal(_Wire):
    type: Literal["refusal"]
    refusal: str


def _kind(value: Any) -> str | None:
    """The union tag of an item or part: ``type-<its type>`` (the ``-`` keeps the tag out
    of error locations, errors.invalid_request)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"type-{kind}" if isinstance(kind, str) else None


_BY_TYPE = Discriminator(_kind)

Part = Annotated[
    Annotated[InputText, Tag("type-input_text")] | Annotated[InputImage, Tag("type-input_image")]
    | Annotated[InputFile, Tag("type-input_file")]
    | Annotated[OutputText, Tag("type-output_text")] | Annotated[Refusal, Tag("type-refusal")],
    _BY_TYPE]
ToolOutputPart = Annotated[
    Annotated[InputText, Tag("type-input_text")] | Annotated[InputImage, Tag("type-input_image")]
    | Annotated[InputFile, Tag("type-input_file")],
    _BY_TYPE]
_PART_TYPES = ("input_text", "input_image", "input_file", "output_text", "refusal")


class MessageItem(_Wire):
    """A message: the user's, the system's, the developer's, or an assistant's earlier
    output (``id``, ``status`` and ``phase`` are bookkeeping and not sent upstream)."""

    type: Literal["message"] = "message"
    role: Literal["user", "system", "developer", "assistant"]
    content: str | list[Part]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None
    phase: Literal["commentary", "final_answer"] | None = None


class FunctionCallItem(_Wire):
    type: Literal["function_call"]
    call_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    arguments: str
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


class FunctionCallOutputItem(_Wire):
    type: Literal["function_call_output"]
    call_id: str = Field(min_length=1)
    output: str | list[ToolOutputPart]
    id: str | None = None
    status: Literal["in_progress", "completed", "incomplete"] | None = None


Item = Annotated[
    Annotated[MessageItem, Tag("type-message")]
    | Annotated[FunctionCallItem, Tag("type-function_call")]
    | Annotated[FunctionCallOutputItem, Tag("type-function_call_output")],
    _BY_TYPE]



def unsupported(param: str, why: str) -> InvalidRequest:
    return InvalidRequest(f"{param} is not supported on /v1/responses: {why}",
                          param=param, code="unsupported_parameter")


def typed_items(data: dict[str, Any]) -> dict[str, Any]:
    """The body with ``type: message`` on message items that leave it out (as the SDK's
    ``EasyInputMessage`` may), after refusing item and part types that are not mapped."""
    items = data.get("input")
    if not isinstance(items, list):
        return data
    typed: list[Any] = []
    for i, item in enumerate(items):
        if isinstance(item, dict):
            kind = item.get("type", "message" if "role" in item else None)
            if kind not in _ITEM_TYPES:
                raise unsupported(f"input.{i}.type", f"input items of {named('type', kind)} "
                                   f"are not supported here (only {', '.join(_ITEM_TYPES)})")
            item = {**item, "type": kind}
            parts = item.get("content") if kind == "message" else item.get("output")
            _refuse_part_types(parts, f"input.{i}.{'content' if kind == 'message' else 'output'}")
        typed.append(item)
    return {**data, "input": typed}


def _refuse_part_types(parts: Any, where: str) -> None:
    for j, part in enumerate(parts if isinstance(parts, list) else ()):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind not in _PART_TYPES:
            raise unsupported(f"{where}.{j}.type", f"content parts of {named('type', kind)} "
                               f"are not supported here (only {', '.join(_PART_TYPES)})")


def check_items(items: list[Any]) -> None:
    """Refuse what validates but cannot be sent: uploaded-file references of images,
    file URLs, media in assistant messages or in tool outputs. Raises InvalidRequest."""
    for i, item in enumerate(items):
        if isinstance(item, FunctionCallOutputItem) and isinstance(item.output, list):
            media = [p.type for p in item.output if p.type != "input_text"]
            if media:
                raise unsupported(f"input.{i}.output", "a function_call_output carries "
                                  f"text only here, not {media[0]!r}")
        elif isinstance(item, MessageItem) and isinstance(item.content, list):
            for j, part in enumerate(item.content):
                _check_part(part, item.role, f"input.{i}.content.{j}")


def _check_part(part: Any, role: str, where: str) -> None:
    if role == "assistant" and isinstance(part, InputImage | InputFile):
        raise unsupported(where, f"assistant messages carry text only here, not {part.type!r}")
    if isinstance(part, InputImage):
        if part.image_url is None:
            raise unsupported(f"{where}.file_id", "uploaded files cannot be read here; "
                               "send image_url (an https or data: URL)")
        if part.detail == "original":
            raise unsupported(f"{where}.detail", "'original' detail is not mapped; use "
                               "'auto', 'low' or 'high'")
    if isinstance(part, InputFile):
        if part.file_url is not None:
            raise unsupported(f"{where}.file_url", "files are not fetched by URL here; "
                               "send file_data (a base64 data URL)")
        if part.detail is not None:
            raise unsupported(f"{where}.detail", "file detail is not mapped")


def _chat_part(part: Any) -> dict[str, Any]:
    """A user/system message part as a chat content part."""
    if isinstance(part, InputText | OutputText):
        return {"type": "text", "text": part.text}
    if isinstance(part, Refusal):
        return {"type": "text", "text": part.refusal}
    if isinstance(part, InputImage):
        image = {"url": part.image_url, "detail": part.detail}
        return {"type": "image_url", "image_url": {k: v for k, v in image.items() if v}}
    file = {"file_data": part.file_data, "file_id": part.file_id, "filename": part.filename}
    return {"type": "file", "file": {k: v for k, v in file.items() if v is not None}}


def append_item(messages: TurnMessages, item: Any) -> None:
    """Append one input item to ``messages``: function calls join the assistant message
    before them (a turn's text and its calls are one chat message)."""
    if isinstance(item, FunctionCallItem):
        call = {"id": item.call_id, "type": "function",
                "function": {"name": item.name, "arguments": item.arguments}}
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif isinstance(item, FunctionCallOutputItem):
        output = item.output if isinstance(item.output, str) else "".join(
            p.text for p in item.output if isinstance(p, InputText))
        messages.append({"role": "tool", "tool_call_id": item.call_id, "content": output})
    elif item.role == "assistant" and not isinstance(item.content, str):
        text = "".join(_chat_part(p)["text"] for p in item.content)  # text only (checked)
        messages.append({"role": "assistant", "content": text})
    elif isinstance(item.content, str):
        messages.append({"role": item.role, "content": item.content})
    else:
        messages.append({"role": item.role, "content": [_chat_part(p) for p in item.content]})


