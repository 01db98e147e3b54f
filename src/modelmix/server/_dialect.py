"""How one HTTP API maps onto the chat completions pipeline (docs/endpoints.md).

Every generating endpoint (``/v1/chat/completions``, ``/v1/responses``, ``/v1/messages``,
``/v1/completions``) runs the same pipeline in :class:`~modelmix.server._gateway.Gateway`:
auth, body limits, routing hints, guard, routing, cache, admission, execution, usage. A
:class:`Dialect` is what differs: where the key is, how the body becomes a chat
completion request, how the answer, the stream and errors are written back. The base
class is OpenAI Chat Completions itself.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from modelmix.engine import CallContext, Completion
from modelmix.errors import ModelmixError, ProviderError
from modelmix.protocol import (
    DONE_EVENT,
    ChatChunk,
    ChatRequest,
    chunk_event,
    error_event,
    response_json,
)

__all__ = ["CHAT", "Dialect", "as_error", "openai_error_response"]

log = logging.getLogger("modelmix.gateway")


def as_error(exc: Exception, request_id: str | None) -> ModelmixError:
    """``exc`` as the error to answer with: itself when a ModelmixError, else (an
    upstream answer a dialect could not write back, or a bug) a 502 ``upstream_error``
    that shows nothing of it, logged with its traceback and the request id."""
    if isinstance(exc, ModelmixError):
        return exc
    log.error("request %s: the answer could not be written in the endpoint's format",
              request_id, exc_info=exc)
    return ProviderError("the upstream's answer could not be written in this API's format "
                         f"(request {request_id})", code="invalid_upstream_response")


def openai_error_response(exc: ModelmixError, request_id: str | None = None) -> Response:
    """An OpenAI-format error response (``{"error": {message, type, param, code}}``)
    with the error's status code, ``x-request-id`` and ``retry-after`` when known."""
    import orjson

    headers = {"x-request-id": request_id} if request_id else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(orjson.dumps(exc.to_openai()), status_code=exc.status_code,
                    media_type="application/json", headers=headers)


class Dialect:
    """OpenAI Chat Completions; subclasses override what their API does differently.

    Attributes:
        endpoint: the name written to the usage row's ``endpoint`` column.
    """

    endpoint = "chat"

    def credentials(self, request: Request) -> str | None:
        """The ``Authorization`` header value to authenticate (``Bearer <key>``)."""
        return request.headers.get("authorization")

    def to_chat(self, data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        """The body as a chat completion body (``router``, ``tags`` and ``cache`` already
        taken out). Raises InvalidRequest (400) naming the field it cannot map."""
        return data

    def render(self, done: Completion, chat: ChatRequest, ctx: CallContext) -> bytes:
        """The JSON body answering a finished non-streaming call."""
        return response_json(done.response)

    async def stream(self, chunks: AsyncIterator[ChatChunk], chat: ChatRequest,
                     ctx: CallContext) -> AsyncIterator[bytes]:
        """Server-sent events for a stream of chat chunks; an error after the headers
        went out is one error event, then the stream ends (any exception: see
        :func:`as_error`; the try is around the whole loop, nothing per chunk)."""
        include_usage = chat.include_usage
        try:
            async for chunk in chunks:
                yield chunk_event(chunk, include_usage)
        except Exception as exc:
            yield error_event(as_error(exc, ctx.request_id).to_openai())
            return
        yield DONE_EVENT

    def error(self, exc: ModelmixError, request_id: str | None = None) -> Response:
        """The error response in this API's format."""
        return openai_error_response(exc, request_id)


#: OpenAI Chat Completions (``POST /v1/chat/completions``).
CHAT = Dialect()
