"""Summary statistics over cross-validation folds."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["Stat", "finite_or_none"]


@dataclass(frozen=True, slots=True)
class Stat:
    """Mean and sample standard deviation (``ddof=1``) of one number over folds.

    ``std`` is None with fewer than two values; ``mean`` is NaN if any value is NaN.
    """

    mean: float
    std: float | None
    values: tuple[float, ...]

    @classmethod
    def of(cls, values: Sequence[float]) -> Stat:
        arr = np.asarray(values, dtype=np.float64)
        std = float(arr.std(ddof=1)) if arr.size >= 2 else None
        return cls(mean=float(arr.mean()), std=std, values=tuple(float(v) for v in arr))

    def fmt(self, scale: float = 1.0, digits: int = 3, unit: str = "") -> str:
        """``"0.512 ± 0.021"``-style text; ``"n/a"`` for NaN."""
        if not math.isfinite(self.mean):
            return "n/a"
        text = f"{self.mean * scale:.{digits}f}{unit}"
        if self.std is not None and math.isfinite(self.std):
            text += f" ± {self.std * scale:.{digits}f}{unit}"
        return text

    def to_dict(self) -> dict[str, Any]:
        std = None if self.std is None else finite_or_none(self.std)
        return {"mean": finite_or_none(self.mean), "std": std,
                "per_fold": [finite_or_none(v) for v in self.values]}


def finite_or_none(value: float) -> float | None:
    """``value``, or None for NaN / infinity (JSON has no such numbers)."""
    return value if math.isfinite(value) else None
