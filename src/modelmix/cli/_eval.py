"""What ``modelmix router eval`` does, without the command-line parsing (``cli_router.py``).

Example (the same as ``modelmix router eval --data mmlu.csv --data gsm8k.csv --out out``)::

    from rich.console import Console
    from modelmix.cli._eval import EvalRequest, run_eval_command

    run_eval_command(EvalRequest(data=[Path("mmlu.csv"), Path("gsm8k.csv")],
                                 out=Path("out")), Console())
"""

from __future__ import annotations

import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from rich.console import Console

from modelmix.catalog import Config, Deployment, Tier, config_from_env
from modelmix.cli._output import check_out_dir
from modelmix.errors import ConfigError, require_extra
from modelmix.eval._cost import DEFAULT_COMPLETION_TOKENS
from modelmix.eval._output import render_table, write_results
from modelmix.eval._report import EvalReport
from modelmix.eval._run import EvalOptions, run_eval
from modelmix.eval._table import PairTable, load_outcome_table

__all__ = ["EvalRequest", "pricing_deployments", "run_eval_command"]


@dataclass(frozen=True, kw_only=True)
class EvalRequest:
    """The command's options.

    Attributes:
        data: outcome tables (CSV), one report each.
        out: directory for ``results.json`` and ``plot.png``.
        router: ``"default"`` or an artifact directory: score the tables with this trained
            router (held-out protocol); None: cross-validate, retraining per fold.
        cv: cross-validation asked for explicitly (an error together with ``router``).
        folds / seed: k and the split seed of cross-validation.
        learner / c / embedder: learned-router settings for retraining per fold (``c``
            None: the trainer's default, which the shipped router uses).
        weak / strong: table columns of the pair (cross-validation: default inferred;
            with ``router``: the columns holding the router's weak / strong model,
            default the router's own names).
        config: catalog file (default ``$MODELMIX_CONFIG`` or the embedded catalog).
        weak_deployment / strong_deployment: catalog deployments that price the points
            (default: the cheapest open and the cheapest proprietary deployment, as
            ``modelmix router calibrate`` does).
        completion_tokens: completion tokens per request for tables without responses
            (None: 1, as RouteLLM's MMLU answers; with ``frontier``: every model's
            ``answer_chars / 4`` from the price table, else 256).
        prompt_column: the tables' prompt text column.
        frontier: route among all (or ``models``) model columns of one table by predicted
            quality and draw the priced quality-cost frontier (cross-validated; needs
            ``prices``).
        prices: price table (YAML, :mod:`modelmix.eval._prices`) for ``frontier``.
        models: model columns for ``frontier`` (default: every model column).
    """

    data: list[Path]
    out: Path
    router: str | None = None
    cv: bool = False
    folds: int = 5
    seed: int = 0
    learner: str = "logreg"
    c: float | None = None
    embedder: str = "default"
    weak: str | None = None
    strong: str | None = None
    config: Path | None = None
    weak_deployment: str | None = None
    strong_deployment: str | None = None
    completion_tokens: int | None = None
    prompt_column: str = "prompt"
    frontier: bool = False
    prices: Path | None = None
    models: list[str] | None = None

    def describe(self) -> dict[str, Any]:
        """The options as recorded in ``results.json``."""
        return {k: [str(p) for p in v] if k == "data" else str(v) if isinstance(v, Path) else v
                for k, v in asdict(self).items()}


def pricing_deployments(config: Config, weak: str | None,
                        strong: str | None) -> tuple[Deployment, Deployment] | None:
    """The deployments that price the weak and strong model: as named, else the cheapest
    open and the cheapest proprietary chat deployment (input + output price); None when
    there is none.
    Raises :class:`ConfigError` for a name not in the catalog."""
    def pick(name: str | None, tier: Tier) -> Deployment | None:
        if name is not None:
            try:
                return config.deployment(name)
            except KeyError:
                raise ConfigError(f"no deployment {name!r} in the catalog") from None
        deps = [d for d in config.deployments if d.tier is tier and d.mode == "chat"]
        return min(deps, key=lambda d: d.input_cost_per_mtok + d.output_cost_per_mtok,
                   default=None)

    w, s = pick(weak, Tier.OPEN), pick(strong, Tier.PROPRIETARY)
    return None if w is None or s is None else (w, s)


def _options(req: EvalRequest) -> EvalOptions:
    pair = pricing_deployments(config_from_env(req.config), req.weak_deployment,
                               req.strong_deployment)
    return EvalOptions(folds=req.folds, seed=req.seed,
                       weak_deployment=pair[0] if pair else None,
                       strong_deployment=pair[1] if pair else None,
                       completion_tokens=(DEFAULT_COMPLETION_TOKENS
                                          if req.completion_tokens is None
                                          else req.completion_tokens))


def _tables(req: EvalRequest, weak: str | None, strong: str | None) -> list[PairTable]:
    if not req.data:
        raise ConfigError("no outcome tables given (--data FILE)")
    tables = [load_outcome_table(p, weak=weak, strong=strong, prompt_column=req.prompt_column)
              for p in req.data]
    names = [t.name for t in tables]
    if len(set(names)) != len(names):
        tables = [load_outcome_table(p, weak=weak, strong=strong, name=str(p),
                                     prompt_column=req.prompt_column) for p in req.data]
    return tables


def _held_out(req: EvalRequest, router: str, options: EvalOptions,
              err: Console) -> list[EvalReport]:
    from modelmix.eval._learned import in_sample_files, load_trained_router

    trained = load_trained_router(router)
    for path in in_sample_files(trained.predictor, req.data):
        err.print(f"[yellow]warning:[/] {path} is in this router's training data: its "
                  "numbers measure memory, not routing; use --cv for honest ones",
                  highlight=False)
    # the table's own columns may name the router's pair differently (--weak/--strong)
    tables = _tables(req, req.weak or trained.weak_model, req.strong or trained.strong_model)
    start = last = time.perf_counter()

    def progress(done: int, total: int) -> None:  # every 5 s, and the end of a table
        nonlocal last
        now = time.perf_counter()
        if now - last >= 5.0 or (done == total and now - start >= 5.0):
            last = now
            err.print(f"scored {done:,}/{total:,} prompts ({now - start:.0f} s)",
                      highlight=False)

    return run_eval(tables, options=options, scorer=trained.scorer, router=trained.label,
                    on_batch=progress)


def _cross_validated(req: EvalRequest, options: EvalOptions, err: Console) -> list[EvalReport]:
    from modelmix.eval._learned import learned_fit
    from modelmix.routing.learned import LEARNERS, FitOptions

    if req.learner not in LEARNERS:
        raise ConfigError(f"unknown learner {req.learner!r}; one of {', '.join(LEARNERS)}")
    fit_options = FitOptions(learner=req.learner, seed=req.seed)
    if req.c is not None:
        fit_options = replace(fit_options, c=req.c)
    fit = learned_fit(fit_options, embedder=req.embedder,  # preference-table defaults
                      given={"c"} if req.c is not None else set())
    tables = _tables(req, req.weak, req.strong)
    start = time.perf_counter()

    def progress(i: int, k: int) -> None:
        err.print(f"fold {i + 1}/{k}: training on the other {k - 1} folds "
                  f"({time.perf_counter() - start:.0f} s)", highlight=False)

    settings = ", ".join(f"{k}={v}" for k, v in fit_options.describe().items())
    label = f"learned router ({settings}) retrained per fold"
    with warnings.catch_warnings():
        warnings.simplefilter("once")   # scikit-learn repeats convergence warnings per fit
        return run_eval(tables, options=options, fit=fit, router=label, on_fold=progress)


def run_eval_command(req: EvalRequest, out: Console, err: Console | None = None) -> list[Path]:
    """Evaluate, print one table per dataset to ``out``, write the files; returns their
    paths. Raises :class:`~modelmix.errors.ModelmixError` subclasses for bad input."""
    err = err or Console(stderr=True)
    if req.frontier or req.prices is not None or req.models:
        from modelmix.cli._eval_frontier import run_frontier_command

        return run_frontier_command(req, out, err)
    if req.router is not None and req.cv:
        raise ConfigError("give --router (score a held-out table) or --cv (retrain per "
                          "fold), not both")
    check_out_dir(req.out)  # fail now, not after minutes of evaluation
    require_extra("matplotlib", "eval", "router evaluation (its plot)")
    if req.cv:
        require_extra("sklearn", "train", "cross-validated evaluation (it trains per fold)")
    options = _options(req)
    try:
        reports = (_held_out(req, req.router, options, err) if req.router is not None
                   else _cross_validated(req, options, err))
    except ValueError as exc:  # e.g. more folds than distinct prompts
        raise ConfigError(str(exc)) from exc
    for report in reports:
        out.print(render_table(report))
    results, plot = write_results(reports, req.out, extra={"options": req.describe()})
    out.print(f"wrote {results} and {plot}", highlight=False)
    return [results, plot]
