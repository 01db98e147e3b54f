"""Routing strategies: given the allowed candidates, order them and say why.

Each strategy implements one method, :meth:`Strategy.order`; the base class builds the
:class:`RouteDecision`. Strategies are registered by name in :data:`STRATEGIES`.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

from modelmix.catalog import Config, Deployment, Tier
from modelmix.protocol import RequestNeeds
from modelmix.routing._decision import RouteDecision
from modelmix.routing._exclusion import Exclusion
from modelmix.routing._input import RoutingInput

if TYPE_CHECKING:
    from modelmix.routing._balance import LoadStats

__all__ = [
    "STRATEGIES",
    "CheapestStrategy",
    "OrderedStrategy",
    "RandomStrategy",
    "RulesStrategy",
    "Strategy",
]


def _price(dep: Deployment) -> float:
    """Blended price used for ordering: input + output USD per 1M tokens."""
    return dep.input_cost_per_mtok + dep.output_cost_per_mtok


class Strategy(ABC):
    """Orders allowed candidates. Knows nothing of HTTP.

    ``order`` gets a :class:`RoutingInput`: the request's needs, its prompt text (for
    strategies that read it, like ``learned``) and per-request hints.
    """

    name: str = ""

    @classmethod
    def from_config(cls, config: Config) -> Strategy:
        """The strategy as :class:`~modelmix.routing.Router` builds it for ``config``
        (a strategy with settings reads them here)."""
        return cls()

    @classmethod
    def for_router(cls, config: Config, load: LoadStats) -> Strategy:
        """The strategy as a :class:`~modelmix.routing.Router` over ``load`` (the calls
        in flight and latencies its executor reports) builds it: :meth:`from_config`,
        unless the strategy reads load (the group strategies of ``_balance``)."""
        return cls.from_config(config)

    def warm(self) -> None:
        """Load what the first request would otherwise wait for (blocking; the gateway
        calls it off the event loop at start). Nothing by default."""
        return None

    @abstractmethod
    def order(
        self, candidates: Sequence[Deployment], request: RoutingInput,
        excluded: dict[str, Exclusion]
    ) -> tuple[list[Deployment], str, float | None]:
        """Return (ordered candidates, reason, score)."""

    def decide(
        self, candidates: Sequence[Deployment], request: RoutingInput | RequestNeeds,
        excluded: dict[str, Exclusion],
    ) -> RouteDecision:
        """Order ``candidates`` (non-empty) into a decision with fallbacks."""
        if isinstance(request, RequestNeeds):
            request = RoutingInput(needs=request)
        ordered, reason, score = self.order(candidates, request, excluded)
        return RouteDecision(
            deployment=ordered[0],
            reason=reason,
            score=score,
            fallbacks=tuple(ordered[1:]),
            excluded=dict(excluded),
        )


class OrderedStrategy(Strategy):
    """Keep the configured order: first listed serves, the rest are fallbacks."""

    name = "ordered"

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> tuple[list[Deployment], str, float | None]:
        return list(candidates), "configured order", None


class CheapestStrategy(Strategy):
    """Cheapest first by catalog price (input + output USD per 1M tokens)."""

    name = "cheapest"

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> tuple[list[Deployment], str, float | None]:
        ordered = sorted(candidates, key=_price)
        return ordered, "cheapest available", None


class RandomStrategy(Strategy):
    """Uniformly random first choice; a baseline for router evaluation."""

    name = "random"

    def __init__(self, seed: int | None = None):
        self._rng = random.Random(seed)

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> tuple[list[Deployment], str, float | None]:
        ordered = list(candidates)
        self._rng.shuffle(ordered)
        return ordered, "random", None


class RulesStrategy(Strategy):
    """Open first; proprietary only when the request needs what no open deployment offers.

    Open deployments come first (local, then self-hosted, then cloud; cheapest first
    within each), then proprietary ones by price, so a failing open deployment falls
    back to a proprietary one that policy allows.
    """

    name = "rules"

    _HOSTING_RANK: ClassVar[dict[str, int]] = {"local": 0, "self-hosted": 1, "cloud": 2}

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> tuple[list[Deployment], str, float | None]:
        def key(dep: Deployment) -> tuple[int, int, float]:
            return (
                0 if dep.tier is Tier.OPEN else 1,
                self._HOSTING_RANK[dep.hosting.value],
                _price(dep),
            )

        ordered = sorted(candidates, key=key)
        first = ordered[0]
        if first.tier is Tier.OPEN:
            return ordered, "rules: open model by default", None
        open_reasons = sorted({str(why) for why in excluded.values()})
        why = "; ".join(open_reasons) if open_reasons else "no open deployment available"
        return ordered, f"rules: proprietary needed ({why})", None


#: Strategy name -> class. The learned router registers itself here in its own module.
STRATEGIES: dict[str, type[Strategy]] = {
    cls.name: cls
    for cls in (OrderedStrategy, CheapestStrategy, RandomStrategy, RulesStrategy)
}
