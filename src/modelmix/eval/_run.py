"""One call for ``modelmix router eval``: every table, one protocol, priced, reported."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from modelmix.catalog import Deployment
from modelmix.eval._cost import DEFAULT_COMPLETION_TOKENS, cost_model
from modelmix.eval._cv import Fit, Scorer, cross_validate, evaluate_holdout
from modelmix.eval._metrics import DEFAULT_BINS
from modelmix.eval._report import EvalReport
from modelmix.eval._table import PairTable

__all__ = ["EvalOptions", "run_eval"]


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


def run_eval(tables: Sequence[PairTable], *, options: EvalOptions, fit: Fit | None = None,
             scorer: Scorer | None = None, router: str = "",
             on_fold: Callable[[str, int, int], None] | None = None) -> list[EvalReport]:
    """Evaluate each table: cross-validated with ``fit``, or held-out with ``scorer``.

    Exactly one of ``fit`` and ``scorer`` must be given. ``on_fold(table, i, k)`` reports
    progress before each fold is trained.
    """
    if (fit is None) == (scorer is None):
        raise ValueError("give exactly one of fit (cross-validation) and scorer (held-out)")
    reports = []
    for table in tables:
        cost = None
        if options.weak_deployment is not None and options.strong_deployment is not None:
            cost = cost_model(table, options.weak_deployment, options.strong_deployment,
                              completion_tokens=options.completion_tokens)
        if fit is not None:
            progress = (None if on_fold is None
                        else lambda i, k, name=table.name: on_fold(name, i, k))
            reports.append(cross_validate(table, fit, folds=options.folds, seed=options.seed,
                                          bins=options.bins, cost=cost,
                                          router=router or "trained per fold",
                                          on_fold=progress))
        elif scorer is not None:
            reports.append(evaluate_holdout(table, scorer, bins=options.bins, cost=cost,
                                            router=router or "artifact"))
    return reports
