"""A task-type prior for prompts unlike a router's training data.

A router learns which prompts need the strong model from its training table; on prompts of
a kind it never saw, its heads extrapolate, and the shipped router (trained on MMLU and
GSM8K) extrapolates *badly* on chat: prompt length, a mild signal of difficulty on exams,
points the wrong way there. A router whose manifest carries a ``prior`` therefore
scores only the prompts its **gate** accepts with its learned heads, and every other prompt
with a hand-written prior by task type:

``P(strong needed) = TASK_PRIORS[task] - MATERIAL_SLOPE * material(prompt)``

where ``task`` is the first of :data:`TASK_WORDS` that matches (else ``open`` for a
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
import string
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["GATES", "MATERIAL_FREE_CHARS", "MATERIAL_SLOPE", "TASK_PRIORS", "TASK_WORDS",
           "TaskPrior", "exam_format", "task_type"]

#: Task type -> (words, phrases), in priority order: the first type with one of its words
#: (a whole word of the lower-cased prompt) or phrases (whole words in a row)
#: wins. ``math`` also matches a digit, operator, digit; ``code`` also "```" and "c++".
TASK_WORDS: tuple[tuple[str, frozenset[str], tuple[str, ...]], ...] = (
    ("math", frozenset({"calculate", "compute", "solve", "equation", "equations", "integral",
                        "derivative", "probability", "prove", "theorem"}),
     ("how many", "how much")),
    ("reasoning", frozenset({"riddle", "puzzle", "logic", "logical", "deduce", "paradox"}),
     ("step by step", "which is heavier", "which is bigger", "which is larger",
      "which is faster")),
    ("code", frozenset({"code", "function", "python", "javascript", "typescript", "java",
                        "sql", "regex", "script", "program", "compile", "bug", "api", "html",
                        "css"}), ()),
    ("transform", frozenset({"rewrite", "rephrase", "paraphrase", "translate", "summarise",
                             "summarize", "summary", "extract", "classify", "categorise",
                             "categorize", "correct", "proofread", "edit", "convert", "format",
                             "shorten", "simplify", "reword", "grammar"}), ()),
    ("creative", frozenset({"poem", "story", "stories", "song", "lyrics", "haiku", "limerick",
                            "joke", "slogan", "tweet", "tagline", "rap", "fiction", "tale",
                            "verse", "rhyme"}), ()),
    ("roleplay", frozenset({"pretend", "roleplay"}),
     ("act as", "role play", "you are a", "imagine you", "in the style of", "as if you were")),
)
#: :data:`TASK_WORDS` with each phrase padded by spaces, as it is searched for.
_TASKS = tuple((name, words, tuple(f" {p} " for p in phrases))
               for name, words, phrases in TASK_WORDS)
_ARITHMETIC = re.compile(r"\d\s*[-+*/^=]\s*\d")
#: Punctuation (ASCII but ``_``, and common typographic marks) -> space, so that
#: ``str.split`` yields the ``\w+`` words of most text at C speed.
_SPACES = str.maketrans({c: " " for c in string.punctuation.replace("_", "")
                          + "\u201c\u201d\u2018\u2019\u00ab\u00bb\u2013\u2014\u2026"})
_OPEN = re.compile(r"^[ \t]*(?:what|why|how|who|when|where|which|can you|could you|explain|"
                   r"tell me|describe|give me|list|is it|are there|do you|should i)\b",
                   re.MULTILINE)

#: Task type -> P(strong model needed) with no supplied material (see the module doc).
TASK_PRIORS: dict[str, float] = {
    "math": 0.75, "reasoning": 0.70, "open": 0.70, "code": 0.60, "other": 0.55,
    "creative": 0.40, "roleplay": 0.40, "transform": 0.35,
}
#: Characters a prompt may hold before its length counts as supplied material.
MATERIAL_FREE_CHARS = 200
#: Score lowered per unit of material (log characters beyond the free ones, plus lines/4).
MATERIAL_SLOPE = 0.05

_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_NUMBER_WORDS = frozenset({"one", "two", "three", "four", "five", "six", "seven", "eight",
                           "nine", "ten", "twelve", "twenty", "hundred", "thousand", "half",
                           "twice", "thrice", "double", "triple", "dozen", "quarter"})
_OPTION = re.compile(r"^[ \t]*\(?[A-Ja-j][.):]\s", re.MULTILINE)
_QUANTITY = re.compile(r"\b(?:how|what|which|calculate|find|determine)\b[^.?!]*\?\s*$|"
                       r"\b(?:calculate|find|determine)\b[^.?!]*\.?\s*$")


#: Characters of a prompt's start searched for its task (the instruction comes first).
TASK_SCAN_CHARS = 2_000
#: Characters of a prompt's end searched for a word problem's final question.
QUESTION_SCAN_CHARS = 300
#: Characters searched for answer options and quantities.
FORMAT_SCAN_CHARS = 8_000


def task_type(prompt: str) -> str:
    """The prompt's task type (a key of :data:`TASK_PRIORS`), from its first
    :data:`TASK_SCAN_CHARS` characters."""
    head = prompt[:TASK_SCAN_CHARS].lower()
    words = head.translate(_SPACES).split()
    present = set(words)
    joined = f" {' '.join(words)} "
    for name, vocabulary, phrases in _TASKS:
        if not present.isdisjoint(vocabulary) or any(p in joined for p in phrases):
            return name
        if name == "math" and (_has_digit(head) or not head.isascii()) and _ARITHMETIC.search(head):
            return name
        if name == "code" and ("```" in head or "c++" in head):
            return name
    return "open" if _OPEN.search(head) else "other"


def _has_digit(text: str) -> bool:
    """Whether ``text`` holds an ASCII digit (ten substring tests: cheaper than a regex)."""
    return any(d in text for d in "0123456789")


def _material(prompt: str) -> float:
    extra = max(math.log1p(len(prompt)) - math.log1p(MATERIAL_FREE_CHARS), 0.0)
    return extra + min(prompt.count("\n"), 4) / 4


def exam_format(prompt: str) -> bool:
    """Whether ``prompt`` looks like MMLU (two or more option lines) or a GSM8K word
    problem (one paragraph, two or more quantities, a final question or
    "calculate/find" instruction)."""
    text = prompt[:FORMAT_SCAN_CHARS]
    if "\n" in text and len(_OPTION.findall(text)) >= 2:  # two option lines need a newline
        return True
    text = text.strip().lower()
    if "\n" in text or "<br>" in text or _QUANTITY.search(text[-QUESTION_SCAN_CHARS:]) is None:
        return False
    quantities = len(_DIGITS.findall(text))
    return quantities >= 2 or quantities + sum(
        w in _NUMBER_WORDS for w in text.translate(_SPACES).split()) >= 2


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

    def predictions(self, prompts: Sequence[str], models: int, weak: int,
                    strong: int) -> np.ndarray:
        """``(n, models)`` per-model predictions for prompts the prior scores: the strong
        column is :meth:`strong_need`, the weak one its complement, so that
        ``(1 + p_strong - p_weak) / 2`` is the need; other columns 0.5 (no information).
        The learned heads are not consulted: outside the gate they are not trusted."""
        out = np.full((len(prompts), models), 0.5)
        for i, prompt in enumerate(prompts):
            need = self.strong_need(prompt)
            out[i, strong], out[i, weak] = need, 1.0 - need
        return out

    def strong_need(self, prompt: str) -> float:
        """P(strong model needed) for one prompt, in [0.05, 0.95]."""
        score = TASK_PRIORS[task_type(prompt)] - MATERIAL_SLOPE * _material(prompt)
        return min(max(score, 0.05), 0.95)
