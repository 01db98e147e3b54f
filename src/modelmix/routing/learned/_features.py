"""Lexical features of a prompt: cheap, language-agnostic counts that track difficulty.

Every feature is a float computed from the raw text with regular expressions, so the
same function serves training and scoring. The learner standardises them (mean/std
from the training data, stored in the artifact).

:data:`LEXICAL_FEATURES` defines each feature; :func:`lexical_features` computes the
same numbers faster (it is on the gateway's hot path): each text is scanned once for
what several features share (words, option lines, character classes), and a regular
expression is skipped when a substring it cannot match without is absent (e.g. no
``__`` means no blank). Texts that are not ASCII take the defining functions' path
wherever case-insensitive or Unicode matching could differ.
tests/test_router_hot_path.py checks both agree on every prompt of the routing tables.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence

import numpy as np

__all__ = ["LEXICAL_FEATURES", "lexical_features", "reference_lexical_features"]

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


#: ASCII bytes that are not letters / not upper case / not digits (``bytes.translate``
#: deletes them, leaving a count of the others at C speed).
_NOT_ALPHA = bytes(c for c in range(128) if not chr(c).isalpha())
_NOT_UPPER = bytes(c for c in range(128) if not chr(c).isupper())
_NOT_DIGIT = bytes(c for c in range(128) if not chr(c).isdigit())
#: Substrings without which a pattern cannot match (case-sensitive patterns).
_NEGATION_WORDS = ("NOT", "EXCEPT", "LEAST", "FALSE", "INCORRECT", "never", "cannot")
_CODE_MARKS = ("{", "}", ";", "==", "->", "```", "def", "return", "print")
_MATH_ASCII = ("=", "+", "*", "/", "^", "<", ">", "$", "\\")


def _any_in(subs: Sequence[str], text: str) -> bool:
    return any(s in text for s in subs)


def _ascii_counts(text: str) -> tuple[int, int, int]:
    """(letters, upper-case letters, digits) of an ASCII text."""
    raw = text.encode("ascii")
    return (len(raw.translate(None, _NOT_ALPHA)), len(raw.translate(None, _NOT_UPPER)),
            len(raw.translate(None, _NOT_DIGIT)))


def _ascii_gated(text: str, digits: int) -> tuple[float, float, float, float]:
    """(log_numbers, log_math_symbols, percent, fraction) of an ASCII text, each regex
    run only when a character or word it needs is present."""
    low = text.lower()
    numbers = _log1p(len(_NUMBER.findall(text))) if digits else 0.0
    math_ = _log1p(len(_MATH.findall(text))) if _any_in(_MATH_ASCII, text) else 0.0
    percent = (float(bool(_PERCENT.search(text))) if "%" in text or "percent" in low
               else 0.0)
    fraction = (float(bool(_FRACTION.search(text)))
                if "/" in text or _any_in(("half", "third", "quarter"), low) else 0.0)
    return numbers, math_, percent, fraction


def _lexical_row(text: str) -> list[float]:
    """The :data:`LEXICAL_FEATURES` of ``text`` (the same values, computed faster)."""
    n = len(text)
    words = _WORD.findall(text)
    opts = _options(text)
    if text.isascii():
        letters, upper, digits = _ascii_counts(text)
        numbers, math_, percent, fraction = _ascii_gated(text, digits)
        upper_ratio = upper / letters if letters else 0.0
        digit_ratio = digits / n if n else 0.0
        non_ascii = 0.0
    else:
        numbers = _log1p(len(_NUMBER.findall(text)))
        math_ = _log1p(len(_MATH.findall(text)))
        percent = float(bool(_PERCENT.search(text)))
        fraction = float(bool(_FRACTION.search(text)))
        upper_ratio, digit_ratio = _uppercase_ratio(text), _digit_ratio(text)
        non_ascii = _non_ascii(text)
    return [
        _log1p(n), _log1p(len(words)), _log1p(text.count("\n")),
        _log1p(len(_SENTENCE.findall(text))), numbers, digit_ratio, math_,
        _log1p(len(opts)),
        _log1p(sum(len(o) for o in opts) / len(opts)) if opts else 0.0,
        float(bool(_NEGATION.search(text))) if _any_in(_NEGATION_WORDS, text) else 0.0,
        _log1p(len(_CODE.findall(text))) if _any_in(_CODE_MARKS, text) else 0.0,
        _log1p(text.count("?")),
        float("__" in text),  # _BLANK: two or more underscores
        percent,
        float(bool(_MONEY.search(text))) if "$" in text else 0.0,
        fraction, upper_ratio,
        sum(len(w) for w in words) / len(words) if words else 0.0,
        non_ascii,
    ]


def lexical_features(texts: Sequence[str], structure: bool = False) -> np.ndarray:
    """Raw lexical features, shape ``(len(texts), len(LEXICAL_FEATURES))``, float32; with
    ``structure`` the :data:`~._structure.STRUCTURE_FEATURES` follow as more columns."""
    out = np.empty((len(texts), len(LEXICAL_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = _lexical_row(text)
    if structure:
        from modelmix.routing.learned._structure import structure_features

        out = np.hstack([out, structure_features(texts)])
    return out


def reference_lexical_features(texts: Sequence[str]) -> np.ndarray:
    """:func:`lexical_features` (without structure) computed by the defining functions
    of :data:`LEXICAL_FEATURES`, one by one: the specification the fast path is tested
    against."""
    out = np.empty((len(texts), len(LEXICAL_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = [fn(text) for _, fn in LEXICAL_FEATURES]
    return out
