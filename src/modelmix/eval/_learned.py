"""The learned router (:mod:`modelmix.routing.learned`) as evaluation sees it: a trainer
for cross-validation (:data:`~modelmix.eval._protocols.Fit`) and a trained artifact as a scorer.

The learned-router package is imported inside the functions (it needs scikit-learn to
train), so the metrics work without it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelmix.errors import ConfigError
from modelmix.eval._protocols import Fit, Scorer
from modelmix.eval._table import PairTable

if TYPE_CHECKING:
    from modelmix.routing.learned import FitOptions, LearnedPredictor, OutcomeTable

__all__ = ["TrainedRouter", "in_sample_files", "learned_fit", "load_trained_router"]


def _outcome_table(parts: Sequence[PairTable]) -> OutcomeTable:
    """Training parts as the learned router's table: columns (weak, strong) by role,
    named after the first part's models; domain = MMLU subject, else the table's name.
    Numeric scores outside [0, 1] are min-max scaled over all parts, as the learned
    router's own reader does."""
    from modelmix.routing.learned import OutcomeTable
    from modelmix.routing.learned._shape import reference_column

    outcomes = np.array([[w, s] for t in parts for w, s in zip(t.weak, t.strong, strict=True)],
                        dtype=np.float64).reshape(-1, 2)
    lo, hi = (float(outcomes.min()), float(outcomes.max())) if outcomes.size else (0.0, 1.0)
    if lo < 0.0 or hi > 1.0:
        outcomes = (outcomes - lo) / (hi - lo if hi > lo else 1.0)
    return OutcomeTable(
        prompts=tuple(p for t in parts for p in t.prompts),
        model_names=(parts[0].weak_model, parts[0].strong_model),
        outcomes=outcomes,
        domains=tuple(d for t in parts for d in (t.subjects or (t.name,) * len(t))),
        sources=tuple(t.name for t in parts for _ in t.prompts),
        reference=reference_column((parts[0].weak_model, parts[0].strong_model), outcomes),
    )


def learned_fit(options: FitOptions | None = None, *, embedder: str | Path = "default",
                given: Collection[str] | None = None) -> Fit:
    """A trainer that fits the learned router on a fold's training rows, one call per fold.

    ``embedder`` names the artifact whose static embedding table is reused (loaded once);
    ``options`` are the learner settings (:class:`~modelmix.routing.learned.FitOptions`),
    with ``given`` as in :func:`~modelmix.routing.learned.train_router` (the fields the
    caller chose; the others take the defaults for a preference table's shape).
    The scorer is the fitted router's ``strong_score`` (P(strong model needed)).
    """
    from modelmix.routing.learned import load_embedder, train_on_table
    from modelmix.routing.learned._train import options_for_table

    table_embedder = load_embedder(embedder)

    def fit(parts: Sequence[PairTable]) -> Scorer:
        if not parts or not any(len(t) for t in parts):
            raise ValueError("no training rows")
        table = _outcome_table(parts)
        predictor = train_on_table(table, table_embedder,
                                   options=options_for_table(table, options, given),
                                   weak=table.model_names[0], strong=table.model_names[1])
        return predictor.strong_score

    return fit


@dataclass(frozen=True, slots=True)
class TrainedRouter:
    """A trained router artifact ready to score: its pair of model columns and a label."""

    scorer: Scorer
    weak_model: str
    strong_model: str
    label: str
    predictor: LearnedPredictor


def load_trained_router(router: str | Path) -> TrainedRouter:
    """Load ``"default"`` or an artifact directory. Raises :class:`ConfigError` when it
    cannot be loaded or has no weak/strong pair."""
    from modelmix.routing.learned import load_predictor

    predictor = load_predictor(router)
    if predictor.weak_model is None or predictor.strong_model is None:
        raise ConfigError(f"router {router} has no weak/strong model pair "
                          f"(models: {list(predictor.model_names)})")
    where = predictor.artifact_dir or router
    return TrainedRouter(scorer=predictor.strong_score, weak_model=predictor.weak_model,
                         strong_model=predictor.strong_model, label=f"artifact {where}",
                         predictor=predictor)


def in_sample_files(predictor: LearnedPredictor, paths: Sequence[Path]) -> list[Path]:
    """Which of ``paths`` the router was trained on (same SHA-256 as a file recorded in its
    manifest): scoring those measures memory, not routing."""
    trained = predictor.info.training_hashes
    return [p for p in paths if hashlib.sha256(p.read_bytes()).hexdigest() in trained]
