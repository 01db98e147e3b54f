"""The ``feedback`` table (SQLAlchemy Core) and :class:`FeedbackStore`, its queries.

Feedback is a score in [0, 1] for one earlier request, from its caller (``POST
/v1/feedback``: a score, or thumbs up = 1.0 / down = 0.0) or from a judge model
(``modelmix router train --from-feedback`` with ``learned_router.judge``). It lives in
the usage database, next to ``usage`` and ``request_texts``, and is joined to them by
``request_id`` to build training data for the learned router.

Example::

    store = FeedbackStore("sqlite:///modelmix_usage.db")
    if store.find_request("3f2a...") is not None:
        store.add(FeedbackRecord(request_id="3f2a...", score=1.0, thumbs="up"))
    for outcome in store.outcomes():
        print(outcome.deployment, outcome.user_score, outcome.prompt[:40])
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from modelmix.store._sql import (
    METADATA,
    REQUEST_TEXTS_TABLE,
    USAGE_TABLE,
    create_store_engine,
    normalize_url,
)

__all__ = [
    "FEEDBACK_TABLE",
    "FeedbackRecord",
    "FeedbackSource",
    "FeedbackStore",
    "RequestInfo",
    "StoredOutcome",
]

FeedbackSource = Literal["user", "judge"]

#: One row per feedback given; a request may get several (the mean counts).
FEEDBACK_TABLE = sa.Table(
    "feedback",
    METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),  # Unix time, seconds
    sa.Column("key_id", sa.Text()),
    sa.Column("score", sa.Double(), nullable=False),  # in [0, 1]
    sa.Column("thumbs", sa.Text()),
    sa.Column("comment", sa.Text()),
    sa.Column("source", sa.Text(), nullable=False, default="user"),
    sa.Index("ix_feedback_request_id", "request_id"),
)


@dataclass(slots=True)
class FeedbackRecord:
    """One feedback row.

    Attributes:
        request_id: the request it is about (``x-request-id`` of the answer).
        score: in [0, 1]; thumbs up is 1.0 and down 0.0.
        thumbs: ``"up"`` / ``"down"`` when given that way, else None.
        comment: free text from the caller (at most 2,000 characters at the gateway).
        key_id: the key that sent it (None in open mode; None for the judge).
        source: ``"user"`` (the API) or ``"judge"`` (a judge model's grade).
        created_at: Unix time (s).
    """

    request_id: str
    score: float
    thumbs: str | None = None
    comment: str | None = None
    key_id: str | None = None
    source: FeedbackSource = "user"
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class RequestInfo:
    """What feedback needs to know of a recorded request (its latest usage row)."""

    request_id: str
    key_id: str | None
    deployment: str | None
    status_code: int
    created_at: float


@dataclass(frozen=True, slots=True)
class StoredOutcome:
    """A successful request whose prompt was kept, with what is known of its quality.

    Attributes:
        user_score: mean of the callers' scores in [0, 1], None when there are none.
        judge_score: the judge's latest score in [0, 1], None when not judged.
        response: the answer's text when ``store.keep_responses`` was on, else None.
    """

    request_id: str
    created_at: float
    deployment: str
    prompt: str
    response: str | None
    user_score: float | None
    judge_score: float | None


class FeedbackStore:
    """Reads and writes feedback in the usage database. Blocking: call it off the loop.

    A SQLite file that does not exist yet is not created by reads (``find_request``
    answers None); the first :meth:`add` creates it with every store table.

    Args:
        url: a SQLAlchemy URL or an engine (the usage store's, normally).

    Raises:
        ConfigError: from the constructor, for a bad URL or a missing driver.
    """

    def __init__(self, url: str | URL | Engine):
        self._url = url.url if isinstance(url, Engine) else normalize_url(url)
        self._engine = url if isinstance(url, Engine) else None
        self._ready = False

    def __repr__(self) -> str:
        return f"FeedbackStore({self._url.render_as_string(hide_password=True)!r})"

    def _missing_file(self) -> bool:
        db = self._url.database
        if self._engine is not None or self._url.get_backend_name() != "sqlite":
            return False
        if not db or db == ":memory:" or db.startswith("file:"):
            return False
        return not Path(db).expanduser().exists()

    def _connect(self) -> Engine:
        if self._engine is None:
            self._engine = create_store_engine(self._url)
        if not self._ready:
            self.create_all()
        return self._engine

    def create_all(self) -> None:
        """Create the store tables (usage, request_texts, feedback) when missing."""
        if self._engine is None:
            self._engine = create_store_engine(self._url)
        tables = [USAGE_TABLE, REQUEST_TEXTS_TABLE, FEEDBACK_TABLE]
        try:
            METADATA.create_all(self._engine, checkfirst=True, tables=tables)
        except sa.exc.DatabaseError:  # the usage writer created one meanwhile: look again
            METADATA.create_all(self._engine, checkfirst=True, tables=tables)
        self._ready = True

    def find_request(self, request_id: str) -> RequestInfo | None:
        """The latest usage row of ``request_id``, or None when none is stored."""
        if self._missing_file():
            return None
        col = USAGE_TABLE.c
        query = (sa.select(col.request_id, col.key_id, col.deployment, col.status_code,
                           col.created_at)
                 .where(col.request_id == request_id)
                 .order_by(col.created_at.desc(), col.id.desc()).limit(1))
        with self._connect().connect() as conn:
            row = conn.execute(query).first()
        if row is None:
            return None
        return RequestInfo(request_id=row.request_id, key_id=row.key_id,
                           deployment=row.deployment, status_code=int(row.status_code),
                           created_at=float(row.created_at))

    def add(self, record: FeedbackRecord) -> int:
        """Insert one feedback row; returns its id."""
        return self.add_many([record])[0]

    def add_many(self, records: Iterable[FeedbackRecord]) -> list[int]:
        """Insert feedback rows in one transaction; returns their ids in order."""
        ids: list[int] = []
        with self._connect().begin() as conn:
            for record in records:
                result = conn.execute(FEEDBACK_TABLE.insert().values(**record.to_dict()))
                key = result.inserted_primary_key
                assert key is not None
                ids.append(int(key[0]))
        return ids

    def feedback(self, since: float | None = None) -> list[FeedbackRecord]:
        """Stored feedback, oldest first (at or after ``since``, Unix s, if given)."""
        if self._missing_file():
            return []
        col = FEEDBACK_TABLE.c
        query = sa.select(col.request_id, col.score, col.thumbs, col.comment, col.key_id,
                          col.source, col.created_at).order_by(col.created_at, col.id)
        if since is not None:
            query = query.where(col.created_at >= since)
        with self._connect().connect() as conn:
            return [FeedbackRecord(**dict(row._mapping)) for row in conn.execute(query)]

    def outcomes(self, since: float | None = None) -> list[StoredOutcome]:
        """Successful requests with a kept prompt and the feedback they got, oldest first.

        A request id used twice (a client may set ``x-request-id``) counts once: its
        latest usage row names the deployment; feedback applies to that one. The calls
        systems of models make for their steps (rows with a ``parent_id``) are left out:
        their prompts are the system's templates, not what clients ask, and feedback is
        given to the system request, not to its steps.
        """
        if self._missing_file():
            return []
        usage, texts = USAGE_TABLE.c, REQUEST_TEXTS_TABLE.c
        query = (sa.select(usage.request_id, usage.created_at, usage.deployment, texts.prompt,
                           texts.response)
                 .join_from(USAGE_TABLE, REQUEST_TEXTS_TABLE, sa.and_(
                     texts.request_id == usage.request_id,
                     texts.created_at == usage.created_at))
                 .where(usage.status_code == 200, usage.deployment.is_not(None),
                        usage.parent_id.is_(None), texts.prompt.is_not(None))
                 .order_by(usage.created_at, usage.id))
        if since is not None:
            query = query.where(usage.created_at >= since)
        with self._connect().connect() as conn:
            rows = {row.request_id: row for row in conn.execute(query)}  # latest wins
            scores = self._scores(conn)
        return [StoredOutcome(
            request_id=r.request_id, created_at=float(r.created_at), deployment=r.deployment,
            prompt=r.prompt, response=r.response,
            user_score=scores.get((r.request_id, "user")),
            judge_score=scores.get((r.request_id, "judge")),
        ) for r in sorted(rows.values(), key=lambda r: float(r.created_at))]

    @staticmethod
    def _scores(conn: sa.Connection) -> dict[tuple[str, str], float]:
        """Mean user score and latest judge score per request id."""
        col = FEEDBACK_TABLE.c
        found: dict[tuple[str, str], float] = {}
        user = (sa.select(col.request_id, sa.func.avg(col.score))
                .where(col.source == "user").group_by(col.request_id))
        for request_id, mean in conn.execute(user):
            found[(request_id, "user")] = float(mean)
        judge = (sa.select(col.request_id, col.score).where(col.source == "judge")
                 .order_by(col.created_at, col.id))
        for request_id, score in conn.execute(judge):
            found[(request_id, "judge")] = float(score)  # the latest overwrites
        return found

    def close(self) -> None:
        """Release pooled connections."""
        if self._engine is not None:
            self._engine.dispose()
