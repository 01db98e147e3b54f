"""The dashboard's derived figures: tiers of stored deployments, the all-proprietary
baseline and the cost saved against it (docs/dashboard.md has the formula).

Every input is already aggregated in SQL (store/_dashboard.py); this module only folds a
few hundred groups with the catalog's prices, which SQL does not know.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from modelmix.catalog import Config, Deployment, Tier
from modelmix.errors import InvalidRequest
from modelmix.store._dashboard import SeriesPoint, TrafficGroup

__all__ = ["Baseline", "fold_series", "fold_traffic", "reference_deployment", "tier_of"]

#: Tier shown for rows no deployment served, and for deployments no longer in the catalog.
NO_DEPLOYMENT = "none"
UNKNOWN = "unknown"


def reference_deployment(config: Config, name: str | None) -> Deployment | None:
    """The deployment whose prices define "all-proprietary": ``name`` when given, else the
    proprietary chat deployment with the highest input + output price per 1M tokens
    (ties: the first by name); None when the catalog has no priced proprietary one.

    Raises:
        InvalidRequest: ``name`` is not a deployment of the catalog (400).
    """
    if name:
        for dep in config.deployments:
            if dep.name == name:
                return dep
        raise InvalidRequest(f"reference {name[:100]!r} is not a deployment of this gateway",
                             param="reference", code="invalid_value")
    priced = [d for d in config.deployments
              if d.tier is Tier.PROPRIETARY and d.mode == "chat"
              and d.input_cost_per_mtok + d.output_cost_per_mtok > 0]
    if not priced:
        return None
    return min(priced, key=lambda d: (-(d.input_cost_per_mtok + d.output_cost_per_mtok), d.name))


def tier_of(config: Config) -> dict[str | None, str]:
    """Deployment name -> ``open`` / ``proprietary`` (None -> ``none``); look names up
    with ``.get(name, "unknown")`` (a deployment since removed from the catalog)."""
    tiers: dict[str | None, str] = {d.name: d.tier.value for d in config.deployments}
    tiers[None] = NO_DEPLOYMENT
    return tiers


@dataclass(slots=True)
class Baseline:
    """Money of a set of rows, USD: ``cost`` as charged, ``baseline`` the same generating
    rows' tokens at the reference's prices, ``cache_saved`` what cache hits saved.

    ``saved`` = ``baseline - generating cost + cache_saved``; None without a reference.
    Embedding rows (``endpoint == "embeddings"``) count in ``cost`` but in neither the
    baseline nor the generating cost: a chat model's prices say nothing of embeddings.
    """

    reference: Deployment | None
    cost: float = 0.0
    generating_cost: float = 0.0
    baseline: float = 0.0
    cache_saved: float = 0.0

    def add(self, endpoint: str | None, prompt_tokens: int, completion_tokens: int,
            cost: float, cache_saved: float) -> None:
        self.cost += cost
        self.cache_saved += cache_saved
        if endpoint == "embeddings" or self.reference is None:
            return
        self.generating_cost += cost
        self.baseline += self.reference.cost_usd(prompt_tokens, completion_tokens)

    def to_dict(self) -> dict[str, Any]:
        known = self.reference is not None
        return {
            "cost_usd": self.cost,
            "baseline_usd": self.baseline if known else None,
            "saved_usd": (self.baseline - self.generating_cost + self.cache_saved
                          if known else None),
            "cache_saved_usd": self.cache_saved,
        }


def _split(into: dict[str, dict[str, float]], name: str, group: TrafficGroup) -> None:
    row = into.setdefault(name, {"requests": 0, "errors": 0, "cost_usd": 0.0})
    row["requests"] += group.requests
    row["errors"] += group.errors
    row["cost_usd"] += group.cost_usd


def _rows(split: dict[str, dict[str, float]], key: str) -> list[dict[str, Any]]:
    out = [{key: name, **values} for name, values in split.items()]
    return sorted(out, key=lambda r: (-r["requests"], str(r[key])))


def fold_traffic(groups: Iterable[TrafficGroup], config: Config,
                 reference: Deployment | None) -> dict[str, Any]:
    """Totals and the splits by tier, route-reason kind, endpoint and deployment."""
    tiers = tier_of(config)
    money = Baseline(reference)
    totals = {"requests": 0, "errors": 0, "hits": 0, "prompt_tokens": 0, "completion_tokens": 0}
    splits: dict[str, dict[str, dict[str, float]]] = {
        "tier": {}, "reason": {}, "endpoint": {}, "deployment": {}}
    latency: dict[str, float] = {}
    for g in groups:
        for name in totals:
            totals[name] += getattr(g, name)
        money.add(g.endpoint, g.prompt_tokens, g.completion_tokens, g.cost_usd, g.saved_usd)
        dep = g.deployment or "(none)"
        _split(splits["tier"], tiers.get(g.deployment, UNKNOWN), g)
        _split(splits["reason"], g.reason or "(none)", g)
        _split(splits["endpoint"], g.endpoint or "(library)", g)
        _split(splits["deployment"], dep, g)
        latency[dep] = latency.get(dep, 0.0) + g.latency_ms
    deployments = _rows(splits["deployment"], "deployment")
    for row in deployments:
        name = row["deployment"]
        row["tier"] = tiers.get(None if name == "(none)" else name, UNKNOWN)
        row["avg_latency_ms"] = latency[name] / row["requests"] if row["requests"] else None
    return {
        "totals": {**totals, **money.to_dict()},
        "by_tier": _rows(splits["tier"], "tier"),
        "by_reason": _rows(splits["reason"], "reason"),
        "by_endpoint": _rows(splits["endpoint"], "endpoint"),
        "by_deployment": deployments,
    }


def fold_series(points: Iterable[SeriesPoint], config: Config,
                reference: Deployment | None) -> list[dict[str, Any]]:
    """One entry per bucket (oldest first): requests by tier, errors and money."""
    tiers = tier_of(config)
    buckets: dict[float, tuple[dict[str, Any], Baseline]] = {}
    for p in points:
        entry, money = buckets.setdefault(p.start, (
            {"start": p.start, "requests": 0, "errors": 0, "open": 0, "proprietary": 0,
             "other": 0}, Baseline(reference)))
        entry["requests"] += p.requests
        entry["errors"] += p.errors
        tier = tiers.get(p.deployment, UNKNOWN)
        entry[tier if tier in (Tier.OPEN.value, Tier.PROPRIETARY.value) else "other"] += (
            p.requests)
        money.add(p.endpoint, p.prompt_tokens, p.completion_tokens, p.cost_usd, p.saved_usd)
    return [{**entry, **money.to_dict()} for _, (entry, money) in sorted(buckets.items())]
