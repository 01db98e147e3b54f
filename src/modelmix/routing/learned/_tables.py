"""Reading per-prompt outcome tables and prompt files (CSV or JSONL).

An outcome table has a prompt column plus one column per model holding correctness
(True/False, yes/no, 1/0) or a numeric score. Other columns are ignored, except an
optional domain column (``subject`` by default, as in MMLU) that the router uses to
learn task/domain features. Files are read with the standard library only.

Three shapes are understood:

* **correctness** (RouteLLM's MMLU/GSM8K): True/False per model, read as 1/0.
* **preference** (AlpacaEval): per model the probability that a judge preferred its
  answer over a reference model's, in [0, 1]; the reference's own column is a constant
  0.5 (a tie with itself). It is kept as a model column, unscaled, and named as the
  table's :attr:`OutcomeTable.reference`, so a router can weigh "send it to the
  reference" against the others on the same scale.
* **grades** (e.g. MT-Bench 1-10): numbers beyond [0, 1] are min-max scaled to [0, 1]
  over all model columns of the file together (a 1-10 file graded 1..10 becomes
  ``(g - 1) / 9``), so a higher grade stays better and the columns stay comparable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.routing.learned._rows import RouterDataError, prompt_of, read_prompts, read_rows
from modelmix.routing.learned._shape import near_range_cells, reference_column

__all__ = ["MIN_TRAIN_ROWS", "OutcomeTable", "RouterDataError", "check_trainable", "header_of",
           "model_columns", "outcome_value", "prompt_of", "read_outcome_tables",
           "read_prompts", "read_rows"]

#: Fewest rows with an outcome that ``router train`` fits a router on: below it a fit
#: (and any cross-validation fold) says nothing about routing.
MIN_TRAIN_ROWS = 10

# No single letters: an answer-key column (A-J) would read as outcomes.
_TRUE = frozenset({"true", "yes", "correct"})
_FALSE = frozenset({"false", "no", "incorrect", "wrong"})
_MISSING = frozenset({"", "nan", "null", "none", "n/a", "na", "-"})
_ID_COLUMNS = frozenset({"id", "idx", "index", "uid", "question_id", "prompt_id", "row"})


@dataclass(frozen=True)
class OutcomeTable:
    """Outcomes of several models on the same prompts.

    Attributes:
        prompts: ``n`` prompt texts.
        model_names: the ``m`` model columns, in file order.
        outcomes: ``(n, m)`` float64 in [0, 1] (correct = 1); NaN where a model has no
            outcome. Numeric scores outside [0, 1] are min-max scaled per file.
        domains: per prompt, the domain column's value, else the file's stem (``mmlu``).
        sources: per prompt, the file's stem, used for per-dataset reporting.
        reference: a preference table's reference model
            (:func:`~modelmix.routing.learned._shape.reference_column`),
            else None.
        domain_column: the domain column when some file had it, else None (domains
            are then the file stems).
        scaled: whether some file's numeric grades were min-max scaled to [0, 1].
        ignored: columns left out because no row had an outcome in them (all empty),
            named by :func:`~modelmix.routing.learned._shape.describe_table`.
    """

    prompts: tuple[str, ...]
    model_names: tuple[str, ...]
    outcomes: np.ndarray
    domains: tuple[str, ...]
    sources: tuple[str, ...]
    reference: str | None = None
    domain_column: str | None = None
    scaled: bool = False
    ignored: tuple[str, ...] = ()


def _cell(value: Any) -> tuple[bool, float | None]:
    """``(ok, value)``: ok when ``value`` is an outcome or empty; the value is 1/0 for
    True/False (and yes/no, correct/wrong...), the number for a finite number, None when
    empty (null, "", NaN: no outcome)."""
    if isinstance(value, bool):
        return True, float(value)
    if value is None:
        return True, None
    text = str(value).strip().lower()
    if text in _TRUE:
        return True, 1.0
    if text in _FALSE:
        return True, 0.0
    if text in _MISSING:
        return True, None
    try:
        number = float(text)
    except ValueError:
        return False, None
    if math.isnan(number):
        return True, None
    if math.isinf(number):
        return False, None
    return True, number


def outcome_value(value: Any, *, where: str) -> float | None:
    """An outcome cell as a number: True/False (yes/no, 1/0, correct/wrong) as 1/0, a
    finite number as itself; None for an empty cell (empty, null, NaN: no outcome).

    Raises:
        RouterDataError: anything else, such as ``maybe`` or ``inf``; ``where`` (file,
            row, column) starts the message.
    """
    ok, number = _cell(value)
    if not ok:
        raise RouterDataError(f"{where}: {value!r} is not True/False or a finite number")
    return number


def header_of(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Column names in first-seen order over all rows (JSONL rows may omit keys)."""
    return list(dict.fromkeys(k for r in rows for k in r))


def _is_id(col: str) -> bool:
    """Index and id columns: pandas' unnamed index, ``id``, ``*_id`` and the like."""
    name = col.strip().lower()
    return (not name or name.startswith("unnamed:") or name in _ID_COLUMNS
            or name.endswith("_id"))


def model_columns(path: Path | str, rows: Sequence[dict[str, Any]],
                  skip: Sequence[str] = ("prompt", "subject")) -> list[str]:
    """The model columns of an outcome table: columns with at least one outcome cell
    (True/False or a number), except ``skip``, ``*_response`` and id / index columns;
    text columns are left out.

    Raises:
        RouterDataError: such a column also has a cell that is not an outcome (a typo in
            a model column, or a text column that happens to hold ``yes``), naming it; or
            columns of numbers beyond 0-1 (ids, answers?) next to True/False columns.
    """
    binary: list[str] = []
    graded: dict[str, list[float]] = {}
    for col in header_of(rows):
        if col in skip or col.endswith("_response") or _is_id(col):
            continue
        cells = [_cell(r.get(col)) for r in rows]
        values = [v for ok, v in cells if ok and v is not None]
        if not values:
            _refuse_non_finite(path, col, rows)
            continue
        bad = next((i for i, (ok, _) in enumerate(cells) if not ok), None)
        if bad is not None:
            raise RouterDataError(
                f"{path}: row {bad + 1}, column {col!r}: {rows[bad].get(col)!r} is not "
                "True/False or a finite number (name the model columns with --models if "
                f"{col!r} is not one)")
        if all(v in (0.0, 1.0) for v in values):
            binary.append(col)
        else:
            graded[col] = values
    beyond = [c for c, values in graded.items() if not all(0.0 <= v <= 1.0 for v in values)]
    if binary and beyond:
        raise RouterDataError(
            f"{path}: column(s) {beyond} hold numbers beyond 0-1 next to True/False "
            f"column(s) {binary}; if they are not model scores (ids, answers), name the "
            "model columns with --models")
    return [c for c in header_of(rows) if c in binary or c in graded]


def _non_finite(value: Any) -> bool:
    """Whether ``value`` is a number that is infinite (JSON ``1e999``, CSV ``inf``)."""
    if isinstance(value, bool):
        return False
    try:
        return math.isinf(float(value))
    except (TypeError, ValueError):
        return False


def _refuse_non_finite(path: Path | str, col: str, rows: Sequence[dict[str, Any]]) -> None:
    """Refuse a column with no outcome whose filled cells are all infinite numbers: a
    model column overflowed, not a text column to leave out."""
    filled = [(i, r.get(col)) for i, r in enumerate(rows, 1) if _cell(r.get(col)) != (True, None)]
    if filled and all(_non_finite(v) for _, v in filled):
        row, value = filled[0]
        raise RouterDataError(f"{path}: row {row}, column {col!r}: {value!r} is not a finite "
                              f"number, and no cell of {col!r} is (name the model columns "
                              "with --models if it is not one)")


def _empty_columns(rows: Sequence[dict[str, Any]], header: Sequence[str],
                   skip: Sequence[str]) -> list[str]:
    """Columns (not ``skip``, ids or responses) with no value in any row."""
    return [c for c in header if c not in skip and not c.endswith("_response")
            and not _is_id(c) and all(_cell(r.get(c)) == (True, None) for r in rows)]


def _refuse_near_range(path: Path, columns: dict[str, list[float]]) -> None:
    """Refuse a preference table with a few cells outside [0, 1]
    (:func:`~modelmix.routing.learned._shape.near_range_cells`), naming them."""
    cells = near_range_cells(columns)
    if cells:
        shown = ", ".join(f"row {r} column {c!r} = {v:g}" for r, c, v in cells[:5])
        more = f" and {len(cells) - 5} more" if len(cells) > 5 else ""
        raise RouterDataError(
            f"{path}: reads as a preference table (one column is 0.5 throughout) but "
            f"{len(cells)} cell(s) lie outside 0-1: {shown}{more}; fix them (grades would "
            "be min-max scaled and the reference column lost)")


def _scale_grades(columns: dict[str, list[float]]) -> bool:
    """Min-max scale a file's outcomes to [0, 1] in place when any lies outside (a 1-10
    grade), over all its model columns together; True/False files stay 0/1. Per file,
    so one file of grades does not squeeze another's True/False. True when it scaled."""
    values = [v for col in columns.values() for v in col if math.isfinite(v)]
    if not values:
        return False
    lo, hi = min(values), max(values)
    if lo >= 0.0 and hi <= 1.0:
        return False
    for col in columns.values():
        col[:] = [(v - lo) / (hi - lo if hi > lo else 1.0) for v in col]
    return True


@dataclass
class _Part:
    prompts: list[str]
    columns: dict[str, list[float]]
    domains: list[str]
    source: str
    scaled: bool = False
    has_domain: bool = False
    ignored: list[str] = field(default_factory=list)


def _read_part(path: Path, prompt_column: str, domain_column: str | None,
               models: Sequence[str] | None) -> _Part:
    rows = read_rows(path)
    header = header_of(rows)
    prompts = [prompt_of(row, prompt_column, where=f"{path}: row {i}",
                         hint="; use --prompt-column") for i, row in enumerate(rows, 1)]
    skip = [prompt_column, *([domain_column] if domain_column else [])]
    cols = list(models) if models else model_columns(path, rows, skip)
    missing = [c for c in cols if c not in header]
    if missing:
        raise RouterDataError(f"{path}: no column(s) {missing}")
    if not cols:
        raise RouterDataError(f"{path}: no model outcome columns (True/False or numeric) "
                              f"besides {prompt_column!r}")
    columns: dict[str, list[float]] = {}
    for col in cols:
        values = [outcome_value(r.get(col), where=f"{path}: row {i}, column {col!r}")
                  for i, r in enumerate(rows, 1)]
        columns[col] = [math.nan if v is None else v for v in values]
    _refuse_near_range(path, columns)
    scaled = _scale_grades(columns)
    stem = path.stem
    has_domain = domain_column is not None and domain_column in header
    domains = [str(r.get(domain_column) or stem) if has_domain and domain_column else stem
               for r in rows]
    ignored = [] if models else _empty_columns(rows, header, skip)
    return _Part(prompts, columns, domains, stem, scaled, has_domain, ignored)


def read_outcome_tables(
    paths: Sequence[Path | str],
    *,
    prompt_column: str = "prompt",
    domain_column: str | None = "subject",
    models: Sequence[str] | None = None,
) -> OutcomeTable:
    """Read and concatenate outcome tables; model columns are matched by name.

    Args:
        paths: CSV/TSV/JSONL/JSON files.
        prompt_column: the prompt text column.
        domain_column: optional per-row domain label (e.g. MMLU's ``subject``).
        models: model columns to use; default: every column whose cells are all
            booleans or numbers.

    Raises:
        RouterDataError: unreadable input, no model columns, a bad outcome value.
    """
    if not paths:
        raise RouterDataError("no outcome files given")
    parts = [_read_part(Path(p), prompt_column, domain_column, models) for p in paths]
    names = list(dict.fromkeys(c for part in parts for c in part.columns))
    blocks = []
    for part in parts:
        nan = [math.nan] * len(part.prompts)
        blocks.append(np.array([part.columns.get(c, nan) for c in names], dtype=np.float64).T)
    outcomes = np.vstack(blocks)
    return OutcomeTable(
        prompts=tuple(p for part in parts for p in part.prompts),
        model_names=tuple(names),
        outcomes=outcomes,
        domains=tuple(d for part in parts for d in part.domains),
        sources=tuple(part.source for part in parts for _ in part.prompts),
        reference=reference_column(names, outcomes),
        domain_column=domain_column if any(part.has_domain for part in parts) else None,
        scaled=any(part.scaled for part in parts),
        ignored=tuple(c for c in dict.fromkeys(c for part in parts for c in part.ignored)
                      if c not in names),
    )


def check_trainable(table: OutcomeTable) -> None:
    """Refuse a table too small to train on.

    Raises:
        RouterDataError: fewer than :data:`MIN_TRAIN_ROWS` rows with some outcome.
    """
    rows = int(np.isfinite(table.outcomes).any(axis=1).sum()) if table.outcomes.size else 0
    if rows < MIN_TRAIN_ROWS:
        raise RouterDataError(f"only {rows} row(s) with an outcome; training needs at least "
                              f"{MIN_TRAIN_ROWS}")
