"""``modelmix router ...``: train and score learned routers.

Other router commands (``eval``, ``calibrate``) register themselves on :data:`router_app`.

Examples::

    modelmix router train --data data/routellm/mmlu.csv data/routellm/gsm8k.csv --out my-router
    modelmix router score --router my-router --input prompts.jsonl > scores.txt
    modelmix router info --router default
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from modelmix.cli._output import check_out_dir, console, scores_out
from modelmix.cli._output import err_console as _err
from modelmix.cli._output import fail as _fail
from modelmix.cli._router_calibrate import feedback_data
from modelmix.cli._router_calibrate import register as _register_gateway_commands
from modelmix.cli._router_reload import register as _register_reload_commands
from modelmix.errors import ModelmixError

if TYPE_CHECKING:
    from modelmix.routing.learned import LearnedPredictor, Progress

__all__ = ["router_app"]

#: Fewer weak/strong disagreements than this in the training data gets a warning.
_FEW_DISAGREEMENTS = 100

router_app = typer.Typer(help="Learned routers: train on outcome tables, score prompts.",
                         no_args_is_help=True)
_register_gateway_commands(router_app)  # calibrate, export-feedback (docs/routing-in-gateway.md)
_register_reload_commands(router_app)  # reload, events (hot swap of a running gateway)




@contextmanager
def _progress() -> Iterator[Progress]:
    """A Rich progress bar on stderr, one task per training stage."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    with Progress("[progress.description]{task.description}", BarColumn(),
                  MofNCompleteColumn(), TimeElapsedColumn(), console=_err,
                  transient=False) as bar:
        tasks: dict[str, int] = {}

        def update(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = int(bar.add_task(stage, total=total))
            bar.update(tasks[stage], completed=done, total=total)  # type: ignore[arg-type]

        yield update


def _load(router: str) -> LearnedPredictor:
    from modelmix.routing.learned import load_predictor

    try:
        return load_predictor(router)
    except ModelmixError as exc:
        _fail(exc.message)


@router_app.command()
def train(
    out: Annotated[Path, typer.Option(help="Directory for the router artifact.")],
    data: Annotated[list[Path] | None, typer.Option(
        "--data", help="Outcome tables (CSV/TSV/JSONL): a prompt column and one column per "
        "model with True/False or a numeric score. Repeat --data or list files after it.")]
    = None,
    from_feedback: Annotated[bool, typer.Option(
        "--from-feedback", help="Also train on the gateway's stored prompts with their "
        "feedback and judge grades (docs/routing-in-gateway.md).")] = False,
    config: Annotated[Path | None, typer.Option(
        "--config", "-c", help="YAML catalog for --from-feedback (store, judge).")] = None,
    db: Annotated[str | None, typer.Option(help="Database URL for --from-feedback.")] = None,
    judge: Annotated[bool, typer.Option(help="--from-feedback: grade unrated stored "
                                        "answers with learned_router.judge.")] = True,
    more: Annotated[list[Path] | None, typer.Argument(
        help="More outcome tables (so `--data a.csv b.csv` works).", show_default=False)]
    = None,
    learner: Annotated[str, typer.Option(help="logreg | mf | knn")] = "logreg",
    models: Annotated[str | None, typer.Option(
        help="Comma-separated model columns (default: every True/False or numeric "
             "column).")] = None,
    weak: Annotated[str | None, typer.Option(help="Weak (cheap) model column; default for "
                                             "two models: the lower-scoring one.")] = None,
    strong: Annotated[str | None, typer.Option(help="Strong model column.")] = None,
    prompt_column: Annotated[str, typer.Option(help="Prompt column.")] = "prompt",
    domain_column: Annotated[str, typer.Option(
        help="Optional per-row domain column (e.g. MMLU subject); files without it use "
             "the file name as the domain.")] = "subject",
    embedder: Annotated[str, typer.Option(
        help="Artifact (name or directory) whose static embedding table to reuse.")]
    = "default",
    c: Annotated[float | None, typer.Option(
        min=1e-6, help="Inverse L2 strength of logreg heads without --tokens (with tokens "
        "the joint fit uses FitOptions.token_c / token_beta, as the shipped router). "
        "Default 0.001; 0.0003 on a preference table (a reference column at 0.5).",
        show_default=False)] = None,
    tokens: Annotated[bool | None, typer.Option(
        "--tokens/--no-tokens",
        help="logreg: the heads also read TF-IDF token unigrams + hashed bigrams "
        "(docs/router.md). Default on; off on a preference table.",
        show_default=False)] = None,
    pool: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Blend each model's training target with the mean of the "
        "other models on the same prompt (0: off; docs/router.md, Chat traffic).")] = 0.0,
    structure: Annotated[bool, typer.Option(
        help="Add question-structure features (options, numbers, operation words).")] = True,
    cv: Annotated[int, typer.Option(min=0, help="Also record k-fold CV metrics in the "
                                    "manifest (0: skip).")] = 0,
    seed: Annotated[int, typer.Option(help="Seed of folds and initialisations.")] = 0,
) -> None:
    """Train a router on per-prompt outcome tables and write its artifact."""
    from modelmix.routing.learned import LEARNERS, FitOptions, train_router

    if learner not in LEARNERS:
        raise typer.BadParameter(f"one of {', '.join(LEARNERS)}", param_hint="--learner")
    chosen = {k for k, v in (("c", c), ("tokens", tokens)) if v is not None}
    options = FitOptions(learner=learner, seed=seed, structure=structure, pool=pool,
                         c=0.001 if c is None else c, tokens=True if tokens is None else tokens)
    if not (data or more or from_feedback):
        raise typer.BadParameter("give outcome tables or --from-feedback", param_hint="--data")
    if cv == 1:
        raise typer.BadParameter("needs 0 (off) or at least 2 folds", param_hint="--cv")
    start = time.perf_counter()
    try:
        check_out_dir(out)  # fail now, not after training
        with feedback_data(from_feedback, config, db=db, use_judge=judge) as extra, \
                _progress() as progress:
            router = train_router([*(data or []), *(more or []), *extra], out, options=options,
                                  prompt_column=prompt_column, domain_column=domain_column,
                                  models=models.split(",") if models else None, weak=weak,
                                  strong=strong, embedder_from=embedder, cv_folds=cv,
                                  progress=progress, given=chosen)
    except ModelmixError as exc:
        _fail(exc.message)
    except OSError as exc:  # the artifact could not be written (disk full, removed dir)
        _fail(f"cannot write the router to {out}: {exc.strerror or exc}", code=1)
    _report_training(router, out, time.perf_counter() - start)


def _report_training(router: LearnedPredictor, out: Path, seconds: float) -> None:
    """What was trained and written, and the CV metrics if any (stderr)."""
    from modelmix.routing.learned import artifact_size

    manifest = router.info
    data = manifest.training_data
    rows = data.rows if data is not None else 0
    pair = (f"weak {router.weak_model}, strong {router.strong_model}"
            if router.weak_model else "no weak/strong pair")
    read = getattr(data, "read", None) if data is not None else None
    if read:
        _err.print(str(read), highlight=False, soft_wrap=True)
    _err.print(f"trained {manifest.learner.name} on {rows:,} prompts, models "
               f"{list(router.model_names)} ({pair}) in {seconds:.0f} s", highlight=False)
    _err.print(f"wrote {out} ({artifact_size(out) / 1e6:.1f} MB)", highlight=False)
    split = data.disagreements if data is not None else None
    if split is not None and split < _FEW_DISAGREEMENTS:
        _err.print(f"[yellow]warning:[/yellow] the weak and strong model differ on only {split} "
                   "training prompts, the only ones a router learns from; expect routing "
                   "close to random (docs/router.md suggests a few hundred)", highlight=False)
    for name, m in (manifest.cv_metrics or {}).get("datasets", {}).items():
        apgr, cpt50 = m["apgr"]["mean"], m["cpt50"]["mean"]  # None: undefined (no gap)
        _err.print(f"  CV {name}: APGR {'n/a' if apgr is None else f'{apgr:.3f}'}, CPT(50%) "
                   f"{'n/a' if cpt50 is None else f'{100 * cpt50:.1f}%'}", highlight=False)


@router_app.command()
def score(
    input_file: Annotated[Path, typer.Option(
        "--input", help="Prompts: CSV/TSV, JSON/JSONL, or .txt (one prompt per line).")],
    router: Annotated[str, typer.Option(help="'default' or a router artifact directory.")]
    = "default",
    prompt_column: Annotated[str, typer.Option(help="Prompt column / JSON key.")] = "prompt",
    model: Annotated[str | None, typer.Option(
        help="Print P(acceptable) of this model column instead of P(strong needed).")]
    = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Prompts scored at a time.")] = 1024,
) -> None:
    """Print one score per input prompt, in input order: P(strong model needed).

    Only the numbers go to stdout (one per line); messages go to stderr.
    """
    from modelmix.routing.learned import read_prompts

    predictor = _load(router)
    with scores_out() as out:
        prompts = read_prompts(input_file, prompt_column=prompt_column)
        if model is None and predictor.weak_model is None:
            _fail(f"router {router} has no weak/strong pair; pass --model, one of "
                  f"{list(predictor.model_names)}")
        if model is not None and model not in predictor.model_names:
            _fail(f"no model {model!r} in router {router}; models: "
                  f"{list(predictor.model_names)}")
        column = None if model is None else predictor.model_names.index(model)
        for start in range(0, len(prompts), batch_size):
            batch = prompts[start:start + batch_size]
            values = (predictor.strong_score(batch) if column is None
                      else predictor.predict_array(batch)[:, column].tolist())
            out.write("".join(f"{v!r}\n" for v in values))


@router_app.command()
def info(
    router: Annotated[str, typer.Option(help="'default' or a router artifact directory.")]
    = "default",
) -> None:
    """Print a router's manifest (JSON): models, learner, features, data, CV metrics."""
    predictor = _load(router)
    manifest = dict(predictor.manifest)
    features = dict(manifest.get("features", {}))
    features["domains"] = len(features.get("domains", []))
    manifest["features"] = features
    print(json.dumps(manifest, indent=1))


@router_app.command("eval")
def eval_(
    data: Annotated[list[Path], typer.Option(
        "--data", help="Outcome table (CSV/TSV/JSONL: prompt, one True/False or numeric "
        "column per model, optional subject and <model>_response); repeat for more.")],
    out: Annotated[Path, typer.Option(help="Directory for results.json and plot.png.")]
    = Path("router-eval"),
    router: Annotated[str | None, typer.Option(
        help="'default' or an artifact directory: score held-out tables with this trained "
             "router, no retraining. Without it: --cv.")] = None,
    cv: Annotated[bool, typer.Option("--cv", "--train", help="k-fold cross-validation by "
                                     "prompt, retraining per fold (default).")] = False,
    folds: Annotated[int, typer.Option(min=2, help="k of k-fold CV.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold split and training.")] = 0,
    learner: Annotated[str, typer.Option(help="CV: logreg | mf | knn")] = "logreg",
    c: Annotated[float | None, typer.Option(
        min=1e-6, help="CV: inverse L2 strength (default: the trainer's).")] = None,
    embedder: Annotated[str, typer.Option(help="CV: artifact to take the embedding table "
                                          "from.")] = "default",
    weak: Annotated[str | None, typer.Option(
        help="Weak model column (with --router: the column of the router's weak model).")
    ] = None,
    strong: Annotated[str | None, typer.Option(
        help="Strong model column (with --router: the router's strong model's).")] = None,
    config: Annotated[Path | None, typer.Option(help="Catalog YAML.")] = None,
    weak_deployment: Annotated[str | None, typer.Option(
        help="Deployment pricing the weak model (default: cheapest open).")] = None,
    strong_deployment: Annotated[str | None, typer.Option(
        help="Deployment pricing the strong model (default: cheapest proprietary).")] = None,
    completion_tokens: Annotated[int | None, typer.Option(
        min=1, help="Completion tokens per request for tables without responses (default "
        "1; --frontier: each model's answer_chars/4 from --prices, else 256).")] = None,
    prompt_column: Annotated[str, typer.Option(help="Prompt column.")] = "prompt",
    frontier: Annotated[bool, typer.Option(
        "--frontier", help="Route among all model columns (cheapest whose predicted "
        "quality meets a target) and draw the priced quality-cost frontier vs every single "
        "model and the best pair (CV; needs --prices).")] = False,
    prices: Annotated[Path | None, typer.Option(
        help="--frontier: price table YAML (model column -> USD per 1M input/output "
        "tokens), e.g. benchmarks/router/chat_prices.yaml.")] = None,
    models: Annotated[list[str] | None, typer.Option(
        "--models", help="--frontier: model columns to route among (default: all); "
        "repeat.")] = None,
) -> None:
    """RouteLLM metrics (APGR, CPT 20/50/80%) with cost, vs random and oracle; with
    --frontier, the many-model quality-cost frontier (docs/router.md)."""
    from modelmix.cli._eval import EvalRequest, run_eval_command

    request = EvalRequest(
        data=data, out=out, router=router, cv=cv, folds=folds, seed=seed, learner=learner, c=c,
        embedder=embedder, weak=weak, strong=strong, config=config,
        weak_deployment=weak_deployment, strong_deployment=strong_deployment,
        completion_tokens=completion_tokens, prompt_column=prompt_column,
        frontier=frontier, prices=prices, models=models or None)
    try:
        run_eval_command(request, console, _err)
    except ModelmixError as exc:
        _fail(exc.message)
    except OSError as exc:  # results or plot could not be written (disk full...)
        _fail(f"cannot write to {out}: {exc.strerror or exc}", code=1)
