"""N replicas behave as one: real gateway processes behind Debian's nginx, sharing one
redis-server and one PostgreSQL (issue 13, "Done when").

Every test drives 2-3 ``modelmix serve`` processes through nginx (round robin) or on
their own ports, with 100+ concurrent clients on one key, against a fixed upstream
process (tests/replica_upstream.py) whose usage makes a request's reservation bound its
exact cost (10 completion tokens at 100 USD per million = 0.001 USD, input free). The
harness is tests/_replicas.py. Without nginx, redis-server, PostgreSQL or psycopg the
tests skip (or fail under ``CI=true``).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from _replicas import Key, ReplicaSet, Reply, burst, chat_body, nginx_binary, post

COST = 0.001  # USD per request: 10 completion tokens x 100 USD / 1M tokens


def _need_nginx() -> None:
    if nginx_binary() is None:
        message = "replica tests need nginx: apt-get install nginx-light"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)


# -- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def replicas(pg_module_url: str, redis_server: Any,
             tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    """Three gateways on one PostgreSQL schema and the session's Redis, behind nginx."""
    _need_nginx()
    redis_server.flush()
    with ReplicaSet(3, db_url=pg_module_url, redis_url=redis_server.url,
                    tmp=tmp_path_factory.mktemp("replicas")) as rs:
        yield rs


REGIONS = [{"name": "us", "region": "us-east-1"}, {"name": "eu", "region": "eu-west-1"}]


@pytest.fixture(scope="module")
def cached_replicas(pg_module_url: str, redis_server: Any,
                    tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    """Two gateways with the exact response cache on (per key: ``shared`` false) and the
    eu-residency data policy, over a group of a US and an EU deployment."""
    _need_nginx()
    catalog = {"cache": {"mode": "exact"}, "policy": "eu-residency",
               "groups": {"chat": ["us", "eu"]}}
    with ReplicaSet(2, db_url=pg_module_url, redis_url=redis_server.url, catalog=catalog,
                    deployments=REGIONS, tmp=tmp_path_factory.mktemp("cached")) as rs:
        yield rs


@pytest.fixture(scope="module")
def shared_cache_replicas(pg_module_url: str, redis_server: Any,
                          tmp_path_factory: pytest.TempPathFactory) -> Iterator[ReplicaSet]:
    """As ``cached_replicas`` with ``cache.shared`` on: keys share answers to requests
    with no detected data, and only those."""
    _need_nginx()
    catalog = {"cache": {"mode": "exact", "shared": True}, "policy": "eu-residency",
               "groups": {"chat": ["us", "eu"]}}
    with ReplicaSet(2, db_url=pg_module_url, redis_url=redis_server.url, catalog=catalog,
                    deployments=REGIONS, tmp=tmp_path_factory.mktemp("shared")) as rs:
        yield rs


# -- helpers --------------------------------------------------------------------------------


def run(coro: Any) -> list[Reply]:
    result: list[Reply] = asyncio.run(coro)
    return result


def statuses(replies: list[Reply]) -> Counter[tuple[int, str | None]]:
    return Counter((r.status, r.code) for r in replies)


def eventually(check: Callable[[], bool], timeout_s: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


class Db:
    """Reads the gateways' PostgreSQL: usage rows and persisted spend of a key."""

    def __init__(self, url: str):
        self.engine = sa.create_engine(url)

    def rows(self, key_id: str) -> Counter[int]:
        """Usage rows of ``key_id`` by HTTP status."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.text(
                "SELECT status_code, count(*) FROM usage WHERE key_id = :k "
                "GROUP BY status_code"), {"k": key_id}).all()
        return Counter({int(status): int(n) for status, n in found})

    def cost(self, key_id: str) -> float:
        with self.engine.connect() as conn:
            total = conn.execute(sa.text("SELECT coalesce(sum(cost_usd), 0) FROM usage "
                                         "WHERE key_id = :k"), {"k": key_id}).scalar()
        return float(total or 0.0)

    def cache_rows(self, key_id: str) -> list[tuple[str | None, float, float | None]]:
        """(cache, cost_usd, saved_usd) of each row of ``key_id``, oldest first."""
        with self.engine.connect() as conn:
            found = conn.execute(sa.text(
                "SELECT cache, cost_usd, saved_usd FROM usage WHERE key_id = :k "
                "ORDER BY created_at"), {"k": key_id}).all()
        return [(c, round(float(cost), 9), None if saved is None else round(float(saved), 9))
                for c, cost, saved in found]

    def spent(self, key_id: str) -> float:
        with self.engine.connect() as conn:
            spent = conn.execute(sa.text("SELECT spent_usd FROM virtual_keys WHERE id = :k"),
                                 {"k": key_id}).scalar()
        return float(spent or 0.0)

    def wait_rows(self, key_id: str, expected: Counter[int]) -> Counter[int]:
        """The rows once they add up to ``expected`` (writers flush every 0.25 s), or
        whatever is there after 15 s."""
        eventually(lambda: sum(self.rows(key_id).values()) >= sum(expected.values()))
        return self.rows(key_id)

    def close(self) -> None:
        self.engine.dispose()


@pytest.fixture(scope="module")
def db(pg_module_url: str) -> Iterator[Db]:
    database = Db(pg_module_url)
    yield database
    database.close()


def redis_key_state(rs: ReplicaSet, key_id: str) -> dict[str, str]:
    """The key's shared figures in Redis (hash ``modelmix:key:{<id>}:s``)."""
    import redis

    assert rs.redis_url is not None
    client = redis.Redis.from_url(rs.redis_url, decode_responses=True)
    try:
        found = client.hgetall(f"modelmix:key:{{{key_id}}}:s")
    finally:
        client.close()
    return {str(k): str(v) for k, v in found.items()}


def http_counts(replies: list[Reply]) -> Counter[int]:
    return Counter(r.status for r in replies)


# -- budgets, RPM, usage rows ---------------------------------------------------------------


def test_budget_is_exact_across_replicas(replicas: ReplicaSet, db: Db) -> None:
    """150 concurrent requests on a 0.05 USD key over 3 replicas: exactly 50 succeed
    (50 x 0.001), the rest are 429 budget_exceeded; spend is 0.05 in PostgreSQL and on
    every replica, and every request has its usage row."""
    budget, n = 0.05, 150
    key = replicas.create_key(max_budget=budget, key_alias="budget")
    replies = run(burst(replicas.url, key.key, [chat_body()] * n))
    allowed = round(budget / COST)
    got = statuses(replies)
    assert got[(200, None)] <= allowed, got  # never above the budget
    assert got == {(200, None): allowed, (429, "budget_exceeded"): n - allowed}, (
        got, replicas.logs())  # and exact: no request refused for a healthy Redis
    rows = db.wait_rows(key.id, http_counts(replies))
    assert rows == http_counts(replies)
    assert db.cost(key.id) == pytest.approx(allowed * COST, abs=1e-9)
    assert eventually(lambda: db.spent(key.id) == pytest.approx(allowed * COST, abs=1e-9))
    assert db.spent(key.id) <= budget + 1e-9
    state = redis_key_state(replicas, key.id)  # docs: <prefix>key:{id}:s in Redis
    assert float(state["spent"]) == pytest.approx(allowed * COST, abs=1e-9), state
    assert float(state["reserved"]) == pytest.approx(0.0, abs=1e-9), state
    for i in range(replicas.k):  # the shared spend, as each replica sees it
        view = replicas.key_view(key.id, replica=i)
        assert view["spend"] == pytest.approx(allowed * COST, abs=1e-9), (i, view)
        assert view["reserved"] == pytest.approx(0.0, abs=1e-9)


def test_budget_refuses_once_spent_on_every_replica(replicas: ReplicaSet) -> None:
    """A key spent on replica 0 is refused by replicas 1 and 2 (no replica keeps a stale
    local view of the spend)."""
    key = replicas.create_key(max_budget=3 * COST, key_alias="spent")
    for _ in range(3):
        assert post(replicas.replica(0), key.key, chat_body()).status == 200
    for i in (1, 2):
        reply = post(replicas.replica(i), key.key, chat_body())
        assert (reply.status, reply.code) == (429, "budget_exceeded"), (i, reply)


def test_rpm_is_exact_across_replicas(replicas: ReplicaSet, db: Db) -> None:
    """rpm=40 and 120 concurrent requests over 3 replicas: exactly 40 pass in the window."""
    rpm, n = 40, 120
    key = replicas.create_key(rpm_limit=rpm, key_alias="rpm")
    replies = run(burst(replicas.url, key.key, [chat_body()] * n))
    got = statuses(replies)
    assert got == {(200, None): rpm, (429, "rate_limit_exceeded"): n - rpm}, (
        got, replicas.logs())
    assert all(r.headers.get("retry-after") for r in replies if r.status == 429)
    assert db.wait_rows(key.id, http_counts(replies)) == http_counts(replies)


def test_tpm_is_exact_across_replicas(replicas: ReplicaSet) -> None:
    """tpm: each request reserves its prompt estimate + max_tokens; a 1,000-token window
    lets the same number of requests through over 3 replicas as over one."""
    key = replicas.create_key(tpm_limit=1000, key_alias="tpm")
    replies = run(burst(replicas.url, key.key, [chat_body(max_tokens=90)] * 100))
    ok = sum(r.status == 200 for r in replies)
    # Each reserves more than 90 and less than 100 tokens (a short prompt): 10 fit, not 11.
    assert ok == 10, (statuses(replies), replicas.logs())


def test_no_usage_row_is_lost_under_mixed_load(replicas: ReplicaSet, db: Db) -> None:
    """300 requests from 150 clients, successes and refusals mixed: one row each."""
    key = replicas.create_key(max_budget=0.1, rpm_limit=200, key_alias="rows")
    replies = run(burst(replicas.url, key.key, [chat_body()] * 300, concurrency=150))
    assert sum(r.status == 200 for r in replies) == 100
    assert db.wait_rows(key.id, http_counts(replies)) == http_counts(replies)


def test_over_a_hundred_clients_on_one_replica(replicas: ReplicaSet) -> None:
    """200 concurrent requests of one limited key on one replica, the upstream taking
    50 ms (so they overlap in Redis calls): all are admitted; none is refused 503
    because the replica could not get a Redis connection fast enough."""
    key = replicas.create_key(max_budget=1.0, rpm_limit=10_000, key_alias="wide")
    replicas.upstream.control(delay_s=0.05)
    try:
        replies = run(burst(replicas.replica(0), key.key, [chat_body()] * 200))
    finally:
        replicas.upstream.control()
    assert statuses(replies) == {(200, None): 200}


# -- key revocation -------------------------------------------------------------------------


def test_revocation_reaches_other_replicas_within_one_second(replicas: ReplicaSet) -> None:
    key = replicas.create_key(key_alias="revoked")
    for i in range(replicas.k):  # every replica has the key cached (5 s lookup cache)
        assert post(replicas.replica(i), key.key, chat_body()).status == 200
    replicas.revoke(key.id, replica=0)
    revoked_at = time.monotonic()
    refused_after: float | None = None
    while time.monotonic() - revoked_at < 5.0:
        reply = post(replicas.replica(1), key.key, chat_body())
        if reply.status == 401:
            refused_after = time.monotonic() - revoked_at
            break
        time.sleep(0.01)
    assert refused_after is not None, "replica 1 still admits the revoked key after 5 s"
    assert refused_after < 1.0, f"replica 1 refused the key only after {refused_after:.2f} s"
    reply = post(replicas.replica(2), key.key, chat_body())
    assert (reply.status, reply.code) == (401, "revoked_api_key")


# -- circuit breakers -----------------------------------------------------------------------


def test_open_breaker_is_shared(replicas: ReplicaSet) -> None:
    """The upstream of ``flaky`` fails; replica 0's calls open its circuit (3 failures);
    replicas 1 and 2 then refuse ``flaky`` without calling the upstream."""
    key = replicas.create_key(key_alias="breaker")
    body = chat_body(model="flaky")
    replicas.upstream.control(fail=500)
    try:
        seen: list[int] = []
        for _ in range(10):
            reply = post(replicas.replica(0), key.key, body)
            seen.append(reply.status)
            if reply.code == "no_deployment_available":
                break
        assert seen[-1] == 503, seen
        calls = replicas.upstream.hits("flaky-model")
        assert calls == 3, (seen, calls)
        time.sleep(0.3)
        for i in (1, 2):
            reply = post(replicas.replica(i), key.key, body)
            assert (reply.status, reply.code) == (503, "no_deployment_available"), (i, reply)
        assert replicas.upstream.hits("flaky-model") == calls
    finally:
        replicas.upstream.control()
    assert post(replicas.replica(1), key.key, chat_body()).status == 200  # others unaffected


# -- response cache -------------------------------------------------------------------------


def _cache(reply: Reply) -> str | None:
    return reply.headers.get("x-modelmix-cache")


def test_cache_hit_on_another_replica_for_the_same_key_only(
        cached_replicas: ReplicaSet, db: Db) -> None:
    """Key A's answer is a hit for key A on the other replica (no upstream call; usage
    row at cost 0 with the saving), a miss for key B."""
    rs = cached_replicas
    a = rs.create_key(key_alias="cache-a")
    b = rs.create_key(key_alias="cache-b")
    body = chat_body(model="chat", content="What is the boiling point of water at sea level?")
    first = post(rs.replica(0), a.key, body)
    assert first.status == 200 and _cache(first) == "miss", first
    calls = rs.upstream.hits()
    again = post(rs.replica(1), a.key, body)
    assert again.status == 200 and _cache(again) == "hit", again
    assert again.body["choices"] == first.body["choices"]
    assert rs.upstream.hits() == calls
    other = post(rs.replica(1), b.key, body)
    assert other.status == 200 and _cache(other) != "hit", other
    assert rs.upstream.hits() == calls + 1
    assert eventually(lambda: sum(db.rows(a.id).values()) == 2)
    assert db.cache_rows(a.id) == [("miss", COST, None), ("hit", 0.0, COST)]


def test_cache_never_crosses_a_data_class_boundary(cached_replicas: ReplicaSet) -> None:
    """eu-residency: the same prompt marked as EU personal data must go to the EU
    deployment, so it is never answered from the US deployment's cached reply; a prompt
    with personal data in it is cached for its key only."""
    rs = cached_replicas
    a = rs.create_key(key_alias="class-a")
    b = rs.create_key(key_alias="class-b")
    body = chat_body(model="chat", content="Draft a two-line reminder about the meeting.")
    clean = post(rs.replica(0), a.key, body)
    assert clean.status == 200 and clean.headers["x-modelmix-deployment"] == "us", clean
    assert _cache(post(rs.replica(1), a.key, body)) == "hit"
    marked = post(rs.replica(1), a.key, body, headers={"x-modelmix-tags": "eu-personal-data"})
    assert marked.status == 200 and marked.headers["x-modelmix-deployment"] == "eu", marked
    assert _cache(marked) != "hit", marked
    personal = chat_body(model="chat", content="Remind anna.schmidt@example.de of the meeting.")
    first = post(rs.replica(0), a.key, personal)
    assert first.status == 200 and first.headers["x-modelmix-deployment"] == "eu", first
    assert _cache(post(rs.replica(1), a.key, personal)) == "hit"
    assert _cache(post(rs.replica(1), b.key, personal)) != "hit"


def test_shared_cache_keeps_personal_data_answers_to_their_key(
        shared_cache_replicas: ReplicaSet) -> None:
    """``cache.shared``: key B gets key A's cached answer to a clean prompt (on another
    replica), never its answer to a prompt carrying personal data."""
    rs = shared_cache_replicas
    a = rs.create_key(key_alias="shared-a")
    b = rs.create_key(key_alias="shared-b")
    clean = chat_body(model="chat", content="List three prime numbers below twenty.")
    assert _cache(post(rs.replica(0), a.key, clean)) == "miss"
    calls = rs.upstream.hits()
    shared = post(rs.replica(1), b.key, clean)
    assert _cache(shared) == "hit" and rs.upstream.hits() == calls, shared
    personal = chat_body(model="chat", content="Write to lukas.meier@example.de about it.")
    first = post(rs.replica(0), a.key, personal)
    assert first.status == 200 and first.headers["x-modelmix-deployment"] == "eu", first
    assert _cache(post(rs.replica(1), a.key, personal)) == "hit"
    calls = rs.upstream.hits()
    other = post(rs.replica(1), b.key, personal)
    assert other.status == 200 and _cache(other) != "hit", other
    assert rs.upstream.hits() == calls + 1


# -- Redis down -----------------------------------------------------------------------------


def test_redis_stopped_mid_load_fails_closed_then_recovers(
        pg_url: str, own_redis: Any, tmp_path: Path) -> None:
    """Stop redis-server while 150 clients send requests of a limited key: each answer is
    a 200 or a 503 state_unavailable (no other 5xx, no traceback), every request has its
    usage row, an unlimited key still passes; after a restart the limited key passes."""
    _need_nginx()
    db = Db(pg_url)
    try:
        with ReplicaSet(2, db_url=pg_url, redis_url=own_redis.url, tmp=tmp_path) as rs:
            limited = rs.create_key(max_budget=100.0, rpm_limit=100_000, key_alias="limited")
            free = rs.create_key(key_alias="free")
            rs.upstream.control(delay_s=0.02)
            replies = run(_load_while_stopping(rs, limited, own_redis))
            got = statuses(replies)
            assert set(got) <= {(200, None), (503, "state_unavailable")}, got
            assert got[(503, "state_unavailable")] > 0, got
            after = post(rs.url, limited.key, chat_body())
            assert (after.status, after.code) == (503, "state_unavailable"), after
            assert after.headers.get("retry-after")
            assert post(rs.url, free.key, chat_body()).status == 200
            expected = http_counts([*replies, after])
            assert db.wait_rows(limited.id, expected) == expected
            own_redis.start()
            assert eventually(lambda: post(rs.url, limited.key, chat_body()).status == 200,
                              timeout_s=10), rs.logs()
            assert all(post(rs.replica(i), limited.key, chat_body()).status == 200
                       for i in range(rs.k))
            assert "Traceback" not in rs.logs(), rs.logs()
    finally:
        db.close()


async def _load_while_stopping(rs: ReplicaSet, key: Key, redis: Any) -> list[Reply]:
    """600 requests from 150 clients; redis-server stops once a third have been sent."""
    n = 600
    task = asyncio.create_task(burst(rs.url, key.key, [chat_body()] * n, concurrency=150))
    await asyncio.sleep(0.5)
    await asyncio.to_thread(redis.stop)
    return await task
