"""The usage writer: records go into memory at once and reach the database in batches.

``record`` only appends to an in-memory queue under a lock (no I/O, safe on the event
loop). One background thread takes up to ``batch_size`` records at a time, waiting at
most ``flush_interval_s`` for a batch to fill, and inserts each batch in one transaction.
When the database keeps failing after ``retries`` retries, the batch is appended to a JSONL
spill file; the spill is replayed (skipping rows already stored) at the next start and
after the next successful insert. ``close`` writes everything queued, then returns.
"""

from __future__ import annotations

import atexit
import json
import logging
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from modelmix.catalog import StoreSettings
from modelmix.store._records import NullSink, UsageRecord, UsageSink
from modelmix.store._spill import SpillFile
from modelmix.store._sql import UsageStore, normalize_url

__all__ = [
    "DB_URL_ENV",
    "UsageWriter",
    "WriterStats",
    "build_usage_sink",
    "default_spill_path",
    "resolve_db_url",
]

log = logging.getLogger("modelmix.store")

#: Environment variable that overrides ``store.url`` from the config.
DB_URL_ENV = "MODELMIX_DB_URL"


def resolve_db_url(settings: StoreSettings, override: str | None = None) -> str:
    """The database URL to use: ``override``, else ``$MODELMIX_DB_URL``, else ``settings.url``."""
    return override or os.environ.get(DB_URL_ENV) or settings.url


def default_spill_path(url: str | URL) -> Path:
    """``<db file>.spill.jsonl`` for a SQLite file, else ``./modelmix_usage.spill.jsonl``."""
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite" and parsed.database not in (None, "", ":memory:"):
        db = Path(str(parsed.database)).expanduser()
        return db.with_name(db.name + ".spill.jsonl").absolute()
    return Path("modelmix_usage.spill.jsonl").absolute()


def build_usage_sink(settings: StoreSettings) -> UsageSink:
    """The gateway's usage sink: a :class:`UsageWriter` over ``$MODELMIX_DB_URL`` or
    ``settings.url``, or a :class:`NullSink` when ``settings.enabled`` is false.

    Raises:
        ConfigError: a bad URL or a missing database driver.
    """
    if not settings.enabled:
        return NullSink()
    url = resolve_db_url(settings)
    return UsageWriter(UsageStore(url), spill_path=settings.spill_path or default_spill_path(url))


@dataclass(slots=True)
class WriterStats:
    """Records written to the database, spilled to the file, and replayed from it."""

    written: int = 0
    spilled: int = 0
    replayed: int = 0


class UsageWriter:
    """A :class:`~modelmix.store.UsageSink` that writes to a :class:`UsageStore` off the
    event loop, in batches, and never drops a record while the disk works.

    Args:
        store: the database; its table is created when missing.
        spill_path: JSONL file for records the database refused (default: next to a
            SQLite file, else ``./modelmix_usage.spill.jsonl``).
        batch_size: most records per insert.
        flush_interval_s: longest wait (s) for a batch to fill before inserting it.
        retries: extra insert attempts before a batch is spilled.
        retry_backoff_s: first retry delay (s), doubled after each retry.
        down_cooldown_s: after a spill, batches get a single attempt for this long (s), so
            a dead database does not slow shutdown down.
        close_timeout_s: how long ``close`` waits (s) for the writer before spilling what
            is still queued or in flight.
        thread_nice: niceness added to the writer thread (Linux; ignored where threads
            have no priority of their own). The writer shares the gateway's core: at equal
            priority the scheduler let a write burst delay the event loop by a time slice
            (~2 ms of added p99 in benchmarks/overhead/RESULTS.md); niced, it yields to
            the loop at once and still gets ~10% of a busy core. None leaves it alone.

    Example::

        writer = UsageWriter(UsageStore("sqlite:///usage.db"))
        service = ChatService(config, usage=writer)
        ...
        writer.close()  # flushes
    """

    def __init__(
        self,
        store: UsageStore,
        *,
        spill_path: str | os.PathLike[str] | None = None,
        batch_size: int = 500,
        flush_interval_s: float = 0.25,
        retries: int = 3,
        retry_backoff_s: float = 0.2,
        down_cooldown_s: float = 5.0,
        close_timeout_s: float = 30.0,
        thread_nice: int | None = 10,
        sleep: Callable[[float], None] = time.sleep,
    ):
        if batch_size < 1 or flush_interval_s <= 0 or retries < 0:
            raise ValueError("need batch_size >= 1, flush_interval_s > 0 and retries >= 0")
        self.store = store
        self.spill = SpillFile(spill_path or default_spill_path(store.url))
        self.batch_size, self.flush_interval_s = batch_size, flush_interval_s
        self.retries, self.retry_backoff_s = retries, retry_backoff_s
        self.down_cooldown_s, self.close_timeout_s = down_cooldown_s, close_timeout_s
        self.stats = WriterStats()
        self.thread_nice = thread_nice
        self._sleep = sleep
        self._cond = threading.Condition()
        self._pending: deque[UsageRecord] = deque()
        self._inflight: list[UsageRecord] = []
        self._enqueued = self._handled = 0
        self._flushing = 0
        self._closing = False
        self._closed = False
        self._close_lock = threading.Lock()
        self._schema_ready = False
        self._down_until = 0.0
        self._replay_after = 0.0
        self._thread = threading.Thread(target=self._run, name="modelmix-usage-writer",
                                        daemon=True)
        self._thread.start()
        atexit.register(self.close)

    def __repr__(self) -> str:
        return f"UsageWriter({self.store!r}, spill={str(self.spill.path)!r})"

    # -- the sink API (event loop side) ------------------------------------------------

    def record(self, rec: UsageRecord) -> None:
        """Queue ``rec`` (no I/O). After ``close`` it goes straight to the spill file."""
        with self._cond:
            if not self._closing:
                self._pending.append(rec)
                self._enqueued += 1
                if len(self._pending) == 1 or len(self._pending) >= self.batch_size:
                    self._cond.notify_all()
                return
        self._spill([rec])

    def flush(self, timeout_s: float | None = None) -> bool:
        """Block until every record queued before the call is written or spilled.

        Returns False when ``timeout_s`` (s) passed first. Blocking: not for the event loop.
        """
        with self._cond:
            target = self._enqueued
            self._flushing += 1
            self._cond.notify_all()
            try:
                return self._cond.wait_for(
                    lambda: self._handled >= target or not self._thread.is_alive(), timeout_s)
            finally:
                self._flushing -= 1

    def close(self) -> None:
        """Write everything queued, stop the thread and release the database (idempotent).

        Waits up to ``close_timeout_s``; what is still queued or in flight then goes to the
        spill file (rows that reach the database later are skipped at replay).
        """
        with self._close_lock:
            if self._closed:
                return
            with self._cond:
                self._closing = True
                self._cond.notify_all()
            self._thread.join(self.close_timeout_s)
            if self._thread.is_alive():
                self._abandon()
            else:
                self.store.close()
            self._closed = True
            atexit.unregister(self.close)

    def _abandon(self) -> None:
        with self._cond:
            left = [*self._inflight, *self._pending]
            self._pending.clear()
        log.error("usage writer still busy after %.1f s; spilling %d records to %s",
                  self.close_timeout_s, len(left), self.spill.path)
        self._spill(left)

    # -- the writer thread ---------------------------------------------------------------

    def _run(self) -> None:
        _lower_priority(self.thread_nice)
        self._prepare()
        while True:
            batch = self._take()
            if batch is None:
                return
            self._write(batch)
            with self._cond:
                self._handled += len(batch)
                self._inflight = []
                self._cond.notify_all()

    def _take(self) -> list[UsageRecord] | None:
        """The next batch, or None once closing with nothing left."""
        with self._cond:
            self._cond.wait_for(lambda: bool(self._pending) or self._closing)
            if not self._pending:
                return None
            self._cond.wait_for(
                lambda: len(self._pending) >= self.batch_size or self._closing
                or self._flushing > 0, self.flush_interval_s)
            size = min(self.batch_size, len(self._pending))
            self._inflight = [self._pending.popleft() for _ in range(size)]
            return self._inflight

    def _prepare(self) -> None:
        try:
            self._ensure_schema()
        except Exception as exc:  # the database may be down at start: spill until it is up
            log.warning("usage store %r not ready: %s", self.store, exc)
            return
        self._replay()

    def _ensure_schema(self) -> None:
        if not self._schema_ready:
            self.store.create_all()
            self._schema_ready = True

    def _write(self, batch: list[UsageRecord]) -> None:
        if self._insert(batch):
            self.stats.written += len(batch)
            if time.monotonic() >= self._replay_after and self.spill.pending():
                self._replay()
        else:
            self._spill(batch)

    def _insert(self, batch: list[UsageRecord]) -> bool:
        """Insert with retries and exponential backoff; False when every attempt failed."""
        attempts = 1 if time.monotonic() < self._down_until else self.retries + 1
        for attempt in range(attempts):
            if attempt:
                self._sleep(self.retry_backoff_s * 2 ** (attempt - 1))
            try:
                self._ensure_schema()
                self.store.insert_many(batch)
            except Exception as exc:  # any driver error: the thread must live on
                log.warning("usage insert of %d records failed (attempt %d of %d): %s",
                            len(batch), attempt + 1, attempts, exc)
                continue
            self._down_until = 0.0
            return True
        self._down_until = time.monotonic() + self.down_cooldown_s
        return False

    def _spill(self, records: list[UsageRecord]) -> None:
        if not records:
            return
        try:
            self.spill.append(records)
        except OSError:
            lines = "\n".join(json.dumps(r.to_dict()) for r in records)
            log.critical("usage records could not be stored nor spilled to %s; "
                         "they follow as JSON lines:\n%s", self.spill.path, lines,
                         exc_info=True)
            return
        self.stats.spilled += len(records)
        log.error("database unavailable: %d usage records spilled to %s",
                  len(records), self.spill.path)

    def _replay(self) -> None:
        try:
            count = self.spill.replay(self._insert_replayed)
        except Exception as exc:  # still failing: keep the file and try again later
            self._replay_after = time.monotonic() + max(self.down_cooldown_s, 1.0)
            log.warning("usage spill %s not replayed yet: %s", self.spill.path, exc)
            return
        if count:
            self.stats.replayed += count
            log.info("replayed %d usage records from %s", count, self.spill.path)

    def _insert_replayed(self, records: list[UsageRecord]) -> None:
        """Insert spilled records, skipping those already stored (or spilled twice)."""
        self._ensure_schema()
        seen = self.store.existing(records)
        fresh: list[UsageRecord] = []
        for rec in records:
            key = (rec.request_id, rec.created_at)
            if key not in seen:
                seen.add(key)
                fresh.append(rec)
        for start in range(0, len(fresh), self.batch_size):
            self.store.insert_many(fresh[start:start + self.batch_size])


def _lower_priority(nice: int | None) -> None:
    """Add ``nice`` to the calling thread's niceness (Linux gives each thread its own; other
    systems would renice the whole process, so they are left alone)."""
    if not nice or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        os.setpriority(os.PRIO_PROCESS, tid, os.getpriority(os.PRIO_PROCESS, tid) + nice)
    except OSError as exc:  # e.g. a sandbox without the right: not worth failing for
        log.debug("could not lower the usage writer's priority: %s", exc)
