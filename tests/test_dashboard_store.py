"""The dashboard's reads (store/_dashboard.py, store/_rollup.py) on SQLite and PostgreSQL:
the roll-ups give exactly what a plain GROUP BY over the raw rows gives, stay exact when
rows arrive late for a past hour or a roll-up is built twice, and logs page by keyset."""

from __future__ import annotations

import math
import random
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import sqlalchemy as sa

from modelmix.store import AuditRecord, UsageRecord, UsageStore
from modelmix.store._dashboard import DashboardStore, LogFilter, parse_cursor
from modelmix.store._rollup import TRAFFIC

NOW = 1_750_000_000.0  # a fixed "now" (Unix s), mid-hour
DEPLOYMENTS = ["open-a", "prop-b", None]
REASONS = ["learned: p=0.41 < 0.52", "rules: open model by default", "configured order", None]


def _records(n: int, days: float, seed: int = 3) -> list[UsageRecord]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        failed = rng.random() < 0.1
        out.append(UsageRecord(
            request_id=f"r{i}", created_at=NOW - rng.uniform(0, days * 86400),
            key_id=rng.choice(["k1", "k2", None]), deployment=rng.choice(DEPLOYMENTS),
            route_reason=rng.choice(REASONS), endpoint=rng.choice(["chat", "embeddings", None]),
            prompt_tokens=rng.randint(0, 500), completion_tokens=rng.randint(0, 200),
            cost_usd=rng.uniform(0, 0.01), latency_ms=rng.uniform(1, 900),
            status_code=502 if failed else 200, error="boom" if failed else None,
            cache=rng.choice(["hit", "miss", None]),
            saved_usd=rng.uniform(0, 0.01) if rng.random() < 0.2 else None,
            audit=AuditRecord(policy="p", data_class="public", action=rng.choice(
                ["allow", "block", "pseudonymise"]), rule="r", entities={"EMAIL_ADDRESS": 1},
                pseudonymised=1) if i % 3 == 0 else None))
    return out


def _expected(records: list[UsageRecord], since: float) -> Counter[tuple[str | None, str | None,
                                                                           str | None]]:
    seen: Counter[tuple[str | None, str | None, str | None]] = Counter()
    for r in records:
        if r.created_at >= since:
            reason = None if r.route_reason is None else r.route_reason.split(":")[0]
            seen[(r.deployment, reason, r.endpoint)] += 1
    return seen


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'dash.db'}"
    return str(request.getfixturevalue("pg_url"))


def _board(url: str, records: list[UsageRecord]) -> DashboardStore:
    store = UsageStore(url)
    store.create_all()
    store.insert_many(records)
    board = DashboardStore(store.engine)
    board.create_all()
    return board


@pytest.mark.parametrize("window_h", [2, 30, 24 * 9])
def test_rollups_equal_a_plain_group_by(url: str, window_h: int) -> None:
    records = _records(1500, days=10)
    board = _board(url, records)
    since = NOW - window_h * 3600
    groups = board.traffic(since, now=NOW)
    got = Counter({(g.deployment, g.reason, g.endpoint): g.requests for g in groups})
    assert got == _expected(records, since)
    inside = [r for r in records if r.created_at >= since]
    assert sum(g.cost_usd for g in groups) == pytest.approx(sum(r.cost_usd for r in inside))
    assert sum(g.errors for g in groups) == sum(r.error is not None for r in inside)
    assert sum(g.hits for g in groups) == sum(r.cache == "hit" for r in inside)
    keys = {k.key_id: k for k in board.key_usage(since, now=NOW)}
    assert keys["k1"].requests == sum(r.key_id == "k1" for r in inside)
    assert keys["k1"].last_at == pytest.approx(max(r.created_at for r in inside
                                                   if r.key_id == "k1"))
    actions = {(a["action"]): a["requests"] for a in board.guard_actions(since, now=NOW)}
    audited = [r for r in inside if r.audit is not None]
    assert actions == dict(Counter(r.audit.action for r in audited if r.audit))
    series = board.series(since, 86400 if window_h > 48 else 3600, now=NOW)
    assert sum(p.requests for p in series) == len(inside)


def test_late_rows_and_double_builds_are_caught(url: str) -> None:
    records = _records(600, days=5)
    board = _board(url, records)
    since = NOW - 5 * 86400
    before = sum(g.requests for g in board.traffic(since, now=NOW))
    late = [UsageRecord(request_id=f"late{i}", created_at=NOW - 4 * 86400 - i,
                        deployment="open-a", endpoint="chat") for i in range(3)]
    UsageStore(board.engine).insert_many(late)  # a spill file replayed, days late
    fresh = DashboardStore(board.engine)  # a process whose whole-window check is due
    assert sum(g.requests for g in fresh.traffic(since, now=NOW)) == before + 3
    hourly = TRAFFIC.hourly
    with board.engine.begin() as conn:  # two replicas built the same hours at once
        rows = [dict(r._mapping) for r in conn.execute(sa.select(hourly).limit(5))]
        conn.execute(hourly.insert(), rows)
    fresh = DashboardStore(board.engine)
    assert sum(g.requests for g in fresh.traffic(since, now=NOW)) == before + 3


def test_logs_page_by_keyset_with_filters(url: str) -> None:
    records = _records(120, days=1)
    board = _board(url, records)
    ordered = sorted(records, key=lambda r: -r.created_at)
    pages, before = [], None
    while True:
        page = board.requests(limit=50, before=before)
        pages += [row["request_id"] for row in page]
        if len(page) < 50:
            break
        before = parse_cursor(page[-1]["cursor"])
    assert pages == [r.request_id for r in ordered]
    only = board.requests(limit=200, where=LogFilter(deployment="prop-b", status="error"))
    assert {row["request_id"] for row in only} == {
        r.request_id for r in records if r.deployment == "prop-b" and r.error is not None}
    audit = board.audit(limit=10)
    assert [row["request_id"] for row in audit] == [
        r.request_id for r in ordered if r.audit is not None][:10]
    assert audit[0]["entities"] == {"EMAIL_ADDRESS": 1}
    with pytest.raises(ValueError, match="cursor"):
        parse_cursor("nope")


def test_a_month_window_reads_fast(tmp_path: Path) -> None:
    """Warm reads of a month of rows stay well under the benchmark's budget (the 1M-row
    figures are in benchmarks/ui/RESULTS.md)."""
    board = _board(f"sqlite:///{tmp_path / 'm.db'}", _records(20_000, days=30))
    since = NOW - 31 * 86400
    board.traffic(since, now=NOW)  # builds the roll-ups once
    started = time.perf_counter()
    assert sum(g.requests for g in board.traffic(since, now=NOW)) == 20_000
    board.series(since, 86400, now=NOW)
    assert time.perf_counter() - started < 1.0


def _sql_split(engine: sa.Engine, since: float) -> Counter[tuple[str | None, str | None]]:
    """Rows since ``since`` per (deployment, endpoint), by a plain GROUP BY."""
    query = sa.text("SELECT deployment, endpoint, count(*) FROM usage WHERE created_at >= :s "
                    "GROUP BY deployment, endpoint")
    with engine.connect() as conn:
        return Counter({(d, e): n for d, e, n in conn.execute(query, {"s": since})})


def _board_split(board: DashboardStore, since: float) -> Counter[tuple[str | None, str | None]]:
    got: Counter[tuple[str | None, str | None]] = Counter()
    for g in board.traffic(since, now=NOW):
        got[(g.deployment, g.endpoint)] += g.requests
    return +got


def _late(tag: str, at: float, n: int = 4) -> list[UsageRecord]:
    return [UsageRecord(request_id=f"{tag}{i}", created_at=at - i, deployment="prop-b",
                        endpoint="chat") for i in range(n)]


def test_window_switches_stay_exact(url: str) -> None:
    """A narrow window's whole-window check must not stand in for a wider window's: the
    page loads 24 h, then the user picks 7 d, 30 d, 2 h within the check interval, with
    rows arriving late (a replayed spill file) for hours never read before."""
    board = _board(url, _records(2000, days=40))
    writer = UsageStore(board.engine)
    steps = [(24 * 3600, []), (7 * 86400, _late("a", NOW - 5 * 86400)),
             (30 * 86400, _late("b", NOW - 20 * 86400)), (2 * 3600, _late("c", NOW - 600)),
             (7 * 86400, _late("d", NOW - 30 * 3600)), (30 * 86400, [])]
    for window_s, late in steps:
        writer.insert_many(late)
        since = NOW - window_s
        assert _board_split(board, since) == _sql_split(board.engine, since), window_s
        assert sum(p.requests for p in board.series(since, 86400 if window_s > 48 * 3600
                                                    else 3600, now=NOW)) == sum(
            _sql_split(board.engine, since).values())
        keys = sum(k.requests for k in board.key_usage(since, now=NOW))
        assert keys == sum(_sql_split(board.engine, since).values())


def _read_at_once(boards: list[DashboardStore], since: float) -> list[int]:
    """Each board's total since ``since``, all asked at the same moment in threads."""
    start = threading.Barrier(len(boards))
    got: list[int] = []

    def read(board: DashboardStore) -> None:
        start.wait()
        got.append(sum(g.requests for g in board.traffic(since, now=NOW)))

    threads = [threading.Thread(target=read, args=(b,)) for b in boards]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return got


def test_concurrent_first_builds_count_once_on_postgres(pg_url: str) -> None:
    """Six reads at once (the page asks for overview and series together; replicas build
    the same hours) each see every row once, and the roll-ups hold each row once."""
    board = _board(pg_url, _records(5000, days=3))
    since = NOW - 2 * 86400
    truth = sum(_sql_split(board.engine, since).values())
    hourly = TRAFFIC.hourly
    for _ in range(2):
        with board.engine.begin() as conn:
            conn.execute(hourly.delete())
            conn.execute(TRAFFIC.daily.delete())
        shared = DashboardStore(board.engine)  # one gateway: threads share its store
        boards = [shared] * 3 + [DashboardStore(pg_url) for _ in range(3)]  # + replicas
        got = _read_at_once(boards, since)
        assert got == [truth] * 6
        with board.engine.connect() as conn:
            built = conn.execute(sa.select(sa.func.sum(hourly.c.requests))).scalar_one()
            raw = conn.execute(sa.text(
                "SELECT count(*) FROM usage WHERE created_at >= :a AND created_at < :b"),
                {"a": math.ceil(since / 3600) * 3600, "b": math.floor(NOW / 3600) * 3600}
            ).scalar_one()
        assert built == raw
        for b in boards[3:]:
            b.close()
    board.close()
