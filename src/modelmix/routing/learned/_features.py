"""Lexical features of a prompt: cheap, language-agnostic counts that track difficulty.

Every feature is a float computed from the raw text with regular expressions, so the
same function serves training and scoring. The learner standardises them (mean/std
from the training data, stored in the artifact).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["LEXICAL_FEATURES", "lexical_features"]

_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
_OPTION = re.compile(r"^\s*\(?[A-Ja-j][.):]\s", re.MULTILINE)
_MATH = re.compile(r"[=+*/^<>√π∑∫]|\\frac|\\sqrt|\$")
_NEGATION = re.compile(r"\b(?:NOT|EXCEPT|LEAST|FALSE|INCORRECT|never|cannot)\b")
_CODE = re.compile(r"[{};]|\bdef\b|\breturn\b|\bprint\b|==|->|```")
_WORD = re.compile(r"\w+")
_SENTENCE = re.compile(r"[.!?](?:\s|$)")
_BLANK = re.compile(r"_{2,}")
_PERCENT = re.compile(r"%|\bpercent\b", re.IGNORECASE)
_MONEY = re.compile(r"\$\s?\d")
_FRACTION = re.compile(r"\b\d+/\d+\b|\bhalf\b|\bthird\b|\bquarter\b", re.IGNORECASE)


def _log1p(x: float) -> float:
    return math.log1p(x)


def _options(text: str) -> list[str]:
    """Answer options of a multiple-choice prompt (lines like ``A. ...``), if any."""
    return [line for line in text.splitlines() if _OPTION.match(line)]


def _option_mean_len(text: str) -> float:
    opts = _options(text)
    return _log1p(sum(len(o) for o in opts) / len(opts)) if opts else 0.0


def _uppercase_ratio(text: str) -> float:
    letters = [c for c in text if c.isalpha()]
    return sum(c.isupper() for c in letters) / len(letters) if letters else 0.0


def _mean_word_len(text: str) -> float:
    words = _WORD.findall(text)
    return sum(len(w) for w in words) / len(words) if words else 0.0


def _non_ascii(text: str) -> float:
    return sum(ord(c) > 127 for c in text) / len(text) if text else 0.0


def _digit_ratio(text: str) -> float:
    return sum(c.isdigit() for c in text) / len(text) if text else 0.0


#: (name, function of the text); the order is the feature order in the artifact.
LEXICAL_FEATURES: tuple[tuple[str, Callable[[str], float]], ...] = (
    ("log_chars", lambda t: _log1p(len(t))),
    ("log_words", lambda t: _log1p(len(_WORD.findall(t)))),
    ("log_lines", lambda t: _log1p(t.count("\n"))),
    ("log_sentences", lambda t: _log1p(len(_SENTENCE.findall(t)))),
    ("log_numbers", lambda t: _log1p(len(_NUMBER.findall(t)))),
    ("digit_ratio", _digit_ratio),
    ("log_math_symbols", lambda t: _log1p(len(_MATH.findall(t)))),
    ("log_options", lambda t: _log1p(len(_options(t)))),
    ("option_mean_len", _option_mean_len),
    ("negation", lambda t: float(bool(_NEGATION.search(t)))),
    ("log_code_marks", lambda t: _log1p(len(_CODE.findall(t)))),
    ("question_marks", lambda t: _log1p(t.count("?"))),
    ("blank", lambda t: float(bool(_BLANK.search(t)))),
    ("percent", lambda t: float(bool(_PERCENT.search(t)))),
    ("money", lambda t: float(bool(_MONEY.search(t)))),
    ("fraction", lambda t: float(bool(_FRACTION.search(t)))),
    ("uppercase_ratio", _uppercase_ratio),
    ("mean_word_len", _mean_word_len),
    ("non_ascii", _non_ascii),
)


def lexical_features(texts: Sequence[str], structure: bool = False) -> np.ndarray:
    """Raw lexical features, shape ``(len(texts), len(LEXICAL_FEATURES))``, float32; with
    ``structure`` the :data:`~._structure.STRUCTURE_FEATURES` follow as more columns."""
    out = np.empty((len(texts), len(LEXICAL_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = [fn(text) for _, fn in LEXICAL_FEATURES]
    if structure:
        from modelmix.routing.learned._structure import structure_features

        out = np.hstack([out, structure_features(texts)])
    return out
