"""What ``modelmix cascade eval`` does, without the command-line parsing (``_cascade.py``).

Example (the same as ``modelmix cascade eval --data gsm8k.csv --out out``)::

    from rich.console import Console
    from modelmix.cli._cascade_eval import CascadeEvalRequest, run_cascade_eval_command

    run_cascade_eval_command(CascadeEvalRequest(data=[Path("gsm8k.csv")], out=Path("out")),
                             Console())
"""

from __future__ import annotations

import hashlib
import time
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from modelmix.cli._output import check_out_dir
from modelmix.errors import ConfigError, require_extra
from modelmix.eval._cascade import (
    DEFAULT_STRONG_PRICE,
    DEFAULT_WEAK_PRICE,
    CascadeReport,
    CascadeTable,
    Price,
    VerifierScorer,
    cascade_cost,
    fixed_scores,
    learned_scores,
    load_cascade_table,
    run_cascade_eval,
)
from modelmix.eval._cascade_report import cascade_table, write_cascade_results

if TYPE_CHECKING:
    from modelmix.eval._protocols import Fit
    from modelmix.eval._table import PairTable

__all__ = ["CascadeEvalRequest", "run_cascade_eval_command"]


@dataclass(frozen=True, kw_only=True)
class CascadeEvalRequest:
    """The command's options.

    Attributes:
        data: two-model outcome tables with the weak model's answers, one report each.
        out: directory for ``cascade.json``, ``cascade.md`` and ``cascade.png``.
        verifier / options: the verifier and its options; ``learned`` without ``artifact``
            is retrained per fold (cross-validated), with ``artifact`` it is scored as is.
        artifact: a learned verifier artifact (``"default"`` or a directory).
        folds / seed: k and the seed of the split by prompt.
        c / prompt_features: learned verifier settings for retraining per fold.
        weak_price / strong_price: USD per 1M tokens (input, output).
        router: also evaluate the prompt-only learned router (the shipped router's
            options, retrained per fold on the same folds).
        router_data: more outcome tables the router trains on per fold (as the shipped
            router was trained on MMLU and GSM8K together).
        weak / strong / prompt_column / response_column: the table's columns.
    """

    data: list[Path]
    out: Path
    verifier: str = "learned"
    options: dict[str, Any] = field(default_factory=dict)
    artifact: str | None = None
    folds: int = 5
    seed: int = 0
    c: float = 0.1
    prompt_features: bool = True
    weak_price: Price = DEFAULT_WEAK_PRICE
    strong_price: Price = DEFAULT_STRONG_PRICE
    router: bool = True
    router_data: list[Path] = field(default_factory=list)
    weak: str | None = None
    strong: str | None = None
    prompt_column: str = "prompt"
    response_column: str | None = None

    def describe(self) -> dict[str, Any]:
        """The options as recorded in ``cascade.json``."""
        out: dict[str, Any] = {}
        for key, value in asdict(self).items():
            if isinstance(value, list):
                value = [str(v) for v in value]
            elif isinstance(value, Path):
                value = str(value)
            elif isinstance(value, dict) and key in ("weak_price", "strong_price"):
                value = [value["input_per_mtok"], value["output_per_mtok"]]
            out[key] = value
        return out


def _scorer(req: CascadeEvalRequest, err: Console) -> tuple[VerifierScorer, str]:
    """The verifier's scores (per fold when trained) and its label for reports."""
    from modelmix.routing.cascade import VerifierFitOptions, load_verifier, verifier_from_spec

    if req.artifact is not None and req.verifier != "learned":
        raise ConfigError("--artifact is for --verifier learned")
    if req.verifier == "learned" and req.artifact is None:
        if req.options:
            raise ConfigError("--options: a learned verifier retrained per fold takes --c "
                              "and --prompt-features; --options is for --artifact")
        require_extra("sklearn", "train", "cross-validated verifier evaluation (it trains "
                      "per fold)")
        options = VerifierFitOptions(c=req.c, prompt_features=req.prompt_features)
        return learned_scores(options), f"learned verifier retrained per fold (C={req.c})"
    if req.verifier == "learned":
        assert req.artifact is not None
        verifier = load_verifier(req.artifact, threshold=float(req.options.get("threshold",
                                                                               0.5)))
        _warn_in_sample(verifier.manifest, req.data, err)
        return fixed_scores(verifier), f"learned verifier {verifier.artifact_dir}"
    return fixed_scores(verifier_from_spec(req.verifier, req.options)), req.verifier


def _warn_in_sample(manifest: dict[str, Any], data: list[Path], err: Console) -> None:
    trained = (manifest.get("training_data") or {}).get("sha256")
    for path in data:
        if trained and hashlib.sha256(path.read_bytes()).hexdigest() == trained:
            err.print(f"[yellow]warning:[/] {path} is this verifier's training data: its "
                      "numbers measure memory, not verification; leave out --artifact to "
                      "retrain per fold", highlight=False, soft_wrap=True)


def _router(req: CascadeEvalRequest) -> tuple[Fit | None, str | None, list[PairTable]]:
    """The prompt-only learned router with the shipped router's options, and its tables."""
    if not req.router:
        return None, None, []
    require_extra("sklearn", "train", "the router baseline (it trains per fold); "
                  "or pass --no-router")
    from modelmix.eval._learned import learned_fit
    from modelmix.eval._table import load_outcome_table
    from modelmix.routing.learned import FitOptions, load_predictor

    shipped = load_predictor("default")
    options = FitOptions.from_description(shipped.info.learner.model_dump())
    extra = [load_outcome_table(p, weak=shipped.weak_model, strong=shipped.strong_model,
                                prompt_column=req.prompt_column) for p in req.router_data]
    trained_on = " + ".join(["the table", *(p.stem for p in req.router_data)])
    label = f"shipped router's learner retrained per fold on {trained_on}"
    return learned_fit(options), label, extra


def _table(req: CascadeEvalRequest, path: Path) -> CascadeTable:
    return load_cascade_table(path, weak=req.weak, strong=req.strong,
                              prompt_column=req.prompt_column,
                              response_column=req.response_column)


def _evaluate(req: CascadeEvalRequest, err: Console) -> list[CascadeReport]:
    scorer, label = _scorer(req, err)
    fit, router_label, router_tables = _router(req)
    start = time.perf_counter()

    def progress(i: int, k: int) -> None:
        err.print(f"fold {i + 1}/{k}: training on the other {k - 1} folds "
                  f"({time.perf_counter() - start:.0f} s)", highlight=False, soft_wrap=True)

    reports = []
    for path in req.data:
        table = _table(req, path)
        err.print(f"{path}: {len(table)} prompts, weak {table.pair.weak_model}, strong "
                  f"{table.pair.strong_model}", highlight=False, soft_wrap=True)
        with warnings.catch_warnings():
            warnings.simplefilter("once")  # scikit-learn repeats convergence warnings
            reports.append(run_cascade_eval(
                table, scorer, verifier=label, folds=req.folds, seed=req.seed,
                router_fit=fit, router_label=router_label, router_tables=router_tables,
                cost=cascade_cost(table, req.weak_price, req.strong_price),
                on_fold=progress))
    return reports


def run_cascade_eval_command(req: CascadeEvalRequest, out: Console,
                             err: Console | None = None) -> list[Path]:
    """Evaluate, print one table per dataset to ``out``, write the files; returns their
    paths. Raises :class:`~modelmix.errors.ModelmixError` subclasses for bad input."""
    err = err or Console(stderr=True)
    if not req.data:
        raise ConfigError("no outcome tables given (--data FILE)")
    check_out_dir(req.out)  # fail now, not after the evaluation
    require_extra("matplotlib", "eval", "cascade evaluation (its plot)")
    try:
        reports = _evaluate(req, err)
    except ValueError as exc:  # e.g. more folds than distinct prompts
        raise ConfigError(str(exc)) from exc
    for report in reports:
        out.print(cascade_table(report))
    paths = write_cascade_results(reports, req.out, extra={"options": req.describe()})
    out.print(f"wrote {', '.join(str(p) for p in paths)}", highlight=False, soft_wrap=True)
    return paths
