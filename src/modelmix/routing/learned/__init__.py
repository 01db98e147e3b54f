"""Learned routers: predict, per model, P(acceptable answer) for a prompt.

Example::

    from modelmix.routing.learned import load_predictor, train_router

    router = load_predictor("default")          # shipped: MMLU + GSM8K, Mixtral vs GPT-4
    router.strong_score(["What is 2 + 2?"])      # P(strong model needed), per prompt
    mine = train_router(["outcomes.csv"], out="my-router")   # prompt + one column per model

Scoring needs numpy and ``tokenizers`` only (a static embedding table distilled from
all-MiniLM-L6-v2, lexical and domain features, a small learned head); training also needs
scikit-learn. See ``benchmarks/router/RESULTS.md`` for the learner comparison.
"""

from __future__ import annotations

from modelmix.routing.learned._artifact import (
    ARTIFACT_FORMAT,
    FORMAT_VERSION,
    LearnedPredictor,
    artifact_size,
    default_artifact_dir,
    load_predictor,
)
from modelmix.routing.learned._base import QualityPredictor
from modelmix.routing.learned._embed import StaticEmbedder, distill_minilm
from modelmix.routing.learned._fit import FitOptions, Progress
from modelmix.routing.learned._model import LEARNERS, Learner, RouterModel
from modelmix.routing.learned._tables import (
    OutcomeTable,
    RouterDataError,
    read_outcome_tables,
    read_prompts,
)
from modelmix.routing.learned._train import (
    choose_pair,
    load_embedder,
    train_on_table,
    train_router,
)

__all__ = [
    "ARTIFACT_FORMAT",
    "FORMAT_VERSION",
    "LEARNERS",
    "FitOptions",
    "LearnedPredictor",
    "Learner",
    "OutcomeTable",
    "Progress",
    "QualityPredictor",
    "RouterDataError",
    "RouterModel",
    "StaticEmbedder",
    "artifact_size",
    "choose_pair",
    "default_artifact_dir",
    "distill_minilm",
    "load_embedder",
    "load_predictor",
    "read_outcome_tables",
    "read_prompts",
    "train_on_table",
    "train_router",
]
