"""K-fold cross-validation of a learned router on its own training tables.

Protocol (``modelmix.eval``'s): every source file is split into ``folds`` parts by prompt
with :func:`modelmix.eval.stratified_folds` (duplicates kept together, stratified by
MMLU subject). For fold k one router is trained on the other folds of *all* sources
together, as the final router is, and scores fold k of each source; no prompt is scored
by a router that trained on it. Metrics are :func:`modelmix.eval.evaluate_scores`
(RouteLLM's APGR and CPT), summarised as mean and sample std over folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from modelmix.routing.learned._embed import StaticEmbedder
from modelmix.routing.learned._features import lexical_features
from modelmix.routing.learned._fit import FitOptions, Progress, fit_router
from modelmix.routing.learned._tables import OutcomeTable
from modelmix.routing.learned._tokens import SparseRows, ngram_rows

__all__ = ["FoldMethod", "assign_folds", "cross_validate_method", "cross_validate_router"]

#: (train mask, test mask) over the table's rows -> scores of the test rows.
FoldMethod = Callable[[np.ndarray, np.ndarray], np.ndarray]

def embedder_token_rows(embedder: StaticEmbedder, prompts: list[str] | tuple[str, ...],
                        options: FitOptions) -> SparseRows | None:
    """Token n-gram rows of ``prompts`` when ``options.tokens`` asks for them."""
    if not (options.learner == "logreg" and options.tokens):
        return None
    ids = embedder.token_ids(list(prompts))
    return ngram_rows(ids, embedder.table.shape[0], options.token_buckets)



def assign_folds(table: OutcomeTable, weak: str, strong: str, folds: int = 5,
                 seed: int = 0) -> np.ndarray:
    """Fold index of every row, ``(n,)`` int; each source file is split on its own."""
    from modelmix.eval import PairTable, stratified_folds

    sources = np.asarray(table.sources)
    w, s = table.model_names.index(weak), table.model_names.index(strong)
    out = np.zeros(len(table.prompts), dtype=int)
    for source in dict.fromkeys(table.sources):
        rows = np.flatnonzero(sources == source)
        has_subject = any(table.domains[i] != source for i in rows)
        part = PairTable(
            name=source, prompts=tuple(table.prompts[i] for i in rows),
            weak=tuple(float(v) for v in table.outcomes[rows, w]),
            strong=tuple(float(v) for v in table.outcomes[rows, s]),
            weak_model=weak, strong_model=strong,
            subjects=tuple(table.domains[i] for i in rows) if has_subject else None)
        for k, members in enumerate(stratified_folds(part, folds, seed)):
            out[rows[members]] = k
    return out


def cross_validate_method(table: OutcomeTable, fold: np.ndarray, weak: str, strong: str,
                          method: FoldMethod, progress: Progress | None = None, *,
                          scores_out: np.ndarray | None = None) -> dict[str, Any]:
    """Run ``method`` on every fold; per source: APGR, CPT(50%), CPT(80%) over folds.

    Rows whose weak or strong outcome is missing are scored but not counted.
    ``scores_out`` (``(n,)`` float), when given, receives every row's out-of-fold score.
    """
    from modelmix.eval import evaluate_scores
    from modelmix.eval._report import Stat

    w, s = table.model_names.index(weak), table.model_names.index(strong)
    sources = np.asarray(table.sources)
    names = list(dict.fromkeys(table.sources))
    per: dict[str, dict[str, list[float]]] = {
        n: {"apgr": [], "cpt50": [], "cpt80": []} for n in names}
    k = int(fold.max()) + 1
    known = np.isfinite(table.outcomes[:, w]) & np.isfinite(table.outcomes[:, s])
    for j in range(k):
        if progress:
            progress("cross-validation", j, k)
        scores = np.full(len(table.prompts), math.nan)
        scores[fold == j] = method(fold != j, fold == j)
        if scores_out is not None:
            scores_out[fold == j] = scores[fold == j]
        for name in names:
            rows = (fold == j) & (sources == name) & known
            m = evaluate_scores(scores[rows], table.outcomes[rows, w], table.outcomes[rows, s])
            per[name]["apgr"].append(m.apgr)
            per[name]["cpt50"].append(m.cpt[0.5])
            per[name]["cpt80"].append(m.cpt[0.8])
    if progress:
        progress("cross-validation", k, k)
    return {name: {key: Stat.of(v).to_dict() for key, v in d.items()} | {
        "prompts": int((sources == name).sum())} for name, d in per.items()}


def cross_validate_router(
    table: OutcomeTable,
    embedder: StaticEmbedder,
    options: FitOptions,
    *,
    weak: str,
    strong: str,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    scores_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """Cross-validated metrics of the router ``options`` describes (see the module doc).

    Returns ``{"protocol", "folds", "seed", "datasets": {source: {"apgr": {"mean",
    "std", "per_fold"}, "cpt50": ..., "cpt80": ..., "prompts": n}}}``; CPT values are
    strong-call fractions in [0, 1]. ``scores_out`` (``(n,)`` float), when given, receives
    every prompt's out-of-fold P(strong needed): the scores to calibrate thresholds on.
    """
    embeddings = embedder.embed(table.prompts)
    lexical = lexical_features(table.prompts, options.structure)
    tokens = embedder_token_rows(embedder, table.prompts, options)
    w, s = table.model_names.index(weak), table.model_names.index(strong)

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(train)
        model = fit_router(embeddings[rows], lexical[rows], table.outcomes[rows],
                           [table.domains[i] for i in rows], options,
                           sources=[table.sources[i] for i in rows],
                           tokens=[tokens[i] for i in rows] if tokens else None,
                           token_vocab=embedder.table.shape[0])
        x0 = model.base_features(embeddings[test], lexical[test])
        probs = model.predict_features(
            x0, embeddings[test],
            [tokens[i] for i in np.flatnonzero(test)] if tokens else None)
        return np.asarray((1.0 + probs[:, s] - probs[:, w]) / 2.0)

    fold = assign_folds(table, weak, strong, folds, seed)
    return {"protocol": f"{folds}-fold CV by prompt, stratified by subject, trained on all "
                        "sources together", "folds": folds, "seed": seed,
            "datasets": cross_validate_method(table, fold, weak, strong, method, progress,
                                              scores_out=scores_out)}
