"""Per-key budgets, RPM and TPM shared by gateway replicas through Redis.

With a Redis URL configured, a key with any limit gets a :class:`SharedKeyLimiter` as its
:class:`~modelmix.engine.Admission` instead of a per-process
:class:`~modelmix.server._limits.KeyLimiter`. It reserves the same upper bound
(:func:`~modelmix.server._limits.request_bounds`) in one atomic Lua script
(:class:`~modelmix.state._keys.SharedKeyState`), so N replicas enforce one budget and
one pair of RPM / TPM windows exactly as one process does, and refuses with the same
errors. Keys without limits stay per process: nothing to share, nothing to block.

``settle`` stays synchronous (the engine calls it from ``finally`` blocks): the cost is
handed to the process's spend ledger at once, as before, and the Redis settle runs as a
task; one that cannot reach Redis is retried in the background until it lands (a day at
most, while its reservation is remembered), and what is still pending at shutdown is
tried for two more seconds, then logged.

When Redis cannot be reached (``state.on_redis_down``):

* ``closed`` (default): requests of limited keys get 503 ``state_unavailable`` with
  ``Retry-After: 1``; the gateway records them in usage like any refusal;
* ``local``: this process's own KeyLimiter stands in (warned once per outage), starting
  from the spend Redis last reported; what it settles is persisted at once and added to
  the shared spend when Redis answers again: once (each amount carries a token, so a
  retry after a lost reply adds nothing), and not when Redis reseeded the key's spend
  from the database after the amount was in it (the seed has it).

Redis is tried again at most every 0.5 s while down, so requests do not each wait for
its timeout. Reservations taken before an outage stay in Redis (holding budget) until
their settle lands or they expire and are charged (docs/keys.md).

Example::

    limits = SharedLimits(shared, ledger_add=ledger.add, stored_spend=read_spend)
    limiter = limits.limiter("k1", KeyLimits(budget_usd=5.0, rpm=60), spent_usd=0.0)
    reservation = await limiter.admit(decision, request)  # BudgetExceeded, KeyRateLimited,
    limiter.settle(reservation, cost_usd=0.0123, tokens=812)  # StateUnavailable
    await limits.aclose()
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from modelmix.errors import ModelmixError, StateUnavailable
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.server._limits import (
    WINDOW_S,
    KeyLimiter,
    KeyLimits,
    Reservation,
    budget_exceeded,
    one_at_a_time,
    request_bounds,
    rpm_exceeded,
    tpm_exceeded,
)
from modelmix.state import (
    Admitted,
    KeyFigures,
    Refused,
    SharedKeyState,
    SharedRedis,
    SharedReservation,
    new_token,
)
from modelmix.state._keys import EXPIRED_KEEP_S

__all__ = ["RESERVATION_MARGIN_S", "SharedKeyLimiter", "SharedLimits"]

log = logging.getLogger("modelmix.keys")

#: Seconds past a request's deadline after which its unsettled reservation expires in
#: Redis and is charged as spent.
RESERVATION_MARGIN_S = 60.0

#: Seconds between attempts to reach Redis while it is down.
_PROBE_S = 0.5

#: Seconds ``aclose`` keeps trying pending Redis writes.
_FLUSH_S = 2.0


class SharedLimits:
    """One gateway process's side of the replicas' shared key limits.

    Args:
        shared: the process's Redis connection.
        ledger_add: persists spend, (key id, USD); must not block (``SpendLedger.add``).
        stored_spend: the key's ``spent_usd`` in the database, USD, read after this
            process's pending spend is written; seeds Redis when it holds none.
        request_timeout_s: a request's deadline when it sets no ``timeout``, seconds
            (``reliability.timeout_s``); reservations expire 60 s after it.
        window_s: RPM / TPM window, seconds (tests shorten it).
    """

    def __init__(
        self,
        shared: SharedRedis,
        *,
        ledger_add: Callable[[str, float], None],
        stored_spend: Callable[[str], Awaitable[float | None]],
        request_timeout_s: float = 600.0,
        window_s: float = WINDOW_S,
    ):
        self.state = SharedKeyState(shared, window_s=window_s)
        self.fail_closed = shared.fail_closed
        self.request_timeout_s = request_timeout_s
        self._ledger_add = ledger_add
        self._stored_spend = stored_spend
        self._writes = _Writes()
        self._retry_at = 0.0
        self._standing_in = False
        self._over_bound: set[str] = set()

    def __repr__(self) -> str:
        mode = "closed" if self.fail_closed else "local"
        return f"SharedLimits({self.state!r}, on_redis_down={mode!r})"

    def limiter(self, key_id: str, limits: KeyLimits, spent_usd: float) -> SharedKeyLimiter:
        """A new limiter of ``key_id``; ``spent_usd`` is its spend in the database."""
        local = KeyLimiter(key_id, limits, spent_usd=spent_usd, on_spend=self._spent_locally)
        return SharedKeyLimiter(self, key_id, limits, local, spent_usd)

    # -- Redis up or down ------------------------------------------------------------

    def reachable(self) -> bool:
        """Whether to try Redis now (not within 0.5 s of a failure)."""
        return time.monotonic() >= self._retry_at

    def failed(self) -> None:
        self._retry_at = time.monotonic() + _PROBE_S

    def answered(self) -> None:
        self._retry_at = 0.0
        if self._standing_in:
            self._standing_in = False
            log.warning("shared key limits are back in Redis")

    def stand_in(self) -> None:
        """Note that a local limiter stands in for Redis (warned once per outage)."""
        if not self._standing_in:
            self._standing_in = True
            log.warning("Redis is unreachable: key budgets, RPM and TPM fall back to this "
                        "gateway process's own limits (state.on_redis_down: local); "
                        "replicas may together exceed them until Redis is back")

    # -- spend -----------------------------------------------------------------------

    def persist(self, key_id: str, usd: float) -> None:
        """Add ``usd`` to the key's spend in the database (batched)."""
        if usd:
            self._ledger_add(key_id, usd)

    async def spend_floor(self, limiter: SharedKeyLimiter) -> tuple[float, bool]:
        """The key's spend in the database, to seed Redis, and whether it was read now
        (else it is the figure read at the key's last lookup: the database could not be
        read)."""
        try:
            stored = await self._stored_spend(limiter.key_id)
        except Exception:  # the cached figure is the best left
            log.exception("could not read key %s's spend to seed Redis; using the figure "
                          "read at its last lookup", limiter.key_id)
            stored = None
        if stored is None:
            return limiter.stored_spent_usd, False
        return stored, True

    def _spent_locally(self, key_id: str, usd: float) -> None:
        self.persist(key_id, usd)
        token, persisted = new_token(), time.monotonic()

        async def credit() -> None:
            # Not before the database surely has it: "none" (Redis holds no spend for
            # the key) leaves it to the next seed, which must find it there.
            wait = persisted + self.state.persist_lag_s - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            got = await self.state.credit(key_id, usd, token=token,
                                          persisted_s_ago=time.monotonic() - persisted)
            self.persist(key_id, got.ledger_usd)

        self._writes.submit(credit, f"${usd:.6f} spent by key {key_id} during the outage")

    def settle_later(self, limiter: SharedKeyLimiter, reservation: SharedReservation,
                     cost_usd: float, tokens: int, unknown: bool) -> None:
        """Settle ``reservation`` in Redis in the background, until it lands (its cost
        was persisted just now)."""
        charge = reservation.charge(cost_usd, unknown)
        limiter.unlanded_usd += charge
        persisted = time.monotonic()

        async def settle() -> None:
            done = await self.state.settle(reservation, cost_usd, tokens, unknown=unknown,
                                           persisted_s_ago=time.monotonic() - persisted)
            limiter.unlanded_usd -= charge
            self.persist(reservation.key_id, done.ledger_usd)
            if done.status != "lost":
                limiter.figures = done.figures
            if done.over_bound and reservation.key_id not in self._over_bound:
                self._over_bound.add(reservation.key_id)
                log.warning("key %s: a request cost $%.6f, more than the $%.6f reserved for "
                            "it; admitting this key one request at a time from now on, on "
                            "every replica", reservation.key_id,
                            charge, reservation.cost_usd)

        self._writes.submit(settle, f"the settle of a ${reservation.cost_usd:.6f} "
                                    f"reservation of key {reservation.key_id}")

    def cancel_later(self, key_id: str, token: str, ttl_s: float) -> None:
        """Release a reservation whose reserve call failed (it may have run)."""
        async def cancel() -> None:
            done = await self.state.cancel(key_id, token, ttl_s)
            self.persist(key_id, done.ledger_usd)

        self._writes.submit(cancel, f"the release of a reservation of key {key_id} whose "
                                    "request was refused")

    async def figures(self, key_ids: Iterable[str]) -> dict[str, KeyFigures]:
        """The shared figures of ``key_ids`` that Redis holds; best effort (none of a
        key when Redis cannot be read)."""
        async def one(key_id: str) -> KeyFigures | None:
            try:
                got = await self.state.figures(key_id)
            except StateUnavailable:
                return None
            if got is None:
                return None
            self.persist(key_id, got[1])
            return got[0]

        ids = list(key_ids)
        found = await asyncio.gather(*(one(k) for k in ids))
        return {k: f for k, f in zip(ids, found, strict=True) if f is not None}

    async def aclose(self) -> None:
        """Land pending Redis writes (for up to 2 s; what is left is logged)."""
        await self._writes.aclose(_FLUSH_S)


class SharedKeyLimiter:
    """The :class:`~modelmix.engine.Admission` of one limited key when replicas share
    Redis; same checks, errors and guarantees as :class:`KeyLimiter`, across replicas.

    Built by :meth:`SharedLimits.limiter`.

    Attributes:
        figures: the key's shared figures as Redis last reported them, or None.
        stored_spent_usd: the key's spend in the database at its last lookup, USD.
        unlanded_usd: what this process settled that has not reached Redis yet, USD.
    """

    def __init__(self, hub: SharedLimits, key_id: str, limits: KeyLimits, local: KeyLimiter,
                 spent_usd: float):
        self.key_id = key_id
        self.figures: KeyFigures | None = None
        self.stored_spent_usd = spent_usd
        self.unlanded_usd = 0.0
        self._hub = hub
        self._local = local
        self._limits = limits

    def __repr__(self) -> str:
        return f"SharedKeyLimiter({self.key_id!r}, {self._limits!r})"

    @property
    def limits(self) -> KeyLimits:
        """The key's limits; setting them applies to the next admission."""
        return self._limits

    @limits.setter
    def limits(self, limits: KeyLimits) -> None:
        self._limits = limits
        self._local.limits = limits

    @property
    def spent_usd(self) -> float:
        """USD spent as last seen: Redis's figure, or this process's own when larger."""
        shared = self.figures.spent_usd if self.figures else self.stored_spent_usd
        return max(shared, self._local.spent_usd)

    @property
    def reserved_usd(self) -> float:
        """USD reserved by requests in flight on every replica, as last seen."""
        return (self.figures.reserved_usd if self.figures else 0.0) + self._local.reserved_usd

    @property
    def in_flight(self) -> int:
        """Requests in flight on every replica, as last seen."""
        return (self.figures.in_flight if self.figures else 0) + self._local.in_flight

    async def admit(self, decision: RouteDecision, request: ChatRequest) -> object:
        """Check every limit and reserve, in one atomic Redis script.

        Raises:
            BudgetExceeded: spent + reserved (all replicas) + this request's maximum cost
                would exceed the budget.
            KeyRateLimited: the RPM or TPM window (all replicas) is full, or the key is
                admitted one request at a time and one is in flight.
            StateUnavailable: Redis is unreachable and ``state.on_redis_down`` is
                ``closed`` (503, Retry-After: 1).
        """
        if not self._hub.reachable():
            return await self._stand_in(decision, request)
        cost, tokens = request_bounds(decision, request)
        token = new_token()
        ttl_s = (request.timeout or self._hub.request_timeout_s) + RESERVATION_MARGIN_S
        try:
            got = await self._reserve(token, cost, tokens, ttl_s, None)
            if got is None:  # Redis holds no spend for this key: seed it
                # Redis's clock before the database read: spend persisted well before it
                # is in the seed, and is not credited to it again.
                read_after = await self._hub.state.redis_ms()
                floor, fresh = await self._hub.spend_floor(self)
                got = await self._reserve(token, cost, tokens, ttl_s, floor,
                                          read_after if fresh else None)
        except StateUnavailable:
            self._hub.failed()
            self._hub.cancel_later(self.key_id, token, ttl_s)
            return await self._stand_in(decision, request)
        self._hub.answered()
        if got is None:  # pragma: no cover - a floor was given
            raise StateUnavailable("shared key state could not be seeded")
        self._hub.persist(self.key_id, got.ledger_usd)
        self.figures = got.figures
        if isinstance(got, Refused):
            raise self._refusal(got, cost, tokens)
        return got.reservation

    async def _reserve(self, token: str, cost: float, tokens: int, ttl_s: float,
                       floor: float | None, read_after_ms: float | None = None
                       ) -> Admitted | Refused | None:
        limits = self._limits
        return await self._hub.state.reserve(
            self.key_id, token, budget_usd=limits.budget_usd, rpm=limits.rpm,
            tpm=limits.tpm, cost_usd=cost, tokens=tokens, spent_floor_usd=floor,
            ttl_s=ttl_s, floor_read_after_ms=read_after_ms)

    def _refusal(self, got: Refused, cost: float, tokens: int) -> ModelmixError:
        limits, f = self._limits, got.figures
        if got.kind == "budget":
            return budget_exceeded(self.key_id, limits.budget_usd or 0.0, f.spent_usd,
                                   f.reserved_usd, f.in_flight, cost)
        if got.kind == "one_at_a_time":
            return one_at_a_time(self.key_id)
        if got.kind == "rpm":
            return rpm_exceeded(self.key_id, limits.rpm or 0, got.retry_after_s or 0.0)
        return tpm_exceeded(self.key_id, limits.tpm or 0, got.window_tokens, tokens,
                            got.retry_after_s)

    async def _stand_in(self, decision: RouteDecision, request: ChatRequest) -> object:
        if self._hub.fail_closed:
            raise StateUnavailable(
                "shared state (Redis) is unreachable; this key's budget and rate limits "
                "hold across replicas and cannot be checked, so the request is refused")
        self._hub.stand_in()
        seen = self.figures.spent_usd if self.figures else self.stored_spent_usd
        self._local.observe_spent(seen + self.unlanded_usd)
        return await self._local.admit(decision, request)

    def settle(self, reservation: object, cost_usd: float, tokens: int, *,
               unknown: bool = False) -> None:
        """Release ``reservation`` and record the actual cost (USD) and tokens: persisted
        at once, settled in Redis in the background (``unknown``: see KeyLimiter)."""
        if isinstance(reservation, Reservation):  # admitted locally during an outage
            self._local.settle(reservation, cost_usd, tokens, unknown=unknown)
            return
        if not isinstance(reservation, SharedReservation) or reservation.settled:
            return
        reservation.settled = True
        self._hub.persist(self.key_id, reservation.charge(cost_usd, unknown))
        self._hub.settle_later(self, reservation, cost_usd, tokens, unknown)


@dataclass(slots=True)
class _Write:
    run: Callable[[], Awaitable[None]]
    what: str
    until: float


class _Writes:
    """Redis writes that must land (settles, cancels, spend credits). Each is tried at
    once; one that fails waits in a queue retried every <= 1 s (round robin, so one
    that keeps failing blocks none) until it lands or a day passes (after which a
    charged reservation can no longer be corrected)."""

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._queue: deque[_Write] = deque()
        self._worker: asyncio.Task[None] | None = None
        self._current: _Write | None = None

    def submit(self, run: Callable[[], Awaitable[None]], what: str) -> None:
        write = _Write(run, what, time.monotonic() + EXPIRED_KEEP_S)
        task = asyncio.get_running_loop().create_task(self._first(write))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _first(self, write: _Write) -> None:
        try:
            await write.run()
        except StateUnavailable:
            self._queue.append(write)
            if self._worker is None or self._worker.done():
                self._worker = asyncio.get_running_loop().create_task(self._drain())
        except Exception:  # a bug must not kill the task silently; retrying won't help
            log.exception("%s failed", write.what)

    async def _drain(self) -> None:
        delay = 0.05
        while self._queue:
            write = self._current = self._queue.popleft()
            if time.monotonic() > write.until:
                log.warning("gave up on %s: Redis was unreachable for a day", write.what)
                self._current = None
                continue
            try:
                await write.run()
            except StateUnavailable:
                self._queue.append(write)
                self._current = None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 1.0)
                continue
            except Exception:
                log.exception("%s failed", write.what)
            self._current = None
            delay = 0.05

    @property
    def pending(self) -> int:
        """Writes not landed yet."""
        return len(self._tasks) + len(self._queue)

    async def aclose(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for pending writes; log what is left."""
        deadline = time.monotonic() + timeout_s
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=timeout_s)
        worker = self._worker
        if worker is not None and not worker.done():
            await asyncio.wait([worker], timeout=max(deadline - time.monotonic(), 0.01))
            worker.cancel()
        for task in list(self._tasks):
            task.cancel()
        left = [*self._queue, *([self._current] if self._current is not None else [])]
        for write in left:
            log.warning("shutting down with Redis unreachable: %s did not land; a "
                        "reservation left in Redis is charged when it expires", write.what)
        self._queue.clear()
