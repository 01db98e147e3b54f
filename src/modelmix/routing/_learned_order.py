"""The learned strategy's orderings: given each candidate's predicted quality (and, for a
weak/strong router, P(strong needed) against a threshold), which deployment goes first and
why. Pure functions of the candidates, the request and the predictions;
:class:`~modelmix.routing._learned_strategy.LearnedStrategy` chooses which one applies
(docs/routing-in-gateway.md, "One request").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from modelmix.catalog import Deployment, Tier
from modelmix.routing._exclusion import Exclusion
from modelmix.routing._input import RoutingInput

__all__ = ["Choice", "by_quality", "by_threshold", "by_utility", "cost_key",
           "estimated_cost_usd", "open_first"]

#: Cost ties go to the deployment nearest the caller.
_HOSTING_RANK: dict[str, int] = {"local": 0, "self-hosted": 1, "cloud": 2}


def estimated_cost_usd(dep: Deployment, request: RoutingInput) -> float:
    """USD of one request on ``dep``: estimated prompt tokens and ``max_tokens`` (or
    :data:`~modelmix.routing._input.DEFAULT_OUTPUT_TOKENS`) at catalog prices."""
    return dep.cost_usd(request.needs.prompt_tokens_estimate, request.output_tokens_estimate())


@dataclass(slots=True)
class Choice:
    """A strategy's ordering of the candidates and why (what ``decide`` reports)."""

    ordered: list[Deployment]
    reason: str
    score: float | None = None
    quality: dict[str, float] = field(default_factory=dict)
    threshold: float | None = None


def cost_key(request: RoutingInput) -> Callable[[Deployment], tuple[float, int]]:
    """Sort key: estimated USD of this request on the deployment, then its hosting
    (local before self-hosted before cloud)."""

    def key(dep: Deployment) -> tuple[float, int]:
        return estimated_cost_usd(dep, request), _HOSTING_RANK[dep.hosting.value]
    return key


def open_first(candidates: list[Deployment], request: RoutingInput,
               quality: dict[str, float]) -> Choice:
    """The ``prefer_open`` hint: open deployments first, each group cheapest first."""
    cost = cost_key(request)
    ordered = sorted(candidates, key=lambda d: (d.tier is not Tier.OPEN, *cost(d)))
    why = ("open deployment first" if ordered[0].tier is Tier.OPEN
           else "no open deployment allowed")
    return Choice(ordered, f"learned: prefer_open hint, {why}", quality=quality)


def by_quality(candidates: list[Deployment], request: RoutingInput,
               quality: dict[str, float], bar: float) -> Choice:
    """The threshold rule: the candidates whose predicted quality reaches ``bar``,
    cheapest first, then the rest by predicted quality."""
    cost = cost_key(request)
    meets = sorted((d for d in candidates if quality.get(d.name, -1.0) >= bar), key=cost)
    rest = sorted((d for d in candidates if quality.get(d.name, -1.0) < bar),
                  key=lambda d: (-quality.get(d.name, -1.0), *cost(d)))
    ordered = [*meets, *rest]
    first = ordered[0]
    q = quality.get(first.name)
    shown = "unknown" if q is None else f"{q:.2f}"
    if meets:
        reason = (f"learned: cheapest with predicted quality >= {bar:.2f}: "
                  f"{first.name} ({shown})")
    else:
        reason = (f"learned: no candidate reaches predicted quality {bar:.2f}; best "
                  f"predicted: {first.name} ({shown})")
    return Choice(ordered, reason, score=q, quality=quality, threshold=bar)


def by_utility(candidates: list[Deployment], request: RoutingInput,
               quality: dict[str, float], weight: float) -> Choice:
    """Highest predicted quality - ``weight`` * USD per 1k requests first (equal: the
    cheaper); candidates without a predictor column last, cheapest first."""
    cost = cost_key(request)
    usd = {d.name: 1000 * estimated_cost_usd(d, request) for d in candidates}
    known = sorted((d for d in candidates if d.name in quality),
                   key=lambda d: (-(quality[d.name] - weight * usd[d.name]), *cost(d)))
    ordered = [*known, *sorted((d for d in candidates if d.name not in quality), key=cost)]
    first = ordered[0]
    q = quality.get(first.name)
    shown = "unknown" if q is None else f"{q:.2f}"
    reason = (f"learned: highest predicted quality - {weight:g} x USD/1k: {first.name} "
              f"(quality {shown}, ${usd[first.name]:.3f}/1k)")
    return Choice(ordered, reason, score=q, quality=quality)


def by_threshold(candidates: list[Deployment], request: RoutingInput,
                 columns: dict[str, str | None], strong: str, score: float,
                 threshold: tuple[float, str], quality: dict[str, float],
                 excluded: dict[str, Exclusion]) -> Choice:
    """A weak/strong router: P(strong needed) ``score`` at or above the threshold puts
    the strong-column candidates first, else the weak ones; each group cheapest first."""
    limit, label = threshold
    need_strong = score >= limit
    cost = cost_key(request)
    primary = sorted((d for d in candidates if (columns[d.name] == strong) == need_strong),
                     key=cost)
    secondary = sorted((d for d in candidates if (columns[d.name] == strong) != need_strong),
                       key=cost)
    shown, bound = _distinct(score, limit)
    reason = (f"learned: p(strong needed)={shown} {'>=' if need_strong else '<'} "
              f"{bound} ({label})")
    if not primary or (not secondary and excluded):  # policy, not p, decided
        missing_strong = need_strong if not primary else not need_strong
        kind = "strong" if missing_strong else "weak"
        why = "; ".join(f"{n}: {w}" for n, w in excluded.items()) or "none configured"
        reason += f"; no {kind}-model deployment allowed (excluded: {why})"
    return Choice([*primary, *secondary], reason, score=score, quality=quality,
                  threshold=limit)


def _distinct(score: float, limit: float) -> tuple[str, str]:
    """Score and threshold with 2 decimals, or as many more (up to 6) as it takes for
    the comparison to be visible ("0.579 < 0.580", not "0.58 < 0.58")."""
    for digits in range(2, 7):
        shown, bound = f"{score:.{digits}f}", f"{limit:.{digits}f}"
        if shown != bound:
            break
    return shown, bound
