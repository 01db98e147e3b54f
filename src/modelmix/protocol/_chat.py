"""OpenAI Chat Completions response and stream-chunk models.

Mirrors https://platform.openai.com/docs/api-reference/chat/object. Lenient (unknown
fields kept) because they are read from upstreams; requests live in ``_request``.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

__all__ = [
    "ChatChoice",
    "ChatChunk",
    "ChatResponse",
    "ChunkChoice",
    "Delta",
    "ResponseMessage",
    "Usage",
    "new_completion_id",
    "now",
]

class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


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
