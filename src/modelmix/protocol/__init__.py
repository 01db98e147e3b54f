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
from modelmix.protocol._echo import named
from modelmix.protocol._embeddings import (
    EmbeddingRequest,
    EmbeddingResponse,
    embedding_json,
    embedding_response,
    parse_embedding_request,
)
from modelmix.protocol._messages import CountTokensRequest, MessagesRequest
from modelmix.protocol._messages_out import (
    FINISH_TO_STOP_REASON,
    RAW_ARGUMENTS,
    STOP_REASON_TO_FINISH,
    MessageStream,
    message_json,
    messages_error_body,
    messages_event,
)
from modelmix.protocol._request import (
    MAX_CHOICES,
    ChatMessage,
    ChatRequest,
    ContentPart,
    FileData,
    RequestNeeds,
    StreamOptions,
    estimate_tokens,
)
from modelmix.protocol._responses import ResponsesRequest, TurnMessages
from modelmix.protocol._responses_out import (
    ResponseEvents,
    assistant_turn,
    new_response_id,
    request_echo,
    response_from_chat,
)
from modelmix.protocol._sse import DONE_EVENT, chunk_event, error_event, response_json

__all__ = [
    "DONE_EVENT",
    "FINISH_TO_STOP_REASON",
    "MAX_CHOICES",
    "RAW_ARGUMENTS",
    "STOP_REASON_TO_FINISH",
    "ChatChoice",
    "ChatChunk",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "ChunkChoice",
    "ContentPart",
    "CountTokensRequest",
    "Delta",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "FileData",
    "MessageStream",
    "MessagesRequest",
    "RequestNeeds",
    "ResponseEvents",
    "ResponseMessage",
    "ResponsesRequest",
    "StreamOptions",
    "TurnMessages",
    "Usage",
    "assistant_turn",
    "chunk_event",
    "embedding_json",
    "embedding_response",
    "error_event",
    "estimate_tokens",
    "message_json",
    "messages_error_body",
    "messages_event",
    "named",
    "new_completion_id",
    "new_response_id",
    "now",
    "parse_embedding_request",
    "request_echo",
    "response_from_chat",
    "response_json",
]
