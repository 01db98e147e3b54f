"""CLI pieces of routing in the gateway: ``modelmix router calibrate``, ``modelmix router
export-feedback``, and the data behind ``modelmix router train --from-feedback``.

:func:`register` adds the commands to the ``router`` sub-app; the library functions
(:func:`run_calibration`, :func:`feedback_training_data`) do the work and raise
:class:`~modelmix.errors.ModelmixError` subclasses, which the commands print.

Example::

    modelmix router calibrate --router default --data shared/data/routellm/mmlu.csv \\
        --target strong-share=0.3 --name balanced --default
"""

from __future__ import annotations

import asyncio
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelmix.catalog import Config, Deployment, config_from_env
from modelmix.cli._output import check_out_dir
from modelmix.cli._output import console as _out
from modelmix.cli._output import err_console as _err
from modelmix.cli._output import fail as _fail
from modelmix.errors import ConfigError, ModelmixError
from modelmix.routing._calibration import (
    CALIBRATION_FILE,
    Calibration,
    CalibrationResult,
    Target,
    calibrate,
    load_calibration,
    router_fingerprint,
    save_calibration,
)
from modelmix.routing._learned_strategy import PredictorLoader, default_predictor_loader

if TYPE_CHECKING:
    from modelmix.eval import PairTable
    from modelmix.routing._from_feedback import FeedbackTable
    from modelmix.routing.learned._base import QualityPredictor
    from modelmix.store import StoredOutcome

__all__ = [
    "CalibrationRun",
    "feedback_data",
    "feedback_training_data",
    "register",
    "run_calibration",
]





def _config(path: Path | None) -> Config:
    return config_from_env(path)


# -- calibrate -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalibrationRun:
    """What :func:`run_calibration` did: the result, where it went, what was priced, and
    the names of stored targets dropped because they were made for another router."""

    name: str
    result: CalibrationResult
    file: Path
    default: str | None
    weak_deployment: str | None
    strong_deployment: str | None
    dropped: tuple[str, ...] = ()
    in_artifact: bool = True
    in_sample: tuple[Path, ...] = ()


def _two_model(predictor: QualityPredictor) -> tuple[str, str]:
    if predictor.weak_model is None or predictor.strong_model is None:
        raise ConfigError(f"calibration needs a router with a weak/strong model pair; this "
                          f"one has columns {list(predictor.model_names)}")
    return predictor.weak_model, predictor.strong_model


def _read_tables(paths: Sequence[Path], weak: str, strong: str,
                 prompt_column: str) -> list[PairTable]:
    from modelmix.eval import load_outcome_table

    return [load_outcome_table(p, weak=weak, strong=strong, prompt_column=prompt_column)
            for p in paths]


def _costs(tables: Sequence[PairTable], pair: tuple[Deployment, Deployment],
           completion_tokens: int) -> tuple[list[float], list[float]]:
    """USD per request of each prompt on the weak and strong deployment: estimated prompt
    tokens, completion tokens from the table's responses or ``completion_tokens``."""
    from modelmix.eval import estimate_tokens

    weak_cost: list[float] = []
    strong_cost: list[float] = []
    for table in tables:
        n = len(table)
        w_out = table.weak_completion_tokens or (completion_tokens,) * n
        s_out = table.strong_completion_tokens or (completion_tokens,) * n
        for prompt, wo, so in zip(table.prompts, w_out, s_out, strict=True):
            tokens = estimate_tokens(prompt)
            weak_cost.append(pair[0].cost_usd(tokens, wo))
            strong_cost.append(pair[1].cost_usd(tokens, so))
    return weak_cost, strong_cost


def _store(folder: Path, name: str, result: CalibrationResult, make_default: bool,
           fingerprint: str | None) -> tuple[Calibration, Path, tuple[str, ...]]:
    """Add ``result`` to ``folder``'s calibration; targets calibrated for another router
    (a different fingerprint) are dropped. Returns (calibration, file, dropped names)."""
    old = load_calibration(folder)
    dropped: tuple[str, ...] = ()
    if old.fingerprint and fingerprint and old.fingerprint != fingerprint:
        dropped = tuple(sorted(old.targets))
        old = Calibration()
    cal = old.with_target(name, result, make_default=make_default)
    cal = Calibration(cal.targets, cal.default, fingerprint or cal.fingerprint)
    return cal, save_calibration(cal, folder), dropped


def _artifact_dir(router: str, predictor: QualityPredictor) -> Path | None:
    for attr in ("artifact_dir", "path", "directory"):
        value = getattr(predictor, attr, None)
        if isinstance(value, str | Path):
            return Path(value)
    return Path(router) if Path(router).is_dir() else None


def run_calibration(
    *,
    router: str,
    data: Sequence[Path],
    target: Target,
    name: str,
    config: Config,
    make_default: bool | None = None,
    out: Path | None = None,
    weak_deployment: str | None = None,
    strong_deployment: str | None = None,
    completion_tokens: int | None = None,
    loader: PredictorLoader = default_predictor_loader,
    scores: Sequence[float] | None = None,
    prompt_column: str = "prompt",
) -> CalibrationRun:
    """Score ``data`` with the router, calibrate ``target`` and store it as ``name`` in
    ``calibration.json`` (in ``out``, else the router's artifact directory).

    ``scores``, when given, are the data's prompts' P(strong needed) in table order to use
    instead of scoring them: out-of-fold scores (``train_router(cv_folds=k).cv_scores``)
    for data the router was trained on, whose in-sample scores would be overconfident.

    ``make_default`` None makes the target the default only when there is none yet.

    Raises:
        ConfigError: unusable router, data or deployments, or an unwritable directory.
    """
    from modelmix.eval import DEFAULT_COMPLETION_TOKENS

    predictor = loader(router)
    weak, strong = _two_model(predictor)
    tables = _read_tables(data, weak, strong, prompt_column)
    prompts = [p for t in tables for p in t.prompts]
    from modelmix.cli._eval import pricing_deployments

    pair = pricing_deployments(config, weak_deployment, strong_deployment)
    costs = (_costs(tables, pair, completion_tokens or DEFAULT_COMPLETION_TOKENS)
             if pair is not None else (None, None))
    if scores is not None and len(scores) != len(prompts):
        raise ConfigError(f"{len(scores)} scores for {len(prompts)} prompts")
    try:
        result = calibrate(
            target, list(scores) if scores is not None else predictor.strong_score(prompts),
            weak=[q for t in tables for q in t.weak], strong=[q for t in tables for q in t.strong],
            weak_cost=costs[0], strong_cost=costs[1], data=[p.name for p in data])
    except ValueError as exc:
        raise ConfigError(f"cannot calibrate {target.kind}={target.value:g}: {exc}") from exc
    artifact = _artifact_dir(router, predictor)
    folder = out or artifact
    if folder is None:
        raise ConfigError(f"router {router!r} has no artifact directory; pass --out DIR")
    fingerprint = None if artifact is None else router_fingerprint(artifact)
    cal, file, dropped = _store(folder, name, result, bool(make_default), fingerprint)
    trained_on = () if scores is not None else tuple(_in_sample(predictor, data))
    return CalibrationRun(name, result, file, cal.default,
                          pair[0].name if pair else None, pair[1].name if pair else None,
                          dropped, in_artifact=folder == artifact, in_sample=trained_on)


def _in_sample(predictor: QualityPredictor, data: Sequence[Path]) -> list[Path]:
    """The files of ``data`` the router was trained on (none for routers without a
    manifest), whose scores are overconfident."""
    from modelmix.eval._learned import in_sample_files
    from modelmix.routing.learned import LearnedPredictor

    return in_sample_files(predictor, data) if isinstance(predictor, LearnedPredictor) else []


def _print_run(run: CalibrationRun) -> None:
    r = run.result
    pgr = "n/a" if r.pgr is None else f"{r.pgr:.3f}"
    cost = "n/a" if r.cost_per_1k is None else f"${r.cost_per_1k:.4f}"
    _out.print(f"{run.name}: {r.target.describe()} -> threshold {r.threshold:.4f} on "
               f"{r.n:,} prompts: strong share {r.strong_share:.1%}, quality {r.quality:.3f}, "
               f"PGR {pgr}, cost per 1k requests {cost}", highlight=False)
    if r.cost_per_1k is not None:
        _out.print(f"  priced with {run.weak_deployment} (weak) and {run.strong_deployment} "
                   "(strong)", highlight=False)
    if run.dropped:
        _out.print(f"  dropped targets made for another version of this router: "
                   f"{', '.join(run.dropped)}", highlight=False)
    _out.print(f"  wrote {run.file} (default target: {run.default})", highlight=False)
    if not run.in_artifact:
        _out.print(f"  gateways read it with learned_router.calibration: {run.file}",
                   highlight=False)


def calibrate_command(
    data: Annotated[list[Path], typer.Option(
        "--data", help="Outcome table(s): CSV/TSV/JSON/JSONL with prompt + weak/strong "
        "model columns (repeat --data for several).")],
    target: Annotated[str, typer.Option(
        help="strong-share=0.3 | cost-per-1k=0.50 (USD) | min-pgr=0.8")],
    name: Annotated[str, typer.Option(help="Name of the target (per request: "
                                      "extra_body={'router': {'target': NAME}}).")],
    router: Annotated[str, typer.Option(help="'default' or a router artifact "
                                        "directory.")] = "default",
    make_default: Annotated[bool | None, typer.Option(
        "--default/--no-default", help="Make it the default target (default: only if "
        "there is none yet).")] = None,
    out: Annotated[Path | None, typer.Option(help=f"Directory for {CALIBRATION_FILE} "
                                             "(default: the router's own).")] = None,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML catalog "
                      "(prices for cost-per-1k).")] = None,
    weak_deployment: Annotated[str | None, typer.Option(
        help="Deployment pricing the weak model (default: cheapest open).")] = None,
    strong_deployment: Annotated[str | None, typer.Option(
        help="Deployment pricing the strong model (default: cheapest proprietary).")] = None,
    completion_tokens: Annotated[int | None, typer.Option(
        min=1, help="Completion tokens per request when the table has no responses.")] = None,
    cv: Annotated[int, typer.Option(
        min=0, help="Calibrate on out-of-fold scores: retrain the router's learner K times "
        "on the data, each time scoring the fold left out. Use it when the data is (part "
        "of) what the router was trained on; 0: score the data with the router as is.")]
    = 0,
    prompt_column: Annotated[str, typer.Option(help="Prompt column.")] = "prompt",
) -> None:
    """Set a routing threshold for a target and store it with the router."""
    try:
        parsed = Target.parse(target)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--target") from None
    if cv == 1:
        raise typer.BadParameter("needs 0 (off) or at least 2 folds", param_hint="--cv")
    if not name.strip():
        raise typer.BadParameter("must not be empty", param_hint="--name")
    try:
        if out is not None:
            check_out_dir(out)
        from modelmix.routing.learned._train import out_of_fold_scores

        scores = (out_of_fold_scores(router, data, cv, prompt_column=prompt_column)
                  if cv else None)
        run = run_calibration(
            router=router, data=data, target=parsed, name=name, config=_config(config),
            make_default=make_default, out=out, weak_deployment=weak_deployment,
            strong_deployment=strong_deployment, completion_tokens=completion_tokens,
            scores=scores, prompt_column=prompt_column)
    except ModelmixError as exc:
        _fail(exc.message)
    except OSError as exc:  # the calibration file could not be written (disk full...)
        _fail(f"cannot write the calibration: {exc.strerror or exc}", code=1)
    _print_run(run)
    for path in run.in_sample:
        _err.print(f"[yellow]warning:[/yellow] {path} is in this router's training data: its "
                   "scores are overconfident and the threshold will not hold on new traffic; "
                   "use --cv K", highlight=False)
    source = (f"out-of-fold, {cv}-fold CV (the learner retrained per fold)" if cv else
              "the router as trained (use --cv K on the router's own training data)")
    _out.print(f"  scores: {source}", highlight=False)


# -- training data from feedback -----------------------------------------------------------


async def _judge(config: Config, deployment: str, outcomes: Sequence[StoredOutcome]
                 ) -> dict[str, float]:
    """Grades by request id from the judge deployment, called through modelmix."""
    from modelmix.client import AsyncClient
    from modelmix.routing._from_feedback import Judge

    async with AsyncClient(config) as client:
        async def chat(messages: list[dict[str, str]]) -> str:
            reply = await client.chat(model=deployment, messages=list(messages),
                                      max_tokens=8, temperature=0)
            return reply.text

        return await Judge(chat).grade_all(outcomes)


def feedback_training_data(
    config: Config,
    out_dir: Path,
    *,
    db: str | None = None,
    use_judge: bool = True,
    echo: Callable[[str], None] = lambda _: None,
) -> tuple[Path, FeedbackTable]:
    """Write the outcome table of stored feedback (and judge grades) as JSONL.

    See :mod:`modelmix.routing._from_feedback` for how the table is built. When
    ``learned_router.judge`` is set and ``use_judge``, unrated stored answers are graded
    first and the grades stored as feedback (``source="judge"``).

    Returns:
        The file (``out_dir/feedback_outcomes.jsonl``) and the table.

    Raises:
        ConfigError: nothing to train on (no kept prompts or no feedback yet).
    """
    from modelmix.routing._from_feedback import build_feedback_table
    from modelmix.store import FeedbackRecord, FeedbackStore, resolve_db_url

    store = FeedbackStore(db or resolve_db_url(config.store))
    try:
        outcomes = store.outcomes()
        judge = config.learned_router.judge if use_judge else None
        if judge is not None and not any(o.response for o in outcomes):
            echo(f"the judge ({judge}) needs stored answers: set store.keep_responses: true; "
                 "training on callers' feedback only")
        elif judge is not None:
            grades = asyncio.run(_judge(config, judge, outcomes))
            store.add_many(FeedbackRecord(request_id=rid, score=score, source="judge")
                           for rid, score in grades.items())
            echo(f"judge {judge} graded {len(grades)} stored answers")
            outcomes = store.outcomes()
    finally:
        store.close()
    table = build_feedback_table(outcomes, config, use_judge=use_judge)
    if not len(table):
        raise ConfigError("no feedback to train on: keep prompts (store.keep_prompts: true), "
                          "then send POST /v1/feedback for some requests"
                          + (" or set learned_router.judge" if judge is None else ""))
    echo(f"{len(table)} prompts, columns {list(table.columns)}: {table.user_cells} caller "
         f"scores, {table.judge_cells} judge grades")
    return table.write_jsonl(out_dir / "feedback_outcomes.jsonl"), table


@contextmanager
def feedback_data(enabled: bool, config: Path | None, *, db: str | None = None,
                  use_judge: bool = True) -> Iterator[list[Path]]:
    """For ``router train --from-feedback``: ``[table file]`` while the block runs (in a
    private temporary directory, removed afterwards: it holds users' prompts), or ``[]``
    when not ``enabled``. Raises ConfigError when there is nothing to train on."""
    if not enabled:
        yield []
        return
    with tempfile.TemporaryDirectory(prefix="modelmix-feedback-") as tmp:
        path, _ = feedback_training_data(_config(config), Path(tmp), db=db, use_judge=use_judge,
                                         echo=lambda m: _err.print(m, highlight=False))
        yield [path]


def export_feedback_command(
    out: Annotated[Path, typer.Option(help="Directory for feedback_outcomes.jsonl.")],
    config: Annotated[Path | None, typer.Option("--config", "-c", help="YAML catalog.")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL (default: $MODELMIX_DB_URL, "
                                           "else store.url).")] = None,
    judge: Annotated[bool, typer.Option(help="Grade unrated answers with "
                                        "learned_router.judge.")] = True,
) -> None:
    """Write the outcome table of stored feedback (what train --from-feedback learns)."""
    try:
        path, _ = feedback_training_data(_config(config), out, db=db, use_judge=judge,
                                         echo=lambda m: _err.print(m, highlight=False))
    except ModelmixError as exc:
        _fail(exc.message)
    _out.print(str(path), highlight=False)


def register(router_app: typer.Typer) -> None:
    """Add ``calibrate`` and ``export-feedback`` to the ``router`` sub-app."""
    router_app.command("calibrate")(calibrate_command)
    router_app.command("export-feedback")(export_feedback_command)
