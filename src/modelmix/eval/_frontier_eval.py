"""Many-model routing, cross-validated and priced (``modelmix router eval --frontier``).

Protocol: the table's rows are split into k folds by prompt exactly as ``router train
--cv`` splits them (:func:`modelmix.metrics.source_folds`); for fold i a learned router is
trained (:func:`modelmix.routing.learned.train_on_table`, one quality head per model) on
the other folds and predicts every model's quality for fold i's prompts. The pooled
out-of-fold predictions then drive the frontier arithmetic of :mod:`._frontier` (both
routing rules, ``utility`` and ``threshold``): every prompt is routed by a router that
never saw it.

Cost of a request on model j: ``prompt_tokens * input + completion_tokens_j * output``
(USD per 1M tokens from a :class:`~modelmix.eval._prices.PriceTable`); prompt tokens are
the prompt's characters / 4 (:func:`~modelmix.eval._table.estimate_tokens`), completion
tokens the model's ``answer_chars / 4`` from the price table, else a fixed number.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from itertools import combinations
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from modelmix.errors import ConfigError
from modelmix.eval._frontier import (
    Point,
    budget_score,
    cost_at_quality,
    cost_weight_grid,
    gaps,
    mixing_hull,
    pair_curve,
    pareto,
    quality_at_cost,
    single_points,
    sweep,
    sweep_utility,
    target_grid,
)
from modelmix.eval._prices import ModelPrice, PriceTable
from modelmix.eval._table import estimate_tokens

if TYPE_CHECKING:
    from modelmix.routing.learned import FitOptions, OutcomeTable, StaticEmbedder

__all__ = ["DEFAULT_FRONTIER_COMPLETION_TOKENS", "RULES", "FrontierReport", "ManyModelTable",
           "check_prices", "cost_matrix", "cross_validated_predictions", "describe_costs",
           "frontier_report", "load_many_model_table"]

#: Completion tokens per request for a model whose price entry has no ``answer_chars``.
DEFAULT_FRONTIER_COMPLETION_TOKENS = 256


@dataclass(frozen=True, slots=True)
class ManyModelTable:
    """Per-prompt realised quality of m models (rows with a missing outcome dropped).

    Attributes:
        name: label (file stem).
        prompts: n prompt texts.
        models: the m model columns.
        quality: ``(n, m)`` float in [0, 1].
        outcome: the learned router's table for the same rows (training input).
        skipped_rows: rows left out because some model had no outcome.
    """

    name: str
    prompts: tuple[str, ...]
    models: tuple[str, ...]
    quality: np.ndarray
    outcome: OutcomeTable
    skipped_rows: int = 0


def load_many_model_table(path: Path, *, models: Sequence[str] | None = None,
                          prompt_column: str = "prompt") -> ManyModelTable:
    """Read an outcome table with ``router train``'s reader (the same columns, grade
    scaling and domains). Raises :class:`~modelmix.errors.ModelmixError` subclasses."""
    from modelmix.routing.learned import OutcomeTable, RouterDataError, read_outcome_tables

    table = read_outcome_tables([path], prompt_column=prompt_column, models=models)
    if len(table.model_names) < 2:
        raise RouterDataError(f"{path}: the frontier needs at least two model columns, "
                              f"found {list(table.model_names)}")
    keep = np.isfinite(table.outcomes).all(axis=1)
    if not keep.any():
        raise RouterDataError(f"{path}: no row has an outcome for every model")
    rows = np.flatnonzero(keep)
    outcome = OutcomeTable(prompts=tuple(table.prompts[i] for i in rows),
                           model_names=table.model_names, outcomes=table.outcomes[rows],
                           domains=tuple(table.domains[i] for i in rows),
                           sources=tuple(table.sources[i] for i in rows))
    return ManyModelTable(name=path.stem, prompts=outcome.prompts, models=table.model_names,
                          quality=outcome.outcomes, outcome=outcome,
                          skipped_rows=int((~keep).sum()))


def _completion(price: ModelPrice, fixed: float | None) -> float:
    return fixed if fixed is not None else price.completion_tokens(
        DEFAULT_FRONTIER_COMPLETION_TOKENS)


def cost_matrix(prompts: Sequence[str], prices: Sequence[ModelPrice],
                completion_tokens: float | None = None) -> np.ndarray:
    """USD of each prompt on each model, ``(n, m)``: prompt tokens are characters / 4;
    completion tokens are ``completion_tokens`` when given (every model), else each
    model's ``answer_chars / 4``, else :data:`DEFAULT_FRONTIER_COMPLETION_TOKENS`."""
    prompt_tokens = [estimate_tokens(p) for p in prompts]
    return np.array([[price.usd(t, _completion(price, completion_tokens)) for price in prices]
                     for t in prompt_tokens], dtype=np.float64).reshape(len(prompts),
                                                                       len(prices))


def cross_validated_predictions(
    table: ManyModelTable, *, folds: int = 5, seed: int = 0,
    options: FitOptions | None = None, embedder: StaticEmbedder | None = None,
    on_fold: Callable[[int, int], None] | None = None,
) -> np.ndarray:
    """Out-of-fold predicted quality of every model, ``(n, m)`` (module doc).

    Raises:
        ValueError: more folds than distinct prompts.
    """
    from modelmix.metrics import source_folds
    from modelmix.routing.learned import OutcomeTable, load_embedder, train_on_table

    out = table.outcome
    embedder = embedder or load_embedder("default")
    fold = source_folds(out.prompts, out.sources, out.domains, folds, seed)
    predicted = np.full(table.quality.shape, np.nan)
    for i in range(folds):
        if on_fold is not None:
            on_fold(i, folds)
        train, test = np.flatnonzero(fold != i), np.flatnonzero(fold == i)
        part = OutcomeTable(prompts=tuple(out.prompts[j] for j in train),
                            model_names=out.model_names, outcomes=out.outcomes[train],
                            domains=tuple(out.domains[j] for j in train),
                            sources=tuple(out.sources[j] for j in train))
        predictor = train_on_table(part, embedder, options=options)
        predicted[test] = predictor.predict_array([out.prompts[j] for j in test])
    return predicted


#: The routing rules a frontier reports (:mod:`._frontier`), the headline one first.
RULES = ("utility", "threshold")


@dataclass(frozen=True, slots=True)
class FrontierReport:
    """Everything ``--frontier`` reports (``to_dict`` is the ``results.json`` part).

    ``sweeps`` holds every rule's routing points (rule name -> points), ``rule_scores``
    their budget scores; ``rule`` is the headline rule (``routing``, ``headlines``)."""

    dataset: str
    models: tuple[str, ...]
    n_prompts: int
    singles: list[Point]
    sweeps: dict[str, list[Point]]
    hull: list[Point]
    best_pair: tuple[str, str]
    best_pair_curve: list[Point]
    pair_scores: dict[str, float]
    rule_scores: dict[str, float]
    hull_score: float
    headlines: dict[str, Any]
    rule: str = RULES[0]
    about: dict[str, Any] = field(default_factory=dict)

    @property
    def routing(self) -> list[Point]:
        """The headline rule's routing points."""
        return self.sweeps[self.rule]

    @property
    def routing_score(self) -> float:
        """The headline rule's budget score."""
        return self.rule_scores[self.rule]

    @property
    def frontier(self) -> list[Point]:
        """The headline rule's routing points no other of its points beats, by cost."""
        return pareto(self.routing)

    def to_dict(self) -> dict[str, Any]:
        def pts(points: Sequence[Point]) -> list[dict[str, Any]]:
            return [p.to_dict() for p in points]

        return {
            "dataset": self.dataset, "models": list(self.models), "n_prompts": self.n_prompts,
            **self.about, "rule": self.rule,
            "single_models": pts(self.singles),
            "routing_sweeps": {r: pts(p) for r, p in self.sweeps.items()},
            "routing_frontiers": {r: pts(pareto(p)) for r, p in self.sweeps.items()},
            "random_mixing_hull": pts(self.hull),
            "best_pair": list(self.best_pair), "best_pair_curve": pts(self.best_pair_curve),
            "budget_scores": {"routing": dict(self.rule_scores),
                              "random_mixing": self.hull_score, "pairs": self.pair_scores},
            "headlines": self.headlines,
        }


def _share(value: float | None, of: float) -> float | None:
    return None if value is None or of == 0 else value / of


def _per_rule(sweeps: dict[str, list[Point]], s: Point) -> dict[str, Any]:
    out = {}
    for rule, points in sweeps.items():
        cost = cost_at_quality(points, s.quality)
        out[rule] = {"usd_per_1k_at_its_quality": cost,
                     "cost_share_at_its_quality": _share(cost, s.usd_per_1k),
                     "quality_at_its_cost": quality_at_cost(points, s.usd_per_1k)}
    return out


def _headlines(singles: list[Point], sweeps: dict[str, list[Point]], pair: list[Point],
               hull: list[Point]) -> dict[str, Any]:
    """Per single model: what each rule and the best pair pay for its quality and reach
    at its cost; per rule: 95% of the best single model's quality, and the gaps to the
    best single model a budget affords and to random mixing (:func:`._frontier.gaps`)."""
    best = max(singles, key=lambda p: (p.quality, -p.usd_per_1k))
    cheapest = min(singles, key=lambda p: (p.usd_per_1k, -p.quality))
    lo, hi = cheapest.usd_per_1k, max(p.usd_per_1k for p in singles)
    per_model = {s.label: {"usd_per_1k": s.usd_per_1k, "quality": s.quality,
                           "routing": _per_rule(sweeps, s),
                           "pair_usd_per_1k_at_its_quality": cost_at_quality(pair, s.quality),
                           "pair_quality_at_its_cost": quality_at_cost(pair, s.usd_per_1k)}
                 for s in singles}
    bar = 0.95 * best.quality
    at95: dict[str, Any] = {"quality": bar, "pair_usd_per_1k": cost_at_quality(pair, bar)}
    vs: dict[str, Any] = {}
    for rule, points in sweeps.items():
        cost = cost_at_quality(points, bar)
        at95[rule] = {"usd_per_1k": cost, "cost_share_of_best": _share(cost, best.usd_per_1k)}
        vs[rule] = {"best_single_model": gaps(points, singles, lo, hi, mix_reference=False),
                    "random_mixing": gaps(points, hull, lo, hi)}
    return {"best_single": best.label, "cheapest_single": cheapest.label,
            "per_model": per_model, "at_95pct_of_best": at95, "gaps": vs}


def frontier_report(predicted: np.ndarray, quality: np.ndarray, cost: np.ndarray,
                    models: Sequence[str], *, dataset: str = "", rule: str = RULES[0],
                    about: dict[str, Any] | None = None) -> FrontierReport:
    """The frontier of every rule in :data:`RULES`, references and headlines from
    ``(n, m)`` predicted quality, realised quality and USD per request (see
    :mod:`._frontier` for every definition); ``rule`` is the headline one.

    Raises:
        ValueError: shapes that do not match ``models`` (at least 2), an unknown rule.
    """
    if not (predicted.shape == quality.shape == cost.shape) or predicted.shape[1] != len(
            models) or len(models) < 2:
        raise ValueError(f"shapes {predicted.shape}, {quality.shape}, {cost.shape} do not "
                         f"match {len(models)} models (at least 2)")
    if rule not in RULES:
        raise ValueError(f"unknown routing rule {rule!r}; one of {', '.join(RULES)}")
    singles = single_points(quality, cost, models)
    sweeps = {"utility": sweep_utility(predicted, quality, cost,
                                       cost_weight_grid(predicted, cost), models),
              "threshold": sweep(predicted, quality, cost, target_grid(predicted), models)}
    sweeps = {rule: sweeps[rule], **{r: p for r, p in sweeps.items() if r != rule}}
    lo = min(p.usd_per_1k for p in singles)
    hi = max(p.usd_per_1k for p in singles)
    curves: dict[tuple[int, int], list[Point]] = {}
    for a, b in combinations(range(len(models)), 2):
        cheap, dear = (a, b) if singles[a].usd_per_1k <= singles[b].usd_per_1k else (b, a)
        curves[(cheap, dear)] = pair_curve(predicted, quality, cost, cheap, dear, models)
    scores = {k: budget_score(c, lo, hi) for k, c in curves.items()}
    best = max(scores, key=lambda k: scores[k])
    hull = mixing_hull(singles)
    return FrontierReport(
        dataset=dataset, models=tuple(models), n_prompts=int(predicted.shape[0]),
        singles=singles, sweeps=sweeps, hull=hull,
        best_pair=(models[best[0]], models[best[1]]), best_pair_curve=curves[best],
        pair_scores={f"{models[a]} -> {models[b]}": s for (a, b), s in
                     sorted(scores.items(), key=lambda kv: -kv[1])},
        rule_scores={r: budget_score(p, lo, hi) for r, p in sweeps.items()},
        hull_score=budget_score(hull, lo, hi),
        headlines=_headlines(singles, sweeps, curves[best], hull), rule=rule,
        about=dict(about or {}))


def describe_costs(prices: PriceTable, models: Sequence[str],
                   completion_tokens: float | None) -> dict[str, Any]:
    """The cost assumptions as recorded in ``results.json``."""
    how = (f"a fixed {completion_tokens:g} per request (--completion-tokens)"
           if completion_tokens is not None else
           "the model's answer_chars / 4 from the price table, else "
           f"{DEFAULT_FRONTIER_COMPLETION_TOKENS}")
    return {"prices": prices.describe(),
            "token_model": f"prompt tokens = prompt characters / 4; completion tokens = {how}",
            "completion_tokens": {m: _completion(prices.prices[m], completion_tokens)
                                  for m in models}}


def check_prices(prices: PriceTable, models: Sequence[str]) -> list[ModelPrice]:
    """The prices of ``models``; :class:`ConfigError` (one line) names missing ones."""
    if not models:
        raise ConfigError("no model columns to price")
    return prices.for_models(list(models))
