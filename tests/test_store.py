"""The usage store: table, summaries, the batching writer, spill/replay, SIGTERM flush.

Store and writer tests run on SQLite and on PostgreSQL. PostgreSQL comes from
``MODELMIX_TEST_PG_URL`` (a throwaway database: each test works in its own schema) or a
temporary cluster started from the Debian ``postgresql`` binaries; without either the
PostgreSQL cases skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from typer.testing import CliRunner

from _servers import free_port, serve_app
from modelmix.catalog import StoreSettings
from modelmix.cli import app as cli_app
from modelmix.errors import ConfigError
from modelmix.store import (
    NullSink,
    UsageRecord,
    UsageStore,
    UsageWriter,
    build_usage_sink,
    default_spill_path,
    parse_window,
    percentile,
)
from modelmix.store._sql import normalize_url

# -- database fixtures (pg_server_url, pg_url: tests/conftest.py) -------------------------


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'usage.db'}"
    return str(request.getfixturevalue("pg_url"))


def rec(n: int, **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = {"request_id": f"req-{n}", "created_at": 1_700_000_000.0 + n,
                              "deployment": "dep-a", "key_id": "k1", "latency_ms": 100.0}
    fields.update(kw)
    return UsageRecord(**fields)


class RecordingStore(UsageStore):
    """Counts insert batch sizes; fails while ``down``; blocks while ``gate`` is clear."""

    def __init__(self, url: str):
        super().__init__(url)
        self.batches: list[int] = []
        self.down = False
        self.gate = threading.Event()
        self.gate.set()

    def insert_many(self, records: Sequence[UsageRecord]) -> int:
        self.gate.wait()
        if self.down:
            raise OperationalError("INSERT", {}, Exception("database is down"))
        self.batches.append(len(records))
        return super().insert_many(records)


def wait_for(predicate: Any, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.01)


# -- table and engine ----------------------------------------------------------------------


def test_roundtrip_every_field_and_indexes(db_url: str) -> None:
    store = UsageStore(db_url)
    store.create_all()
    store.create_all()  # idempotent
    full = UsageRecord(
        request_id="r-full", created_at=1_700_000_123.456789, requested_model="auto",
        key_id="key-9", deployment="prop-b", provider="openai", route_reason="needs images",
        stream=True, prompt_tokens=3_000_000_000, completion_tokens=42, cost_usd=0.123456789,
        latency_ms=812.5, ttft_ms=95.25, status_code=502, error="upstream 503 " * 200,
        error_type="UpstreamUnavailable", attempts=3)
    assert store.insert_many([full, rec(1)]) == 2
    assert store.insert_many([]) == 0
    assert store.records() == [full, rec(1)] or store.records() == [rec(1), full]
    assert store.records(since=1_700_000_100.0) == [full]
    assert store.count() == 2
    indexed = {tuple(ix["column_names"]) for ix in sa.inspect(store.engine).get_indexes("usage")}
    assert {("created_at",), ("deployment", "created_at"), ("key_id", "created_at"),
            ("status_code", "created_at")} <= indexed
    store.close()


def test_sqlite_uses_wal_and_creates_folders(tmp_path: Path) -> None:
    store = UsageStore(f"sqlite:///{tmp_path / 'a' / 'b' / 'usage.db'}")
    store.create_all()
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    store.close()


def test_urls_and_drivers(monkeypatch: pytest.MonkeyPatch) -> None:
    assert normalize_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    assert normalize_url("postgres://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ConfigError, match="invalid database URL"):
        UsageStore("not a://url")
    assert normalize_url("runs/usage.db").database.endswith("/runs/usage.db")  # a path
    assert normalize_url("runs/usage.db").get_backend_name() == "sqlite"
    with pytest.raises(ConfigError, match="empty database URL"):
        normalize_url("  ")
    with pytest.raises(ConfigError, match="unsupported database URL"):
        UsageStore("nosuchdb://x/y")
    monkeypatch.setitem(sys.modules, "psycopg", None)  # as if the extra were not installed
    with pytest.raises(ConfigError, match=r"no driver .*modelmix\[postgres\]"):
        UsageStore("postgresql://u:secret@h/db")


# -- summaries -------------------------------------------------------------------------------


def test_percentile_method() -> None:
    assert percentile([], 50) is None
    assert percentile([7.0], 95) == 7.0
    assert percentile([10, 20, 30, 40], 50) == 25.0
    assert percentile([10, 20, 30, 40], 95) == pytest.approx(38.5)
    assert percentile([40, 10, 30, 20], 0) == 10 and percentile([40, 10, 30, 20], 100) == 40
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    np = pytest.importorskip("numpy")
    values = [float(v) for v in np.random.default_rng(0).gamma(2.0, 150.0, size=997)]
    for q in (1, 50, 90, 95, 99):
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_parse_window() -> None:
    assert parse_window("90s") == 90
    assert parse_window("30m") == 1800
    assert parse_window("24h") == 86400
    assert parse_window("7d") == 7 * 86400
    assert parse_window("1.5h") == 5400
    for bad in ("", "h", "10", "-1h", "0d", "3y"):
        with pytest.raises(ValueError):
            parse_window(bad)


def _summary_records() -> list[UsageRecord]:
    rows = [rec(i, latency_ms=float(lat), cost_usd=0.01, prompt_tokens=10, completion_tokens=5,
                key_id="k1" if i % 2 else "k2", ttft_ms=float(lat) / 4 if i < 2 else None)
            for i, lat in enumerate([100, 200, 300, 400])]
    rows.append(rec(4, latency_ms=9000.0, status_code=502, error="boom", cost_usd=0.005,
                    prompt_tokens=10))
    rows += [rec(10 + i, deployment="dep-b", key_id="k2", latency_ms=float(lat), cost_usd=0.1,
                 completion_tokens=100) for i, lat in enumerate(range(10, 101, 10))]
    rows.append(rec(30, deployment=None, key_id=None, status_code=401, error="bad key"))
    rows.append(rec(31, created_at=1_600_000_000.0, deployment="dep-old", cost_usd=9.0))
    return rows


def test_summary_numbers(db_url: str) -> None:
    store = UsageStore(db_url)
    store.create_all()
    store.insert_many(_summary_records())
    since = 1_699_999_999.0
    by_dep = {r.group["deployment"]: r for r in store.summary(since=since)}
    assert set(by_dep) == {"dep-a", "dep-b", None}
    a, b = by_dep["dep-a"], by_dep["dep-b"]
    assert (a.requests, a.errors, a.prompt_tokens, a.completion_tokens) == (5, 1, 50, 20)
    assert a.cost_usd == pytest.approx(0.045)
    # latencies of successes only: [100, 200, 300, 400] -> linear interpolation
    assert a.p50_latency_ms == pytest.approx(250.0) and a.p95_latency_ms == pytest.approx(385.0)
    assert a.p50_ttft_ms == pytest.approx(37.5)  # ttfts [25, 50]
    assert (b.requests, b.errors, b.completion_tokens) == (10, 0, 1000)
    assert b.cost_usd == pytest.approx(1.0)
    assert b.p50_latency_ms == pytest.approx(55.0) and b.p95_latency_ms == pytest.approx(95.5)
    assert b.p50_ttft_ms is None
    assert by_dep[None].errors == 1 and by_dep[None].p50_latency_ms is None
    assert [r.group["deployment"] for r in store.summary(since=since)] == ["dep-b", "dep-a", None]
    (total,) = store.summary(since=since, group_by=())
    assert (total.group, total.requests, total.errors) == ({}, 16, 2)
    assert total.cost_usd == pytest.approx(1.045)
    (everything,) = store.summary(group_by=())
    assert everything.requests == 17 and everything.cost_usd == pytest.approx(10.045)
    pairs = {(r.group["deployment"], r.group["key"]): r.requests
             for r in store.summary(since=since, group_by=("deployment", "key"))}
    assert pairs == {("dep-a", "k1"): 3, ("dep-a", "k2"): 2, ("dep-b", "k2"): 10,
                     (None, None): 1}
    with pytest.raises(ValueError, match="unknown group_by"):
        store.summary(group_by=("colour",))  # type: ignore[arg-type]
    store.close()


# -- the writer ------------------------------------------------------------------------------


def test_writer_batches_and_flushes_on_close(db_url: str, tmp_path: Path) -> None:
    store = RecordingStore(db_url)
    writer = UsageWriter(store, spill_path=tmp_path / "spill.jsonl", batch_size=100,
                         flush_interval_s=30)
    started = time.perf_counter()
    for i in range(250):
        writer.record(rec(i))
    assert time.perf_counter() - started < 0.5  # no I/O on the caller's thread
    wait_for(lambda: store.batches == [100, 100])  # full batches go at once
    writer.close()
    writer.close()  # idempotent
    assert store.batches == [100, 100, 50]
    assert writer.stats.written == 250 and writer.stats.spilled == 0
    check = UsageStore(db_url)
    assert check.count() == 250
    writer.record(rec(999))  # after close: kept in the spill file, not lost
    assert writer.stats.spilled == 1 and writer.spill.pending()
    again = UsageWriter(UsageStore(db_url), spill_path=tmp_path / "spill.jsonl")
    again.close()
    assert again.stats.replayed == 1 and check.count() == 251 and not writer.spill.pending()
    check.close()


def test_writer_flushes_on_interval(tmp_path: Path) -> None:
    store = RecordingStore(f"sqlite:///{tmp_path / 'usage.db'}")
    writer = UsageWriter(store, flush_interval_s=0.05)
    for i in range(3):
        writer.record(rec(i))
    wait_for(lambda: sum(store.batches) == 3, timeout_s=5)
    assert store.batches == [3]  # one batch, not three single inserts
    writer.record(rec(3))
    assert writer.flush(timeout_s=5)
    assert sum(store.batches) == 4
    writer.close()
    assert writer.spill.path == tmp_path / "usage.db.spill.jsonl"


def test_many_concurrent_producers(db_url: str, tmp_path: Path) -> None:
    writer = UsageWriter(UsageStore(db_url), spill_path=tmp_path / "s.jsonl", batch_size=200,
                         flush_interval_s=0.01)
    threads, per_thread = 16, 400

    def produce(t: int) -> None:
        for i in range(per_thread):
            writer.record(rec(t * per_thread + i))

    workers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    writer.close()
    store = UsageStore(db_url)
    ids = {r.request_id for r in store.records()}
    assert len(ids) == store.count() == threads * per_thread
    assert writer.stats.written == threads * per_thread
    store.close()


async def test_record_from_event_loop_tasks(tmp_path: Path) -> None:
    import asyncio

    writer = UsageWriter(UsageStore(f"sqlite:///{tmp_path / 'u.db'}"), flush_interval_s=0.01)

    async def task(n: int) -> None:
        await asyncio.sleep(0)
        writer.record(rec(n))

    await asyncio.gather(*(task(n) for n in range(2000)))
    await asyncio.to_thread(writer.close)
    assert writer.stats.written == 2000


def test_db_failure_spills_then_replays(db_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    store = RecordingStore(db_url)
    store.create_all()
    store.down = True
    sleeps: list[float] = []
    writer = UsageWriter(store, spill_path=spill, retries=2, retry_backoff_s=0.2,
                         sleep=sleeps.append, flush_interval_s=0.01)
    for i in range(30):
        writer.record(rec(i))
    assert writer.flush(timeout_s=10)
    assert sleeps[:2] == [0.2, 0.4]  # backoff before the two retries of the first batch
    assert writer.stats.spilled == 30 and writer.stats.written == 0
    assert len(spill.read_text().splitlines()) == 30 and store.count() == 0
    # the database comes back: the next successful insert replays the spill
    store.down = False
    writer.record(rec(30))
    writer.close()
    assert writer.stats.replayed == 30
    assert store.count() == 31 and not spill.exists()
    assert sorted(r.request_id for r in store.records()) == sorted(f"req-{i}" for i in range(31))
    store.close()


def test_spill_replayed_on_next_start(db_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    store = RecordingStore(db_url)
    store.down = True
    writer = UsageWriter(store, spill_path=spill, retries=0, flush_interval_s=0.01)
    for i in range(5):
        writer.record(rec(i, ttft_ms=1.5, stream=True))
    writer.close()
    assert writer.stats.spilled == 5 and store.count() == 0
    store.close()
    restarted = UsageWriter(UsageStore(db_url), spill_path=spill)
    assert restarted.flush(timeout_s=10)
    restarted.close()
    assert restarted.stats.replayed == 5 and not spill.exists()
    with UsageStore(db_url) as check:
        assert check.records() == [rec(i, ttft_ms=1.5, stream=True) for i in range(5)]


def test_replay_skips_stored_duplicate_and_corrupt_lines(db_url: str, tmp_path: Path) -> None:
    spill = tmp_path / "spill.jsonl"
    store = UsageStore(db_url)
    store.create_all()
    store.insert_many([rec(0), rec(1)])  # committed, but the writer thought it failed
    lines = [json.dumps(r.to_dict()) for r in (rec(0), rec(1), rec(2), rec(2), rec(3))]
    spill.write_text("\n".join([*lines, '{"request_id": "torn', '{"bogus": 1}']) + "\n")
    writer = UsageWriter(UsageStore(db_url), spill_path=spill)
    writer.close()
    assert writer.stats.replayed == 5  # parsed; two of them were already stored
    assert sorted(r.request_id for r in store.records()) == ["req-0", "req-1", "req-2", "req-3"]
    assert not spill.exists()
    rejected = Path(f"{spill}.rejected").read_text().splitlines()
    assert rejected == ['{"request_id": "torn', '{"bogus": 1}']
    store.close()


def test_close_timeout_spills_what_is_stuck(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    spill = tmp_path / "spill.jsonl"
    store = RecordingStore(url)
    store.create_all()
    store.gate.clear()  # the database hangs
    writer = UsageWriter(store, spill_path=spill, close_timeout_s=0.3, flush_interval_s=0.01)
    for i in range(5):
        writer.record(rec(i))
    wait_for(lambda: not writer._pending)
    for i in range(5, 8):
        writer.record(rec(i))
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 3
    assert len(spill.read_text().splitlines()) == 8  # in flight and still queued
    store.gate.set()  # the hung insert finally commits rows 0-4, then replays the spill,
    writer._thread.join(10)  # which adds only rows 5-7
    assert not writer._thread.is_alive() and not spill.exists()
    restarted = UsageWriter(UsageStore(url), spill_path=spill)
    restarted.close()
    assert sorted(r.request_id for r in store.records()) == [f"req-{i}" for i in range(8)]
    store.close()


def test_build_usage_sink(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMIX_DB_URL", raising=False)
    assert isinstance(build_usage_sink(StoreSettings(enabled=False)), NullSink)
    own = f"sqlite:///{tmp_path / 'own.db'}"
    sink = build_usage_sink(StoreSettings(url=own))
    assert isinstance(sink, UsageWriter)
    assert sink.store.url.database == str(tmp_path / "own.db")
    assert sink.spill.path == tmp_path / "own.db.spill.jsonl"
    sink.close()
    monkeypatch.setenv("MODELMIX_DB_URL", f"sqlite:///{tmp_path / 'env.db'}")
    sink = build_usage_sink(StoreSettings(url=own, spill_path=str(tmp_path / "x.jsonl")))
    assert isinstance(sink, UsageWriter)
    assert sink.store.url.database == str(tmp_path / "env.db")
    assert sink.spill.path == tmp_path / "x.jsonl"
    sink.close()
    assert default_spill_path("postgresql://u@h/db") == Path.cwd() / "modelmix_usage.spill.jsonl"


# -- the CLI -----------------------------------------------------------------------------------


def test_usage_cli(db_url: str, tmp_path: Path) -> None:
    store = UsageStore(db_url)
    store.create_all()
    now = time.time()
    store.insert_many([rec(i, created_at=now - 60 + i, latency_ms=100.0 * (i + 1), cost_usd=0.5)
                       for i in range(4)])
    store.insert_many([rec(9, created_at=now - 3 * 86400, deployment="dep-old")])
    runner = CliRunner()
    result = runner.invoke(cli_app, ["usage", "--db", db_url, "--since", "1h", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["rows"] == [{"deployment": "dep-a", "requests": 4, "errors": 0,
                             "steps": 0, "step_errors": 0, "prompt_tokens": 0,
                             "completion_tokens": 0, "cost_usd": 2.0,
                             "p50_latency_ms": 250.0, "p95_latency_ms": 385.0,
                             "p50_ttft_ms": None}]
    assert body["total"]["requests"] == 4
    result = runner.invoke(cli_app, ["usage", "--db", db_url, "--by", "deployment,key"])
    assert result.exit_code == 0, result.output
    assert "dep-old" in result.stdout and "total" in result.stdout and "k1" in result.stdout
    bad = runner.invoke(cli_app, ["usage", "--db", db_url, "--since", "yesterday"])
    assert bad.exit_code == 2 and "invalid duration" in bad.output
    bad = runner.invoke(cli_app, ["usage", "--db", db_url, "--by", "colour"])
    assert bad.exit_code == 2 and "unknown group_by" in bad.output
    missing = runner.invoke(cli_app, ["usage", "--db", f"sqlite:///{tmp_path / 'none.db'}"])
    assert missing.exit_code == 2 and "no usage database" in missing.output
    store.close()


# -- the gateway, end to end, stopped by SIGTERM ---------------------------------------------

UPSTREAM_REPLY = {
    "id": "chatcmpl-fake", "object": "chat.completion", "created": 1_700_000_000,
    "model": "fake-model",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
}


def _upstream() -> Starlette:
    async def completions(request: Request) -> JSONResponse:
        await request.body()
        return JSONResponse(UPSTREAM_REPLY)

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def _start_gateway(config: Path, port: int, db_url: str) -> subprocess.Popen[str]:
    env = {**os.environ, "MODELMIX_DB_URL": db_url, "MODELMIX_MASTER_KEY": "sk-master"}
    env.pop("MODELMIX_CONFIG", None)
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelmix.cli", "serve", "--config", str(config),
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while True:
        if proc.poll() is not None:
            output = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"gateway exited early:\n{output}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "gateway did not start"
        time.sleep(0.05)


def test_sigterm_flushes_every_request(tmp_path: Path) -> None:
    db_url = f"sqlite:///{tmp_path / 'gateway.db'}"
    n = 40
    with serve_app(_upstream()) as upstream:
        config = tmp_path / "modelmix.yaml"
        config.write_text(
            "deployments:\n"
            "  - name: fake-up\n"
            "    provider: openai-compatible\n"
            f"    base_url: {upstream}/v1\n"
            "    model: fake-model\n"
            "    input_cost_per_mtok: 3\n"
            "    output_cost_per_mtok: 15\n")
        port = free_port()
        proc = _start_gateway(config, port, db_url)
        try:
            headers = {"Authorization": "Bearer sk-master"}
            body = {"model": "fake-up", "messages": [{"role": "user", "content": "hi"}]}
            with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=headers,
                              timeout=30) as client:
                for _ in range(n):
                    assert client.post("/v1/chat/completions", json=body).status_code == 200
                bad = client.post("/v1/chat/completions", json={**body, "model": "nope"})
                assert bad.status_code == 404
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=30)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    # uvicorn re-raises the captured SIGTERM once its graceful shutdown is done
    assert proc.returncode in (0, -signal.SIGTERM), output
    store = UsageStore(db_url)
    records = store.records()
    assert len(records) == n + 1, output
    ok = [r for r in records if r.status_code == 200]
    assert len(ok) == n
    for r in ok:
        assert (r.deployment, r.provider, r.requested_model) == ("fake-up", "openai-compatible",
                                                                "fake-up")
        assert (r.prompt_tokens, r.completion_tokens) == (11, 7)
        assert r.cost_usd == pytest.approx((11 * 3 + 7 * 15) / 1e6)
        assert r.latency_ms > 0 and r.route_reason and r.error is None and r.attempts == 1
    (failed,) = [r for r in records if r.status_code != 200]
    assert (failed.status_code, failed.requested_model, failed.error_type) == (404, "nope",
                                                                               "NoDeployment")
    (row,) = store.summary(group_by=("deployment",), since=time.time() - 3600)[:1]
    assert row.group == {"deployment": "fake-up"} and row.requests == n
    assert row.cost_usd == pytest.approx(n * (11 * 3 + 7 * 15) / 1e6)
    store.close()


def test_large_batch_is_written_in_slices_in_one_transaction(db_url: str) -> None:
    from modelmix.store import AuditRecord, AuditStore

    store = UsageStore(db_url)
    store.create_all()
    batch = [rec(i, prompt=f"p{i}" if i % 3 == 0 else None,
                 audit=AuditRecord(policy="p", data_class="regulated", action="block",
                                   rule="r", entities={"US_SSN": i % 4})
                 if i % 2 == 0 else None) for i in range(101)]  # > 3 slices of 32 rows
    assert store.insert_many(batch) == 101
    assert [r.request_id for r in store.records()] == [r.request_id for r in batch]
    with AuditStore(store.engine) as audit:
        rows = audit.rows(limit=1000)
    assert sorted(r.request_id for r in rows) == sorted(r.request_id for r in batch[::2])
    with store.engine.connect() as conn:
        prompts = conn.execute(sa.text("select count(*) from request_texts")).scalar_one()
    assert prompts == len(batch[::3])
    failing = [*batch[:40], UsageRecord(request_id=None, created_at=0.0)]  # type: ignore[arg-type]
    with pytest.raises(sa.exc.IntegrityError):
        store.insert_many(failing)  # the 41st row violates NOT NULL after a full slice...
    assert store.count() == 101  # ...and the slice already sent is rolled back with it
    store.close()


def test_writer_thread_runs_niced_on_linux(tmp_path: Path) -> None:
    if not sys.platform.startswith("linux"):
        pytest.skip("per-thread niceness is a Linux feature")
    seen: list[int] = []

    class Probe(UsageStore):
        def insert_many(self, records: Sequence[UsageRecord]) -> int:
            seen.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))
            return super().insert_many(records)

    base = os.getpriority(os.PRIO_PROCESS, 0)
    writer = UsageWriter(Probe(f"sqlite:///{tmp_path / 'u.db'}"), thread_nice=5)
    writer.record(rec(1))
    assert writer.flush(10)
    writer.close()
    assert seen == [min(base + 5, 19)]
    assert os.getpriority(os.PRIO_PROCESS, 0) == base  # the caller's thread is untouched


def test_summary_by_endpoint(db_url: str) -> None:
    """`modelmix usage --by endpoint` (found by a new user: the column was there, the
    grouping was not)."""
    store = UsageStore(db_url)
    store.create_all()
    store.insert_many([rec(0, endpoint="chat"), rec(1, endpoint="messages"),
                       rec(2, endpoint="messages", cost_usd=0.5), rec(3)])
    got = {r.group["endpoint"]: (r.requests, r.cost_usd)
           for r in store.summary(group_by=("endpoint",))}
    assert got == {"chat": (1, 0.0), "messages": (2, 0.5), None: (1, 0.0)}
    store.close()
