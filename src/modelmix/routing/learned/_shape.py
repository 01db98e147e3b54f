"""What shape an outcome table has: a preference table's reference column, and one line
saying what was read (see :mod:`._tables` for the shapes understood)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from modelmix.routing.learned._tables import OutcomeTable

__all__ = ["describe_table", "reference_column"]


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


def describe_table(table: OutcomeTable) -> str:
    """One line saying what was read: prompts, models, the shape of the outcomes
    (correctness, preference vs a reference, grades) and the domain column."""
    shape = (f"preference vs reference {table.reference!r} (its column is 0.5)"
             if table.reference else "grades min-max scaled to 0-1" if table.scaled
             else "outcomes in 0-1")
    domain = (f"domain column {table.domain_column!r} "
              f"({len(set(table.domains))} values)" if table.domain_column
              else "no domain column (domain = file name)")
    return (f"read {len(table.prompts):,} prompts, {len(table.model_names)} models "
            f"{list(table.model_names)}; {shape}; {domain}")
