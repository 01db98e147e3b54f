"""Question-structure features: the layout of a multiple-choice question and the
quantities of a word problem (``FitOptions.structure``, on by default).

Multiple choice: stem length, option length vs stem and its spread, numeric options,
"all/none of the above", "Statement 1 | Statement 2", "Scenario 1 | 2", True/False or
Wrong/Not wrong option pairs, I./II./III. lists, "which of the following". Word problems:
numbers and distinct quantities in the stem, largest magnitude, decimals, operation words
(times, each, per, total, left, percent ...), quantities with units, formula marks,
sentences. Regular expressions over the raw text, like :mod:`._features`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

import numpy as np

__all__ = ["STRUCTURE_FEATURES", "structure_features"]

# ``[^\S\n]*``, not ``\s*``: the same lines match, but ``\s*`` would rescan every following
# blank line from each line start (quadratic: 20,000 newlines took 17 s per pattern).
_OPT = re.compile(r"^[^\S\n]*\(?([A-Ja-j])[.):]\s?(.*)$", re.MULTILINE)
_NUM = re.compile(r"-?\d+(?:[.,]\d+)*")
_NUMERIC_OPT = re.compile(r"^[\s$€£-]*[\d.,/]+\s*(?:%|[a-zA-Zμ°/^²³]{0,6})?\s*$")
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


def _lg(x: float) -> float:
    return math.log1p(max(x, 0.0))


def _structure(text: str) -> list[float]:
    lines = text.splitlines()
    opts = [m.group(2).strip() for m in _OPT.finditer(text)]
    first = next((i for i, line in enumerate(lines) if _OPT.match(line)), len(lines))
    stem = "\n".join(lines[:first])
    stem = stem.replace("Answer:", "")
    olen = np.array([len(o) for o in opts], float) if opts else np.zeros(1)
    nums = [n.replace(",", "") for n in _NUM.findall(stem)]
    vals = []
    for n in nums:
        try:
            vals.append(abs(float(n)))
        except ValueError:
            pass
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


def structure_features(texts: Sequence[str]) -> np.ndarray:
    """Raw structure features, ``(len(texts), len(STRUCTURE_FEATURES))``, float32."""
    out = np.empty((len(texts), len(STRUCTURE_FEATURES)), dtype=np.float32)
    for i, text in enumerate(texts):
        out[i] = _structure(text)
    return out
