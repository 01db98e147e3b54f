"""Shared key spend when a Redis call's outcome is unknown, or Redis loses its data.

A Redis call whose reply comes after the client's timeout may still have run on the
server: the gateway sees an error, retries it, and the retry must not count the spend a
second time. And when Redis restarts empty, the key's spend is reseeded from the database,
which already holds what replicas spent meanwhile: their credits of it, landing after the
seed, must not add it again.

These tests drive two :class:`SharedLimits` (two replicas) against a real redis-server,
one of them through :class:`FlakyProxy`, a loopback TCP proxy that can hold back the
replies to script calls past the client's timeout (the scripts still run) or refuse
connections altogether. A dict stands for the database (its writes land at once).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import redis.asyncio as aioredis

from modelmix.catalog import Deployment, StateSettings
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.server._limits import KeyLimits, Reservation
from modelmix.server._shared_limits import SharedKeyLimiter, SharedLimits
from modelmix.state import SharedKeyState, SharedRedis, SharedReservation
from test_keys import MAX_COST, chat_body

KEY = "k1"
BUDGET = 1.0
DECISION = RouteDecision(
    deployment=Deployment(name="a", provider="vllm", base_url="http://127.0.0.1:9/v1",
                          model="a", input_cost_per_mtok=1000, output_cost_per_mtok=2000),
    reason="test")


def request() -> ChatRequest:
    return ChatRequest.model_validate(chat_body())  # reserves MAX_COST (USD)


@dataclass(eq=False)
class _Conn:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter
    late: bool = False


@dataclass
class FlakyProxy:
    """TCP proxy on loopback in front of redis-server at ``port``.

    ``late_s``: when set, a connection that sends a script call (EVALSHA) gets that reply,
    and every later one, only after ``late_s`` seconds: the script runs at once, the
    client gives up first (``late_calls``: what those calls sent). ``refuse()``: close
    every connection and refuse new ones (Redis unreachable, its data kept); ``allow()``
    ends it.
    """

    port: int
    late_s: float = 0.0
    late_calls: list[bytes] = field(default_factory=list)
    refusing: bool = False
    _conns: set[Any] = field(default_factory=set)
    _server: asyncio.Server | None = None

    async def start(self) -> FlakyProxy:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"redis://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/0"

    def refuse(self) -> None:
        self.refusing = True
        for conn in list(self._conns):
            conn.client.close()
            conn.upstream.close()

    def allow(self) -> None:
        self.refusing = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.close()
            return
        up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.port)
        conn = _Conn(writer, up_writer)
        self._conns.add(conn)
        try:
            await asyncio.gather(self._requests(reader, conn), self._replies(up_reader, conn))
        finally:
            self._conns.discard(conn)

    async def _requests(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if self.late_s and b"EVALSHA" in data.upper():
                    conn.late = True
                    self.late_calls.append(data)
                conn.upstream.write(data)
                await conn.upstream.drain()
        conn.upstream.close()

    async def _replies(self, reader: asyncio.StreamReader, conn: _Conn) -> None:
        with contextlib.suppress(ConnectionError, OSError):
            while data := await reader.read(65536):
                if conn.late:
                    await asyncio.sleep(self.late_s)
                conn.client.write(data)
                await conn.client.drain()
        conn.client.close()

    def ran_late(self, script: Any) -> int:
        """How many calls of ``script`` (a registered script) ran with a late reply."""
        return sum(script.sha.encode() in data for data in self.late_calls)

    async def aclose(self) -> None:
        self.refuse()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


@dataclass
class Replica:
    shared: SharedRedis
    limits: SharedLimits
    limiter: SharedKeyLimiter


@pytest.fixture()
async def database() -> dict[str, float]:
    return {KEY: 0.0}


@pytest.fixture()
async def proxy(redis_url: str) -> AsyncIterator[FlakyProxy]:
    flaky = await FlakyProxy(int(redis_url.rsplit(":", 1)[1].split("/")[0])).start()
    yield flaky
    await flaky.aclose()


@pytest.fixture()
async def replica_factory(database: dict[str, float]
                          ) -> AsyncIterator[Callable[[str], Replica]]:
    made: list[Replica] = []

    def make(url: str) -> Replica:
        # A 0.2 s bound on each call (0.4 s in all), on_redis_down: local.
        shared = SharedRedis(url, StateSettings(timeout_s=0.2, on_redis_down="local"))

        def ledger_add(key_id: str, usd: float) -> None:
            database[key_id] += usd

        async def stored_spend(key_id: str) -> float | None:
            return database.get(key_id)

        limits = SharedLimits(shared, ledger_add=ledger_add, stored_spend=stored_spend)
        limiter = limits.limiter(KEY, KeyLimits(budget_usd=BUDGET), spent_usd=database[KEY])
        made.append(Replica(shared, limits, limiter))
        return made[-1]

    yield make
    for replica in made:
        await replica.limits.aclose()
        await replica.shared.aclose()


async def serve(replica: Replica, cost: float = MAX_COST) -> object:
    """Admit one request and settle it at ``cost`` (USD); returns its reservation."""
    held = await replica.limiter.admit(DECISION, request())
    replica.limiter.settle(held, cost, 11)
    return held


async def shared_spend(redis_url: str) -> tuple[float, float, int]:
    """The key's (spent, reserved, in flight) in Redis, read on a connection of its own."""
    shared = SharedRedis(redis_url, StateSettings(timeout_s=2.0))
    try:
        got = await SharedKeyState(shared).figures(KEY)
    finally:
        await shared.aclose()
    assert got is not None
    return got[0].spent_usd, got[0].reserved_usd, got[0].in_flight


async def until(check: Callable[[], bool], timeout_s: float = 5.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():
            await asyncio.sleep(0.02)


async def test_writes_whose_replies_come_too_late_are_counted_once(
        redis_url: str, proxy: FlakyProxy, database: dict[str, float],
        replica_factory: Callable[[str], Replica]) -> None:
    """Every script call runs in Redis but answers after the client's timeout: the
    reservation of a request admitted then is released, the request is served by the
    local fallback, and its spend, credited again and again until a reply comes back,
    counts once; so does the settle of a request admitted before."""
    a = replica_factory(proxy.url)
    assert isinstance(await serve(a), SharedReservation)  # seeded from 0, settled
    await a.limits.aclose()  # landed
    assert KEY in await a.limits.figures([KEY])  # (Redis knows every script now)
    before = await a.limiter.admit(DECISION, request())  # in flight through the outage
    assert isinstance(before, SharedReservation)

    proxy.late_s = 1.0  # every reply now comes after the client gave up (0.2 s)
    local = await serve(a)  # its reserve ran in Redis, then the local fallback took it
    assert isinstance(local, Reservation)
    a.limiter.settle(before, MAX_COST, 11)
    state = a.limits.state
    await until(lambda: all(proxy.ran_late(script) >= 2  # each ran twice, or more
                            for script in (state._credit, state._settle)))
    proxy.late_s = 0.0
    await a.limits.aclose()  # every pending write lands

    assert database[KEY] == pytest.approx(3 * MAX_COST)
    spent, reserved, in_flight = await shared_spend(redis_url)
    assert spent == pytest.approx(3 * MAX_COST) and reserved == 0.0 and in_flight == 0


async def test_local_spend_credited_after_another_replica_reseeds_counts_once(
        redis_url: str, proxy: FlakyProxy, database: dict[str, float],
        replica_factory: Callable[[str], Replica]) -> None:
    """Replica a spends locally while it cannot reach Redis; Redis restarts empty and
    replica b reseeds the key from the database, which has a's spend; a's credits of that
    spend, landing after the seed, add nothing."""
    a, b = replica_factory(proxy.url), replica_factory(redis_url)
    await serve(a)
    await a.limits.aclose()
    proxy.refuse()  # a cannot reach Redis
    for _ in range(2):
        assert isinstance(await serve(a), Reservation)  # local: persisted at once
    assert database[KEY] == pytest.approx(3 * MAX_COST)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()  # Redis restarted without persistence
    await client.aclose()
    await asyncio.sleep(0.6)  # the database surely has a's spend (SpendLedger: 0.2 s)
    assert isinstance(await serve(b), SharedReservation)  # seeded from 3 x MAX_COST, + 1
    await b.limits.aclose()
    proxy.allow()
    await a.limits.aclose()  # a's credits land now, after the seed

    assert database[KEY] == pytest.approx(4 * MAX_COST)
    spent, reserved, in_flight = await shared_spend(redis_url)
    assert spent == pytest.approx(4 * MAX_COST) and reserved == 0.0 and in_flight == 0


async def test_a_credit_that_ran_before_a_reseed_and_is_retried_after_counts_once(
        redis_url: str, proxy: FlakyProxy, database: dict[str, float],
        replica_factory: Callable[[str], Replica]) -> None:
    """Redis restarted empty: a's credit of its local spend runs on the empty state
    (nothing to add to: the database has it), but its reply comes too late; b reseeds
    the key from the database; the credit's retry, after the seed, adds nothing."""
    a, b = replica_factory(proxy.url), replica_factory(redis_url)
    await serve(a)
    await a.limits.aclose()
    proxy.refuse()
    assert isinstance(await serve(a), Reservation)
    client = aioredis.Redis.from_url(redis_url)
    await client.flushall()
    await client.aclose()
    proxy.late_s = 1.0
    proxy.allow()
    credit = a.limits.state._credit
    await until(lambda: proxy.ran_late(credit) >= 1)  # a's credit ran, on nothing
    assert isinstance(await serve(b), SharedReservation)  # seeded from 2 x MAX_COST, + 1
    await b.limits.aclose()
    calls = proxy.ran_late(credit)
    await until(lambda: proxy.ran_late(credit) > calls)  # ... and ran again after the seed
    proxy.late_s = 0.0
    await a.limits.aclose()

    assert database[KEY] == pytest.approx(3 * MAX_COST)
    spent, reserved, in_flight = await shared_spend(redis_url)
    assert spent == pytest.approx(3 * MAX_COST) and reserved == 0.0 and in_flight == 0
