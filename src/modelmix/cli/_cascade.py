"""``modelmix cascade ...``: train, score and evaluate the verifiers of verified cascades.

Examples::

    modelmix cascade train --data data/routellm/gsm8k.csv \\
        --response-column "mistralai/Mixtral-8x7B-Instruct-v0.1_response" --out my-verifier
    modelmix cascade score --input answers.jsonl --response-column answer \\
        --verifier learned --artifact my-verifier > scores.txt
    modelmix cascade eval --data data/routellm/gsm8k.csv --out cascade-eval
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from modelmix.cli._output import check_out_dir, console, scores_out
from modelmix.cli._output import err_console as _err
from modelmix.cli._output import fail as _fail
from modelmix.errors import ConfigError, ModelmixError

if TYPE_CHECKING:
    from modelmix.eval._cascade import Price
    from modelmix.routing.cascade import LearnedVerifier, Verifier

__all__ = ["cascade_app"]

cascade_app = typer.Typer(help="Verified cascades: train, score and evaluate answer verifiers "
                               "(docs/cascade.md).", no_args_is_help=True)

_VERIFIER_HELP = "arithmetic | json-schema | learned"
_OPTIONS_HELP = ("Verifier options as a JSON object, or @FILE (JSON or YAML), e.g. "
                 "'{\"schema\": {\"type\": \"object\"}}' for json-schema.")


def _parse_options(text: str | None) -> dict[str, Any]:
    """``--options``: a JSON object, or ``@file`` holding JSON or YAML.

    Raises:
        ConfigError: unreadable file, not JSON/YAML, not a mapping.
    """
    if not text:
        return {}
    source = "--options"
    if text.startswith("@"):
        source = text[1:]
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"--options: cannot read {source} ({exc})") from None
    try:
        import yaml

        value = yaml.safe_load(text)  # YAML 1.1 reads JSON objects too
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not JSON or YAML ({_yaml_problem(exc)})") from None
    if not isinstance(value, dict):
        raise ConfigError(f"{source}: verifier options must be an object (a mapping)")
    return value


def _yaml_problem(exc: Exception) -> str:
    """A YAML error on one line: the problem and where (line, column)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark else problem


def _verifier(name: str, artifact: str | None, options: str | None) -> Verifier:
    from modelmix.routing.cascade import verifier_from_spec

    parsed = _parse_options(options)
    if artifact is not None:
        if name != "learned":
            raise ConfigError("--artifact is for --verifier learned")
        parsed = {**parsed, "artifact": artifact}
    return verifier_from_spec(name, parsed)


@cascade_app.command()
def train(
    data: Annotated[Path, typer.Option(help="Table of answers with outcomes (CSV/TSV/JSONL): "
                                       "a prompt, a response and a label column.")],
    out: Annotated[Path, typer.Option(help="Directory for the verifier artifact.")],
    response_column: Annotated[str, typer.Option(
        help="The answers to verify, e.g. 'mistralai/Mixtral-8x7B-Instruct-v0.1_response'.")],
    label_column: Annotated[str | None, typer.Option(
        help="True/False (or a score in [0, 1]): was the answer acceptable? Default: the "
             "response column without '_response'.")] = None,
    prompt_column: Annotated[str, typer.Option(help="Prompt column.")] = "prompt",
    c: Annotated[float, typer.Option(min=1e-6, help="Inverse L2 strength of the logistic "
                                     "regression.")] = 0.1,
    prompt_features: Annotated[bool, typer.Option(
        help="Also read the prompt's lexical features (the router's).")] = True,
    threshold: Annotated[float, typer.Option(
        min=0.0, max=1.0, help="Default escalation threshold (escalate when 1 - "
        "P(acceptable) >= it).")] = 0.5,
    cv: Annotated[int, typer.Option(min=0, help="k-fold CV by prompt for the manifest's "
                                    "metrics (0: skip).")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold split.")] = 0,
) -> None:
    """Train a learned verifier, P(answer acceptable | prompt, answer), and write it."""
    from modelmix.routing.cascade import VerifierFitOptions, train_verifier

    if cv == 1:
        raise typer.BadParameter("needs 0 (off) or at least 2 folds", param_hint="--cv")
    start = time.perf_counter()
    options = VerifierFitOptions(c=c, prompt_features=prompt_features, threshold=threshold)
    try:
        check_out_dir(out)  # fail now, not after training
        verifier = train_verifier(data, out, response_column=response_column,
                                  label_column=label_column, prompt_column=prompt_column,
                                  options=options, cv_folds=cv, seed=seed)
    except ModelmixError as exc:
        _fail(exc.message)
    except OSError as exc:  # the artifact could not be written (disk full, removed dir)
        _fail(f"cannot write the verifier to {out}: {exc.strerror or exc}", code=1)
    _report_training(verifier, out, time.perf_counter() - start)


def _report_training(verifier: LearnedVerifier, out: Path, seconds: float) -> None:
    """What was trained, the CV metrics and where it was written (stderr)."""
    from modelmix.metrics import Stat

    data = verifier.manifest.get("training_data") or {}
    share = 100 * float(data.get("acceptable_share", 0.0))
    _err.print(f"trained a learned verifier on {data.get('rows', 0):,} answers "
               f"({share:.1f}% acceptable) in {seconds:.1f} s", highlight=False, soft_wrap=True)
    cv = verifier.manifest.get("cv_metrics")
    if cv:
        def fmt(key: str, scale: float = 1.0, unit: str = "") -> str:
            stat = Stat.of([v for v in cv[key]["per_fold"] if v is not None])
            return stat.fmt(scale=scale, digits=3 if scale == 1.0 else 1, unit=unit)

        _err.print(f"  CV ({cv['folds']}-fold by prompt): AUC {fmt('auc')}, accuracy "
                   f"{fmt('accuracy', 100, '%')} at threshold {verifier.threshold:.2f}",
                   highlight=False, soft_wrap=True)
    size = sum(p.stat().st_size for p in out.iterdir() if p.is_file())
    _err.print(f"wrote {out} ({size / 1e3:.1f} kB)", highlight=False, soft_wrap=True)


@cascade_app.command()
def score(
    input_file: Annotated[Path, typer.Option(
        "--input", help="Prompts and answers: CSV/TSV or JSON/JSONL.")],
    response_column: Annotated[str, typer.Option(help="The answer column / JSON key.")],
    prompt_column: Annotated[str, typer.Option(help="Prompt column / JSON key.")] = "prompt",
    verifier: Annotated[str, typer.Option(help=_VERIFIER_HELP)] = "arithmetic",
    artifact: Annotated[str | None, typer.Option(
        help="--verifier learned: 'default' (shipped) or an artifact directory.")] = None,
    options: Annotated[str | None, typer.Option(help=_OPTIONS_HELP)] = None,
    reasons: Annotated[bool, typer.Option(
        help="Print 'score<TAB>ok<TAB>reason' instead of the score alone.")] = False,
) -> None:
    """Print one escalation score per row, in input order (higher = escalate).

    Only the numbers go to stdout (one per line); messages go to stderr.
    """
    from modelmix.routing.cascade import read_answers

    with scores_out() as out:
        checker = _verifier(verifier, artifact, options)
        prompts, answers = read_answers(input_file, response_column=response_column,
                                        prompt_column=prompt_column)
        if reasons:
            for p, a in zip(prompts, answers, strict=True):
                check = checker.check(p, a)
                out.write(f"{check.score!r}\t{str(check.ok).lower()}\t{check.reason}\n")
        else:
            out.write("".join(f"{v!r}\n" for v in checker.scores(prompts, answers)))


def _price(value: str, option: str) -> Price:
    from modelmix.eval._cascade import Price

    try:
        return Price.parse(value)
    except ValueError as exc:
        raise ConfigError(f"{option}: {exc}") from None


@cascade_app.command("eval")
def eval_(
    data: Annotated[list[Path], typer.Option(
        "--data", help="Two-model outcome table with the weak model's answers "
        "('<weak>_response'), e.g. data/routellm/gsm8k.csv; repeat for more.")],
    out: Annotated[Path, typer.Option(help="Directory for cascade.json, cascade.md and "
                                      "cascade.png.")] = Path("cascade-eval"),
    verifier: Annotated[str, typer.Option(help=_VERIFIER_HELP)] = "learned",
    artifact: Annotated[str | None, typer.Option(
        help="--verifier learned: score with this trained artifact instead of retraining "
             "per fold.")] = None,
    options: Annotated[str | None, typer.Option(help=_OPTIONS_HELP)] = None,
    cv: Annotated[int, typer.Option(min=2, help="k of k-fold CV by prompt.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the fold split.")] = 0,
    c: Annotated[float, typer.Option(min=1e-6, help="Learned verifier retrained per fold: "
                                     "inverse L2 strength.")] = 0.1,
    prompt_features: Annotated[bool, typer.Option(
        help="Learned verifier retrained per fold: read the prompt's lexical features.")]
    = True,
    weak_price: Annotated[str, typer.Option(
        help="Weak model USD per 1M tokens, IN/OUT or one number (default: Mixtral-8x7B on "
             "Together AI, 2024).")] = "0.6/0.6",
    strong_price: Annotated[str, typer.Option(
        help="Strong model USD per 1M tokens, IN/OUT (default: gpt-4-1106-preview, OpenAI "
             "list price).")] = "10/30",
    router: Annotated[bool, typer.Option(
        help="Also evaluate the prompt-only learned router (retrained per fold).")] = True,
    router_data: Annotated[list[Path] | None, typer.Option(
        help="More outcome tables the router also trains on per fold (the shipped router "
             "trained on MMLU + GSM8K).")] = None,
    weak: Annotated[str | None, typer.Option(help="Weak model column.")] = None,
    strong: Annotated[str | None, typer.Option(help="Strong model column.")] = None,
    prompt_column: Annotated[str, typer.Option(help="Prompt column.")] = "prompt",
    response_column: Annotated[str | None, typer.Option(
        help="The weak model's answers (default '<weak>_response').")] = None,
) -> None:
    """Cascade APGR, CPT(50/80%) and cost (weak calls included) vs router, random, oracle."""
    from modelmix.cli._cascade_eval import CascadeEvalRequest, run_cascade_eval_command

    try:
        request = CascadeEvalRequest(
            data=data, out=out, verifier=verifier, options=_parse_options(options),
            artifact=artifact, folds=cv, seed=seed, c=c, prompt_features=prompt_features,
            weak_price=_price(weak_price, "--weak-price"),
            strong_price=_price(strong_price, "--strong-price"), router=router,
            router_data=router_data or [], weak=weak, strong=strong,
            prompt_column=prompt_column, response_column=response_column)
        run_cascade_eval_command(request, console, _err)
    except ModelmixError as exc:
        _fail(exc.message)
    except OSError as exc:  # results or plot could not be written (disk full...)
        _fail(f"cannot write to {out}: {exc.strerror or exc}", code=1)

