"""The result of routing one request."""

from __future__ import annotations

from dataclasses import dataclass, field

from modelmix.catalog import Deployment
from modelmix.routing._exclusion import Exclusion

__all__ = ["RouteDecision"]


@dataclass(frozen=True, slots=True)
class RouteDecision:
    """An ordered choice: ``deployment`` first, then ``fallbacks`` in order.

    Attributes:
        deployment: the deployment to call first.
        reason: short human-readable why, sent in the ``x-modelmix-route-reason`` header.
        score: the strategy's score for the choice, if any (the learned router: the
            probability that the strong model is needed, in [0, 1]).
        fallbacks: deployments to try, in order, when the first fails.
        excluded: deployments the policy filter removed, with why.
        predicted_quality: per candidate name, the predicted probability of an acceptable
            answer in [0, 1] (learned router only; empty otherwise).
        threshold: the threshold ``score`` was compared with, when one decided.
    """

    deployment: Deployment
    reason: str
    score: float | None = None
    fallbacks: tuple[Deployment, ...] = ()
    excluded: dict[str, Exclusion] = field(default_factory=dict)
    predicted_quality: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None

    @property
    def candidates(self) -> tuple[Deployment, ...]:
        return (self.deployment, *self.fallbacks)
