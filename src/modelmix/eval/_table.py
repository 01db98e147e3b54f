"""Pair tables: per prompt, how well a weak and a strong model answered (an outcome table
narrowed to the routed pair).

The CSV layout is RouteLLM's (``routellm/evals``): a ``prompt`` column, one column per
model holding ``True``/``False`` (answered correctly) or a numeric score, optionally a
``subject`` column (MMLU) and ``<model>_response`` columns (GSM8K) with each answer's text.
"""

from __future__ import annotations

import csv
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from modelmix.errors import ConfigError

__all__ = [
    "CHARS_PER_TOKEN",
    "PairTable",
    "estimate_tokens",
    "load_outcome_table",
    "model_columns",
]

#: Token estimate: about 4 characters of English text per token. SOURCE: OpenAI Help
#: Center, "What are tokens and how to count them?" (rule of thumb, "1 token ~= 4 chars").
#: The tables' models (Mixtral, GPT-4) use different tokenizers; an estimate is all the
#: cost columns need, and it is the same for both models.
CHARS_PER_TOKEN = 4.0

_T = TypeVar("_T")
_RESERVED = ("prompt", "subject")
_RESPONSE_SUFFIX = "_response"
_TRUE = {"true", "1", "yes"}
_FALSE = {"false", "0", "no"}


def estimate_tokens(text: str) -> int:
    """Estimated token count of ``text`` (``ceil(chars / CHARS_PER_TOKEN)``, at least 1)."""
    return max(1, math.ceil(len(text) / CHARS_PER_TOKEN))


@dataclass(frozen=True, slots=True)
class PairTable:
    """Per-prompt outcomes of one weak and one strong model, all sequences of length n.

    Attributes:
        name: label for reports (the file stem, e.g. ``"mmlu"``).
        prompts: the prompt texts.
        weak / strong: per-prompt quality in [0, 1] for a boolean table (1.0 = correct),
            or any numeric score (e.g. MT-Bench 1-10); higher is better.
        weak_model / strong_model: the table's column names of the two models.
        subjects: per-prompt MMLU subject, or None when the table has no ``subject`` column.
        weak_completion_tokens / strong_completion_tokens: estimated tokens of each model's
            response (from ``<model>_response`` columns), or None when the table has none.
    """

    name: str
    prompts: tuple[str, ...]
    weak: tuple[float, ...]
    strong: tuple[float, ...]
    weak_model: str
    strong_model: str
    subjects: tuple[str, ...] | None = None
    weak_completion_tokens: tuple[int, ...] | None = None
    strong_completion_tokens: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        n = len(self.prompts)
        for field in ("weak", "strong", "subjects", "weak_completion_tokens",
                      "strong_completion_tokens"):
            value = getattr(self, field)
            if value is not None and len(value) != n:
                raise ValueError(f"{field} has {len(value)} entries, prompts has {n}")

    def __len__(self) -> int:
        return len(self.prompts)

    def take(self, indices: Sequence[int]) -> PairTable:
        """The rows at ``indices``, in that order (a fold's train or test part)."""
        def pick(values: tuple[_T, ...] | None) -> tuple[_T, ...] | None:
            return None if values is None else tuple(values[i] for i in indices)

        return PairTable(
            name=self.name, prompts=tuple(self.prompts[i] for i in indices),
            weak=tuple(self.weak[i] for i in indices),
            strong=tuple(self.strong[i] for i in indices),
            weak_model=self.weak_model, strong_model=self.strong_model,
            subjects=pick(self.subjects),
            weak_completion_tokens=pick(self.weak_completion_tokens),
            strong_completion_tokens=pick(self.strong_completion_tokens),
        )

    def prompt_tokens(self) -> list[int]:
        """Estimated prompt tokens per row (see :data:`CHARS_PER_TOKEN`)."""
        return [estimate_tokens(p) for p in self.prompts]


def model_columns(header: Sequence[str]) -> list[str]:
    """The model columns of an outcome-table header: all but ``prompt``, ``subject`` and
    ``*_response``, in file order."""
    return [c for c in header if c not in _RESERVED and not c.endswith(_RESPONSE_SUFFIX)]


def _parse_value(raw: str, *, where: str) -> float:
    text = raw.strip().lower()
    if text in _TRUE:
        return 1.0
    if text in _FALSE:
        return 0.0
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {raw!r} is neither True/False nor a number") from None
    if not math.isfinite(value):
        raise ConfigError(f"{where}: {raw!r} is not a finite number")
    return value


def _pick_pair(path: Path, models: list[str], weak: str | None,
               strong: str | None) -> tuple[str, str]:
    for given in (weak, strong):
        if given is not None and given not in models:
            raise ConfigError(f"{path}: no model column {given!r}; columns are {models}")
    if weak is not None and strong is not None:
        if weak == strong:
            raise ConfigError(f"{path}: weak and strong model are both {weak!r}")
        return weak, strong
    others = [m for m in models if m not in (weak, strong)]
    if len(models) != 2 and (weak is None) == (strong is None):
        raise ConfigError(f"{path}: {len(models)} model columns {models}; name the pair "
                          "with weak= and strong=")
    if weak is not None:
        return weak, others[0]
    if strong is not None:
        return others[0], strong
    return models[0], models[1]  # reordered by accuracy in load_outcome_table


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    """Header and rows of an outcome CSV that has a ``prompt`` column and rows."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with path.open(newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise ConfigError(f"{path}: cannot read outcome table: {exc}") from exc
    if "prompt" not in header:
        raise ConfigError(f"{path}: no 'prompt' column (header: {header})")
    if not rows:
        raise ConfigError(f"{path}: no rows")
    return header, rows


def load_outcome_table(path: str | Path, *, weak: str | None = None,
                       strong: str | None = None, name: str | None = None) -> PairTable:
    """Read a RouteLLM-style outcome CSV.

    With exactly two model columns and no ``weak``/``strong`` given, the model with the
    lower mean score is taken as weak. Raises :class:`ConfigError` for an unreadable or
    malformed table.

    Example::

        table = load_outcome_table("shared/data/routellm/mmlu.csv")
        table.weak_model  # 'mistralai/Mixtral-8x7B-Instruct-v0.1'
    """
    path = Path(path)
    header, rows = _read_csv(path)
    w, s = _pick_pair(path, model_columns(header), weak, strong)
    wv = [_parse_value(r[w] or "", where=f"{path} row {i + 2} {w}") for i, r in enumerate(rows)]
    sv = [_parse_value(r[s] or "", where=f"{path} row {i + 2} {s}") for i, r in enumerate(rows)]
    if weak is None and strong is None and sum(wv) > sum(sv):
        w, s, wv, sv = s, w, sv, wv

    def tokens(model: str) -> tuple[int, ...] | None:
        col = model + _RESPONSE_SUFFIX
        return tuple(estimate_tokens(r[col] or "") for r in rows) if col in header else None

    return PairTable(
        name=name or path.stem, prompts=tuple(r["prompt"] or "" for r in rows),
        weak=tuple(wv), strong=tuple(sv), weak_model=w, strong_model=s,
        subjects=tuple(r["subject"] or "" for r in rows) if "subject" in header else None,
        weak_completion_tokens=tokens(w), strong_completion_tokens=tokens(s),
    )
