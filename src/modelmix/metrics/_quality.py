"""Router quality curves and RouteLLM's metrics: PGR, APGR and CPT.

SOURCE for every definition here: RouteLLM (Ong et al., "RouteLLM: Learning to Route LLMs
with Preference Data", 2024, section 5.1 "Evaluation metrics") and its code,
``routellm/evals/benchmarks.py`` (``MMLU.evaluate``: thresholds and routing rule) and
``routellm/evals/evaluate.py`` (``apgr_metric``, ``pct_call_metric``), as summarised in the
project's DESIGN.md, "Router metrics". Reimplemented here; RouteLLM is not imported.

Conventions: a *score* is per prompt, higher means "route to the strong model"; a
*quality* is per prompt, higher is better (1.0/0.0 for a correct/incorrect answer, or any
numeric grade); fractions are in [0, 1] (reports multiply by 100 for "strong-call %").
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = [
    "DEFAULT_BINS",
    "PGR_TARGETS",
    "CurvePoint",
    "RouterMetrics",
    "apgr",
    "area_under_curve",
    "cpt",
    "decile_thresholds",
    "evaluate_scores",
    "interpolate_curve",
    "pgr",
    "quality_curve",
    "summarize_curve",
]

#: Number of quantile bins of the scores (RouteLLM ``--num-results``, default 10).
DEFAULT_BINS = 10
#: PGR targets of the CPT metric: CPT(20%), CPT(50%), CPT(80%) (RouteLLM ``evaluate.py``).
PGR_TARGETS: tuple[float, ...] = (0.2, 0.5, 0.8)

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class CurvePoint:
    """One routing operating point.

    Attributes:
        strong_fraction: share of prompts sent to the strong model, in [0, 1].
        quality: mean per-prompt quality of the routed answers (accuracy for boolean tables).
        threshold: the score threshold that produced the point, or None for a point that no
            threshold produced (baselines, interpolated curves).
    """

    strong_fraction: float
    quality: float
    threshold: float | None = None


@dataclass(frozen=True, slots=True)
class RouterMetrics:
    """A quality curve and its summary numbers on one set of prompts.

    Attributes:
        q_weak / q_strong: mean quality of always-weak / always-strong on these prompts.
        curve: operating points sorted by ``strong_fraction``, from 0.0 to 1.0.
        auc: area under ``curve`` over strong fraction in [0, 1] (trapezoid rule).
        apgr: ``(auc - q_weak) / (q_strong - q_weak)``; NaN when ``q_strong == q_weak``.
        cpt: PGR target (e.g. 0.5) -> strong fraction needed to reach it; NaN when undefined.
    """

    q_weak: float
    q_strong: float
    curve: tuple[CurvePoint, ...]
    auc: float
    apgr: float
    cpt: dict[float, float]


def _as_array(values: Sequence[float] | FloatArray, name: str) -> FloatArray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(f"{name} must be a non-empty 1-D sequence")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or infinite values")
    return arr


def decile_thresholds(scores: Sequence[float] | FloatArray,
                      bins: int = DEFAULT_BINS) -> list[float]:
    """The bin edges of ``pandas.qcut(scores, bins, retbins=True)``: ``bins + 1`` values.

    pandas 2.x (the version RouteLLM's published numbers were computed with) takes them
    from ``Series.quantile(np.linspace(0, 1, bins + 1))``, which calls
    ``np.percentile(values, levels * 100)`` with linear interpolation; this does the same,
    so it needs no pandas, and matches pandas 2.2 bit for bit. (pandas 3 rounds
    non-representable levels up by one ulp first, which moves an edge that falls exactly
    on a tied score to just above it; the 2.x edges are kept here.) Duplicate edges (tied
    scores) are kept: pandas raises "Bin edges must be unique" where RouteLLM calls it,
    and a duplicate edge only repeats an operating point, which :func:`quality_curve`
    merges. SOURCE: pandas ``core/reshape/tile.py`` ``qcut``; RouteLLM ``benchmarks.py``.
    """
    if bins < 1:
        raise ValueError("bins must be >= 1")
    arr = _as_array(scores, "scores")
    levels = np.linspace(0.0, 1.0, bins + 1) * 100.0
    edges = np.percentile(arr, levels, method="linear")
    return [float(e) for e in edges]


def quality_curve(scores: Sequence[float] | FloatArray, weak: Sequence[float] | FloatArray,
                  strong: Sequence[float] | FloatArray,
                  bins: int = DEFAULT_BINS) -> list[CurvePoint]:
    """Operating points of a router over the quantile thresholds of its own scores.

    For edge ``t_i`` (``i = 0..bins``) a prompt goes to the strong model when
    ``score >= t_i``, except at the last edge (the maximum) where the rule is
    ``score > t_i``. The first edge (the minimum) therefore gives the 100% end and the last
    the 0% end. SOURCE: RouteLLM ``benchmarks.py`` ``MMLU.evaluate``. Points with equal
    strong fraction route the same prompts (the selections are nested) and are merged.

    Returns:
        points sorted by strong fraction; first is (0.0, q_weak), last is (1.0, q_strong).
    """
    s = _as_array(scores, "scores")
    w, st = _as_array(weak, "weak"), _as_array(strong, "strong")
    if not s.shape == w.shape == st.shape:
        raise ValueError(f"length mismatch: scores {s.size}, weak {w.size}, strong {st.size}")
    edges = decile_thresholds(s, bins)
    points: dict[int, CurvePoint] = {}
    for i, t in enumerate(edges):
        selected = s > t if i == len(edges) - 1 else s >= t
        count = int(selected.sum())
        if count not in points:
            quality = float(np.where(selected, st, w).mean())
            points[count] = CurvePoint(count / s.size, quality, t)
    return [points[c] for c in sorted(points)]


def area_under_curve(curve: Sequence[CurvePoint]) -> float:
    """Trapezoid-rule area under quality over strong fraction, points sorted by fraction.

    SOURCE: RouteLLM ``evaluate.py`` ``auc_metric`` (``np.trapz`` over strong % / 100).
    """
    area = 0.0
    for a, b in itertools.pairwise(curve):
        area += (b.strong_fraction - a.strong_fraction) * (a.quality + b.quality) / 2.0
    return area


def pgr(quality: float, q_weak: float, q_strong: float) -> float:
    """Performance Gap Recovered: ``(quality - q_weak) / (q_strong - q_weak)``.

    NaN when ``q_strong == q_weak``. SOURCE: RouteLLM paper, section 5.1, eq. (PGR).
    """
    gap = q_strong - q_weak
    return (quality - q_weak) / gap if gap != 0 else math.nan


def apgr(curve: Sequence[CurvePoint], q_weak: float, q_strong: float) -> float:
    """Average PGR: ``(AUC - q_weak * span) / ((q_strong - q_weak) * span)``.

    ``span`` is the strong-fraction range the curve covers (1.0 for curves from 0% to 100%,
    which every curve built here does), so this is ``(AUC - q_weak) / (q_strong - q_weak)``
    over [0, 1]. SOURCE: RouteLLM ``evaluate.py`` ``apgr_metric`` (weak and strong AUCs
    integrated over the same points); DESIGN.md "Router metrics".
    """
    span = curve[-1].strong_fraction - curve[0].strong_fraction
    gap = (q_strong - q_weak) * span
    if gap == 0:
        return math.nan
    return (area_under_curve(curve) - q_weak * span) / gap


def cpt(curve: Sequence[CurvePoint], target_pgr: float, q_weak: float,
        q_strong: float) -> float:
    """Call-Performance Threshold: the strong fraction needed to reach PGR = ``target_pgr``.

    The quality wanted is ``q_weak + target_pgr * (q_strong - q_weak)``; the answer is the
    smallest strong fraction at which the piecewise-linear curve (points sorted by strong
    fraction) reaches it, clamped to the curve's ends like ``np.interp``. On a curve whose
    quality never decreases this is RouteLLM's ``np.interp(target, accuracy,
    strong_percentage)`` (``evaluate.py`` ``pct_call_metric``), except on a flat stretch
    exactly at the target, where ``np.interp`` returns its right (dearer) end and this its
    left. On a non-monotone curve ``np.interp`` is undefined, and the first crossing is the
    honest reading.
    NaN when ``q_strong == q_weak``.
    """
    if q_strong == q_weak:
        return math.nan
    want = q_weak + target_pgr * (q_strong - q_weak)
    if curve[0].quality >= want:
        return curve[0].strong_fraction
    for a, b in itertools.pairwise(curve):
        if b.quality >= want:
            rise = b.quality - a.quality
            return a.strong_fraction + (want - a.quality) / rise * (
                b.strong_fraction - a.strong_fraction)
    return curve[-1].strong_fraction


def summarize_curve(curve: Sequence[CurvePoint], q_weak: float, q_strong: float,
                    targets: Sequence[float] = PGR_TARGETS) -> RouterMetrics:
    """AUC, APGR and CPT at ``targets`` of a curve sorted by strong fraction."""
    if not curve:
        raise ValueError("empty curve")
    return RouterMetrics(
        q_weak=q_weak, q_strong=q_strong, curve=tuple(curve),
        auc=area_under_curve(curve), apgr=apgr(curve, q_weak, q_strong),
        cpt={t: cpt(curve, t, q_weak, q_strong) for t in targets},
    )


def evaluate_scores(scores: Sequence[float] | FloatArray, weak: Sequence[float] | FloatArray,
                    strong: Sequence[float] | FloatArray, *, bins: int = DEFAULT_BINS,
                    targets: Sequence[float] = PGR_TARGETS) -> RouterMetrics:
    """Quality curve and RouteLLM metrics of one router's scores on one set of prompts.

    Example::

        m = evaluate_scores([0.9, 0.1, 0.5, 0.3], weak=[0, 1, 1, 1], strong=[1, 1, 1, 0])
        m.apgr, m.cpt[0.5]
    """
    curve = quality_curve(scores, weak, strong, bins)
    q_weak = float(np.mean(np.asarray(weak, dtype=np.float64)))
    q_strong = float(np.mean(np.asarray(strong, dtype=np.float64)))
    return summarize_curve(curve, q_weak, q_strong, targets)


def interpolate_curve(curve: Sequence[CurvePoint],
                      fractions: Sequence[float] | FloatArray) -> FloatArray:
    """Quality of a curve (sorted by strong fraction) at ``fractions``, linearly interpolated.

    Used to average curves of different folds or seeds on one grid of strong fractions.
    """
    xs = np.array([p.strong_fraction for p in curve], dtype=np.float64)
    ys = np.array([p.quality for p in curve], dtype=np.float64)
    return np.interp(np.asarray(fractions, dtype=np.float64), xs, ys)
