"""OpenAI Chat Completions request models.

Mirrors https://platform.openai.com/docs/api-reference/chat/create. Validation is
strict (no ``"5"`` for 5, no ``"yes"`` for true) because the OpenAI API rejects such
input and a lax gateway would pass mistakes on silently; unknown fields are kept and
forwarded to OpenAI-compatible upstreams.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = [
    "IMAGE_TOKEN_BOUND",
    "MAX_CHOICES",
    "ChatMessage",
    "ChatRequest",
    "ContentPart",
    "FileData",
    "FunctionDefinition",
    "RequestNeeds",
    "ResponseFormat",
    "StreamOptions",
    "Tool",
    "estimate_tokens",
]

#: Prompt tokens one image part is assumed to cost at most when reserving budget. The
#: largest published per-image costs are below it for ordinary images: OpenAI's
#: high-detail tiles (85 + 170 per 512 px tile, at most ~1,100 for gpt-4o), Anthropic's
#: (width x height) / 750 (~1,600 for its 1.15-megapixel cap), Gemini's 258 per 768 px
#: tile. A very large image on a tiling provider can exceed it: see docs/keys.md.
IMAGE_TOKEN_BOUND = 4096

#: Prompt tokens one message's chat template may add (role markers, separators): OpenAI
#: counts 3-4 per message, Llama 3 and ChatML templates 4-6.
_MESSAGE_TOKEN_BOUND = 8

#: Prompt tokens a request may be billed beyond its messages: the reply's priming plus a
#: default system prompt the model's chat template adds when the request has none
#: (SmolLM2's adds 15, Qwen2.5's about 20, Llama 3.1's date lines about 25; found when
#: the embedded model billed 32 tokens for a 30-token bound).
_REQUEST_TOKEN_BOUND = 48

#: Most choices (``n``) one request may ask for. Each choice is a full completion that the
#: budget reserves for, and a deployment without native ``n`` makes one call per choice.
MAX_CHOICES = 8

Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="allow", strict=True)


class _Media(BaseModel):
    """A media payload object: no fields but OpenAI's. An unknown field would travel with
    the media, unread by the guard (which reads media by their content), so it is refused."""

    model_config = ConfigDict(extra="forbid", strict=True)


class ImageURL(_Media):
    url: str
    detail: Literal["auto", "low", "high"] | None = None


class InputAudio(_Media):
    """Base64 audio and its format (``wav`` or ``mp3``, as OpenAI takes them)."""

    data: str
    format: str


class FileData(_Media):
    """A ``file`` part's payload: ``file_data`` (a base64 data URL, e.g.
    ``data:application/pdf;base64,...``) with an optional ``filename``, or a
    ``file_id`` of an uploaded file (which this gateway cannot read)."""

    file_data: str | None = None
    file_id: str | None = None
    filename: str | None = None


#: Part types carrying media (read by the media stage, not as text).
_MEDIA_PARTS = frozenset({"image_url", "input_audio", "file"})
#: The field that carries each content part type's payload.
_PART_PAYLOADS = frozenset({"text", "image_url", "input_audio", "file", "refusal"})


class ContentPart(_Strict):
    """One part of a multi-part message: text, image_url, input_audio or file."""

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: str | None = None
    image_url: ImageURL | None = None
    input_audio: InputAudio | None = None
    file: FileData | None = None

    @model_validator(mode="after")
    def _payload_present(self) -> ContentPart:
        needed = {"text": self.text, "image_url": self.image_url,
                  "input_audio": self.input_audio, "file": self.file}
        if self.type in needed and needed[self.type] is None:
            raise ValueError(f"a '{self.type}' content part needs a '{self.type}' field")
        # A payload field of another part type is refused, not forwarded: the guard reads
        # each part by its type, so text (or an image) hidden under a foreign key would
        # reach the upstream unread.
        present = {"text": self.text, "image_url": self.image_url,
                   "input_audio": self.input_audio, "file": self.file,
                   **(self.model_extra or {})}
        foreign = sorted(k for k in _PART_PAYLOADS - {self.type} if present.get(k) is not None)
        if foreign:
            raise ValueError(f"a '{self.type}' content part may not carry "
                             f"{', '.join(repr(k) for k in foreign)}")
        if self.type in _MEDIA_PARTS and self.model_extra:  # would travel unread with it
            raise ValueError(f"a '{self.type}' content part may not carry "
                             f"{', '.join(repr(k) for k in sorted(self.model_extra))}")
        if self.file is not None and self.file.file_id and self.file.file_data:
            raise ValueError("a 'file' part carries file_data or file_id, not both")
        return self


class ChatMessage(_Strict):
    role: Role
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[dict[str, Any]] | None = None
    tool_call_id: str | None = None

    @model_validator(mode="after")
    def _role_rules(self) -> ChatMessage:
        media = sorted(k for k in ("image_url", "input_audio", "file")
                       if (self.model_extra or {}).get(k) is not None)
        if media:  # OpenAI carries media only in content parts, where the guard reads it
            raise ValueError(f"{', '.join(repr(k) for k in media)} must be a content part "
                             "of 'content', not a message field")
        if self.role == "tool" and not self.tool_call_id:
            raise ValueError("a 'tool' message needs tool_call_id")
        if self.role == "assistant":
            if self.content is None and not self.tool_calls:
                raise ValueError("an 'assistant' message needs content or tool_calls")
        elif self.content is None and self.role != "function":
            raise ValueError(f"a '{self.role}' message needs content")
        return self

    def text(self) -> str:
        """The message's text, parts joined with newlines; '' when none."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "\n".join(p.text or "" for p in self.content if p.type == "text")


class StreamOptions(_Strict):
    include_usage: bool = False


class FunctionDefinition(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None


class Tool(_Strict):
    """A function tool (the only tool type of the Chat Completions API)."""

    type: Literal["function"]
    function: FunctionDefinition


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: dict[str, str]

    @field_validator("function")
    @classmethod
    def _has_name(cls, value: dict[str, str]) -> dict[str, str]:
        if not value.get("name"):
            raise ValueError("tool_choice.function needs a name")
        return value


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: dict[str, Any] | None = None


class RequestNeeds(BaseModel):
    """What a request needs from a deployment, used by the policy filter.

    ``prompt_tokens_estimate`` and ``max_output_tokens`` are tokens.
    """

    model_config = ConfigDict(frozen=True)

    image_input: bool = False
    audio_input: bool = False
    file_input: bool = False
    tools: bool = False
    json_mode: bool = False
    logprobs: bool = False
    prompt_tokens_estimate: int = 0
    max_output_tokens: int = 0
    #: completions asked for (``n``); ``max_output_tokens`` is per choice
    choices: int = 1


class ChatRequest(_Strict):
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
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    logit_bias: dict[str, float] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    # Kept as plain dicts (validated against Tool / NamedToolChoice / ResponseFormat) so
    # adapters see exactly what the client sent.
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    response_format: dict[str, Any] | None = None
    user: str | None = None
    #: modelmix extension: the request's deadline in seconds, retries included (sent as
    #: ``extra_body={"timeout": 30}`` from the OpenAI SDK). Never forwarded upstream.
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("tools")
    @classmethod
    def _check_tools(cls, value: list[dict[str, Any]] | None) -> list[dict[str, Any]] | None:
        for tool in value or ():
            Tool.model_validate(tool)
        return value

    @field_validator("tool_choice")
    @classmethod
    def _check_tool_choice(cls, value: str | dict[str, Any] | None
                           ) -> str | dict[str, Any] | None:
        if isinstance(value, str) and value not in ("none", "auto", "required"):
            raise ValueError("tool_choice must be 'none', 'auto', 'required' or an object")
        if isinstance(value, dict):
            NamedToolChoice.model_validate(value)
        return value

    @field_validator("response_format")
    @classmethod
    def _check_response_format(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            ResponseFormat.model_validate(value)
        return value

    @field_validator("stop")
    @classmethod
    def _stop_limit(cls, value: str | list[str] | None) -> str | list[str] | None:
        if isinstance(value, list) and len(value) > 4:
            raise ValueError("at most 4 stop sequences")
        return value

    @model_validator(mode="after")
    def _top_logprobs_need_logprobs(self) -> ChatRequest:
        if self.top_logprobs and not self.logprobs:  # as OpenAI: refused, not ignored
            raise ValueError("top_logprobs needs logprobs: true")
        return self

    @property
    def choices(self) -> int:
        """How many completions the request asks for (``n``, 1 when not given)."""
        return self.n or 1

    @property
    def completion_limit(self) -> int | None:
        """The completion token limit asked for, whichever field carried it; the larger of
        the two when both did (both are forwarded, and an upstream may read either)."""
        if self.max_completion_tokens is None or self.max_tokens is None:
            return self.max_completion_tokens or self.max_tokens
        return max(self.max_completion_tokens, self.max_tokens)

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def needs(self) -> RequestNeeds:
        """Summarise what this request needs (modalities, tools, size)."""
        image = audio = file = False
        chars = 0
        for msg in self.messages:
            if isinstance(msg.content, list):
                for part in msg.content:
                    image = image or part.type == "image_url"
                    audio = audio or part.type == "input_audio"
                    file = file or part.type == "file"
            chars += len(msg.text())
        rf_type = (self.response_format or {}).get("type")
        return RequestNeeds(
            image_input=image,
            audio_input=audio,
            file_input=file,
            tools=bool(self.tools),
            json_mode=rf_type in ("json_object", "json_schema"),
            logprobs=bool(self.logprobs),
            prompt_tokens_estimate=estimate_tokens(chars) + 4 * len(self.messages),
            max_output_tokens=self.completion_limit or 0,
            choices=self.choices,
        )

    def prompt_token_bound(self) -> int:
        """An upper bound of the prompt tokens any upstream can bill for this request.

        Tokenizers in use (byte-level BPE, SentencePiece with byte fallback) emit at most
        one token per UTF-8 byte, so the bound is: the UTF-8 bytes of every text sent
        (message contents, names, tool calls, tool definitions, response format, other
        forwarded fields, as JSON, which only adds bytes), plus 8 tokens of chat template
        per message and 48 for the reply's priming and a template's default system
        prompt, plus :data:`IMAGE_TOKEN_BOUND` per
        image part and (base64 characters / 25 + 256) per audio part (40 tokens a second
        at 6 kbit/s, above Gemini's 32 a second), and every other field of a part (a
        refusal's text, a file's data) as JSON. Budget admission
        reserves this (server/_limits.py); routing uses the cheaper
        ``needs().prompt_tokens_estimate``.
        """
        total = _REQUEST_TOKEN_BOUND
        for msg in self.messages:
            total += len(msg.name.encode()) if msg.name else 0
            total += _MESSAGE_TOKEN_BOUND
            if isinstance(msg.content, str):
                total += len(msg.content.encode())
            elif msg.content is not None:
                total += sum(_part_token_bound(part) for part in msg.content)
            if msg.tool_calls:
                total += len(orjson.dumps(msg.tool_calls))
            if msg.model_extra:
                total += len(orjson.dumps(msg.model_extra))
        for extra in (self.tools, self.tool_choice, self.response_format, self.stop,
                      self.model_extra or None):
            if extra is not None:
                total += len(orjson.dumps(extra))
        return total

    def with_parts(self, parts: Mapping[tuple[int, int], ContentPart]) -> ChatRequest:
        """This request with the content part at each (message, part) position replaced.

        Only the lists holding replaced parts are new: other parts and their (possibly
        large) payloads are shared, not copied. Positions must hold parts."""
        if not parts:
            return self
        messages = list(self.messages)
        for m in sorted({m for m, _ in parts}):
            msg = messages[m]
            assert isinstance(msg.content, list)
            content = [parts.get((m, i), part) for i, part in enumerate(msg.content)]
            messages[m] = msg.model_copy(update={"content": content})
        return self.model_copy(update={"messages": messages})

    def media_parts(self) -> list[tuple[int, int, ContentPart]]:
        """(message index, part index, part) of every image, audio and file part."""
        return [(m, i, part)
                for m, msg in enumerate(self.messages) if isinstance(msg.content, list)
                for i, part in enumerate(msg.content) if part.type in _MEDIA_PARTS]

    def part(self, message: int, index: int) -> ContentPart:
        """The content part at (message, part). Raises IndexError / TypeError."""
        content = self.messages[message].content
        if not isinstance(content, list):
            raise TypeError(f"message {message} has no content parts")
        return content[index]

    def to_upstream(self, model: str) -> dict[str, Any]:
        """The body to send an OpenAI-compatible upstream serving ``model``."""
        body = self.model_dump(exclude_none=True, exclude={"model", "timeout"})
        body["model"] = model
        return body


def _part_token_bound(part: ContentPart) -> int:
    extra = len(orjson.dumps(part.model_extra)) if part.model_extra else 0
    if part.type == "image_url":
        return IMAGE_TOKEN_BOUND + extra
    if part.type == "input_audio" and part.input_audio is not None:
        return len(part.input_audio.data) // 25 + 256 + extra
    if part.type == "file" and part.file is not None:  # a token per 3 bytes of PDF + pages
        return len(part.file.file_data or "") // 4 + IMAGE_TOKEN_BOUND + extra
    if part.type == "file":
        return IMAGE_TOKEN_BOUND + extra
    return len((part.text or "").encode()) + extra  # text; a refusal's text is an extra


def estimate_tokens(chars: int) -> int:
    """Rough token count from characters (~4 chars per token for English, OpenAI's
    rule of thumb: https://help.openai.com/en/articles/4936856). Used only for policy
    filtering before a tokenizer is available."""
    return (chars + 3) // 4
