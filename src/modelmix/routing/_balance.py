"""Load balancing among equivalent deployments (docs/load-balancing.md).

A group may name a strategy (``groups: {chat: {strategy: least-busy, members: [a, b]}}``):
its members serve the same model, and the strategy says which healthy member takes the
next request; the others follow as fallbacks, in the order it gives. The router has
already removed members that may not or cannot serve (policy, unavailable, circuit
open), so a strategy only ever orders what can take the call.

:class:`LoadStats` is what the strategies read: per deployment, the calls in flight and
an exponentially weighted moving average (EWMA) of call latency, updated by the engine's
executor around every upstream attempt. It is this process's view (one replica's
traffic); health (breakers) is what replicas share.

Example::

    load = LoadStats()
    router = Router(config, health=lambda dep: None, load=load)
    load.started("a")                      # the executor does this around each call
    router.route("chat", needs).reason     # 'least-busy: 0 in flight (fewest of 2)'
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from modelmix.catalog import Config, Deployment
from modelmix.routing._exclusion import Exclusion
from modelmix.routing._input import RoutingInput
from modelmix.routing._strategies import STRATEGIES, Strategy

__all__ = [
    "EWMA_ALPHA",
    "STALE_AFTER_S",
    "BalanceStrategy",
    "CostStrategy",
    "DeploymentLoad",
    "LatencyStrategy",
    "LeastBusyStrategy",
    "LoadStats",
    "WeightedStrategy",
    "member_weights",
]

#: Weight of the newest sample in the latency average: 1/8, the gain of TCP's smoothed
#: round-trip-time estimator (Jacobson 1988, RFC 6298 section 2: ``SRTT <- (1 - alpha)
#: * SRTT + alpha * R'``, the first sample taken as is). An LLM call's latency varies
#: with the answer's length far more than a round trip does; 1/8 averages about the last
#: 15 calls (a sample's weight halves after 5), enough to ride out one long answer while
#: a deployment that slows down for good is overtaken within ~10 calls.
EWMA_ALPHA = 0.125

#: Seconds without a finished call after which ``latency`` tries a member again (once:
#: not while a call to it is in flight), so a deployment that was slow and has recovered
#: is measured again instead of never being chosen.
STALE_AFTER_S = 300.0


@dataclass(slots=True)
class DeploymentLoad:
    """One deployment as this process sees it.

    Attributes:
        in_flight: upstream calls started and not yet finished (a stream: until its end).
        latency_ms: EWMA of call latency, ms (``None`` before the first sample). A stream's
            latency runs to its last chunk.
        samples: how many calls the average has taken in.
        finished_at: clock time (``time.monotonic``) the latest call finished, ok or not.
    """

    in_flight: int = 0
    latency_ms: float | None = None
    samples: int = 0
    finished_at: float | None = None


class LoadStats:
    """Per-deployment calls in flight and latency EWMA, kept by this process.

    The executor calls :meth:`started` before each upstream attempt and :meth:`finished`
    when it ends (a stream, at its last chunk or when it is abandoned). A successful call
    is a latency sample. A failed one counts only when it took longer than the current
    average (a call that timed out after 30 s says the deployment is at least that slow;
    a 401 answered in 5 ms must not make it look fast). Meant for one event loop (the
    gateway's, or the library's private one): no locks.

    Args:
        alpha: weight of the newest sample, in (0, 1]; default :data:`EWMA_ALPHA`.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, *, alpha: float = EWMA_ALPHA,
                 clock: Callable[[], float] = time.monotonic):
        if not 0 < alpha <= 1:
            raise ValueError(f"alpha must be in (0, 1], not {alpha!r}")
        self.alpha = alpha
        self.clock = clock
        self._loads: dict[str, DeploymentLoad] = {}

    def __repr__(self) -> str:
        return f"LoadStats(alpha={self.alpha}, deployments={sorted(self._loads)})"

    def _load(self, name: str) -> DeploymentLoad:
        found = self._loads.get(name)
        if found is None:
            found = self._loads[name] = DeploymentLoad()
        return found

    def started(self, name: str) -> None:
        """A call to deployment ``name`` is being sent."""
        self._load(name).in_flight += 1

    def finished(self, name: str, latency_ms: float, ok: bool) -> None:
        """A call to ``name`` that :meth:`started` has ended after ``latency_ms``."""
        load = self._load(name)
        load.in_flight = max(0, load.in_flight - 1)
        load.finished_at = self.clock()
        if ok or (load.latency_ms is not None and latency_ms > load.latency_ms):
            if load.latency_ms is None:
                load.latency_ms = latency_ms
            else:
                load.latency_ms += self.alpha * (latency_ms - load.latency_ms)
            load.samples += 1

    def in_flight(self, name: str) -> int:
        found = self._loads.get(name)
        return 0 if found is None else found.in_flight

    def latency_ms(self, name: str) -> float | None:
        found = self._loads.get(name)
        return None if found is None else found.latency_ms

    def get(self, name: str) -> DeploymentLoad:
        """A copy of what is known of ``name`` (all zero / None when nothing is)."""
        found = self._loads.get(name)
        return DeploymentLoad() if found is None else replace(found)


class BalanceStrategy(Strategy):
    """A group strategy. The router builds it over its :class:`LoadStats` (a fresh one
    when built alone); ``rng`` breaks ties and draws (seed it for reproducible tests)."""

    def __init__(self, load: LoadStats | None = None, *, rng: random.Random | None = None):
        self.load = load if load is not None else LoadStats()
        self._rng = rng if rng is not None else random.Random()

    @classmethod
    def for_router(cls, config: Config, load: LoadStats) -> Strategy:
        return cls(load)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.load!r})"


Ordered = tuple[list[Deployment], str, float | None]


class WeightedStrategy(BalanceStrategy):
    """Random by weight: a member serves with probability weight / sum of the members'
    weights; the others follow as fallbacks in weighted-random order (drawn without
    replacement, so a heavy member is also likely the first fallback).

    Weights are the members' ``weight`` when any member sets one (unset = 1); else their
    ``rpm`` when every member sets it, else their ``tpm`` likewise, else equal: LiteLLM's
    ``simple-shuffle`` rule, so a LiteLLM ``model_list`` keeps its traffic split.
    The draw sorts members by ``-ln(U) / w`` (U uniform in (0, 1]): exponential clocks
    with rates ``w``, the Efraimidis-Spirakis weighted sampling without replacement
    (Inf. Process. Lett. 97(5), 2006), whose first element is drawn with probability
    ``w / sum(w)``.
    """

    name = "weighted"

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> Ordered:
        basis, weights = member_weights(candidates)
        keys = [-math.log(1.0 - self._rng.random()) / w for w in weights]
        ranked = sorted(range(len(candidates)), key=keys.__getitem__)
        first, total = weights[ranked[0]], sum(weights)
        reason = (f"weighted: {basis} {first:g} of {total:g} "
                  f"({100 * first / total:.0f}% of traffic)")
        return [candidates[i] for i in ranked], reason, None


def member_weights(members: Sequence[Deployment]) -> tuple[str, list[float]]:
    """(basis, weights) of ``members`` under ``weighted``: basis is ``weight``, ``rpm``
    or ``tpm`` (see :class:`WeightedStrategy`)."""
    if not any("weight" in d.model_fields_set for d in members):
        if all(d.rpm is not None for d in members):
            return "rpm", [float(d.rpm or 0) for d in members]
        if all(d.tpm is not None for d in members):
            return "tpm", [float(d.tpm or 0) for d in members]
    return "weight", [d.weight for d in members]


class LeastBusyStrategy(BalanceStrategy):
    """Fewest calls in flight from this process first; ties drawn at random (listed
    order would send all light traffic to the first member, which is ``ordered``)."""

    name = "least-busy"

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> Ordered:
        counts = [self.load.in_flight(d.name) for d in candidates]
        draw = [self._rng.random() for _ in candidates]
        ranked = sorted(range(len(candidates)), key=lambda i: (counts[i], draw[i]))
        fewest = counts[ranked[0]]
        tied = counts.count(fewest)
        tie = f"; {tied} tied, drawn at random" if tied > 1 else ""
        reason = f"least-busy: {fewest} in flight (fewest of {len(candidates)}{tie})"
        return [candidates[i] for i in ranked], reason, None


class LatencyStrategy(BalanceStrategy):
    """Lowest latency EWMA first (see :class:`LoadStats` and :data:`EWMA_ALPHA`).

    A member with no finished call yet, or none for ``stale_after_s``, is tried first
    (in listed order) while no call to it is in flight: every member gets measured, and
    one that was slow is measured again later. Members that have been tried but have no
    sample (their calls failed fast, or are still running) come after the measured ones,
    fewest in flight first.
    """

    name = "latency"

    def __init__(self, load: LoadStats | None = None, *, rng: random.Random | None = None,
                 stale_after_s: float = STALE_AFTER_S):
        super().__init__(load, rng=rng)
        self.stale_after_s = stale_after_s

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> Ordered:
        now = self.load.clock()
        loads = [self.load.get(d.name) for d in candidates]

        def key(i: int) -> tuple[int, float, int]:
            load = loads[i]
            if load.in_flight == 0 and (load.finished_at is None
                                        or now - load.finished_at >= self.stale_after_s):
                return (0, 0.0, i)
            if load.latency_ms is not None:
                return (1, load.latency_ms, i)
            return (2, float(load.in_flight), i)

        ranked = sorted(range(len(candidates)), key=key)
        ordered = [candidates[i] for i in ranked]
        first = loads[ranked[0]]
        measured = sum(load.latency_ms is not None for load in loads)
        if key(ranked[0])[0] == 0:
            why = ("no latency sample yet" if first.finished_at is None
                   else f"no call for {now - (first.finished_at or now):.0f} s")
            reason = f"latency: measuring {ordered[0].name} ({why})"
        elif first.latency_ms is not None:
            reason = (f"latency: {first.latency_ms:.0f} ms average "
                      f"(lowest of {measured} measured)")
        else:
            reason = "latency: no member measured yet; fewest in flight first"
        return ordered, reason, None


class CostStrategy(BalanceStrategy):
    """Cheapest first: the catalog prices blended by this request's estimated tokens
    (prompt estimate plus ``max_tokens``, or 256, at input and output prices, as the
    learned router estimates cost). Ties keep the listed order."""

    name = "cost"

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> Ordered:
        prompt, output = request.needs.prompt_tokens_estimate, request.output_tokens_estimate()
        costs = [d.cost_usd(prompt, output) for d in candidates]
        ranked = sorted(range(len(candidates)), key=costs.__getitem__)  # stable: ties by order
        cheapest = costs[ranked[0]]
        tied = costs.count(cheapest)
        tie = f"; {tied} tied, listed order" if tied > 1 else ""
        reason = (f"cost: ${cheapest:.6f} estimated for this request "
                  f"(cheapest of {len(candidates)}{tie})")
        return [candidates[i] for i in ranked], reason, None


STRATEGIES.update({cls.name: cls for cls in (WeightedStrategy, LeastBusyStrategy,
                                             LatencyStrategy, CostStrategy)})
