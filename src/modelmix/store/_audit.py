"""The ``guard_audit`` table (SQLAlchemy Core) and :class:`AuditStore`, its reader.

One row per request the data guard screened, written by :class:`~modelmix.store.UsageStore`
in the same transaction as the request's ``usage`` row (so the spill file and replay
cover it too) and joined to it by ``request_id``. Rows hold entity types and counts,
never the detected values.

Example::

    with AuditStore("sqlite:///modelmix_usage.db") as audit:
        for row in audit.rows(data_class="regulated", limit=20):
            print(row.request_id, row.action, row.deployment, row.rule)
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from modelmix.store._records import UsageRecord

__all__ = [
    "AUDIT_FIELDS",
    "AUDIT_METADATA",
    "AUDIT_TABLE",
    "AuditGroup",
    "AuditRow",
    "AuditStore",
    "AuditSummaryRow",
    "audit_rows",
]

AUDIT_METADATA = sa.MetaData()

#: One row per screened request; lists are comma-joined, ``entities`` is a JSON object.
AUDIT_TABLE = sa.Table(
    "guard_audit",
    AUDIT_METADATA,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True,
              autoincrement=True),
    sa.Column("request_id", sa.Text(), nullable=False),
    sa.Column("created_at", sa.Double(), nullable=False),  # Unix time, seconds
    sa.Column("key_id", sa.Text()),
    sa.Column("requested_model", sa.Text()),
    sa.Column("deployment", sa.Text()),
    sa.Column("status_code", sa.Integer(), nullable=False),
    sa.Column("policy", sa.Text(), nullable=False),
    sa.Column("data_class", sa.Text(), nullable=False),
    sa.Column("action", sa.Text(), nullable=False),
    sa.Column("rule", sa.Text(), nullable=False),
    sa.Column("rules", sa.Text(), nullable=False, default=""),
    sa.Column("entities", sa.Text(), nullable=False, default="{}"),
    sa.Column("entity_count", sa.Integer(), nullable=False, default=0),
    sa.Column("pseudonymised", sa.Integer(), nullable=False, default=0),
    sa.Column("tags", sa.Text(), nullable=False, default=""),
    sa.Column("forbidden", sa.Text(), nullable=False, default=""),
    sa.Index("ix_guard_audit_created_at", "created_at"),
    sa.Index("ix_guard_audit_request_id", "request_id"),
    sa.Index("ix_guard_audit_class_action", "data_class", "action"),
)

AuditGroup = Literal["data_class", "action", "deployment", "rule", "policy", "key"]
_GROUP_COLUMNS = {"data_class": "data_class", "action": "action", "deployment": "deployment",
                  "rule": "rule", "policy": "policy", "key": "key_id"}


#: Column order of the tuples :func:`audit_rows` returns (every column but ``id``).
AUDIT_FIELDS = tuple(c.name for c in AUDIT_TABLE.columns if c.name != "id")


def audit_rows(records: Sequence[UsageRecord]) -> list[tuple[Any, ...]]:
    """``guard_audit`` rows, as tuples in :data:`AUDIT_FIELDS` order, for the records that
    carry an audit record."""
    rows = []
    for rec in records:
        audit = rec.audit
        if audit is None:
            continue
        rows.append((
            rec.request_id, rec.created_at, rec.key_id, rec.requested_model, rec.deployment,
            rec.status_code, audit.policy, audit.data_class, audit.action, audit.rule,
            ",".join(audit.rules), json.dumps(audit.entities, sort_keys=True),
            sum(audit.entities.values()), audit.pseudonymised, ",".join(audit.tags),
            ",".join(audit.forbidden),
        ))
    return rows


@dataclass(frozen=True, slots=True)
class AuditRow:
    """One stored audit row (lists split back, ``entities`` parsed)."""

    request_id: str
    created_at: float
    key_id: str | None
    requested_model: str | None
    deployment: str | None
    status_code: int
    policy: str
    data_class: str
    action: str
    rule: str
    rules: tuple[str, ...]
    entities: dict[str, int]
    pseudonymised: int
    tags: tuple[str, ...]
    forbidden: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for name in ("rules", "tags", "forbidden"):
            out[name] = list(out[name])
        return out


@dataclass(frozen=True, slots=True)
class AuditSummaryRow:
    """Requests per group, with how many were blocked and the entities seen."""

    group: dict[str, str | None]
    requests: int
    blocked: int
    entities: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _split(text: str | None) -> tuple[str, ...]:
    return tuple(t for t in (text or "").split(",") if t)


def _row(mapping: Any) -> AuditRow:
    data = dict(mapping)
    data.pop("id", None)
    data.pop("entity_count", None)
    for name in ("rules", "tags", "forbidden"):
        data[name] = _split(data[name])
    data["entities"] = json.loads(data["entities"] or "{}")
    return AuditRow(**data)


class AuditStore:
    """Reads the ``guard_audit`` table. Blocking: call it off the event loop.

    Args:
        url: a SQLAlchemy URL or an engine (the usage database).
    """

    def __init__(self, url: str | URL | Engine):
        if isinstance(url, Engine):
            self.engine = url
        else:
            from modelmix.store._sql import create_store_engine

            self.engine = create_store_engine(url)

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def create_all(self) -> None:
        AUDIT_METADATA.create_all(self.engine, checkfirst=True)

    def rows(self, *, since: float | None = None, data_class: str | None = None,
             action: str | None = None, deployment: str | None = None,
             key_id: str | None = None, request_id: str | None = None,
             limit: int | None = 100) -> list[AuditRow]:
        """Rows matching every given filter, newest first (at most ``limit``)."""
        col = AUDIT_TABLE.c
        query = _filtered(sa.select(AUDIT_TABLE), since, data_class, action, deployment,
                          key_id, request_id)
        query = query.order_by(col.created_at.desc(), col.id.desc())
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            return [_row(r._mapping) for r in conn.execute(query)]

    def summary(self, *, since: float | None = None,
                group_by: Sequence[AuditGroup] = ("data_class", "action")
                ) -> list[AuditSummaryRow]:
        """Requests, blocked requests and entities per group, most requests first.

        Blocked: refused with 403, by a ``block`` action or because no deployment the
        policy allows could take the request (``route-local`` with only clouds).

        Raises:
            ValueError: an unknown ``group_by`` field.
        """
        for name in group_by:
            if name not in _GROUP_COLUMNS:
                raise ValueError(f"unknown group_by field {name!r}; expected one of "
                                 f"{sorted(_GROUP_COLUMNS)}")
        col = AUDIT_TABLE.c
        keys = [col[_GROUP_COLUMNS[name]] for name in group_by]
        refused = sa.or_(col.action == "block", col.status_code == 403)
        blocked = sa.func.sum(sa.case((refused, 1), else_=0))
        query = _filtered(sa.select(*keys, sa.func.count(), blocked,
                                    sa.func.sum(col.entity_count)), since)
        query = query.group_by(*keys).order_by(sa.func.count().desc())
        with self.engine.connect() as conn:
            return [AuditSummaryRow(group=dict(zip(group_by, row[:len(keys)], strict=True)),
                                    requests=int(row[len(keys)]),
                                    blocked=int(row[len(keys) + 1] or 0),
                                    entities=int(row[len(keys) + 2] or 0))
                    for row in conn.execute(query)]

    def close(self) -> None:
        self.engine.dispose()


def _filtered(query: sa.Select[Any], since: float | None, data_class: str | None = None,
              action: str | None = None, deployment: str | None = None,
              key_id: str | None = None, request_id: str | None = None) -> sa.Select[Any]:
    col = AUDIT_TABLE.c
    if since is not None:
        query = query.where(col.created_at >= since)
    equal = [(col.data_class, data_class), (col.action, action),
             (col.deployment, deployment), (col.key_id, key_id), (col.request_id, request_id)]
    for column, value in equal:
        if value is not None:
            query = query.where(column == value)
    return query
