"""Virtual-key limits across two gateway apps that share one Redis and one database, each
served on loopback by its own uvicorn (tests/_servers.py), with FakeProvider upstreams:
exact budgets, RPM and TPM across both, revocation seen by the other within 1 s, and
Redis stopped (or paused) mid-load in both ``on_redis_down`` modes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from typer.testing import CliRunner

from _servers import serve_app
from modelmix.catalog import StateSettings, config_from_dict
from modelmix.cli import app as cli_app
from modelmix.engine import ChatService
from modelmix.errors import AuthenticationFailed
from modelmix.server import create_app
from modelmix.server.keys import KeyStore, VirtualKeyAuth
from modelmix.state import SharedKeyState, SharedRedis, new_token, publish_key_change, shared_redis
from modelmix.testing import FakeProvider, ListSink
from test_keys import CONFIG, MASTER, MAX_COST, MAX_TOKENS, PROMPT_BOUND, bearer, chat_body

# Billed exactly at the reserved bound: PROMPT_BOUND prompt tokens and MAX_TOKENS words.
AT_BOUND = {"prompt_tokens": PROMPT_BOUND, "reply": " ".join(["w"] * MAX_TOKENS)}


@dataclass
class Replica:
    url: str
    app: Any
    sink: ListSink

    @property
    def auth(self) -> VirtualKeyAuth:
        auth = self.app.state.gateway.auth
        assert isinstance(auth, VirtualKeyAuth)
        return auth

    def new_key(self, **body: Any) -> tuple[str, str]:
        resp = httpx.post(self.url + "/key/generate", json=body, headers=bearer(MASTER))
        assert resp.status_code == 200, resp.text
        return resp.json()["key"], resp.json()["key_id"]

    def key_info(self, key_id: str, *, settled: bool = True) -> dict[str, Any]:
        """The key as ``/key/list`` shows it; ``settled``: once no request is in flight
        (settles land in Redis just after the answers), waiting up to 2 s."""
        deadline = time.monotonic() + 2
        while True:
            resp = httpx.get(self.url + "/key/list", headers=bearer(MASTER))
            assert resp.status_code == 200, resp.text
            info = next(k for k in resp.json()["keys"] if k["key_id"] == key_id)
            if not settled or info["in_flight"] == 0 or time.monotonic() > deadline:
                return dict(info)
            time.sleep(0.02)

    def chat(self, key: str, **body: Any) -> httpx.Response:
        return httpx.post(self.url + "/v1/chat/completions", json=chat_body(**body),
                          headers=bearer(key), timeout=30)


def _app(redis_url: str, on_down: str, provider: dict[str, Any], sink: ListSink) -> Any:
    cfg = config_from_dict({**CONFIG, "state": {"redis_url": redis_url, "timeout_s": 1.0,
                                                "on_redis_down": on_down}})
    fakes = {d.name: FakeProvider(d, **provider) for d in cfg.deployments}
    return create_app(service=ChatService(cfg, providers=fakes, usage=sink,
                                          shared=shared_redis(cfg, {})))


@contextmanager
def two_gateways(redis_url: str, *, on_down: str = "closed",
                 **provider: Any) -> Iterator[tuple[Replica, Replica]]:
    with ExitStack() as stack:
        pair = []
        for _ in range(2):
            sink = ListSink()
            app = _app(redis_url, on_down, provider, sink)
            pair.append(Replica(stack.enter_context(serve_app(app)), app, sink))
        yield pair[0], pair[1]


@pytest.fixture()
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys.db"
    monkeypatch.setenv("MODELMIX_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("MODELMIX_MASTER_KEY", MASTER)
    monkeypatch.delenv("MODELMIX_REDIS_URL", raising=False)
    return path


def stored_spend(db: Path, key_id: str) -> float:
    store = KeyStore(f"sqlite:///{db}")
    try:
        record = store.get(key_id)
        assert record is not None
        return record.spent_usd
    finally:
        store.close()


async def burst(replicas: tuple[Replica, ...], key: str, n: int,
                **body: Any) -> list[httpx.Response]:
    """``n`` concurrent requests, alternating between the replicas."""
    async with httpx.AsyncClient(headers=bearer(key), timeout=30) as client:
        return await asyncio.gather(*(
            client.post(replicas[i % len(replicas)].url + "/v1/chat/completions",
                        json=chat_body(**body)) for i in range(n)))


async def test_budget_is_exact_across_two_gateways(db: Path, redis_url: str) -> None:
    """120 concurrent requests on one key through two gateways, billed at the reserved
    bound: exactly as many as the budget holds are served, and not a cent more is spent."""
    budget = 20 * MAX_COST + 0.01
    with two_gateways(redis_url, delay_s=0.05, **AT_BOUND) as (a, b):
        key, key_id = a.new_key(max_budget=budget)
        wave = await burst((a, b), key, 120)
        statuses = [r.status_code for r in wave]
        assert statuses.count(200) == 20 and statuses.count(429) == 100
        assert {r.json()["error"]["code"] for r in wave if r.status_code == 429} == {
            "budget_exceeded"}
        for served_by in (a, b):  # /key/list: the shared figures, from either
            info = served_by.key_info(key_id)
            assert info["spend"] == pytest.approx(20 * MAX_COST)
            assert info["reserved"] == 0.0 and info["in_flight"] == 0
        rows = a.sink.wait_for(60) + b.sink.wait_for(60)
        assert len(rows) == 120 and sum(r.status_code == 200 for r in rows) == 20
    assert stored_spend(db, key_id) == pytest.approx(20 * MAX_COST)  # persisted, once


async def test_rpm_is_exact_across_two_gateways(db: Path, redis_url: str) -> None:
    with two_gateways(redis_url, delay_s=0.05) as (a, b):
        key, _ = a.new_key(rpm_limit=10)
        wave = await burst((a, b), key, 30)
        statuses = [r.status_code for r in wave]
        assert statuses.count(200) == 10 and statuses.count(429) == 20
        for resp in wave:
            if resp.status_code == 429:
                assert resp.json()["error"]["code"] == "rate_limit_exceeded"
                assert 1 <= int(resp.headers["retry-after"]) <= 60


async def test_tpm_reserves_then_settles_across_two_gateways(
        db: Path, redis_url: str) -> None:
    # Each request reserves 14 (prompt estimate) + 5 (max_tokens) = 19 tokens and settles
    # to FakeProvider's 10 + 1 = 11.
    with two_gateways(redis_url, delay_s=0.3) as (a, b):
        key, _ = a.new_key(tpm_limit=50)
        wave = await burst((a, b), key, 10)
        assert [r.status_code for r in wave].count(200) == 2  # 38 reserved; 57 > 50
        assert "tokens per minute" in next(r for r in wave if r.status_code == 429).text
        await asyncio.sleep(0.1)  # settles land in Redis: 22 used
        assert b.chat(key).status_code == 200  # 22 + 19 <= 50
        assert a.chat(key).status_code == 429  # 33 + 19 > 50


async def _until_refused(replica: Replica, key: str, timeout: float = 1.0) -> float:
    started = time.monotonic()
    async with httpx.AsyncClient(headers=bearer(key), timeout=5) as client:
        while True:
            resp = await client.post(replica.url + "/v1/chat/completions", json=chat_body())
            elapsed = time.monotonic() - started
            if resp.status_code == 401:
                assert resp.json()["error"]["code"] == "revoked_api_key"
                return elapsed
            assert resp.status_code == 200 and elapsed < timeout, "still admitted"
            await asyncio.sleep(0.01)


async def test_revocation_reaches_the_other_gateway_within_a_second(
        db: Path, redis_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    with two_gateways(redis_url) as (a, b):
        key, key_id = a.new_key(max_budget=1.0)
        assert b.chat(key).status_code == 200  # b caches the key (refresh_s: 5 s)
        resp = httpx.post(a.url + "/key/revoke", json={"key_id": key_id},
                          headers=bearer(MASTER))
        assert resp.status_code == 200
        assert await _until_refused(b, key) < 1.0

        # The CLI writes the database directly, and announces it when Redis is set.
        key, key_id = a.new_key()
        assert a.chat(key).status_code == 200 and b.chat(key).status_code == 200
        monkeypatch.setenv("MODELMIX_REDIS_URL", redis_url)
        revoked = await asyncio.to_thread(CliRunner().invoke, cli_app,
                                          ["keys", "revoke", key_id])
        assert revoked.exit_code == 0, revoked.output
        assert await _until_refused(a, key) < 1.0 and await _until_refused(b, key) < 1.0


def test_a_pubsub_reconnect_drops_the_key_cache(db: Path, redis_url: str) -> None:
    with two_gateways(redis_url) as (a, _):
        key, _ = a.new_key(rpm_limit=100)
        assert a.chat(key).status_code == 200
        assert a.auth._cache
        redis.Redis.from_url(redis_url).client_kill_filter(_type="pubsub")
        deadline = time.monotonic() + 3
        while a.auth._cache and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not a.auth._cache


async def test_redis_stopped_mid_load_fails_closed_then_recovers(
        db: Path, own_redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    """on_redis_down: closed. Stopping Redis under load: requests of limited keys get 503
    state_unavailable (recorded in usage), unlimited keys and the master key go on; once
    Redis is back (empty: no persistence) the spend is seeded from the database."""
    with two_gateways(own_redis.url, delay_s=0.05, **AT_BOUND) as (a, b):
        key, key_id = a.new_key(max_budget=100 * MAX_COST)
        free, _ = a.new_key()
        before = await burst((a, b), key, 20)
        assert all(r.status_code == 200 for r in before)
        load = asyncio.ensure_future(burst((a, b), key, 40))
        await asyncio.sleep(0.05)
        own_redis.stop()  # mid-load
        during = await load
        assert {r.status_code for r in during} <= {200, 503}
        for replica in (a, b):
            resp = await asyncio.to_thread(replica.chat, key)
            assert resp.status_code == 503 and resp.headers["retry-after"] == "1"
            assert resp.json()["error"]["code"] == "state_unavailable"
            assert (await asyncio.to_thread(replica.chat, free)).status_code == 200
            assert (await asyncio.to_thread(replica.chat, MASTER)).status_code == 200
        refused = [r for r in a.sink.records + b.sink.records if r.status_code == 503]
        assert refused and {r.error_type for r in refused} == {"StateUnavailable"}
        assert any("unreachable" in r.message for r in caplog.records)

        own_redis.start()
        served = sum(r.status_code == 200 for r in before + during)
        for replica in (a, b):
            for _ in range(100):  # tried again every 0.5 s
                resp = await asyncio.to_thread(replica.chat, key)
                if resp.status_code == 200:
                    break
                await asyncio.sleep(0.05)
            assert resp.status_code == 200
            served += 1
        await asyncio.sleep(0.5)
        assert a.key_info(key_id)["spend"] == pytest.approx(served * MAX_COST)
    assert stored_spend(db, key_id) == pytest.approx(served * MAX_COST)


async def test_redis_stopped_with_local_fallback(
        db: Path, own_redis: Any, caplog: pytest.LogCaptureFixture) -> None:
    """on_redis_down: local. Each gateway enforces the budget on its own from the spend
    it last saw; once Redis is back, the shared spend (seeded from the database) counts
    what both spent meanwhile."""
    budget = 10 * MAX_COST + 0.01
    with two_gateways(own_redis.url, on_down="local", **AT_BOUND) as (a, b):
        key, key_id = a.new_key(max_budget=budget)
        for replica in (b, b, b, a):
            assert replica.chat(key).status_code == 200  # b last saw 3 spent, a 4
        own_redis.stop()
        with caplog.at_level(logging.WARNING, logger="modelmix.keys"):
            served = []
            for replica in (a, b):
                served.append(0)
                while (resp := replica.chat(key)).status_code == 200:
                    served[-1] += 1
                assert resp.json()["error"]["code"] == "budget_exceeded"
        # Each replica alone admitted what was left of the budget as it last saw it.
        assert served == [6, 7]
        falls = [r for r in caplog.records if "own limits" in r.message]
        assert len(falls) == 2  # once per replica per outage

        own_redis.start()
        await asyncio.sleep(0.6)
        for replica in (a, b):  # 17 spent > budget, and both replicas know it now
            resp = replica.chat(key)
            assert resp.status_code == 429 and f"spent ${17 * MAX_COST:.6f}" in resp.text
        assert a.key_info(key_id)["spend"] == pytest.approx(17 * MAX_COST)
    assert stored_spend(db, key_id) == pytest.approx(17 * MAX_COST)


async def test_settles_and_local_spend_land_after_a_pause(
        db: Path, redis_url: str, caplog: pytest.LogCaptureFixture) -> None:
    """Redis unreachable for a while without losing its data (CLIENT PAUSE): a request
    admitted before settles when Redis answers again, and what the local fallback spent
    meanwhile is added to the shared spend."""
    with two_gateways(redis_url, on_down="local", delay_s=0.5, **AT_BOUND) as (a, b):
        key, key_id = a.new_key(max_budget=1.0)
        slow = asyncio.ensure_future(asyncio.to_thread(a.chat, key))
        await asyncio.sleep(0.2)  # admitted in Redis, in flight
        assert a.key_info(key_id, settled=False)["in_flight"] == 1
        client = redis.Redis.from_url(redis_url)
        ((_, expires_ms),) = client.zrange(f"modelmix:key:{{{key_id}}}:x", 0, -1,
                                           withscores=True)
        seconds, micros = client.time()
        left_s = expires_ms / 1000 - (seconds + micros / 1e6)
        assert 659 < left_s <= 660  # reliability.timeout_s (600) + 60 s
        client.client_pause(2500, all=True)  # longer than a call's 1 s timeout
        assert (await slow).status_code == 200  # its settle cannot land yet
        assert (await asyncio.to_thread(b.chat, key)).status_code == 200
        assert any("own limits" in r.message for r in caplog.records)  # served locally
        await asyncio.sleep(2.0)  # Redis answers again: both land
        for _ in range(50):
            info = b.key_info(key_id)
            if info["spend"] == pytest.approx(2 * MAX_COST):
                break
            await asyncio.sleep(0.05)
        assert info["spend"] == pytest.approx(2 * MAX_COST) and info["in_flight"] == 0
    assert stored_spend(db, key_id) == pytest.approx(2 * MAX_COST)


async def test_a_reservation_never_settled_is_charged_when_it_expires(
        db: Path, redis_url: str) -> None:
    """A replica that dies mid-request leaves its reservation in Redis: once the request's
    deadline has passed it is charged as spent (the upstream may have billed it), by
    whichever replica next touches the key, and persisted by that one."""
    with two_gateways(redis_url, **AT_BOUND) as (a, b):
        key, key_id = a.new_key(max_budget=1.0)
        dying = SharedRedis(redis_url, StateSettings())  # a third replica, same prefix
        got = await SharedKeyState(dying).reserve(
            key_id, new_token(), budget_usd=1.0, rpm=None, tpm=None, cost_usd=MAX_COST,
            tokens=19, spent_floor_usd=0.0, ttl_s=0.2)
        assert got is not None and got.figures.in_flight == 1
        await dying.aclose()  # ... and it is gone
        await asyncio.sleep(0.3)
        assert b.chat(key).status_code == 200
        assert b.key_info(key_id)["spend"] == pytest.approx(2 * MAX_COST)
    assert stored_spend(db, key_id) == pytest.approx(2 * MAX_COST)


async def test_a_key_created_elsewhere_ends_open_mode_on_every_replica_at_once(
        tmp_path: Path, redis_url: str) -> None:
    """Without a master key, a replica that counted no keys admits everyone for
    refresh_s; a key created by another process (the CLI) is announced, and ends that at
    once instead."""
    url = f"sqlite:///{tmp_path / 'k.db'}"
    shared = SharedRedis(redis_url, StateSettings())
    auth = VirtualKeyAuth(None, KeyStore(url), shared=shared, refresh_s=60)
    await shared.start()
    assert (await auth.authenticate(None)).is_admin  # open mode, trusted for 60 s
    _, record = KeyStore(url).create(alias="ci")
    announcer = SharedRedis(redis_url, StateSettings())
    await publish_key_change(announcer, "create", record.id)
    await announcer.aclose()
    started = time.monotonic()
    while time.monotonic() - started < 1.0:
        try:
            await auth.authenticate(None)
        except AuthenticationFailed:
            break
        await asyncio.sleep(0.005)
    else:
        pytest.fail("still in open mode a second after a key was created")
    await auth.aclose()
    await shared.aclose()
