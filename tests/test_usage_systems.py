"""Usage records, summaries, logs, metrics and traces of systems of models (issue 11).

A system request writes one envelope row (``system`` set, no ``parent_id``, cost 0) and one
row per step (``parent_id`` = the envelope's ``request_id``). Store cases run on SQLite and
PostgreSQL (fixtures from ``conftest``: without PostgreSQL binaries or psycopg those
cases skip, or fail when ``CI=true``).
"""

from __future__ import annotations

import io
import json
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from modelmix.catalog import config_from_dict
from modelmix.cli import app as cli_app
from modelmix.observability._logging import JsonFormatter, RequestLogSink
from modelmix.observability._metrics import MAX_SYSTEM_SERIES, GatewayMetrics, MetricsSink
from modelmix.store import NullSink, SpillFile, UsageRecord, UsageStore, UsageWriter, _schema
from modelmix.store._sql import USAGE_TABLE

T0 = 1_700_000_000.0
#: Columns added to the v1 usage table since: systems of models, media, the response cache.
NEW_COLUMNS = ("parent_id", "system", "step", "verdict", "media", "conversions", "media_ms",
               "cache", "saved_usd", "endpoint")


@pytest.fixture(params=["sqlite", "postgres"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'usage.db'}"
    return str(request.getfixturevalue("pg_url"))


def envelope(rid: str = "sys-1", *, system: str = "triage", at: float = T0,
             latency_ms: float = 900.0, **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": rid, "created_at": at, "requested_model": f"system/{system}",
        "key_id": "k1", "system": system, "latency_ms": latency_ms,
        "route_reason": "system triage: classify -> answer (accepted)"}
    fields.update(kw)
    return UsageRecord(**fields)


def step(rid: str, parent: str = "sys-1", *, name: str = "answer", system: str = "triage",
         deployment: str | None = "open-a", at: float = T0, **kw: Any) -> UsageRecord:
    fields: dict[str, Any] = {
        "request_id": rid, "created_at": at, "parent_id": parent, "system": system,
        "step": name, "deployment": deployment, "key_id": "k1",
        "provider": None if deployment is None else "vllm", "latency_ms": 300.0}
    fields.update(kw)
    return UsageRecord(**fields)


def system_request(n: int = 1, at: float = T0) -> list[UsageRecord]:
    """One system request: the envelope, a classify call, an answer call, a judged verify."""
    parent = f"sys-{n}"
    return [
        envelope(parent, at=at),
        step(f"{parent}-classify", parent, name="classify", at=at, latency_ms=50.0,
             prompt_tokens=20, completion_tokens=1, cost_usd=0.0001),
        step(f"{parent}-answer", parent, at=at + 0.1, latency_ms=500.0, prompt_tokens=100,
             completion_tokens=50, cost_usd=0.002),
        step(f"{parent}-verify", parent, name="verify", deployment="prop-b", at=at + 0.6,
             latency_ms=250.0, prompt_tokens=150, completion_tokens=5, cost_usd=0.003,
             verdict="accept"),
    ]


# -- the store: write and read back -------------------------------------------------------------


def test_writer_stores_system_rows_and_reads_them_back(db_url: str, tmp_path: Path) -> None:
    records = [*system_request(), step("sys-1-check", name="check", deployment=None,
                                       at=T0 + 0.9, latency_ms=1.5, verdict="escalate")]
    writer = UsageWriter(UsageStore(db_url), spill_path=tmp_path / "spill.jsonl",
                         thread_nice=None)
    for rec in records:
        writer.record(rec)
    writer.close()
    assert writer.stats.written == len(records) and writer.stats.spilled == 0
    with UsageStore(db_url) as store:
        assert sorted(store.records(), key=lambda r: r.request_id) == sorted(
            records, key=lambda r: r.request_id)
        col = USAGE_TABLE.c
        query = (sa.select(col.step, col.deployment, col.verdict, col.cost_usd)
                 .where(col.parent_id == "sys-1").order_by(col.created_at))
        with store.engine.connect() as conn:
            steps = [tuple(row) for row in conn.execute(query)]
        indexed = {ix["name"] for ix in sa.inspect(store.engine).get_indexes("usage")}
    assert steps == [("classify", "open-a", None, 0.0001), ("answer", "open-a", None, 0.002),
                     ("verify", "prop-b", "accept", 0.003), ("check", None, "escalate", 0.0)]
    assert "ix_usage_parent_id" in indexed


def test_spill_round_trips_new_fields_and_loads_old_lines(tmp_path: Path) -> None:
    spill = SpillFile(tmp_path / "spill.jsonl")
    records = system_request()
    spill.append(records)
    old = {"request_id": "v1-row", "created_at": T0, "deployment": "open-a",
           "latency_ms": 12.0, "audit": None}  # written before the fields existed
    with open(spill.path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(old) + "\n")
    got: list[UsageRecord] = []
    assert spill.replay(got.extend) == 5
    assert got[:4] == records
    assert got[4] == UsageRecord(request_id="v1-row", created_at=T0, deployment="open-a",
                                 latency_ms=12.0)
    assert (got[4].parent_id, got[4].system, got[4].step, got[4].verdict) == (None,) * 4


# -- upgrading a table made before the new columns -------------------------------------------


def _v1_table(metadata: sa.MetaData) -> sa.Table:
    """The ``usage`` table as schema v1 made it (before systems of models), by hand."""
    big_id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
    return sa.Table(
        "usage", metadata,
        sa.Column("id", big_id, primary_key=True, autoincrement=True),
        sa.Column("request_id", sa.Text(), nullable=False),
        sa.Column("created_at", sa.Double(), nullable=False),
        *(sa.Column(name, sa.Text()) for name in
          ("requested_model", "key_id", "deployment", "provider", "route_reason")),
        sa.Column("stream", sa.Boolean(), nullable=False),
        sa.Column("prompt_tokens", sa.BigInteger(), nullable=False),
        sa.Column("completion_tokens", sa.BigInteger(), nullable=False),
        sa.Column("cost_usd", sa.Double(), nullable=False),
        sa.Column("latency_ms", sa.Double(), nullable=False),
        sa.Column("ttft_ms", sa.Double()),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text()),
        sa.Column("error_type", sa.Text()),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Index("ix_usage_created_at", "created_at"),
        sa.Index("ix_usage_deployment", "deployment"),
        sa.Index("ix_usage_key_id", "key_id"),
        sa.Index("ix_usage_request_id", "request_id"),
    )


def _make_v1(url: str) -> None:
    engine = sa.create_engine(url)
    v1 = _v1_table(sa.MetaData())
    v1.create(engine)
    with engine.begin() as conn:
        conn.execute(v1.insert().values(
            request_id="old-1", created_at=T0 - 60, deployment="open-a", stream=False,
            prompt_tokens=7, completion_tokens=3, cost_usd=0.5, latency_ms=40.0,
            status_code=200, attempts=1))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgres"])
def v1_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database holding a v1 ``usage`` table with one row."""
    url = (f"sqlite:///{tmp_path / 'old.db'}" if request.param == "sqlite"
           else str(request.getfixturevalue("pg_url")))
    _make_v1(UsageStore(url).engine.url.render_as_string(hide_password=False))
    return url


def test_start_up_upgrades_a_v1_table(v1_url: str, tmp_path: Path) -> None:
    with UsageStore(v1_url) as store:
        assert _schema.missing_columns(store.engine, USAGE_TABLE) != []
    writer = UsageWriter(UsageStore(v1_url), spill_path=tmp_path / "spill.jsonl",
                         thread_nice=None)
    for rec in system_request():
        writer.record(rec)
    writer.close()
    assert writer.stats.written == 4 and writer.stats.spilled == 0
    with UsageStore(v1_url) as store:
        columns = {c["name"]: c for c in sa.inspect(store.engine).get_columns("usage")}
        indexed = {ix["name"] for ix in sa.inspect(store.engine).get_indexes("usage")}
        rows = store.records()
        store.create_all()  # idempotent: nothing left to add
        assert _schema.upgrade_table(store.engine, USAGE_TABLE) == []
    assert all(columns[name]["nullable"] for name in NEW_COLUMNS)
    assert "ix_usage_parent_id" in indexed
    assert rows[0].request_id == "old-1" and rows[0].cost_usd == 0.5
    assert (rows[0].parent_id, rows[0].system, rows[0].step, rows[0].verdict) == (None,) * 4
    assert [r.step for r in rows[1:]] == [None, "classify", "answer", "verify"]


def test_processes_upgrading_at_once_all_succeed(v1_url: str) -> None:
    """Gateways starting together each run the upgrade; none fails, each column is added once."""
    stores = [UsageStore(v1_url) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def start(store: UsageStore) -> None:
        barrier.wait()
        try:
            store.create_all()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    names = [c["name"] for c in sa.inspect(stores[0].engine).get_columns("usage")]
    assert [n for n in names if n in NEW_COLUMNS] == list(NEW_COLUMNS)
    for store in stores:
        store.close()


def test_lost_race_looks_again(v1_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process adds a column between our look and our ALTER: ours fails (SQLite has no
    ``ADD COLUMN IF NOT EXISTS``), we look again and add the rest."""
    store = UsageStore(v1_url)
    with store.engine.begin() as conn:  # the other process got there first with one column
        conn.exec_driver_sql("ALTER TABLE usage ADD COLUMN parent_id TEXT")
    stale = [USAGE_TABLE.c[name] for name in NEW_COLUMNS]
    looks: list[int] = []
    real = _schema.missing_columns

    def first_look_is_stale(engine: sa.Engine, table: sa.Table) -> list[Any]:
        looks.append(1)
        return stale if len(looks) == 1 else real(engine, table)

    monkeypatch.setattr(_schema, "missing_columns", first_look_is_stale)
    added = _schema.upgrade_table(store.engine, USAGE_TABLE)
    if store.engine.dialect.name == "sqlite":  # the ALTER for parent_id failed: look again
        assert added == list(NEW_COLUMNS[1:]) and len(looks) == 2
    else:  # ADD COLUMN IF NOT EXISTS skipped parent_id
        assert added == list(NEW_COLUMNS) and len(looks) == 1
    monkeypatch.setattr(_schema, "missing_columns", real)
    assert real(store.engine, USAGE_TABLE) == []
    store.close()


# -- summaries -----------------------------------------------------------------------------------


def _summary_store(url: str) -> UsageStore:
    store = UsageStore(url)
    store.create_all()
    store.insert_many([
        *system_request(1, T0), *system_request(2, T0 + 10),
        step("sys-2-retry", "sys-2", name="answer", at=T0 + 11, status_code=502,
             error="upstream 503", error_type="UpstreamUnavailable", attempts=2),
        UsageRecord(request_id="plain-1", created_at=T0 + 20, requested_model="open-a",
                    deployment="open-a", key_id="k1", latency_ms=100.0, prompt_tokens=10,
                    completion_tokens=10, cost_usd=0.01),
    ])
    return store


def test_summary_counts_a_system_request_once(db_url: str) -> None:
    store = _summary_store(db_url)
    total = store.summary(group_by=())[0]
    assert total.requests == 3 and total.errors == 0  # two system requests, one plain
    assert total.steps == 7 and total.step_errors == 1
    assert total.cost_usd == pytest.approx(2 * 0.0051 + 0.01)
    assert total.prompt_tokens == 2 * 270 + 10
    assert total.p50_latency_ms == 900.0  # the requests' latencies: envelopes and plain
    by_system = {r.group["system"]: r for r in store.summary(group_by=("system",))}
    assert by_system["triage"].requests == 2 and by_system["triage"].steps == 7
    assert by_system["triage"].cost_usd == pytest.approx(0.0102)
    assert by_system["triage"].p95_latency_ms == 900.0
    assert by_system[None].requests == 1 and by_system[None].steps == 0
    store.close()


def test_summary_by_step_and_deployment(db_url: str) -> None:
    store = _summary_store(db_url)
    by_step = {r.group["step"]: r for r in store.summary(group_by=("step",))}
    assert set(by_step) == {"classify", "answer", "verify", None}
    answer = by_step["answer"]
    assert (answer.requests, answer.steps, answer.step_errors) == (0, 3, 1)
    assert answer.p50_latency_ms == 500.0  # a group of steps only: the steps' latencies
    groups = [r.group for r in store.summary(group_by=("system", "step"))]
    assert groups[:2] == [{"system": None, "step": None},  # the plain request, $0.01
                          {"system": "triage", "step": "verify"}]  # two verifies, $0.006
    assert by_step[None].requests == 3 and by_step[None].cost_usd == pytest.approx(0.01)
    by_dep = {r.group["deployment"]: r for r in store.summary()}
    assert (by_dep["prop-b"].requests, by_dep["prop-b"].steps) == (0, 2)
    assert by_dep["open-a"].requests == 1 and by_dep["open-a"].steps == 5
    assert by_dep["open-a"].p50_latency_ms == 100.0  # its requests' (the plain one)
    assert by_dep[None].requests == 2 and by_dep[None].cost_usd == 0.0  # the envelopes
    store.close()


def test_usage_cli_groups_by_system_and_step(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    _summary_store(url).close()
    runner = CliRunner()
    result = runner.invoke(cli_app, ["usage", "--db", url, "--by", "system,step", "--json"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    rows = {(r["system"], r["step"]): r for r in body["rows"]}
    assert rows[("triage", "verify")]["steps"] == 2
    assert rows[("triage", "verify")]["cost_usd"] == pytest.approx(0.006)
    assert body["total"]["requests"] == 3 and body["total"]["steps"] == 7
    table = runner.invoke(cli_app, ["usage", "--db", url, "--by", "system"])
    assert table.exit_code == 0, table.output
    assert "steps" in table.stdout and "triage" in table.stdout
    plain = tmp_path / "plain.db"
    with UsageStore(f"sqlite:///{plain}") as store:
        store.create_all()
        store.insert_many([UsageRecord(request_id="p", created_at=T0, deployment="open-a")])
    table = runner.invoke(cli_app, ["usage", "--db", f"sqlite:///{plain}"])
    assert table.exit_code == 0 and "steps" not in table.stdout  # no systems, no step columns


# -- the request log -----------------------------------------------------------------------------


@pytest.fixture()
def log_sink() -> Iterator[tuple[RequestLogSink, io.StringIO]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.Logger("test.requests", logging.INFO)
    logger.addHandler(handler)
    yield RequestLogSink(NullSink(), logger), out


def test_log_line_has_system_fields_only_when_set(
        log_sink: tuple[RequestLogSink, io.StringIO]) -> None:
    sink, out = log_sink
    envelope_rec, *_, verify = system_request()
    failed = step("sys-1-x", status_code=502, error="upstream 503",
                  error_type="UpstreamUnavailable")
    plain = UsageRecord(request_id="plain-1", created_at=T0, deployment="open-a")
    for rec in (envelope_rec, verify, failed, plain):
        sink.record(rec)
    env_line, verify_line, failed_line, plain_line = (
        json.loads(line) for line in out.getvalue().splitlines())
    assert env_line["msg"] == "request completed" and env_line["system"] == "triage"
    assert "parent_id" not in env_line and "step" not in env_line and "verdict" not in env_line
    assert verify_line["msg"] == "step completed" and verify_line["level"] == "INFO"
    assert (verify_line["parent_id"], verify_line["system"], verify_line["step"],
            verify_line["verdict"]) == ("sys-1", "triage", "verify", "accept")
    assert failed_line["msg"] == "step failed" and failed_line["level"] == "WARNING"
    assert failed_line["error_type"] == "UpstreamUnavailable" and "verdict" not in failed_line
    assert not {"system", "step", "parent_id", "verdict"} & set(plain_line)


# -- metrics -------------------------------------------------------------------------------------

CONFIG: dict[str, Any] = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open"},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud",
         "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
    ],
}


def _metrics() -> GatewayMetrics:
    return GatewayMetrics(config_from_dict(CONFIG))


def test_metrics_count_system_requests_and_steps() -> None:
    metrics = _metrics()
    sink = MetricsSink(NullSink(), metrics)
    for rec in [*system_request(1), *system_request(2),
                step("sys-2-check", "sys-2", name="check", deployment=None, verdict="escalate",
                     latency_ms=2.0),
                envelope("sys-3", status_code=502, error="every step failed",
                         error_type="UpstreamUnavailable")]:
        sink.record(rec)
    value = metrics.registry.get_sample_value
    assert value("modelmix_system_requests_total", {"system": "triage", "status": "200"}) == 2
    assert value("modelmix_system_requests_total", {"system": "triage", "status": "502"}) == 1
    assert value("modelmix_system_request_latency_seconds_count", {"system": "triage"}) == 3
    labels = {"system": "triage", "step": "verify", "deployment": "prop-b",
              "verdict": "accept", "status": "200"}
    assert value("modelmix_system_steps_total", labels) == 2
    assert value("modelmix_system_steps_total", {
        "system": "triage", "step": "check", "deployment": "none", "verdict": "escalate",
        "status": "200"}) == 1
    assert value("modelmix_system_steps_total", {
        "system": "triage", "step": "answer", "deployment": "open-a", "verdict": "none",
        "status": "200"}) == 2
    assert value("modelmix_system_step_latency_seconds_count",
                 {"system": "triage", "step": "answer"}) == 2
    assert value("modelmix_system_step_latency_seconds_sum",
                 {"system": "triage", "step": "answer"}) == pytest.approx(1.0)
    # the envelopes are the chat requests; steps are not; cost comes from the steps, once
    assert value("modelmix_requests_total", {"deployment": "none",
                 "requested_model": "system/triage", "status_code": "200"}) == 2
    assert value("modelmix_requests_total", {"deployment": "open-a",
                 "requested_model": "open-a", "status_code": "200"}) is None
    assert not value("modelmix_request_latency_seconds_count", {"deployment": "prop-b"})
    assert value("modelmix_cost_usd_total", {"deployment": "prop-b"}) == pytest.approx(0.006)
    assert value("modelmix_prompt_tokens_total", {"deployment": "open-a"}) == 240
    assert value("modelmix_errors_total", {"deployment": "none",
                 "error_type": "UpstreamUnavailable"}) == 1


def test_system_label_sets_are_capped() -> None:
    metrics = _metrics()
    for n in range(MAX_SYSTEM_SERIES + 5):
        metrics.observe(step(f"s{n}", system=f"sys{n}"))
    value = metrics.registry.get_sample_value
    assert value("modelmix_system_steps_total", {
        "system": "other", "step": "other", "deployment": "other", "verdict": "other",
        "status": "200"}) == 5
    assert len(metrics.systems._steps) == MAX_SYSTEM_SERIES + 1


# -- traces --------------------------------------------------------------------------------------


@pytest.fixture()
def spans() -> Iterator[tuple[Any, Any]]:
    """(Tracing over an in-memory exporter, the exporter)."""
    pytest.importorskip("opentelemetry.sdk")
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from modelmix.observability._tracing import Tracing

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    yield Tracing(provider), exporter
    provider.shutdown()


def test_step_spans_are_children_of_the_request_span(spans: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    tracing, exporter = spans
    envelope_rec, classify, answer, verify = system_request()
    failed = step("sys-1-x", status_code=502, error="upstream 503",
                  error_type="UpstreamUnavailable")
    with tracing.tracer.start_as_current_span("chat", kind=SpanKind.SERVER):
        for rec in (classify, answer, verify, failed, envelope_rec):
            tracing.finished(rec, [])
    done = {s.name: s for s in exporter.get_finished_spans()}
    server = done["chat system/triage"]
    assert set(done) == {"chat system/triage", "step classify", "step answer", "step verify"}
    assert server.attributes["modelmix.system"] == "triage"
    assert server.attributes["modelmix.request_id"] == "sys-1"
    assert "modelmix.cost_usd" not in server.attributes  # it lives on the step spans
    assert "gen_ai.usage.input_tokens" not in server.attributes
    assert server.status.status_code is not StatusCode.ERROR
    steps = [s for s in exporter.get_finished_spans() if s.kind is SpanKind.INTERNAL]
    assert len(steps) == 4
    assert all(s.parent.span_id == server.context.span_id for s in steps)
    attrs = dict(done["step verify"].attributes)
    assert attrs["modelmix.system"] == "triage" and attrs["modelmix.step"] == "verify"
    assert attrs["modelmix.parent_id"] == "sys-1" and attrs["modelmix.verdict"] == "accept"
    assert attrs["modelmix.deployment"] == "prop-b" and attrs["modelmix.cost_usd"] == 0.003
    assert attrs["gen_ai.usage.input_tokens"] == 150
    verify_span = done["step verify"]
    assert verify_span.start_time == int(verify.created_at * 1e9)
    assert verify_span.end_time - verify_span.start_time == int(250.0 * 1e6)
    failed_span = next(s for s in steps if s.attributes["modelmix.request_id"] == "sys-1-x")
    assert failed_span.status.status_code is StatusCode.ERROR
    assert failed_span.attributes["error.type"] == "UpstreamUnavailable"


def test_judge_free_verify_span_is_not_a_chat(spans: tuple[Any, Any]) -> None:
    tracing, exporter = spans
    tracing.finished(step("sys-1-check", name="check", deployment=None, verdict="escalate"), [])
    (span,) = exporter.get_finished_spans()
    assert span.name == "step check" and "gen_ai.operation.name" not in span.attributes
    assert span.attributes["modelmix.verdict"] == "escalate"


def test_a_step_calls_routing_leaves_the_request_span_alone(spans: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind

    from modelmix.engine import CallContext
    from modelmix.protocol import ChatRequest

    tracing, exporter = spans
    request = ChatRequest(model="open-a", messages=[{"role": "user", "content": "hi"}])
    with tracing.tracer.start_as_current_span("chat", kind=SpanKind.SERVER):
        tracing.routed(request, CallContext(request_id="c1", parent_id="sys-1"), None, 0.001)
    (span,) = exporter.get_finished_spans()
    assert span.name == "chat" and "modelmix.request_id" not in span.attributes


def test_untimed_verdict_rows_stay_out_of_latencies(tmp_path: Path) -> None:
    verdict = step("sys-1-v", name="answer", deployment=None, latency_ms=0.0,
                   verdict="escalate")
    with UsageStore(f"sqlite:///{tmp_path / 'usage.db'}") as store:
        store.create_all()
        store.insert_many([*system_request(), verdict])
        by_step = {r.group["step"]: r for r in store.summary(group_by=("step",))}
    assert by_step["answer"].steps == 2 and by_step["answer"].p50_latency_ms == 500.0
    metrics = _metrics()
    metrics.observe(verdict)
    assert metrics.registry.get_sample_value("modelmix_system_steps_total", {
        "system": "triage", "step": "answer", "deployment": "none", "verdict": "escalate",
        "status": "200"}) == 1
    assert not metrics.registry.get_sample_value("modelmix_system_step_latency_seconds_count",
                                                 {"system": "triage", "step": "answer"})


# -- end to end: a system request through the gateway ---------------------------------------


def test_a_system_request_through_the_gateway(
        spans: tuple[Any, Any], tmp_path: Path) -> None:
    import httpx
    from opentelemetry.trace import SpanKind

    from _servers import serve_app
    from modelmix.engine import ChatService
    from modelmix.server import create_app
    from modelmix.testing import FakeProvider

    tracing, exporter = spans
    cfg = config_from_dict({**CONFIG, "systems": {"s": {"steps": {
        "draft": {"kind": "model", "model": "open-a"},
        "polish": {"kind": "model", "model": "prop-b", "messages": [
            {"role": "user", "content": "improve: {{ draft.text }}"}]},
        "check": {"kind": "verify", "answer": "polish", "verifier": {
            "name": "rules", "checks": {"says_hi": "'hi' in answer"}}},
    }}}})
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    writer = UsageWriter(UsageStore(url), spill_path=tmp_path / "spill.jsonl",
                         thread_nice=None)
    fakes = {d.name: FakeProvider(d, reply=lambda r: "hi " + r.messages[-1].text())
             for d in cfg.deployments}
    service = ChatService(cfg, providers=fakes, usage=writer)
    with serve_app(create_app(service=service, tracing=tracing)) as base:
        answer = httpx.post(base + "/v1/chat/completions", timeout=30, json={
            "model": "system/s", "messages": [{"role": "user", "content": "hello"}]})
        metrics = httpx.get(base + "/metrics", timeout=30).text
    assert answer.status_code == 200, answer.text
    request_id = answer.headers["x-request-id"]
    writer.flush(10)
    with UsageStore(url) as store:
        rows = store.records()
        by_step = {r.group["step"]: r for r in store.summary(group_by=("step",))}
    (envelope_rec,) = [r for r in rows if r.parent_id is None]
    assert envelope_rec.request_id == request_id and envelope_rec.system == "s"
    steps = {r.step: r for r in rows if r.parent_id == request_id}
    assert set(steps) == {"draft", "polish", "check"} and steps["check"].verdict == "accept"
    # step rows say which API the system request came through (the dashboard splits by it)
    assert {r.endpoint for r in rows} == {"chat"}
    assert by_step[None].requests == 1 and by_step[None].cost_usd == 0
    assert by_step["polish"].steps == 1 and by_step["polish"].cost_usd > 0
    assert 'modelmix_system_requests_total{status="200",system="s"} 1.0' in metrics
    assert ('modelmix_system_steps_total{deployment="prop-b",status="200",step="polish",'
            'system="s",verdict="none"} 1.0') in metrics
    assert ('modelmix_requests_total{deployment="none",requested_model="system/s",'
            'status_code="200"} 1.0') in metrics
    done = list(exporter.get_finished_spans())
    server = next(s for s in done if s.kind is SpanKind.SERVER)
    assert server.name == "chat system/s"
    assert server.attributes["modelmix.request_id"] == request_id
    step_spans = {s.attributes["modelmix.step"]: s for s in done if s.kind is SpanKind.INTERNAL}
    assert set(step_spans) == {"draft", "polish", "check"}
    assert all(s.parent.span_id == server.context.span_id for s in step_spans.values())
    assert step_spans["polish"].attributes["modelmix.parent_id"] == request_id
