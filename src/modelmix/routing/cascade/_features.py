"""Features of a (prompt, answer) pair for the learned verifier, numpy only.

Most of the signal is in the answer: the arithmetic verifier's per-step consistency
(:func:`~modelmix.routing.cascade._arithmetic.analyse`), whether the answer ends with a
``####`` number and whether that number is whole (GSM8K answers are), how many of the
prompt's numbers it uses, its length, steps and hedging words. The prompt adds the
learned router's lexical features (:data:`~modelmix.routing.learned._features.
LEXICAL_FEATURES`) when the verifier is trained with them. See ``benchmarks/cascade/``
for what each group is worth on GSM8K.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

from modelmix.routing.cascade._arithmetic import Analysis, analyse
from modelmix.routing.cascade._text import agrees
from modelmix.routing.learned._features import LEXICAL_FEATURES, lexical_features

__all__ = ["ANSWER_FEATURES", "answer_row", "feature_names", "verifier_features"]

_HEDGE = re.compile(
    r"\b(?:approximately|assume|assuming|however|but|wait|not sure|cannot|can't|unclear|"
    r"seems|probably|likely|actually|mistake|re-?read|round|estimate|impossible|"
    r"not possible|not enough|let's denote|let x|equation|solve)\b", re.IGNORECASE)
_DIGITS = re.compile(r"\d+")

#: Names of the answer features, in column order.
ANSWER_FEATURES: tuple[str, ...] = (
    "log_steps", "log_failed_steps", "failed_share", "arithmetic_ok", "hash_final",
    "has_final", "final_is_step_result", "final_in_prompt", "final_not_whole",
    "final_log_abs", "final_negative", "log_unsupported_numbers", "prompt_numbers_used",
    "answer_log_chars", "answer_log_lines", "answer_log_numbers", "log_hedges",
    "answer_vs_prompt_length", "final_is_last_step",
)


def _last_step_agrees(found: Analysis) -> float:
    """1/0: the final number is the last step's result; 0.5 without steps or final."""
    if found.final is None or not found.steps:
        return 0.5
    last = found.steps[-1]
    values = [last.computed, last.stated.value]
    return float(any(v is not None and agrees(v, found.final.token) for v in values))


def answer_row(prompt: str, answer: str, found: Analysis | None = None) -> list[float]:
    """The :data:`ANSWER_FEATURES` of one pair (``found``: its analysis, if already made)."""
    found = found if found is not None else analyse(prompt, answer)
    n, failed = len(found.steps), len(found.failed)
    final = found.final
    value = float(final.value) if final is not None else 0.0
    return [
        math.log1p(n), math.log1p(failed), failed / n if n else 0.0,
        float(failed == 0 and found.final_ok is not False),
        float(final is not None and final.source == "####"), float(final is not None),
        {None: 0.5, True: 1.0, False: 0.0}[found.final_ok], float(found.final_in_prompt),
        float(final is not None and final.value.denominator != 1),
        math.log1p(min(abs(value), 1e300)), float(value < 0),
        math.log1p(len(found.unsupported)), found.prompt_numbers_used,
        math.log1p(len(answer)), math.log1p(answer.count("\n")),
        math.log1p(len(_DIGITS.findall(answer))), math.log1p(len(_HEDGE.findall(answer))),
        math.log1p(len(answer)) - math.log1p(len(prompt)), _last_step_agrees(found),
    ]


def feature_names(prompt_features: bool) -> list[str]:
    """Column names of :func:`verifier_features` (answer, then ``prompt_`` lexical)."""
    prompt = [f"prompt_{name}" for name, _ in LEXICAL_FEATURES] if prompt_features else []
    return [*ANSWER_FEATURES, *prompt]


def verifier_features(prompts: Sequence[str], answers: Sequence[str], *,
                      prompt_features: bool = True,
                      analyses: Sequence[Analysis] | None = None) -> np.ndarray:
    """Raw features, ``(n, len(feature_names(prompt_features)))`` float64."""
    if len(prompts) != len(answers):
        raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
    rows = [answer_row(p, a, analyses[i] if analyses is not None else None)
            for i, (p, a) in enumerate(zip(prompts, answers, strict=True))]
    out = np.asarray(rows, dtype=np.float64).reshape(len(prompts), len(ANSWER_FEATURES))
    if prompt_features:
        out = np.hstack([out, lexical_features(list(prompts)).astype(np.float64)])
    return out
