"""The dashboard's reads (``/ui``, docs/dashboard.md): every aggregation is SQL
``GROUP BY`` over a time window: its whole past hours from hourly roll-ups
(store/_rollup.py), its partial first hour and the current hour from the raw rows (on
``ix_usage_created_at``); every log is paged by keyset (``(created_at, id) < cursor``),
never by ``OFFSET``, so each call stays fast on a store of a million rows
(benchmarks/ui/RESULTS.md). SQLite and PostgreSQL run the same statements but for two
expressions: the time bucket and the route-reason kind (store/_rollup.py).

Example::

    with DashboardStore("sqlite:///modelmix_usage.db") as board:
        for group in board.traffic(since=time.time() - 86400):
            print(group.deployment, group.reason, group.requests, group.cost_usd)
        page = board.requests(limit=50)
        older = board.requests(limit=50, before=page[-1].cursor)
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from modelmix.store._audit import AUDIT_TABLE
from modelmix.store._rollup import (
    GUARD,
    KEYS,
    REASON_CHARS,
    ROLLUP_METADATA,
    TRAFFIC,
    Groups,
    Rollup,
    RollupSpec,
)
from modelmix.store._schema import create_tables
from modelmix.store._sql import USAGE_TABLE, create_store_engine

__all__ = [
    "REASON_CHARS",
    "Cursor",
    "DashboardStore",
    "KeyUsage",
    "LogFilter",
    "SeriesPoint",
    "TrafficGroup",
    "parse_cursor",
]


#: A keyset position in a log: (created_at, id) of the last row shown.
Cursor = tuple[float, int]

_U = USAGE_TABLE.c
_A = AUDIT_TABLE.c


def parse_cursor(text: str) -> Cursor:
    """``"<created_at>:<id>"`` (what :attr:`LogRow.cursor` gives) as a :data:`Cursor`.

    Raises:
        ValueError: not a finite number and an id of ASCII digits (below 2**63)
            separated by ``:``.
    """
    at, sep, row_id = text.partition(":")
    try:
        if not sep or not re.fullmatch(r"[0-9]{1,19}", row_id) or int(row_id) >= 2**63:
            raise ValueError
        created_at = float(at)
        if not math.isfinite(created_at):
            raise ValueError
        return created_at, int(row_id)
    except ValueError:
        raise ValueError(f"invalid cursor {text[:60]!r}; pass the 'next' value of the "
                         "previous page") from None


@dataclass(frozen=True, slots=True)
class TrafficGroup:
    """Rows of one (deployment, route-reason kind, endpoint) group in a window.

    ``deployment`` None: refused before any deployment was called (auth, validation,
    policy) or a system's envelope row. ``errors``: rows with an error or status >= 400;
    ``hits``: answered from the response cache. Tokens and USD are sums; ``latency_ms``
    is the summed latency (divide by ``requests``)."""

    deployment: str | None
    reason: str | None
    endpoint: str | None
    requests: int
    errors: int
    hits: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    saved_usd: float
    latency_ms: float


@dataclass(frozen=True, slots=True)
class SeriesPoint:
    """One time bucket (``start``, Unix s) of one (deployment, endpoint): rows,
    failures, tokens, cost and cache savings (USD)."""

    start: float
    deployment: str | None
    endpoint: str | None
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    saved_usd: float


@dataclass(frozen=True, slots=True)
class KeyUsage:
    """One key's rows, failures and cost (USD) in a window, and its last request (Unix s)."""

    key_id: str | None
    requests: int
    errors: int
    cost_usd: float
    last_at: float


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What the request log shows: rows of one deployment and/or key, and ``status``
    ``ok`` (< 400, no error), ``error`` or one HTTP status code."""

    deployment: str | None = None
    key_id: str | None = None
    status: str | int | None = None


#: Columns of a request-log row: the usage row without prompt, answer or media detail.
_LOG_COLUMNS = ("id", "request_id", "created_at", "endpoint", "requested_model", "key_id",
                "deployment", "provider", "route_reason", "stream", "status_code",
                "error_type", "error", "prompt_tokens", "completion_tokens", "cost_usd",
                "latency_ms", "ttft_ms", "attempts", "cache", "saved_usd", "system", "step")
_AUDIT_COLUMNS = ("id", "request_id", "created_at", "key_id", "requested_model",
                  "deployment", "status_code", "policy", "data_class", "action", "rule",
                  "rules", "entities", "pseudonymised", "tags", "forbidden")


class DashboardStore:
    """Reads the usage and audit tables for the dashboard. Blocking: call it off the
    event loop (``asyncio.to_thread``).

    Args:
        url: a SQLAlchemy URL or an engine (the usage database; the gateway passes its
            writer's engine so the dashboard reads what it writes).
    """

    def __init__(self, url: str | URL | Engine):
        self.engine = url if isinstance(url, Engine) else create_store_engine(url)
        #: one per roll-up for this store's life (locks, what was checked when)
        self._rollups: dict[str, Rollup] = {
            spec.hourly.name: spec.on(self.engine) for spec in (TRAFFIC, KEYS, GUARD)}

    def __enter__(self) -> DashboardStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_all(self) -> None:
        """Create the usage and audit tables (and add missing columns / indexes) so that
        a dashboard opened before the first request reads empty tables."""
        from modelmix.store._sql import UsageStore

        UsageStore(self.engine).create_all()
        create_tables(self.engine, ROLLUP_METADATA)

    def traffic(self, since: float, now: float | None = None) -> list[TrafficGroup]:
        """Rows since ``since`` (Unix s) grouped by deployment, route-reason kind and
        endpoint."""
        groups = self._window(TRAFFIC, since, now, ("deployment", "reason", "endpoint"))
        return [TrafficGroup(
            deployment=k[0], reason=k[1], endpoint=k[2], requests=int(v["requests"]),
            errors=int(v["errors"]), hits=int(v["hits"]), prompt_tokens=int(v["prompt_tokens"]),
            completion_tokens=int(v["completion_tokens"]), cost_usd=v["cost_usd"],
            saved_usd=v["saved_usd"], latency_ms=v["latency_ms"],
        ) for k, v in groups.items()]

    def series(self, since: float, bucket_s: int, now: float | None = None
               ) -> list[SeriesPoint]:
        """Per ``bucket_s``-second bucket (aligned to the Unix epoch; a whole number of
        hours reads the roll-up) and (deployment, endpoint), oldest first."""
        groups = self._window(TRAFFIC, since, now, ("deployment", "endpoint"), bucket_s)
        points = [SeriesPoint(
            start=k[2], deployment=k[0], endpoint=k[1], requests=int(v["requests"]),
            errors=int(v["errors"]), prompt_tokens=int(v["prompt_tokens"]),
            completion_tokens=int(v["completion_tokens"]), cost_usd=v["cost_usd"],
            saved_usd=v["saved_usd"],
        ) for k, v in groups.items()]
        return sorted(points, key=lambda p: (p.start, p.deployment or "", p.endpoint or ""))

    def key_usage(self, since: float, now: float | None = None) -> list[KeyUsage]:
        """Per key (None: requests without one): rows, failures, cost, last request."""
        groups = self._window(KEYS, since, now, ("key_id",))
        return [KeyUsage(key_id=k[0], requests=int(v["requests"]), errors=int(v["errors"]),
                         cost_usd=v["cost_usd"], last_at=v["last_at"])
                for k, v in groups.items()]

    def guard_actions(self, since: float, now: float | None = None) -> list[dict[str, Any]]:
        """Audit rows since ``since`` per (action, data class): ``requests``, ``blocked``
        (action ``block`` or status 403), ``pseudonymised`` values and ``entities``."""
        groups = self._window(GUARD, since, now, ("action", "data_class"))
        return [{"action": k[0], "data_class": k[1],
                 **_ints(v, ("requests", "blocked", "pseudonymised", "entities"))}
                for k, v in groups.items()]

    def _window(self, spec: RollupSpec, since: float, now: float | None,
                by: tuple[str, ...], bucket_s: int | None = None) -> Groups:
        """Groups of the rows since ``since`` through the roll-ups (store/_rollup.py)."""
        now = time.time() if now is None else now
        return self._rollups[spec.hourly.name].window(self.engine, since, now, by, bucket_s)

    def requests(self, *, limit: int = 50, before: Cursor | None = None,
                 where: LogFilter | None = None) -> list[dict[str, Any]]:
        """Usage rows newest first, at most ``limit``, older than ``before``; each has a
        ``cursor`` (``"created_at:id"``) to pass as the next page's ``before``."""
        query = sa.select(*(_U[name] for name in _LOG_COLUMNS))
        for condition in _log_conditions(where or LogFilter()):
            query = query.where(condition)
        return self._page(query, USAGE_TABLE, limit, before)

    def audit(self, *, limit: int = 50, before: Cursor | None = None) -> list[dict[str, Any]]:
        """``guard_audit`` rows newest first (entity types and counts, never values),
        paged like :meth:`requests`."""
        query = sa.select(*(_A[name] for name in _AUDIT_COLUMNS))
        rows = self._page(query, AUDIT_TABLE, limit, before)
        for row in rows:
            row["entities"] = json.loads(row["entities"] or "{}")
            for name in ("rules", "tags", "forbidden"):
                row[name] = [t for t in (row[name] or "").split(",") if t]
        return rows

    def _page(self, query: sa.Select[Any], table: sa.Table, limit: int,
              before: Cursor | None) -> list[dict[str, Any]]:
        col = table.c
        if before is not None:
            at, row_id = before
            query = query.where(sa.or_(col.created_at < at,
                                       sa.and_(col.created_at == at, col.id < row_id)))
        query = query.order_by(col.created_at.desc(), col.id.desc()).limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["cursor"] = f"{row['created_at']!r}:{row.pop('id')}"
        return rows

    def close(self) -> None:
        self.engine.dispose()


def _ints(values: dict[str, float], names: Sequence[str]) -> dict[str, int]:
    return {n: int(values[n]) for n in names}


def _log_conditions(where: LogFilter) -> Sequence[sa.ColumnElement[bool]]:
    out: list[sa.ColumnElement[bool]] = []
    if where.deployment is not None:
        out.append(_U.deployment == where.deployment)
    if where.key_id is not None:
        out.append(_U.key_id == where.key_id)
    if where.status == "ok":
        out.extend([_U.error.is_(None), _U.status_code < 400])
    elif where.status == "error":
        out.append(sa.or_(_U.error.is_not(None), _U.status_code >= 400))
    elif isinstance(where.status, int):
        out.append(_U.status_code == where.status)
    return out

