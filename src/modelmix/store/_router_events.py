"""The ``router_events`` table (SQLAlchemy Core) and :class:`RouterEventStore`.

One row per attempt to swap the gateway's learned router (``POST /router/reload``,
``SIGHUP``, or a reload broadcast by another replica), successful or not: who asked,
the fingerprints before and after, the artifact, the result and why. It lives in the
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
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

__all__ = ["ROUTER_EVENTS_TABLE", "RouterEvent", "RouterEventStore"]

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
    sa.Column("result", sa.Text(), nullable=False),  # ok, failed
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
    when ``result`` is ``ok``; on ``failed`` it is the rejected one's when known."""

    actor: str
    trigger: str
    result: Literal["ok", "failed"]
    artifact: str | None = None
    calibration: str | None = None
    old_fingerprint: str | None = None
    new_fingerprint: str | None = None
    reason: str = ""
    replica: str = ""
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


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
        """Store one event (creating the table on first use)."""
        if not self._created:
            self.create_all()
        row = event.to_dict()
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
