"""Honest evaluation protocols: k-fold cross-validation split by prompt, and held-out scoring.

Cross-validation never scores a prompt the router trained on: the rows of each table are
grouped by prompt text (a prompt that occurs twice goes wholly into one fold), the groups
are dealt into k folds stratified by MMLU subject when the table has a ``subject`` column
(each subject spread evenly over the folds, as scikit-learn's ``StratifiedGroupKFold``
aims to), and for fold i the router is fitted on the other k-1 folds and scored on fold i
only. With several tables, fold i of every table is held out at once and one router is
fitted on the rest of all of them together (as a router trained on all the tables would
be), then scores each table's fold i. Shuffling uses ``random.Random(seed)``, so a seed
fixes the split.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from modelmix.eval._baselines import RANDOM_SEEDS, oracle_metrics, random_metrics
from modelmix.eval._cost import CostModel
from modelmix.eval._report import METHODS, EvalReport, summarize_method
from modelmix.eval._table import PairTable
from modelmix.metrics import DEFAULT_BINS, PGR_TARGETS, RouterMetrics, Stat, evaluate_scores
from modelmix.metrics import stratified_folds as _stratified

__all__ = [
    "Fit",
    "Scorer",
    "cross_validate",
    "cross_validate_tables",
    "evaluate_holdout",
    "stratified_folds",
]

#: A trained router as evaluation sees it: prompts -> per-prompt scores (higher = strong).
Scorer = Callable[[Sequence[str]], Sequence[float]]
#: A router trainer: one fold's training rows, one part per table -> a scorer.
Fit = Callable[[Sequence[PairTable]], Scorer]


def stratified_folds(table: PairTable, folds: int = 5, seed: int = 0) -> list[list[int]]:
    """Row indices of each fold's test part for ``table``
    (:func:`modelmix.metrics.stratified_folds` over its prompts and subjects)."""
    return _stratified(table.prompts, table.subjects, folds, seed)


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
        cost=cost, router=router, skipped_rows=table.skipped_rows,
    )


def cross_validate_tables(
    tables: Sequence[PairTable], fit: Fit, *, folds: int = 5, seed: int = 0,
    bins: int = DEFAULT_BINS, random_seeds: Sequence[int] = RANDOM_SEEDS,
    targets: Sequence[float] = PGR_TARGETS, costs: Sequence[CostModel | None] | None = None,
    router: str = "trained per fold",
    on_fold: Callable[[int, int], None] | None = None,
) -> list[EvalReport]:
    """k-fold cross-validation of a router trainer on one or more outcome tables.

    For each fold ``fit`` gets the training rows (one :class:`PairTable` per table, same
    order) and returns a scorer, which then sees only the held-out prompts of each table;
    baselines are computed on the same held-out prompts. ``costs`` gives one cost model
    per table (or None). ``on_fold(i, k)`` is called before fold i is fitted (progress).

    Example::

        def fit(train: Sequence[PairTable]) -> Scorer:
            return lambda prompts: [len(p) for p in prompts]   # longer -> strong

        mmlu, gsm8k = cross_validate_tables([mmlu_table, gsm8k_table], fit, folds=5)
        mmlu.methods["router"].apgr.fmt()
    """
    splits = [stratified_folds(t, folds, seed) for t in tables]
    per_table: list[list[dict[str, RouterMetrics]]] = [[] for _ in tables]
    for i in range(folds):
        if on_fold is not None:
            on_fold(i, folds)
        parts = [_split(t, s[i]) for t, s in zip(tables, splits, strict=True)]
        scorer = fit([train for train, _ in parts])
        for results, (_, test) in zip(per_table, parts, strict=True):
            results.append(_score_fold(test, list(scorer(test.prompts)), bins=bins,
                                       random_seeds=random_seeds, targets=targets))
    costs = costs if costs is not None else [None] * len(tables)
    return [_report(t, r, protocol="cv", seed=seed, cost=c, router=router)
            for t, r, c in zip(tables, per_table, costs, strict=True)]


def _split(table: PairTable, test_rows: Sequence[int]) -> tuple[PairTable, PairTable]:
    """(train, test) parts of a table; raises if a test prompt is also a training one."""
    held_out = set(test_rows)
    train = table.take([r for r in range(len(table)) if r not in held_out])
    test = table.take(test_rows)
    if set(train.prompts) & set(test.prompts):
        raise RuntimeError("a test prompt is in the training part")  # split bug guard
    return train, test


def cross_validate(table: PairTable, fit: Fit, *, folds: int = 5, seed: int = 0,
                   bins: int = DEFAULT_BINS, random_seeds: Sequence[int] = RANDOM_SEEDS,
                   targets: Sequence[float] = PGR_TARGETS, cost: CostModel | None = None,
                   router: str = "trained per fold",
                   on_fold: Callable[[int, int], None] | None = None) -> EvalReport:
    """:func:`cross_validate_tables` on one table (``fit`` gets a one-item sequence)."""
    return cross_validate_tables([table], fit, folds=folds, seed=seed, bins=bins,
                                 random_seeds=random_seeds, targets=targets, costs=[cost],
                                 router=router, on_fold=on_fold)[0]


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
