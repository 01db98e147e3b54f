"""Honest evaluation protocols: k-fold cross-validation split by prompt, and held-out scoring.

Cross-validation never scores a prompt the router trained on: rows are grouped by prompt
text (a prompt that occurs twice goes wholly into one fold), the groups are dealt into k
folds stratified by MMLU subject when the table has a ``subject`` column (each subject is
spread evenly over the folds, as scikit-learn's ``StratifiedGroupKFold`` aims to), and for
fold i the router is fitted on the other k-1 folds and scored on fold i only. Shuffling
uses ``random.Random(seed)``, so a seed fixes the split.
"""

from __future__ import annotations

import random
from collections import defaultdict
from collections.abc import Callable, Sequence

from modelmix.eval._baselines import RANDOM_SEEDS, oracle_metrics, random_metrics
from modelmix.eval._cost import CostModel
from modelmix.eval._metrics import DEFAULT_BINS, PGR_TARGETS, RouterMetrics, evaluate_scores
from modelmix.eval._report import METHODS, EvalReport, Stat, summarize_method
from modelmix.eval._table import PairTable

__all__ = ["Fit", "Scorer", "cross_validate", "evaluate_holdout", "stratified_folds"]

#: A trained router as evaluation sees it: prompts -> per-prompt scores (higher = strong).
Scorer = Callable[[Sequence[str]], Sequence[float]]
#: A router trainer: the training rows of one fold -> a scorer.
Fit = Callable[[PairTable], Scorer]


def stratified_folds(table: PairTable, folds: int = 5, seed: int = 0) -> list[list[int]]:
    """Row indices of each fold's test part (every row in exactly one fold).

    Groups (rows sharing a prompt text) of each stratum (subject, or one stratum when the
    table has none) are shuffled and dealt round-robin; the dealing position carries over
    from one stratum to the next, so fold sizes differ by at most one group per fold.
    """
    groups: dict[str, list[int]] = defaultdict(list)
    for i, prompt in enumerate(table.prompts):
        groups[prompt].append(i)
    if not 2 <= folds <= len(groups):
        raise ValueError(f"folds must be between 2 and the number of distinct prompts "
                         f"({len(groups)}), got {folds}")
    strata: dict[str, list[list[int]]] = defaultdict(list)
    for rows in groups.values():
        strata[table.subjects[rows[0]] if table.subjects else ""].append(rows)
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


def _score_fold(test: PairTable, scores: Sequence[float], *, bins: int,
                random_seeds: Sequence[int],
                targets: Sequence[float]) -> dict[str, RouterMetrics]:
    if len(scores) != len(test):
        raise ValueError(f"scorer returned {len(scores)} scores for {len(test)} prompts")
    return {
        "router": evaluate_scores(scores, test.weak, test.strong, bins=bins, targets=targets),
        "random": random_metrics(test.weak, test.strong, seeds=random_seeds, bins=bins,
                                 targets=targets),
        "oracle": oracle_metrics(test.weak, test.strong, targets=targets),
    }


def _report(table: PairTable, per_fold: list[dict[str, RouterMetrics]], *,
            protocol: str, seed: int, cost: CostModel | None, router: str) -> EvalReport:
    return EvalReport(
        dataset=table.name, weak_model=table.weak_model, strong_model=table.strong_model,
        n_prompts=len(table), protocol="cv" if protocol == "cv" else "holdout",
        folds=len(per_fold), seed=seed,
        q_weak=Stat.of([f["router"].q_weak for f in per_fold]),
        q_strong=Stat.of([f["router"].q_strong for f in per_fold]),
        methods={m: summarize_method(m, [f[m] for f in per_fold]) for m in METHODS},
        cost=cost, router=router,
    )


def cross_validate(table: PairTable, fit: Fit, *, folds: int = 5, seed: int = 0,
                   bins: int = DEFAULT_BINS, random_seeds: Sequence[int] = RANDOM_SEEDS,
                   targets: Sequence[float] = PGR_TARGETS, cost: CostModel | None = None,
                   router: str = "trained per fold",
                   on_fold: Callable[[int, int], None] | None = None) -> EvalReport:
    """k-fold cross-validation of a router trainer on one outcome table.

    ``fit`` is called once per fold with that fold's training rows and must return a
    scorer; the scorer sees only the held-out prompts. Baselines are computed on the same
    held-out prompts. ``on_fold(i, k)`` is called before fold i is fitted (progress).

    Example::

        def fit(train: PairTable) -> Scorer:
            return lambda prompts: [len(p) for p in prompts]   # longer -> strong

        report = cross_validate(load_outcome_table("mmlu.csv"), fit, folds=5)
        report.methods["router"].apgr.fmt()
    """
    splits = stratified_folds(table, folds, seed)
    per_fold: list[dict[str, RouterMetrics]] = []
    for i, test_rows in enumerate(splits):
        if on_fold is not None:
            on_fold(i, folds)
        held_out = set(test_rows)
        train = table.take([r for r in range(len(table)) if r not in held_out])
        test = table.take(test_rows)
        if set(train.prompts) & set(test.prompts):
            raise RuntimeError("a test prompt is in the training part")  # split bug guard
        scorer = fit(train)
        per_fold.append(_score_fold(test, list(scorer(test.prompts)), bins=bins,
                                    random_seeds=random_seeds, targets=targets))
    return _report(table, per_fold, protocol="cv", seed=seed, cost=cost, router=router)


def evaluate_holdout(table: PairTable, scorer: Scorer, *, bins: int = DEFAULT_BINS,
                     random_seeds: Sequence[int] = RANDOM_SEEDS,
                     targets: Sequence[float] = PGR_TARGETS, cost: CostModel | None = None,
                     router: str = "artifact") -> EvalReport:
    """Score a whole table with an already trained router (no retraining, one "fold").

    Only honest when the router never trained on these prompts (a held-out table).
    """
    per_fold = [_score_fold(table, list(scorer(table.prompts)), bins=bins,
                            random_seeds=random_seeds, targets=targets)]
    return _report(table, per_fold, protocol="holdout", seed=0, cost=cost, router=router)
