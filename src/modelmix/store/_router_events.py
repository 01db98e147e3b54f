"""The ``router_events`` table (SQLAlchemy Core) and :class:`RouterEventStore`.

One row per attempt to swap the gateway's learned router (``POST /router/reload``,
``SIGHUP``, or a reload broadcast by another replica), successful or not, and per reload
refused to a virtual key (``refused``): who asked, the fingerprints before and after, the
artifact, the result and why. Text fields are capped (:meth:`RouterEvent.capped`) and
shown through :func:`printable`, so a hostile value cannot fill the table or forge
output lines. It lives in the
usage database next to ``guard_audit``; ``modelmix router events`` lists it
(docs/decisions/0014-router-hot-swap.md).

Example::

    with RouterEventStore("sqlite:///modelmix_usage.db") as events:
        events.add(RouterEvent(actor="master", trigger="endpoint", result="ok",
                               artifact="/srv/router/v7", old_fingerprint="a1..",
                               new_fingerprint="b2.."))
        for event in events.rows(limit=10):
            print(event.created_at, event.result, event.new_fingerprint)
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

__all__ = ["MAX_NAME_CHARS", "MAX_PATH_CHARS", "MAX_REASON_CHARS", "ROUTER_EVENTS_TABLE",
           "RouterEvent", "RouterEventStore", "printable"]

#: Characters kept of ``actor``, ``replica`` and ``trigger``: key ids and host names are
#: far shorter; a longer value is hostile (a forged broadcast) and is cut.
MAX_NAME_CHARS = 512
#: Characters kept of ``artifact`` and ``calibration``: Linux's PATH_MAX, also the
#: longest path ``POST /router/reload`` accepts.
MAX_PATH_CHARS = 4096
#: Characters kept of ``reason`` (load errors are already cut to 500 where raised).
MAX_REASON_CHARS = 1024

ROUTER_EVENTS_METADATA = sa.MetaData()

#: One row per router reload attempt.
ROUTER_EVENTS_TABLE = sa.Table(
    "router_events",
    ROUTER_EVENTS_METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("created_at", sa.Double(), nullable=False),  # Unix time, seconds
    sa.Column("actor", sa.Text(), nullable=False),  # "master", "signal", "broadcast:<who>"
    sa.Column("trigger", sa.Text(), nullable=False),  # endpoint, signal, broadcast
    sa.Column("replica", sa.Text(), nullable=False, default=""),
    sa.Column("result", sa.Text(), nullable=False),  # ok, failed, refused
    sa.Column("artifact", sa.Text()),
    sa.Column("calibration", sa.Text()),
    sa.Column("old_fingerprint", sa.Text()),
    sa.Column("new_fingerprint", sa.Text()),
    sa.Column("reason", sa.Text(), nullable=False, default=""),
    sa.Index("ix_router_events_created_at", "created_at"),
)

Trigger = Literal["endpoint", "signal", "broadcast"]


@dataclass(frozen=True, slots=True)
class RouterEvent:
    """One reload attempt. ``new_fingerprint`` is the router serving afterwards's only
    when ``result`` is ``ok``; on ``failed`` it is the rejected one's when known;
    ``refused``: a key other than the master key asked (403), nothing was loaded."""

    actor: str
    trigger: str
    result: Literal["ok", "failed", "refused"]
    artifact: str | None = None
    calibration: str | None = None
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    reason: str = ""
    replica: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def capped(self) -> RouterEvent:
        """This event with its text fields cut to :data:`MAX_NAME_CHARS`,
        :data:`MAX_PATH_CHARS` and :data:`MAX_REASON_CHARS` (a cut value ends in
        ``...[+N chars]``)."""
        return replace(
            self, actor=_cap(self.actor, MAX_NAME_CHARS),
            trigger=_cap(self.trigger, MAX_NAME_CHARS),
            replica=_cap(self.replica, MAX_NAME_CHARS),
            artifact=_cap_opt(self.artifact, MAX_PATH_CHARS),
            calibration=_cap_opt(self.calibration, MAX_PATH_CHARS),
            reason=_cap(self.reason, MAX_REASON_CHARS))


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}...[+{len(text) - limit} chars]"


def _cap_opt(text: str | None, limit: int) -> str | None:
    return None if text is None else _cap(text, limit)


def printable(value: object) -> str:
    """``str(value)`` with control and format characters escaped as Python does
    (``\\n``, ``\\x1b``, ``\\u202e``): a stored value cannot start a new output
    line, move the cursor or reorder text on a terminal or in a log."""
    text = str(value)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() or ch == " " else _escape(ch) for ch in text)


def _escape(ch: str) -> str:
    if unicodedata.category(ch) == "Zs":  # a space other than " " (printable: no escape)
        return ch
    return ch.encode("unicode_escape").decode("ascii")


class RouterEventStore:
    """Writes and reads ``router_events``. Blocking: call it off the event loop.

    Args:
        url: a SQLAlchemy URL or an engine (the usage database).

    Raises:
        ConfigError: a bad URL (construction); SQLAlchemyError from the queries.
    """

    def __init__(self, url: str | URL | Engine):
        self._url = url
        self._engine = url if isinstance(url, Engine) else None
        self._created = False

    @property
    def engine(self) -> Engine:
        """The engine, created on first use (nothing is touched before)."""
        if self._engine is None:
            from modelmix.store._sql import create_store_engine

            assert not isinstance(self._url, Engine)
            self._engine = create_store_engine(self._url)
        return self._engine

    def __enter__(self) -> RouterEventStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_all(self) -> None:
        ROUTER_EVENTS_METADATA.create_all(self.engine, checkfirst=True)
        self._created = True

    def add(self, event: RouterEvent) -> None:
        """Store one event, text fields capped (creating the table on first use)."""
        if not self._created:
            self.create_all()
        row = event.capped().to_dict()
        with self.engine.begin() as conn:
            conn.execute(ROUTER_EVENTS_TABLE.insert().values(**row))

    def rows(self, *, since: float | None = None, limit: int | None = 50) -> list[RouterEvent]:
        """Events newest first (at most ``limit``); none when the table does not exist."""
        if not sa.inspect(self.engine).has_table("router_events"):
            return []
        col = ROUTER_EVENTS_TABLE.c
        query = sa.select(ROUTER_EVENTS_TABLE).order_by(col.created_at.desc(), col.id.desc())
        if since is not None:
            query = query.where(col.created_at >= since)
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_event(r._mapping) for r in conn.execute(query)]

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def _event(mapping: Any) -> RouterEvent:
    data = dict(mapping)
    data.pop("id", None)
    return RouterEvent(**data)
