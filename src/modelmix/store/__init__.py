"""Usage, cost and audit records: SQLite by default, PostgreSQL by URL."""

from modelmix.store._records import NullSink, UsageRecord, UsageSink

__all__ = ["NullSink", "UsageRecord", "UsageSink"]
