"""A task-type prior for prompts unlike a router's training data.

A router learns which prompts need the strong model from its training table; on prompts of
a kind it never saw, its heads extrapolate, and the shipped router (trained on MMLU and
GSM8K) extrapolates *badly* on chat: prompt length, a mild signal of difficulty on exams,
points the wrong way there. A router whose manifest carries a ``prior`` therefore
scores only the prompts its **gate** accepts with its learned heads, and every other prompt
with a hand-written prior by task type:

``P(strong needed) = TASK_PRIORS[task] - MATERIAL_SLOPE * material(prompt)``

where ``task`` is the first of :data:`TASK_PATTERNS` that matches (else ``open`` for a
question or request with no supplied material, else ``other``) and ``material`` grows with
the text the prompt supplies (characters beyond :data:`MATERIAL_FREE_CHARS`, on a log
scale, and its line count).

Why these values (maintainers' judgement from the sources below; nothing is fitted to any
table, but the AlpacaEval chat table's per-task means were looked at while the task list
was written, so that table is not an independent test of them: docs/decisions/0013):

- **math, reasoning** (0.75 / 0.70): the largest gaps between open and frontier models on
  MT-Bench's categories are in math, reasoning and coding (Zheng et al., *Judging
  LLM-as-a-judge with MT-Bench and Chatbot Arena*, NeurIPS 2023, category scores);
- **open** knowledge, advice and explanation questions (0.70): the answer must come from
  the model's own knowledge, and chat judges reward the more complete answer (the length
  bias measured in Dubois et al., *Length-Controlled AlpacaEval*, 2024);
- **code** (0.60): a gap on hard problems, little on the everyday snippets chat asks for;
- **transform** (rewrite, translate, summarise, extract, classify: 0.35) and the
  ``material`` term: when the prompt supplies the content, the answer is constrained by it
  and small models follow it well;
- **creative** writing and **roleplay** (0.40): MT-Bench's smallest gaps (writing,
  roleplay); fluency, not knowledge, is what is judged;
- **other** (0.55): slightly above "no difference" (0.5), as frontier models win most
  pairwise chat comparisons.

The score is on the learned heads' scale (``(1 + p_strong - p_weak) / 2``), so one
calibrated threshold applies to both. English keywords only: other languages fall to
``open``/``other`` and the material term. The gate ``exam-format`` accepts what the shipped
router was trained on: multiple-choice questions (two or more ``A.``-style option lines)
and one-paragraph math word problems (two or more quantities, in digits or words, and a
final question or "calculate/find" instruction).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GATES", "MATERIAL_FREE_CHARS", "MATERIAL_SLOPE", "TASK_PATTERNS", "TASK_PRIORS",
           "TaskPrior", "exam_format", "task_type"]

_F = re.IGNORECASE | re.MULTILINE

#: Task type -> pattern, in priority order (the first match wins).
TASK_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("math", re.compile(r"\b(?:calculate|compute|solve|equations?|integral|derivative|"
                        r"probability|prove|theorem|how many|how much)\b|\d\s*[-+*/^=]\s*\d",
                        _F)),
    ("reasoning", re.compile(r"\b(?:riddle|puzzle|logic(?:al)?|step[- ]by[- ]step|deduce|"
                             r"paradox|which is (?:heavier|bigger|larger|faster))\b", _F)),
    ("code", re.compile(r"```|\b(?:code|function|python|javascript|typescript|java|c\+\+|"
                        r"sql|regex|script|program|compile|bug|api|html|css)\b", _F)),
    ("transform", re.compile(r"\b(?:rewrite|rephrase|paraphrase|translate|summari[sz]e|"
                             r"summary|extract|classify|categori[sz]e|correct|proofread|edit|"
                             r"convert|format|shorten|simplify|reword|grammar)\b", _F)),
    ("creative", re.compile(r"\b(?:poem|story|stories|song|lyrics|haiku|limerick|joke|"
                            r"slogan|tweet|tagline|rap|fiction|tale|verse|rhyme)\b", _F)),
    ("roleplay", re.compile(r"\b(?:act as|pretend|role-?play|you are a|imagine you|"
                            r"in the style of|as if you were)\b", _F)),
)
_OPEN = re.compile(r"^[ \t]*(?:what|why|how|who|when|where|which|can you|could you|explain|"
                   r"tell me|describe|give me|list|is it|are there|do you|should i)\b", _F)

#: Task type -> P(strong model needed) with no supplied material (see the module doc).
TASK_PRIORS: dict[str, float] = {
    "math": 0.75, "reasoning": 0.70, "open": 0.70, "code": 0.60, "other": 0.55,
    "creative": 0.40, "roleplay": 0.40, "transform": 0.35,
}
#: Characters a prompt may hold before its length counts as supplied material.
MATERIAL_FREE_CHARS = 200
#: Score lowered per unit of material (log characters beyond the free ones, plus lines/4).
MATERIAL_SLOPE = 0.05

_QUANTITY_WORD = (r"\d+(?:[.,]\d+)*|\b(?:one|two|three|four|five|six|seven|eight|nine|ten|"
                  r"twelve|twenty|hundred|thousand|half|twice|thrice|double|triple|"
                  r"dozen|quarter)\b")
_NUMBER = re.compile(_QUANTITY_WORD, re.IGNORECASE)
_OPTION = re.compile(r"^[ \t]*\(?[A-Ja-j][.):]\s", re.MULTILINE)
_QUANTITY = re.compile(r"\b(?:how|what|which|calculate|find|determine)\b[^.?!]*\?\s*$|"
                       r"\b(?:calculate|find|determine)\b[^.?!]*\.?\s*$", re.IGNORECASE)


#: Characters of a prompt's start searched for its task (the instruction comes first).
TASK_SCAN_CHARS = 2_000
#: Characters of a prompt's end searched for a word problem's final question.
QUESTION_SCAN_CHARS = 300
#: Characters searched for answer options and quantities.
FORMAT_SCAN_CHARS = 8_000


def task_type(prompt: str) -> str:
    """The prompt's task type (a key of :data:`TASK_PRIORS`), from its first
    :data:`TASK_SCAN_CHARS` characters."""
    head = prompt[:TASK_SCAN_CHARS]
    for name, pattern in TASK_PATTERNS:
        if pattern.search(head):
            return name
    return "open" if _OPEN.search(head) else "other"


def _material(prompt: str) -> float:
    extra = max(math.log1p(len(prompt)) - math.log1p(MATERIAL_FREE_CHARS), 0.0)
    return extra + min(prompt.count("\n"), 4) / 4


def exam_format(prompt: str) -> bool:
    """Whether ``prompt`` looks like MMLU (two or more option lines) or a GSM8K word
    problem (one paragraph, two or more quantities, a final question or
    "calculate/find" instruction)."""
    text = prompt[:FORMAT_SCAN_CHARS]
    if len(_OPTION.findall(text)) >= 2:
        return True
    text = text.strip()
    return ("\n" not in text and "<br>" not in text and len(_NUMBER.findall(text)) >= 2
            and _QUANTITY.search(text[-QUESTION_SCAN_CHARS:]) is not None)


#: Gate name -> which prompts the learned heads score.
GATES = {"exam-format": exam_format}


@dataclass(frozen=True)
class TaskPrior:
    """The prior a router applies outside its gate (manifest key ``prior``).

    Attributes:
        gate: a key of :data:`GATES`: prompts it accepts keep the learned score.
    """

    gate: str = "exam-format"

    def __post_init__(self) -> None:
        if self.gate not in GATES:
            raise ValueError(f"unknown prior gate {self.gate!r}; known: {sorted(GATES)}")

    @classmethod
    def from_manifest(cls, raw: Any) -> TaskPrior | None:
        """The prior a manifest's ``prior`` value describes (None when absent).

        Raises:
            ValueError: ``raw`` is not ``{"kind": "task-type", "gate": <known gate>}``.
        """
        if raw is None:
            return None
        if not isinstance(raw, dict) or raw.get("kind") != "task-type":
            raise ValueError(f"unsupported router prior {raw!r}")
        return cls(gate=str(raw.get("gate", "exam-format")))

    def to_manifest(self) -> dict[str, Any]:
        """The manifest's ``prior`` value."""
        return {"kind": "task-type", "gate": self.gate, "priors": dict(TASK_PRIORS),
                "material_slope": MATERIAL_SLOPE, "material_free_chars": MATERIAL_FREE_CHARS}

    def outside(self, prompts: Sequence[str]) -> np.ndarray:
        """``(n,)`` bool: the prompts the gate rejects (scored by the prior)."""
        accepts = GATES[self.gate]
        return np.fromiter((not accepts(p) for p in prompts), dtype=bool, count=len(prompts))

    def apply(self, prompts: Sequence[str], probs: np.ndarray, weak: int,
              strong: int) -> np.ndarray:
        """Per-model predictions ``probs`` (``(n, M)``, in [0, 1]) with the weak and
        strong columns of the prompts outside the gate replaced so that
        ``(1 + p_strong - p_weak) / 2`` is the prior's :meth:`strong_need`, keeping their
        mean where the bounds allow it. Returns a new array; ``probs`` is not changed."""
        out = np.array(probs, dtype=np.float64, copy=True)
        for i in np.flatnonzero(self.outside(prompts)):
            half_gap = self.strong_need(prompts[int(i)]) - 0.5
            low = abs(half_gap)
            centre = min(max((out[i, strong] + out[i, weak]) / 2.0, low), 1.0 - low)
            out[i, strong], out[i, weak] = centre + half_gap, centre - half_gap
        return out

    def strong_need(self, prompt: str) -> float:
        """P(strong model needed) for one prompt, in [0.05, 0.95]."""
        score = TASK_PRIORS[task_type(prompt)] - MATERIAL_SLOPE * _material(prompt)
        return min(max(score, 0.05), 0.95)
