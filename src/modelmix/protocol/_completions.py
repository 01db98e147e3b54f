"""OpenAI legacy Completions (``POST /v1/completions``) over chat completions.

Mirrors https://platform.openai.com/docs/api-reference/completions. A completion request
becomes a chat request with one user message holding the prompt
(:meth:`CompletionRequest.to_chat`), so the model sees the prompt through its chat
template, not as raw text to continue; the chat answer is written back as a
``text_completion`` object (:func:`text_completion`) or stream
(:class:`CompletionStream`). What cannot be mapped is refused with a 400 naming the
field, never dropped: several prompts, token-id prompts, ``suffix``, ``best_of`` other
than ``n``, ``echo`` with ``logprobs``, chat-only fields.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from modelmix.protocol._chat import ChatChunk, ChatResponse, Usage
from modelmix.protocol._request import MAX_CHOICES

__all__ = ["DEFAULT_MAX_TOKENS", "CompletionRequest", "CompletionStream", "completion_id",
           "legacy_logprobs", "text_completion"]

#: ``max_tokens`` when the request gives none: the legacy API's default.
DEFAULT_MAX_TOKENS = 16

#: Fields passed to the chat request as they are.
_SAME = ("model", "stream", "stream_options", "temperature", "top_p", "n", "stop", "seed",
         "presence_penalty", "frequency_penalty", "logit_bias", "user", "timeout")
#: Chat-only fields, refused here rather than forwarded under a prompt.
_CHAT_ONLY = ("messages", "tools", "tool_choice", "functions", "function_call",
              "response_format", "parallel_tool_calls", "max_completion_tokens",
              "top_logprobs")


class CompletionRequest(BaseModel):
    """A ``POST /v1/completions`` body (strict like :class:`ChatRequest`; unknown fields
    are kept and forwarded with the chat request). ``max_tokens`` is completion tokens."""

    model_config = ConfigDict(extra="allow", strict=True)

    model: str = Field(min_length=1)
    prompt: Any
    suffix: str | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=MAX_CHOICES)
    stream: bool = False
    stream_options: dict[str, Any] | None = None
    logprobs: int | None = Field(default=None, ge=0, le=5)
    echo: bool = False
    stop: str | list[str] | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    best_of: int | None = Field(default=None, ge=1, le=20)
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    seed: int | None = None
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, value: Any) -> str:
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
            value = value[0]
        if isinstance(value, str):
            return value
        if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            raise ValueError(f"{len(value)} prompts in one request are not supported: send "
                             "one request per prompt (each is one chat request here)")
        if isinstance(value, list) and value:
            raise ValueError("token-id prompts are not supported: this gateway maps a "
                             "completion onto a chat request, which takes text")
        raise ValueError("prompt must be a string or a list of one string")

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, value: str | None) -> str | None:
        if value:
            raise ValueError("suffix (insertion) is not supported: a chat request has no "
                             "text after the answer")
        return value

    @model_validator(mode="after")
    def _mappable(self) -> CompletionRequest:
        chat_only = sorted(k for k in _CHAT_ONLY if k in (self.model_extra or {}))
        if chat_only:
            raise ValueError(f"{', '.join(chat_only)}: chat completions field(s); use "
                             "POST /v1/chat/completions")
        n = self.n or 1
        if self.best_of is not None and self.best_of != n:
            raise ValueError(f"best_of {self.best_of} with n {n}: only best_of == n is "
                             "supported (ranking extra samples by logprob is not done here)")
        if self.echo and self.logprobs is not None:
            raise ValueError("echo with logprobs is not supported: the prompt's token "
                             "logprobs are not available through chat")
        return self

    @property
    def prompt_text(self) -> str:
        text: str = self.prompt  # a string once validated
        return text

    def to_chat(self) -> dict[str, Any]:
        """The chat completion body: the prompt as one user message, ``max_tokens``
        :data:`DEFAULT_MAX_TOKENS` when not given, ``logprobs: k`` as ``logprobs: true,
        top_logprobs: k``; unknown fields as they came."""
        body: dict[str, Any] = dict(self.model_extra or {})
        for name in _SAME:
            value = getattr(self, name)
            if value is not None:
                body[name] = value
        body["messages"] = [{"role": "user", "content": self.prompt_text}]
        body["max_tokens"] = self.max_tokens or DEFAULT_MAX_TOKENS
        if self.logprobs is not None:
            body["logprobs"], body["top_logprobs"] = True, self.logprobs
        return body


def completion_id(chat_id: str) -> str:
    """The ``cmpl-`` id of a completion answered by chat completion ``chat_id``."""
    return "cmpl-" + chat_id.removeprefix("chatcmpl-")


def legacy_logprobs(chat: Any, offset: int, top: int) -> dict[str, Any] | None:
    """Chat ``logprobs`` (``{"content": [{token, logprob, top_logprobs}]}``) in the
    legacy shape: ``tokens``, ``token_logprobs``, ``top_logprobs`` (the ``top`` likeliest
    as ``{token: logprob}``, null for 0) and ``text_offset`` (characters from the
    prompt's start, so the first token's is ``offset``). None when there are none.
    What an upstream sent malformed (an entry that is not an object, ``top_logprobs``
    that is not a list) is skipped, never raised on."""
    content = chat.get("content") if isinstance(chat, dict) else None
    if not isinstance(content, list):
        return None
    tokens: list[str] = []
    token_logprobs: list[float | None] = []
    tops: list[dict[str, float | None]] = []
    offsets: list[int] = []
    for item in content:
        if not isinstance(item, dict):
            continue
        token = str(item.get("token", ""))
        tokens.append(token)
        token_logprobs.append(item.get("logprob"))
        alternatives = item.get("top_logprobs")
        alternatives = alternatives[:top] if isinstance(alternatives, list) else []
        tops.append({str(t.get("token", "")): t.get("logprob")
                     for t in alternatives if isinstance(t, dict)})
        offsets.append(offset)
        offset += len(token)
    return {"tokens": tokens, "token_logprobs": token_logprobs,
            "top_logprobs": tops if top else None, "text_offset": offsets}


def _choice(index: int, text: str, logprobs: dict[str, Any] | None,
            finish_reason: str | None) -> dict[str, Any]:
    return {"text": text, "index": index, "logprobs": logprobs,
            "finish_reason": finish_reason}


def text_completion(response: ChatResponse, request: CompletionRequest) -> dict[str, Any]:
    """The ``text_completion`` object answering ``request`` from a chat answer."""
    prompt = request.prompt_text
    choices = []
    for choice in response.choices:
        text = choice.message.content or ""
        logprobs = None
        if request.logprobs is not None:
            logprobs = legacy_logprobs(choice.logprobs, len(prompt), request.logprobs)
        choices.append(_choice(choice.index, prompt + text if request.echo else text,
                               logprobs, choice.finish_reason))
    usage = response.usage or Usage()
    return {"id": completion_id(response.id), "object": "text_completion",
            "created": response.created, "model": response.model, "choices": choices,
            "usage": usage.model_dump()}


@dataclass(slots=True)
class CompletionStream:
    """Turns one stream's chat chunks into ``text_completion`` chunks: per choice, the
    echoed prompt first (``echo``), then its text, logprobs (offsets running on) and
    finish reason; the usage chunk when the client asked for it."""

    request: CompletionRequest
    include_usage: bool = False
    _offsets: dict[int, int] = field(default_factory=dict)

    def convert(self, chunk: ChatChunk) -> list[dict[str, Any]]:
        """The completion chunks for ``chunk`` (none for a role-only chunk)."""
        base = {"id": completion_id(chunk.id), "object": "text_completion",
                "created": chunk.created, "model": chunk.model}
        out: list[dict[str, Any]] = []
        prompt = self.request.prompt_text
        for choice in chunk.choices:
            first = choice.index not in self._offsets
            offset = self._offsets.setdefault(choice.index, len(prompt))
            if first and self.request.echo:
                out.append({**base, "choices": [_choice(choice.index, prompt, None, None)]})
            text = choice.delta.content or ""
            logprobs = None
            if self.request.logprobs is not None:
                logprobs = legacy_logprobs(choice.logprobs, offset, self.request.logprobs)
            self._offsets[choice.index] = offset + len(text)
            if text or logprobs or choice.finish_reason is not None:
                out.append({**base, "choices": [_choice(choice.index, text, logprobs,
                                                        choice.finish_reason)]})
        if chunk.usage is not None and self.include_usage:
            out.append({**base, "choices": [], "usage": chunk.usage.model_dump()})
        return out
