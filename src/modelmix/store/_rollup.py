"""Hourly and daily roll-ups of the usage and audit tables, kept by the dashboard's reads.

A window of a million rows takes seconds to ``GROUP BY`` in SQLite even on the
``created_at`` index, and 70,000 hourly groups still take 0.4 s (benchmarks/ui/RESULTS.md),
so the dashboard reads a window in pieces: its partial first hour and the current hour
from the raw rows, whole hours from ``*_hourly`` tables, whole days from ``*_daily``
tables (one row per period and group; ``period`` is ``floor(created_at / 3600)`` or
``/ 86400``).

They are kept exact without touching the write path. Before a read, the rows a range of
periods holds in the finer level (raw rows, or hours for a day) are counted and compared
with the coarser level's ``requests`` sum; where they differ the range is halved until
the stale periods are found, and each is rebuilt from the finer level (delete +
``INSERT ... SELECT`` in one transaction). That catches every way a period goes stale:
rows written after the hour ended (a request that began at 11:59:59), a spill file
replayed days later, rows removed by hand. Rebuilds of one roll-up are serialised (a
lock per :class:`Rollup`, and on PostgreSQL a transaction-level advisory lock, taken
before the staleness is checked again inside the rebuilding transaction; SQLite's write
lock serialises processes), so two reads or two replicas building the same hours at once
never count a row twice. Counting a month of raw rows costs ~0.2 s on a million, so each
read checks the last :data:`RECENT_HOURS` hours, and every hour of its window when the
last whole-window check is older than :data:`FULL_CHECK_S` seconds or began later than
this window (a 7-day read after a 24-hour one checks all 7 days): rows arriving later
than that for hours already checked show within :data:`FULL_CHECK_S`. The first read of
a large store builds every hour once (~7 s per million rows on SQLite).

Example::

    rollup = TRAFFIC.on(engine)   # keep it: it remembers what it has checked
    groups = rollup.window(engine, since, now, by=("deployment",))
"""

from __future__ import annotations

import hashlib
import math
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from modelmix.store._audit import AUDIT_TABLE
from modelmix.store._sql import USAGE_TABLE

__all__ = ["DAY_S", "FULL_CHECK_S", "GUARD", "HOUR_S", "KEYS", "REASON_CHARS",
           "RECENT_HOURS", "ROLLUP_METADATA", "TRAFFIC", "Groups", "Rollup", "RollupSpec",
           "reason_kind"]

HOUR_S = 3600
DAY_S = 86400
#: Hours before now that every read checks against the raw rows.
RECENT_HOURS = 48
#: Seconds a whole-window check of a roll-up's hours holds (per :class:`Rollup`).
FULL_CHECK_S = 600.0
#: Route-reason kinds keep at most this many characters.
REASON_CHARS = 40
#: Windows with fewer whole past hours than this are read from the raw rows only.
_MIN_HOURS = 3
#: Periods rebuilt in one transaction at most (short locks on a busy store).
_RUN = 24

ROLLUP_METADATA = sa.MetaData()

Expr = sa.ColumnElement[Any]
#: builds a dimension's source expression for a dialect (``True``: PostgreSQL)
DimSource = Callable[[bool], Expr]
#: group key (dimension values, then the bucket start when asked) -> measures by name
Groups = dict[tuple[Any, ...], dict[str, float]]
_F: sa.types.TypeEngine[Any] = sa.Double()
_I: sa.types.TypeEngine[Any] = sa.BigInteger()


def _table(name: str, dims: Sequence[str], measures: dict[str, sa.types.TypeEngine[Any]]
           ) -> sa.Table:
    return sa.Table(
        name, ROLLUP_METADATA,
        sa.Column("period", sa.BigInteger(), nullable=False),  # floor(created_at / length)
        *(sa.Column(d, sa.Text()) for d in dims),
        *(sa.Column(m, t, nullable=False) for m, t in measures.items()),
        sa.Index(f"ix_{name}_period", "period"),
    )


def _failed() -> Expr:
    u = USAGE_TABLE.c
    return sa.case((sa.or_(u.error.is_not(None), u.status_code >= 400), 1), else_=0)


def _opaque(expr: Expr) -> Expr:
    """``expr || ''``: the same value (NULL stays NULL), but no index matches it, so
    SQLite reads a window through ``ix_usage_created_at`` instead of walking a whole
    ``deployment`` or ``key_id`` index in group order (ANALYZE makes it pick that: 0.6 s
    for one hour of a million-row table, 1 ms this way)."""
    return expr.op("||")(sa.literal_column("''"))


def reason_kind(postgres: bool) -> Expr:
    """The route reason's text before its first ``:`` (``learned``, ``rules``,
    ``weighted``...; all of it when it has none), at most :data:`REASON_CHARS` chars."""
    reason = USAGE_TABLE.c.route_reason
    cut = (sa.func.strpos if postgres else sa.func.instr)(reason, ":")
    head = sa.case((cut > 0, sa.func.substr(reason, 1, cut - 1)), else_=reason)
    return sa.func.substr(head, 1, REASON_CHARS)


@dataclass(frozen=True, slots=True)
class RollupSpec:
    """What a roll-up groups (``dims``: name -> raw expression) and sums (``sums``:
    name -> raw expression; ``requests`` counts rows) from ``source``; ``maxes`` are
    kept as maxima (``last_at``). ``hourly`` and ``daily`` are its tables."""

    source: sa.Table
    dims: dict[str, DimSource]
    sums: dict[str, Callable[[], Expr]]
    maxes: dict[str, Callable[[], Expr]]
    hourly: sa.Table
    daily: sa.Table

    def on(self, engine: sa.Engine) -> Rollup:
        return Rollup(self, engine.dialect.name == "postgresql")


def _spec(name: str, source: sa.Table, dims: dict[str, DimSource],
          sums: dict[str, Callable[[], Expr]], maxes: dict[str, Callable[[], Expr]],
          types: dict[str, sa.types.TypeEngine[Any]]) -> RollupSpec:
    return RollupSpec(source, dims, sums, maxes, _table(f"{name}_hourly", list(dims), types),
                      _table(f"{name}_daily", list(dims), types))


_U, _A = USAGE_TABLE.c, AUDIT_TABLE.c


def _one() -> Expr:
    return sa.literal_column("1")


TRAFFIC = _spec(
    "usage", USAGE_TABLE,
    {"deployment": lambda pg: _U.deployment, "reason": reason_kind,
     "endpoint": lambda pg: _U.endpoint},
    {"requests": _one, "errors": _failed,
     "hits": lambda: sa.case((_U.cache == "hit", 1), else_=0),
     "prompt_tokens": lambda: _U.prompt_tokens,
     "completion_tokens": lambda: _U.completion_tokens, "cost_usd": lambda: _U.cost_usd,
     "saved_usd": lambda: sa.func.coalesce(_U.saved_usd, 0.0),
     "latency_ms": lambda: _U.latency_ms},
    {},
    {"requests": _I, "errors": _I, "hits": _I, "prompt_tokens": _I, "completion_tokens": _I,
     "cost_usd": _F, "saved_usd": _F, "latency_ms": _F},
)
KEYS = _spec(
    "usage_keys", USAGE_TABLE, {"key_id": lambda pg: _U.key_id},
    {"requests": _one, "errors": _failed, "cost_usd": lambda: _U.cost_usd},
    {"last_at": lambda: _U.created_at},
    {"requests": _I, "errors": _I, "cost_usd": _F, "last_at": _F},
)
GUARD = _spec(
    "guard_audit", AUDIT_TABLE,
    {"action": lambda pg: _A.action, "data_class": lambda pg: _A.data_class},
    {"requests": _one,
     "blocked": lambda: sa.case((sa.or_(_A.action == "block", _A.status_code == 403), 1),
                                else_=0),
     "pseudonymised": lambda: _A.pseudonymised, "entities": lambda: _A.entity_count},
    {},
    {"requests": _I, "blocked": _I, "pseudonymised": _I, "entities": _I},
)


@dataclass(frozen=True, slots=True)
class _Level:
    """Raw rows (``table`` None: the spec's source, time in seconds) or a roll-up table
    whose ``period`` counts ``length_s``-second periods."""

    table: sa.Table | None
    length_s: int


_RAW = _Level(None, 1)


class Rollup:
    """One :class:`RollupSpec` on one dialect: reads a window, refreshing it first.

    Keep one per engine for the life of a process: it holds the lock that serialises its
    rebuilds and remembers which hours its last whole-window check covered. Thread-safe.
    """

    def __init__(self, spec: RollupSpec, postgres: bool):
        self.spec = spec
        self.postgres = postgres
        self.measures = (*spec.sums, *spec.maxes)
        self.hour = _Level(spec.hourly, HOUR_S)
        self.day = _Level(spec.daily, DAY_S)
        self._lock = threading.Lock()
        #: the last whole-window check: when it began (monotonic s), its first hour
        self._checked = (-math.inf, math.inf)
        digest = hashlib.blake2b(spec.hourly.name.encode(), digest_size=8).digest()
        self._lock_id = int.from_bytes(digest, "big", signed=True)

    def window(self, engine: sa.Engine, since: float, now: float, by: Sequence[str],
               bucket_s: int | None = None) -> Groups:
        """Groups of the rows with ``created_at >= since`` (the current hour's included),
        by the dimensions ``by`` and, with ``bucket_s``, by epoch-aligned buckets (the
        key's last item: the bucket's start, Unix s)."""
        h0, h1 = math.ceil(since / HOUR_S), math.floor(now / HOUR_S)
        if h1 - h0 < _MIN_HOURS or (bucket_s is not None and bucket_s % HOUR_S):
            with engine.connect() as conn:
                return self._read(conn, _RAW, since, None, by, bucket_s)
        self._refresh_hours(engine, h0, h1)
        parts: list[tuple[_Level, float, float | None]] = [
            (_RAW, since, h0 * HOUR_S), (_RAW, h1 * HOUR_S, None)]
        d0, d1 = math.ceil(h0 * HOUR_S / DAY_S), math.floor(h1 * HOUR_S / DAY_S)
        if d1 - d0 >= 2 and (bucket_s is None or bucket_s % DAY_S == 0):
            self._refresh(engine, self.hour, self.day, d0, d1)
            per_day = DAY_S // HOUR_S
            parts += [(self.hour, h0, d0 * per_day), (self.day, d0, d1),
                      (self.hour, d1 * per_day, h1)]
        else:
            parts.append((self.hour, h0, h1))
        out: Groups = {}
        with engine.connect() as conn:
            for level, lo, hi in parts:
                if hi is None or lo < hi:
                    self._merge(out, self._read(conn, level, lo, hi, by, bucket_s))
        return out

    def _refresh_hours(self, engine: sa.Engine, h0: int, h1: int) -> None:
        """Check hours ``h0 <= hour < h1``: all of them when the last whole-window check
        is older than :data:`FULL_CHECK_S` or did not reach back to ``h0``, else the last
        :data:`RECENT_HOURS`."""
        began = time.monotonic()
        at, first = self._checked
        if began - at < FULL_CHECK_S and first <= h0:
            self._refresh(engine, _RAW, self.hour, max(h0, h1 - RECENT_HOURS), h1)
            return
        self._refresh(engine, _RAW, self.hour, h0, h1)
        with self._lock:
            if began >= self._checked[0] or h0 < self._checked[1]:
                self._checked = (began, h0)

    def _time(self, level: _Level) -> Expr:
        return (self.spec.source.c.created_at if level.table is None
                else level.table.c.period)

    def _period(self, column: Expr, divisor: int) -> Expr:
        """``floor(column / divisor)`` as an integer (the divisor inline, so SELECT and
        GROUP BY hold one expression on PostgreSQL)."""
        scaled = column / sa.literal_column(str(int(divisor)))
        if self.postgres:
            return sa.cast(sa.func.floor(scaled), sa.BigInteger)
        return sa.cast(scaled, sa.Integer)  # positive times: truncation is floor

    def _dims(self, level: _Level, names: Sequence[str]) -> list[Expr]:
        if level.table is None:
            return [_opaque(self.spec.dims[d](self.postgres)) for d in names]
        return [level.table.c[d] for d in names]

    def _aggregates(self, level: _Level) -> list[Expr]:
        if level.table is None:
            return ([sa.func.sum(f()) for f in self.spec.sums.values()]
                    + [sa.func.max(f()) for f in self.spec.maxes.values()])
        tab = level.table.c
        return ([sa.func.sum(tab[m]) for m in self.spec.sums]
                + [sa.func.max(tab[m]) for m in self.spec.maxes])

    def _where(self, query: sa.Select[Any], level: _Level, lo: float,
               hi: float | None) -> sa.Select[Any]:
        query = query.where(self._time(level) >= lo)
        return query if hi is None else query.where(self._time(level) < hi)

    def _read(self, conn: sa.Connection, level: _Level, lo: float, hi: float | None,
              by: Sequence[str], bucket_s: int | None) -> Groups:
        """Groups of ``level`` in ``lo <= time < hi`` (in the level's own units)."""
        keys = self._dims(level, by)
        if bucket_s is not None:
            keys.append(self._period(self._time(level), bucket_s // level.length_s))
        query = self._where(sa.select(*keys, *self._aggregates(level)), level, lo, hi)
        out: Groups = {}
        for row in conn.execute(query.group_by(*keys)):
            key = tuple(row[:len(keys)])
            if bucket_s is not None:
                key = (*key[:-1], float(key[-1]) * bucket_s)
            out[key] = {m: float(v or 0)
                        for m, v in zip(self.measures, row[len(keys):], strict=True)}
        return out

    def _merge(self, into: Groups, more: Groups) -> None:
        for key, values in more.items():
            have = into.get(key)
            if have is None:
                into[key] = values
                continue
            for m, v in values.items():
                have[m] = max(have[m], v) if m in self.spec.maxes else have[m] + v

    def _refresh(self, engine: sa.Engine, finer: _Level, coarser: _Level, first: int,
                 end: int) -> None:
        """Rebuild ``coarser``'s stale periods among ``first <= period < end``, one run
        at a time under the roll-up's locks, each checked again once they are held."""
        with engine.connect() as conn:
            stale = self._stale(conn, finer, coarser, first, end)
        if not stale:
            return
        with self._lock:
            for a, b in _runs(stale):
                with engine.begin() as conn:
                    if self.postgres:  # other processes: held until this commits
                        conn.execute(sa.select(sa.func.pg_advisory_xact_lock(self._lock_id)))
                    if self._stale(conn, finer, coarser, a, b):
                        self._rebuild(conn, finer, coarser, a, b)

    def _stale(self, conn: sa.Connection, finer: _Level, coarser: _Level, first: int,
               end: int) -> list[int]:
        """Periods whose row count in ``finer`` differs from ``coarser``'s, by halving; a
        run of at most :data:`_RUN` periods that ``coarser`` holds nothing of is taken
        whole (never built: rebuilding its empty periods costs nothing)."""
        stale: list[int] = []
        todo = [(first, end)]
        while todo:
            a, b = todo.pop()
            if a >= b:
                continue
            built = self._count(conn, coarser, coarser, a, b)
            if self._count(conn, finer, coarser, a, b) == built:
                continue
            if b - a == 1 or (built == 0 and b - a <= _RUN):
                stale += range(a, b)
            else:
                todo += [(a, (a + b) // 2), ((a + b) // 2, b)]
        return sorted(stale)

    def _count(self, conn: sa.Connection, level: _Level, unit: _Level, a: int, b: int) -> int:
        """Rows ``level`` holds in ``unit``-periods ``a <= period < b``."""
        scale = unit.length_s // level.length_s
        if level.table is None:
            query = sa.select(sa.func.count()).select_from(self.spec.source)
        else:
            query = sa.select(sa.func.sum(level.table.c.requests))
        query = self._where(query, level, a * scale, b * scale)
        return int(conn.execute(query).scalar_one() or 0)

    def _rebuild(self, conn: sa.Connection, finer: _Level, coarser: _Level, a: int,
                 b: int) -> None:
        assert coarser.table is not None
        target = coarser.table
        conn.execute(target.delete().where(target.c.period >= a, target.c.period < b))
        period = self._period(self._time(finer), coarser.length_s // finer.length_s)
        dims = self._dims(finer, list(self.spec.dims))
        scale = coarser.length_s // finer.length_s
        select = self._where(sa.select(period, *dims, *self._aggregates(finer)), finer,
                             a * scale, b * scale).group_by(period, *dims)
        conn.execute(target.insert().from_select(
            ["period", *self.spec.dims, *self.measures], select))


def _runs(periods: list[int]) -> list[tuple[int, int]]:
    """Consecutive periods as ``[a, b)`` ranges of at most :data:`_RUN`."""
    out: list[tuple[int, int]] = []
    for p in periods:
        if out and out[-1][1] == p and p - out[-1][0] < _RUN:
            out[-1] = (out[-1][0], p + 1)
        else:
            out.append((p, p + 1))
    return out
