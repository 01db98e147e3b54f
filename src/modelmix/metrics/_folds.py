"""Splitting outcome tables into cross-validation folds by prompt, and scoring each fold.

Shared by the evaluation protocols (``modelmix.eval``) and the learned router's own
``train --cv`` (``modelmix.routing.learned``), so both split and score the same way:
rows are grouped by prompt text (a prompt that occurs twice goes wholly into one fold),
groups are dealt into k folds stratified by MMLU subject when there is one (as
scikit-learn's ``StratifiedGroupKFold`` aims to), each source file is split on its own,
and a fold is scored with RouteLLM's APGR and CPT (:func:`evaluate_scores`), summarised
as mean and sample std over folds (:class:`Stat`). Shuffling uses
``random.Random(seed)``, so a seed fixes the split.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from modelmix.metrics._quality import evaluate_scores
from modelmix.metrics._stats import Stat

__all__ = ["FoldMethod", "cross_validate_sources", "source_folds", "stratified_folds"]

#: (train mask, test mask) over a table's rows -> scores of the test rows.
FoldMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]
#: progress(stage, done, total).
Progress = Callable[[str, int, int], None]


def stratified_folds(prompts: Sequence[str], subjects: Sequence[str] | None, folds: int = 5,
                     seed: int = 0) -> list[list[int]]:
    """Row indices of each fold's test part (every row in exactly one fold).

    Groups (rows sharing a prompt text) of each stratum (subject, or one stratum when the
    table has none) are shuffled and dealt round-robin; the dealing position carries over
    from one stratum to the next, so fold sizes differ by at most one group per fold.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, prompt in enumerate(prompts):
        groups[prompt].append(i)
    if not 2 <= folds <= len(groups):
        raise ValueError(f"folds must be between 2 and the number of distinct prompts "
                         f"({len(groups)}), got {folds}")
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for rows in groups.values():
        strata[subjects[rows[0]] if subjects else ""].append(rows)
    rng = random.Random(seed)
    out: list[list[int]] = [[] for _ in range(folds)]
    position = 0
    for name in sorted(strata):
        members = strata[name]
        rng.shuffle(members)
        for rows in members:
            out[position % folds].extend(rows)
            position += 1
    return [sorted(f) for f in out]


def source_folds(prompts: Sequence[str], sources: Sequence[str], domains: Sequence[str],
                 folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index of every row, ``(n,)`` int: each source file's rows are split on their
    own by :func:`stratified_folds`, stratified by ``domains`` where a row's domain is not
    just its source's name (an MMLU subject).

    Raises:
        ValueError: a source has fewer distinct prompts than ``folds``.
    """
    source_of = np.asarray(sources)
    out = np.zeros(len(prompts), dtype=int)
    for source in dict.fromkeys(sources):
        rows = np.flatnonzero(source_of == source)
        index = [int(i) for i in rows]
        has_subject = any(domains[i] != source for i in index)
        parts = stratified_folds([prompts[i] for i in index],
                                 [domains[i] for i in index] if has_subject else None,
                                 folds, seed)
        for k, members in enumerate(parts):
            out[rows[members]] = k
    return out


def cross_validate_sources(sources: Sequence[str], weak: np.ndarray, strong: np.ndarray,
                           fold: np.ndarray, method: FoldMethod,
                           progress: Progress | None = None, *,
                           scores_out: np.ndarray | None = None) -> dict[str, Any]:
    """Run ``method`` on every fold; per source: APGR, CPT(50%), CPT(80%) over folds.

    ``weak`` / ``strong`` are each row's outcomes (``(n,)`` float, NaN when missing);
    rows with a missing outcome are scored but not counted. ``scores_out`` (``(n,)``
    float), when given, receives every row's out-of-fold score.

    Returns ``{source: {"apgr" | "cpt50" | "cpt80": Stat.to_dict(), "prompts": n}}``.
    """
    source_of = np.asarray(sources)
    names = list(dict.fromkeys(sources))
    per: dict[str, dict[str, list[float]]] = {
        n: {"apgr": [], "cpt50": [], "cpt80": []} for n in names}
    k = int(fold.max()) + 1
    known = np.isfinite(weak) & np.isfinite(strong)
    for j in range(k):
        if progress:
            progress("cross-validation", j, k)
        scores = np.full(len(source_of), math.nan)
        scores[fold == j] = method(fold != j, fold == j)
        if scores_out is not None:
            scores_out[fold == j] = scores[fold == j]
        for name in names:
            rows = (fold == j) & (source_of == name) & known
            m = evaluate_scores(scores[rows], weak[rows], strong[rows])
            per[name]["apgr"].append(m.apgr)
            per[name]["cpt50"].append(m.cpt[0.5])
            per[name]["cpt80"].append(m.cpt[0.8])
    if progress:
        progress("cross-validation", k, k)
    return {name: {key: Stat.of(v).to_dict() for key, v in d.items()} | {
        "prompts": int((source_of == name).sum())} for name, d in per.items()}
