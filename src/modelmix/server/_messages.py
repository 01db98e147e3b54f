"""Anthropic Messages API: ``POST /v1/messages`` and ``POST /v1/messages/count_tokens``.

A request becomes a chat completion request (protocol/_messages.py) and runs the
gateway's one pipeline (server/_dialect.py): key auth, body limits, guard, routing,
cache, budgets, usage (``endpoint = "messages"``). The answer, the stream and errors are
written back in Anthropic's shapes (protocol/_messages_out.py). The key may come as
``x-api-key`` (what the SDK's and Claude Code's ``ANTHROPIC_API_KEY`` send) or
``Authorization: Bearer``; ``anthropic-version`` and ``anthropic-beta`` are accepted and
not read (a beta feature arrives as a body field, refused when not mapped).

Example::

    client = anthropic.Anthropic(base_url="http://localhost:4000", api_key=key)
    client.messages.create(model="auto", max_tokens=256,
                           messages=[{"role": "user", "content": "Name a prime."}])
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelmix.engine import CallContext, Completion
from modelmix.errors import ModelmixError, PermissionDenied, invalid_request
from modelmix.protocol import (
    ChatChunk,
    ChatRequest,
    CountTokensRequest,
    MessagesRequest,
    MessageStream,
    estimate_tokens,
    message_json,
    messages_error_body,
    messages_event,
    named,
)
from modelmix.server._body_read import content_length, load_json_object, read_body
from modelmix.server._dialect import Dialect, as_error
from modelmix.server._gateway import Gateway, _request_id

__all__ = ["MESSAGES", "MessagesDialect", "routes"]

#: Response header saying ``count_tokens`` answered with an estimate, not a tokenizer.
HEADER_ESTIMATE = "x-modelmix-token-count"


def anthropic_error_response(exc: ModelmixError, request_id: str | None = None) -> Response:
    """An Anthropic-format error response (``{"type": "error", "error": {type, message}}``)
    with ``request-id`` / ``x-request-id`` and ``retry-after`` when known."""
    status, body = messages_error_body(exc, request_id)
    headers = {"x-request-id": request_id, "request-id": request_id} if request_id else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(orjson.dumps(body), status_code=status, media_type="application/json",
                    headers=headers)


def _validate(model: type[CountTokensRequest], data: dict[str, Any]) -> dict[str, Any]:
    """``data`` validated as ``model`` and mapped to a chat body. Raises InvalidRequest."""
    try:
        return model.model_validate(data).to_chat()
    except ValidationError as exc:
        raise invalid_request(exc) from exc


class MessagesDialect(Dialect):
    """Anthropic's Messages API over the chat pipeline (stateless: one for all requests)."""

    endpoint = "messages"

    def credentials(self, request: Request) -> str | None:
        """``x-api-key: <key>`` as ``Bearer <key>``; else the ``Authorization`` header."""
        key = request.headers.get("x-api-key")
        return f"Bearer {key}" if key else request.headers.get("authorization")

    def to_chat(self, data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        return _validate(MessagesRequest, data)

    def render(self, done: Completion, chat: ChatRequest, ctx: CallContext) -> bytes:
        return message_json(done.response, chat.stop)

    async def stream(self, chunks: AsyncIterator[ChatChunk], chat: ChatRequest,
                     ctx: CallContext) -> AsyncIterator[bytes]:
        state = MessageStream(model=chat.model, stop=chat.stop)
        try:
            async for chunk in chunks:
                for event in state.on_chunk(chunk):
                    yield event
        except Exception as exc:
            error = as_error(exc, ctx.request_id)
            yield messages_event("error", messages_error_body(error, ctx.request_id)[1])
            return
        for event in state.end():
            yield event

    def error(self, exc: ModelmixError, request_id: str | None = None) -> Response:
        return anthropic_error_response(exc, request_id)


#: The Messages API (``POST /v1/messages``).
MESSAGES = MessagesDialect()


async def count_tokens(gateway: Gateway, request: Request) -> Response:
    """``POST /v1/messages/count_tokens``: ``{"input_tokens": N}``, an *estimate* (about
    4 characters a token over the text, tool calls and tool definitions; images and PDFs
    not counted), marked by ``x-modelmix-token-count: estimate``. Nothing is sent upstream
    and no usage is recorded; the key (and its allowed models: 403) is checked and the
    body limits hold. Errors carry ``request-id``."""
    server = gateway.config.server
    request_id = _request_id(request)
    hold = None
    try:
        key = await gateway.auth.authenticate(MESSAGES.credentials(request))
        hold = await gateway.bodies.hold(content_length(request), fallback=server.max_body_bytes,
                                         timeout_s=server.body_timeout_s)
        data = load_json_object(await read_body(request, server.max_body_bytes,
                                                server.body_timeout_s))
        for extension in ("router", "tags", "cache"):  # modelmix's own fields, as on /messages
            data.pop(extension, None)
        body = _validate(CountTokensRequest, data)
        chat = ChatRequest.model_validate(body)
        if not gateway.service.router.permits(chat.model, key.allowed_models):
            raise PermissionDenied(f"this key may not use model {named('model', chat.model)}",
                                   param="model")
    except ModelmixError as exc:
        return anthropic_error_response(exc, request_id)
    except ValidationError as exc:
        return anthropic_error_response(invalid_request(exc), request_id)
    finally:
        if hold is not None:
            hold.release()
    return Response(orjson.dumps({"input_tokens": _estimate(chat, body)}),
                    media_type="application/json",
                    headers={HEADER_ESTIMATE: "estimate", "request-id": request_id})


def _estimate(chat: ChatRequest, body: dict[str, Any]) -> int:
    """Prompt tokens, estimated: message text plus tool calls and tool definitions."""
    calls = [m.tool_calls for m in chat.messages if m.tool_calls]
    extra = len(orjson.dumps([calls, body.get("tools") or []])) if calls or chat.tools else 0
    return chat.needs().prompt_tokens_estimate + estimate_tokens(extra)


def routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes this module serves, under ``/v1`` (app.py adds the same without it)."""

    async def messages(request: Request) -> Response:
        return await gateway.handle(request, MESSAGES)

    async def tokens(request: Request) -> Response:
        return await count_tokens(gateway, request)

    return [Route("/v1/messages", messages, methods=["POST"]),
            Route("/v1/messages/count_tokens", tokens, methods=["POST"])]
