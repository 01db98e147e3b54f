"""Evaluating verified cascades offline on a two-model outcome table with the weak model's
answers (``modelmix cascade eval``).

The cascade calls the weak model on every prompt, verifies its answer and calls the strong
model when the verifier's escalation score is at or above a threshold; the answer kept is
the strong one when escalated, else the weak one. Swept over the deciles of the scores
exactly as a router's scores are (RouteLLM, :func:`modelmix.metrics.evaluate_scores`),
each threshold gives an operating point (share of prompts escalated = strong calls,
quality), so APGR and CPT compare directly with routing. Cost differs: a cascade pays
the weak call on every prompt, ``cost(f) = weak + f * strong`` per request, where a router
pays ``(1 - f) * weak + f * strong``.

Protocol: k-fold cross-validation split by prompt (:func:`~modelmix.eval.stratified_folds`,
the folds ``modelmix router eval`` uses). A learned verifier is trained on the other folds'
answers and scores the held-out fold; a fixed verifier (arithmetic, JSON Schema, a trained
artifact) scores every row once. The prompt-only learned router is retrained per fold on
the same folds (:func:`~modelmix.eval.cross_validate_tables` with the shipped router's
options), and random and oracle routing are computed on the same held-out prompts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelmix.eval._baselines import RANDOM_SEEDS, oracle_metrics, random_metrics
from modelmix.eval._protocols import Fit, cross_validate_tables, stratified_folds
from modelmix.eval._report import MethodSummary, summarize_method
from modelmix.eval._table import PairTable, load_outcome_table
from modelmix.metrics import DEFAULT_BINS, RouterMetrics, Stat, evaluate_scores
from modelmix.routing.learned._tables import RouterDataError, outcome_value, read_rows

if TYPE_CHECKING:
    from modelmix.routing.cascade import Verifier, VerifierFitOptions

__all__ = ["DEFAULT_STRONG_PRICE", "DEFAULT_WEAK_PRICE", "CascadeCost", "CascadeTable",
           "Price", "VerifierScorer", "cascade_cost", "fixed_scores", "learned_scores",
           "load_cascade_table", "run_cascade_eval"]


@dataclass(frozen=True, slots=True)
class Price:
    """USD per 1M tokens, input (prompt) and output (completion)."""

    input_per_mtok: float
    output_per_mtok: float

    @classmethod
    def parse(cls, text: str) -> Price:
        """``"0.6"`` (same in and out) or ``"10/30"`` (in/out).

        Raises:
            ValueError: not one or two non-negative numbers.
        """
        parts = text.split("/")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            values = []
        if len(values) not in (1, 2) or not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"{text!r} is not a price: give USD per 1M tokens as IN/OUT "
                             "(e.g. 10/30) or one number for both")
        return cls(values[0], values[-1])

    def __str__(self) -> str:
        return f"${self.input_per_mtok:g} in / ${self.output_per_mtok:g} out per 1M tokens"


#: mistralai/Mixtral-8x7B-Instruct-v0.1 on a typical open-model host: Together AI's
#: serverless price, $0.60 per 1M tokens in and out (together.ai/pricing, as listed in 2024;
#: other hosts charged $0.45-0.70). Check current prices before relying on the numbers.
DEFAULT_WEAK_PRICE = Price(0.60, 0.60)
#: gpt-4-1106-preview (GPT-4 Turbo): $10 per 1M input and $30 per 1M output tokens
#: (OpenAI API pricing page, openai.com/api/pricing, from the model's release in Nov 2023).
DEFAULT_STRONG_PRICE = Price(10.0, 30.0)


@dataclass(frozen=True, slots=True)
class CascadeTable:
    """A two-model outcome table with the weak model's answer to every prompt."""

    pair: PairTable
    weak_answers: tuple[str, ...]

    def __post_init__(self) -> None:
        if len(self.weak_answers) != len(self.pair):
            raise ValueError(f"{len(self.weak_answers)} answers for {len(self.pair)} prompts")

    def __len__(self) -> int:
        return len(self.pair)

    @property
    def weak_labels(self) -> np.ndarray:
        """The weak model's outcomes as verifier labels in [0, 1] (grades min-max scaled)."""
        w = np.asarray(self.pair.weak, dtype=np.float64)
        lo, hi = float(w.min()), float(w.max())
        return w if lo >= 0.0 and hi <= 1.0 else (w - lo) / (hi - lo if hi > lo else 1.0)


def load_cascade_table(path: str | Path, *, weak: str | None = None, strong: str | None = None,
                       prompt_column: str = "prompt",
                       response_column: str | None = None) -> CascadeTable:
    """Read an outcome table (:func:`~modelmix.eval.load_outcome_table`) and the weak
    model's answers (``response_column``, default ``<weak model>_response``).

    Raises:
        RouterDataError: unreadable table, no such response column, a null answer.
    """
    path = Path(path)
    pair = load_outcome_table(path, weak=weak, strong=strong, prompt_column=prompt_column)
    column = response_column or f"{pair.weak_model}_response"
    rows = read_rows(path)
    answers: list[str] = []
    for i, row in enumerate(rows, 1):
        w, s = (outcome_value(row.get(c), where=f"{path}: row {i}, column {c!r}")
                for c in (pair.weak_model, pair.strong_model))
        if w is None or s is None:
            continue  # load_outcome_table skipped it too
        if column not in row:
            raise RouterDataError(f"{path}: no column {column!r} with the weak model's answers "
                                  "(a cascade verifies them); use --response-column")
        value = row[column]
        if value is None:
            raise RouterDataError(f"{path}: row {i}: {column!r} is empty (null)")
        answers.append(value if isinstance(value, str) else str(value))
    return CascadeTable(pair, tuple(answers))


@dataclass(frozen=True, slots=True)
class CascadeCost:
    """Mean USD per request of each model on one table, and of cascades and routers.

    Tokens are estimated as characters / 4 (:data:`~modelmix.eval.CHARS_PER_TOKEN`): prompt
    tokens from the prompts, completion tokens from each model's answers in the table (the
    strong model's from ``<strong>_response`` when there is one, else the weak model's).
    The strong call of an escalation gets the original prompt, not the weak answer.
    """

    weak_price: Price
    strong_price: Price
    prompt_tokens: float
    weak_completion_tokens: float
    strong_completion_tokens: float
    strong_measured: bool

    @property
    def weak_usd(self) -> float:
        """USD of one weak call."""
        return (self.prompt_tokens * self.weak_price.input_per_mtok
                + self.weak_completion_tokens * self.weak_price.output_per_mtok) / 1e6

    @property
    def strong_usd(self) -> float:
        """USD of one strong call."""
        return (self.prompt_tokens * self.strong_price.input_per_mtok
                + self.strong_completion_tokens * self.strong_price.output_per_mtok) / 1e6

    def cascade_usd(self, strong_fraction: float) -> float:
        """USD per request of a cascade escalating a share ``f``: ``weak + f * strong``."""
        return self.weak_usd + strong_fraction * self.strong_usd

    def routed_usd(self, strong_fraction: float) -> float:
        """USD per request of a router sending ``f`` to strong: ``(1-f) weak + f strong``."""
        return (1.0 - strong_fraction) * self.weak_usd + strong_fraction * self.strong_usd

    def to_dict(self) -> dict[str, Any]:
        return {"weak_price_usd_per_mtok": [self.weak_price.input_per_mtok,
                                            self.weak_price.output_per_mtok],
                "strong_price_usd_per_mtok": [self.strong_price.input_per_mtok,
                                              self.strong_price.output_per_mtok],
                "prompt_tokens": self.prompt_tokens,
                "weak_completion_tokens": self.weak_completion_tokens,
                "strong_completion_tokens": self.strong_completion_tokens,
                "strong_completion_measured": self.strong_measured,
                "weak_usd": self.weak_usd, "strong_usd": self.strong_usd,
                "token_estimate": "characters / 4"}


def cascade_cost(table: CascadeTable, weak: Price = DEFAULT_WEAK_PRICE,
                 strong: Price = DEFAULT_STRONG_PRICE) -> CascadeCost:
    """Price ``table``'s mean token profile (see :class:`CascadeCost`)."""
    pair = table.pair
    prompt = float(np.mean(pair.prompt_tokens()))
    weak_out = float(np.mean([max(1, math.ceil(len(a) / 4)) for a in table.weak_answers]))
    measured = pair.strong_completion_tokens is not None
    strong_out = (float(np.mean(pair.strong_completion_tokens))
                  if pair.strong_completion_tokens is not None else weak_out)
    return CascadeCost(weak, strong, prompt, weak_out, strong_out, measured)


#: Per fold: (the table, each fold's test rows) -> every row's escalation score.
VerifierScorer = Callable[[CascadeTable, Sequence[Sequence[int]]], np.ndarray]


def fixed_scores(verifier: Verifier) -> VerifierScorer:
    """A verifier that needs no training: every row scored once."""
    def score(table: CascadeTable, folds: Sequence[Sequence[int]]) -> np.ndarray:
        return np.asarray(verifier.scores(table.pair.prompts, table.weak_answers),
                          dtype=np.float64)

    return score


def learned_scores(options: VerifierFitOptions | None = None,
                   on_fold: Callable[[int, int], None] | None = None) -> VerifierScorer:
    """A learned verifier trained per fold on the other folds' weak answers and outcomes:
    out-of-fold escalation scores (needs scikit-learn)."""
    from modelmix.routing.cascade import VerifierFitOptions, fit_verifier, verifier_features

    fit_options = options or VerifierFitOptions()

    def score(table: CascadeTable, folds: Sequence[Sequence[int]]) -> np.ndarray:
        x = verifier_features(table.pair.prompts, table.weak_answers,
                              prompt_features=fit_options.prompt_features)
        labels = table.weak_labels
        out = np.full(len(table), np.nan)
        for i, test in enumerate(folds):
            if on_fold is not None:
                on_fold(i, len(folds))
            train = np.ones(len(table), dtype=bool)
            train[list(test)] = False
            model = fit_verifier(x[train], labels[train], fit_options)
            out[list(test)] = 1.0 - model.predict_features(x[list(test)])
        return out

    return score


@dataclass(frozen=True, slots=True)
class CascadeReport:
    """Everything ``modelmix cascade eval`` measured on one table.

    Attributes:
        methods: ``cascade``, ``router`` (when evaluated), ``random``, ``oracle`` -> summary
            over folds (strong fraction = share of strong calls).
        verifier: what scored the answers; router: the router evaluated, or None.
        verifier_metrics: AUC of the escalation score for wrong weak answers, over folds.
        cost: the priced token profile.
    """

    dataset: str
    weak_model: str
    strong_model: str
    n_prompts: int
    folds: int
    seed: int
    q_weak: Stat
    q_strong: Stat
    methods: dict[str, MethodSummary]
    cost: CascadeCost
    verifier: str
    router: str | None
    verifier_metrics: dict[str, Stat]
    skipped_rows: int = 0

    def usd_per_1k(self, method: str, strong_fraction: float) -> float:
        """USD per 1k requests of ``method`` at a strong-call share (cascade pays the weak
        call on every request, the others route)."""
        if method == "cascade":
            return 1000 * self.cost.cascade_usd(strong_fraction)
        return 1000 * self.cost.routed_usd(strong_fraction)


def _fold_metrics(table: CascadeTable, scores: np.ndarray, test: Sequence[int],
                  bins: int) -> dict[str, RouterMetrics]:
    part = table.pair.take(test)
    return {"cascade": evaluate_scores(scores[list(test)], part.weak, part.strong, bins=bins),
            "random": random_metrics(part.weak, part.strong, seeds=RANDOM_SEEDS, bins=bins),
            "oracle": oracle_metrics(part.weak, part.strong)}


def _auc(scores: np.ndarray, labels: np.ndarray) -> float:
    from modelmix.routing.cascade import roc_auc

    return roc_auc(scores, labels < 0.5)


def run_cascade_eval(table: CascadeTable, scorer: VerifierScorer, *, verifier: str,
                     folds: int = 5, seed: int = 0, bins: int = DEFAULT_BINS,
                     router_fit: Fit | None = None, router_label: str | None = None,
                     router_tables: Sequence[PairTable] = (), cost: CascadeCost | None = None,
                     on_fold: Callable[[int, int], None] | None = None) -> CascadeReport:
    """Evaluate a cascade on ``table`` (see the module doc) next to the prompt-only router
    (``router_fit``, retrained per fold on the same folds, also on ``router_tables``),
    random routing and the oracle.

    Raises:
        ValueError: more folds than distinct prompts, or no scores for some rows.
    """
    parts = stratified_folds(table.pair, folds, seed)
    scores = scorer(table, parts)
    if scores.shape != (len(table),) or not np.all(np.isfinite(scores)):
        raise ValueError("the verifier left rows without a finite score")
    per_fold = [_fold_metrics(table, scores, test, bins) for test in parts]
    methods = {name: summarize_method(name, [f[name] for f in per_fold])
               for name in ("cascade", "random", "oracle")}
    if router_fit is not None:
        reports = cross_validate_tables([table.pair, *router_tables], router_fit, folds=folds,
                                        seed=seed, bins=bins, on_fold=on_fold)
        methods = {"cascade": methods["cascade"], "router": reports[0].methods["router"],
                   "random": methods["random"], "oracle": methods["oracle"]}
    labels = table.weak_labels
    return CascadeReport(
        dataset=table.pair.name, weak_model=table.pair.weak_model,
        strong_model=table.pair.strong_model, n_prompts=len(table), folds=folds, seed=seed,
        q_weak=Stat.of([f["cascade"].q_weak for f in per_fold]),
        q_strong=Stat.of([f["cascade"].q_strong for f in per_fold]),
        methods=methods, cost=cost or cascade_cost(table), verifier=verifier,
        router=router_label if router_fit is not None else None,
        verifier_metrics={"auc": Stat.of([_auc(scores[list(t)], labels[list(t)])
                                          for t in parts])},
        skipped_rows=table.pair.skipped_rows)
