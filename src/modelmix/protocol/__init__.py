"""OpenAI-compatible wire models: requests, responses, stream chunks, errors."""

from modelmix.protocol._chat import (
    ChatChoice,
    ChatChunk,
    ChatResponse,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    new_completion_id,
    now,
)
from modelmix.protocol._request import (
    ChatMessage,
    ChatRequest,
    ContentPart,
    FileData,
    RequestNeeds,
    StreamOptions,
    estimate_tokens,
)
from modelmix.protocol._sse import DONE_EVENT, chunk_event, error_event, response_json

__all__ = [
    "DONE_EVENT",
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ContentPart",
    "Delta",
    "FileData",
    "RequestNeeds",
    "ResponseMessage",
    "StreamOptions",
    "Usage",
    "chunk_event",
    "error_event",
    "estimate_tokens",
    "new_completion_id",
    "now",
    "response_json",
]
