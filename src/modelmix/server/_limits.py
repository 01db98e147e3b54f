"""Per-key admission: USD budget with in-flight reservations, RPM and TPM windows.

A :class:`KeyLimiter` is the :class:`~modelmix.engine._service.Admission` of one virtual key.
``admit`` runs its checks and takes its reservations without awaiting anything, so in
one event loop no other request can slip in between check and reserve: the key's
spend can never pass its budget by more than what the in-flight requests reserved.
Each reservation is an upper bound of that request's cost (the dearest candidate at
:meth:`~modelmix.protocol.ChatRequest.prompt_token_bound` prompt tokens plus the most
completion tokens it may produce), so in one process the budget is not passed at all
while upstreams bill within that bound. Settling reconciles: the actual cost replaces
the reservation. If an upstream ever bills more than a request reserved, the key is
admitted one request at a time from then on, so the overshoot stays within one
in-flight request (``docs/keys.md``).

Behind several gateway replicas sharing Redis, :mod:`modelmix.server._shared_limits`
runs the same checks in Redis (``SharedKeyLimiter``), with the refusals built here.

Example::

    limiter = KeyLimiter("k1", KeyLimits(budget_usd=5.0, rpm=60, tpm=100_000))
    reservation = await limiter.admit(decision, request)   # BudgetExceeded / KeyRateLimited
    ...
    limiter.settle(reservation, cost_usd=0.0123, tokens=812)
"""

from __future__ import annotations

import logging
import math
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelmix.catalog import Deployment
from modelmix.errors import BudgetExceeded, KeyRateLimited
from modelmix.protocol import ChatRequest, RequestNeeds
from modelmix.routing import RouteDecision

__all__ = [
    "MAX_BUDGET_USD",
    "MAX_RPM",
    "MAX_TPM",
    "WINDOW_S",
    "KeyLimiter",
    "KeyLimits",
    "Reservation",
    "budget_exceeded",
    "check_limits",
    "max_output_tokens",
    "max_request_cost",
    "one_at_a_time",
    "request_bounds",
    "rpm_exceeded",
    "tpm_exceeded",
]

log = logging.getLogger("modelmix.keys")

#: Length of the RPM / TPM sliding window, seconds.
WINDOW_S = 60.0

#: Largest budget a key may have, USD. Larger (or infinite) budgets are refused: leave
#: the budget unset for "unlimited".
MAX_BUDGET_USD = 1e9

#: Largest requests-per-minute limit of a key.
MAX_RPM = 1_000_000

#: Largest tokens-per-minute limit of a key (fits a 32-bit SQL INTEGER).
MAX_TPM = 1_000_000_000

#: Rounding slack (USD) when comparing spend with a budget, so that a budget of
#: exactly N times a request's cost admits N requests despite float sums.
_EPSILON_USD = 1e-9


@dataclass(frozen=True, slots=True)
class KeyLimits:
    """One key's limits; None means unlimited.

    Attributes:
        budget_usd: total spend allowed, USD.
        rpm: requests admitted per sliding 60 s window.
        tpm: tokens (prompt + completion) per sliding 60 s window.
    """

    budget_usd: float | None = None
    rpm: int | None = None
    tpm: int | None = None

    @property
    def limited(self) -> bool:
        """Whether any limit is set (an unlimited key never needs shared state)."""
        return self.budget_usd is not None or self.rpm is not None or self.tpm is not None


def check_limits(budget_usd: float | None, rpm: int | None, tpm: int | None) -> None:
    """Refuse limits a key may not have; None means unlimited.

    Raises:
        ValueError: the budget is not a finite number in [0, MAX_BUDGET_USD] USD, or
            rpm / tpm is not an integer in [1, MAX_RPM] / [1, MAX_TPM].
    """
    if budget_usd is not None and not (math.isfinite(budget_usd)
                                       and 0 <= budget_usd <= MAX_BUDGET_USD):
        raise ValueError(f"budget must be between 0 and {MAX_BUDGET_USD:,.0f} USD, "
                         f"got {budget_usd!r}")
    for name, value, top in (("rpm", rpm, MAX_RPM), ("tpm", tpm, MAX_TPM)):
        if value is not None and not (isinstance(value, int) and 1 <= value <= top):
            raise ValueError(f"{name} must be an integer between 1 and {top:,}, "
                             f"got {value!r}")


@dataclass(slots=True)
class _TokenEntry:
    at: float
    tokens: int
    live: bool = True


@dataclass(slots=True)
class Reservation:
    """What ``admit`` took for one request; handed back to ``settle``.

    Attributes:
        key_id: the key that admitted it.
        cost_usd: reserved maximum cost, USD.
        tokens: reserved token estimate (prompt estimate + ``max_tokens`` if given).
        settled: whether ``settle`` has released it (a second settle is ignored).
    """

    key_id: str
    cost_usd: float
    tokens: int
    entry: _TokenEntry | None = None
    settled: bool = False


def max_output_tokens(dep: Deployment, needs: RequestNeeds) -> int:
    """The most completion tokens ``dep`` may produce for a request.

    The request's ``max_tokens`` when given; else the deployment's
    ``max_output_tokens``; else its context window minus the prompt estimate.
    """
    if needs.max_output_tokens:
        return needs.max_output_tokens
    if dep.max_output_tokens:
        return dep.max_output_tokens
    return max(dep.context_window - needs.prompt_tokens_estimate, 0)


def max_request_cost(candidates: Sequence[Deployment], needs: RequestNeeds,
                     prompt_tokens: int | None = None) -> float:
    """Maximum cost of a request in USD: the dearest candidate at ``prompt_tokens``
    (default: the prompt estimate; admission passes
    :meth:`~modelmix.protocol.ChatRequest.prompt_token_bound`) plus
    :func:`max_output_tokens` (any candidate may end up serving, via fallback)."""
    prompt = needs.prompt_tokens_estimate if prompt_tokens is None else prompt_tokens
    return max(
        (dep.cost_usd(prompt, max_output_tokens(dep, needs)) for dep in candidates),
        default=0.0,
    )


def request_bounds(decision: RouteDecision, request: ChatRequest) -> tuple[float, int]:
    """What admitting ``request`` reserves: (its maximum cost in USD, see
    :func:`max_request_cost` at the prompt's upper bound; its tokens, the prompt
    estimate plus ``max_tokens`` when given), both times its ``n`` choices (a deployment
    without native ``n`` is called once per choice, billing the prompt each time)."""
    needs = request.needs()
    cost = max_request_cost(decision.candidates, needs, request.prompt_token_bound())
    return (cost * needs.choices,
            (needs.prompt_tokens_estimate + needs.max_output_tokens) * needs.choices)


def budget_exceeded(key_id: str, budget: float, spent: float, reserved: float,
                    in_flight: int, cost: float) -> BudgetExceeded:
    """The refusal of a request whose maximum ``cost`` does not fit (amounts in USD)."""
    return BudgetExceeded(
        f"budget of key {key_id} would be exceeded: budget ${budget:.6f}, "
        f"spent ${spent:.6f}, reserved ${reserved:.6f} by "
        f"{in_flight} in-flight requests, this request may cost up to "
        f"${cost:.6f}"
    )


def one_at_a_time(key_id: str) -> KeyRateLimited:
    """The refusal of a second in-flight request of a key admitted one at a time."""
    return KeyRateLimited(
        f"key {key_id} is admitted one request at a time: an upstream billed "
        "more than a request's reserved bound, so its budget cannot be reserved "
        "exactly", retry_after=1.0)


def rpm_exceeded(key_id: str, rpm: int, retry_s: float) -> KeyRateLimited:
    """The refusal of a request beyond ``rpm``; ``retry_s`` seconds until one fits."""
    return KeyRateLimited(f"key {key_id} reached its limit of {rpm} requests per minute",
                          retry_after=max(retry_s, 0.0))


def tpm_exceeded(key_id: str, tpm: int, used: int, tokens: int,
                 retry_s: float | None) -> KeyRateLimited:
    """The refusal of a request needing ``tokens`` when ``used`` are in the window;
    ``retry_s`` None: the request alone needs more than ``tpm`` (no Retry-After)."""
    if retry_s is None:
        return KeyRateLimited(
            f"request needs ~{tokens} tokens, more than key {key_id}'s limit of "
            f"{tpm} tokens per minute; lower max_tokens")
    return KeyRateLimited(
        f"key {key_id} reached its limit of {tpm} tokens per minute "
        f"({used} used in the last minute, ~{tokens} needed)",
        retry_after=max(retry_s, 0.0))


class KeyLimiter:
    """Budget, RPM and TPM gate of one virtual key, exact within one event loop.

    Args:
        key_id: the key's id (for messages and ``on_spend``).
        limits: the key's limits.
        spent_usd: spend already recorded (loaded from the key store), USD.
        on_spend: called with (key_id, cost USD) for each settled cost, to persist it;
            must not block.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(
        self,
        key_id: str,
        limits: KeyLimits,
        *,
        spent_usd: float = 0.0,
        on_spend: Callable[[str, float], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.key_id = key_id
        self.limits = limits
        self._spent = spent_usd
        self._reserved = 0.0
        self._in_flight = 0
        self._on_spend = on_spend
        self._clock = clock
        self._requests: deque[float] = deque()
        self._tokens: deque[_TokenEntry] = deque()
        self._token_sum = 0
        self._one_at_a_time = False

    @property
    def spent_usd(self) -> float:
        """USD spent by settled requests (including spend loaded at start)."""
        return self._spent

    @property
    def reserved_usd(self) -> float:
        """USD reserved by requests admitted and not yet settled."""
        return self._reserved

    @property
    def in_flight(self) -> int:
        """Requests admitted and not yet settled."""
        return self._in_flight

    def observe_spent(self, spent_usd: float) -> None:
        """Raise the spend this limiter counts to at least ``spent_usd`` (USD): what the
        replicas' shared state last reported, before this limiter stands in for it."""
        self._spent = max(self._spent, spent_usd)

    async def admit(self, decision: RouteDecision, request: ChatRequest) -> Reservation:
        """Check every limit, then reserve, with no await in between.

        Raises:
            BudgetExceeded: spent + reserved + this request's maximum cost > budget.
            KeyRateLimited: the RPM or TPM window is full, or (after an upstream billed
                more than a reservation) another request of this budgeted key is in
                flight; ``retry_after`` in seconds.
        """
        cost, tokens = request_bounds(decision, request)
        now = self._clock()
        self._check_budget(cost)
        self._check_rpm(now)
        self._check_tpm(now, tokens)
        return self._reserve(now, cost, tokens)

    def settle(self, reservation: object, cost_usd: float, tokens: int, *,
               unknown: bool = False) -> None:
        """Release ``reservation`` and record the actual cost (USD) and tokens.

        ``unknown``: the call reached an upstream and was cut off before usage came back
        (timeout, reset, client gone); the upstream may bill it in full, so at least the
        reserved cost is recorded as spent.
        """
        if not isinstance(reservation, Reservation) or reservation.settled:
            return
        if unknown:
            cost_usd = max(cost_usd, reservation.cost_usd)
        reservation.settled = True
        if cost_usd > reservation.cost_usd + _EPSILON_USD and not self._one_at_a_time:
            self._one_at_a_time = True
            log.warning("key %s: a request cost $%.6f, more than the $%.6f reserved for it; "
                        "admitting this key one request at a time from now on",
                        self.key_id, cost_usd, reservation.cost_usd)
        self._in_flight -= 1
        self._reserved = self._reserved - reservation.cost_usd if self._in_flight else 0.0
        self._spent += cost_usd
        entry = reservation.entry
        if entry is not None:
            if entry.live:
                self._token_sum += tokens - entry.tokens
            entry.tokens = tokens
        if cost_usd and self._on_spend is not None:
            self._on_spend(self.key_id, cost_usd)

    def _check_budget(self, cost: float) -> None:
        budget = self.limits.budget_usd
        if budget is None:
            return
        if self._one_at_a_time and self._in_flight:
            raise one_at_a_time(self.key_id)
        if self._spent + self._reserved + cost > budget + _EPSILON_USD:
            raise budget_exceeded(self.key_id, budget, self._spent, self._reserved,
                                  self._in_flight, cost)

    def _check_rpm(self, now: float) -> None:
        rpm = self.limits.rpm
        while self._requests and self._requests[0] <= now - WINDOW_S:
            self._requests.popleft()
        if rpm is not None and len(self._requests) >= rpm:
            retry = self._requests[len(self._requests) - rpm] + WINDOW_S - now
            raise rpm_exceeded(self.key_id, rpm, retry)

    def _check_tpm(self, now: float, tokens: int) -> None:
        while self._tokens and self._tokens[0].at <= now - WINDOW_S:
            old = self._tokens.popleft()
            old.live = False
            self._token_sum -= old.tokens
        tpm = self.limits.tpm
        if tpm is None or self._token_sum + tokens <= tpm:
            return
        if tokens > tpm:
            raise tpm_exceeded(self.key_id, tpm, self._token_sum, tokens, None)
        freed = 0
        retry = WINDOW_S
        for entry in self._tokens:
            freed += entry.tokens
            if self._token_sum - freed + tokens <= tpm:
                retry = entry.at + WINDOW_S - now
                break
        raise tpm_exceeded(self.key_id, tpm, self._token_sum, tokens, retry)

    def _reserve(self, now: float, cost: float, tokens: int) -> Reservation:
        self._reserved += cost
        self._in_flight += 1
        self._requests.append(now)
        entry = _TokenEntry(now, tokens)
        self._tokens.append(entry)
        self._token_sum += tokens
        return Reservation(self.key_id, cost, tokens, entry)
