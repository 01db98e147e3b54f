"""The store's schema at start-up: create missing tables, and upgrade existing ones in
place by adding the nullable columns and the indexes a table declares that the database's
copy lacks. Both are safe when several gateway processes start at once.

The ``usage`` table started as schema v1; later columns (``parent_id``, ``system``,
``step``, ``verdict`` for systems of models; ``media``, ``conversions``, ``media_ms`` for
media; ``cache``, ``saved_usd`` for the response cache; ``endpoint``) are nullable, so an
existing table gains them with ``ALTER TABLE ... ADD COLUMN`` and no rewrite. Safe when
several gateway processes start at once: on PostgreSQL every column is added with ``ADD
COLUMN IF NOT EXISTS`` in one statement (which takes the table's lock, so concurrent
upgrades queue behind each other) and indexes with ``CREATE INDEX IF NOT EXISTS``; on any
database a statement that lost a race is followed by a fresh look at the table, and the
upgrade is tried again until nothing is missing.

Example::

    create_tables(engine, METADATA)
    upgrade_table(engine, USAGE_TABLE)  # [] when the table was already current
"""

from __future__ import annotations

import logging
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError

from modelmix.errors import ConfigError

__all__ = ["create_tables", "missing_columns", "upgrade_table"]

log = logging.getLogger("modelmix.store")

#: Attempts before a failing upgrade is given up (each after a fresh look at the table).
_ATTEMPTS = 8


def create_tables(engine: Engine, metadata: sa.MetaData) -> None:
    """Create ``metadata``'s missing tables and their indexes.

    Another process creating the same tables at the same moment makes one ``CREATE TABLE``
    fail (``already exists``, or a unique violation on PostgreSQL's catalog); the tables are
    then looked at again, up to eight times in all (one attempt per racing process
    and then some: each lost race means another process made progress).
    """
    for attempt in range(_ATTEMPTS):
        try:
            metadata.create_all(engine, checkfirst=True)
        except DBAPIError:
            if attempt + 1 == _ATTEMPTS:
                raise
            continue
        return


def missing_columns(engine: Engine, table: sa.Table) -> list[sa.Column[Any]]:
    """``table``'s columns that the database's table lacks (all of them if it has no table)."""
    present = {c["name"] for c in sa.inspect(engine).get_columns(table.name, table.schema)}
    return [col for col in table.columns if col.name not in present]


def _missing_indexes(engine: Engine, table: sa.Table) -> list[sa.Index]:
    present = {ix["name"] for ix in sa.inspect(engine).get_indexes(table.name, table.schema)}
    return sorted((ix for ix in table.indexes if ix.name not in present),
                  key=lambda ix: str(ix.name))


def upgrade_table(engine: Engine, table: sa.Table) -> list[str]:
    """Add to the existing ``table`` its missing nullable columns, then its missing indexes.

    Idempotent; call it after ``create_all`` (it does not create the table).

    Returns:
        The names of the columns this call found missing and added (empty when the table
        was current, or another process upgraded it first).

    Raises:
        ConfigError: a missing column is NOT NULL, which cannot be added in place.
        sqlalchemy.exc.DBAPIError: the database refused the upgrade eight times.
    """
    added: list[str] = []
    for attempt in range(_ATTEMPTS):
        columns = missing_columns(engine, table)
        indexes = _missing_indexes(engine, table)
        if not columns and not indexes:
            break
        _check_nullable(table, columns)
        try:
            _alter(engine, table, columns, indexes)
        except DBAPIError as exc:  # e.g. another process added a column first
            if attempt + 1 == _ATTEMPTS:
                raise
            log.info("upgrade of table %s raced or failed (%s); looking again",
                     table.name, exc.orig)
            continue
        added = [col.name for col in columns]
        break
    if added:
        log.info("table %s upgraded: added columns %s", table.name, ", ".join(added))
    return added


def _check_nullable(table: sa.Table, columns: list[sa.Column[Any]]) -> None:
    required = [col.name for col in columns if not col.nullable]
    if required:
        raise ConfigError(f"table {table.name} lacks NOT NULL columns {required}, which "
                          "cannot be added in place; move the table aside and restart")


def _alter(engine: Engine, table: sa.Table, columns: list[sa.Column[Any]],
           indexes: list[sa.Index]) -> None:
    """Run the DDL in one transaction (PostgreSQL's DDL is transactional; SQLite's
    ``ALTER TABLE`` takes one column per statement)."""
    dialect = engine.dialect
    quote = dialect.identifier_preparer
    name = quote.format_table(table)
    adds = [f"{quote.format_column(col)} {col.type.compile(dialect=dialect)}"
            for col in columns]
    with engine.begin() as conn:
        if adds and dialect.name == "postgresql":
            conn.exec_driver_sql(f"ALTER TABLE {name} "
                                 + ", ".join(f"ADD COLUMN IF NOT EXISTS {a}" for a in adds))
        else:
            for add in adds:
                conn.exec_driver_sql(f"ALTER TABLE {name} ADD COLUMN {add}")
        for index in indexes:
            conn.execute(sa.schema.CreateIndex(index, if_not_exists=True))
