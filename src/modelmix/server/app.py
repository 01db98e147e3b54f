"""The ASGI app: routes connect HTTP to :class:`~modelmix.server._gateway.Gateway`.

Run it with ``modelmix serve`` or ``uvicorn --factory modelmix.server.app:create_app``.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route

from modelmix.catalog import Config, config_from_env
from modelmix.engine import ChatService
from modelmix.errors import InvalidRequest, ModelmixError, NoDeployment
from modelmix.guard import guard_from_config
from modelmix.observability._metrics import instrument
from modelmix.observability._tracing import Tracing
from modelmix.server import _completions, _embeddings, _messages, _responses, _ui
from modelmix.server._auth import Authenticator
from modelmix.server._feedback import FeedbackEndpoint, RecentRequests
from modelmix.server._gateway import Gateway, error_response
from modelmix.server._router_admin import build_router_admin, router_admin_routes
from modelmix.server.keys import KeyStore, VirtualKeyAuth, key_admin_routes
from modelmix.state import shared_redis
from modelmix.store import FeedbackStore, UsageSink

__all__ = ["create_app"]

log = logging.getLogger("modelmix.server")


def create_app(
    config: Config | None = None,
    *,
    service: ChatService | None = None,
    auth: Authenticator | None = None,
    usage: UsageSink | None = None,
    tracing: Tracing | None = None,
    feedback: FeedbackStore | None = None,
    policy_env: bool = True,
) -> Starlette:
    """Build the gateway app (its start-up warms the ``auto`` strategy: :func:`_warm`).

    Args:
        config: the catalog; ``MODELMIX_CONFIG`` (a YAML path) or the embedded default
            when omitted.
        service: a prebuilt chat service (tests inject fakes through it).
        auth: how keys are checked; by default :class:`VirtualKeyAuth` with the master
            key from ``server.master_key_env`` and virtual keys in the store database
            (``MODELMIX_DB_URL`` or ``store.url``). A VirtualKeyAuth also mounts the
            ``/key/*`` admin routes. With ``$MODELMIX_REDIS_URL`` (or
            ``state.redis_url``) set, the service and the keys share state in Redis.
        usage: where usage records go when ``service`` is not given; by default the
            store named by ``config.store`` (``$MODELMIX_DB_URL`` overrides its URL).
        tracing: OpenTelemetry tracing; from the ``OTEL_*`` variables when omitted, and
            off (nothing imported) when they say nothing. See docs/observability.md.
        feedback: where ``POST /v1/feedback`` stores scores and looks up request ids; by
            default the usage database (none when ``store.enabled`` is false).
        policy_env: whether ``$MODELMIX_POLICY`` may override ``config.policy`` when
            ``service`` is not given (``modelmix serve --policy`` passes False, having
            put its choice in the config).

    Raises:
        ConfigError: a bad catalog, policy or store URL.
    """
    if service is None:
        config = config or config_from_env()
        if usage is None:
            from modelmix.store import build_usage_sink

            usage = build_usage_sink(config.store)
        guard = guard_from_config(config, os.environ if policy_env else None)
        service = ChatService(config, usage=usage, guard=guard,
                              shared=shared_redis(config, os.environ))
    config = service.config
    if auth is None:
        auth = VirtualKeyAuth(os.environ.get(config.server.master_key_env) or None,
                              KeyStore.from_config(config), shared=service.shared,
                              request_timeout_s=config.reliability.timeout_s)
    gateway = Gateway(service, auth)
    feedback_endpoint = _feedback_endpoint(service, auth, feedback)
    router_admin = build_router_admin(service, auth)  # /router/*, SIGHUP, broadcasts
    tracing = tracing or Tracing.from_env(os.environ)
    metrics, middleware = instrument(service, tracing)

    async def chat_completions(request: Request) -> Response:
        return await gateway.chat_completions(request)

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def metrics_endpoint(request: Request) -> Response:
        return metrics.response(request.headers.get("accept", ""))

    async def ready(request: Request) -> Response:
        # Readiness is about this replica's deployments. Shared state is reported but does
        # not flip readiness: every replica shares the one Redis, so taking them all out of
        # the load balancer would also refuse the requests that need no shared limit
        # (docs/deploy.md).
        ok, names = gateway.ready()
        body: dict[str, object] = {"status": "ready" if ok else "unavailable",
                                   "available_deployments": names}
        if service.shared is not None:
            body["shared_state"] = "ok" if await service.shared.ping() else "unreachable"
        return JSONResponse(body, status_code=200 if ok else 503)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await _warm(service)
        undo_sighup = router_admin.install_sighup()
        if service.shared is not None:  # after every part has subscribed to its channels
            log.info("shared state: %r (budgets, rate limits, breakers, key changes and "
                     "the cache hold across replicas; on_redis_down=%s)", service.shared,
                     service.config.state.on_redis_down)
            await service.shared.start()
        try:
            yield
        finally:
            undo_sighup()
            if isinstance(auth, VirtualKeyAuth):  # lands key settles while Redis is open
                await auth.aclose()
            await service.aclose()
            feedback_endpoint.close()
            if tracing is not None:
                tracing.close()

    api: list[BaseRoute] = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        *_model_routes(gateway),
        Route("/v1/feedback", feedback_endpoint.handle, methods=["POST"]),
        *_responses.routes(gateway),
        *_messages.routes(gateway),
        *_completions.routes(gateway),
        *_embeddings.routes(gateway),
    ]
    app = Starlette(
        routes=[
            *api,
            *_without_v1(api),
            Route("/health", health, methods=["GET"]),
            Route("/ready", ready, methods=["GET"]),
            Route("/metrics", metrics_endpoint, methods=["GET"]),
            *_ui.routes(gateway),
            *router_admin_routes(router_admin),
            *(key_admin_routes(auth, config, service.systems.model_names())
              if isinstance(auth, VirtualKeyAuth) else []),
        ],
        exception_handlers={
            HTTPException: _http_error,
            ClientDisconnect: _client_left,
            Exception: _unexpected_error,
        },
        middleware=middleware,
        lifespan=lifespan,
    )
    app.state.gateway = gateway
    app.state.metrics = metrics
    return app


def _model_routes(gateway: Gateway) -> list[BaseRoute]:
    """``GET /v1/models`` and ``GET /v1/models/{id}`` (ids may hold ``/``)."""

    async def models(request: Request) -> Response:
        try:
            await gateway.auth.authenticate(request.headers.get("authorization"))
        except ModelmixError as exc:
            return error_response(exc)
        return JSONResponse(gateway.models())

    async def model(request: Request) -> Response:
        try:
            await gateway.auth.authenticate(request.headers.get("authorization"))
        except ModelmixError as exc:
            return error_response(exc)
        return gateway.model(request.path_params["model_id"])

    return [Route("/v1/models", models, methods=["GET"]),
            Route("/v1/models/{model_id:path}", model, methods=["GET"])]


def _without_v1(routes: list[BaseRoute]) -> list[BaseRoute]:
    """The same API routes without the ``/v1`` prefix (``/chat/completions``,
    ``/models``...), as OpenAI-compatible servers accept both (docs/endpoints.md)."""
    out: list[BaseRoute] = []
    for route in routes:
        if isinstance(route, Route) and route.path.startswith("/v1/"):
            out.append(Route(route.path[3:], route.endpoint, methods=route.methods))
        elif isinstance(route, Mount) and route.path.startswith("/v1/"):
            out.append(Mount(route.path[3:], routes=route.routes))
    return out


def _feedback_endpoint(service: ChatService, auth: Authenticator,
                       store: FeedbackStore | None) -> FeedbackEndpoint:
    """``POST /v1/feedback`` over ``store``, by default the usage database (none when
    ``store.enabled`` is false); the service tells it of every finished request."""
    config = service.config
    if store is None and config.store.enabled:
        from modelmix.store import resolve_db_url

        store = FeedbackStore(resolve_db_url(config.store))
    recent = RecentRequests()
    service.observers.append(recent)
    return FeedbackEndpoint(auth, store, recent)


async def _warm(service: ChatService) -> None:
    """Build the ``auto`` strategy and load its model in a worker thread, so the first
    request does not wait for it (the learned router never raises here: it falls back)."""
    try:
        await asyncio.to_thread(service.router.warm)
    except ModelmixError as exc:  # requests will get the same error, with context
        log.warning("routing strategy %r not ready: %s", service.config.router, exc.message)
    if service.guard is not None:  # the data guard's detector, likewise
        await asyncio.to_thread(service.guard.warm)


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: ModelmixError = NoDeployment(f"unknown path {request.url.path[:200]}",
                                          code="not_found", param=None)
    else:
        err = InvalidRequest(str(exc.detail))
        err.status_code = exc.status_code  # type: ignore[misc]
    return error_response(err)


async def _client_left(request: Request, exc: Exception) -> Response:
    log.info("client disconnected on %s", request.url.path)
    return Response(status_code=499)


async def _unexpected_error(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s", request.url.path)
    body = {"error": {"message": "internal error; see the gateway log",
                      "type": "api_error", "param": None, "code": "internal_error"}}
    return JSONResponse(body, status_code=500)
