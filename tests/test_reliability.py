"""Reliability end to end: the real gateway over real, scripted faulty upstreams.

Three :class:`FaultyUpstream` servers (a, b, c) run on loopback for the module; each test
builds a fresh gateway (fresh circuit breakers) over them, sends real HTTP requests and
checks what the client got, what each upstream received, and the usage records.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from _pixels import TINY_PNG
from _servers import serve_app
from faulty_upstream import Fault, FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.store import UsageRecord
from modelmix.testing import ListSink

#: Per-attempt upstream timeout (s) unless a test overrides it.
ATTEMPT_TIMEOUT_S = 0.4
COOLDOWN_S = 0.5
THRESHOLD = 3
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]
IMAGE: list[Any] = [{"role": "user", "content": [
    {"type": "text", "text": "what is this?"},
    {"type": "image_url", "image_url": {"url": TINY_PNG}}]}]
ERROR_KEYS = {"message", "type", "param", "code"}




@dataclass
class Gateway:
    url: str
    sink: ListSink
    service: ChatService
    http: httpx.Client

    def post(self, model: str, messages: list[Any] = HI, **body: Any
             ) -> httpx.Response:
        return self.http.post("/v1/chat/completions",
                              json={"model": model, "messages": messages, **body})

    def stream_lines(self, model: str, **body: Any) -> tuple[httpx.Response, list[str]]:
        payload = {"model": model, "messages": HI, "stream": True, **body}
        with self.http.stream("POST", "/v1/chat/completions", json=payload) as resp:
            lines = [line for line in resp.iter_lines() if line]
        return resp, lines


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultyUpstream]]:
    ups = {name: FaultyUpstream(name).start() for name in ("a", "b", "c")}
    yield ups
    for up in ups.values():
        up.stop()


@pytest.fixture(autouse=True)
def _fresh(upstreams: dict[str, FaultyUpstream]) -> None:
    for up in upstreams.values():
        up.clear()


def _config(ups: dict[str, FaultyUpstream], *, timeout_s: float, num_retries: int,
            retry_max_s: float) -> dict[str, Any]:
    def dep(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "provider": "openai-compatible", "base_url": ups[name].url,
                "model": f"model-{name}", "timeout_s": timeout_s, **extra}

    return {
        "deployments": [dep("a", input_modalities=["text", "image"]), dep("b"),
                        dep("c", input_modalities=["text", "image"])],
        "groups": {"chain": ["a", "b", "c"], "pair": ["a", "b"], "solo": ["a"],
                   "vision": ["a", "b", "c"]},
        "reliability": {"num_retries": num_retries, "backoff_base_s": 0.01,
                        "backoff_max_s": retry_max_s, "timeout_s": 5.0,
                        "circuit_breaker": {"failure_threshold": THRESHOLD,
                                            "cooldown_s": COOLDOWN_S}},
    }


GatewayFactory = Callable[..., Any]


@pytest.fixture()
def gateway(upstreams: dict[str, FaultyUpstream]) -> GatewayFactory:
    """``gateway(**settings)`` is a context manager yielding a running :class:`Gateway`."""

    @contextmanager
    def make(*, timeout_s: float = ATTEMPT_TIMEOUT_S, num_retries: int = 1,
             retry_max_s: float = 0.5, client_timeout: float = 10.0) -> Iterator[Gateway]:
        cfg = config_from_dict(_config(upstreams, timeout_s=timeout_s,
                                       num_retries=num_retries, retry_max_s=retry_max_s))
        sink = ListSink()
        service = ChatService(cfg, usage=sink)
        with serve_app(create_app(service=service)) as url, \
                httpx.Client(base_url=url, timeout=client_timeout) as http:
            yield Gateway(url, sink, service, http)
        assert sink.closed

    return make


def _error(resp: httpx.Response) -> dict[str, Any]:
    """The OpenAI error object of ``resp``, checking its shape."""
    err: dict[str, Any] = resp.json()["error"]
    assert set(err) == ERROR_KEYS
    assert resp.status_code != 500
    return err


def _only(sink: ListSink) -> UsageRecord:
    records = sink.wait_for(1)
    assert len(records) == 1, records
    return records[0]


# -- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize("fault", [Fault.error(500), Fault.error(503), Fault.reset(),
                                   Fault.cut(), Fault.garbage()],
                         ids=["500", "503", "reset", "cut-body", "garbage-body"])
def test_transient_failure_is_retried_on_same_deployment(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream], fault: Fault) -> None:
    upstreams["a"].script(fault)
    with gateway() as gw:
        resp = gw.post("chain")
        assert resp.status_code == 200, resp.text
        assert resp.headers["x-modelmix-deployment"] == "a"
        assert resp.json()["choices"][0]["message"]["content"] == "hello from a"
    assert upstreams["a"].count == 2 and upstreams["b"].count == 0
    rec = _only(gw.sink)
    assert (rec.deployment, rec.attempts, rec.status_code, rec.error) == ("a", 2, 200, None)
    assert (rec.prompt_tokens, rec.completion_tokens) == (7, 3)


def test_retry_after_is_honoured(gateway: GatewayFactory,
                                 upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].script(Fault.error(429, retry_after="1"))
    with gateway(retry_max_s=0.5) as gw:  # Retry-After wins over the 0.5 s jitter cap
        resp = gw.post("solo")
    assert resp.status_code == 200, resp.text
    first, second = upstreams["a"].received
    assert 0.95 <= second.at - first.at < 1.6
    rec = _only(gw.sink)
    assert (rec.deployment, rec.attempts, rec.status_code) == ("a", 2, 200)


def test_backoff_without_retry_after_is_short(gateway: GatewayFactory,
                                              upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].script(Fault.error(500), Fault.error(500))
    with gateway(num_retries=2, retry_max_s=0.05) as gw:
        resp = gw.post("solo")
    assert resp.status_code == 200
    times = [r.at for r in upstreams["a"].received]
    assert len(times) == 3 and times[-1] - times[0] < 0.5


# -- timeouts and fallback ----------------------------------------------------------------


def test_timeout_falls_back_to_next_deployment(gateway: GatewayFactory,
                                               upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].default = Fault.hang(3)
    with gateway(num_retries=1) as gw:
        started = time.monotonic()
        resp = gw.post("chain")
        elapsed = time.monotonic() - started
    assert resp.status_code == 200, resp.text
    assert resp.headers["x-modelmix-deployment"] == "b"
    assert elapsed < 2 * ATTEMPT_TIMEOUT_S + 0.8
    a = upstreams["a"]
    assert a.count == 2
    assert a.wait_until(lambda up: up.cancelled == 2), "timed-out calls must be abandoned"
    rec = _only(gw.sink)
    assert (rec.deployment, rec.attempts, rec.status_code) == ("b", 3, 200)


def test_fallback_follows_configured_order(gateway: GatewayFactory,
                                           upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].default = Fault.error(500)
    upstreams["b"].default = Fault.reset()
    with gateway(num_retries=0) as gw:
        resp = gw.post("chain")
    assert resp.status_code == 200
    assert resp.headers["x-modelmix-deployment"] == "c"
    assert resp.headers["x-modelmix-route-reason"] == "configured order"
    order = sorted((r.at, name) for name, up in upstreams.items() for r in up.received)
    assert [name for _, name in order] == ["a", "b", "c"]
    rec = _only(gw.sink)
    assert (rec.deployment, rec.attempts) == ("c", 3)


def test_openai_sdk_sees_fallback(gateway: GatewayFactory,
                                  upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].default = Fault.error(502)
    with gateway(num_retries=0) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(model="pair", messages=HI)
    assert raw.headers["x-modelmix-deployment"] == "b"
    completion = raw.parse()
    assert completion.choices[0].message.content == "hello from b"
    assert completion.usage is not None and completion.usage.total_tokens == 10


def test_fallback_skips_deployment_the_policy_removed(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].default = Fault.error(500)
    with gateway(num_retries=0) as gw:
        resp = gw.post("vision", IMAGE)
        assert resp.status_code == 200
        assert resp.headers["x-modelmix-deployment"] == "c"
        upstreams["c"].default = Fault.error(500)
        failed = gw.post("vision", IMAGE)
    assert failed.status_code == 502 and _error(failed)["code"] == "upstream_error"
    assert upstreams["b"].count == 0, "b has no image input: never a fallback for images"
    assert (upstreams["a"].count, upstreams["c"].count) == (2, 2)
    records = gw.sink.wait_for(2)
    assert [(r.deployment, r.attempts) for r in records] == [("c", 2), ("c", 2)]


# -- clean errors when every candidate fails ----------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "code", "error_type"),
    [
        (Fault.error(500), 502, "upstream_error", "UpstreamUnavailable"),
        (Fault.reset(), 502, "upstream_error", "UpstreamUnavailable"),
        (Fault.error(429, retry_after="0"), 429, "upstream_rate_limited", "RateLimited"),
        (Fault.hang(2), 504, "upstream_timeout", "ProviderTimeout"),
        (Fault.error(401), 502, "upstream_auth_error", "ProviderAuthError"),
    ],
    ids=["500", "reset", "429", "timeout", "auth"],
)
def test_all_candidates_failing_gives_clean_error(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream], fault: Fault,
        status: int, code: str, error_type: str) -> None:
    upstreams["a"].default = upstreams["b"].default = fault
    with gateway(num_retries=1, timeout_s=0.25) as gw:
        resp = gw.post("pair")
    assert resp.status_code == status, resp.text
    assert _error(resp)["code"] == code
    if status == 429:
        assert resp.headers["retry-after"] == "1"
    retried = 2 if fault.kind != "error" or fault.status != 401 else 1
    assert upstreams["a"].count == upstreams["b"].count == retried
    rec = _only(gw.sink)
    assert (rec.deployment, rec.status_code, rec.error_type) == ("b", status, error_type)
    assert rec.attempts == 2 * retried and rec.error


def test_bad_request_is_not_retried_nor_fallen_back(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].script(Fault.error(400))
    with gateway() as gw:
        resp = gw.post("pair")
    assert resp.status_code == 400 and _error(resp)["code"] == "upstream_bad_request"
    assert (upstreams["a"].count, upstreams["b"].count) == (1, 0)
    assert _only(gw.sink).status_code == 400


# -- circuit breaker -----------------------------------------------------------------------


def test_breaker_opens_skips_and_half_open_probe_closes(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.default = Fault.error(500)
    with gateway(num_retries=1) as gw:
        for _ in range(2):  # 2 + 1 failures on a: the third opens its circuit
            resp = gw.post("pair")
            assert resp.headers["x-modelmix-deployment"] == "b"
        assert a.count == THRESHOLD
        for _ in range(3):  # open: a is skipped without being called
            resp = gw.post("pair")
            assert resp.headers["x-modelmix-deployment"] == "b"
            why = gw.service.executor.health(gw.service.config.deployment("a"))
            assert why is not None and why.why.startswith("circuit open")
        assert a.count == THRESHOLD
        a.default = Fault.ok()
        time.sleep(COOLDOWN_S + 0.05)
        probe = gw.post("pair")  # half-open: one probe, which succeeds and closes
        assert probe.headers["x-modelmix-deployment"] == "a"
        assert gw.post("pair").headers["x-modelmix-deployment"] == "a"
    assert a.count == THRESHOLD + 2
    records = gw.sink.wait_for(7)
    assert [r.deployment for r in records] == ["b"] * 5 + ["a"] * 2
    assert [r.attempts for r in records] == [3, 2, 1, 1, 1, 1, 1]


def test_failed_probe_reopens_circuit(gateway: GatewayFactory,
                                      upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.default = Fault.error(500)
    with gateway(num_retries=THRESHOLD - 1) as gw:
        assert gw.post("pair").headers["x-modelmix-deployment"] == "b"
        time.sleep(COOLDOWN_S + 0.05)
        assert gw.post("pair").headers["x-modelmix-deployment"] == "b"  # probe failed
        assert a.count == THRESHOLD + 1  # one probe, no retries on an open circuit
        assert gw.post("pair").headers["x-modelmix-deployment"] == "b"
        assert a.count == THRESHOLD + 1


def test_breaker_on_single_deployment_fails_fast(gateway: GatewayFactory,
                                                 upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.default = Fault.error(500)
    with gateway(num_retries=THRESHOLD - 1) as gw:
        first = gw.post("solo")
        assert first.status_code == 502
        assert a.count == THRESHOLD
        started = time.monotonic()
        blocked = gw.post("solo")
        assert time.monotonic() - started < 0.2
        assert blocked.status_code == 503
        assert _error(blocked)["code"] == "no_deployment_available"
        assert blocked.headers["retry-after"] == "1"  # the cooldown left, rounded up to 1 s
        assert "circuit open" in blocked.json()["error"]["message"]
        assert a.count == THRESHOLD
        a.default = Fault.ok()
        time.sleep(COOLDOWN_S + 0.05)
        assert gw.post("solo").status_code == 200
    records = gw.sink.wait_for(3)
    assert [r.status_code for r in records] == [502, 503, 200]
    assert [r.attempts for r in records] == [THRESHOLD, 0, 1]
    assert records[1].error_type == "NoDeploymentAvailable"


# -- streaming -----------------------------------------------------------------------------


def _events(lines: list[str]) -> list[str]:
    assert all(line.startswith("data: ") for line in lines), lines
    return [line[len("data: "):] for line in lines]


def test_stream_falls_back_before_first_chunk(gateway: GatewayFactory,
                                              upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].default = Fault.error(500)
    with gateway(num_retries=0) as gw:
        resp, lines = gw.stream_lines("pair", stream_options={"include_usage": True})
    assert resp.headers["x-modelmix-deployment"] == "b"
    events = _events(lines)
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["usage"]["prompt_tokens"] == 7
    rec = _only(gw.sink)
    assert (rec.deployment, rec.attempts, rec.stream, rec.status_code) == ("b", 2, True, 200)
    assert (rec.prompt_tokens, rec.completion_tokens) == (7, 3)


@pytest.mark.parametrize("fault", [Fault.cut(after=2), Fault.stall(after=2, seconds=3),
                                   Fault.error_event(after=2)],
                         ids=["socket-closed", "upstream-stalls", "upstream-error-event"])
def test_failure_after_first_chunk_ends_stream_with_error_event(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream], fault: Fault) -> None:
    upstreams["a"].script(fault)
    with gateway(client_timeout=3.0) as gw:
        started = time.monotonic()
        resp, lines = gw.stream_lines("pair")
        elapsed = time.monotonic() - started
    assert resp.status_code == 200 and resp.headers["x-modelmix-deployment"] == "a"
    assert elapsed < 2.0, "the gateway must not hang on a dead upstream"
    events = _events(lines)
    assert "[DONE]" not in events
    assert json.loads(events[1])["choices"][0]["delta"]["content"] == "hello"
    assert "error" in json.loads(events[-1])
    assert (upstreams["a"].count, upstreams["b"].count) == (1, 0), "no fallback mid-stream"
    rec = _only(gw.sink)
    assert (rec.deployment, rec.stream, rec.attempts) == ("a", True, 1)
    assert rec.status_code in (502, 504) and rec.error


def test_openai_sdk_raises_on_mid_stream_error(gateway: GatewayFactory,
                                               upstreams: dict[str, FaultyUpstream]) -> None:
    upstreams["a"].script(Fault.cut(after=2))
    with gateway() as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="x", max_retries=0,
                               timeout=3.0)
        stream = client.chat.completions.create(model="pair", messages=HI, stream=True)
        with pytest.raises(openai.APIError, match="a: connection failed"):
            for _ in stream:
                pass


# -- the client goes away ------------------------------------------------------------------


def test_client_disconnect_cancels_upstream_and_records_499(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.script(Fault.hang(5))
    with gateway(timeout_s=5.0, client_timeout=0.5) as gw:
        with pytest.raises(httpx.ReadTimeout):
            gw.post("pair")
        assert a.wait_until(lambda up: up.cancelled == 1, timeout=3.0), \
            "the upstream call must be cancelled when the client leaves"
        rec = _only(gw.sink)
    assert (rec.status_code, rec.error_type) == (499, "ClientDisconnected")
    assert (rec.requested_model, rec.deployment, rec.attempts) == ("pair", "a", 1)
    assert upstreams["b"].count == 0, "a client that left is not served by a fallback"


def test_client_disconnect_mid_stream_records_499(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.script(Fault.stall(after=2, seconds=5))
    with gateway(timeout_s=5.0) as gw:
        payload = {"model": "pair", "messages": HI, "stream": True}
        with gw.http.stream("POST", "/v1/chat/completions", json=payload) as resp:
            first = next(resp.iter_lines())
            assert first.startswith("data: ")
        assert a.wait_until(lambda up: up.cancelled == 1, timeout=3.0)
        rec = _only(gw.sink)
    assert (rec.status_code, rec.error_type, rec.stream) == (499, "ClientDisconnected", True)
    assert rec.deployment == "a"


def test_client_disconnect_before_first_chunk_cancels_upstream(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.script(Fault.hang(5))
    with gateway(timeout_s=5.0, client_timeout=0.5) as gw:
        with pytest.raises(httpx.ReadTimeout):
            gw.stream_lines("pair")
        assert a.wait_until(lambda up: up.cancelled == 1, timeout=3.0), \
            "the upstream call must be cancelled when the client leaves"
        rec = _only(gw.sink)
    assert (rec.status_code, rec.error_type, rec.stream) == (499, "ClientDisconnected", True)
    assert (rec.deployment, rec.attempts) == ("a", 1)
    assert upstreams["b"].count == 0


def test_half_open_lets_one_probe_through_under_concurrency(
        gateway: GatewayFactory, upstreams: dict[str, FaultyUpstream]) -> None:
    a = upstreams["a"]
    a.default = Fault.error(500)
    with gateway(num_retries=THRESHOLD - 1, timeout_s=2.0) as gw:
        assert gw.post("pair").headers["x-modelmix-deployment"] == "b"  # opens a's circuit
        a.default = Fault.hang(0.4)  # the probe is slow but succeeds
        time.sleep(COOLDOWN_S + 0.05)
        with ThreadPoolExecutor(max_workers=4) as pool:
            first = pool.submit(gw.post, "pair")
            assert a.wait_until(lambda up: up.count == THRESHOLD + 1, timeout=2.0)
            others = [pool.submit(gw.post, "pair") for _ in range(3)]
            served = [f.result().headers["x-modelmix-deployment"] for f in others]
        assert first.result().headers["x-modelmix-deployment"] == "a"
    assert served == ["b"] * 3, "only the probe may reach a half-open deployment"
    assert a.count == THRESHOLD + 1
    assert len(gw.sink.wait_for(5)) == 5


def test_upstream_retry_after_reaches_the_client(gateway: GatewayFactory,
                                                 upstreams: dict[str, FaultyUpstream]) -> None:
    """An upstream 503 with Retry-After (maintenance): the client's 502 carries it, so it
    does not hammer the gateway (found by attack: it was dropped)."""
    upstreams["a"].default = Fault.error(503, retry_after="7")
    with gateway(num_retries=0) as gw:
        resp = gw.post("solo")
    assert resp.status_code == 502 and resp.headers["retry-after"] == "7"
