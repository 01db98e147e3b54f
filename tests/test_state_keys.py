"""Per-key budgets, RPM and TPM in Redis (state/_keys.py) against a real redis-server:
two SharedKeyState instances on separate connections stand for two gateway replicas."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from modelmix.catalog import StateSettings
from modelmix.errors import StateUnavailable
from modelmix.state import (
    Admitted,
    Refused,
    SharedKeyState,
    SharedRedis,
    key_change_message,
    new_token,
    parse_key_change,
)

COST = 0.074  # USD reserved per request (the bound)
TTL = 60.0


@pytest.fixture()
async def replicas(redis_url: str) -> AsyncIterator[tuple[SharedKeyState, SharedKeyState]]:
    settings = StateSettings(key_prefix="t:", timeout_s=2.0)  # a busy test host
    pair = [SharedRedis(redis_url, settings) for _ in range(2)]
    yield SharedKeyState(pair[0], window_s=1.0), SharedKeyState(pair[1], window_s=1.0)
    for shared in pair:
        await shared.aclose()


async def reserve(state: SharedKeyState, key_id: str = "k", *, budget: float | None = None,
                  rpm: int | None = None, tpm: int | None = None, cost: float = COST,
                  tokens: int = 10, floor: float | None = 0.0, ttl: float = TTL
                  ) -> Admitted | Refused | None:
    return await state.reserve(key_id, new_token(), budget_usd=budget, rpm=rpm, tpm=tpm,
                               cost_usd=cost, tokens=tokens, spent_floor_usd=floor, ttl_s=ttl)


async def admitted(state: SharedKeyState, **kw: object) -> Admitted:
    got = await reserve(state, **kw)  # type: ignore[arg-type]
    assert isinstance(got, Admitted), got
    return got


async def test_spend_is_seeded_from_the_database_figure_once(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas
    assert await reserve(a, budget=1.0, floor=None) is None  # Redis holds nothing yet
    got = await admitted(a, budget=1.0, floor=0.9)
    assert got.figures.spent_usd == pytest.approx(0.9) and got.figures.in_flight == 1
    # Seeded once: another replica's (staler) floor does not replace it.
    refused = await reserve(b, budget=1.0, floor=0.0)
    assert isinstance(refused, Refused) and refused.kind == "budget"
    assert refused.figures.spent_usd == pytest.approx(0.9)
    assert refused.figures.reserved_usd == pytest.approx(COST)
    done = await b.settle(got.reservation, 0.05, 12)
    assert done.status == "settled" and done.ledger_usd == 0.0
    assert done.figures.spent_usd == pytest.approx(0.95) and done.figures.in_flight == 0
    assert (await a.figures("k")) == (done.figures, 0.0)
    assert await a.figures("unknown") is None


async def test_two_replicas_never_reserve_past_the_budget(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    """200 concurrent requests on one key through two replicas: spend + reservations
    never pass the budget; billed at the bound, the spend ends within one request of it,
    never above; billed below it, never above either."""
    budget = 40 * COST + 0.01
    rng = random.Random(3)

    async def one(state: SharedKeyState, key_id: str, peak: list[float]) -> bool:
        got = await reserve(state, key_id, budget=budget)
        if isinstance(got, Refused):
            assert got.kind == "budget"
            return False
        assert isinstance(got, Admitted)
        peak.append(got.figures.spent_usd + got.figures.reserved_usd)
        await asyncio.sleep(rng.random() / 50)
        cost = COST if key_id == "exact" else rng.uniform(0, COST)
        await state.settle(got.reservation, cost, 10)
        return True

    for key_id in ("exact", "below"):
        peak: list[float] = []
        ok = 0
        for _ in range(2):  # two waves of 100 concurrent requests
            ok += sum(await asyncio.gather(*(one(replicas[i % 2], key_id, peak)
                                             for i in range(100))))
        final = await replicas[0].figures(key_id)
        assert final is not None
        figures, _ = final
        assert max(peak) <= budget + 1e-9 and figures.spent_usd <= budget + 1e-9
        assert figures.in_flight == 0 and figures.reserved_usd == 0.0
        if key_id == "exact":
            assert ok == 40 and figures.spent_usd == pytest.approx(40 * COST)
        else:
            assert ok > 40


async def test_rpm_window_is_exact_across_replicas_and_slides(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas  # 1 s window
    got = await asyncio.gather(*(reserve(s, rpm=7) for s in (a, b) * 10))
    assert sum(isinstance(g, Admitted) for g in got) == 7
    refused = [g for g in got if isinstance(g, Refused)]
    assert {r.kind for r in refused} == {"rpm"}
    assert all(r.retry_after_s is not None and 0 < r.retry_after_s <= 1.0 for r in refused)
    await asyncio.sleep(1.05)  # the window slid past all of them
    assert isinstance(await reserve(b, rpm=7), Admitted)


async def test_tpm_window_reserves_then_settles_to_actual(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas  # 1 s window, tpm 60: the KeyLimiter test's sequence, shared
    first = await admitted(a, tpm=60, tokens=44)
    await a.settle(first.reservation, 0.0, 11)  # 44 reserved -> 11 actual
    await asyncio.sleep(0.2)
    await admitted(b, tpm=60, tokens=44)  # 11 + 44 <= 60
    tpm = await reserve(a, tpm=60, tokens=44)
    assert isinstance(tpm, Refused) and tpm.kind == "tpm" and tpm.window_tokens == 55
    # 11 leaving is not enough (44 + 44 > 60): it fits when the second leaves, in ~1 s
    assert tpm.retry_after_s is not None and 0.9 < tpm.retry_after_s <= 1.0
    alone = await reserve(b, tpm=60, tokens=61)
    assert isinstance(alone, Refused) and alone.kind == "tpm_request"
    assert alone.retry_after_s is None
    await asyncio.sleep(0.85)  # the first left the window: 44 + 16 <= 60
    await admitted(a, tpm=60, tokens=16)
    refused = await reserve(b, tpm=60, tokens=1)
    assert isinstance(refused, Refused) and refused.window_tokens == 60


async def test_expired_reservation_is_charged_and_a_late_settle_corrects_it(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas
    held = await admitted(a, budget=1.0, ttl=0.2)
    await asyncio.sleep(0.3)
    sweep = await admitted(b, budget=1.0, cost=0.01)  # sweeps the expired reservation
    assert sweep.ledger_usd == pytest.approx(COST)  # to persist: charged as spent
    assert sweep.figures.spent_usd == pytest.approx(COST) and sweep.figures.in_flight == 1
    late = await a.settle(held.reservation, 0.02, 10)  # the call ended after all
    assert late.status == "late" and late.ledger_usd == pytest.approx(-COST)
    assert late.figures.spent_usd == pytest.approx(0.02)
    again = await a.settle(held.reservation, 0.02, 10)  # retried: lands once
    assert again.status == "done" and again.figures.spent_usd == pytest.approx(0.02)
    await b.settle(sweep.reservation, 0.01, 1)
    final = await b.figures("k")
    assert final is not None and final[0].spent_usd == pytest.approx(0.03)


async def test_unknown_outcome_is_charged_at_least_the_reservation(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, _ = replicas
    held = await admitted(a, budget=1.0)
    done = await a.settle(held.reservation, 0.0, 0, unknown=True)
    assert done.figures.spent_usd == pytest.approx(COST)


async def test_one_at_a_time_after_an_over_bound_bill_holds_on_every_replica(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas
    first, second = await admitted(a, budget=10.0), await admitted(b, budget=10.0)
    over = await a.settle(first.reservation, 2 * COST, 10)
    assert over.over_bound
    refused = await reserve(b, budget=10.0)
    assert isinstance(refused, Refused) and refused.kind == "one_at_a_time"
    await b.settle(second.reservation, COST, 10)
    third = await admitted(a, budget=10.0)  # nothing in flight
    refused = await reserve(b, budget=10.0)
    assert isinstance(refused, Refused) and refused.kind == "one_at_a_time"
    assert not (await a.settle(third.reservation, 2 * COST, 10)).over_bound  # once


async def test_cancel_releases_uncounted_and_stops_a_late_reserve(
        replicas: tuple[SharedKeyState, SharedKeyState]) -> None:
    a, b = replicas
    held = await admitted(a, budget=1.0, rpm=1)
    gone = await b.cancel("k", held.reservation.token, TTL)  # its request was refused
    assert gone.status == "settled" and gone.figures.spent_usd == 0.0
    assert isinstance(await reserve(a, budget=1.0, rpm=1), Admitted)  # not in the window
    token = new_token()
    await b.cancel("k", token, TTL)  # before its reserve reached Redis
    with pytest.raises(StateUnavailable):
        await a.reserve("k", token, budget_usd=1.0, rpm=None, tpm=None, cost_usd=COST,
                        tokens=1, spent_floor_usd=0.0, ttl_s=TTL)


async def test_state_lost_by_redis_is_reseeded_and_late_settles_add_up(
        replicas: tuple[SharedKeyState, SharedKeyState], redis_url: str) -> None:
    a, b = replicas
    held = await admitted(a, budget=1.0, floor=0.1)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()  # Redis restarted without persistence
    lost = await a.settle(held.reservation, 0.05, 10)
    assert lost.status == "lost"  # nothing to add to: the database has it (ledger)
    assert await reserve(b, budget=1.0, floor=None) is None  # to be seeded again
    other = await admitted(b, budget=1.0, floor=0.15)
    held2 = await admitted(a, budget=1.0, floor=0.15)
    await client.flushall()
    await admitted(b, budget=1.0, floor=0.3)  # reseeded: a new epoch
    late = await a.settle(held2.reservation, 0.05, 10)  # from the earlier epoch
    assert late.status == "lost" and late.figures.spent_usd == pytest.approx(0.35)
    assert (await b.settle(other.reservation, 0.05, 1)).status == "lost"
    await client.aclose()


async def test_a_credit_counts_once_per_token(
        replicas: tuple[SharedKeyState, SharedKeyState], redis_url: str) -> None:
    """A credit retried after a lost reply (the script ran) adds nothing; one that ran on
    an empty state (the database has it) adds nothing once the key is seeded."""
    a, b = replicas
    await admitted(a, budget=1.0, floor=0.1)
    token = new_token()
    first = await a.credit("k", 0.05, token=token, persisted_s_ago=1.0)
    assert first.status == "added" and first.figures is not None
    assert first.figures.spent_usd == pytest.approx(0.15)
    again = await b.credit("k", 0.05, token=token, persisted_s_ago=2.0)  # the retry
    assert again.status == "done" and again.figures == first.figures

    client = aioredis.Redis.from_url(redis_url)
    await client.delete("t:key:{k}:s")  # the key's spend is gone (not its tombstones)
    await client.aclose()
    token = new_token()
    assert (await a.credit("k", 0.02, token=token, persisted_s_ago=1.0)).status == "none"
    await admitted(b, budget=1.0, floor=0.17)  # seeded, read time unknown
    retried = await a.credit("k", 0.02, token=token, persisted_s_ago=1.5)
    assert retried.status == "done" and retried.figures is not None
    assert retried.figures.spent_usd == pytest.approx(0.17)


async def test_spend_persisted_before_a_seed_is_not_added_to_it(
        replicas: tuple[SharedKeyState, SharedKeyState], redis_url: str) -> None:
    """Redis lost the key's state and was reseeded from the database: a credit or a lost
    settle of spend persisted well before the seed's read is in the seed, and skipped; of
    spend persisted since (or too shortly before), it is added."""
    a, b = replicas
    held = [await admitted(a, budget=2.0, floor=0.1) for _ in range(2)]
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()  # Redis restarted without persistence
    await client.aclose()
    assert await reserve(b, budget=2.0, floor=None) is None
    read_after = await b.redis_ms()
    seeded = await b.reserve("k", new_token(), budget_usd=2.0, rpm=None, tpm=None,
                             cost_usd=COST, tokens=1, spent_floor_usd=0.5, ttl_s=TTL,
                             floor_read_after_ms=read_after)
    assert isinstance(seeded, Admitted) and seeded.figures.spent_usd == pytest.approx(0.5)
    lag = a.persist_lag_s
    old = await a.credit("k", 0.01, token=new_token(), persisted_s_ago=lag + 30.0)
    assert old.status == "seeded" and old.figures is not None
    assert old.figures.spent_usd == pytest.approx(0.5)
    recent = await a.credit("k", 0.02, token=new_token(), persisted_s_ago=lag / 2)
    assert recent.status == "added" and recent.figures is not None
    assert recent.figures.spent_usd == pytest.approx(0.52)

    in_seed = await a.settle(held[0].reservation, 0.03, 1, persisted_s_ago=lag + 30.0)
    assert in_seed.status == "lost" and in_seed.figures.spent_usd == pytest.approx(0.52)
    after = await a.settle(held[1].reservation, 0.04, 1, persisted_s_ago=0.0)
    assert after.status == "lost" and after.figures.spent_usd == pytest.approx(0.56)
    retried = await b.settle(held[1].reservation, 0.04, 1)  # its reply was lost
    assert retried.status == "done" and retried.figures.spent_usd == pytest.approx(0.56)


async def test_keys_expire(replicas: tuple[SharedKeyState, SharedKeyState],
                           redis_url: str) -> None:
    a, _ = replicas
    held = await admitted(a, budget=1.0, rpm=5, tpm=100)
    await a.settle(held.reservation, 0.01, 3)
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    keys = await client.keys("t:key:*")
    assert keys
    for name in keys:
        ttl = await client.ttl(name)
        assert 0 < ttl <= 7 * 86400, (name, ttl)
        if name.endswith((":w", ":t")):
            assert ttl <= 2  # the windows: twice their length
    await client.aclose()


async def test_redis_down_raises_state_unavailable(own_redis: object) -> None:
    from _redis import RedisServer

    assert isinstance(own_redis, RedisServer)
    shared = SharedRedis(own_redis.url, StateSettings(timeout_s=0.2))
    state = SharedKeyState(shared)
    held = await admitted(state, budget=1.0)
    own_redis.stop()
    with pytest.raises(StateUnavailable):
        await reserve(state, budget=1.0)
    with pytest.raises(StateUnavailable):
        await state.settle(held.reservation, 0.01, 1)
    own_redis.start()  # no persistence: the state is gone, the settle finds nothing
    assert (await state.settle(held.reservation, 0.01, 1)).status == "lost"
    await shared.aclose()


def test_key_change_messages_round_trip() -> None:
    assert parse_key_change(key_change_message("revoke", "abc")) == ("revoke", "abc")
    for junk in ("", "[]", "{", '{"change": 1, "key_id": "a"}'):
        assert parse_key_change(junk) is None
