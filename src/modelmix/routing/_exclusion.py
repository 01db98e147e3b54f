"""Why a deployment was left out of a routing decision, as a type rather than a sentence.

Each filter rule, the health check and the strategies say *what kind* of reason excluded
a deployment; the router picks the answer from the kinds (403 for policy, 400 for a
request no deployment can take, 503 with ``Retry-After`` for circuits that will reopen,
404 for deployments that cannot serve here at all), never from the wording.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

__all__ = ["Exclusion", "ExclusionKind"]


class ExclusionKind(StrEnum):
    """What kind of reason excluded a deployment."""

    #: the caller's key may not use it (its allow-list)
    NOT_ALLOWED = "not-allowed"
    #: the data policy keeps this request's data away from it (docs/guard.md)
    POLICY = "policy"
    #: it cannot take this input: images, audio, tools, JSON mode
    CAPABILITY = "capability"
    #: the prompt plus ``max_tokens`` do not fit its context window or output limit
    CONTEXT = "context"
    #: a routing hint (``max_cost_per_1k``) rules it out
    HINT = "hint"
    #: it cannot serve in this environment: API key unset, model file missing
    UNAVAILABLE = "unavailable"
    #: it is failing now: its circuit breaker is open (``retry_after_s`` says until when)
    UNHEALTHY = "unhealthy"


@dataclass(frozen=True, slots=True)
class Exclusion:
    """One deployment's exclusion: its kind and a short human-readable why.

    Attributes:
        kind: the kind of reason.
        why: what to show (route reasons, error messages); never a detected value.
        retry_after_s: for ``UNHEALTHY``, seconds until it may take calls again.
    """

    kind: ExclusionKind
    why: str
    retry_after_s: float | None = None

    def __str__(self) -> str:
        return self.why
