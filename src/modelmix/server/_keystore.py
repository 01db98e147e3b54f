"""Virtual keys at rest: the ``virtual_keys`` table (SQLAlchemy Core) and the spend ledger.

Only the SHA-256 hex digest of a key is stored, with a short display prefix; the key
itself is shown once, when created. The store shares the usage store's database
(``store.url``, overridden by ``MODELMIX_DB_URL``) but owns its own table.

All :class:`KeyStore` methods block: call them from a worker thread
(``asyncio.to_thread``) inside the gateway.

Example::

    store = KeyStore("sqlite:///modelmix_usage.db")
    key, record = store.create(alias="ci", models=["open"], budget_usd=5.0, rpm=60)
    print(key)                      # sk-mm-...; only its hash is in the database
    store.revoke(record.id)
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import secrets
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import NoSuchModuleError, SQLAlchemyError
from sqlalchemy.pool import StaticPool

from modelmix.catalog import Config
from modelmix.errors import ConfigError
from modelmix.server._limits import check_limits
from modelmix.store._schema import upgrade_table
from modelmix.store._sql import USAGE_TABLE, normalize_url

__all__ = [
    "KEY_PREFIX",
    "KeyStore",
    "SpendLedger",
    "VirtualKey",
    "database_url",
    "hash_key",
]

log = logging.getLogger("modelmix.keys")

#: Every virtual key starts with this.
KEY_PREFIX = "sk-mm-"

_DISPLAY_CHARS = len(KEY_PREFIX) + 4

_metadata = sa.MetaData()

virtual_keys = sa.Table(
    "virtual_keys",
    _metadata,
    sa.Column("id", sa.String(32), primary_key=True),
    sa.Column("alias", sa.String(200), nullable=True),
    sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("key_prefix", sa.String(32), nullable=False),
    sa.Column("allowed_models", sa.Text, nullable=True),
    sa.Column("budget_usd", sa.Float, nullable=True),
    sa.Column("spent_usd", sa.Float, nullable=False, default=0.0),
    sa.Column("rpm", sa.Integer, nullable=True),
    sa.Column("tpm", sa.Integer, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    # added in place (store/_schema.py upgrade_table): the key's response-cache mode
    sa.Column("cache", sa.String(16), nullable=True),
)


def database_url(config: Config) -> str:
    """The SQLAlchemy URL of the store: ``MODELMIX_DB_URL``, else ``config.store.url``."""
    return os.environ.get("MODELMIX_DB_URL") or config.store.url


def hash_key(key: str) -> str:
    """SHA-256 hex digest of a key (what the table stores)."""
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True, slots=True)
class VirtualKey:
    """One stored key (never the key itself).

    Attributes:
        id: short random id, used in usage records, URLs and the CLI.
        alias: free-form label, or None.
        key_hash: SHA-256 hex of the key.
        key_prefix: the key's first characters, for display (``sk-mm-AbCd``).
        allowed_models: deployment / group names the key may use; None means all.
        budget_usd: total spend allowed in USD; None means unlimited.
        spent_usd: spend persisted so far, USD.
        rpm / tpm: requests / tokens per minute; None means unlimited.
        created_at / revoked_at: Unix time in seconds; revoked_at None while active.
        cache: the key's response cache, ``off``, ``exact`` or ``semantic``; None: the
            catalog's ``cache.mode`` (docs/cache.md).
    """

    id: str
    alias: str | None
    key_hash: str
    key_prefix: str
    allowed_models: frozenset[str] | None
    budget_usd: float | None
    spent_usd: float
    rpm: int | None
    tpm: int | None
    created_at: float
    revoked_at: float | None = None
    cache: str | None = None

    @property
    def revoked(self) -> bool:
        return self.revoked_at is not None


def _row_to_key(row: sa.Row[Any]) -> VirtualKey:
    models = json.loads(row.allowed_models) if row.allowed_models is not None else None
    return VirtualKey(
        id=row.id, alias=row.alias, key_hash=row.key_hash, key_prefix=row.key_prefix,
        allowed_models=frozenset(models) if models is not None else None,
        budget_usd=row.budget_usd, spent_usd=row.spent_usd or 0.0, rpm=row.rpm, tpm=row.tpm,
        created_at=row.created_at, revoked_at=row.revoked_at,
        cache=getattr(row, "cache", None),
    )


class KeyStore:
    """The ``virtual_keys`` table in the database at ``url`` (SQLite or PostgreSQL).

    Nothing is created until the first write: reading a SQLite file that does not
    exist answers "no keys" without creating it.

    Args:
        url: SQLAlchemy URL, e.g. ``sqlite:///modelmix_usage.db`` (bare ``postgres://``
            means psycopg 3, as for the usage store).

    Raises:
        ConfigError: the URL cannot be parsed, names an unknown database, or its driver
            is not installed.
    """

    def __init__(self, url: str):
        self.url = normalize_url(url)
        try:
            self.url.get_dialect().import_dbapi()
        except (NoSuchModuleError, ImportError) as exc:
            raise ConfigError(f"cannot use key store database "
                              f"{self.url.render_as_string(hide_password=True)}: {exc}") from exc
        self._engine: sa.Engine | None = None
        self._created = False
        self._upgraded = False
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: Config) -> KeyStore:
        """The store at :func:`database_url` of ``config``."""
        return cls(database_url(config))

    def __repr__(self) -> str:
        return f"KeyStore({self.url.render_as_string(hide_password=True)!r})"

    def _sqlite_file(self) -> Path | None:
        db = self.url.database
        if self.url.get_backend_name() != "sqlite" or not db or db == ":memory:":
            return None
        return None if db.startswith("file:") else Path(db)

    def _exists(self) -> bool:
        if self._engine is not None:
            return True
        path = self._sqlite_file()
        return path is None or path.exists()

    def _connect(self, *, create: bool = False) -> sa.Engine:
        """The engine; ``create`` (writes only) also creates the table. Reads never
        create it: a missing table must not look like a fresh, empty one."""
        with self._lock:
            if self._engine is None:
                kw: dict[str, Any] = {}
                if self.url.get_backend_name() == "sqlite":
                    kw["connect_args"] = {"timeout": 30, "check_same_thread": False}
                    if self._sqlite_file() is None:
                        kw["poolclass"] = StaticPool
                self._engine = sa.create_engine(self.url, **kw)
            if create and not self._created:
                _metadata.create_all(self._engine, tables=[virtual_keys])
                self._created = True
            if not self._upgraded and (self._created or self._has_table(self._engine)):
                upgrade_table(self._engine, virtual_keys)  # columns added since v1
                self._upgraded = True
            return self._engine

    @staticmethod
    def _has_table(engine: sa.Engine) -> bool:
        with engine.connect() as conn:
            return sa.inspect(conn).has_table(virtual_keys.name)

    def _table_exists(self, conn: sa.Connection) -> bool:
        return self._created or sa.inspect(conn).has_table(virtual_keys.name)

    def create(
        self,
        *,
        alias: str | None = None,
        models: Iterable[str] | None = None,
        budget_usd: float | None = None,
        rpm: int | None = None,
        tpm: int | None = None,
        cache: str | None = None,
    ) -> tuple[str, VirtualKey]:
        """Create a key; returns (the key, its record). The key is not stored.

        Raises:
            ValueError: a limit out of range (see :func:`check_limits`); nothing is written.
            sqlalchemy.exc.SQLAlchemyError: the database refused the write.
        """
        check_limits(budget_usd, rpm, tpm)
        if cache not in (None, "off", "exact", "semantic"):
            raise ValueError(f"cache must be off, exact or semantic (got {cache!r})")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        allowed = sorted(set(models)) if models is not None else None
        record = VirtualKey(
            id=secrets.token_hex(6), alias=alias, key_hash=hash_key(key),
            key_prefix=key[:_DISPLAY_CHARS],
            allowed_models=frozenset(allowed) if allowed is not None else None,
            budget_usd=budget_usd, spent_usd=0.0, rpm=rpm, tpm=tpm, created_at=time.time(),
            cache=cache,
        )
        values = {
            "id": record.id, "alias": alias, "key_hash": record.key_hash,
            "key_prefix": record.key_prefix,
            "allowed_models": json.dumps(allowed) if allowed is not None else None,
            "budget_usd": budget_usd, "spent_usd": 0.0, "rpm": rpm, "tpm": tpm,
            "created_at": record.created_at, "revoked_at": None, "cache": cache,
        }
        with self._connect(create=True).begin() as conn:
            conn.execute(virtual_keys.insert().values(**values))
        return key, record

    def _select_one(self, clause: sa.ColumnElement[bool]) -> VirtualKey | None:
        if not self._exists():
            return None
        with self._connect().connect() as conn:
            if not self._table_exists(conn):
                return None
            row = conn.execute(virtual_keys.select().where(clause)).first()
        return _row_to_key(row) if row is not None else None

    def get(self, key_id: str) -> VirtualKey | None:
        """The key with id ``key_id`` (revoked or not), or None."""
        return self._select_one(virtual_keys.c.id == key_id)

    def get_by_hash(self, key_hash: str) -> VirtualKey | None:
        """The key whose SHA-256 hex is ``key_hash`` (revoked or not), or None."""
        return self._select_one(virtual_keys.c.key_hash == key_hash)

    def list_keys(self) -> list[VirtualKey]:
        """Every key, revoked ones included, oldest first."""
        if not self._exists():
            return []
        query = virtual_keys.select().order_by(virtual_keys.c.created_at, virtual_keys.c.id)
        with self._connect().connect() as conn:
            if not self._table_exists(conn):
                return []
            return [_row_to_key(row) for row in conn.execute(query)]

    def count(self) -> int:
        """How many keys exist, revoked ones included, as far as the gateway's open mode
        is concerned: when the ``virtual_keys`` table is empty or missing but usage rows
        name virtual keys, the store lost them (table dropped or renamed, rows deleted),
        and the number of distinct key ids in usage is returned instead, with an error
        logged, so the gateway keeps asking for keys (fail closed). A database that was
        deleted or emptied as a whole cannot be told from a new one: docs/keys.md."""
        if not self._exists():
            return 0
        with self._connect().connect() as conn:
            if self._table_exists(conn):
                query = sa.select(sa.func.count()).select_from(virtual_keys)
                found = int(conn.execute(query).scalar_one())
                if found:
                    return found
            return self._keys_seen_in_usage(conn)

    def _keys_seen_in_usage(self, conn: sa.Connection) -> int:
        if not sa.inspect(conn).has_table(USAGE_TABLE.name):
            return 0
        key = USAGE_TABLE.c.key_id
        query = (sa.select(sa.func.count(sa.distinct(key)))
                 .where(key.is_not(None), key != "master"))
        seen = int(conn.execute(query).scalar_one())
        if seen:
            log.error("the virtual_keys table is empty or missing, but %d virtual keys made "
                      "requests recorded in this database: the key store looks damaged; "
                      "every request needs a key until it is restored", seen)
        return seen

    def revoke(self, key_id: str) -> VirtualKey | None:
        """Revoke a key (idempotent: keeps the first revocation time); None if unknown."""
        if not self._exists():
            return None
        with self._connect(create=True).begin() as conn:
            conn.execute(virtual_keys.update()
                         .where(virtual_keys.c.id == key_id, virtual_keys.c.revoked_at.is_(None))
                         .values(revoked_at=time.time()))
        return self.get(key_id)

    def add_spend(self, deltas: Mapping[str, float]) -> None:
        """Add USD amounts to keys' ``spent_usd`` (increments, so several gateway
        processes writing to one database add up instead of overwriting)."""
        if not deltas:
            return
        column = virtual_keys.c.spent_usd
        with self._connect().begin() as conn:
            for key_id, usd in deltas.items():
                conn.execute(virtual_keys.update().where(virtual_keys.c.id == key_id)
                             .values(spent_usd=column + usd))

    def close(self) -> None:
        """Release the database connections."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None


class SpendLedger:
    """Collects settled spend on the event loop and writes it in batches off it.

    ``add`` never blocks: it adds to a pending batch and, if no write is scheduled,
    schedules one ``delay_s`` seconds later in a worker thread. ``aclose`` writes
    what is left. A failed write is logged and kept for the next one.

    Args:
        store: where spend goes.
        delay_s: seconds to wait to batch spend before writing.
    """

    def __init__(self, store: KeyStore, *, delay_s: float = 0.2):
        self._store = store
        self._delay_s = delay_s
        self._pending: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    def add(self, key_id: str, usd: float) -> None:
        """Record ``usd`` spent by ``key_id``."""
        self._pending[key_id] = self._pending.get(key_id, 0.0) + usd
        if self._task is not None and not self._task.done():
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (synchronous use): write now
            self._write(self._take())
            return
        self._task = loop.create_task(self._run())

    def _take(self) -> dict[str, float]:
        batch, self._pending = self._pending, {}
        return batch

    def _restore(self, batch: dict[str, float]) -> None:
        log.exception("could not persist key spend; will retry on the next write")
        for key_id, usd in batch.items():
            self._pending[key_id] = self._pending.get(key_id, 0.0) + usd

    def _write(self, batch: dict[str, float]) -> None:
        try:
            self._store.add_spend(batch)
        except SQLAlchemyError:
            self._restore(batch)

    async def _run(self) -> None:
        while self._pending:
            await asyncio.sleep(self._delay_s)
            if not await self.flush():
                return  # retried on the next add() or at aclose()

    async def flush(self) -> bool:
        """Write the pending spend now (in a worker thread); False if the write failed."""
        batch = self._take()
        if not batch:
            return True
        try:
            await asyncio.to_thread(self._store.add_spend, batch)
        except SQLAlchemyError:
            self._restore(batch)
            return False
        return True

    async def aclose(self) -> None:
        """Wait for a scheduled write, then write what is left."""
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
        await self.flush()
