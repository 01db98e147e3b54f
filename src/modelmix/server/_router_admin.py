"""Hot-swapping the learned router of a running gateway: ``POST /router/reload``,
``GET /router/info`` (master key only), ``SIGHUP``, and with Redis a broadcast to every
replica. docs/routing-in-gateway.md shows how to use it; docs/decisions/0014 says why.

A reload loads and checks the new router in a worker thread
(:meth:`~modelmix.routing.LearnedStrategy.prepare`), then swaps one reference on the
event loop (:meth:`~modelmix.routing.LearnedStrategy.install`): requests already routed
finish on the old router, the next ones use the new one, and a router that fails its
checks never serves (422 ``router_reload_failed``; the old one keeps serving). Reloads
take turns (one lock); SIGHUPs, and broadcasts, arriving while one of theirs runs are
merged into one follow-up reload (the latest request wins). Every reload attempt,
successful or not, is logged at WARNING and stored in the ``router_events`` table
(``modelmix router events``); a refused call (401/403) is logged at WARNING (at most
:data:`REFUSALS_LOGGED_PER_MINUTE` lines a minute) and, for a reload asked with a
virtual key, stored as a ``refused`` row.

Example::

    curl -X POST localhost:4000/router/reload -H "Authorization: Bearer $MODELMIX_MASTER_KEY" \\
         -d '{"artifact": "/srv/router/v8"}'
    kill -HUP <gateway pid>     # re-reads learned_router.artifact on this replica
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import signal
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from modelmix.engine import ChatService
from modelmix.errors import ModelmixError, PermissionDenied, invalid_request
from modelmix.routing import LearnedStrategy
from modelmix.routing._router_swap import LoadedRouter, RouterReloadFailed
from modelmix.server._auth import Authenticator
from modelmix.server._body_read import read_body
from modelmix.server._gateway import error_response
from modelmix.store._router_events import (
    MAX_NAME_CHARS,
    RouterEvent,
    RouterEventStore,
    printable,
)

__all__ = ["REFUSALS_LOGGED_PER_MINUTE", "ROUTER_CHANNEL", "ReloadRequest", "RouterAdmin",
           "build_router_admin", "router_admin_routes"]

log = logging.getLogger("modelmix.router.admin")

#: The pub/sub channel (under the state prefix) reloads are broadcast on.
ROUTER_CHANNEL = "router"

_BODY_LIMIT = 16 * 1024
#: Refused admin calls logged (and, for virtual keys, stored) per minute and replica at
#: most: enough to see who is knocking, too few for a flood to fill logs or the table.
#: The next line logged says how many were left out.
REFUSALS_LOGGED_PER_MINUTE = 20


class _Allowance:
    """At most ``per_minute`` events a minute pass; the others are counted."""

    def __init__(self, per_minute: int):
        self.per_minute = per_minute
        self._start, self._passed, self.dropped = time.monotonic(), 0, 0

    def take(self) -> bool:
        now = time.monotonic()
        if now - self._start >= 60.0:
            self._start, self._passed = now, 0
        if self._passed >= self.per_minute:
            self.dropped += 1
            return False
        self._passed += 1
        return True


def _key_tag(authorization: str | None) -> str:
    """Who presented an unknown key, without logging the key: a short SHA-256 prefix."""
    token = (authorization or "").removeprefix("Bearer ").strip()
    if not token:
        return "no key"
    return "key sha256:" + hashlib.sha256(token.encode("utf-8", "replace")).hexdigest()[:12]


class ReloadRequest(BaseModel):
    """Body of ``POST /router/reload`` (all optional; none: the configured router again).

    ``artifact``: ``default`` or a router directory on the gateway's host;
    ``calibration``: a ``calibration.json`` to use instead of the artifact's own;
    ``target``: the calibrated target requests use when they name none;
    ``broadcast``: with Redis, also reload every other replica (default true).
    """

    model_config = ConfigDict(extra="forbid")

    artifact: str | None = Field(default=None, min_length=1, max_length=4096)
    calibration: str | None = Field(default=None, min_length=1, max_length=4096)
    target: str | None = Field(default=None, min_length=1, max_length=200)
    broadcast: bool = True


class RouterAdmin:
    """Reloads the ``learned`` strategy of ``service`` and audits each attempt.

    Args:
        service: the gateway's chat service (its router holds the strategy).
        auth: checks the master key.
        events: where audit rows go (None: the log line only).
        replica: this process's name in audit rows and broadcasts.
    """

    def __init__(self, service: ChatService, auth: Authenticator,
                 events: RouterEventStore | None, *, replica: str | None = None):
        self.service = service
        self.auth = auth
        self.events = events
        # pid alone is not unique: containers all run as pid 1, tests run two in one
        self.replica = replica or (f"{socket.gethostname()}:{os.getpid()}:"
                                   f"{uuid.uuid4().hex[:6]}")
        self._lock = asyncio.Lock()
        # per trigger: the reload worker running, and the one request waiting behind it
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._pending: dict[str, tuple[ReloadRequest, str]] = {}
        self._merged: dict[str, int] = {}
        self._refusals = _Allowance(REFUSALS_LOGGED_PER_MINUTE)
        shared = service.shared
        if shared is not None:  # before shared.start(): create_app runs before lifespan
            shared.subscribe(shared.channel(ROUTER_CHANNEL), self._on_broadcast)

    def strategy(self) -> LearnedStrategy:
        found = self.service.router.strategy(LearnedStrategy.name)
        assert isinstance(found, LearnedStrategy)  # registered under that name
        return found

    async def reload(self, body: ReloadRequest, *, actor: str, trigger: str) -> dict[str, Any]:
        """Load, check and swap in a router; audit the attempt; broadcast it on success
        when asked (triggers other than ``broadcast`` only).

        Raises:
            RouterReloadFailed: the new router failed to load or its checks (422).
        """
        async with self._lock:
            strategy = self.strategy()
            old = await asyncio.to_thread(strategy.active)
            old_fp = None if old is None else old.fingerprint
            try:
                loaded = await asyncio.to_thread(
                    strategy.prepare, body.artifact, calibration=body.calibration,
                    target=body.target)
            except RouterReloadFailed as exc:
                await self._audit(RouterEvent(
                    actor=actor, trigger=trigger, result="failed", replica=self.replica,
                    artifact=body.artifact or strategy.settings.artifact,
                    calibration=body.calibration, old_fingerprint=old_fp,
                    reason=exc.message))
                raise
            strategy.install(loaded)  # on the event loop: no request sees half a swap
            await self._audit(RouterEvent(
                actor=actor, trigger=trigger, result="ok", replica=self.replica,
                artifact=loaded.artifact, calibration=loaded.calibration_path,
                old_fingerprint=old_fp, new_fingerprint=loaded.fingerprint,
                reason="same router" if old_fp == loaded.fingerprint else "new router"))
        sent = await self._broadcast(body, actor) if trigger != "broadcast" else False
        return {"object": "router.reload", "status": "reloaded", "replica": self.replica,
                "previous_fingerprint": old_fp, "broadcast": sent,
                "router": loaded.summary()}

    async def info(self) -> dict[str, Any]:
        strategy = self.strategy()
        active: LoadedRouter | None = await asyncio.to_thread(strategy.active)
        return {"object": "router.info", "replica": self.replica,
                "strategy": self.service.config.router,
                "router": None if active is None else active.summary(),
                "unavailable": strategy.unavailable}

    async def check_admin(self, request: Request) -> str:
        """The caller's key id when it is the master key. Fails closed: with no master key
        configured (open mode) nobody may swap the router. A refusal is logged (rate
        limited) and, for a reload asked with a virtual key, stored as ``refused``.

        Raises:
            AuthenticationFailed: missing or unknown key (401).
            PermissionDenied: not the master key, or none configured (403).
        """
        header = request.headers.get("authorization")
        try:
            info = await self.auth.authenticate(header)
        except ModelmixError as exc:
            await self._refused(request, exc, _key_tag(header), None)
            raise
        if info.key_id is None:
            denied = PermissionDenied(
                f"router administration is disabled: no master key is configured. Set "
                f"{self.service.config.server.master_key_env} and restart the gateway.",
                code="master_key_not_configured")
            await self._refused(request, denied, "open mode", None)
            raise denied
        if not info.is_admin:
            denied = PermissionDenied("router administration needs the master key",
                                   code="admin_key_required")
            await self._refused(request, denied, f"key {info.key_id}", info.key_id)
            raise denied
        return info.key_id

    async def _refused(self, request: Request, exc: ModelmixError, who: str,
                       key_id: str | None) -> None:
        """Log a refused admin call (WARNING, rate limited); store a ``refused`` row when a
        known non-master key asked for a reload."""
        if not self._refusals.take():
            return
        dropped, self._refusals.dropped = self._refusals.dropped, 0
        client = request.client.host if request.client else "unknown"
        log.warning("router admin refused (%d): %s %s by %s from %s: %s%s",
                    exc.status_code, request.method, request.url.path, printable(who),
                    client, exc.code,
                    f" ({dropped} earlier refusals not logged)" if dropped else "")
        if key_id is not None and request.url.path.endswith("/reload"):
            await self._store(RouterEvent(
                actor=key_id, trigger="endpoint", result="refused", replica=self.replica,
                reason=f"{exc.code}: {exc.message} (from {client})"))

    # -- signal and broadcast ------------------------------------------------------------

    def reload_soon(self, body: ReloadRequest, *, actor: str, trigger: str) -> None:
        """Reload in the background (from a signal or a broadcast): its outcome is
        audited and logged, never raised. Coalesced per ``trigger``: while a reload of
        this trigger runs, at most one more waits, and a newer request replaces the
        waiting one (30 SIGHUPs in a row: two reloads, the last reading the files as they
        are after the last signal)."""
        if trigger in self._pending:
            self._merged[trigger] = self._merged.get(trigger, 0) + 1
        self._pending[trigger] = (body, actor)
        if trigger not in self._workers:
            task = asyncio.get_running_loop().create_task(self._drain(trigger))
            self._workers[trigger] = task

    async def _drain(self, trigger: str) -> None:
        """Run the waiting reload of ``trigger`` until none waits."""
        try:
            while trigger in self._pending:
                body, actor = self._pending.pop(trigger)
                merged = self._merged.pop(trigger, 0)
                if merged:
                    log.warning("router reload by %s: %d earlier requests merged into this "
                                "one", trigger, merged)
                await self._quiet(body, actor, trigger)
        finally:
            self._workers.pop(trigger, None)

    async def _quiet(self, body: ReloadRequest, actor: str, trigger: str) -> None:
        try:
            await self.reload(body, actor=actor, trigger=trigger)
        except ModelmixError:
            pass  # audited and logged by reload()
        except Exception:  # a background task must not die silently
            log.exception("router reload by %s failed unexpectedly", trigger)

    def install_sighup(self) -> Callable[[], None]:
        """Reload the configured router on SIGHUP (this replica only); returns the undo.
        Does nothing where signals cannot be handled (not the main thread, Windows)."""
        loop = asyncio.get_running_loop()
        hup = getattr(signal, "SIGHUP", None)
        if hup is None:
            return lambda: None
        def on_hup() -> None:
            self.reload_soon(ReloadRequest(broadcast=False), actor="signal", trigger="signal")

        def undo() -> None:
            loop.remove_signal_handler(hup)

        try:
            loop.add_signal_handler(hup, on_hup)
        except (ValueError, RuntimeError, NotImplementedError) as exc:
            log.debug("SIGHUP reload not installed: %s", exc)
            return lambda: None
        return undo

    async def _broadcast(self, body: ReloadRequest, actor: str) -> bool:
        shared = self.service.shared
        if shared is None or not body.broadcast:
            return False
        message = json.dumps({"origin": self.replica, "actor": actor,
                              "artifact": body.artifact, "calibration": body.calibration,
                              "target": body.target})
        try:
            await shared.publish(shared.channel(ROUTER_CHANNEL), message)
        except ModelmixError as exc:
            log.warning("router reload not broadcast to other replicas: %s", exc.message)
            return False
        return True

    def _on_broadcast(self, message: str) -> None:
        if len(message) > _BODY_LIMIT:  # ours are a few hundred bytes
            log.warning("ignoring a router broadcast of %d characters (at most %d)",
                        len(message), _BODY_LIMIT)
            return
        try:
            raw = json.loads(message)
            origin, actor = str(raw.pop("origin")), str(raw.pop("actor"))
            if len(origin) + len(actor) > MAX_NAME_CHARS:
                raise ValueError("origin and actor too long")
            body = ReloadRequest(**raw, broadcast=False)
        except (ValueError, KeyError, TypeError, AttributeError):
            log.warning("ignoring a malformed router broadcast: %s", printable(message[:200]))
            return
        if origin != self.replica:
            self.reload_soon(body, actor=f"{actor}@{origin}", trigger="broadcast")

    async def _audit(self, event: RouterEvent) -> None:
        shown = event.capped()
        log.warning("router reload %s: actor=%s trigger=%s replica=%s artifact=%s old=%s "
                    "new=%s reason=%s", *(printable(v) for v in (
                        shown.result, shown.actor, shown.trigger, shown.replica,
                        shown.artifact, shown.old_fingerprint, shown.new_fingerprint,
                        shown.reason)))
        await self._store(event)

    async def _store(self, event: RouterEvent) -> None:
        if self.events is None:
            return
        try:
            await asyncio.to_thread(self.events.add, event)
        except Exception:  # the swap happened (or not) either way; say the row is missing
            log.exception("router reload audit row not stored")


def build_router_admin(service: ChatService, auth: Authenticator) -> RouterAdmin:
    """A :class:`RouterAdmin` auditing into the usage database (the log only when
    ``store.enabled`` is false)."""
    events = None
    if service.config.store.enabled:
        from modelmix.store import resolve_db_url

        events = RouterEventStore(resolve_db_url(service.config.store))
    return RouterAdmin(service, auth, events)


def router_admin_routes(admin: RouterAdmin) -> list[Route]:
    """``POST /router/reload`` and ``GET /router/info`` (master key only)."""

    def guarded(handler: Callable[[Request, str], Awaitable[dict[str, Any]]]
                ) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            try:
                key_id = await admin.check_admin(request)
                return JSONResponse(await handler(request, key_id))
            except ModelmixError as exc:
                return error_response(exc)
        return endpoint

    async def reload(request: Request, key_id: str) -> dict[str, Any]:
        raw = await read_body(request, _BODY_LIMIT)
        try:
            body = ReloadRequest.model_validate_json(raw if raw.strip() else b"{}")
        except ValidationError as exc:
            raise invalid_request(exc) from exc
        return await admin.reload(body, actor=key_id, trigger="endpoint")

    async def info(request: Request, key_id: str) -> dict[str, Any]:
        return await admin.info()

    return [Route("/router/reload", guarded(reload), methods=["POST"]),
            Route("/router/info", guarded(info), methods=["GET"])]
