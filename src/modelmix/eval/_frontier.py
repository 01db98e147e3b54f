"""The quality-cost frontier of routing among many models: pure arithmetic on three
``(n prompts, m models)`` arrays (predicted quality, realised quality, USD per request).

Two routing rules (both the gateway's quality mode, :mod:`modelmix.routing._learned_strategy`,
``learned_router.quality_rule``):

* ``threshold``: for a quality target ``tau``, each prompt goes to the cheapest model whose
  predicted quality is ``>= tau`` (equal cost: the higher prediction); when none reaches
  ``tau``, to the model with the highest predicted quality (equal prediction: the
  cheaper). Sweeping ``tau`` gives one (mean USD per 1k requests, mean realised quality)
  point per target; raising ``tau`` never makes a prompt's model cheaper.
* ``utility``: for a cost weight ``lam`` (quality per USD per 1k requests), each prompt
  goes to ``argmax_j predicted[i, j] - lam * 1000 * cost[i, j]`` (equal utility: the
  cheaper). This is the predictive router of RouterBench (Hu et al. 2024,
  arXiv:2403.12031: ``argmax_j lambda * P_ij - cost_j``, lambda the willingness to pay),
  with the weight on cost instead of on quality. ``lam = 0`` is the best predicted model;
  a large ``lam`` the cheapest; raising ``lam`` never makes a prompt's model dearer.
  Unlike the threshold rule it weighs how much better a dearer model is predicted to be
  against how much more it costs, so near-equal predictions do not send a prompt to a
  model that is only slightly cheaper.

References drawn against it:

* single models: always model j, ``(mean_i cost[i, j], mean_i quality[i, j])``;
* random mixing: sending a random share of requests to each model reaches every point on
  segments between single-model points, so the upper concave hull of the single-model
  points (in linear cost) is what mixing without reading the prompt can buy;
* pairs: for models ``a`` (cheaper on average) and ``b``, the prompts with the largest
  predicted gain ``predicted[:, b] - predicted[:, a]`` go to ``b``, a share
  0%, 10%, ..., 100% (RouteLLM's deciles);
* "best pair": the pair whose curve has the largest :func:`budget_score` (the mean over
  log-spaced budgets, from the cheapest to the dearest single model, of the best quality
  the curve reaches within that budget, 0 where even its cheapest point costs more).

Reading a curve (:func:`cost_at_quality`, :func:`quality_at_cost`) uses its Pareto points
joined by straight lines: mixing two operating points at random reaches the segment.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

__all__ = [
    "PAIR_SHARES",
    "Point",
    "budget_score",
    "cost_at_quality",
    "cost_weight_grid",
    "gaps",
    "mixing_hull",
    "pair_curve",
    "pareto",
    "quality_at_cost",
    "route_by_utility",
    "route_to_target",
    "single_points",
    "sweep",
    "sweep_utility",
    "target_grid",
]

#: Shares of requests sent to the dearer model of a pair (RouteLLM's deciles).
PAIR_SHARES = tuple(i / 10 for i in range(11))
_BUDGET_GRID = 1024


@dataclass(frozen=True, slots=True)
class Point:
    """One operating point.

    Attributes:
        usd_per_1k: mean USD of 1,000 requests.
        quality: mean realised quality (the table's scale, e.g. P(preferred) in [0, 1]).
        label: what it is (a model name, ``tau=0.30``, ``20% to gpt-4``).
        target: the quality target of a threshold-rule point (None otherwise).
        cost_weight: the cost weight of a utility-rule point, quality per USD per 1k
            requests (None otherwise).
        fallback_share: share of prompts where no model reached ``target`` (went to the
            best predicted one), routing points only.
        shares: share of requests each model got (routing points), by model name.
    """

    usd_per_1k: float
    quality: float
    label: str = ""
    target: float | None = None
    cost_weight: float | None = None
    fallback_share: float | None = None
    shares: dict[str, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None}


def route_to_target(predicted: np.ndarray, cost: np.ndarray, target: float
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, the chosen model's index (``(n,)`` int) and whether it was a fallback
    (``(n,)`` bool: no model's prediction reached ``target``)."""
    meets = predicted >= target
    # cheapest meeting model; ties broken by the higher prediction (lexsort: last key first)
    masked = np.where(meets, cost, np.inf)
    order = np.lexsort((-predicted, masked), axis=1)[:, 0]
    best = np.lexsort((cost, -predicted), axis=1)[:, 0]
    fallback = np.asarray(~meets.any(axis=1), dtype=bool)
    return np.where(fallback, best, order), fallback


def _point(choice: np.ndarray, quality: np.ndarray, cost: np.ndarray, label: str,
           models: Sequence[str] | None = None, **extra: Any) -> Point:
    rows = np.arange(len(choice))
    shares = None
    if models is not None:
        counts = np.bincount(choice, minlength=len(models)) / max(len(choice), 1)
        shares = {m: round(float(c), 4) for m, c in zip(models, counts, strict=True) if c}
    return Point(usd_per_1k=float(cost[rows, choice].mean() * 1000),
                 quality=float(quality[rows, choice].mean()), label=label, shares=shares,
                 **extra)


def target_grid(predicted: np.ndarray, points: int = 201) -> list[float]:
    """Targets to sweep: ``points`` quantiles of all predictions (where they lie), plus 0
    and just above the highest (everything falls back), sorted and distinct."""
    qs = np.quantile(predicted, np.linspace(0.0, 1.0, points)) if predicted.size else []
    top = float(predicted.max()) + 1e-9 if predicted.size else 1.0
    return sorted({0.0, top, *(round(float(q), 6) for q in qs)})


def sweep(predicted: np.ndarray, quality: np.ndarray, cost: np.ndarray,
          targets: Sequence[float], models: Sequence[str] | None = None) -> list[Point]:
    """One routing point per target (the ``threshold`` rule, module doc)."""
    out = []
    for tau in targets:
        choice, fallback = route_to_target(predicted, cost, tau)
        out.append(_point(choice, quality, cost, f"tau={tau:.4g}", models, target=float(tau),
                          fallback_share=float(fallback.mean())))
    return out


def route_by_utility(predicted: np.ndarray, cost: np.ndarray, weight: float) -> np.ndarray:
    """Per prompt, the index (``(n,)`` int) of ``argmax_j predicted - weight * 1000 *
    cost`` (``cost`` in USD per request, ``weight`` in quality per USD per 1k requests);
    equal utility: the cheaper, then the lower index."""
    utility = predicted - weight * 1000.0 * cost
    return np.lexsort((cost, -utility), axis=1)[:, 0]


def cost_weight_grid(predicted: np.ndarray, cost: np.ndarray, points: int = 201
                     ) -> list[float]:
    """Cost weights to sweep (quality per USD per 1k requests): ``points`` quantiles of
    the weights at which a prompt's choice between two models flips (``(p_b - p_a) /
    (1000 * (c_b - c_a))`` for every prompt and pair with ``b`` dearer and predicted
    better), plus 0 (best predicted) and above the largest (cheapest), sorted, distinct."""
    with np.errstate(divide="ignore", invalid="ignore"):  # -inf predictions: excluded
        dp = predicted[:, :, None] - predicted[:, None, :]
        dc = 1000.0 * (cost[:, :, None] - cost[:, None, :])
        flips = (dp / dc)[(dc > 0) & (dp > 0)]
    flips = flips[np.isfinite(flips)]
    if not flips.size:
        return [0.0, 1.0]
    qs = np.quantile(flips, np.linspace(0.0, 1.0, points))
    return sorted({0.0, float(flips.max()) * 1.01 + 1e-9, *(float(f"{q:.6g}") for q in qs)})


def sweep_utility(predicted: np.ndarray, quality: np.ndarray, cost: np.ndarray,
                  weights: Sequence[float], models: Sequence[str] | None = None
                  ) -> list[Point]:
    """One routing point per cost weight (the ``utility`` rule, module doc)."""
    return [_point(route_by_utility(predicted, cost, w), quality, cost, f"lambda={w:.4g}",
                   models, cost_weight=float(w)) for w in weights]


def single_points(quality: np.ndarray, cost: np.ndarray, models: Sequence[str]) -> list[Point]:
    """Always model j, for each model (``models`` names the columns)."""
    return [Point(usd_per_1k=float(cost[:, j].mean() * 1000),
                  quality=float(quality[:, j].mean()), label=m)
            for j, m in enumerate(models)]


def pair_curve(predicted: np.ndarray, quality: np.ndarray, cost: np.ndarray, a: int, b: int,
               models: Sequence[str], shares: Sequence[float] = PAIR_SHARES) -> list[Point]:
    """Route between columns ``a`` (cheap) and ``b`` (dear): the ``share`` of prompts with
    the largest predicted gain of ``b`` over ``a`` go to ``b`` (stable order on ties)."""
    gain = predicted[:, b] - predicted[:, a]
    order = np.argsort(-gain, kind="stable")
    n = len(gain)
    out = []
    for share in shares:
        choice = np.full(n, a)
        choice[order[:round(share * n)]] = b
        out.append(_point(choice, quality, cost, f"{share:.0%} to {models[b]}"))
    return out


def pareto(points: Sequence[Point]) -> list[Point]:
    """The points no other point beats (cheaper-or-equal and better, one strictly),
    by increasing cost: both cost and quality increase along the result."""
    out: list[Point] = []
    for p in sorted(points, key=lambda p: (p.usd_per_1k, -p.quality)):
        if not out or p.quality > out[-1].quality:
            if out and p.usd_per_1k == out[-1].usd_per_1k:
                continue  # same cost, lower quality: sorted first already
            out.append(p)
    return out


def mixing_hull(points: Sequence[Point]) -> list[Point]:
    """Upper concave hull (linear cost) of ``points`` from the cheapest one: what random
    mixing of them reaches (Andrew's monotone chain, upper part, Pareto points only)."""
    hull: list[Point] = []
    for p in pareto(points):
        while len(hull) >= 2:
            o, a = hull[-2], hull[-1]
            cross = ((a.usd_per_1k - o.usd_per_1k) * (p.quality - o.quality)
                     - (a.quality - o.quality) * (p.usd_per_1k - o.usd_per_1k))
            if cross < 0:
                break  # a is above the segment o-p: keep it
            hull.pop()
        hull.append(p)
    return hull


def quality_at_cost(points: Sequence[Point], usd_per_1k: float) -> float | None:
    """Best quality within the budget, mixing adjacent Pareto points; None when even the
    cheapest point costs more."""
    front = pareto(points)
    if not front or usd_per_1k < front[0].usd_per_1k:
        return None
    for lo, hi in itertools.pairwise(front):
        if lo.usd_per_1k <= usd_per_1k < hi.usd_per_1k:
            f = (usd_per_1k - lo.usd_per_1k) / (hi.usd_per_1k - lo.usd_per_1k)
            return lo.quality + f * (hi.quality - lo.quality)
    return front[-1].quality


def cost_at_quality(points: Sequence[Point], quality: float) -> float | None:
    """Lowest USD per 1k requests reaching ``quality``, mixing adjacent Pareto points;
    None when no point reaches it."""
    front = pareto(points)
    if not front or quality > front[-1].quality:
        return None
    if quality <= front[0].quality:
        return front[0].usd_per_1k
    for lo, hi in itertools.pairwise(front):
        if lo.quality < quality <= hi.quality:
            f = (quality - lo.quality) / (hi.quality - lo.quality)
            return lo.usd_per_1k + f * (hi.usd_per_1k - lo.usd_per_1k)
    return None  # unreachable: quality lies within the front's range


def _budgets(lo: float, hi: float) -> np.ndarray:
    return np.geomspace(lo, hi, _BUDGET_GRID)


def _reach(points: Sequence[Point], budgets: np.ndarray, *, mix: bool = True) -> np.ndarray:
    """Best quality within each budget: adjacent Pareto points mixed (``mix``), else the
    best single point that fits; 0 where nothing fits."""
    front = pareto(points)
    if not front:
        return np.zeros(len(budgets))
    xs, ys = [p.usd_per_1k for p in front], [p.quality for p in front]
    if mix:
        mixed: np.ndarray = np.interp(budgets, xs, ys, left=0.0)
        return mixed
    at = np.searchsorted(xs, budgets, side="right") - 1
    reached: np.ndarray = np.where(at >= 0, np.asarray(ys)[np.maximum(at, 0)], 0.0)
    return reached


def gaps(points: Sequence[Point], reference: Sequence[Point], lo: float, hi: float, *,
         mix_reference: bool = True) -> dict[str, float]:
    """How ``points`` compare with ``reference`` over budgets log-spaced from ``lo`` to
    ``hi`` USD per 1k requests (the :func:`budget_score` grid): the smallest and mean
    difference in best quality within the budget, the budget of the smallest, and the
    share of budgets where ``points`` reach at least as much. ``mix_reference=False``
    reads the reference as single points (e.g. the best single model a budget affords).
    """
    budgets = _budgets(lo, hi)
    diff = _reach(points, budgets) - _reach(reference, budgets, mix=mix_reference)
    worst = int(np.argmin(diff))
    return {"min": float(diff[worst]), "min_at_usd_per_1k": float(budgets[worst]),
            "mean": float(diff.mean()), "share_at_least": float((diff >= -1e-12).mean())}


def budget_score(points: Sequence[Point], lo: float, hi: float) -> float:
    """Mean, over budgets log-spaced from ``lo`` to ``hi`` USD per 1k requests, of the
    best quality ``points`` reach within the budget (:func:`quality_at_cost`: adjacent
    Pareto points mixed; 0 where even the cheapest point costs more)."""
    if not points or not (0 < lo <= hi) or not all(map(math.isfinite, (lo, hi))):
        return 0.0
    return float(np.mean(_reach(points, _budgets(lo, hi))))
