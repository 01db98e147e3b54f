"""Pair tables: per prompt, how well a weak and a strong model answered (an outcome table
narrowed to the routed pair).

The layout is RouteLLM's (``routellm/evals``): a ``prompt`` column, one column per model
holding ``True``/``False`` (answered correctly) or a numeric score, optionally a
``subject`` column (MMLU) and ``<model>_response`` columns (GSM8K) with each answer's text;
as CSV/TSV, or as JSON/JSONL objects with the same keys (``modelmix router
export-feedback`` writes such JSONL, with null where a model has no outcome).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from modelmix.routing.learned._tables import (
    RouterDataError,
    header_of,
    model_columns,
    outcome_value,
    prompt_of,
    read_rows,
)

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
_RESPONSE_SUFFIX = "_response"


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
        skipped_rows: rows of the file left out because one of the two outcomes was
            missing (empty, null, NaN: sparse tables such as exported feedback).
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
    skipped_rows: int = 0

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


def _pick_pair(path: Path, rows: Sequence[dict[str, Any]], header: Sequence[str],
               weak: str | None, strong: str | None, prompt: str) -> tuple[str, str]:
    """The (weak, strong) columns: as named, else from the detected model columns."""
    for given in (weak, strong):
        if given is not None and (given not in header or given == prompt):
            raise RouterDataError(f"{path}: no model column {given!r}; columns are "
                                  f"{[c for c in header if c != prompt]}")
    if weak is not None and strong is not None:
        if weak == strong:
            raise RouterDataError(f"{path}: weak and strong model are both {weak!r}")
        return weak, strong
    models = model_columns(path, rows, skip=(prompt, "subject"))
    others = [m for m in models if m not in (weak, strong)]
    if len(models) != 2 and (weak is None) == (strong is None):
        raise RouterDataError(f"{path}: {len(models)} model columns {models}; name the "
                              "pair with --weak and --strong (weak= / strong= in Python)")
    if not others:
        raise RouterDataError(f"{path}: no second model column besides {weak or strong!r}")
    if weak is not None:
        return weak, others[0]
    if strong is not None:
        return others[0], strong
    return models[0], models[1]  # reordered by accuracy in load_outcome_table


def _read_rows(path: Path, prompt: str) -> tuple[list[str], list[dict[str, Any]]]:
    """Column names (in first-seen order) and rows of an outcome table (the reader
    ``router train`` uses); it must have the ``prompt`` column."""
    rows = read_rows(path)
    header = header_of(rows)
    if prompt not in header:
        raise RouterDataError(f"{path}: no {prompt!r} column (columns: {header}); use "
                              "--prompt-column")
    return header, rows


def _text(value: object) -> str:
    return "" if value is None else value if isinstance(value, str) else json.dumps(value)


def _response_tokens(rows: Sequence[dict[str, Any]], header: Sequence[str],
                     model: str) -> tuple[int, ...] | None:
    """Estimated tokens of ``model``'s answers, or None without a response column."""
    col = model + _RESPONSE_SUFFIX
    return tuple(estimate_tokens(_text(r.get(col))) for r in rows) if col in header else None


def load_outcome_table(path: str | Path, *, weak: str | None = None,
                       strong: str | None = None, name: str | None = None,
                       prompt_column: str = "prompt") -> PairTable:
    """Read a RouteLLM-style outcome table (CSV, TSV, JSON or JSONL rows).

    ``prompt_column`` names the prompt text column. Rows where the weak or the strong
    outcome is missing are skipped (counted in ``skipped_rows``). With exactly two model
    columns and no ``weak``/``strong`` given, the model with the lower mean score is
    taken as weak.

    Raises:
        RouterDataError: an unreadable or malformed table (the same reader and messages
            as ``router train``).

    Example::

        table = load_outcome_table("shared/data/routellm/mmlu.csv")
        table.weak_model  # 'mistralai/Mixtral-8x7B-Instruct-v0.1'
    """
    path = Path(path)
    header, rows = _read_rows(path, prompt_column)
    w, s = _pick_pair(path, rows, header, weak, strong, prompt_column)
    values = [(outcome_value(r.get(w), where=f"{path}: row {i}, column {w!r}"),
               outcome_value(r.get(s), where=f"{path}: row {i}, column {s!r}"))
              for i, r in enumerate(rows, 1)]
    keep = [i for i, (a, b) in enumerate(values) if a is not None and b is not None]
    if not keep:
        raise RouterDataError(f"{path}: no row has outcomes for both {w!r} and {s!r}")
    rows = [rows[i] for i in keep]
    wv = [float(values[i][0] or 0.0) for i in keep]
    sv = [float(values[i][1] or 0.0) for i in keep]
    if weak is None and strong is None and sum(wv) > sum(sv):
        w, s, wv, sv = s, w, sv, wv

    return PairTable(
        name=name or path.stem,
        prompts=tuple(prompt_of(r, prompt_column, where=f"{path}: row {i + 1}")
                      for i, r in zip(keep, rows, strict=True)),
        weak=tuple(wv), strong=tuple(sv), weak_model=w, strong_model=s,
        subjects=tuple(_text(r.get("subject")) for r in rows) if "subject" in header else None,
        weak_completion_tokens=_response_tokens(rows, header, w),
        strong_completion_tokens=_response_tokens(rows, header, s),
        skipped_rows=len(values) - len(keep),
    )
