"""Multi-task denoising of training targets (``FitOptions.pool``).

On a judge-preference table each cell is one noisy judgement of one answer, but how hard a
prompt is (how likely any model's answer is to lose to the reference) is shared by all
models. Blending each model's target with the mean of the other models on the same prompt
gives every head ~M times the labels for that shared part, at the cost of some of the
model's own signal; ``pool`` sets the blend. Only the training targets change, so scoring
(and the artifact format) is the same as without it.
"""

from __future__ import annotations

import numpy as np

__all__ = ["informative_columns", "pooled_targets"]


def informative_columns(outcomes: np.ndarray) -> np.ndarray:
    """``(M,)`` bool: columns whose known outcomes are not all the same value (a
    reference model's constant 0.5 column, an always-right model, says nothing about
    which prompts are hard)."""
    known = np.isfinite(outcomes)
    lo = np.where(known, outcomes, np.inf).min(0)
    hi = np.where(known, outcomes, -np.inf).max(0)
    return np.asarray(known.any(0) & (hi > lo))


def pooled_targets(outcomes: np.ndarray, pool: float) -> np.ndarray:
    """``(n, M)`` targets: for each informative column ``j``,
    ``(1 - pool) * y_j + pool * mean_{k != j} y_k`` over the other informative columns
    known on that row (the column's own value where none is); other columns, and
    missing cells, unchanged. ``pool = 0`` returns ``outcomes`` itself.

    The values stay in [0, 1] when the outcomes are, so the logistic heads read them as
    soft labels.
    """
    if pool == 0.0:
        return outcomes
    inf = informative_columns(outcomes)
    if inf.sum() < 2:
        return outcomes
    sub = outcomes[:, inf]
    known = np.isfinite(sub)
    filled = np.where(known, sub, 0.0)
    total, count = filled.sum(1, keepdims=True), known.sum(1, keepdims=True)
    others = (total - filled) / np.maximum(count - known, 1)
    has_others = (count - known) > 0
    blended = np.where(has_others, (1.0 - pool) * sub + pool * others, sub)
    out = outcomes.copy()
    out[:, inf] = np.where(known, blended, sub)
    return out
