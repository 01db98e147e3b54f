"""Gateway service: HTTP-facing logic for chat completions, over :class:`ChatService`.

Route handlers in :mod:`modelmix.server.app` only connect Starlette to this class.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelmix._service import CallContext, ChatService, StreamCompletion
from modelmix.catalog import Config
from modelmix.errors import ClientDisconnected, InvalidRequest, ModelmixError, PayloadTooLarge
from modelmix.protocol import (
    DONE_EVENT,
    ChatRequest,
    chunk_event,
    error_event,
    response_json,
)
from modelmix.routing import RouteDecision
from modelmix.server._auth import Authenticator, KeyInfo

__all__ = ["Gateway", "error_response"]

log = logging.getLogger("modelmix.gateway")

_T = TypeVar("_T")

HEADER_DEPLOYMENT = "x-modelmix-deployment"
HEADER_REASON = "x-modelmix-route-reason"
HEADER_REQUEST_ID = "x-request-id"


def error_response(exc: ModelmixError, request_id: str | None = None) -> Response:
    """An OpenAI-format error response with the error's status code."""
    headers = {HEADER_REQUEST_ID: request_id} if request_id else {}
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        headers["retry-after"] = str(max(1, round(retry_after)))
    return Response(orjson.dumps(exc.to_openai()), status_code=exc.status_code,
                    media_type="application/json", headers=headers)


def _header_safe(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")[:300]


def _route_headers(decision: RouteDecision, deployment: str, request_id: str) -> dict[str, str]:
    return {
        HEADER_DEPLOYMENT: deployment,
        HEADER_REASON: _header_safe(decision.reason),
        HEADER_REQUEST_ID: request_id,
    }


def parse_chat_request(body: bytes, config: Config) -> ChatRequest:
    """Parse and validate a chat completion body. Raises InvalidRequest (400)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "utf-8" in str(exc).lower():
            raise InvalidRequest("request body is not valid UTF-8") from exc
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = ".".join(str(p) for p in first["loc"]) or None
        more = f" (and {exc.error_count() - 1} more errors)" if exc.error_count() > 1 else ""
        raise InvalidRequest(f"{loc}: {first['msg']}{more}", param=loc,
                             code="invalid_value") from exc
    limit = request.completion_limit
    if limit is not None and limit > config.server.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens {limit} exceeds this gateway's limit of "
            f"{config.server.max_tokens_limit}",
            param="max_tokens",
            code="invalid_value",
        )
    return request


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (PayloadTooLarge, 413)."""
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_big = int(declared) > limit
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
        if too_big:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for part in request.stream():
        size += len(part)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await ``work``, racing it against ``http.disconnect``: when the client leaves
    first, cancel ``work`` (and so the upstream call) and raise ClientDisconnected."""
    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():  # the client left, or this handler was cancelled
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected("client disconnected")
    return task.result()


class Gateway:
    """Chat completions over HTTP: auth, parse, route, run, answer."""

    def __init__(self, service: ChatService, auth: Authenticator):
        self.service = service
        self.auth = auth
        self.config = service.config

    async def chat_completions(self, request: Request) -> Response:
        ctx = CallContext(request_id=request.headers.get(HEADER_REQUEST_ID) or
                          CallContext().request_id)
        model: str | None = None
        try:
            key = await self.auth.authenticate(request.headers.get("authorization"))
            _apply_key(ctx, key)
            body = await read_body(request, self.config.server.max_body_bytes)
            chat = parse_chat_request(body, self.config)
            model = chat.model
        except ModelmixError as exc:
            self.service.record_rejected(ctx, exc, model)  # also logged by the log sink
            return error_response(exc, ctx.request_id)
        if chat.stream:
            return await self._stream(request, chat, ctx)
        return await self._complete(request, chat, ctx)

    async def _complete(self, request: Request, chat: ChatRequest, ctx: CallContext
                        ) -> Response:
        try:
            done = await _unless_disconnected(request, self.service.complete(chat, ctx))
        except ModelmixError as exc:
            return error_response(exc, ctx.request_id)
        headers = _route_headers(done.decision, done.deployment.name, ctx.request_id)
        return Response(response_json(done.response), media_type="application/json",
                        headers=headers)

    async def _stream(self, request: Request, chat: ChatRequest, ctx: CallContext
                      ) -> Response:
        try:
            started = await _unless_disconnected(request, self.service.stream(chat, ctx))
        except ModelmixError as exc:
            return error_response(exc, ctx.request_id)
        headers = _route_headers(started.decision, started.deployment.name, ctx.request_id)
        headers["cache-control"] = "no-cache"
        return _SSEResponse(started, _sse(started.chunks, chat.include_usage),
                                 media_type="text/event-stream", headers=headers)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` body, with each entry's availability under ``modelmix``."""
        created = int(time.time())
        data: list[dict[str, Any]] = []
        for dep in self.config.deployments:
            avail = self.config.availability(dep)
            data.append({
                "id": dep.name, "object": "model", "created": created, "owned_by": dep.provider,
                "modelmix": {
                    "kind": "deployment", "model": dep.model, "available": avail.available,
                    "unavailable_reason": avail.reason or None, "tier": dep.tier.value,
                    "hosting": dep.hosting.value, "region": dep.region,
                    "context_window": dep.context_window,
                    "input_cost_per_mtok": dep.input_cost_per_mtok,
                    "output_cost_per_mtok": dep.output_cost_per_mtok,
                },
            })
        for name in self.config.model_names()[len(self.config.deployments):]:
            data.append({"id": name, "object": "model", "created": created,
                         "owned_by": "modelmix", "modelmix": {"kind": "group"}})
        return {"object": "list", "data": data}

    def ready(self) -> tuple[bool, list[str]]:
        """Whether at least one deployment is available, and which are."""
        names = [d.name for d in self.config.deployments
                 if self.config.availability(d).available]
        return bool(names), names


def _apply_key(ctx: CallContext, key: KeyInfo) -> None:
    ctx.key_id = key.key_id
    ctx.allowed_models = key.allowed_models
    ctx.admission = key.admission


class _SSEResponse(StreamingResponse):
    """A streaming response that always closes its stream, even when the client left
    before the first byte, so the upstream call ends and the request is recorded."""

    def __init__(self, started: StreamCompletion, content: AsyncIterator[bytes],
                 **kw: Any):
        super().__init__(content, **kw)
        self._started = started

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self._started.aclose()


async def _sse(chunks: AsyncIterator[Any], include_usage: bool) -> AsyncIterator[bytes]:
    try:
        async for chunk in chunks:
            yield chunk_event(chunk, include_usage)
    except ModelmixError as exc:
        yield error_event(exc.to_openai())
        return
    yield DONE_EVENT
