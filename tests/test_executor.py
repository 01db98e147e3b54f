"""Executor unit tests: FakeProvider upstreams, an injected sleep recorder, no network."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from modelmix.catalog import Config, Deployment, config_from_dict
from modelmix.engine import Attempt, BreakerState, Executor
from modelmix.errors import (
    ContextTooLong,
    NoDeployment,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest
from modelmix.routing import RouteDecision
from modelmix.testing import FakeProvider

REQUEST = ChatRequest(model="m", messages=[{"role": "user", "content": "hi"}])


class SleepRecorder:
    """Stands in for ``asyncio.sleep``: records the backoff (s) and returns at once."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


def _config(*, retries: int = 2, base: float = 0.1, cap: float = 1.0, timeout: float = 30.0,
            threshold: int = 5, a_timeout: float | None = None) -> Config:
    def dep(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "provider": "openai-compatible", "model": f"m-{name}",
                "base_url": "http://127.0.0.1:9/v1", **extra}

    a_extra = {"timeout_s": a_timeout} if a_timeout else {}
    return config_from_dict({
        "deployments": [dep("a", **a_extra), dep("b"), dep("c")],
        "reliability": {"num_retries": retries, "backoff_base_s": base, "backoff_max_s": cap,
                        "timeout_s": timeout,
                        "circuit_breaker": {"failure_threshold": threshold, "cooldown_s": 60}},
    })


def _setup(cfg: Config, fakes: dict[str, FakeProvider] | None = None, *, rng: float = 1.0
           ) -> tuple[Executor, dict[str, FakeProvider], SleepRecorder]:
    fakes = fakes or {}
    for dep in cfg.deployments:
        fakes.setdefault(dep.name, FakeProvider(dep, reply=f"from {dep.name}"))
    sleep = SleepRecorder()
    executor = Executor(dict(fakes), cfg.reliability, sleep=sleep, rng=lambda: rng)
    return executor, fakes, sleep


def _decision(cfg: Config, *names: str) -> RouteDecision:
    deps = [cfg.deployment(n) for n in names]
    return RouteDecision(deployment=deps[0], reason="test", fallbacks=tuple(deps[1:]))


def _failing(dep: Deployment, error: ProviderError, times: int = 100) -> FakeProvider:
    return FakeProvider(dep, reply=f"from {dep.name}", fail_times=times, error=error)


# -- retries and backoff --------------------------------------------------------------------


async def test_retries_transient_errors_with_exponential_backoff() -> None:
    cfg = _config(retries=3, base=0.1, cap=1.0)
    a = _failing(cfg.deployment("a"), UpstreamUnavailable("boom"), times=3)
    executor, fakes, sleep = _setup(cfg, {"a": a})
    response, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert (response.text, dep.name) == ("from a", "a")
    assert sleep.waits == pytest.approx([0.1, 0.2, 0.4])  # rng=1: the full jitter cap
    assert [x.error_type for x in attempts] == ["UpstreamUnavailable"] * 3 + [None]
    assert fakes["b"].calls == []


async def test_full_jitter_is_uniform_below_a_capped_ceiling() -> None:
    cfg = _config(retries=4, base=0.5, cap=1.0)
    a = _failing(cfg.deployment("a"), ProviderTimeout("slow"), times=4)
    executor, _, sleep = _setup(cfg, {"a": a}, rng=0.5)
    await executor.complete(_decision(cfg, "a"), REQUEST)
    assert sleep.waits == pytest.approx([0.25, 0.5, 0.5, 0.5])  # half of min(1, 0.5 * 2**n)


async def test_retry_after_replaces_the_jitter() -> None:
    cfg = _config(retries=2, cap=1.0)
    a = _failing(cfg.deployment("a"), RateLimited("slow down", retry_after=3.0), times=1)
    executor, _, sleep = _setup(cfg, {"a": a}, rng=0.0)
    _, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "a" and len(attempts) == 2
    assert sleep.waits == [3.0]


async def test_retry_after_is_capped_at_four_times_the_backoff_cap() -> None:
    cfg = _config(retries=1, cap=0.5)
    a = _failing(cfg.deployment("a"), RateLimited("slow down", retry_after=120.0), times=1)
    executor, _, sleep = _setup(cfg, {"a": a})
    await executor.complete(_decision(cfg, "a"), REQUEST)
    assert sleep.waits == [2.0]


async def test_backoff_past_the_deadline_moves_to_the_next_candidate() -> None:
    cfg = _config(retries=3, timeout=0.5)
    a = _failing(cfg.deployment("a"), RateLimited("later", retry_after=1.0))
    executor, _, sleep = _setup(cfg, {"a": a})
    _, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "b" and sleep.waits == []
    assert [x.deployment for x in attempts] == ["a", "b"]


async def test_per_request_timeout_overrides_the_setting() -> None:
    cfg = _config(retries=0, timeout=30.0)
    a = FakeProvider(cfg.deployment("a"), delay_s=1.0)
    executor, _, _ = _setup(cfg, {"a": a})
    with pytest.raises(ProviderTimeout, match=r"within 0\.1s"):
        await executor.complete(_decision(cfg, "a"), REQUEST, timeout_s=0.1)


# -- errors that do not retry ------------------------------------------------------------


@pytest.mark.parametrize("error", [ContextTooLong("too long"), ProviderAuthError("bad key"),
                                   ProviderError("odd")])
async def test_non_retryable_errors_fall_back_without_retry(error: ProviderError) -> None:
    cfg = _config(retries=3)
    executor, fakes, sleep = _setup(cfg, {"a": _failing(cfg.deployment("a"), error)})
    _, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "b" and len(fakes["a"].calls) == 1 and sleep.waits == []
    assert [x.error_type for x in attempts] == [type(error).__name__, None]


async def test_bad_request_stops_without_fallback() -> None:
    cfg = _config(retries=3)
    error = ProviderBadRequest("nope", upstream_status=400)
    executor, fakes, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"), error)})
    with pytest.raises(ProviderBadRequest) as info:
        await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert fakes["b"].calls == []
    assert [x.deployment for x in info.value.attempts] == ["a"]
    assert info.value.deployment == "a"


async def test_all_failing_raises_the_last_error_with_every_attempt() -> None:
    cfg = _config(retries=1)
    fakes = {"a": _failing(cfg.deployment("a"), UpstreamUnavailable("a down")),
             "b": _failing(cfg.deployment("b"), ProviderTimeout("b slow"))}
    executor, _, sleep = _setup(cfg, fakes)
    with pytest.raises(ProviderTimeout) as info:
        await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    attempts: list[Attempt] = info.value.attempts
    assert [(x.deployment, x.error_type) for x in attempts] == [
        ("a", "UpstreamUnavailable"), ("a", "UpstreamUnavailable"),
        ("b", "ProviderTimeout"), ("b", "ProviderTimeout")]
    assert len(sleep.waits) == 2
    assert fakes["c"].calls == []


async def test_only_decision_candidates_are_tried() -> None:
    cfg = _config(retries=0)
    executor, fakes, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"),
                                                    UpstreamUnavailable("x"))})
    with pytest.raises(UpstreamUnavailable):
        await executor.complete(_decision(cfg, "a"), REQUEST)
    assert fakes["b"].calls == [] and fakes["c"].calls == []


async def test_slow_deployment_times_out_then_falls_back() -> None:
    cfg = _config(retries=0, a_timeout=0.05)
    a = FakeProvider(cfg.deployment("a"), delay_s=2.0)
    executor, _, _ = _setup(cfg, {"a": a})
    _, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "b"
    assert attempts[0].error_type == "ProviderTimeout" and attempts[0].latency_ms < 1000


# -- circuit breaker -----------------------------------------------------------------------


async def test_breaker_opens_mid_request_and_stops_retries() -> None:
    cfg = _config(retries=5, threshold=2)
    executor, fakes, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"),
                                                    UpstreamUnavailable("x"))})
    _, dep, _ = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "b" and len(fakes["a"].calls) == 2
    assert executor.breaker("a").state is BreakerState.OPEN
    assert executor.health(cfg.deployment("a")) is not None
    assert executor.health(cfg.deployment("b")) is None
    _, dep, attempts = await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert dep.name == "b" and len(fakes["a"].calls) == 2 and len(attempts) == 1


async def test_every_circuit_open_is_no_deployment_503() -> None:
    cfg = _config(retries=0, threshold=1)
    executor, fakes, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"),
                                                    UpstreamUnavailable("x"))})
    with pytest.raises(UpstreamUnavailable):
        await executor.complete(_decision(cfg, "a"), REQUEST)
    with pytest.raises(NoDeployment) as info:
        await executor.complete(_decision(cfg, "a"), REQUEST)
    assert info.value.status_code == 503 and info.value.code == "no_deployment_available"
    assert len(fakes["a"].calls) == 1


async def test_request_faults_do_not_count_against_the_circuit() -> None:
    cfg = _config(retries=0, threshold=1)
    executor, _, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"), ContextTooLong("big"))})
    for _ in range(3):
        await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert executor.breaker("a").state is BreakerState.CLOSED


async def test_auth_errors_count_against_the_circuit() -> None:
    cfg = _config(retries=0, threshold=2)
    executor, _, _ = _setup(cfg, {"a": _failing(cfg.deployment("a"), ProviderAuthError("k"))})
    for _ in range(2):
        await executor.complete(_decision(cfg, "a", "b"), REQUEST)
    assert executor.breaker("a").state is BreakerState.OPEN


async def test_cancelled_call_releases_probe_and_is_logged() -> None:
    cfg = _config(retries=0, threshold=1)
    a = FakeProvider(cfg.deployment("a"), delay_s=5.0)
    executor, _, _ = _setup(cfg, {"a": a})
    breaker = executor.breaker("a")
    breaker.record_failure()
    breaker._opened_at -= 120  # cooldown over: the next call is the half-open probe
    log: list[Attempt] = []
    task = asyncio.create_task(executor.complete(_decision(cfg, "a"), REQUEST, attempts=log))
    await asyncio.sleep(0.05)
    assert breaker.blocked_reason() == "circuit half-open (probe in flight)"
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert breaker.blocked_reason() is None  # the probe slot is free again
    assert [(x.deployment, x.error_type) for x in log] == [("a", "CancelledError")]


# -- streams ---------------------------------------------------------------------------------


class BrokenStream(FakeProvider):
    """Streams ``good`` chunks, then fails (or goes quiet for ``stall_s`` seconds)."""

    def __init__(self, dep: Deployment, *, good: int, stall_s: float = 0.0):
        super().__init__(dep, reply="one two three four")
        self.good = good
        self.stall_s = stall_s

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        count = 0
        async for chunk in super().stream(request):
            if count == self.good:
                if self.stall_s:
                    await asyncio.sleep(self.stall_s)
                raise UpstreamUnavailable("cut", deployment=self.deployment.name)
            count += 1
            yield chunk


async def _drain(it: AsyncIterator[ChatChunk]) -> list[ChatChunk]:
    return [chunk async for chunk in it]


async def test_stream_falls_back_before_the_first_chunk() -> None:
    cfg = _config(retries=1)
    executor, _, sleep = _setup(cfg, {"a": _failing(cfg.deployment("a"),
                                                    UpstreamUnavailable("x"))})
    start = await executor.stream(_decision(cfg, "a", "b"), REQUEST)
    assert start.deployment.name == "b" and len(start.attempts) == 3
    rest = await _drain(start.rest)
    assert start.first.text + "".join(c.text for c in rest) == "from b"
    assert rest[-1].usage is not None and len(sleep.waits) == 1


async def test_stream_failing_after_first_chunk_does_not_fall_back() -> None:
    cfg = _config(retries=2)
    a = BrokenStream(cfg.deployment("a"), good=2)
    executor, fakes, _ = _setup(cfg, {"a": a})
    start = await executor.stream(_decision(cfg, "a", "b"), REQUEST)
    assert start.deployment.name == "a" and start.first.text == "one"
    with pytest.raises(UpstreamUnavailable, match="cut"):
        await _drain(start.rest)
    assert len(a.calls) == 1 and fakes["b"].calls == []


async def test_stream_idle_guard_times_out_a_stalled_upstream() -> None:
    cfg = _config(retries=0, a_timeout=0.1)
    a = BrokenStream(cfg.deployment("a"), good=1, stall_s=5.0)
    executor, _, _ = _setup(cfg, {"a": a})
    start = await executor.stream(_decision(cfg, "a", "b"), REQUEST)
    with pytest.raises(ProviderTimeout, match="stream idle"):
        await asyncio.wait_for(_drain(start.rest), timeout=2.0)


async def test_empty_stream_is_an_error_and_falls_back() -> None:
    cfg = _config(retries=0)

    class Empty(FakeProvider):
        async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
            self.calls.append(request)
            return
            yield  # an async generator that yields nothing

    a = Empty(cfg.deployment("a"))
    executor, _, _ = _setup(cfg, {"a": a})
    start = await executor.stream(_decision(cfg, "a", "b"), REQUEST)
    assert start.deployment.name == "b" and start.attempts[0].error == "a: empty stream"
