"""A deployment's own limits: requests per minute, tokens per minute, calls in flight.

A catalog deployment may declare ``rpm``, ``tpm`` and ``max_concurrency`` (the
provider's quota, or what a self-hosted server can take). :class:`DeploymentLimits`
enforces them for every call the executor makes, retries included:

* ``admit`` (before a call): takes a place in the sliding 60 s windows, or raises
  :class:`~modelmix.errors.DeploymentRateLimited` with the seconds until there is room
  (the executor then moves to the next candidate, as after an upstream 429, without
  counting a breaker failure). The token reservation is the prompt estimate plus
  ``max_tokens``; ``release`` replaces it with the tokens the upstream reported. A call
  that may make several upstream requests (``n > 1`` choices, fanned out) takes as
  many places in the rpm window (``requests``) and is refused whole when they do not
  fit.
* ``hold`` (inside the call's timeout): waits for a concurrency slot.
* ``release`` (when the answer, or the stream, ends): frees the slot, settles tokens.

With shared state (:class:`SharedRedis`) the windows are exact across replicas: one Lua
script checks and takes both windows atomically in Redis server time (sorted sets of
request times, and of ``id:tokens`` with a running sum), and a concurrency slot is a
*lease* in a sorted set scored by its expiry: held leases are renewed every
``LEASE_TTL_S / 3`` seconds, so a replica that crashes frees its slots within
:data:`LEASE_TTL_S`. A release publishes the deployment's name so that waiters on
every replica try again at once (else they poll every 50 ms).

Every call is also counted in this process's own windows. They decide only without
Redis, or when Redis is unreachable and ``state.on_redis_down`` is ``local``; with
``closed`` (the default) an unreachable Redis refuses the call with a 503
(:class:`~modelmix.errors.StateUnavailable`).

Example::

    limits = DeploymentLimits(shared)                 # shared=None: per process
    ticket = await limits.admit(dep, tokens=1200)     # DeploymentRateLimited / 503
    async with asyncio.timeout(30):
        await limits.hold(ticket)
    ...                                               # the upstream call
    await limits.release(ticket, tokens=usage.total_tokens)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from modelmix.catalog import Deployment
from modelmix.errors import DeploymentRateLimited, StateUnavailable
from modelmix.state._redis import SharedRedis

__all__ = ["LEASE_TTL_S", "LOCAL_RETRY_S", "WINDOW_S", "DeploymentLimits", "Ticket"]

log = logging.getLogger("modelmix.state")

#: Length of the rpm / tpm sliding windows, seconds.
WINDOW_S = 60.0

#: A concurrency lease not renewed for this long (s) is freed: its replica is gone.
LEASE_TTL_S = 30.0

#: With ``on_redis_down: local``, after a Redis failure decide in this process for this
#: long (s) before asking Redis again.
LOCAL_RETRY_S = 1.0

#: Waiters for a shared slot try again at least this often (s) without a release message.
_POLL_S = 0.05

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: rpm set, tpm set, tpm sum. ARGV: id, rpm (0: none), tpm (0: none), tokens,
#: window_ms, requests (places taken in the rpm window).
#: Returns {'ok' | 'rpm' | 'tpm', retry_ms (-1: never), used}.
_ADMIT = _NOW + """
local window = tonumber(ARGV[5])
local start = now - window
local rpm, tpm, tokens = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local requests = tonumber(ARGV[6])
if rpm > 0 then
  if requests > rpm then return {'rpm', -1, 0} end
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', start)
  local n = redis.call('ZCARD', KEYS[1])
  if n + requests > rpm then
    local k = n + requests - rpm - 1
    local first = redis.call('ZRANGE', KEYS[1], k, k, 'WITHSCORES')
    return {'rpm', tonumber(first[2]) + window - now, n}
  end
end
local used = 0
if tpm > 0 then
  local gone = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', start)
  local freed = 0
  for _, m in ipairs(gone) do freed = freed + tonumber(string.match(m, ':(%d+)$')) end
  if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', start) end
  if redis.call('ZCARD', KEYS[2]) == 0 then
    redis.call('DEL', KEYS[3])
  elseif freed > 0 then
    redis.call('DECRBY', KEYS[3], freed)
  end
  used = tonumber(redis.call('GET', KEYS[3]) or '0')
  if used + tokens > tpm then
    if tokens > tpm then return {'tpm', -1, used} end
    local entries = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
    local acc = 0
    for i = 1, #entries, 2 do
      acc = acc + tonumber(string.match(entries[i], ':(%d+)$'))
      if used - acc + tokens <= tpm then
        return {'tpm', tonumber(entries[i + 1]) + window - now, used}
      end
    end
    return {'tpm', window, used}
  end
end
if rpm > 0 then
  redis.call('ZADD', KEYS[1], now, ARGV[1])
  for i = 2, requests do redis.call('ZADD', KEYS[1], now, ARGV[1] .. '#' .. i) end
  redis.call('PEXPIRE', KEYS[1], window)
end
if tpm > 0 then
  redis.call('ZADD', KEYS[2], now, ARGV[1] .. ':' .. tokens)
  redis.call('INCRBY', KEYS[3], tokens)
  redis.call('PEXPIRE', KEYS[2], window)
  redis.call('PEXPIRE', KEYS[3], window)
end
return {'ok', 0, used + tokens}
"""

#: KEYS: lease set. ARGV: id, limit, ttl_ms. Returns 1 when the lease was taken.
_LEASE = _NOW + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZCARD', KEYS[1]) < tonumber(ARGV[2]) then
  redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
"""

#: KEYS: lease set. ARGV: ttl_ms, ids... Extends the leases still held.
_RENEW = _NOW + """
local ttl = tonumber(ARGV[1])
local n = 0
for i = 2, #ARGV do n = n + redis.call('ZADD', KEYS[1], 'XX', 'CH', now + ttl, ARGV[i]) end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('PEXPIRE', KEYS[1], ttl) end
return n
"""

#: KEYS: lease set, tpm set, tpm sum. ARGV: id, drop lease (0/1), reserved tokens,
#: actual tokens (-1: keep the reservation), channel, deployment.
_RELEASE = """
if ARGV[2] == '1' and redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  redis.call('PUBLISH', ARGV[5], ARGV[6])
end
local reserved, actual = tonumber(ARGV[3]), tonumber(ARGV[4])
if actual >= 0 and actual ~= reserved then
  local old = ARGV[1] .. ':' .. reserved
  local score = redis.call('ZSCORE', KEYS[2], old)
  if score then
    redis.call('ZREM', KEYS[2], old)
    redis.call('ZADD', KEYS[2], score, ARGV[1] .. ':' .. actual)
    redis.call('INCRBY', KEYS[3], actual - reserved)
  end
end
return 0
"""


@dataclass(slots=True)
class _TokenEntry:
    at: float
    tokens: int
    live: bool = True


@dataclass(slots=True, eq=False)
class Ticket:
    """What :meth:`DeploymentLimits.admit` took for one call; :meth:`~DeploymentLimits.
    hold` and :meth:`~DeploymentLimits.release` take it back.

    Attributes:
        deployment: the deployment called.
        tokens: tokens reserved in its tpm window.
        requests: places taken in its rpm window (upstream requests the call may make).
        id: the call's id in the shared windows and lease set.
        shared: whether the windows were taken in Redis (else in this process only).
        lease: whether a shared concurrency lease is held.
    """

    deployment: Deployment
    tokens: int
    id: str
    requests: int = 1
    shared: bool = False
    lease: bool = False
    entry: _TokenEntry | None = None
    slot: asyncio.Semaphore | None = None
    released: bool = False


class _Window:
    """One deployment's sliding 60 s windows in this process (monotonic seconds)."""

    def __init__(self) -> None:
        self.requests: deque[float] = deque()
        self.tokens: deque[_TokenEntry] = deque()
        self.token_sum = 0

    def trim(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW_S:
            self.requests.popleft()
        while self.tokens and self.tokens[0].at <= now - WINDOW_S:
            old = self.tokens.popleft()
            old.live = False
            self.token_sum -= old.tokens

    def refusal(self, dep: Deployment, now: float, tokens: int,
                requests: int = 1) -> DeploymentRateLimited | None:
        """Why a call of ``tokens`` and ``requests`` may not be admitted now, or None."""
        self.trim(now)
        n = len(self.requests)
        if dep.rpm is not None and n + requests > dep.rpm:
            if requests > dep.rpm:
                return _over_rpm(dep, None, requests)
            return _over_rpm(dep, self.requests[n + requests - dep.rpm - 1] + WINDOW_S - now)
        if dep.tpm is None or self.token_sum + tokens <= dep.tpm:
            return None
        if tokens > dep.tpm:
            return _over_tpm(dep, self.token_sum, tokens, None)
        freed = 0
        for entry in self.tokens:
            freed += entry.tokens
            if self.token_sum - freed + tokens <= dep.tpm:
                return _over_tpm(dep, self.token_sum, tokens, entry.at + WINDOW_S - now)
        return _over_tpm(dep, self.token_sum, tokens, WINDOW_S)

    def take(self, now: float, tokens: int, requests: int = 1) -> _TokenEntry:
        self.requests.extend([now] * requests)
        entry = _TokenEntry(now, tokens)
        self.tokens.append(entry)
        self.token_sum += tokens
        return entry

    def settle(self, entry: _TokenEntry, tokens: int) -> None:
        if entry.live:
            self.token_sum += tokens - entry.tokens
        entry.tokens = tokens


class DeploymentLimits:
    """Enforces each deployment's ``rpm``, ``tpm`` and ``max_concurrency``; see the
    module docstring.

    Args:
        shared: the replicas' Redis (limits hold across them), or None (per process).
        clock: monotonic seconds for the per-process windows (tests pass a fake).
    """

    def __init__(self, shared: SharedRedis | None = None, *,
                 clock: Callable[[], float] = time.monotonic):
        self.shared = shared
        self._clock = clock
        self._windows: dict[str, _Window] = {}
        self._slots: dict[str, asyncio.Semaphore] = {}
        self._wakeups: dict[str, asyncio.Event] = {}
        self._held: dict[str, set[str]] = {}  # deployment -> ids of shared leases held
        self._renewer: asyncio.Task[None] | None = None
        self._cleanups: set[asyncio.Task[None]] = set()
        self._local_mode = False
        self._local_until = 0.0
        if shared is not None:
            self._channel = shared.channel("leases")
            self._admit = shared.script(_ADMIT)
            self._lease = shared.script(_LEASE)
            self._renew = shared.script(_RENEW)
            self._release = shared.script(_RELEASE)
            shared.subscribe(self._channel, self._wake)

    @staticmethod
    def limited(dep: Deployment) -> bool:
        """Whether ``dep`` declares any limit (else :meth:`admit` returns None)."""
        return bool(dep.rpm or dep.tpm or dep.max_concurrency)

    async def admit(self, dep: Deployment, tokens: int, requests: int = 1) -> Ticket | None:
        """Take a place for one call of ``tokens`` (estimated) in ``dep``'s windows,
        ``requests`` places in its rpm window (the upstream requests the call may make:
        ``n`` for a fanned-out ``n > 1``); None when ``dep`` has no limits.

        Raises:
            DeploymentRateLimited: the rpm or tpm window is full (``retry_after`` s).
            StateUnavailable: Redis is unreachable and ``on_redis_down`` is ``closed``.
        """
        if not self.limited(dep):
            return None
        ticket = Ticket(dep, tokens if dep.tpm else 0, uuid.uuid4().hex, max(requests, 1))
        if dep.rpm or dep.tpm:
            ticket.shared = await self._admit_shared(ticket)
            now = self._clock()  # no await from here on: check and take are one step
            window = self._windows.setdefault(dep.name, _Window())
            if not ticket.shared:
                refusal = window.refusal(dep, now, ticket.tokens, ticket.requests)
                if refusal is not None:
                    raise refusal
            ticket.entry = window.take(now, ticket.tokens, ticket.requests)
        return ticket

    async def hold(self, ticket: Ticket | None) -> None:
        """Wait for a concurrency slot of the ticket's deployment (run it under the
        call's timeout: the wait is part of the call).

        Raises:
            StateUnavailable: Redis is unreachable and ``on_redis_down`` is ``closed``.
        """
        if ticket is None or (limit := ticket.deployment.max_concurrency) is None:
            return
        name = ticket.deployment.name
        slot = self._slots.get(name)
        if slot is None:
            slot = self._slots[name] = asyncio.Semaphore(limit)
        await slot.acquire()
        ticket.slot = slot
        shared = self._redis()
        if shared is None:
            return
        try:
            await self._take_lease(shared, ticket)
        except StateUnavailable:
            if shared.fail_closed:
                self._free_slot(ticket)
                raise
            self._went_local()
        except BaseException:  # timed out or cancelled while waiting
            self._free_slot(ticket)
            self._cleanup(shared, ticket)
            raise

    async def release(self, ticket: Ticket | None, tokens: int | None = None) -> None:
        """Free the ticket's slot and settle its tokens (``tokens``: what the upstream
        reported; None keeps the reservation). Idempotent; never raises for Redis."""
        if ticket is None or ticket.released:
            return
        ticket.released = True
        dep = ticket.deployment
        settle = tokens is not None and dep.tpm is not None and tokens != ticket.tokens
        if settle and ticket.entry is not None:
            self._windows[dep.name].settle(ticket.entry, tokens or 0)
        try:
            if self.shared is not None and (ticket.lease or (settle and ticket.shared)):
                self._forget_lease(dep.name, ticket.id)
                with contextlib.suppress(StateUnavailable):  # logged; leases expire
                    await self.shared.call(self._release, _keys(self.shared, dep.name), [
                        ticket.id, int(ticket.lease), ticket.tokens,
                        tokens if settle and ticket.shared and tokens is not None else -1,
                        self._channel, dep.name])
        except asyncio.CancelledError:
            if ticket.lease and self.shared is not None:
                self._cleanup(self.shared, ticket)  # do not keep the slot for a TTL
            raise
        finally:
            self._free_slot(ticket)

    def abandon(self, ticket: Ticket | None) -> None:
        """The call was cut short (cancelled): free its slot now, drop its shared lease
        in the background (keeping its token reservation)."""
        if ticket is None or ticket.released:
            return
        ticket.released = True
        self._free_slot(ticket)
        if ticket.lease and self.shared is not None:
            self._cleanup(self.shared, ticket)

    async def _admit_shared(self, ticket: Ticket) -> bool:
        """True when admitted in Redis; False to decide in this process (no Redis, or
        Redis down with ``on_redis_down: local``)."""
        shared = self._redis()
        if shared is None:
            return False
        dep = ticket.deployment
        keys = [shared.key("dep-rpm", dep.name), *_keys(shared, dep.name)[1:]]
        try:
            verdict, retry_ms, used = await shared.call(self._admit, keys, [
                ticket.id, dep.rpm or 0, dep.tpm or 0, ticket.tokens, int(WINDOW_S * 1000),
                ticket.requests])
        except StateUnavailable:
            if shared.fail_closed:
                raise
            self._went_local()
            return False
        self._back_to_shared()
        retry = None if int(retry_ms) < 0 else max(int(retry_ms), 0) / 1000
        if verdict == "rpm":
            raise _over_rpm(dep, retry, ticket.requests)
        if verdict == "tpm":
            raise _over_tpm(dep, int(used), ticket.tokens, retry)
        return True

    async def _take_lease(self, shared: SharedRedis, ticket: Ticket) -> None:
        dep = ticket.deployment
        key = _keys(shared, dep.name)[0]
        wake = self._wakeups.setdefault(dep.name, asyncio.Event())
        while True:
            wake.clear()
            taken = await shared.call(self._lease, [key], [
                ticket.id, dep.max_concurrency or 0, int(LEASE_TTL_S * 1000)])
            if taken:
                self._back_to_shared()
                ticket.lease = True
                self._held.setdefault(dep.name, set()).add(ticket.id)
                self._keep_renewing(shared)
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), _POLL_S)

    def _keep_renewing(self, shared: SharedRedis) -> None:
        if self._renewer is None or self._renewer.done():
            self._renewer = asyncio.get_running_loop().create_task(
                self._renew_leases(shared), name="modelmix-lease-renewal")

    async def _renew_leases(self, shared: SharedRedis) -> None:
        while self._held:
            await asyncio.sleep(LEASE_TTL_S / 3)
            for name, ids in list(self._held.items()):
                if ids:
                    with contextlib.suppress(StateUnavailable):
                        await shared.call(self._renew, [shared.key("dep-leases", name)],
                                          [int(LEASE_TTL_S * 1000), *ids])

    def _forget_lease(self, name: str, lease_id: str) -> None:
        ids = self._held.get(name)
        if ids is not None:
            ids.discard(lease_id)
            if not ids:
                del self._held[name]
        if not self._held and self._renewer is not None:
            self._renewer.cancel()
            self._renewer = None

    def _cleanup(self, shared: SharedRedis, ticket: Ticket) -> None:
        """A wait for a lease was cut short: drop the lease in case Redis took it."""
        name = ticket.deployment.name
        self._forget_lease(name, ticket.id)
        ticket.lease = False

        async def drop() -> None:
            with contextlib.suppress(StateUnavailable):
                await shared.call(self._release, _keys(shared, name),
                                  [ticket.id, 1, 0, -1, self._channel, name])

        task = asyncio.get_running_loop().create_task(drop())
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def _free_slot(self, ticket: Ticket) -> None:
        if ticket.slot is not None:
            ticket.slot.release()
            ticket.slot = None

    def _wake(self, name: str) -> None:
        event = self._wakeups.get(name)
        if event is not None:
            event.set()

    def _redis(self) -> SharedRedis | None:
        """The Redis to ask now; None: decide in this process (no Redis, or it failed
        under ``on_redis_down: local`` less than :data:`LOCAL_RETRY_S` ago, so that an
        unreachable Redis does not cost every call a timeout)."""
        if self.shared is None or (self._local_mode and self._clock() < self._local_until):
            return None
        return self.shared

    def _went_local(self) -> None:
        if not self._local_mode:
            log.warning("deployment rpm / tpm / max_concurrency fall back to per-process "
                        "limits until the shared state (Redis) is reachable again "
                        "(state.on_redis_down: local)")
        self._local_mode = True
        self._local_until = self._clock() + LOCAL_RETRY_S

    def _back_to_shared(self) -> None:
        if self._local_mode:
            log.warning("deployment limits are shared across replicas again")
        self._local_mode = False


def _keys(shared: SharedRedis, name: str) -> list[str]:
    """A deployment's lease set, tpm set and tpm sum."""
    return [shared.key("dep-leases", name), shared.key("dep-tpm", name),
            shared.key("dep-tpm-sum", name)]


def _over_rpm(dep: Deployment, retry_s: float | None,
              requests: int = 1) -> DeploymentRateLimited:
    if retry_s is None:
        return DeploymentRateLimited(
            f"a request of {requests} upstream calls (n choices) is more than deployment "
            f"{dep.name}'s limit of {dep.rpm} requests per minute", deployment=dep.name)
    return DeploymentRateLimited(
        f"deployment {dep.name} reached its limit of {dep.rpm} requests per minute",
        retry_after=max(retry_s, 0.0), deployment=dep.name)


def _over_tpm(dep: Deployment, used: int, tokens: int,
              retry_s: float | None) -> DeploymentRateLimited:
    if retry_s is None:
        return DeploymentRateLimited(
            f"a request of ~{tokens} tokens is more than deployment {dep.name}'s limit of "
            f"{dep.tpm} tokens per minute", deployment=dep.name)
    return DeploymentRateLimited(
        f"deployment {dep.name} reached its limit of {dep.tpm} tokens per minute "
        f"({used} used in the last minute, ~{tokens} needed)",
        retry_after=max(retry_s, 0.0), deployment=dep.name)
