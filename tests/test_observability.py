"""Observability: Prometheus /metrics, JSON request logs and OpenTelemetry spans, against a
real gateway on loopback with fake providers."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import UpstreamUnavailable
from modelmix.observability._logging import (
    REQUEST_LOGGER,
    JsonFormatter,
    TextFormatter,
    configure_logging,
)
from modelmix.observability._metrics import (
    LATENCY_BUCKETS_S,
    TTFT_BUCKETS_S,
    GatewayMetrics,
    MetricsSink,
)
from modelmix.server import create_app
from modelmix.testing import FakeProvider

CHAT = "/v1/chat/completions"
PROMPT = "what is the secret launch code 7731?"

CONFIG: dict[str, Any] = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open", "context_window": 2048},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud", "context_window": 100000,
         "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
        {"name": "flaky", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-flaky", "context_window": 2048},
    ],
    "groups": {"rescued": ["flaky", "open-a"]},
    "router": "rules",  # spans and metrics, not routing, are tested here: a fixed rule
    "reliability": {"num_retries": 1, "backoff_base_s": 0, "backoff_max_s": 0,
                    "circuit_breaker": {"failure_threshold": 2, "cooldown_s": 60}},
}

ServiceFactory = Callable[..., ChatService]


async def _no_sleep(seconds: float) -> None:
    return None


def make_service(*, log_prompts: bool = False, delay_s: float = 0.0) -> ChatService:
    cfg = config_from_dict({**CONFIG, "log_prompts": log_prompts})
    fakes = {d.name: FakeProvider(d, reply=f"hello from {d.name}", delay_s=delay_s)
             for d in cfg.deployments}
    fakes["flaky"] = FakeProvider(cfg.deployment("flaky"), fail_times=1000,
                                  error=UpstreamUnavailable("upstream said 503: overloaded",
                                                            deployment="flaky"))
    return ChatService(cfg, providers=fakes, sleep=_no_sleep)


@contextmanager
def gateway(service: ChatService | None = None, **kw: Any) -> Iterator[str]:
    with serve_app(create_app(service=service or make_service(), **kw)) as url:
        yield url


def chat(url: str, model: str, *, stream: bool = False, **headers: str) -> httpx.Response:
    body = {"model": model, "stream": stream, "messages": [{"role": "user", "content": PROMPT}]}
    return httpx.post(url + CHAT, json=body, headers=headers, timeout=10)


def samples(url: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample on /metrics, keyed by (name, labels)."""
    resp = httpx.get(url + "/metrics")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain; version=0.0.4")
    out = {}
    for family in text_string_to_metric_families(resp.text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str,
          **labels: str) -> float | None:
    return found.get((name, frozenset(labels.items())))


# --- metrics ---------------------------------------------------------------------------------


def test_metrics_count_requests_tokens_and_cost_per_deployment() -> None:
    with gateway() as url:
        for _ in range(3):
            assert chat(url, "open-a").status_code == 200
        for _ in range(2):
            assert chat(url, "prop-b").status_code == 200
        assert chat(url, "open-a", stream=True).status_code == 200
        found = samples(url)
    req = "modelmix_requests_total"
    assert value(found, req, deployment="open-a", requested_model="open-a",
                 status_code="200") == 4
    assert value(found, req, deployment="prop-b", requested_model="prop-b",
                 status_code="200") == 2
    # FakeProvider: 10 prompt tokens, one completion token per word ("hello from prop-b").
    assert value(found, "modelmix_prompt_tokens_total", deployment="prop-b") == 20
    assert value(found, "modelmix_completion_tokens_total", deployment="prop-b") == 6
    cost = value(found, "modelmix_cost_usd_total", deployment="prop-b")
    assert cost == pytest.approx(2 * (10 * 2 + 3 * 8) / 1e6)
    assert value(found, "modelmix_cost_usd_total", deployment="open-a") == 0  # free
    assert value(found, "modelmix_upstream_attempts_total", deployment="open-a",
                 outcome="success") == 4
    assert value(found, "modelmix_in_flight_requests") == 0
    assert value(found, "modelmix_routing_latency_seconds_count") == 6
    assert value(found, "modelmix_circuit_open", deployment="flaky") == 0


def test_latency_and_ttft_histograms_have_llm_buckets() -> None:
    with gateway() as url:
        chat(url, "open-a")
        chat(url, "open-a", stream=True)
        found = samples(url)
    lat = "modelmix_request_latency_seconds_bucket"
    bounds = sorted(float(dict(labels)["le"]) for name, labels in found
                    if name == lat and dict(labels)["deployment"] == "open-a")
    assert bounds == [*LATENCY_BUCKETS_S, float("inf")]
    assert value(found, lat, deployment="open-a", le="+Inf") == 2
    assert value(found, lat, deployment="open-a", le="163.84") == 2  # fakes are fast
    ttft = "modelmix_time_to_first_token_seconds_bucket"
    ttft_bounds = sorted(float(dict(labels)["le"]) for name, labels in found
                         if name == ttft and dict(labels)["deployment"] == "open-a")
    assert ttft_bounds == [*TTFT_BUCKETS_S, float("inf")]
    assert value(found, "modelmix_time_to_first_token_seconds_count", deployment="open-a") == 1
    assert value(found, "modelmix_request_latency_seconds_sum", deployment="open-a") > 0


def test_error_counters_after_failing_upstream() -> None:
    with gateway() as url:
        resp = chat(url, "flaky")
        assert resp.status_code == 502
        rescued = chat(url, "rescued")  # flaky (circuit now open) then open-a
        assert rescued.headers["x-modelmix-deployment"] == "open-a"
        assert chat(url, "no-such-model").status_code == 404
        found = samples(url)
    assert value(found, "modelmix_errors_total", deployment="flaky",
                 error_type="UpstreamUnavailable") == 1
    assert value(found, "modelmix_requests_total", deployment="flaky", requested_model="flaky",
                 status_code="502") == 1
    # One call plus one retry, then the circuit (threshold 2) is open.
    assert value(found, "modelmix_upstream_attempts_total", deployment="flaky",
                 outcome="UpstreamUnavailable") == 2
    assert value(found, "modelmix_circuit_open", deployment="flaky") == 1
    assert value(found, "modelmix_requests_total", deployment="open-a",
                 requested_model="rescued", status_code="200") == 1
    # Unknown names share one label value, so clients cannot grow the series without bound.
    assert value(found, "modelmix_requests_total", deployment="none", requested_model="other",
                 status_code="404") == 1
    assert value(found, "modelmix_errors_total", deployment="none",
                 error_type="NoDeployment") == 1


def test_in_flight_gauge_counts_running_requests() -> None:
    with gateway(make_service(delay_s=0.6)) as url:
        worker = threading.Thread(target=chat, args=(url, "open-a"))
        worker.start()
        seen = 0.0
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline and not seen:
            seen = value(samples(url), "modelmix_in_flight_requests") or 0.0
            time.sleep(0.02)
        worker.join()
        assert seen == 1
        assert value(samples(url), "modelmix_in_flight_requests") == 0


def test_each_app_has_its_own_registry() -> None:
    with gateway() as first, gateway() as second:
        chat(first, "open-a")
        assert value(samples(second), "modelmix_requests_total", deployment="open-a",
                     requested_model="open-a", status_code="200") is None


# --- logs ------------------------------------------------------------------------------------


@pytest.fixture()
def request_log() -> Iterator[io.StringIO]:
    """Lines written by the per-request logger, as JSON."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(REQUEST_LOGGER)
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def wait_for_lines(out: io.StringIO, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 3
    while len(lines(out)) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return lines(out)


def test_every_request_logs_one_json_line(request_log: io.StringIO) -> None:
    with gateway() as url:
        ok = chat(url, "prop-b", **{"x-request-id": "req-ok-1"})
        chat(url, "open-a", stream=True)
        found = wait_for_lines(request_log, 2)
    assert len(found) == 2
    first = found[0]
    assert ok.headers["x-request-id"] == "req-ok-1"
    assert first["request_id"] == "req-ok-1"
    assert first["level"] == "INFO" and first["msg"] == "request completed"
    assert first["logger"] == REQUEST_LOGGER and first["ts"].endswith("Z")
    assert first["deployment"] == "prop-b" and first["status"] == 200
    assert first["prompt_tokens"] == 10 and first["completion_tokens"] == 3
    assert first["cost_usd"] == pytest.approx(44e-6)
    assert "error" not in first
    assert found[1]["stream"] is True and found[1]["ttft_ms"] >= 0
    assert PROMPT not in request_log.getvalue()


def test_failed_request_logs_warning_with_reason(request_log: io.StringIO) -> None:
    with gateway() as url:
        chat(url, "flaky", **{"x-request-id": "req-bad-1"})
        httpx.post(url + CHAT, content=b"{nope", headers={"x-request-id": "req-bad-2"})
        found = wait_for_lines(request_log, 2)
    upstream, malformed = found
    assert upstream["level"] == "WARNING" and upstream["msg"] == "request failed"
    assert upstream["request_id"] == "req-bad-1" and upstream["status"] == 502
    assert upstream["deployment"] == "flaky" and upstream["attempts"] == 2
    assert upstream["error_type"] == "UpstreamUnavailable"
    assert "overloaded" in upstream["error"]
    assert malformed["level"] == "WARNING" and malformed["status"] == 400
    assert malformed["error_type"] == "InvalidRequest"
    assert "not valid JSON" in malformed["error"]


def test_prompts_are_logged_only_when_enabled(request_log: io.StringIO) -> None:
    with gateway(make_service(log_prompts=True)) as url:
        chat(url, "open-a", **{"x-request-id": "req-p"})
        found = wait_for_lines(request_log, 2)
    prompt = next(line for line in found if line["msg"] == "request prompt")
    assert prompt["request_id"] == "req-p"
    assert prompt["messages"] == [{"role": "user", "content": PROMPT}]


def test_json_formatter_fields_and_exceptions() -> None:
    logger = logging.getLogger("modelmix.test.json")
    record = logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "failed %s", ("x",),
                               None, extra={"request_id": "r1", "obj": object(),
                                            "big": 2**70})
    try:
        raise ValueError("kaput")
    except ValueError:
        record.exc_info = sys.exc_info()
    line = JsonFormatter().format(record)
    assert "\n" not in line
    data = json.loads(line)
    assert data["msg"] == "failed x" and data["level"] == "ERROR"
    assert data["request_id"] == "r1" and data["obj"].startswith("<object")
    assert data["big"] == str(2**70)
    assert "ValueError: kaput" in data["exc"]
    text = TextFormatter().format(logger.makeRecord(
        logger.name, logging.INFO, __file__, 1, "hi", (), None,
        extra={"status": 200, "error": "two words"}))
    assert text.endswith("hi status=200 error='two words'")


def test_configure_logging_writes_json_lines_off_thread() -> None:
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    out = io.StringIO()
    listener = configure_logging("json", "debug", stream=out)
    try:
        logging.getLogger("modelmix.test").debug("hello", extra={"deployment": "d1"})
    finally:
        listener.stop()
        root.handlers[:], level = saved
        root.setLevel(level)
    (data,) = lines(out)
    assert data["msg"] == "hello" and data["deployment"] == "d1" and data["level"] == "DEBUG"


def test_serve_has_log_format_option() -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0
    assert "--log-format" in result.output


# --- overhead --------------------------------------------------------------------------------


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


def finished_spans(exporter: Any, count: int) -> list[Any]:
    deadline = time.monotonic() + 3
    while len(exporter.get_finished_spans()) < count and time.monotonic() < deadline:
        time.sleep(0.01)
    return list(exporter.get_finished_spans())


TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def test_request_span_has_genai_attributes(spans: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    tracing, exporter = spans
    with gateway(tracing=tracing) as url:
        chat(url, "auto", traceparent=f"00-{TRACE_ID}-00f067aa0ba902b7-01")
        done = finished_spans(exporter, 2)
    server = next(s for s in done if s.kind is SpanKind.SERVER)
    attempt = next(s for s in done if s.kind is SpanKind.CLIENT)
    assert server.name == "chat auto"
    assert format(server.context.trace_id, "032x") == TRACE_ID  # continues the caller's trace
    attrs = dict(server.attributes)
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.request.model"] == "auto"
    assert attrs["gen_ai.response.model"] == "m-open"
    assert attrs["gen_ai.usage.input_tokens"] == 10
    assert attrs["gen_ai.usage.output_tokens"] == 3
    assert attrs["modelmix.deployment"] == "open-a"
    assert attrs["modelmix.route_reason"]
    assert attrs["http.response.status_code"] == 200
    assert server.status.status_code is not StatusCode.ERROR
    assert attempt.parent.span_id == server.context.span_id
    assert attempt.name == "chat m-open"
    assert attempt.attributes["gen_ai.response.model"] == "m-open"
    assert attempt.attributes["gen_ai.response.finish_reasons"] == ("stop",)


def test_failed_request_span_has_error_and_one_child_per_attempt(
        spans: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind, StatusCode

    tracing, exporter = spans
    with gateway(tracing=tracing) as url:
        chat(url, "flaky")
        done = finished_spans(exporter, 3)
    server = next(s for s in done if s.kind is SpanKind.SERVER)
    attempts = [s for s in done if s.kind is SpanKind.CLIENT]
    assert server.status.status_code is StatusCode.ERROR
    assert "overloaded" in server.status.description
    assert server.attributes["error.type"] == "UpstreamUnavailable"
    assert len(attempts) == 2
    assert all(a.attributes["error.type"] == "UpstreamUnavailable" for a in attempts)
    assert all(a.parent.span_id == server.context.span_id for a in attempts)


def test_stream_attempt_span_covers_the_whole_stream(spans: tuple[Any, Any]) -> None:
    from opentelemetry.trace import SpanKind

    tracing, exporter = spans
    with gateway(tracing=tracing) as url:
        chat(url, "prop-b", stream=True)
        done = finished_spans(exporter, 2)
    attempt = next(s for s in done if s.kind is SpanKind.CLIENT)
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 3
    server = next(s for s in done if s.kind is SpanKind.SERVER)
    assert server.attributes["modelmix.stream"] is True
    assert server.attributes["gen_ai.usage.input_tokens"] == 10


def test_tracing_from_environment() -> None:
    pytest.importorskip("opentelemetry.sdk")
    from modelmix.observability._tracing import Tracing, tracing_requested

    assert not tracing_requested({})
    assert tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing_requested({"OTEL_TRACES_EXPORTER": "console"})
    assert not tracing_requested({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x",
                                  "OTEL_TRACES_EXPORTER": "none"})
    assert not tracing_requested({"OTEL_TRACES_EXPORTER": "console", "OTEL_SDK_DISABLED": "true"})
    assert Tracing.from_env({}) is None
    tracing = Tracing.from_env({"OTEL_TRACES_EXPORTER": "console", "OTEL_SERVICE_NAME": "gw"})
    assert tracing is not None
    assert tracing.provider.resource.attributes["service.name"] == "gw"
    tracing.close()


def test_no_opentelemetry_import_when_not_configured() -> None:
    code = (
        "import sys\n"
        "from modelmix.server import create_app\n"
        "from modelmix.engine._service import ChatService\n"
        "from modelmix.catalog import config_from_dict\n"
        "cfg = config_from_dict({'deployments': [{'name': 'a', 'provider': 'vllm',"
        " 'base_url': 'http://127.0.0.1:9/v1', 'model': 'm'}]})\n"
        "create_app(service=ChatService(cfg))\n"
        "print(sorted(m for m in sys.modules if m.startswith('opentelemetry')))\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=60, check=True)
    assert out.stdout.strip() == "[]", out.stdout


def test_metrics_hooks_do_not_need_a_server() -> None:
    """The observers also work on a bare service (library use)."""
    service = make_service()
    metrics = GatewayMetrics.for_service(service)
    service.usage = MetricsSink(service.usage, metrics)
    service.observers.append(metrics)
    from modelmix.protocol import ChatRequest

    asyncio.run(service.complete(ChatRequest.model_validate(
        {"model": "open-a", "messages": [{"role": "user", "content": "hi"}]})))
    text = metrics.exposition().decode()
    assert 'modelmix_requests_total{deployment="open-a",requested_model="open-a",' \
           'status_code="200"} 1.0' in text
