"""``modelmix router eval --frontier --prices FILE``: route among many models by predicted
quality (two rules: the highest predicted quality minus a cost weight times cost, and the
cheapest model predicted to reach a target), cross-validated, priced, against every
single model, random mixing and the best pair.

Example (the committed benchmark, ``benchmarks/router/many_models.py``)::

    modelmix router eval --frontier --data ../shared/data/alpacaeval/chat.csv \\
        --prices benchmarks/router/chat_prices.yaml --out many-models
"""

from __future__ import annotations

import time
import warnings
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from modelmix.cli._output import check_out_dir
from modelmix.errors import ConfigError, require_extra

if TYPE_CHECKING:
    import numpy as np

    from modelmix.cli._eval import EvalRequest
    from modelmix.eval._frontier_eval import FrontierReport, ManyModelTable

__all__ = ["frontier_inputs", "frontier_report_for", "run_frontier_command"]


def _check(req: EvalRequest) -> Path:
    """The one table to evaluate; :class:`ConfigError` for options that do not combine."""
    if not req.frontier:
        raise ConfigError("--prices and --models price the many-model frontier: add "
                          "--frontier")
    if req.prices is None:
        raise ConfigError("--frontier needs a price table: --prices FILE (e.g. "
                          "benchmarks/router/chat_prices.yaml)")
    if req.router is not None:
        raise ConfigError("--frontier cross-validates (retrains per fold); it does not "
                          "take --router")
    if req.weak is not None or req.strong is not None:
        raise ConfigError("--frontier routes among all model columns; use --models, not "
                          "--weak/--strong")
    if len(req.data) != 1:
        raise ConfigError(f"--frontier evaluates one table, got {len(req.data)} (--data)")
    return req.data[0]


def frontier_inputs(req: EvalRequest, err: Console
                    ) -> tuple[ManyModelTable, np.ndarray, np.ndarray, dict[str, Any]]:
    """Load, price and cross-validate: the table, ``(n, m)`` USD per request, ``(n, m)``
    out-of-fold predicted quality, and what ``results.json`` records about them."""
    from modelmix.eval._frontier_eval import (
        check_prices,
        cost_matrix,
        cross_validated_predictions,
        describe_costs,
        load_many_model_table,
    )
    from modelmix.eval._prices import load_prices
    from modelmix.routing.learned import LEARNERS, FitOptions, load_embedder

    path = _check(req)
    prices = load_prices(req.prices) if req.prices is not None else None
    assert prices is not None  # checked in _check
    if req.learner not in LEARNERS:
        raise ConfigError(f"unknown learner {req.learner!r}; one of {', '.join(LEARNERS)}")
    table = load_many_model_table(path, models=req.models, prompt_column=req.prompt_column)
    cost = cost_matrix(table.prompts, check_prices(prices, table.models),
                       req.completion_tokens)
    options = FitOptions(learner=req.learner, seed=req.seed)
    if req.c is not None:
        options = replace(options, c=req.c)
    start = time.perf_counter()

    def progress(i: int, k: int) -> None:
        err.print(f"fold {i + 1}/{k}: training on the other {k - 1} folds "
                  f"({time.perf_counter() - start:.0f} s)", highlight=False)

    with warnings.catch_warnings():
        warnings.simplefilter("once")
        predicted = cross_validated_predictions(
            table, folds=req.folds, seed=req.seed, options=options,
            embedder=load_embedder(req.embedder), on_fold=progress)
    settings = ", ".join(f"{k}={v}" for k, v in options.describe().items())
    about = {"protocol": f"{req.folds}-fold CV by prompt (seed {req.seed}), out-of-fold "
                         "predictions pooled", "router": f"learned router ({settings}) "
                         "retrained per fold", "skipped_rows": table.skipped_rows,
             "costs": describe_costs(prices, table.models, req.completion_tokens)}
    return table, cost, predicted, about


def frontier_report_for(req: EvalRequest, err: Console) -> FrontierReport:
    """Load, price, cross-validate and summarise (no files written); the ``utility``
    rule headlines, the ``threshold`` rule is reported beside it."""
    from modelmix.eval._frontier_eval import frontier_report

    table, cost, predicted, about = frontier_inputs(req, err)
    return frontier_report(predicted, table.quality, cost, table.models, dataset=table.name,
                           about=about)


def run_frontier_command(req: EvalRequest, out: Console, err: Console) -> list[Path]:
    """Evaluate, print the table, write ``results.json`` and ``plot.png``; returns their
    paths. Raises :class:`~modelmix.errors.ModelmixError` subclasses for bad input."""
    from modelmix.eval._frontier_output import render_frontier_table, write_frontier

    _check(req)
    check_out_dir(req.out)
    require_extra("matplotlib", "eval", "router evaluation (its plot)")
    require_extra("sklearn", "train", "the frontier (it trains per fold)")
    try:
        report = frontier_report_for(req, err)
    except ValueError as exc:  # e.g. more folds than distinct prompts
        raise ConfigError(str(exc)) from exc
    out.print(render_frontier_table(report))
    results, plot = write_frontier(report, req.out, extra={"options": req.describe()})
    out.print(f"wrote {results} and {plot}", highlight=False)
    return [results, plot]
