"""What shape an outcome table has: a preference table's reference column, and one line
saying what was read (see :mod:`._tables` for the shapes understood)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from modelmix.routing.learned._tables import OutcomeTable

__all__ = ["NEAR_RANGE_SHARE", "describe_table", "near_range_cells", "reference_column"]

#: A file with a constant-0.5 column whose other cells lie outside [0, 1] for at most this
#: share of them is read as a preference table with a few broken cells (refused, naming
#: them), not as grades to min-max scale: scaling would squeeze the real probabilities and
#: drop the reference column. A 1-10 grade file has ~90% of its cells above 1.
NEAR_RANGE_SHARE = 0.05


def reference_column(model_names: Sequence[str], outcomes: np.ndarray) -> str | None:
    """The reference model of a preference table: the one column whose known outcomes
    are all exactly 0.5 (a model tied with itself), when the other columns vary in
    [0, 1]; else None. ``outcomes`` is ``(n, M)`` as in :class:`OutcomeTable`."""
    if outcomes.size == 0 or len(model_names) < 2:
        return None
    known = np.isfinite(outcomes)
    half = [j for j in range(outcomes.shape[1])
            if known[:, j].any() and np.all(outcomes[known[:, j], j] == 0.5)]
    if len(half) != 1:
        return None
    others = np.delete(outcomes, half[0], axis=1)
    vals = others[np.isfinite(others)]
    if vals.size == 0 or vals.min() < 0.0 or vals.max() > 1.0 or vals.min() == vals.max():
        return None
    return model_names[half[0]]


def _half_column(columns: dict[str, list[float]]) -> str | None:
    """The one column whose known values are all exactly 0.5, else None."""
    half = [c for c, values in columns.items()
            if any(math.isfinite(v) for v in values)
            and all(v == 0.5 for v in values if math.isfinite(v))]
    return half[0] if len(half) == 1 else None


def near_range_cells(columns: dict[str, list[float]]) -> list[tuple[int, str, float]]:
    """The cells that keep a file from reading as a preference table: ``(row, column,
    value)`` (row 1 = the first data row) of the values outside [0, 1], when one column
    is a constant 0.5 and those values are at most :data:`NEAR_RANGE_SHARE` of the other
    columns' known cells; else ``[]`` (in range, a grade file, or no 0.5 column)."""
    half = _half_column(columns)
    if half is None or len(columns) < 2:
        return []
    known = 0
    out: list[tuple[int, str, float]] = []
    for col, values in columns.items():
        if col == half:
            continue
        for row, v in enumerate(values, 1):
            if math.isfinite(v):
                known += 1
                if not 0.0 <= v <= 1.0:
                    out.append((row, col, v))
    return out if out and len(out) <= NEAR_RANGE_SHARE * known else []


def describe_table(table: OutcomeTable) -> str:
    """One line saying what was read: prompts, models, the shape of the outcomes
    (correctness, preference vs a reference, grades) and the domain column."""
    shape = (f"preference vs reference {table.reference!r} (its column is 0.5)"
             if table.reference else "grades min-max scaled to 0-1" if table.scaled
             else "outcomes in 0-1")
    domain = (f"domain column {table.domain_column!r} "
              f"({len(set(table.domains))} values)" if table.domain_column
              else "no domain column (domain = file name)")
    ignored = (f"; ignored column(s) {list(table.ignored)} (no outcome in any row)"
               if table.ignored else "")
    return (f"read {len(table.prompts):,} prompts, {len(table.model_names)} models "
            f"{list(table.model_names)}; {shape}; {domain}{ignored}")
