"""OpenAI Chat Completions request, response and stream-chunk models.

Mirrors https://platform.openai.com/docs/api-reference/chat. Requests are validated
strictly where a mistake would be silent (types, ranges) and keep unknown fields, so
provider-specific parameters reach OpenAI-compatible upstreams unchanged.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

__all__ = [
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ContentPart",
    "RequestNeeds",
    "StreamOptions",
    "Usage",
    "new_completion_id",
]

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ImageURL(_Open):
    url: str
    detail: str | None = None


class InputAudio(_Open):
    data: str
    format: str


class ContentPart(_Open):
    """One part of a multi-part message: text, image_url or input_audio."""

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None


class ChatMessage(_Open):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    def text(self) -> str:
        """The message's text, parts joined with newlines; '' when none."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Open):
    include_usage: bool = False


class RequestNeeds(BaseModel):
    """What a request needs from a deployment, used by the policy filter."""

    model_config = ConfigDict(frozen=True)

    image_input: bool = False
    audio_input: bool = False
    tools: bool = False
    json_mode: bool = False
    prompt_tokens_estimate: int = 0
    max_output_tokens: int = 0


class ChatRequest(_Open):
    """A ``POST /v1/chat/completions`` body.

    ``max_tokens`` / ``max_completion_tokens`` are completion tokens. Unknown fields are
    kept and forwarded to OpenAI-compatible upstreams.
    """

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=1)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    #: modelmix extension: the request's deadline in seconds, retries included (sent as
    #: ``extra_body={"timeout": 30}`` from the OpenAI SDK). Never forwarded upstream.
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @property
    def completion_limit(self) -> int | None:
        """The completion token limit asked for, whichever field carried it."""
        return self.max_completion_tokens or self.max_tokens

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def needs(self) -> RequestNeeds:
        """Summarise what this request needs (modalities, tools, size)."""
        image = audio = False
        chars = 0
        for msg in self.messages:
            if isinstance(msg.content, list):
                for part in msg.content:
                    image = image or part.type == "image_url"
                    audio = audio or part.type == "input_audio"
            chars += len(msg.text())
        rf_type = (self.response_format or {}).get("type")
        return RequestNeeds(
            image_input=image,
            audio_input=audio,
            tools=bool(self.tools),
            json_mode=rf_type in ("json_object", "json_schema"),
            prompt_tokens_estimate=estimate_tokens(chars) + 4 * len(self.messages),
            max_output_tokens=self.completion_limit or 0,
        )

    def to_upstream(self, model: str) -> dict[str, Any]:
        """The body to send an OpenAI-compatible upstream serving ``model``."""
        body = self.model_dump(exclude_none=True, exclude={"model", "timeout"})
        body["model"] = model
        return body


def estimate_tokens(chars: int) -> int:
    """Rough token count from characters (~4 chars per token for English, OpenAI's
    rule of thumb: https://help.openai.com/en/articles/4936856). Used only for policy
    filtering before a tokenizer is available."""
    return (chars + 3) // 4


class Usage(_Open):
    """Token usage of one call: prompt (input) and completion (output) tokens."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class ResponseMessage(_Open):
    role: Literal["assistant"] = "assistant"
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChatChoice(_Open):
    index: int = 0
    message: ResponseMessage
    finish_reason: str | None = None
    logprobs: Any = None


class ChatResponse(_Open):
    """A ``chat.completion`` object."""

    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[ChatChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        """The first choice's content ('' when none)."""
        return (self.choices[0].message.content or "") if self.choices else ""


class Delta(_Open):
    role: str | None = None
    content: str | None = None
    tool_calls: list[dict[str, Any]] | None = None


class ChunkChoice(_Open):
    index: int = 0
    delta: Delta
    finish_reason: str | None = None
    logprobs: Any = None


class ChatChunk(_Open):
    """A ``chat.completion.chunk`` object, one server-sent event of a stream."""

    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None

    @property
    def text(self) -> str:
        return "".join(c.delta.content or "" for c in self.choices)


def new_completion_id() -> str:
    """An id shaped like OpenAI's: ``chatcmpl-`` plus 24 hex characters."""
    return f"chatcmpl-{uuid.uuid4().hex[:24]}"


def now() -> int:
    return int(time.time())
