"""One call for ``modelmix router eval``: every table, one protocol, priced, reported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelmix.catalog import Deployment
from modelmix.eval._cost import DEFAULT_COMPLETION_TOKENS, CostModel, cost_model
from modelmix.eval._protocols import Fit, Scorer, cross_validate_tables, evaluate_holdout
from modelmix.eval._report import EvalReport
from modelmix.eval._table import PairTable
from modelmix.metrics import DEFAULT_BINS

__all__ = ["SCORE_BATCH", "EvalOptions", "batched", "run_eval"]

#: Prompts a held-out scorer sees per call: bounds the features held at once (a
#: 1,000,000-row table is scored 4,096 prompts at a time) and paces progress reports.
SCORE_BATCH = 4096


@dataclass(frozen=True, kw_only=True, slots=True)
class EvalOptions:
    """How to evaluate.

    Attributes:
        folds: k of k-fold cross-validation (ignored when scoring with a trained router).
        seed: fixes the fold split.
        bins: quantile bins of the scores (RouteLLM: 10).
        weak_deployment / strong_deployment: catalog deployments whose prices cost the
            operating points; None for no cost columns.
        completion_tokens: completion tokens per request assumed for tables without
            responses.
    """

    folds: int = 5
    seed: int = 0
    bins: int = DEFAULT_BINS
    weak_deployment: Deployment | None = None
    strong_deployment: Deployment | None = None
    completion_tokens: int = DEFAULT_COMPLETION_TOKENS


def batched(scorer: Scorer, *, size: int = SCORE_BATCH,
            on_batch: Callable[[int, int], None] | None = None) -> Scorer:
    """``scorer`` called on at most ``size`` prompts at a time, scores concatenated in
    order; ``on_batch(done, total)`` after each batch (prompts scored so far)."""
    def score(prompts: Sequence[str]) -> list[float]:
        scores: list[float] = []
        for start in range(0, len(prompts), size):
            scores.extend(scorer(prompts[start:start + size]))
            if on_batch is not None:
                on_batch(min(start + size, len(prompts)), len(prompts))
        return scores

    return score


def run_eval(tables: Sequence[PairTable], *, options: EvalOptions, fit: Fit | None = None,
             scorer: Scorer | None = None, router: str = "",
             on_fold: Callable[[int, int], None] | None = None,
             on_batch: Callable[[int, int], None] | None = None) -> list[EvalReport]:
    """Evaluate the tables: cross-validated with ``fit`` (one router per fold, trained on
    that fold's training rows of all tables together), or held-out with ``scorer``.

    Exactly one of ``fit`` and ``scorer`` must be given. ``on_fold(i, k)`` reports
    progress before fold i is trained. A held-out ``scorer`` is called on
    :data:`SCORE_BATCH` prompts at a time, ``on_batch(done, total)`` after each.
    """
    if (fit is None) == (scorer is None):
        raise ValueError("give exactly one of fit (cross-validation) and scorer (held-out)")
    costs = [_cost(t, options) for t in tables]
    if scorer is not None:
        scorer = batched(scorer, on_batch=on_batch)
        return [evaluate_holdout(t, scorer, bins=options.bins, cost=c,
                                 router=router or "artifact")
                for t, c in zip(tables, costs, strict=True)]
    assert fit is not None  # checked above; narrows the type
    return cross_validate_tables(tables, fit, folds=options.folds, seed=options.seed,
                                 bins=options.bins, costs=costs,
                                 router=router or "trained per fold", on_fold=on_fold)


def _cost(table: PairTable, options: EvalOptions) -> CostModel | None:
    if options.weak_deployment is None or options.strong_deployment is None:
        return None
    return cost_model(table, options.weak_deployment, options.strong_deployment,
                      completion_tokens=options.completion_tokens)
