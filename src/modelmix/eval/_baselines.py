"""Reference routers: random routing (the floor) and the oracle (the ceiling).

SOURCE: RouteLLM ``routellm/routers/routers.py`` ``RandomRouter`` (a uniform random score
per prompt, thresholded like any router) and ``routellm/evals/benchmarks.py``
``get_optimal_accuracy`` (the oracle), as named in DESIGN.md "Router metrics".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from modelmix.metrics._quality import (
    DEFAULT_BINS,
    PGR_TARGETS,
    CurvePoint,
    FloatArray,
    RouterMetrics,
    evaluate_scores,
    interpolate_curve,
    summarize_curve,
)

__all__ = ["RANDOM_SEEDS", "oracle_curve", "oracle_metrics", "random_metrics"]

#: Seeds of the random baseline: its numbers are the mean over these 10 runs.
RANDOM_SEEDS: tuple[int, ...] = tuple(range(10))
_GRID = np.linspace(0.0, 1.0, DEFAULT_BINS + 1)


def random_metrics(weak: Sequence[float] | FloatArray, strong: Sequence[float] | FloatArray,
                   *, seeds: Sequence[int] = RANDOM_SEEDS, bins: int = DEFAULT_BINS,
                   targets: Sequence[float] = PGR_TARGETS) -> RouterMetrics:
    """Random routing: uniform scores in [0, 1) from ``numpy.random.default_rng(seed)``,
    evaluated like a router, averaged over ``seeds``.

    AUC, APGR and each CPT are the means of the per-seed values; the curve is the mean of
    the per-seed curves at strong fractions 0, 0.1, ..., 1.0. In expectation the curve is
    the straight line from (0, q_weak) to (1, q_strong): APGR ~0.5 and CPT(x) ~x.
    """
    if not seeds:
        raise ValueError("need at least one seed")
    n = len(weak)
    runs = [evaluate_scores(np.random.default_rng(seed).random(n), weak, strong,
                            bins=bins, targets=targets) for seed in seeds]
    quality = np.mean([interpolate_curve(r.curve, _GRID) for r in runs], axis=0)
    curve = tuple(CurvePoint(float(f), float(q)) for f, q in zip(_GRID, quality, strict=True))
    return RouterMetrics(
        q_weak=runs[0].q_weak, q_strong=runs[0].q_strong, curve=curve,
        auc=float(np.mean([r.auc for r in runs])),
        apgr=float(np.mean([r.apgr for r in runs])),
        cpt={t: float(np.mean([r.cpt[t] for r in runs])) for t in targets},
    )


def oracle_curve(weak: Sequence[float] | FloatArray,
                 strong: Sequence[float] | FloatArray) -> list[CurvePoint]:
    """The best quality reachable at each strong fraction, knowing every outcome.

    With ``n`` prompts and a budget of ``f * n`` strong calls, the oracle sends the prompts
    with the largest positive gain ``strong - weak`` to the strong model, the budget taken
    as continuous (RouteLLM: ``weak_correct + min(strong_calls, #(weak wrong and strong
    right))``). For True/False tables that is "strong only where weak is wrong and strong
    right": a line from (0, q_weak) up to (share of such prompts, q_weak + that share),
    then flat. The curve is exact and piecewise linear; collinear points are dropped.
    No router can beat it at any strong fraction.
    """
    w = np.asarray(weak, dtype=np.float64)
    gains = np.sort(np.asarray(strong, dtype=np.float64) - w)[::-1]
    gains = gains[gains > 0]
    n = w.size
    q0 = float(w.mean())
    qualities = q0 + np.concatenate(([0.0], np.cumsum(gains))) / n
    fractions = np.arange(gains.size + 1) / n
    if gains.size < n:
        fractions = np.append(fractions, 1.0)
        qualities = np.append(qualities, qualities[-1])
    return _drop_collinear([CurvePoint(float(f), float(q))
                            for f, q in zip(fractions, qualities, strict=True)])


def _drop_collinear(points: list[CurvePoint]) -> list[CurvePoint]:
    kept = [points[0]]
    for i in range(1, len(points) - 1):
        a, b, c = kept[-1], points[i], points[i + 1]
        cross = ((b.strong_fraction - a.strong_fraction) * (c.quality - a.quality)
                 - (b.quality - a.quality) * (c.strong_fraction - a.strong_fraction))
        if abs(cross) > 1e-12:
            kept.append(b)
    if len(points) > 1:
        kept.append(points[-1])
    return kept


def oracle_metrics(weak: Sequence[float] | FloatArray, strong: Sequence[float] | FloatArray,
                   *, targets: Sequence[float] = PGR_TARGETS) -> RouterMetrics:
    """AUC, APGR and CPT of :func:`oracle_curve` (APGR may exceed 1: the oracle beats
    always-strong wherever the weak model is right and the strong one wrong)."""
    q_weak = float(np.mean(np.asarray(weak, dtype=np.float64)))
    q_strong = float(np.mean(np.asarray(strong, dtype=np.float64)))
    return summarize_curve(oracle_curve(weak, strong), q_weak, q_strong, targets)
