"""Circuit breakers shared across replicas through a real redis-server.

Two ChatService "replicas" (own Redis pools and pub/sub listeners) call one real loopback
upstream: failures anywhere open the circuit everywhere within ~100 ms, success closes it
everywhere, the half-open probe is one call among all replicas, a replica that missed
messages reads the state again, and with Redis down each process counts on its own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Iterator

import pytest

from _two_replicas import ask, catalog, eventually, replica
from faulty_upstream import Fault, FaultyUpstream
from modelmix.engine import BreakerState, ChatService, Completion
from modelmix.errors import NoDeploymentAvailable, UpstreamUnavailable


@pytest.fixture(scope="module")
def ups() -> Iterator[dict[str, FaultyUpstream]]:
    started = {name: FaultyUpstream(name).start() for name in ("a", "b")}
    yield started
    for up in started.values():
        up.stop()


@pytest.fixture(autouse=True)
def _fresh(ups: dict[str, FaultyUpstream]) -> None:
    for up in ups.values():
        up.clear()


@pytest.fixture()
async def pair(ups: dict[str, FaultyUpstream], redis_url: str
               ) -> AsyncIterator[tuple[ChatService, ChatService]]:
    config = catalog(ups, groups={"ab": ["a", "b"]}, cooldown_s=0.6)
    one, two = await replica(config, redis_url), await replica(config, redis_url)
    yield one, two
    await one.aclose()
    await two.aclose()


def _state(service: ChatService, name: str = "a") -> BreakerState:
    return service.executor.breaker(name).state


async def _fail(service: ChatService, up: FaultyUpstream, times: int) -> None:
    up.script(*[Fault.error(500)] * times)
    for _ in range(times):
        assert isinstance(await ask(service), UpstreamUnavailable)


async def test_failures_on_one_replica_open_the_circuit_on_the_other(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 3)
    assert _state(one) is BreakerState.OPEN  # from the script's answer, no wait
    took = await eventually(lambda: _state(two) is BreakerState.OPEN, timeout=1.0)
    assert took < 0.1, f"replica 2 learnt of the open circuit after {took * 1000:.0f} ms"
    # replica 2 never called "a" and now does not: health excludes it at routing
    exc = await ask(two)
    assert isinstance(exc, NoDeploymentAvailable) and exc.status_code == 503
    assert exc.retry_after is not None and 0 < exc.retry_after <= 0.6
    done = await ask(two, "ab")
    assert isinstance(done, Completion) and done.deployment.name == "b"
    assert ups["a"].count == 3 and ups["b"].count == 1


async def test_consecutive_failures_are_counted_across_replicas(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 2)
    await _fail(two, ups["a"], 1)  # 3rd consecutive failure, on the other replica
    assert _state(two) is BreakerState.OPEN
    await eventually(lambda: _state(one) is BreakerState.OPEN)
    assert one.executor.breaker("a").failures == 3


async def test_a_success_on_any_replica_resets_the_count(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 2)
    await eventually(lambda: two.executor.breaker("a").failures == 2)  # published
    assert isinstance(await ask(two), Completion)  # resets the shared count
    await asyncio.sleep(0.05)  # the reset is sent in the background
    await _fail(one, ups["a"], 2)
    assert _state(one) is BreakerState.CLOSED and _state(two) is BreakerState.CLOSED
    assert one.executor.breaker("a").failures == 2


async def test_half_open_probe_is_single_across_replicas_and_closes_everywhere(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 3)
    await eventually(lambda: _state(two) is BreakerState.OPEN)
    await asyncio.sleep(0.65)  # cooldown over: both mirrors let the next call probe
    ups["a"].clear()
    ups["a"].script(Fault.hang(0.3))  # the probe is slow; nothing else may reach "a"
    results = await asyncio.gather(*[ask(one) for _ in range(4)],
                                   *[ask(two) for _ in range(4)])
    assert ups["a"].count == 1, "more than one replica probed the deployment"
    assert sum(isinstance(r, Completion) for r in results) == 1
    assert all(isinstance(r, (Completion, NoDeploymentAvailable)) for r in results)
    await eventually(lambda: _state(one) is BreakerState.CLOSED
                     and _state(two) is BreakerState.CLOSED, timeout=1.0)
    assert all(isinstance(r, Completion) for r in
               await asyncio.gather(ask(one), ask(two)))
    assert ups["a"].count == 3


async def test_an_abandoned_probe_frees_the_lock_for_other_replicas(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 3)
    await eventually(lambda: _state(two) is BreakerState.OPEN)
    await asyncio.sleep(0.65)
    ups["a"].script(Fault.hang(5.0))  # replica 1's probe hangs; its client leaves
    probe = asyncio.create_task(ask(one))
    await eventually(lambda: ups["a"].count == 4)
    probe.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await probe
    started = time.monotonic()  # the lock is freed in the background: replica 2 probes
    while not isinstance(await ask(two), Completion):  # well before the 5 s lock expires
        assert time.monotonic() - started < 3.0, "the abandoned probe's lock was kept"
        await asyncio.sleep(0.05)
    await eventually(lambda: _state(one) is BreakerState.CLOSED)


async def test_failed_probe_reopens_everywhere_for_a_full_cooldown(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream]) -> None:
    one, two = pair
    await _fail(one, ups["a"], 3)
    await asyncio.sleep(0.65)
    ups["a"].script(Fault.error(503))
    assert isinstance(await ask(two), UpstreamUnavailable)  # replica 2's probe fails
    await eventually(lambda: (one.executor.breaker("a").retry_in_s() or 0) > 0.4)
    assert isinstance(await ask(one), NoDeploymentAvailable)
    assert ups["a"].count == 4


async def test_a_new_replica_reads_open_circuits_before_calling(
        ups: dict[str, FaultyUpstream], redis_url: str) -> None:
    config = catalog(ups, cooldown_s=5.0)
    one = await replica(config, redis_url)
    await _fail(one, ups["a"], 3)
    late = await replica(config, redis_url)  # started after the message was sent
    assert _state(late) is BreakerState.CLOSED  # routing lets it try...
    burst = await asyncio.gather(*[ask(late, "a") for _ in range(50)])
    # ...the executor reads Redis first (one read shared by the burst)
    assert all(isinstance(r, NoDeploymentAvailable) for r in burst)
    assert ups["a"].count == 3
    assert _state(late) is BreakerState.OPEN
    await one.aclose()
    await late.aclose()


async def test_states_are_read_again_after_the_pubsub_connection_is_lost(
        pair: tuple[ChatService, ChatService], ups: dict[str, FaultyUpstream],
        redis_url: str) -> None:
    import redis.asyncio as aioredis

    one, two = pair
    assert isinstance(await ask(two), Completion)  # replica 2 knows "a" (closed)
    admin = aioredis.Redis.from_url(redis_url)
    await admin.client_kill_filter(_type="pubsub")  # both listeners drop; reconnect in 0.5 s
    await admin.aclose()
    await _fail(one, ups["a"], 3)  # published while nobody listens: lost
    assert _state(two) is BreakerState.CLOSED
    await eventually(lambda: _state(two) is BreakerState.OPEN, timeout=3.0)
    assert isinstance(await ask(two), NoDeploymentAvailable)
    assert ups["a"].count == 4


async def test_breakers_fall_back_to_each_process_when_redis_is_down(
        ups: dict[str, FaultyUpstream], own_redis: object,
        caplog: pytest.LogCaptureFixture) -> None:
    from _redis import RedisServer

    assert isinstance(own_redis, RedisServer)
    config = catalog(ups, cooldown_s=5.0)  # on_redis_down: closed, which breakers ignore
    one, two = await replica(config, own_redis.url), await replica(config, own_redis.url)
    caplog.set_level(logging.WARNING)
    await _fail(one, ups["a"], 1)
    await asyncio.to_thread(own_redis.stop)
    await _fail(one, ups["a"], 2)  # no 503: breakers never refuse for Redis
    assert _state(one) is BreakerState.OPEN  # its own count: 1 shared + 2 local
    assert "circuit breakers fall back to per-process counts" in caplog.text
    assert isinstance(await ask(one), NoDeploymentAvailable)
    assert _state(two) is BreakerState.CLOSED  # nothing reaches the other replica
    assert isinstance(await ask(two), Completion)
    await asyncio.to_thread(own_redis.start)  # an empty Redis (no persistence)
    await asyncio.sleep(1.1)  # past the local-only retry interval
    await _fail(two, ups["a"], 3)  # counted in Redis again: opens on both
    await eventually(lambda: _state(two) is BreakerState.OPEN)
    assert "circuit breakers are shared across replicas again" in caplog.text
    await one.aclose()
    await two.aclose()
