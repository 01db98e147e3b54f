"""The result of routing one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelmix.catalog import Deployment

__all__ = ["RouteDecision"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """An ordered choice: ``deployment`` first, then ``fallbacks`` in order.

    Attributes:
        deployment: the deployment to call first.
        reason: short human-readable why, sent in the ``x-modelmix-route-reason`` header.
        score: the strategy's score for the choice (e.g. predicted quality), if any.
        fallbacks: deployments to try, in order, when the first fails.
        excluded: deployments the policy filter removed, with why.
    """

    deployment: Deployment
    reason: str
    score: float | None = None
    fallbacks: tuple[Deployment, ...] = ()
    excluded: dict[str, str] = field(default_factory=dict)

    @property
    def candidates(self) -> tuple[Deployment, ...]:
        return (self.deployment, *self.fallbacks)
