"""Usage, cost and audit records: SQLite by default, PostgreSQL by URL.

The records and sink protocol load at once; the SQLAlchemy-backed parts (store, writer,
summaries) load on first use, so ``import modelmix`` does not pay for SQLAlchemy.

Example::

    from modelmix.store import UsageStore
    for row in UsageStore("sqlite:///modelmix_usage.db").summary(group_by=("deployment",)):
        print(row.to_dict())
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from modelmix.store._records import AuditRecord, NullSink, UsageRecord, UsageSink

if TYPE_CHECKING:
    from modelmix.store._audit import AuditRow, AuditStore, AuditSummaryRow
    from modelmix.store._feedback import (
        FeedbackRecord,
        FeedbackStore,
        RequestInfo,
        StoredOutcome,
    )
    from modelmix.store._spill import SpillFile
    from modelmix.store._sql import GroupField, UsageStore, create_store_engine
    from modelmix.store._summary import SummaryRow, parse_window, percentile
    from modelmix.store._writer import (
        UsageWriter,
        WriterStats,
        build_usage_sink,
        default_spill_path,
        resolve_db_url,
    )

__all__ = [
    "AuditRecord",
    "AuditRow",
    "AuditStore",
    "AuditSummaryRow",
    "FeedbackRecord",
    "FeedbackStore",
    "GroupField",
    "NullSink",
    "RequestInfo",
    "SpillFile",
    "StoredOutcome",
    "SummaryRow",
    "UsageRecord",
    "UsageSink",
    "UsageStore",
    "UsageWriter",
    "WriterStats",
    "build_usage_sink",
    "create_store_engine",
    "default_spill_path",
    "parse_window",
    "percentile",
    "resolve_db_url",
]

_LAZY = {
    "AuditRow": "_audit",
    "AuditStore": "_audit",
    "AuditSummaryRow": "_audit",
    "FeedbackRecord": "_feedback",
    "FeedbackStore": "_feedback",
    "RequestInfo": "_feedback",
    "StoredOutcome": "_feedback",
    "SpillFile": "_spill",
    "GroupField": "_sql",
    "UsageStore": "_sql",
    "create_store_engine": "_sql",
    "SummaryRow": "_summary",
    "parse_window": "_summary",
    "percentile": "_summary",
    "UsageWriter": "_writer",
    "WriterStats": "_writer",
    "build_usage_sink": "_writer",
    "default_spill_path": "_writer",
    "resolve_db_url": "_writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
