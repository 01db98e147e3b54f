"""The dashboard's JSON API (``GET /ui/api/*``, docs/dashboard.md): what each panel shows.

Each method takes the request's query parameters and returns a JSON-ready dict; the
routes in :mod:`modelmix.server._ui` check the master key first. Store reads block, so
they run in a worker thread; a store error is a 503 ``store_unavailable``, never a 500.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from sqlalchemy.exc import SQLAlchemyError

from modelmix.engine import ChatService
from modelmix.errors import InvalidRequest, ModelmixError
from modelmix.providers import availability
from modelmix.server._auth import Authenticator
from modelmix.server._ui_figures import fold_series, fold_traffic, reference_deployment
from modelmix.server.keys import VirtualKeyAuth, key_view
from modelmix.store._dashboard import DashboardStore, LogFilter, parse_cursor
from modelmix.store._summary import parse_window

__all__ = ["DashboardApi", "StoreUnavailable", "bucket_for"]

log = logging.getLogger("modelmix.ui")

_T = TypeVar("_T")

#: Longest window a panel may ask for, seconds (400 days).
MAX_WINDOW_S = 400 * 86400
#: Rows per log page: default and most.
PAGE, MAX_PAGE = 50, 200
#: Characters of a stored error message the request log shows.
ERROR_CHARS = 300


class StoreUnavailable(ModelmixError):
    """The usage store is off or could not be read (503)."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "store_unavailable"


def bucket_for(window_s: float) -> int:
    """Seconds per point of the over-time charts: 5 min up to 3 h, 1 h up to 2 days,
    6 h up to 14 days, else 1 day (whole hours and days read the roll-ups)."""
    for limit, bucket in ((3 * 3600, 300), (48 * 3600, 3600), (14 * 86400, 21600)):
        if window_s <= limit:
            return bucket
    return 86400


def _window(params: Mapping[str, str]) -> float:
    text = params.get("window") or "24h"
    try:
        seconds = parse_window(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="window", code="invalid_value") from None
    if seconds > MAX_WINDOW_S:
        raise InvalidRequest("window is at most 400d", param="window", code="invalid_value")
    return seconds


def _whole(text: str, low: int, high: int) -> int | None:
    """``text`` as an int in ``[low, high]`` when it is ASCII digits only (``str.isdigit``
    and ``int`` take superscript or full-width digits and spaces), else None."""
    if not re.fullmatch(r"[0-9]{1,6}", text) or not low <= int(text) <= high:
        return None
    return int(text)


def _limit(params: Mapping[str, str]) -> int:
    limit = _whole(params.get("limit") or str(PAGE), 1, MAX_PAGE)
    if limit is None:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}",
                             param="limit", code="invalid_value")
    return limit


def _cursor(params: Mapping[str, str]) -> tuple[float, int] | None:
    text = params.get("before")
    if not text:
        return None
    try:
        return parse_cursor(text)
    except ValueError as exc:
        raise InvalidRequest(str(exc), param="before", code="invalid_value") from None


def _log_filter(params: Mapping[str, str]) -> LogFilter:
    text = params.get("status") or None
    status: str | int | None = text
    if text is not None and text not in ("ok", "error"):
        status = _whole(text, 100, 599)
        if status is None:
            raise InvalidRequest("status must be ok, error or an HTTP status code",
                                 param="status", code="invalid_value")
    return LogFilter(deployment=params.get("deployment") or None,
                     key_id=params.get("key") or None, status=status)


def _page(rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    return {"rows": rows, "next": rows[-1]["cursor"] if len(rows) == limit else None}


class DashboardApi:
    """The panels' data. ``store`` is built on first use from ``engine_source`` (the
    gateway's usage writer's engine, or the configured store URL); None: store off."""

    def __init__(self, service: ChatService, auth: Authenticator,
                 store_factory: Callable[[], DashboardStore | None]):
        self.service = service
        self.auth = auth
        self._factory = store_factory
        self._store: DashboardStore | None = None
        self._ready = False

    async def _read(self, op: Callable[[DashboardStore], _T]) -> _T:
        """Run ``op`` on the store in a worker thread (tables created on first use)."""
        def run() -> _T:
            if self._store is None:
                self._store = self._factory()
            if self._store is None:
                raise StoreUnavailable("the usage store is off (store.enabled: false): "
                                       "there is nothing to show", code="store_disabled")
            if not self._ready:
                self._store.create_all()
                self._ready = True
            return op(self._store)

        try:
            return await asyncio.to_thread(run)
        except SQLAlchemyError:
            log.exception("dashboard: the usage store could not be read")
            raise StoreUnavailable("the usage store could not be read; see the gateway log",
                                   code="store_unavailable") from None

    async def status(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Each deployment's availability and circuit breaker, as routing sees them now."""
        executor = self.service.executor
        rows = []
        for dep in self.service.config.deployments:
            avail = availability(dep)
            breaker = executor.breakers.get(dep.name)
            health = executor.health(dep) if breaker is not None else None
            rows.append({
                "name": dep.name, "provider": dep.provider, "model": dep.model,
                "mode": dep.mode, "tier": dep.tier.value, "hosting": dep.hosting.value,
                "region": dep.region, "input_cost_per_mtok": dep.input_cost_per_mtok,
                "output_cost_per_mtok": dep.output_cost_per_mtok,
                "available": avail.available, "unavailable_reason": avail.reason or None,
                "breaker": breaker.state.value if breaker is not None else "closed",
                "failures": breaker.failures if breaker is not None else 0,
                "blocked_reason": health.why if health is not None else None,
                "retry_in_s": health.retry_after_s if health is not None else None,
            })
        shared = self.service.shared
        return {"now": time.time(), "ready": any(r["available"] for r in rows),
                "shared_state": None if shared is None else (
                    "ok" if await shared.ping() else "unreachable"),
                "deployments": rows}

    async def overview(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Totals, money and the splits by tier, reason, endpoint and deployment."""
        window = _window(params)
        config = self.service.config
        reference = reference_deployment(config, params.get("reference"))
        since = time.time() - window
        groups = await self._read(lambda s: s.traffic(since))
        return {"window_s": window, "since": since, "reference": _reference(reference),
                **fold_traffic(groups, config, reference)}

    async def series(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Requests by tier and money per time bucket."""
        window = _window(params)
        config = self.service.config
        reference = reference_deployment(config, params.get("reference"))
        bucket = bucket_for(window)
        since = time.time() - window
        points = await self._read(lambda s: s.series(since, bucket))
        return {"window_s": window, "bucket_s": bucket, "reference": _reference(reference),
                "points": fold_series(points, config, reference)}

    async def guard(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Guard verdicts per (action, data class) and the action totals."""
        since = time.time() - _window(params)
        rows = await self._read(lambda s: s.guard_actions(since))
        actions: dict[str, int] = {}
        for row in rows:
            actions[row["action"]] = actions.get(row["action"], 0) + row["requests"]
        blocked = sum(r["blocked"] for r in rows)
        rows.sort(key=lambda r: (-r["requests"], r["action"], r["data_class"]))
        return {"policy": self.service.guard is not None, "actions": actions,
                "blocked": blocked, "groups": rows}

    async def audit(self, params: Mapping[str, str]) -> dict[str, Any]:
        """A page of the audit log, newest first."""
        limit, before = _limit(params), _cursor(params)
        return _page(await self._read(lambda s: s.audit(limit=limit, before=before)), limit)

    async def requests(self, params: Mapping[str, str]) -> dict[str, Any]:
        """A page of the request log, newest first, filtered."""
        limit, before, where = _limit(params), _cursor(params), _log_filter(params)
        rows = await self._read(lambda s: s.requests(limit=limit, before=before, where=where))
        for row in rows:
            if row.get("error"):
                row["error"] = str(row["error"])[:ERROR_CHARS]
        return _page(rows, limit)

    async def keys(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Virtual keys (budget, live spend; never the key or its hash) with their use in
        the window, and the use of requests made with the master key or none."""
        since = time.time() - _window(params)
        used = {u.key_id: u for u in await self._read(lambda s: s.key_usage(since))}
        keys: list[dict[str, Any]] = []
        if isinstance(self.auth, VirtualKeyAuth):
            stored = await self.auth.list_keys()
            figures = await self.auth.key_figures(k.id for k in stored)
            keys = [key_view(k, figures.get(k.id)) for k in stored]
        for view in keys:
            view["window"] = _usage(used.pop(view["key_id"], None))
        others = [{"key_id": k, "window": _usage(u)} for k, u in used.items()]
        others.sort(key=lambda r: str(r["key_id"]))
        return {"keys": keys, "other": others}


def _usage(u: Any) -> dict[str, Any]:
    if u is None:
        return {"requests": 0, "errors": 0, "cost_usd": 0.0, "last_at": None}
    return {"requests": u.requests, "errors": u.errors, "cost_usd": u.cost_usd,
            "last_at": u.last_at}


def _reference(dep: Any) -> dict[str, Any] | None:
    if dep is None:
        return None
    return {"deployment": dep.name, "input_cost_per_mtok": dep.input_cost_per_mtok,
            "output_cost_per_mtok": dep.output_cost_per_mtok}
