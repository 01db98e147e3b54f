"""Circuit-breaker state shared by the replicas: one count of consecutive failures per
deployment, one open-until time, one half-open probe, all in Redis.

Each replica keeps its own :class:`~modelmix.engine.CircuitBreaker` per deployment as a
*mirror* (so routing's health check stays a sync call with no Redis round trip) and
asks :class:`SharedBreakers` at the moments that change the state:

* ``failure``: INCR the deployment's count (expiring after :data:`FAILURES_TTL_S`
  without a new failure); at the threshold, or when the failed call was the half-open
  probe, write "open until <Redis server time + cooldown>"; PUBLISH the new state, all
  in one Lua script: every replica's mirror takes the count, and opens for the cooldown
  left as the message arrives;
* ``success``: delete the count; if the circuit was open or half-open, delete that
  state and PUBLISH "closed";
* ``probe``: after the cooldown, ``SET NX PX`` of a probe lock: exactly one call among
  all replicas probes the deployment; the others see "busy" and keep it excluded;
* ``read``: the current state of some deployments (first use in a process, and after
  the pub/sub connection was lost, since messages sent meanwhile are gone).

Times are computed in Redis (``TIME``) and sent as *seconds left*, so the replicas'
clocks never need to agree. This module only talks to Redis and raises
:class:`~modelmix.errors.StateUnavailable` when it cannot; what a breaker does then
(fall back to this process's own count, logged) is the engine's choice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from modelmix.state._redis import SharedRedis

__all__ = ["FAILURES_TTL_S", "BreakerUpdate", "Probe", "ProbeVerdict", "SharedBreakers"]

log = logging.getLogger("modelmix.state")

#: A deployment's shared failure count is forgotten after this many seconds without a
#: new failure (a count that only ever grows would trip on failures hours apart).
FAILURES_TTL_S = 600.0

#: An open circuit's record outlives its cooldown by this much (seconds) so that the
#: half-open probe stays single; after it, with no traffic, the circuit reads closed.
_STATE_GRACE_S = 600.0

#: Redis server time in ms, as the first lines of every script.
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""

#: KEYS: failures, state, probe. ARGV: threshold, cooldown_ms, failures_ttl_ms,
#: grace_ms, was_probe (0/1), channel, name. Publishes and returns the new state:
#: {failures, open_ms | -1 (closed)}.
_FAILURE = _NOW + """
local n = redis.call('INCR', KEYS[1])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
local cooldown = tonumber(ARGV[2])
local left = -1
if n >= tonumber(ARGV[1]) or ARGV[5] == '1' then
  redis.call('SET', KEYS[2], now + cooldown, 'PX', cooldown + tonumber(ARGV[4]))
  redis.call('DEL', KEYS[3])
  left = cooldown
else
  local opened = redis.call('GET', KEYS[2])
  if opened then left = math.max(tonumber(opened) - now, 0) end
end
redis.call('PUBLISH', ARGV[6], cjson.encode({d = ARGV[7], open_ms = left, failures = n}))
return {n, left}
"""

#: KEYS: failures, state, probe. ARGV: channel, name. Returns 1 when it closed a circuit.
_SUCCESS = """
redis.call('DEL', KEYS[1])
if redis.call('DEL', KEYS[2], KEYS[3]) > 0 then
  redis.call('PUBLISH', ARGV[1], cjson.encode({d = ARGV[2], open_ms = -1, failures = 0}))
  return 1
end
return 0
"""

#: KEYS: state, probe. ARGV: token, lock_ms. Returns {verdict, ms}.
_PROBE = _NOW + """
local opened = redis.call('GET', KEYS[1])
if not opened then return {'closed', 0} end
local left = tonumber(opened) - now
if left > 0 then return {'open', left} end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then return {'probe', 0} end
return {'busy', math.max(redis.call('PTTL', KEYS[2]), 0)}
"""

#: KEYS: probe. ARGV: token. Frees the probe lock if this caller still holds it.
_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""

#: KEYS: (failures, state) per deployment. Returns {failures, open_ms | -1} per pair.
_READ = _NOW + """
local out = {}
for i = 1, #KEYS, 2 do
  local n = tonumber(redis.call('GET', KEYS[i]) or '0')
  local opened = redis.call('GET', KEYS[i + 1])
  local left = -1
  if opened then left = math.max(tonumber(opened) - now, 0) end
  out[#out + 1] = n
  out[#out + 1] = left
end
return out
"""


@dataclass(frozen=True, slots=True)
class BreakerUpdate:
    """A deployment's shared circuit state.

    Attributes:
        name: the deployment.
        failures: consecutive failures counted across replicas.
        open_s: seconds the circuit stays open (0: cooldown over, the next call probes);
            None when it is closed.
    """

    name: str
    failures: int
    open_s: float | None


class ProbeVerdict(StrEnum):
    """What :meth:`SharedBreakers.probe` found once a mirror's cooldown ended."""

    #: No replica holds the circuit open (another one's probe closed it): call.
    CLOSED = "closed"
    #: Still open (another replica reopened it); ``Probe.wait_s`` left.
    OPEN = "open"
    #: This caller holds the single probe: call, then report success or failure.
    PROBE = "probe"
    #: Another replica is probing; ``Probe.wait_s`` until its lock expires at the latest.
    BUSY = "busy"


@dataclass(frozen=True, slots=True)
class Probe:
    verdict: ProbeVerdict
    wait_s: float


class SharedBreakers:
    """The breaker primitives over one :class:`SharedRedis`; see the module docstring.

    Args:
        shared: the process's Redis connection.
        on_update: told of every state another replica (or this one) published, and of
            each state re-read after the pub/sub connection came back; runs on the event
            loop and must not block.

    Example::

        breakers = SharedBreakers(shared, on_update=mirror)     # before shared.start()
        update = await breakers.failure("gpt", threshold=5, cooldown_s=30, was_probe=False)
        probe = await breakers.probe("gpt", token="r1-7", lock_s=300)
    """

    def __init__(self, shared: SharedRedis, on_update: Callable[[BreakerUpdate], None]):
        self.shared = shared
        self.channel = shared.channel("breakers")
        self._on_update = on_update
        self._failure = shared.script(_FAILURE)
        self._success = shared.script(_SUCCESS)
        self._probe = shared.script(_PROBE)
        self._unlock = shared.script(_UNLOCK)
        self._read = shared.script(_READ)
        shared.subscribe(self.channel, self._message)

    def _keys(self, name: str) -> list[str]:
        return [self.shared.key("breaker-failures", name), self.shared.key("breaker", name),
                self.shared.key("breaker-probe", name)]

    async def failure(self, name: str, *, threshold: int, cooldown_s: float,
                      was_probe: bool) -> BreakerUpdate:
        """Count one failure of ``name``; open the circuit for every replica at
        ``threshold`` consecutive failures, or at once when ``was_probe``.

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        n, open_ms = await self.shared.call(self._failure, self._keys(name), [
            threshold, _ms(cooldown_s), _ms(FAILURES_TTL_S), _ms(_STATE_GRACE_S),
            int(was_probe), self.channel, name])
        return BreakerUpdate(name, int(n), _seconds(open_ms))

    async def success(self, name: str) -> bool:
        """Reset ``name``'s count; close its circuit for every replica if it was open.
        True when it closed one.

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        closed = await self.shared.call(self._success, self._keys(name), [self.channel, name])
        return bool(closed)

    async def probe(self, name: str, *, token: str, lock_s: float) -> Probe:
        """Ask to probe ``name`` once its cooldown is over. The lock holds for
        ``lock_s`` (the probe call's timeout) unless released by :meth:`unlock`,
        :meth:`success` or :meth:`failure`.

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        _, state, lock = self._keys(name)
        verdict, ms = await self.shared.call(self._probe, [state, lock], [token, _ms(lock_s)])
        return Probe(ProbeVerdict(verdict), int(ms) / 1000)

    async def unlock(self, name: str, token: str) -> None:
        """Free the probe lock taken with ``token`` (the probe ended with no verdict).

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        await self.shared.call(self._unlock, [self._keys(name)[2]], [token])

    async def read(self, names: Iterable[str]) -> list[BreakerUpdate]:
        """The shared state of each of ``names``.

        Raises:
            StateUnavailable: Redis is unreachable.
        """
        names = list(names)
        if not names:
            return []
        keys = [key for name in names for key in self._keys(name)[:2]]
        flat = await self.shared.call(self._read, keys)
        return [BreakerUpdate(name, int(flat[2 * i]), _seconds(flat[2 * i + 1]))
                for i, name in enumerate(names)]

    def _message(self, data: str) -> None:
        try:
            body: dict[str, Any] = json.loads(data)
            update = BreakerUpdate(str(body["d"]), int(body["failures"]),
                                   _seconds(body["open_ms"]))
        except (ValueError, KeyError, TypeError):
            log.warning("ignored a malformed breaker message on %s", self.channel)
            return
        self._on_update(update)


def _ms(seconds: float) -> int:
    return max(round(seconds * 1000), 1)


def _seconds(ms: Any) -> float | None:
    value = int(ms)
    return None if value < 0 else value / 1000
