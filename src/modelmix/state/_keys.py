"""Per-key budget reservations, RPM and TPM windows, shared by replicas in Redis.

:class:`SharedKeyState` holds, for each virtual key, what
:class:`~modelmix.server._limits.KeyLimiter` holds in one process, and checks and
reserves in one Lua script, so every replica sees one budget and one pair of windows:

* ``reserve`` sweeps expired reservations (charged as spent: the upstream may have
  billed them), then checks, in KeyLimiter's order, the budget (one request at a time
  once an upstream billed past a reservation; spent + reserved + cost <= budget), the
  exact sliding RPM window and the TPM window, and reserves. All in Redis server time
  (``TIME``), so the replicas' clocks do not matter.
* ``settle`` replaces a reservation with the actual cost and tokens; it is idempotent
  (a retried settle that already landed does nothing) and corrects a reservation that
  expired and was charged meanwhile.
* ``cancel`` releases a reservation whose ``reserve`` call failed (it may have run), so
  a request refused for a Redis error is neither charged nor counted.
* ``credit`` adds spend settled outside Redis (by a replica's local fallback while Redis
  was unreachable), once per token.

A call whose reply is lost (the client timed out, the script ran) is retried with the
same token, and lands once: the retry finds the token settled, cancelled or credited, and
adds nothing.
Spend that reaches Redis after it was persisted in the database (a credit, or the settle
of a reservation from before Redis lost the key's state) is not added to a spend seeded
from the database after it was persisted (the seed has it): ``reserve`` records when the
seed's database read began (``floor_read_after_ms``, Redis time), each such amount says
how long ago it was handed to the database, and one handed over more than
``persist_lag_s`` before that read is skipped. One handed over later may be in the seed or
not, and is added (the conservative side).

Every Redis key expires: spend and reservations after ``keep_s`` (7 days) unused, the
windows after twice their length. A key's spend is seeded from the database's
``spent_usd`` when Redis has none (first use, Redis restarted or the key idle for a
week): ``reserve`` returns None until the caller passes ``spent_floor_usd``.

Keys (``{id}`` is a Redis cluster hash tag, so one key's data lives in one slot)::

    <prefix>key:{id}:s  hash   spent, reserved, n (in flight), oaat, epoch, seeded (ms)
    <prefix>key:{id}:r  hash   token -> reserved USD
    <prefix>key:{id}:x  zset   token -> expiry (ms, Redis time)
    <prefix>key:{id}:w  zset   token -> admission time (ms): the RPM / TPM window
    <prefix>key:{id}:t  hash   token -> tokens in the window, _sum -> their total
    <prefix>key:{id}:d  zset   token -> when its tombstone is dropped (ms)
    <prefix>key:{id}:g  hash   token -> "e<USD>" expired and charged | "x" cancelled
                               | "c" counted outside (credited, or settled in a lost state)

Example::

    keys = SharedKeyState(shared)
    token = new_token()
    got = await keys.reserve("k1", token, budget_usd=5.0, rpm=60, tpm=None,
                             cost_usd=0.07, tokens=812, spent_floor_usd=None, ttl_s=660)
    if got is None:                       # no spend in Redis yet: seed it
        read_after = await keys.redis_ms()
        got = await keys.reserve(..., spent_floor_usd=spent_in_database,
                                 floor_read_after_ms=read_after)
    if isinstance(got, Admitted):
        ...
        await keys.settle(got.reservation, cost_usd=0.012, tokens=700)
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from modelmix.errors import StateUnavailable
from modelmix.state._redis import SharedRedis

__all__ = [
    "KEY_CHANGES",
    "PERSIST_LAG_S",
    "Admitted",
    "Credited",
    "KeyChange",
    "KeyFigures",
    "Refused",
    "Settled",
    "SharedKeyState",
    "SharedReservation",
    "key_change_message",
    "new_token",
    "parse_key_change",
    "publish_key_change",
]

#: Pub/sub channel name (under the prefix) on which key changes are announced.
KEY_CHANGES = "keys"

#: Seconds a key's spend and reservations live in Redis after their last use.
KEEP_S = 7 * 86400

#: Seconds an expired (charged) reservation is remembered, so that its late settle
#: replaces the charge with the actual cost.
EXPIRED_KEEP_S = 86400

#: Seconds after which spend handed to the database writer is surely in the database
#: (SpendLedger batches for 0.2 s, then writes): spend handed over longer before a seed's
#: database read began is in that seed.
PERSIST_LAG_S = 0.5

#: Rounding slack (USD) when comparing spend with a budget, as in one process.
_EPSILON_USD = 1e-9

KeyChange = Literal["create", "revoke", "update"]
RefusalKind = Literal["budget", "one_at_a_time", "rpm", "tpm", "tpm_request"]
SettleStatus = Literal["settled", "late", "lost", "done"]
CreditStatus = Literal["added", "seeded", "done", "none"]

_COMMON = """
local function num(v) return tonumber(v) or 0 end
local function fmt(x) return string.format('%.17g', x) end
local function clock()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + tonumber(t[2]) / 1000
end
local function has_state() return redis.call('HEXISTS', KEYS[1], 'spent') == 1 end
local function keep(keep_s, window_s)
  for _, i in ipairs({1, 2, 3, 6, 7}) do redis.call('EXPIRE', KEYS[i], keep_s) end
  redis.call('EXPIRE', KEYS[4], window_s)
  redis.call('EXPIRE', KEYS[5], window_s)
end
local function bury(token, mark, until_ms)
  redis.call('HSET', KEYS[7], token, mark)
  redis.call('ZADD', KEYS[6], until_ms, token)
end
-- Whether spend handed to the database age_ms ago (measured before this call was sent,
-- so now - age_ms is not before that) was surely there when the database read of the
-- current seed began (its 'seeded' time, not after that read; '' when unknown).
local function in_seed(now, seeded, age_ms, lag_ms)
  local at = tonumber(seeded)
  return at ~= nil and now - tonumber(age_ms) + tonumber(lag_ms) < at
end
-- Drop old tombstones; charge expired reservations as spent (returns the USD charged).
local function sweep(now, expired_keep_ms)
  local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', now)
  for i = 1, #old do redis.call('HDEL', KEYS[7], old[i]) end
  if #old > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now) end
  local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
  if #gone == 0 then return 0 end
  local charged = 0
  for i = 1, #gone do
    local cost = num(redis.call('HGET', KEYS[2], gone[i]))
    charged = charged + cost
    redis.call('HDEL', KEYS[2], gone[i])
    bury(gone[i], 'e' .. fmt(cost), now + expired_keep_ms)
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
  local st = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'n')
  local n = math.max(num(st[3]) - #gone, 0)
  local reserved = 0
  if n > 0 then reserved = num(st[2]) - charged end
  redis.call('HSET', KEYS[1], 'spent', fmt(num(st[1]) + charged), 'reserved', fmt(reserved),
             'n', n)
  return charged
end
-- Forget window entries admitted at or before now - window_ms.
local function prune(now, window_ms)
  local edge = now - window_ms
  local old = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', edge)
  if #old == 0 then return end
  local sum = num(redis.call('HGET', KEYS[5], '_sum'))
  for i = 1, #old do
    sum = sum - num(redis.call('HGET', KEYS[5], old[i]))
    redis.call('HDEL', KEYS[5], old[i])
  end
  redis.call('HSET', KEYS[5], '_sum', sum)
  redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', edge)
end
"""

# ARGV: token, cost, tokens, budget|'', rpm|'', tpm|'', floor|'', ttl_ms, window_ms,
#       keep_s, new epoch, expired_keep_ms, floor read after (ms)|''
_RESERVE = _COMMON + """
local token, cost, tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local budget, rpm, tpm = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local window_ms = tonumber(ARGV[9])
local now = clock()
if redis.call('HEXISTS', KEYS[7], token) == 1 then return {'cancelled'} end
local charged = 0
if not has_state() then
  local floor = tonumber(ARGV[7])
  if floor == nil then return {'seed'} end
  redis.call('DEL', KEYS[2], KEYS[3])
  redis.call('HSET', KEYS[1], 'spent', fmt(floor), 'reserved', '0', 'n', 0, 'oaat', 0,
             'epoch', ARGV[11], 'seeded', ARGV[13])
else
  charged = sweep(now, tonumber(ARGV[12]))
end
keep(tonumber(ARGV[10]), math.ceil(2 * window_ms / 1000))
local st = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'n', 'oaat', 'epoch')
local spent, reserved, n, oaat = num(st[1]), num(st[2]), num(st[3]), num(st[4])
local function answer(kind, retry, used)
  return {kind, fmt(charged), fmt(spent), fmt(reserved), tostring(n), st[5],
          retry or '', tostring(used or 0)}
end
if budget ~= nil then
  if oaat == 1 and n > 0 then return answer('one_at_a_time') end
  if spent + reserved + cost > budget + 1e-9 then return answer('budget') end
end
prune(now, window_ms)
if rpm ~= nil then
  local count = redis.call('ZCARD', KEYS[4])
  if count >= rpm then
    local at = redis.call('ZRANGE', KEYS[4], count - rpm, count - rpm, 'WITHSCORES')
    return answer('rpm', fmt((tonumber(at[2]) + window_ms - now) / 1000))
  end
end
local sum = num(redis.call('HGET', KEYS[5], '_sum'))
if tpm ~= nil and sum + tokens > tpm then
  if tokens > tpm then return answer('tpm_request', nil, sum) end
  local entries = redis.call('ZRANGE', KEYS[4], 0, -1, 'WITHSCORES')
  local freed, retry = 0, window_ms
  for i = 1, #entries, 2 do
    freed = freed + num(redis.call('HGET', KEYS[5], entries[i]))
    if sum - freed + tokens <= tpm then
      retry = tonumber(entries[i + 1]) + window_ms - now
      break
    end
  end
  return answer('tpm', fmt(retry / 1000), sum)
end
reserved = reserved + cost
n = n + 1
redis.call('HSET', KEYS[1], 'reserved', fmt(reserved), 'n', n)
redis.call('HSET', KEYS[2], token, fmt(cost))
redis.call('ZADD', KEYS[3], now + tonumber(ARGV[8]), token)
redis.call('ZADD', KEYS[4], now, token)
redis.call('HSET', KEYS[5], token, tokens, '_sum', sum + tokens)
return answer('ok')
"""

# ARGV: token, charge, tokens, 'settle'|'cancel', epoch|'', window_ms, keep_s,
#       expired_keep_ms, cancelled_keep_ms, persisted_age_ms, lag_ms
_SETTLE = _COMMON + """
local token, cost, tokens = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local settle, epoch = ARGV[4] == 'settle', ARGV[5]
local window_ms = tonumber(ARGV[6])
local now = clock()
if not has_state() then
  -- Redis lost this key's state: the spend is persisted in the database, from which the
  -- next reservation seeds it (a retry after that seed adds nothing); a cancel still
  -- stops a delayed reserve of this token.
  if settle then
    bury(token, 'c', now + tonumber(ARGV[8]))
  else
    bury(token, 'x', now + tonumber(ARGV[9]))
  end
  keep(tonumber(ARGV[7]), math.ceil(2 * window_ms / 1000))
  return {'lost', '0', '0', '0', '0', '0', '0'}
end
local charged = sweep(now, tonumber(ARGV[8]))
keep(tonumber(ARGV[7]), math.ceil(2 * window_ms / 1000))
local st = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'n', 'oaat', 'epoch',
                      'seeded')
local spent, reserved, n, oaat = num(st[1]), num(st[2]), num(st[3]), num(st[4])
local correction, over, status = 0, 0, 'done'
local function in_window()
  if redis.call('ZSCORE', KEYS[4], token) == false then return end
  local sum = num(redis.call('HGET', KEYS[5], '_sum'))
  local was = num(redis.call('HGET', KEYS[5], token))
  if settle then
    redis.call('HSET', KEYS[5], token, tokens, '_sum', sum + tokens - was)
  else  -- a refused request counts towards neither window
    redis.call('HDEL', KEYS[5], token)
    redis.call('HSET', KEYS[5], '_sum', sum - was)
    redis.call('ZREM', KEYS[4], token)
  end
end
local function charge(bound)
  if not settle then return 0 end
  if cost > bound + 1e-9 and oaat == 0 then oaat, over = 1, 1 end
  return cost
end
local held = redis.call('HGET', KEYS[2], token)
local gone = redis.call('HGET', KEYS[7], token)
if held then
  redis.call('HDEL', KEYS[2], token)
  redis.call('ZREM', KEYS[3], token)
  n = math.max(n - 1, 0)
  if n > 0 then reserved = reserved - tonumber(held) else reserved = 0 end
  spent = spent + charge(tonumber(held))
  in_window()
  status = 'settled'
elseif gone and string.sub(gone, 1, 1) == 'e' then
  local was = tonumber(string.sub(gone, 2))
  spent = spent - was + charge(was)
  correction = -was
  redis.call('HDEL', KEYS[7], token)
  redis.call('ZREM', KEYS[6], token)
  in_window()
  status = 'late'
elseif gone then
  status = 'done'
elseif epoch ~= '' and epoch ~= st[5] then
  -- reserved in a state Redis lost since; reseeded from the database, which has this
  -- cost unless it was persisted too shortly before the seed's read
  if settle then
    if not in_seed(now, st[6], ARGV[10], ARGV[11]) then spent = spent + charge(math.huge) end
    bury(token, 'c', now + tonumber(ARGV[8]))
  end
  status = 'lost'
elseif not settle then
  bury(token, 'x', now + tonumber(ARGV[9]))
end
redis.call('HSET', KEYS[1], 'spent', fmt(spent), 'reserved', fmt(reserved), 'n', n,
           'oaat', oaat)
return {status, fmt(charged), fmt(correction), tostring(over), fmt(spent), fmt(reserved),
        tostring(n)}
"""

# ARGV: usd, expired_keep_ms, window_ms, keep_s, token|'' (read and sweep only),
#       persisted_age_ms, lag_ms
_CREDIT = _COMMON + """
local token = ARGV[5]
local now = clock()
local keep_s, window_s = tonumber(ARGV[4]), math.ceil(2 * tonumber(ARGV[3]) / 1000)
if not has_state() then
  -- the database has it, and seeds the next reservation; a retry after that adds nothing
  if token ~= '' and redis.call('HEXISTS', KEYS[7], token) == 0 then
    bury(token, 'c', now + tonumber(ARGV[2]))
    keep(keep_s, window_s)
  end
  return {'none'}
end
local charged = sweep(now, tonumber(ARGV[2]))
keep(keep_s, window_s)
local st = redis.call('HMGET', KEYS[1], 'spent', 'reserved', 'n', 'seeded')
local spent, status = num(st[1]), 'read'
if token ~= '' then
  if redis.call('HEXISTS', KEYS[7], token) == 1 then
    status = 'done'
  else
    if in_seed(now, st[4], ARGV[6], ARGV[7]) then
      status = 'seeded'
    else
      spent = spent + tonumber(ARGV[1])
      redis.call('HSET', KEYS[1], 'spent', fmt(spent))
      status = 'added'
    end
    bury(token, 'c', now + tonumber(ARGV[2]))
  end
end
return {status, fmt(charged), fmt(spent), st[2], st[3]}
"""


def new_token() -> str:
    """A fresh reservation token (random, 16 hex digits)."""
    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class KeyFigures:
    """A key's shared figures as Redis last reported them.

    Attributes:
        spent_usd: settled spend, expired reservations included, USD.
        reserved_usd: held by requests in flight on every replica, USD.
        in_flight: requests admitted and not settled, on every replica.
    """

    spent_usd: float
    reserved_usd: float
    in_flight: int


@dataclass(slots=True)
class SharedReservation:
    """One reservation in Redis; what ``admit`` hands to ``settle``.

    Attributes:
        key_id: the key that reserved.
        token: the reservation's id in Redis.
        cost_usd: reserved upper bound of the request's cost, USD.
        tokens: reserved tokens (prompt estimate + ``max_tokens``).
        epoch: the key's Redis state this was reserved in (changes when Redis lost it).
        settled: whether ``settle`` was called (a second call is ignored).
    """

    key_id: str
    token: str
    cost_usd: float
    tokens: int
    epoch: str
    settled: bool = False

    def charge(self, cost_usd: float, unknown: bool) -> float:
        """What settling charges, USD: the actual cost, or at least the reservation when
        ``unknown`` (cut off after reaching an upstream, which may bill it in full)."""
        return max(cost_usd, self.cost_usd) if unknown else cost_usd


@dataclass(frozen=True, slots=True)
class Admitted:
    """``reserve`` took the reservation.

    Attributes:
        reservation: to hand to ``settle``.
        figures: the key's figures after reserving.
        ledger_usd: USD of expired reservations this call charged; the caller persists
            it (SpendLedger) as it does settled spend.
    """

    reservation: SharedReservation
    figures: KeyFigures
    ledger_usd: float


@dataclass(frozen=True, slots=True)
class Refused:
    """``reserve`` refused the request; nothing was reserved or counted.

    Attributes:
        kind: ``budget`` (spent + reserved + cost > budget), ``one_at_a_time`` (an
            upstream billed past a reservation and a request is in flight), ``rpm``,
            ``tpm`` (window full) or ``tpm_request`` (the request alone exceeds tpm).
        figures: the key's figures.
        ledger_usd: as for :class:`Admitted`.
        retry_after_s: seconds until it may fit (rpm, tpm), else None.
        window_tokens: tokens in the TPM window.
    """

    kind: RefusalKind
    figures: KeyFigures
    ledger_usd: float
    retry_after_s: float | None
    window_tokens: int


@dataclass(frozen=True, slots=True)
class Settled:
    """What ``settle`` / ``cancel`` did.

    Attributes:
        status: ``settled`` (released and charged), ``late`` (it had expired and been
            charged its reservation: replaced by the actual cost), ``lost`` (Redis lost
            the key's state since: the cost was added to the reseeded spend unless the
            seed has it, or to nothing when Redis holds no spend yet), ``done``
            (already settled or cancelled: nothing changed).
        figures: the key's figures after it (zeros when ``lost`` and Redis holds none).
        ledger_usd: USD the caller adds to its persisted spend beyond the cost it
            persisted at settle time: expired reservations charged by this call, minus
            the charge a ``late`` settle replaces.
        over_bound: the cost exceeded the reservation, and the key now admits one
            request at a time (first time only).
    """

    status: SettleStatus
    figures: KeyFigures
    ledger_usd: float
    over_bound: bool


@dataclass(frozen=True, slots=True)
class Credited:
    """What ``credit`` did.

    Attributes:
        status: ``added`` (to the key's shared spend), ``seeded`` (not added: the spend
            was seeded from the database after it was persisted there), ``done`` (this
            token was counted before: nothing changed) or ``none`` (Redis holds no
            spend for the key: the next reservation seeds it from the database).
        figures: the key's figures after it, None when ``none``.
        ledger_usd: USD of expired reservations this call charged, to persist.
    """

    status: CreditStatus
    figures: KeyFigures | None
    ledger_usd: float


class SharedKeyState:
    """Budgets, RPM and TPM of virtual keys in Redis (module docstring).

    Args:
        shared: the process's Redis connection.
        window_s: length of the RPM / TPM windows, seconds (60; tests shorten it).
        keep_s: seconds a key's spend and reservations live after their last use.
        persist_lag_s: seconds after which spend handed to the database writer is surely
            in the database (:data:`PERSIST_LAG_S`).
    """

    def __init__(self, shared: SharedRedis, *, window_s: float = 60.0, keep_s: int = KEEP_S,
                 persist_lag_s: float = PERSIST_LAG_S):
        self.shared = shared
        self.window_s = window_s
        self.keep_s = keep_s
        self.persist_lag_s = persist_lag_s
        self._reserve = shared.script(_RESERVE)
        self._settle = shared.script(_SETTLE)
        self._credit = shared.script(_CREDIT)

    def __repr__(self) -> str:
        return f"SharedKeyState({self.shared!r}, window_s={self.window_s})"

    def _keys(self, key_id: str) -> list[str]:
        return [self.shared.key("key", f"{{{key_id}}}:{part}") for part in "srxwtdg"]

    async def reserve(
        self,
        key_id: str,
        token: str,
        *,
        budget_usd: float | None,
        rpm: int | None,
        tpm: int | None,
        cost_usd: float,
        tokens: int,
        spent_floor_usd: float | None,
        ttl_s: float,
        floor_read_after_ms: float | None = None,
    ) -> Admitted | Refused | None:
        """Check the key's limits and reserve ``cost_usd`` (USD) and ``tokens``, atomically.

        ``spent_floor_usd``: the key's spend in the database, USD, used only when Redis
        holds none; with None, such a call returns None (ask the database, call again).
        ``floor_read_after_ms``: a Redis time (:meth:`redis_ms`) taken before the
        database read of ``spent_floor_usd`` began; spend persisted well before it is not
        added again by a later ``credit`` or lost ``settle`` (None: unknown, they add).
        ``ttl_s``: seconds after which an unsettled reservation is charged as spent.
        ``token`` (:func:`new_token`, a new one per call) names the reservation.

        Raises:
            StateUnavailable: Redis could not be reached, or ``token`` was cancelled
                (:meth:`cancel`) before this call reached Redis.
        """
        args: list[str | int | float] = [
            token, _f(cost_usd), tokens, _opt(budget_usd), _opt(rpm), _opt(tpm),
            _opt(spent_floor_usd), _ms(ttl_s), _ms(self.window_s), self.keep_s,
            new_token(), _ms(EXPIRED_KEEP_S), _opt(floor_read_after_ms)]
        got = await self.shared.call(self._reserve, keys=self._keys(key_id), args=args)
        kind = got[0]
        if kind == "seed":
            return None
        if kind == "cancelled":
            raise StateUnavailable("the reservation was cancelled after a Redis error")
        figures = KeyFigures(float(got[2]), float(got[3]), int(got[4]))
        if kind == "ok":
            reservation = SharedReservation(key_id, token, cost_usd, tokens, got[5])
            return Admitted(reservation, figures, float(got[1]))
        retry = float(got[6]) if got[6] else None
        return Refused(kind, figures, float(got[1]), retry, int(float(got[7])))

    async def settle(self, reservation: SharedReservation, cost_usd: float, tokens: int, *,
                     unknown: bool = False, persisted_s_ago: float = 0.0) -> Settled:
        """Replace ``reservation`` with the actual cost (USD) and tokens; idempotent.

        ``unknown``: charge at least the reservation (:meth:`SharedReservation.charge`).
        ``persisted_s_ago``: seconds since the cost was handed to the database writer;
        when Redis lost the key's state since the reservation and reseeded it from the
        database, the cost is added only if the seed may not have it.

        Raises:
            StateUnavailable: Redis could not be reached (call again: it lands once).
        """
        return await self._release(reservation.key_id, reservation.token,
                                   reservation.charge(cost_usd, unknown), tokens, "settle",
                                   reservation.epoch, persisted_s_ago=persisted_s_ago)

    async def cancel(self, key_id: str, token: str, ttl_s: float) -> Settled:
        """Undo a ``reserve`` of ``token`` that may or may not have run (its call
        failed): release it uncharged and uncounted, and refuse that token if its
        reserve arrives later (for ``ttl_s`` seconds).

        Raises:
            StateUnavailable: Redis could not be reached (call again).
        """
        return await self._release(key_id, token, 0.0, 0, "cancel", "", ttl_s)

    async def _release(self, key_id: str, token: str, charge: float, tokens: int,
                       mode: str, epoch: str, ttl_s: float = 0.0,
                       persisted_s_ago: float = 0.0) -> Settled:
        args: list[str | int | float] = [
            token, _f(charge), tokens, mode, epoch, _ms(self.window_s), self.keep_s,
            _ms(EXPIRED_KEEP_S), _ms(max(ttl_s, self.window_s)),
            _ms(max(persisted_s_ago, 0.0)), _ms(self.persist_lag_s)]
        got = await self.shared.call(self._settle, keys=self._keys(key_id), args=args)
        figures = KeyFigures(float(got[4]), float(got[5]), int(got[6]))
        return Settled(got[0], figures, float(got[1]) + float(got[2]), got[3] == "1")

    async def credit(self, key_id: str, usd: float, *, token: str,
                     persisted_s_ago: float) -> Credited:
        """Add ``usd`` settled outside Redis (during an outage, by the local fallback) to
        the key's shared spend, once per ``token`` (:func:`new_token`, one per amount;
        retried after a lost reply, it adds nothing), and not when the key's spend in
        Redis was seeded from the database after ``usd`` was persisted there.

        ``persisted_s_ago``: seconds since ``usd`` was handed to the database writer
        (call no sooner than ``persist_lag_s`` after: a ``none`` answer relies on the
        database having it).

        Raises:
            StateUnavailable: Redis could not be reached (call again with the same token).
        """
        got = await self._credit_call(key_id, usd, token, persisted_s_ago)
        if got[0] == "none":
            return Credited("none", None, 0.0)
        return Credited(got[0], _figures(got), float(got[1]))

    async def _credit_call(self, key_id: str, usd: float, token: str,
                           persisted_s_ago: float) -> Any:
        args: list[str | int | float] = [
            _f(usd), _ms(EXPIRED_KEEP_S), _ms(self.window_s), self.keep_s, token,
            _ms(max(persisted_s_ago, 0.0)), _ms(self.persist_lag_s)]
        return await self.shared.call(self._credit, keys=self._keys(key_id), args=args)

    async def figures(self, key_id: str) -> tuple[KeyFigures, float] | None:
        """The key's shared figures (sweeping expired reservations: the USD they were
        charged is returned beside, to persist), or None when Redis holds none.

        Raises:
            StateUnavailable: Redis could not be reached.
        """
        got = await self._credit_call(key_id, 0.0, "", 0.0)  # no token: reads, sweeps
        if got[0] == "none":
            return None
        return _figures(got), float(got[1])

    async def redis_ms(self) -> float:
        """Redis's clock now, ms (what the scripts use), e.g. for ``floor_read_after_ms``.

        Raises:
            StateUnavailable: Redis could not be reached.
        """
        seconds, micros = await self.shared.run(self.shared.client.time())
        return int(seconds) * 1000 + int(micros) / 1000


def _figures(got: Any) -> KeyFigures:
    """The figures in a credit script's answer."""
    return KeyFigures(float(got[2]), float(got[3] or 0), int(got[4] or 0))


def _f(x: float) -> str:
    return repr(float(x))


def _opt(x: float | int | None) -> str:
    if x is None:
        return ""
    return repr(float(x)) if isinstance(x, float) else str(x)


def _ms(seconds: float) -> str:
    return repr(float(seconds) * 1000)


# -- key changes ---------------------------------------------------------------------


def key_change_message(change: KeyChange, key_id: str) -> str:
    """The message announcing that ``key_id`` was created, revoked or changed."""
    return json.dumps({"change": change, "key_id": key_id})


def parse_key_change(message: str) -> tuple[str, str] | None:
    """(change, key id) from a :func:`key_change_message`, or None when malformed."""
    try:
        data: Any = json.loads(message)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    change, key_id = data.get("change"), data.get("key_id")
    if not isinstance(change, str) or not isinstance(key_id, str):
        return None
    return change, key_id


async def publish_key_change(shared: SharedRedis, change: KeyChange, key_id: str) -> None:
    """Tell every replica that ``key_id`` changed (they drop it from their caches).

    Raises:
        StateUnavailable: Redis could not be reached.
    """
    await shared.publish(shared.channel(KEY_CHANGES), key_change_message(change, key_id))
