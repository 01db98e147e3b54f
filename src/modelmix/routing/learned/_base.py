"""The contract between learned-router artifacts and their users (router strategy,
evaluation, CLI). Implementations live beside this module."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = ["QualityPredictor"]


class QualityPredictor(Protocol):
    """Predicts, per prompt, how likely each known model is to answer acceptably.

    Attributes:
        model_names: the outcome-table columns the predictor was trained on, in order
            (e.g. ``("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")``).
        weak_model / strong_model: for two-model tables, which column is the cheap (weak)
            and which the expensive (strong) model; None when not defined.
    """

    model_names: tuple[str, ...]
    weak_model: str | None
    strong_model: str | None

    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        """P(acceptable answer) in [0, 1], shape ``(len(prompts), len(model_names))``."""
        ...

    def strong_score(self, prompts: Sequence[str]) -> list[float]:
        """Per prompt, the probability that the strong model is needed (higher means
        route to strong). Requires ``weak_model`` and ``strong_model``."""
        ...
