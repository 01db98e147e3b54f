"""Synthetic usage and audit rows for the dashboard benchmark: fast bulk inserts.

Rows spread evenly over ``days`` days ending now (1M rows over 30 days is ~23 requests/s
around the clock), over five deployments (two open, three proprietary), the route
reasons the routers write (numbers included, as real ones have), five endpoints, twenty
keys, 4% failures and 5% cache hits; one request in ten has an audit row.
"""

from __future__ import annotations

import io
import json
import random
import time
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa

from modelmix.store._audit import AUDIT_FIELDS, AUDIT_TABLE
from modelmix.store._sql import USAGE_TABLE, UsageStore

DEPLOYMENTS = {  # name -> (provider, USD per 1M input, output)
    "local-small": ("local", 0.0, 0.0),
    "vllm-llama": ("vllm", 0.2, 0.2),
    "gpt-4o-mini": ("openai", 0.15, 0.6),
    "gpt-4o": ("openai", 2.5, 10.0),
    "claude-sonnet": ("anthropic", 3.0, 15.0),
}
ENDPOINTS = ["chat"] * 6 + ["responses", "messages", "completions", "embeddings"]
ACTIONS = ["allow"] * 6 + ["pseudonymise", "pseudonymise", "route-local", "block"]
USAGE_FIELDS = tuple(c.name for c in USAGE_TABLE.columns if c.name != "id")


def _reason(rng: random.Random, deployment: str) -> str:
    p = rng.random()
    if p < 0.6:
        return (f"learned: p(strong needed)={p:.2f} {'>=' if p > 0.3 else '<'} "
                f"{0.3:.2f} (target balanced); {deployment}")
    if p < 0.8:
        return "rules: open model by default"
    if p < 0.9:
        return f"weighted: rpm {rng.randint(1, 9)} of {rng.randint(10, 20)}"
    return "requested deployment"


def usage_rows(n: int, days: float, seed: int = 7) -> Iterator[tuple[Any, ...]]:
    """``n`` usage rows as tuples in :data:`USAGE_FIELDS` order, oldest first."""
    rng = random.Random(seed)
    names = list(DEPLOYMENTS)
    end = time.time()
    start = end - days * 86400
    step = (end - start) / n
    for i in range(n):
        dep = names[rng.randrange(len(names))]
        provider, price_in, price_out = DEPLOYMENTS[dep]
        endpoint = ENDPOINTS[rng.randrange(len(ENDPOINTS))]
        hit = rng.random() < 0.05
        failed = rng.random() < 0.04
        p_tok = 0 if hit else rng.randint(20, 2000)
        c_tok = 0 if hit or endpoint == "embeddings" else rng.randint(10, 800)
        cost = (p_tok * price_in + c_tok * price_out) / 1e6
        yield _usage_tuple(
            request_id=f"r{i:08x}", created_at=start + i * step,
            requested_model="auto", key_id=f"k{rng.randrange(20):02d}", deployment=dep,
            provider=provider, route_reason=_reason(rng, dep), prompt_tokens=p_tok,
            completion_tokens=c_tok, cost_usd=cost, latency_ms=rng.uniform(50, 4000),
            status_code=502 if failed else 200,
            error="upstream error" if failed else None,
            error_type="ProviderError" if failed else None, attempts=1,
            cache="hit" if hit else "miss",
            saved_usd=(rng.randint(20, 2000) * price_in / 1e6) if hit else None,
            endpoint=endpoint)


def _usage_tuple(**values: Any) -> tuple[Any, ...]:
    values.setdefault("stream", False)
    return tuple(values.get(name) for name in USAGE_FIELDS)


def audit_rows(usage: list[tuple[Any, ...]], seed: int = 11) -> list[tuple[Any, ...]]:
    """An audit row (no values: entity types and counts) for one usage row in ten."""
    rng = random.Random(seed)
    col = {name: i for i, name in enumerate(USAGE_FIELDS)}
    out = []
    for row in usage[::10]:
        action = ACTIONS[rng.randrange(len(ACTIONS))]
        entities = {"EMAIL_ADDRESS": rng.randint(1, 3)} if action != "allow" else {}
        out.append((row[col["request_id"]], row[col["created_at"]], row[col["key_id"]],
                    "auto", row[col["deployment"]], 403 if action == "block" else 200,
                    "finance", "confidential" if entities else "public", action,
                    "classes.confidential", "", json.dumps(entities),
                    sum(entities.values()), entities.get("EMAIL_ADDRESS", 0)
                    if action == "pseudonymise" else 0, "", ""))
    assert len(AUDIT_FIELDS) == len(out[0])
    return out


def fill(url: str, n: int, days: float, chunk: int = 100_000) -> float:
    """Create the tables at ``url`` and insert ``n`` usage rows (and their audit rows);
    returns the seconds it took. SQLite: one ``executemany`` per chunk with sync off;
    PostgreSQL: ``COPY``."""
    store = UsageStore(url)
    store.create_all()
    began = time.perf_counter()
    rows = usage_rows(n, days)
    postgres = store.engine.dialect.name == "postgresql"
    while True:
        batch = [row for _, row in zip(range(chunk), rows, strict=False)]
        if not batch:
            break
        audits = audit_rows(batch)
        raw = store.engine.raw_connection()
        if not postgres:
            raw.cursor().execute("PRAGMA synchronous=OFF")
        try:
            if postgres:
                _copy(raw, USAGE_TABLE, USAGE_FIELDS, batch)
                _copy(raw, AUDIT_TABLE, AUDIT_FIELDS, audits)
            else:
                _sqlite_insert(raw, USAGE_TABLE, USAGE_FIELDS, batch)
                _sqlite_insert(raw, AUDIT_TABLE, AUDIT_FIELDS, audits)
            raw.commit()
        finally:
            raw.close()
    with store.engine.begin() as conn:
        conn.execute(sa.text("ANALYZE"))
    store.close()
    return time.perf_counter() - began


def _sqlite_insert(raw: Any, table: sa.Table, fields: tuple[str, ...],
                   rows: list[tuple[Any, ...]]) -> None:
    cur = raw.cursor()
    marks = ", ".join("?" for _ in fields)
    cur.executemany(f"INSERT INTO {table.name} ({', '.join(fields)}) VALUES ({marks})", rows)


def _copy(raw: Any, table: sa.Table, fields: tuple[str, ...],
          rows: list[tuple[Any, ...]]) -> None:
    buf = io.StringIO()
    for row in rows:
        buf.write("\t".join(_pg_text(v) for v in row) + "\n")
    cur = raw.cursor()
    with cur.copy(f"COPY {table.name} ({', '.join(fields)}) FROM STDIN") as copy:
        copy.write(buf.getvalue())


def _pg_text(value: Any) -> str:
    if value is None:
        return "\\N"
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value).replace("\\", "\\\\").replace("\t", " ").replace("\n", " ")
