"""The web dashboard at ``/ui`` (docs/dashboard.md, docs/decisions/0011-dashboard.md).

``GET /ui`` serves a page shell with no data in it; its script (``/ui/static/app.js``)
asks for the master key once, keeps it in ``sessionStorage`` and sends it as
``Authorization: Bearer`` on every ``GET /ui/api/*`` call. Only the master key reads the
API: a virtual key gets 403, a wrong key 401, and with no master key configured the API
answers 403 to everyone. No cookie is involved, so there is nothing for a cross-site
request to ride on (CSRF). Every response carries a Content-Security-Policy that allows
only this origin's script and style and no framing; API answers, errors of any
status included (404, 405, 500), are ``no-store``.

Example::

    app = create_app(config)   # mounts these routes
    # browser: http://127.0.0.1:4000/ui  -> paste the master key
    # curl -H "Authorization: Bearer $MODELMIX_MASTER_KEY" localhost:4000/ui/api/overview?window=7d
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from typing import TYPE_CHECKING, Any

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route

from modelmix.errors import InvalidRequest, ModelmixError, NoDeployment, PermissionDenied
from modelmix.server._ui_api import DashboardApi
from modelmix.store._dashboard import DashboardStore

if TYPE_CHECKING:
    from modelmix.server._gateway import Gateway

__all__ = ["CSP", "routes"]

#: The page may run and style only this origin's files, call only this origin, show
#: images only from it or ``data:``, submit no form, and be framed by nobody.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")

log = logging.getLogger("modelmix.ui")

_INTERNAL = {"error": {"message": "internal error; see the gateway log", "type": "api_error",
                       "param": None, "code": "internal_error"}}

_SECURITY = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
}

#: Files of src/modelmix/server/ui/ served under /ui/static/, with their media types.
_ASSETS = {"app.js": "text/javascript; charset=utf-8",
           "charts.js": "text/javascript; charset=utf-8",
           "style.css": "text/css; charset=utf-8"}

#: Methods the API routes take in, so that a refusal (405) carries the headers too.
_ANY = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]

Handler = Callable[[Mapping[str, str]], Awaitable[dict[str, Any]]]


def _headers(cache: str) -> dict[str, str]:
    return {**_SECURITY, "cache-control": cache}


def _read_asset(name: str) -> bytes:
    return resources.files("modelmix.server").joinpath("ui", name).read_bytes()


def _store_factory(gateway: Gateway) -> Callable[[], DashboardStore | None]:
    """The dashboard reads the database the gateway writes: its usage writer's engine
    (behind the metrics and request-log tees, which pass records on through ``next``),
    else the configured store URL (``$MODELMIX_DB_URL`` first); None with the store off."""
    def build() -> DashboardStore | None:
        from modelmix.store import UsageWriter, resolve_db_url

        sink: object = gateway.service.usage
        for _ in range(8):
            if isinstance(sink, UsageWriter):
                return DashboardStore(sink.store.engine)
            sink = getattr(sink, "next", None)
        settings = gateway.config.store
        return DashboardStore(resolve_db_url(settings)) if settings.enabled else None
    return build


class _Admin:
    """Checks that a request carries the master key, and answers errors with the
    dashboard's headers."""

    def __init__(self, gateway: Gateway):
        self.auth = gateway.auth
        self.master_key_env = gateway.config.server.master_key_env

    async def check(self, request: Request) -> None:
        info = await self.auth.authenticate(request.headers.get("authorization"))
        if info.is_admin and info.key_id == "master":
            return
        if info.key_id is None:  # open mode: no master key, no virtual key
            raise PermissionDenied(
                f"the dashboard needs a master key: set {self.master_key_env} (the variable "
                "named by server.master_key_env) and restart the gateway",
                code="master_key_not_configured")
        raise PermissionDenied("the dashboard needs the master key", code="admin_key_required")

    def endpoint(self, handler: Handler) -> Callable[[Request], Awaitable[Response]]:
        async def serve(request: Request) -> Response:
            if request.method not in ("GET", "HEAD"):
                return _error(InvalidRequest(f"{request.method} is not allowed here; use GET",
                                             code="method_not_allowed"), 405, {"allow": "GET"})
            try:
                await self.check(request)
                body = await handler(request.query_params)
            except ModelmixError as exc:
                return _error(exc, exc.status_code)
            except Exception:  # a 500 still carries the dashboard's headers
                log.exception("dashboard: unexpected error on %s", request.url.path)
                return JSONResponse(_INTERNAL, status_code=500, headers=_headers("no-store"))
            return JSONResponse(body, headers=_headers("no-store"))
        return serve


def _error(exc: ModelmixError, status: int, extra: Mapping[str, str] | None = None
           ) -> Response:
    return JSONResponse(exc.to_openai(), status_code=status,
                        headers={**_headers("no-store"), **(extra or {})})


async def _unknown(request: Request) -> Response:
    return _error(NoDeployment(f"unknown dashboard path {request.url.path[:200]}",
                               code="not_found", param=None), 404)


def routes(gateway: Gateway) -> list[BaseRoute]:
    """``/ui`` (the page), ``/ui/static/*`` (its script and style) and the JSON API
    ``/ui/api/{status,overview,series,guard,audit,keys,requests}``, mounted at top level
    (not under ``/v1``)."""
    api = DashboardApi(gateway.service, gateway.auth, _store_factory(gateway))
    admin = _Admin(gateway)
    page = _read_asset("index.html")
    assets = {name: _read_asset(name) for name in _ASSETS}

    async def index(request: Request) -> Response:
        return Response(page, media_type="text/html; charset=utf-8",
                        headers=_headers("no-cache"))

    async def asset(request: Request) -> Response:
        name = request.path_params["name"]
        if name not in assets:
            return Response(b"not found", status_code=404, media_type="text/plain",
                            headers=_headers("no-store"))
        return Response(assets[name], media_type=_ASSETS[name], headers=_headers("no-cache"))

    async def slash(request: Request) -> Response:
        return RedirectResponse("/ui", status_code=308)

    handlers: dict[str, Handler] = {
        "status": api.status, "overview": api.overview, "series": api.series,
        "guard": api.guard, "audit": api.audit, "keys": api.keys, "requests": api.requests,
    }
    return [
        Route("/ui", index, methods=["GET"]),
        Route("/ui/", slash, methods=["GET"]),
        Route("/ui/static/{name}", asset, methods=["GET"]),
        *(Route(f"/ui/api/{name}", admin.endpoint(h), methods=_ANY)
          for name, h in handlers.items()),
        Route("/ui/api/{rest:path}", _unknown, methods=_ANY),
    ]
