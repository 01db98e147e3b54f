"""OpenAI-compatible wire models: requests, responses, stream chunks, errors."""

from modelmix.protocol._chat import (
    ChatChoice,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    ContentPart,
    Delta,
    RequestNeeds,
    ResponseMessage,
    StreamOptions,
    Usage,
    estimate_tokens,
    new_completion_id,
    now,
)

__all__ = [
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "RequestNeeds",
    "ResponseMessage",
    "StreamOptions",
    "Usage",
    "estimate_tokens",
    "new_completion_id",
    "now",
]
