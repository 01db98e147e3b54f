"""Gateway service: HTTP-facing logic for chat completions, over :class:`ChatService`.

Route handlers in :mod:`modelmix.server.app` only connect Starlette to this class.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator, Awaitable
from typing import Any, TypeVar

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from modelmix.catalog import Config, known_source
from modelmix.engine import (
    CACHE_HEADER,
    CallContext,
    ChatService,
    StreamCompletion,
    SystemInfo,
    parse_cache_control,
)
from modelmix.errors import (
    ClientDisconnected,
    InvalidRequest,
    ModelmixError,
    NoDeployment,
    invalid_request,
)
from modelmix.guard import TAGS_HEADER, request_tags
from modelmix.protocol import ChatRequest
from modelmix.providers import availability
from modelmix.routing import RouteDecision, RoutingHints, parse_hints
from modelmix.server._auth import Authenticator, KeyInfo
from modelmix.server._bodies import BodyBudget, BodyHold
from modelmix.server._body_read import (
    content_length,
    load_json_object,
    read_body,
)
from modelmix.server._dialect import CHAT, Dialect, as_error, openai_error_response

__all__ = ["Gateway", "error_response", "routing_hints"]

log = logging.getLogger("modelmix.gateway")

_T = TypeVar("_T")

HEADER_DEPLOYMENT = "x-modelmix-deployment"
HEADER_REASON = "x-modelmix-route-reason"
HEADER_QUALITY = "x-modelmix-predicted-quality"
HEADER_SCORE = "x-modelmix-route-score"
HEADER_THRESHOLD = "x-modelmix-router-threshold"
HEADER_REQUEST_ID = "x-request-id"
#: A system of models' name and its ``step:deployment`` entries in execution order.
HEADER_SYSTEM = "x-modelmix-system"
HEADER_STEPS = "x-modelmix-steps"
#: How media were converted to text for the deployment that served (``ocr,pdf,asr``).
HEADER_CONVERSIONS = "x-modelmix-conversions"
#: The request's cost at catalog prices, USD (non-streaming answers; a stream's cost is
#: known only at its end, after the headers: it is in the usage record, and the library's
#: stream objects have ``cost_usd`` once iterated).
HEADER_COST = "x-modelmix-cost-usd"
#: On a semantic cache hit: the cosine similarity of the cached prompt (docs/cache.md).
HEADER_CACHE_SIMILARITY = "x-modelmix-cache-similarity"


def error_response(exc: ModelmixError, request_id: str | None = None) -> Response:
    """An OpenAI-format error response with the error's status code."""
    return openai_error_response(exc, request_id)


_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _header_safe(text: str, limit: int = 1000) -> str:
    """``text`` as a header value: latin-1, no control characters (a model's answer can
    reach the route reason through a verifier), at most ``limit`` characters (a longer
    one ends in ``...``)."""
    if len(text) > limit:
        text = text[:limit - 3] + "..."
    return _CONTROL.sub(" ", text.encode("latin-1", "replace").decode("latin-1"))


def _route_headers(decision: RouteDecision, deployment: str, request_id: str) -> dict[str, str]:
    """Which deployment served and why; with the learned router also its predicted
    quality for the serving deployment, the score and the threshold it was compared to."""
    headers = {
        HEADER_DEPLOYMENT: deployment,
        HEADER_REASON: _header_safe(decision.reason),
        HEADER_REQUEST_ID: request_id,
    }
    quality = decision.predicted_quality.get(deployment)
    if quality is not None:
        headers[HEADER_QUALITY] = f"{quality:.4f}"
    if decision.score is not None:
        headers[HEADER_SCORE] = f"{decision.score:.4f}"
    if decision.threshold is not None:
        headers[HEADER_THRESHOLD] = f"{decision.threshold:.4f}"
    return headers


def _system_headers(headers: dict[str, str], system: SystemInfo | None) -> None:
    if system is not None:
        headers[HEADER_SYSTEM] = _header_safe(system.name)
        headers[HEADER_STEPS] = _header_safe(system.steps, 4000)


def _cache_headers(headers: dict[str, str], ctx: CallContext) -> None:
    lookup = ctx.cache
    if lookup is not None and lookup.similarity is not None and lookup.similarity < 1:
        headers[HEADER_CACHE_SIMILARITY] = f"{lookup.similarity:.4f}"


def _conversion_headers(headers: dict[str, str], ctx: CallContext) -> None:
    if ctx.conversions:
        headers[HEADER_CONVERSIONS] = ",".join(ctx.conversions)


def routing_hints(data: dict[str, Any]) -> RoutingHints | None:
    """Take the modelmix ``router`` object out of a chat body (so it is never forwarded
    upstream) and validate it. Raises InvalidRequest (400) naming the bad field."""
    return parse_hints(data.pop("router", None))


_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _request_id(request: Request) -> str:
    """The client's ``x-request-id`` when it is short and plain, else a new one."""
    given = request.headers.get(HEADER_REQUEST_ID)
    return given if given and _REQUEST_ID.match(given) else uuid.uuid4().hex


def _model_name(data: dict[str, Any]) -> str | None:
    """The body's ``model`` for the usage record of a rejected request (truncated)."""
    model = data.get("model")
    return model[:200] if isinstance(model, str) else None


def parse_chat_request(body: bytes, config: Config) -> ChatRequest:
    """Parse and validate a chat completion body. Raises InvalidRequest (400)."""
    return validate_chat_request(load_json_object(body), config)


def validate_chat_request(data: dict[str, Any], config: Config) -> ChatRequest:
    """Validate a parsed chat completion body. Raises InvalidRequest (400)."""
    try:
        request = ChatRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from exc
    limit = request.completion_limit
    if limit is not None and limit > config.server.max_tokens_limit:
        raise InvalidRequest(
            f"max_tokens {limit} exceeds this gateway's limit of "
            f"{config.server.max_tokens_limit}",
            param="max_tokens",
            code="invalid_value",
        )
    return request


async def _wait_disconnect(request: Request) -> None:
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            return


async def _unless_disconnected(request: Request, work: Awaitable[_T]) -> _T:
    """Await ``work``, racing it against ``http.disconnect``: when the client leaves
    first, cancel ``work`` (and so the upstream call) and raise ClientDisconnected.

    ``work`` runs in this task and only the watch gets a task of its own: one task and
    no ``asyncio.wait`` per request (about 7 µs less, benchmarks/overhead/RESULTS.md).
    """
    handler = asyncio.current_task()
    assert handler is not None
    state = {"running": True, "left": False}

    def client_left(watch: asyncio.Future[None]) -> None:
        if state["running"] and not watch.cancelled():
            state["left"] = True
            handler.cancel()

    watch = asyncio.ensure_future(_wait_disconnect(request))
    watch.add_done_callback(client_left)
    try:
        return await work
    except asyncio.CancelledError:
        # Ours alone (no one else cancelled this handler): the client left.
        if state["left"] and handler.uncancel() == 0:
            raise ClientDisconnected("client disconnected") from None
        raise
    finally:
        state["running"] = False
        watch.cancel()


class Gateway:
    """Chat completions over HTTP: auth, parse, route, run, answer."""

    def __init__(self, service: ChatService, auth: Authenticator):
        self.service = service
        self.auth = auth
        self.config = service.config
        self.bodies = BodyBudget(self.config.server.max_inflight_body_bytes)

    async def chat_completions(self, request: Request) -> Response:
        """``POST /v1/chat/completions``."""
        return await self.handle(request, CHAT)

    async def handle(self, request: Request, dialect: Dialect) -> Response:
        """Run one generating request of ``dialect``'s API through the whole pipeline
        (server/_dialect.py): the answer, a stream, or an error in that API's format."""
        ctx = CallContext(request_id=_request_id(request), endpoint=dialect.endpoint)
        hold = BodyHold(None, 0)
        try:
            response = await self._chat(request, ctx, hold, dialect)
        except BaseException:
            hold.release()
            raise
        response.headers[CACHE_HEADER] = ctx.cache.status if ctx.cache else "bypass"
        if isinstance(response, _SSEResponse):  # the body is held until the stream ends
            response.hold = hold
        else:
            hold.release()
        return response

    async def read_json(self, request: Request, ctx: CallContext, hold: BodyHold,
                        credentials: str | None) -> tuple[KeyInfo, dict[str, Any]]:
        """Authenticate ``credentials`` (an ``Authorization`` value) into ``ctx``, wait
        for room for the body (``hold`` then holds it; server/_bodies.py), read it and
        parse it as a JSON object. Raises ModelmixError: 401 / 403 / 503 (auth), 408,
        413, 400 (body)."""
        server = self.config.server
        key = await self.auth.authenticate(credentials)
        _apply_key(ctx, key)
        held = await self.bodies.hold(content_length(request), fallback=server.max_body_bytes,
                                      timeout_s=server.body_timeout_s)
        hold._budget, hold.size = held._budget, held.size
        data = load_json_object(
            await read_body(request, server.max_body_bytes, server.body_timeout_s))
        return key, data

    async def _chat(self, request: Request, ctx: CallContext, hold: BodyHold,
                    dialect: Dialect) -> Response:
        model: str | None = None
        try:
            key, data = await self.read_json(request, ctx, hold, dialect.credentials(request))
            model = _model_name(data)
            ctx.hints = routing_hints(data)
            ctx.tags = request_tags(data.pop("tags", None), request.headers.get(TAGS_HEADER))
            ctx.cache_control = parse_cache_control(  # docs/cache.md
                data.pop("cache", None), request.headers.get("cache-control"), key.cache)
            chat = validate_chat_request(dialect.to_chat(data, ctx), self.config)
        except ModelmixError as exc:
            self.service.record_rejected(ctx, exc, model)  # also logged by the log sink
            return dialect.error(exc, ctx.request_id)
        if chat.stream:
            return await self._stream(request, chat, ctx, dialect)
        return await self._complete(request, chat, ctx, dialect)

    async def _complete(self, request: Request, chat: ChatRequest, ctx: CallContext,
                        dialect: Dialect) -> Response:
        try:
            done = await _unless_disconnected(request, self.service.complete(chat, ctx))
        except ModelmixError as exc:
            return dialect.error(exc, ctx.request_id)
        headers = _route_headers(done.decision, done.deployment.name, ctx.request_id)
        headers[HEADER_COST] = f"{done.cost_usd:.8f}"
        _cache_headers(headers, ctx)
        _system_headers(headers, done.system)
        _conversion_headers(headers, ctx)
        try:
            body = dialect.render(done, chat, ctx)
        except Exception as exc:  # an upstream answer the dialect cannot write back: 502
            return dialect.error(as_error(exc, ctx.request_id), ctx.request_id)
        return Response(body, media_type="application/json", headers=headers)

    async def _stream(self, request: Request, chat: ChatRequest, ctx: CallContext,
                      dialect: Dialect) -> Response:
        try:
            started = await _unless_disconnected(request, self.service.stream(chat, ctx))
        except ModelmixError as exc:
            return dialect.error(exc, ctx.request_id)
        headers = _route_headers(started.decision, started.deployment.name, ctx.request_id)
        headers["cache-control"] = "no-cache"
        _cache_headers(headers, ctx)
        _system_headers(headers, started.system)
        _conversion_headers(headers, ctx)
        return _SSEResponse(started, dialect.stream(started.chunks, chat, ctx),
                            media_type="text/event-stream", headers=headers)

    def models(self) -> dict[str, Any]:
        """``GET /v1/models`` body, with each entry's availability under ``modelmix``."""
        created = int(time.time())
        data: list[dict[str, Any]] = []
        for dep in self.config.deployments:
            avail = availability(dep)
            data.append({
                "id": dep.name, "object": "model", "created": created, "owned_by": dep.provider,
                "modelmix": {
                    "kind": "deployment", "mode": dep.mode, "model": dep.model,
                    "available": avail.available,
                    "unavailable_reason": avail.reason or None, "tier": dep.tier.value,
                    "hosting": dep.hosting.value, "region": dep.region,
                    "context_window": dep.context_window,
                    "input_cost_per_mtok": dep.input_cost_per_mtok,
                    "output_cost_per_mtok": dep.output_cost_per_mtok,
                    "max_output_tokens": dep.max_output_tokens,
                    "supports_tools": dep.supports_tools,
                    "supports_json_mode": dep.supports_json_mode,
                    "input_modalities": [m.value for m in dep.input_modalities],
                    # which of these came from the known-models table (None: the config)
                    "metadata_source": known_source(dep.known_fields),
                },
            })
        for name in self.config.model_names()[len(self.config.deployments):]:
            data.append({"id": name, "object": "model", "created": created,
                         "owned_by": "modelmix", "modelmix": {"kind": "group"}})
        for system in self.service.systems.systems.values():
            data.append({"id": system.model, "object": "model", "created": created,
                         "owned_by": "modelmix", "modelmix": {
                             "kind": "system", "description": system.description,
                             "steps": list(system.order), "policy": system.policy}})
        return {"object": "list", "data": data}

    def model(self, model_id: str) -> Response:
        """``GET /v1/models/{model_id}``: that entry of :meth:`models`, or a 404
        ``model_not_found`` in the OpenAI error format."""
        for entry in self.models()["data"]:
            if entry["id"] == model_id:
                return Response(orjson.dumps(entry), media_type="application/json")
        return error_response(NoDeployment(f"model {model_id[:200]!r} does not exist",
                                           code="model_not_found", param="model"))

    def ready(self) -> tuple[bool, list[str]]:
        """Whether at least one deployment is available, and which are."""
        names = [d.name for d in self.config.deployments
                 if availability(d).available]
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
        self.hold: BodyHold | None = None  # the request body's room, freed at the end

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            try:
                await self._started.aclose()
            finally:
                if self.hold is not None:
                    self.hold.release()
