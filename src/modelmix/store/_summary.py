"""Usage summaries: per-group totals and latency percentiles, computed in Python.

Percentiles use **linear interpolation between closest ranks**, numpy's default
(``numpy.percentile(..., method="linear")``, Hyndman & Fan type 7): for sorted values
``x[0..n-1]`` and ``q`` in [0, 100], take rank ``h = (n - 1) * q / 100`` and return
``x[floor(h)] + (h - floor(h)) * (x[floor(h) + 1] - x[floor(h)])``. Computing them here
rather than in SQL keeps SQLite and PostgreSQL in exact agreement.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["GroupStats", "SummaryRow", "build_rows", "parse_window", "percentile"]

_UNITS_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def percentile(values: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100) of ``values`` by linear interpolation (numpy's default).

    Returns None for no values. Raises ValueError when ``q`` is outside [0, 100].

    Example::

        percentile([10, 20, 30, 40], 50)  # 25.0
        percentile([10, 20, 30, 40], 95)  # 38.5
    """
    if not 0 <= q <= 100:
        raise ValueError(f"percentile must be in [0, 100], got {q}")
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (rank - low) * (ordered[high] - ordered[low])


def parse_window(text: str) -> float:
    """A duration such as ``90s``, ``30m``, ``1h``, ``24h``, ``7d``, ``2w`` in seconds.

    Raises:
        ValueError: not a positive number followed by one of s, m, h, d, w.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhdw])\s*", text.lower())
    if match is None or float(match.group(1)) <= 0:
        raise ValueError(f"invalid duration {text!r}; expected e.g. 30m, 1h, 24h, 7d")
    return float(match.group(1)) * _UNITS_S[match.group(2)]


@dataclass(slots=True)
class GroupStats:
    """Accumulates one group's totals (from SQL) and timings (ms, successful rows), the
    timings of requests and of system steps apart."""

    requests: int = 0
    errors: int = 0
    steps: int = 0
    step_errors: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    ttfts_ms: list[float] = field(default_factory=list)
    step_latencies_ms: list[float] = field(default_factory=list)
    step_ttfts_ms: list[float] = field(default_factory=list)

    def add_timing(self, latency_ms: float, ttft_ms: float | None, *, step: bool = False) -> None:
        """Add one successful row's timings: a request's, or a system step's."""
        latencies, ttfts = ((self.step_latencies_ms, self.step_ttfts_ms) if step
                            else (self.latencies_ms, self.ttfts_ms))
        latencies.append(latency_ms)
        if ttft_ms is not None:
            ttfts.append(ttft_ms)

    def timings(self) -> tuple[list[float], list[float]]:
        """Latencies and TTFTs the percentiles cover: the requests', or the steps' when the
        group has no requests (``--by step``, a deployment only systems call)."""
        if self.requests:
            return self.latencies_ms, self.ttfts_ms
        return self.step_latencies_ms, self.step_ttfts_ms


@dataclass(frozen=True, slots=True)
class SummaryRow:
    """One group of a usage summary.

    Attributes:
        group: grouping field -> value (None where the request had none, e.g. no
            deployment was called); empty for a total row.
        requests / errors: client requests (rows without ``parent_id``: ordinary requests
            and the envelope rows of systems of models) and how many failed; a failure is a
            record with an error or status >= 400.
        steps / step_errors: rows written by the steps of systems of models (``parent_id``
            set) and how many failed.
        cost_usd: summed cost in USD (envelope rows carry none, so nothing counts twice).
        p50_latency_ms / p95_latency_ms / p50_ttft_ms: over successful requests (TTFT
            over successful streams), or over successful steps in a group without
            requests; None when there were none.
    """

    group: dict[str, str | None]
    requests: int
    errors: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    p50_latency_ms: float | None
    p95_latency_ms: float | None
    p50_ttft_ms: float | None
    steps: int = 0
    step_errors: int = 0

    def to_dict(self) -> dict[str, Any]:
        """Flat JSON-ready dict: the group fields first, then the numbers."""
        return {
            **self.group,
            "requests": self.requests,
            "errors": self.errors,
            "steps": self.steps,
            "step_errors": self.step_errors,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost_usd": self.cost_usd,
            "p50_latency_ms": self.p50_latency_ms,
            "p95_latency_ms": self.p95_latency_ms,
            "p50_ttft_ms": self.p50_ttft_ms,
        }


def build_rows(
    group_by: tuple[str, ...], stats: dict[tuple[str | None, ...], GroupStats]
) -> list[SummaryRow]:
    """Turn accumulated groups into rows, most expensive first (then most requests)."""
    rows = [_row(dict(zip(group_by, key, strict=True)), s) for key, s in stats.items()]
    rows.sort(key=lambda r: (-r.cost_usd, -r.requests, -r.steps,
                             [v or "" for v in r.group.values()]))
    return rows


def _row(group: dict[str, str | None], s: GroupStats) -> SummaryRow:
    latencies, ttfts = s.timings()
    return SummaryRow(
        group=group,
        requests=s.requests,
        errors=s.errors,
        prompt_tokens=s.prompt_tokens,
        completion_tokens=s.completion_tokens,
        cost_usd=s.cost_usd,
        p50_latency_ms=percentile(latencies, 50),
        p95_latency_ms=percentile(latencies, 95),
        p50_ttft_ms=percentile(ttfts, 50),
        steps=s.steps,
        step_errors=s.step_errors,
    )
