"""Question-structure features: the layout of a multiple-choice question and the
quantities of a word problem (``FitOptions.structure``, on by default).

Multiple choice: stem length, option length vs stem and its spread, numeric options,
"all/none of the above", "Statement 1 | Statement 2", "Scenario 1 | 2", True/False or
Wrong/Not wrong option pairs, I./II./III. lists, "which of the following". Word problems:
numbers and distinct quantities in the stem, largest magnitude, decimals, operation words
(times, each, per, total, left, percent ...), quantities with units, formula marks,
sentences. Regular expressions over the raw text, like :mod:`._features`.

:func:`_reference_structure` defines the features; :func:`structure_features` computes
the same values faster (the gateway's hot path), as :mod:`._features` does: a pattern is
run only when a substring it cannot match without is present, word lists are counted
from one scan of the words, and the option statistics of a prompt without options are
constants. Case-insensitive patterns keep the defining path for non-ASCII text.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["STRUCTURE_FEATURES", "reference_structure_features", "structure_features"]

# ``[^\S\n]*``, not ``\s*``: the same lines match, but ``\s*`` would rescan every following
# blank line from each line start (quadratic: 20,000 newlines took 17 s per pattern).
_OPT = re.compile(r"^[^\S\n]*\(?([A-Ja-j])[.):]\s?(.*)$", re.MULTILINE)
_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")
# Matched against stripped option text, so no trailing ``\s*``: with one, the two ``\s*``
# split a run of spaces every way before failing (16,000 characters took 3 s).
_NUMERIC_OPT = re.compile(r"^[\s$€£-]*[\d.,/]+\s*(?:%|[a-zA-Zμ°/^²³]{0,6})?$")
#: Largest number a stem's magnitude feature reads: ``float`` of 309 or more digits is
#: inf, which would make the features (and the router's predictions) NaN.
_MAX_MAGNITUDE = 1e300
_AOTA = re.compile(r"\b(?:all|none|both|neither) of the (?:above|these|following)\b", re.I)
_STATEMENT = re.compile(r"\bStatement 1\b")
_SCENARIO = re.compile(r"\bScenario 1\b")
_TF_OPTS = re.compile(r"^(?:True|False|Wrong|Not wrong)\s*,\s*"
                      r"(?:True|False|Wrong|Not wrong)\s*$", re.I)
_ROMAN = re.compile(r"^[^\S\n]*(?:I{1,3}|IV|V)\.\s", re.MULTILINE)
_OPS = re.compile(r"\b(?:times|twice|thrice|double|triple|half|each|per|every|total|"
                  r"more than|less than|fewer|left|remaining|remain|percent|average|"
                  r"difference|sum|product|ratio|rate|increase|decrease|discount|profit|"
                  r"twice as)\b", re.I)
_UNIT = re.compile(r"\b\d+(?:\.\d+)?\s*(?:kg|g|mg|m|cm|mm|km|s|ms|min|h|hours?|minutes?|"
                   r"seconds?|days?|weeks?|years?|mol|M|J|kJ|N|W|V|A|Hz|K|°C|L|mL|ft|in|"
                   r"miles?|lb|pounds?|dollars?|cents?|%)\b")
_FORMULA = re.compile(r"[=^√∫∑]|\b(?:sin|cos|tan|log|ln|sqrt|lim)\b|\d\s*[*/+\u00d7÷-]\s*\d")
_WHICH = re.compile(r"\bwhich of the following\b", re.I)
_CODE = re.compile(r"[{};]|\bdef\b|\breturn\b|\bfor\s*\(|\bint\b|==")
_PARA = re.compile(r"\n\s*\n")
_SENT = re.compile(r"[.!?](?:\s|$)")


def _magnitudes(nums: list[str]) -> list[float]:
    """Absolute values of the number strings ``float`` can read, capped at
    :data:`_MAX_MAGNITUDE`."""
    vals = []
    for n in nums:
        try:
            vals.append(min(abs(float(n)), _MAX_MAGNITUDE))
        except ValueError:
            pass
    return vals


def _lg(x: float) -> float:
    return math.log1p(max(x, 0.0))


def _reference_structure(text: str) -> list[float]:
    lines = text.splitlines()
    opts = [m.group(2).strip() for m in _OPT.finditer(text)]
    first = next((i for i, line in enumerate(lines) if _OPT.match(line)), len(lines))
    stem = "\n".join(lines[:first])
    stem = stem.replace("Answer:", "")
    olen = np.array([len(o) for o in opts], float) if opts else np.zeros(1)
    nums = [n.replace(",", "") for n in _NUM.findall(stem)]
    vals = _magnitudes(nums)
    numeric_opts = (sum(bool(_NUMERIC_OPT.match(o)) for o in opts) / len(opts)) if opts else 0.0
    q_sent = [s for s in re.split(r"(?<=[.!?])\s+", stem) if s.strip()]
    return [
        _lg(len(stem)),                                   # stem length
        _lg(olen.mean()) - _lg(len(stem)),                # option vs stem length
        float(olen.std() / (olen.mean() + 1.0)),          # option length dispersion
        _lg(olen.max()) - _lg(olen.min()),                # longest / shortest option
        numeric_opts,                                     # options are numbers
        float(bool(_AOTA.search(text))),                  # all/none of the above
        float(bool(_STATEMENT.search(text))),             # Statement 1 | Statement 2
        float(bool(_SCENARIO.search(text))),              # Scenario 1 | Scenario 2
        (sum(bool(_TF_OPTS.match(o)) for o in opts) / len(opts)) if opts else 0.0,
        float(len(_ROMAN.findall(text)) >= 2),            # I. II. III. list
        _lg(len(nums)),                                   # numbers in the stem
        _lg(len(set(nums))),                              # distinct quantities
        _lg(max(vals)) if vals else 0.0,                  # largest magnitude
        float(any("." in n for n in nums)),               # decimals
        _lg(len(_OPS.findall(stem))),                     # operation words
        _lg(len(_UNIT.findall(text))),                    # quantities with units
        _lg(len(_FORMULA.findall(text))),                 # formula marks
        float(bool(_WHICH.search(stem))),                 # "which of the following"
        _lg(len(_CODE.findall(text))),                    # code
        _lg(len(_PARA.findall(stem))),                    # passages
        _lg(len(q_sent)),                                 # stem sentences
        float(bool(opts)) * _lg(sum(c.isdigit() for c in " ".join(opts))),  # digits in options
    ]


#: Names of the structure features, in column order.
STRUCTURE_FEATURES = (
    "stem_len", "opt_vs_stem", "opt_len_cv", "opt_len_range", "numeric_opts", "aota",
    "statement", "scenario", "tf_opts", "roman_list", "n_numbers", "n_distinct_numbers",
    "max_magnitude", "decimals", "op_words", "units", "formula", "which_following",
    "code", "paragraphs", "stem_sentences", "option_digits",
)


_WORDS = re.compile(r"\w+")
_SPLIT_SENT = re.compile(r"(?<=[.!?])\s+")
#: For ASCII text, a digit as ``str.isdigit`` and ``\\d`` see it.
_ASCII_DIGIT = re.compile(r"[0-9]")
_MORE_LESS = re.compile(r"\b(?:more than|less than)\b")
#: The one-word alternatives of ``_OPS`` ("twice as" never matches: "twice" comes first).
_OP_WORDS = frozenset({
    "times", "twice", "thrice", "double", "triple", "half", "each", "per", "every", "total",
    "fewer", "left", "remaining", "remain", "percent", "average", "difference", "sum",
    "product", "ratio", "rate", "increase", "decrease", "discount", "profit"})
_FORMULA_WORDS = frozenset({"sin", "cos", "tan", "log", "ln", "sqrt", "lim"})
_CODE_WORDS = frozenset({"def", "return", "int"})
_FOR_CALL = re.compile(r"\bfor\s*\(")


def _code_marks(text: str, words: list[str]) -> int:
    """``len(_CODE.findall(text))`` as a sum over its alternatives, whose matches never
    overlap (``{};=(`` and spaces are not word characters): marks, ``==`` pairs, the
    words def/return/int, and ``for (``."""
    found = sum(text.count(c) for c in "{};") + text.count("==")
    found += sum(w in _CODE_WORDS for w in words)
    if "(" in text and "for" in text:
        found += len(_FOR_CALL.findall(text))
    return found


def _op_words(stem: str) -> int:
    """``len(_OPS.findall(stem))``: for ASCII, words of the lower-cased stem looked up
    in a set (``\\b...\\b`` on words is whole-word equality) plus "more/less than"."""
    if not stem.isascii():
        return len(_OPS.findall(stem))
    low = stem.lower()
    found = sum(w in _OP_WORDS for w in _WORDS.findall(low))
    if "more than" in low or "less than" in low:
        found += len(_MORE_LESS.findall(low))
    return found


def _formula_marks(text: str, words: list[str]) -> int:
    """``len(_FORMULA.findall(text))``, skipped when it cannot match: no ``=^√∫∑``, none
    of its function names, and no digit (ASCII)."""
    if (text.isascii() and not any(c in text for c in "=^") and _FORMULA_WORDS.isdisjoint(words)
            and not _ASCII_DIGIT.search(text)):
        return 0
    return len(_FORMULA.findall(text))


def _ci_search(pattern: re.Pattern[str], needle: str, text: str) -> float:
    """``float(bool(pattern.search(text)))`` for a case-insensitive pattern that needs
    ``needle`` (lower case): skipped for ASCII text without it."""
    if text.isascii() and needle not in text.lower():
        return 0.0
    return float(bool(pattern.search(text)))


def _option_stats(opts: list[str], stem: str) -> list[float]:
    """Option-length statistics (stem length first); constants without options."""
    if not opts:  # the defining code's np.zeros(1): mean = std = max = min = 0
        return [_lg(len(stem)), _lg(0.0) - _lg(len(stem)), 0.0, 0.0, 0.0]
    olen = np.array([len(o) for o in opts], float)
    numeric = sum(bool(_NUMERIC_OPT.match(o)) for o in opts) / len(opts)
    return [_lg(len(stem)), _lg(olen.mean()) - _lg(len(stem)),
            float(olen.std() / (olen.mean() + 1.0)), _lg(olen.max()) - _lg(olen.min()),
            numeric]


def _numbers(stem: str) -> tuple[list[str], list[float]]:
    nums = [n.replace(",", "") for n in _NUM.findall(stem)] if not (
        stem.isascii() and not _ASCII_DIGIT.search(stem)) else []
    return nums, _magnitudes(nums)


def _structure(text: str) -> list[float]:
    """:func:`_reference_structure`'s values, computed faster (see the module doc)."""
    lines = text.splitlines()
    opts = [m.group(2).strip() for m in _OPT.finditer(text)]
    first = next((i for i, line in enumerate(lines) if _OPT.match(line)), len(lines))
    stem = "\n".join(lines[:first]).replace("Answer:", "")
    words = _WORDS.findall(text)
    nums, vals = _numbers(stem)
    q_sent = [p for p in _SPLIT_SENT.split(stem) if p.strip()]
    code = _code_marks(text, words)
    return [
        *_option_stats(opts, stem),
        _ci_search(_AOTA, " of the ", text),
        float(bool(_STATEMENT.search(text))) if "Statement 1" in text else 0.0,
        float(bool(_SCENARIO.search(text))) if "Scenario 1" in text else 0.0,
        (sum(bool(_TF_OPTS.match(o)) for o in opts) / len(opts)) if opts else 0.0,
        float(len(_ROMAN.findall(text)) >= 2) if "I." in text or "V." in text else 0.0,
        _lg(len(nums)), _lg(len(set(nums))), _lg(max(vals)) if vals else 0.0,
        float(any("." in n for n in nums)),
        _lg(_op_words(stem)),
        _lg(len(_UNIT.findall(text))) if not text.isascii() or _ASCII_DIGIT.search(
            text) else 0.0,
        _lg(_formula_marks(text, words)),
        _ci_search(_WHICH, "which of the following", stem),
        _lg(code),
        _lg(len(_PARA.findall(stem))),
        _lg(len(q_sent)),
        float(bool(opts)) * _lg(sum(c.isdigit() for c in " ".join(opts))) if opts else 0.0,
    ]


def structure_features(texts: Sequence[str]) -> np.ndarray:
    """Raw structure features, ``(len(texts), len(STRUCTURE_FEATURES))``, float32."""
    out = np.empty((len(texts), len(STRUCTURE_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = _structure(text)
    return out


def reference_structure_features(texts: Sequence[str]) -> np.ndarray:
    """:func:`structure_features` by the defining code (the specification the fast path
    is tested against)."""
    out = np.empty((len(texts), len(STRUCTURE_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = _reference_structure(text)
    return out
