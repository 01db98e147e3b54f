"""The ``usage`` table (SQLAlchemy Core) and :class:`UsageStore`, its reads and writes.

SQLite (the default, in WAL mode so the CLI can read while the gateway writes) and
PostgreSQL (``postgresql://`` URLs use psycopg 3: ``pip install 'modelmix[postgres]'``)
run the same statements; percentiles are computed in Python so both give equal numbers.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Sequence
from operator import attrgetter
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError
from sqlalchemy.pool import StaticPool

from modelmix.errors import ConfigError
from modelmix.store._audit import AUDIT_FIELDS, AUDIT_METADATA, AUDIT_TABLE, audit_rows
from modelmix.store._records import UsageRecord
from modelmix.store._schema import create_tables, upgrade_table
from modelmix.store._summary import GroupStats, SummaryRow, build_rows

__all__ = [
    "GROUP_FIELDS",
    "METADATA",
    "REQUEST_TEXTS_TABLE",
    "USAGE_TABLE",
    "GroupField",
    "UsageStore",
    "create_store_engine",
    "normalize_url",
]

GroupField = Literal["deployment", "key", "model", "provider", "system", "step"]

METADATA = sa.MetaData()

#: One row per request, plus one per step of a system of models; columns mirror
#: :class:`~modelmix.store.UsageRecord` field by field. Columns added after v1 are nullable
#: and come last, so :func:`~modelmix.store._schema.upgrade_table` can add them to a table
#: created before them.
USAGE_TABLE = sa.Table(
    "usage",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),  # Unix time, seconds
    sa.Column("requested_model", sa.Text()),
    sa.Column("key_id", sa.Text()),
    sa.Column("deployment", sa.Text()),
    sa.Column("provider", sa.Text()),
    sa.Column("route_reason", sa.Text()),
    sa.Column("stream", sa.Boolean(), nullable=False, default=False),
    sa.Column("prompt_tokens", sa.BigInteger(), nullable=False, default=0),
    sa.Column("completion_tokens", sa.BigInteger(), nullable=False, default=0),
    sa.Column("cost_usd", sa.Double(), nullable=False, default=0.0),
    sa.Column("latency_ms", sa.Double(), nullable=False, default=0.0),
    sa.Column("ttft_ms", sa.Double()),
    sa.Column("status_code", sa.Integer(), nullable=False, default=200),
    sa.Column("error", sa.Text()),
    sa.Column("error_type", sa.Text()),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    # systems of models (docs/usage.md): step rows point at their envelope row by parent_id
    sa.Column("parent_id", sa.Text()),
    sa.Column("system", sa.Text()),
    sa.Column("step", sa.Text()),
    sa.Column("verdict", sa.Text()),
    # media (docs/multimodal.md): parts as kind/type/size/sha256 (never their bytes), how
    # they were converted to text, and the time spent reading them
    sa.Column("media", sa.Text()),
    sa.Column("conversions", sa.Text()),
    sa.Column("media_ms", sa.Double()),
    # the response cache (docs/cache.md): hit / miss / bypass, and what a hit saved (USD)
    sa.Column("cache", sa.Text()),
    sa.Column("saved_usd", sa.Double()),
    # which HTTP API the request came through (docs/endpoints.md)
    sa.Column("endpoint", sa.Text()),
    sa.Index("ix_usage_created_at", "created_at"),
    # (column, created_at): the dashboard's request log filtered by deployment, key or
    # status code pages newest-first on the index alone (docs/dashboard.md); tables made
    # before them keep their one-column ix_usage_deployment / ix_usage_key_id as well
    sa.Index("ix_usage_deployment_created_at", "deployment", "created_at"),
    sa.Index("ix_usage_key_id_created_at", "key_id", "created_at"),
    sa.Index("ix_usage_status_code_created_at", "status_code", "created_at"),
    sa.Index("ix_usage_request_id", "request_id"),
    sa.Index("ix_usage_parent_id", "parent_id"),
)

#: Prompt and answer texts of requests, written only when ``store.keep_prompts`` or
#: ``store.keep_responses`` is on (kept apart from ``usage`` so that table stays free of
#: personal data). Joined to ``usage`` by ``request_id``.
REQUEST_TEXTS_TABLE = sa.Table(
    "request_texts",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),  # Unix time, seconds
    sa.Column("prompt", sa.Text()),
    sa.Column("response", sa.Text()),
    sa.Index("ix_request_texts_request_id", "request_id"),
)

#: ``group_by`` names -> columns of :data:`USAGE_TABLE`.
GROUP_FIELDS: dict[str, str] = {
    "deployment": "deployment",
    "key": "key_id",
    "model": "requested_model",
    "provider": "provider",
    "system": "system",
    "step": "step",
    "endpoint": "endpoint",
}

_RECORD_FIELDS = tuple(c.name for c in USAGE_TABLE.columns if c.name != "id")
_record_row = attrgetter(*_RECORD_FIELDS)
_TEXT_FIELDS = ("request_id", "created_at", "prompt", "response")


class _PreparedInsert:
    """One table's INSERT compiled once for the engine's dialect, run with driver-level
    ``executemany`` over tuples.

    Why not ``conn.execute(table.insert(), dicts)``: SQLAlchemy's per-row parameter
    processing cost ~20 us of Python per usage record on the writer thread, which holds
    the GIL the gateway's event loop needs (benchmarks/overhead/RESULTS.md: it set the
    gateway's added p99). Here the rows go to the DBAPI as tuples untouched.
    """

    def __init__(self, engine: Engine, table: sa.Table, fields: Sequence[str]):
        compiled = table.insert().compile(dialect=engine.dialect, column_keys=list(fields))
        self.sql = str(compiled)
        order = compiled.positiontup if compiled.positional else None
        self._shape: Callable[[tuple[Any, ...]], Any] | None
        if order is not None and tuple(order) != tuple(fields):
            index = [list(fields).index(name) for name in order]
            self._shape = lambda row: tuple(row[i] for i in index)
        elif order is None:
            names = tuple(fields)
            self._shape = lambda row: dict(zip(names, row, strict=True))
        else:
            self._shape = None

    def execute(self, conn: sa.Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        """Insert ``rows`` in slices of :data:`_SLICE` rows, yielding the CPU between slices
        (see :data:`_SLICE`)."""
        shape = self._shape
        params = list(rows) if shape is None else [shape(row) for row in rows]
        for start in range(0, len(params), _SLICE):
            if start:
                _yield_cpu()
            conn.exec_driver_sql(self.sql, params[start:start + _SLICE])


#: Rows per ``executemany`` call. A batch of 500 inserted in one call kept the writer
#: thread on the CPU for several ms at a time; on the gateway's core that delayed the event
#: loop by up to a scheduler slice (added p99 2.4 ms vs 0.5 ms with the store off,
#: benchmarks/overhead/RESULTS.md). Slices of 32 rows, with the CPU offered to other
#: threads between them, keep each burst well under a millisecond while the batch stays
#: one transaction.
_SLICE = 32
_yield_cpu = getattr(os, "sched_yield", lambda: time.sleep(0))


def normalize_url(url: str | URL) -> URL:
    """Parse a SQLAlchemy URL; bare ``postgres(ql)://`` means the psycopg 3 driver, and a
    string without ``://`` is a SQLite file path (``usage.db`` = ``sqlite:///usage.db``).

    Raises:
        ConfigError: empty, or the URL cannot be parsed.
    """
    if isinstance(url, str) and "://" not in url:
        if not url.strip():
            raise ConfigError("empty database URL; give sqlite:///path.db, "
                              "postgresql://user@host/db or a SQLite file path")
        url = f"sqlite:///{Path(url).expanduser().absolute()}"
    try:
        parsed = make_url(url)
    except ArgumentError as exc:
        raise ConfigError(f"invalid database URL {url!r}: {exc}") from exc
    if parsed.drivername in ("postgres", "postgresql"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _is_memory_sqlite(url: URL) -> bool:
    return url.get_backend_name() == "sqlite" and url.database in (None, "", ":memory:")


def create_store_engine(url: str | URL) -> Engine:
    """An engine for ``url``: SQLite in WAL mode (parent folder created), or PostgreSQL.

    In-memory SQLite shares one connection across threads (tests only).

    Raises:
        ConfigError: bad URL, unknown dialect, or the driver is not installed.
    """
    parsed = normalize_url(url)
    kwargs: dict[str, Any] = {}
    backend = parsed.get_backend_name()
    if _is_memory_sqlite(parsed):
        kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
    elif backend == "sqlite":
        Path(str(parsed.database)).expanduser().parent.mkdir(parents=True, exist_ok=True)
        kwargs = {"connect_args": {"timeout": 30}}
    elif backend == "postgresql":
        kwargs = {"pool_pre_ping": True, "connect_args": {"connect_timeout": 10}}
    try:
        engine = sa.create_engine(parsed, **kwargs)
    except NoSuchModuleError as exc:
        raise ConfigError(f"unsupported database URL {_safe(parsed)}: {exc}") from exc
    except ImportError as exc:
        hint = " (pip install 'modelmix[postgres]')" if backend == "postgresql" else ""
        raise ConfigError(f"no driver for {_safe(parsed)}: {exc}{hint}") from exc
    if backend == "sqlite" and not _is_memory_sqlite(parsed):
        sa.event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA busy_timeout=30000")
    finally:
        cursor.close()


def _safe(url: URL) -> str:
    return url.render_as_string(hide_password=True)


class UsageStore:
    """Reads and writes the ``usage`` table. Blocking: call it off the event loop.

    Args:
        url: a SQLAlchemy URL (``sqlite:///usage.db``, ``postgresql://user@host/db``)
            or an engine.

    Raises:
        ConfigError: from the constructor, for a bad URL or a missing driver.

    Example::

        store = UsageStore("sqlite:///usage.db")
        store.create_all()
        store.insert_many([UsageRecord(request_id="r1", created_at=time.time())])
        for row in store.summary(since=time.time() - 86400, group_by=("deployment",)):
            print(row.group, row.requests, row.cost_usd, row.p95_latency_ms)
    """

    def __init__(self, url: str | URL | Engine):
        self.engine = url if isinstance(url, Engine) else create_store_engine(url)
        self._inserts: tuple[_PreparedInsert, ...] | None = None

    def __repr__(self) -> str:
        return f"UsageStore({_safe(self.engine.url)!r})"

    def __enter__(self) -> UsageStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    @property
    def url(self) -> URL:
        return self.engine.url

    def create_all(self) -> None:
        """Create the tables and indexes when missing, and add to an existing ``usage`` table
        the columns and indexes it lacks (idempotent; safe when processes race)."""
        create_tables(self.engine, METADATA)
        upgrade_table(self.engine, USAGE_TABLE)
        create_tables(self.engine, AUDIT_METADATA)

    def insert_many(self, records: Sequence[UsageRecord]) -> int:
        """Insert ``records`` in one transaction (all or none); returns the row count."""
        if not records:
            return 0
        usage, texts_insert, audit_insert = self._prepared()
        rows = [_record_row(rec) for rec in records]
        texts = [(rec.request_id, rec.created_at, rec.prompt, rec.response)
                 for rec in records if rec.prompt is not None or rec.response is not None]
        audits = audit_rows(records)
        with self.engine.begin() as conn:
            usage.execute(conn, rows)
            if texts:
                texts_insert.execute(conn, texts)
            if audits:
                audit_insert.execute(conn, audits)
        return len(rows)

    def _prepared(self) -> tuple[_PreparedInsert, ...]:
        if self._inserts is None:
            self._inserts = (
                _PreparedInsert(self.engine, USAGE_TABLE, _RECORD_FIELDS),
                _PreparedInsert(self.engine, REQUEST_TEXTS_TABLE, _TEXT_FIELDS),
                _PreparedInsert(self.engine, AUDIT_TABLE, AUDIT_FIELDS),
            )
        return self._inserts

    def existing(self, records: Iterable[UsageRecord]) -> set[tuple[str, float]]:
        """The ``(request_id, created_at)`` pairs of ``records`` already stored."""
        ids = sorted({rec.request_id for rec in records})
        col = USAGE_TABLE.c
        found: set[tuple[str, float]] = set()
        with self.engine.connect() as conn:
            for start in range(0, len(ids), 500):
                query = sa.select(col.request_id, col.created_at).where(
                    col.request_id.in_(ids[start:start + 500]))
                found.update((str(r[0]), float(r[1])) for r in conn.execute(query))
        return found

    def records(self, since: float | None = None) -> list[UsageRecord]:
        """Stored records (oldest first), those at or after ``since`` (Unix s) if given."""
        query = sa.select(*(USAGE_TABLE.c[name] for name in _RECORD_FIELDS))
        query = _since(query, since).order_by(USAGE_TABLE.c.created_at, USAGE_TABLE.c.id)
        with self.engine.connect() as conn:
            return [UsageRecord(**dict(row._mapping)) for row in conn.execute(query)]

    def count(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).select_from(USAGE_TABLE))
                       .scalar_one())

    def summary(
        self, since: float | None = None, group_by: Sequence[GroupField] = ("deployment",)
    ) -> list[SummaryRow]:
        """Per-group requests, steps, errors, tokens, cost and latency percentiles.

        A system of models' request counts once under ``requests`` (its envelope row); the
        rows of its steps count under ``steps``. Tokens and cost are summed over every row
        (envelope rows carry none), so nothing is counted twice.

        Args:
            since: only rows created at or after this Unix time (s).
            group_by: fields to group by, in order; ``()`` gives one total row.

        Returns:
            Rows sorted by cost (USD) descending. Latency percentiles (ms) cover the group's
            successful requests, or its successful steps when it has no requests; see
            :mod:`modelmix.store._summary` for the method.

        Raises:
            ValueError: an unknown ``group_by`` field.
        """
        keys = [_group_column(name) for name in group_by]
        n = len(keys)
        stats: dict[tuple[str | None, ...], GroupStats] = {}
        with self.engine.connect() as conn:
            for row in conn.execute(_totals_query(keys, since)):
                counts = [int(v or 0) for v in row[n:n + 6]]
                stats[tuple(row[:n])] = GroupStats(
                    requests=counts[0], errors=counts[1], steps=counts[2],
                    step_errors=counts[3], prompt_tokens=counts[4], completion_tokens=counts[5],
                    cost_usd=float(row[n + 6] or 0.0))
            for row in conn.execute(_timings_query(keys, since)):
                stats[tuple(row[:n])].add_timing(
                    float(row[n + 1]), None if row[n + 2] is None else float(row[n + 2]),
                    step=bool(row[n]))
        return build_rows(tuple(group_by), stats)

    def close(self) -> None:
        """Release pooled connections."""
        self.engine.dispose()


def _group_column(name: str) -> sa.Column[Any]:
    if name not in GROUP_FIELDS:
        raise ValueError(f"unknown group_by field {name!r}; expected one of "
                         f"{sorted(GROUP_FIELDS)}")
    return USAGE_TABLE.c[GROUP_FIELDS[name]]


def _since(query: sa.Select[Any], since: float | None) -> sa.Select[Any]:
    return query if since is None else query.where(USAGE_TABLE.c.created_at >= since)


def _failed() -> sa.ColumnElement[bool]:
    col = USAGE_TABLE.c
    return sa.or_(col.error.is_not(None), col.status_code >= 400)


def _count(*conditions: sa.ColumnElement[bool]) -> sa.ColumnElement[Any]:
    return sa.func.sum(sa.case((sa.and_(*conditions), 1), else_=0))


def _totals_query(keys: Sequence[sa.Column[Any]], since: float | None) -> sa.Select[Any]:
    """Per group: requests, errors, steps, step errors, prompt and completion tokens, cost
    (the order :class:`GroupStats` takes them in)."""
    col = USAGE_TABLE.c
    request, step, failed = col.parent_id.is_(None), col.parent_id.is_not(None), _failed()
    query = sa.select(
        *keys, _count(request), _count(request, failed), _count(step), _count(step, failed),
        sa.func.sum(col.prompt_tokens), sa.func.sum(col.completion_tokens),
        sa.func.sum(col.cost_usd))
    return _since(query, since).group_by(*keys)


def _timings_query(keys: Sequence[sa.Column[Any]], since: float | None) -> sa.Select[Any]:
    """Per successful row: its group, 1 for a step row (else 0), latency and TTFT (ms).
    Step rows without a timing (a verdict written with latency 0) are left out."""
    col = USAGE_TABLE.c
    is_step = sa.case((col.parent_id.is_not(None), 1), else_=0)
    timed = sa.or_(col.parent_id.is_(None), col.latency_ms > 0)
    query = sa.select(*keys, is_step, col.latency_ms, col.ttft_ms)
    return _since(query, since).where(~_failed(), timed)
