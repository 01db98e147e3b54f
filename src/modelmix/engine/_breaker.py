"""Per-deployment circuit breaker (closed -> open -> half-open -> closed).

After ``failure_threshold`` consecutive failures the circuit opens and calls are
refused for ``cooldown_s``; then one probe call is let through (half-open). Its success
closes the circuit, its failure reopens it. (Nygard, *Release It!*, 2nd ed., ch. 5.)

:class:`Breakers` holds one executor's breakers. With shared state (Redis) the count,
the open state and the half-open probe are the replicas' (``modelmix.state``'s
:class:`~modelmix.state.SharedBreakers`) and each local breaker mirrors them, so that
routing's health check stays a sync call; while Redis is unreachable each process falls
back to its own count (logged): availability is not a trust boundary.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import TypeVar

from modelmix.catalog import CircuitBreakerSettings
from modelmix.errors import StateUnavailable
from modelmix.state import BreakerUpdate, ProbeVerdict, SharedBreakers, SharedRedis

__all__ = ["BreakerState", "Breakers", "CircuitBreaker"]

log = logging.getLogger("modelmix.engine")

_T = TypeVar("_T")

#: After a Redis failure, breakers stay local-only this long (s) before asking again,
#: so that a dead Redis does not cost every call a timeout.
LOCAL_RETRY_S = 1.0

#: While another replica probes a deployment, look again after at most this long (s).
_BUSY_RECHECK_S = 1.0


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """State for one deployment. Not thread-safe: use from one event loop."""

    def __init__(self, settings: CircuitBreakerSettings,
                 clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def blocked_reason(self) -> str | None:
        """None when a call may go ahead now (without taking the probe slot)."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN:
            left = self._settings.cooldown_s - (self._clock() - self._opened_at)
            if left > 0:
                return f"circuit open ({self.failures} consecutive failures; retry in {left:.0f}s)"
            return None
        return "circuit half-open (probe in flight)" if self._probe_in_flight else None

    def retry_in_s(self) -> float | None:
        """Seconds until a call may go ahead (None when one may now): the cooldown left
        while open, 1 while a half-open probe is in flight."""
        if self.blocked_reason() is None:
            return None
        if self.state is BreakerState.OPEN:
            return max(self._settings.cooldown_s - (self._clock() - self._opened_at), 0.0)
        return 1.0

    def acquire(self) -> bool:
        """Take permission for one call; in half-open state only one probe at a time."""
        if self.blocked_reason() is not None:
            return False
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self._probe_in_flight = False
        tripped = self.failures >= self._settings.failure_threshold
        if self.state is BreakerState.HALF_OPEN or tripped:
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without a verdict on the deployment (e.g. the client left)."""
        self._probe_in_flight = False

    def mirror(self, failures: int, open_s: float | None) -> None:
        """Take the state the replicas share (:class:`Breakers`): open for ``open_s``
        more seconds (0: the cooldown is over, the next call probes), or closed (None)."""
        self.failures = failures
        self._probe_in_flight = False
        if open_s is None:
            self.state = BreakerState.CLOSED
        else:
            self.state = BreakerState.OPEN
            # as if opened so long ago that ``open_s`` of the cooldown are left
            self._opened_at = self._clock() - self._settings.cooldown_s + max(open_s, 0.0)


class Breakers:
    """The circuit breakers of one executor, by deployment name.

    Without ``shared`` each deployment has a plain local :class:`CircuitBreaker`. With
    it, a failure or success is counted in Redis for all replicas (an open circuit is
    pushed to every replica's mirror at once), and when a mirror's cooldown ends exactly
    one call among all replicas probes the deployment (a lock with the call's timeout as
    TTL). A mirror is read from Redis on a deployment's first use in this process and
    again after the pub/sub connection comes back.

    Every failure is published with the shared count, so a success costs a Redis call
    only when the mirror shows failures to reset (or a circuit to close): a success
    that lands within the pub/sub delay (milliseconds) of another replica's failure may
    leave that failure counted. After a Redis error, calls do not consult Redis before
    they start for :data:`LOCAL_RETRY_S`; failures and successes are still sent.

    Args:
        settings: threshold and cooldown.
        shared: the replicas' Redis, or None for per-process breakers.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, settings: CircuitBreakerSettings, shared: SharedRedis | None = None,
                 *, clock: Callable[[], float] = time.monotonic):
        self.settings = settings
        #: The local breakers (mirrors when shared), by deployment name.
        self.local: dict[str, CircuitBreaker] = {}
        self._clock = clock
        self._shared = None if shared is None else SharedBreakers(shared, self._apply)
        if shared is not None:
            shared.on_reconnect(self._resync_soon)
        self._synced: set[str] = set()
        self._probes: dict[str, str] = {}  # deployment -> token of the probe lock held
        self._reading: dict[str, asyncio.Future[list[BreakerUpdate] | None]] = {}
        self._ids = itertools.count()
        self._origin = uuid.uuid4().hex[:12]
        self._local_until = 0.0
        self._local_mode = False
        self._tasks: set[asyncio.Task[None]] = set()

    def get(self, name: str) -> CircuitBreaker:
        """The local breaker (mirror) of ``name``, created closed on first use."""
        found = self.local.get(name)
        if found is None:
            found = self.local[name] = CircuitBreaker(self.settings, self._clock)
        return found

    async def acquire(self, name: str, *, lock_s: float) -> bool:
        """Permission for one call to ``name``; in half-open state one probe among all
        replicas, holding the shared lock for at most ``lock_s`` (the call's timeout)."""
        breaker = self.get(name)
        shared = self._usable()
        if shared is not None and name not in self._synced:
            await self._sync(shared, name)
        if not breaker.acquire():
            return False
        shared = self._usable()
        if shared is None or breaker.state is not BreakerState.HALF_OPEN:
            return True
        token = f"{self._origin}-{next(self._ids)}"
        probe = await self._ask(shared.probe(name, token=token, lock_s=lock_s))
        if probe is None or probe.verdict is ProbeVerdict.PROBE:
            if probe is not None:
                self._probes[name] = token
            return True
        if probe.verdict is ProbeVerdict.CLOSED:
            breaker.mirror(0, None)
            return True
        wait = probe.wait_s if probe.verdict is ProbeVerdict.OPEN else min(
            probe.wait_s, _BUSY_RECHECK_S)
        breaker.mirror(breaker.failures, wait)
        return False

    async def _sync(self, shared: SharedBreakers, name: str) -> None:
        """Read ``name``'s shared state once: concurrent first calls share one read."""
        reading = self._reading.get(name)
        if reading is None:
            reading = self._reading[name] = asyncio.ensure_future(
                self._ask(shared.read([name])))
            reading.add_done_callback(lambda _: self._reading.pop(name, None))
        updates = await asyncio.shield(reading)
        if updates is not None and name not in self._synced:
            self._synced.add(name)
            self._apply(updates[0])

    def succeeded(self, name: str) -> None:
        """A call to ``name`` succeeded: reset its count and close it, here at once and
        for every replica in the background (the answer does not wait on Redis)."""
        breaker = self.get(name)
        counted = breaker.failures > 0 or breaker.state is not BreakerState.CLOSED
        self._probes.pop(name, None)
        breaker.record_success()
        if counted and self._shared is not None:
            self._background(self._told_success(self._shared, name))

    async def _told_success(self, shared: SharedBreakers, name: str) -> None:
        await self._ask(shared.success(name))

    async def failed(self, name: str) -> None:
        """A call to ``name`` failed through the deployment's fault: count it."""
        breaker = self.get(name)
        was_probe = self._probes.pop(name, None) is not None or (
            breaker.state is BreakerState.HALF_OPEN)
        shared = self._shared
        update = None if shared is None else await self._ask(shared.failure(
            name, threshold=self.settings.failure_threshold,
            cooldown_s=self.settings.cooldown_s, was_probe=was_probe))
        if update is None:
            breaker.record_failure()
        else:
            breaker.mirror(update.failures, update.open_s)

    def released(self, name: str) -> None:
        """A call to ``name`` ended with no verdict on it (the client left, the request's
        own fault): free the probe, here and in Redis."""
        self.get(name).release()
        token = self._probes.pop(name, None)
        if token is not None and self._shared is not None:
            self._background(self._shared.unlock(name, token))

    def _usable(self) -> SharedBreakers | None:
        if self._shared is None or self._clock() < self._local_until:
            return None
        return self._shared

    async def _ask(self, op: Awaitable[_T]) -> _T | None:
        """``op``'s result, or None when Redis failed (then local-only for a while)."""
        try:
            result = await op
        except StateUnavailable:
            if not self._local_mode:
                log.warning("circuit breakers fall back to per-process counts until the "
                            "shared state (Redis) is reachable again")
            self._local_mode = True
            self._local_until = self._clock() + LOCAL_RETRY_S
            return None
        self._local_until = 0.0
        if self._local_mode:
            log.warning("circuit breakers are shared across replicas again")
            self._local_mode = False
        return result

    def _apply(self, update: BreakerUpdate) -> None:
        self.get(update.name).mirror(update.failures, update.open_s)

    def _resync_soon(self) -> None:
        """The pub/sub connection came back: messages may have been missed. Read every
        known state now, and each again before its next call (if this read fails)."""
        self._local_until = 0.0
        self._synced.clear()
        if self._shared is not None and self.local:
            self._background(self._resync(self._shared))

    async def _resync(self, shared: SharedBreakers) -> None:
        names = list(self.local)
        for update in await shared.read(names):
            self._apply(update)
        self._synced.update(names)

    def _background(self, op: Awaitable[None]) -> None:
        async def run() -> None:
            try:
                await op
            except StateUnavailable:
                pass  # logged by SharedRedis; a probe lock expires by itself

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
