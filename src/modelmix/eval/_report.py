"""Results of an evaluation: per-fold metrics summarised as mean +/- std, and their JSON.

Means and standard deviations are over folds (sample standard deviation, ``ddof=1``;
None with a single fold, as for a held-out table). Curves of different folds have their
points at different strong fractions, so they are averaged on a fixed grid of strong
fractions (0%, 1%, ..., 100%) by linear interpolation between each fold's points.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from modelmix.eval._cost import CostModel
from modelmix.metrics import RouterMetrics, Stat, finite_or_none, interpolate_curve

__all__ = ["CURVE_GRID", "METHODS", "EvalReport", "MethodSummary", "Stat", "summarize_method"]

#: Strong fractions at which fold curves are averaged: 0.00, 0.01, ..., 1.00.
CURVE_GRID: tuple[float, ...] = tuple(float(x) for x in np.linspace(0.0, 1.0, 101))
#: Methods every report holds, in display order.
METHODS: tuple[str, ...] = ("router", "random", "oracle")

Protocol = Literal["cv", "holdout"]


def _pct_key(target: float) -> str:
    """``0.5`` -> ``"50%"``: JSON key of a PGR target."""
    return f"{round(target * 100)}%"



@dataclass(frozen=True, slots=True)
class MethodSummary:
    """One method (the router, or a baseline) over all folds.

    Attributes:
        name: ``"router"``, ``"random"`` or ``"oracle"``.
        apgr / auc: over folds.
        cpt: PGR target (0.2, 0.5, 0.8) -> strong fraction needed, over folds.
        quality_mean / quality_std: the curve at :data:`CURVE_GRID`, over folds.
        folds: each fold's metrics and curve.
    """

    name: str
    apgr: Stat
    auc: Stat
    cpt: dict[float, Stat]
    quality_mean: tuple[float, ...]
    quality_std: tuple[float, ...] | None
    folds: tuple[RouterMetrics, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "apgr": self.apgr.to_dict(), "auc": self.auc.to_dict(),
            "cpt": {_pct_key(t): s.to_dict() for t, s in self.cpt.items()},
            "curve_mean": {"strong_fraction": list(CURVE_GRID),
                           "quality": list(self.quality_mean),
                           "quality_std": None if self.quality_std is None
                           else list(self.quality_std)},
            "folds": [_fold_dict(m) for m in self.folds],
        }


def _fold_dict(m: RouterMetrics) -> dict[str, Any]:
    return {
        "q_weak": m.q_weak, "q_strong": m.q_strong, "auc": m.auc,
        "apgr": finite_or_none(m.apgr),
        "cpt": {_pct_key(t): finite_or_none(v) for t, v in m.cpt.items()},
        "curve": [{"strong_fraction": p.strong_fraction, "quality": p.quality,
                   "threshold": p.threshold} for p in m.curve],
    }


def summarize_method(name: str, folds: Sequence[RouterMetrics]) -> MethodSummary:
    """Mean +/- std over folds of one method's metrics, and its mean curve on the grid."""
    if not folds:
        raise ValueError("no folds")
    curves = np.array([interpolate_curve(m.curve, CURVE_GRID) for m in folds])
    std = tuple(float(v) for v in curves.std(axis=0, ddof=1)) if len(folds) >= 2 else None
    return MethodSummary(
        name=name, apgr=Stat.of([m.apgr for m in folds]), auc=Stat.of([m.auc for m in folds]),
        cpt={t: Stat.of([m.cpt[t] for m in folds]) for t in folds[0].cpt},
        quality_mean=tuple(float(v) for v in curves.mean(axis=0)), quality_std=std,
        folds=tuple(folds),
    )


@dataclass(frozen=True, slots=True)
class EvalReport:
    """Everything ``modelmix router eval`` measured on one outcome table.

    Attributes:
        dataset: the table's name (e.g. ``"mmlu"``); n_prompts: its rows.
        protocol: ``"cv"`` (k-fold, retrained per fold) or ``"holdout"`` (one trained
            router scored on a table it never saw); folds: k (1 for holdout).
        q_weak / q_strong: always-weak / always-strong quality, over folds.
        methods: ``"router"``, ``"random"``, ``"oracle"`` -> summary.
        cost: the priced token profile, or None when no prices were given.
        router: what was evaluated (artifact path, or the trainer used per fold).
        skipped_rows: rows of the file without both outcomes, left out.
    """

    dataset: str
    weak_model: str
    strong_model: str
    n_prompts: int
    protocol: Protocol
    folds: int
    seed: int
    q_weak: Stat
    q_strong: Stat
    methods: dict[str, MethodSummary]
    cost: CostModel | None
    router: str
    skipped_rows: int = 0

    @property
    def quality_is_share(self) -> bool:
        """True when quality is a share of good answers (True/False or 0-1 scores, shown
        as %); False for grades such as an MT-Bench 1-10 score (shown as they are)."""
        return all(math.isfinite(q.mean) and 0.0 <= q.mean <= 1.0
                   for q in (self.q_weak, self.q_strong))

    def cost_at(self, strong_fraction: float) -> tuple[float, float] | None:
        """(USD per 1k requests, share of always-strong cost) at a strong fraction."""
        if self.cost is None or not math.isfinite(strong_fraction):
            return None
        return (self.cost.usd_per_request(strong_fraction) * 1000,
                self.cost.relative_to_strong(strong_fraction))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as null)."""
        costs: dict[str, Any] = {}
        for name, summary in self.methods.items():
            costs[name] = {_pct_key(t): self._cost_dict(s.mean)
                           for t, s in summary.cpt.items()}
        return {
            "dataset": self.dataset, "weak_model": self.weak_model,
            "strong_model": self.strong_model, "n_prompts": self.n_prompts,
            "skipped_rows": self.skipped_rows,
            "protocol": self.protocol, "folds": self.folds, "seed": self.seed,
            "router": self.router, "q_weak": self.q_weak.to_dict(),
            "q_strong": self.q_strong.to_dict(),
            "methods": {k: v.to_dict() for k, v in self.methods.items()},
            "cost_model": None if self.cost is None else self.cost.to_dict(),
            "cost_at_cpt": costs if self.cost is not None else None,
        }

    def _cost_dict(self, fraction: float) -> dict[str, float | None] | None:
        at = self.cost_at(fraction)
        if at is None:
            return None
        return {"strong_fraction": fraction, "usd_per_1k_requests": at[0],
                "share_of_all_strong": finite_or_none(at[1])}
