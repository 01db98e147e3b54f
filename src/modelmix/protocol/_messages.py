"""Anthropic Messages API requests (``POST /v1/messages``) as chat completion bodies.

Mirrors https://docs.anthropic.com/en/api/messages (the shapes of the ``anthropic`` SDK's
``MessageCreateParams``). Validation is strict and closed: a field this gateway does not
map is refused with a 400 naming it, never dropped (docs/endpoints.md lists what maps
where). ``cache_control`` markers are accepted and not forwarded: they are hints for
Anthropic's prompt cache, with no effect on the answer.

Example::

    body = MessagesRequest.model_validate(data).to_chat()   # then ChatRequest(**body)
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
    model_validator,
)

from modelmix.errors import InvalidRequest
from modelmix.protocol._echo import named

__all__ = ["CountTokensRequest", "MessagesRequest"]

_TOOL_CHOICE = {"auto": "auto", "any": "required", "none": "none"}


class _Closed(BaseModel):
    """Strict and closed: unknown fields are refused (``Extra inputs are not permitted``)."""

    model_config = ConfigDict(extra="forbid", strict=True)


class _Block(_Closed):
    cache_control: dict[str, Any] | None = None  # accepted, not forwarded


class TextBlock(_Block):
    type: Literal["text"]
    text: str
    citations: list[Any] | None = None

    @field_validator("citations")
    @classmethod
    def _no_citations(cls, value: list[Any] | None) -> list[Any] | None:
        if value:
            raise ValueError("citations on input text are not supported")
        return value


def _kind(value: Any) -> str | None:
    """A block's or source's ``type`` as a union tag: ``type-text``, ``type-image``...
    (the tag is left out of error paths, which name ``messages.0.content.1.source``)."""
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return f"type-{kind}" if isinstance(kind, str) else None


def _by_type(*names: str) -> Discriminator:
    """Tells union members apart by ``type``; another type is refused naming those taken."""
    return Discriminator(_kind, custom_error_type="unsupported_type",
                         custom_error_message="type must be one of "
                                              + ", ".join(repr(n) for n in names))


class Base64Source(_Closed):
    type: Literal["base64"]
    media_type: str = Field(min_length=1)
    data: str

    def data_url(self) -> str:
        return f"data:{self.media_type};base64,{self.data}"


class URLSource(_Closed):
    type: Literal["url"]
    url: str = Field(pattern=r"^https?://")


class TextSource(_Closed):
    type: Literal["text"]
    media_type: Literal["text/plain"]
    data: str


class ImageBlock(_Block):
    type: Literal["image"]
    source: Annotated[Annotated[Base64Source, Tag("type-base64")]
                      | Annotated[URLSource, Tag("type-url")], _by_type("base64", "url")]

    def to_part(self) -> dict[str, Any]:
        url = self.source.data_url() if isinstance(self.source, Base64Source) else self.source.url
        return {"type": "image_url", "image_url": {"url": url}}


class DocumentBlock(_Block):
    """A PDF (base64 source: a chat ``file`` part) or plain text (a ``text`` part, the
    title, when given, as its first line). ``context`` and enabled citations are refused."""

    type: Literal["document"]
    source: Annotated[Annotated[Base64Source, Tag("type-base64")]
                      | Annotated[TextSource, Tag("type-text")], _by_type("base64", "text")]
    title: str | None = None
    citations: dict[str, Any] | None = None

    @field_validator("citations")
    @classmethod
    def _no_citations(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value and value.get("enabled"):
            raise ValueError("document citations are not supported")
        return value

    @field_validator("source")
    @classmethod
    def _pdf_only(cls, value: Base64Source | TextSource) -> Base64Source | TextSource:
        if isinstance(value, Base64Source) and value.media_type != "application/pdf":
            raise ValueError("a base64 document must be application/pdf")
        return value

    def to_part(self) -> dict[str, Any]:
        if isinstance(self.source, TextSource):
            text = f"{self.title}\n\n{self.source.data}" if self.title else self.source.data
            return {"type": "text", "text": text}
        file = {"file_data": self.source.data_url(),
                **({"filename": self.title} if self.title else {})}
        return {"type": "file", "file": file}


class ToolUseBlock(_Block):
    type: Literal["tool_use"]
    id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    input: dict[str, Any]

    def to_call(self) -> dict[str, Any]:
        arguments = orjson.dumps(self.input).decode()
        return {"id": self.id, "type": "function",
                "function": {"name": self.name, "arguments": arguments}}


class ToolResultBlock(_Block):
    """A tool's answer: a chat ``tool`` message (text blocks joined by newlines).
    ``is_error: true`` prefixes the text with ``Error: `` (chat tool messages have no
    error flag). Chat tool messages carry text only, so images (what Claude Code sends
    when it reads an image file) go in a user message after the turn's tool messages,
    each labelled with its tool call, and the tool message says so."""

    type: Literal["tool_result"]
    tool_use_id: str = Field(min_length=1)
    content: str | list[Annotated[
        Annotated[TextBlock, Tag("type-text")] | Annotated[ImageBlock, Tag("type-image")],
        _by_type("text", "image")]] | None = None
    is_error: bool | None = None

    def to_message(self) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The chat ``tool`` message, and the chat parts that carry its images (a label
        naming the tool call, then the image), for the user message after it."""
        content = self.content or ""
        images = [b for b in content if isinstance(b, ImageBlock)] \
            if isinstance(content, list) else []
        text = (content if isinstance(content, str)
                else "\n".join(b.text for b in content if isinstance(b, TextBlock)))
        if images:
            text += (("\n" if text else "") + f"[{len(images)} image(s) returned; "
                     "sent in the next user message]")
        if self.is_error:
            text = f"Error: {text}"
        parts: list[dict[str, Any]] = []
        for n, image in enumerate(images, 1):
            parts += [{"type": "text", "text": f"[image {n} of {len(images)} returned by "
                                               f"tool call {self.tool_use_id}]"},
                      image.to_part()]
        return {"role": "tool", "tool_call_id": self.tool_use_id, "content": text}, parts


Block = Annotated[
    Annotated[TextBlock, Tag("type-text")] | Annotated[ImageBlock, Tag("type-image")]
    | Annotated[DocumentBlock, Tag("type-document")]
    | Annotated[ToolUseBlock, Tag("type-tool_use")]
    | Annotated[ToolResultBlock, Tag("type-tool_result")],
    _by_type("text", "image", "document", "tool_use", "tool_result")]


class InputMessage(_Closed):
    role: Literal["user", "assistant"]
    content: str | list[Block]

    def to_chat(self, at: int) -> list[dict[str, Any]]:
        """This turn as chat messages (``at`` is its index, for errors). Raises
        InvalidRequest (400) for a block its role cannot carry."""
        if isinstance(self.content, str):
            return [{"role": self.role, "content": self.content}]
        if self.role == "assistant":
            return [_assistant(self.content, at)]
        return _user(self.content, at)


def _assistant(blocks: list[Block], at: int) -> dict[str, Any]:
    """An assistant turn: its text and its tool calls, in one chat message."""
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        if isinstance(block, TextBlock):
            texts.append(block.text)
        elif isinstance(block, ToolUseBlock):
            calls.append(block.to_call())
        else:
            raise _misplaced(block.type, "assistant", f"messages.{at}.content.{i}")
    message: dict[str, Any] = {"role": "assistant",
                               "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _user(blocks: list[Block], at: int) -> list[dict[str, Any]]:
    """Tool results become ``tool`` messages, in order; the other blocks between them
    user messages (one string when it is a single text block). Images the tool results
    returned open the turn's last user message (after every tool message)."""
    out: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    returned: list[dict[str, Any]] = []
    for i, block in enumerate(blocks):
        if isinstance(block, ToolResultBlock):
            _flush(parts, out)
            message, images = block.to_message()
            out.append(message)
            returned += images
        elif isinstance(block, TextBlock):
            parts.append({"type": "text", "text": block.text})
        elif isinstance(block, ImageBlock | DocumentBlock):
            parts.append(block.to_part())
        else:
            raise _misplaced(block.type, "user", f"messages.{at}.content.{i}")
    _flush(returned + parts, out)
    return out


def _flush(parts: list[dict[str, Any]], out: list[dict[str, Any]]) -> None:
    if not parts:
        return
    single = len(parts) == 1 and parts[0]["type"] == "text"
    out.append({"role": "user", "content": parts[0]["text"] if single else list(parts)})
    parts.clear()


def _misplaced(block: str, role: str, param: str) -> InvalidRequest:
    return InvalidRequest(f"{param}: {block!r} blocks are not allowed in {role} messages",
                          param=param, code="invalid_value")


class ToolDefinition(_Closed):
    """A client tool (``name``, ``description``, ``input_schema``): a chat function tool.
    Server tools (``web_search_...``, ``bash_...``) are refused: nothing here runs them."""

    type: Literal["custom"] | None = None
    name: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: str | None = None
    input_schema: dict[str, Any]
    strict: bool | None = None
    cache_control: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _client_tools_only(cls, data: Any) -> Any:
        kind = data.get("type") if isinstance(data, dict) else None
        if kind not in (None, "custom"):
            raise ValueError(f"server tools ({named('type', kind)}) are not supported: "
                             "only client tools (name, description, input_schema)")
        return data

    def to_chat(self) -> dict[str, Any]:
        fn: dict[str, Any] = {"name": self.name, "parameters": self.input_schema}
        if self.description is not None:
            fn["description"] = self.description
        if self.strict is not None:
            fn["strict"] = self.strict
        return {"type": "function", "function": fn}


class ToolChoice(_Closed):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None

    @model_validator(mode="after")
    def _name_for_tool(self) -> ToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("'name' is required with type 'tool' and only then")
        return self

    def to_chat(self) -> str | dict[str, Any]:
        if self.type == "tool":
            return {"type": "function", "function": {"name": self.name}}
        return _TOOL_CHOICE[self.type]


class Metadata(_Closed):
    user_id: str | None = None


class OutputFormat(_Closed):
    type: Literal["json_schema"]
    schema_: dict[str, Any] = Field(alias="schema")


class OutputConfig(_Closed):
    """Only ``format`` maps (to ``response_format``); ``effort`` is refused."""

    format: OutputFormat | None = None


class CountTokensRequest(_Closed):
    """A ``POST /v1/messages/count_tokens`` body: what a Messages request sends the
    model, without the generation settings."""

    model: str = Field(min_length=1)
    messages: list[InputMessage] = Field(min_length=1)
    system: str | list[TextBlock] | None = None
    tools: list[ToolDefinition] | None = None
    tool_choice: ToolChoice | None = None
    thinking: dict[str, Any] | None = None
    output_config: OutputConfig | None = None
    cache_control: dict[str, Any] | None = None  # accepted, not forwarded

    @field_validator("thinking")
    @classmethod
    def _thinking_off(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and value.get("type") != "disabled":
            raise ValueError("extended thinking has no Chat Completions equivalent and is "
                             "not supported here; leave it out or send {'type': 'disabled'}")
        return value

    def to_chat(self) -> dict[str, Any]:
        """The chat completion body (validated afterwards as a ChatRequest). Raises
        InvalidRequest (400) for a block its message's role cannot carry."""
        messages: list[dict[str, Any]] = []
        if system := self._system_text():
            messages.append({"role": "system", "content": system})
        for at, message in enumerate(self.messages):
            messages.extend(message.to_chat(at))
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.tools:
            body["tools"] = [tool.to_chat() for tool in self.tools]
        if self.tool_choice is not None:
            body["tool_choice"] = self.tool_choice.to_chat()
            if self.tool_choice.disable_parallel_tool_use:
                body["parallel_tool_calls"] = False
        if self.output_config is not None and self.output_config.format is not None:
            body["response_format"] = {"type": "json_schema", "json_schema": {
                "name": "output", "schema": self.output_config.format.schema_}}
        return body

    def _system_text(self) -> str:
        if isinstance(self.system, list):
            return "\n\n".join(block.text for block in self.system)
        return self.system or ""


class MessagesRequest(CountTokensRequest):
    """A ``POST /v1/messages`` body (``max_tokens`` required, as Anthropic requires).

    ``top_k`` is refused: Chat Completions has no such field and not every upstream takes
    it, so forwarding it would work or fail by deployment.
    """

    max_tokens: int = Field(ge=1)
    stream: bool = False
    stop_sequences: list[str] | None = Field(default=None, max_length=4)
    temperature: float | None = Field(default=None, ge=0, le=1)
    top_p: float | None = Field(default=None, ge=0, le=1)
    top_k: int | None = None
    metadata: Metadata | None = None

    @field_validator("top_k")
    @classmethod
    def _no_top_k(cls, value: int | None) -> int | None:
        if value is not None:
            raise ValueError("top_k has no Chat Completions equivalent and is not supported "
                             "here; leave it out (temperature and top_p map)")
        return value

    def to_chat(self) -> dict[str, Any]:
        body = super().to_chat()
        body["max_tokens"] = self.max_tokens
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        for field in ("temperature", "top_p"):
            if (value := getattr(self, field)) is not None:
                body[field] = value
        if self.stop_sequences:
            body["stop"] = list(self.stop_sequences)
        if self.metadata is not None and self.metadata.user_id is not None:
            body["user"] = self.metadata.user_id
        return body
