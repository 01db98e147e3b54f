"""The quality / strong-call plot of RouteLLM's ``evaluate.py`` (``generate_results``), one
panel per dataset: router curve (mean over folds, +/- std band), random routing, oracle,
and the always-weak / always-strong lines.

Drawn on a matplotlib ``Figure`` with the Agg canvas directly (no ``pyplot``, so no global
backend switch or figure registry); matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from modelmix.errors import require_extra
from modelmix.eval._report import CURVE_GRID, EvalReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["plot_reports"]

_PCT = 100.0


def _panel(ax: Axes, report: EvalReport) -> None:
    x = np.asarray(CURVE_GRID) * _PCT
    unit = _PCT if report.quality_is_share else 1.0  # % correct, or grades as they are
    router = report.methods["router"]
    mean = np.asarray(router.quality_mean) * unit
    label = f"router (APGR {router.apgr.fmt(digits=3)})"
    ax.plot(x, mean, color="tab:blue", linewidth=2, label=label)
    if router.quality_std is not None:
        std = np.asarray(router.quality_std) * unit
        ax.fill_between(x, mean - std, mean + std, color="tab:blue", alpha=0.2,
                        label="router ± 1 std over folds")
    rnd = report.methods["random"]
    ax.plot(x, np.asarray(rnd.quality_mean) * unit, color="tab:gray", linestyle=":",
            label=f"random, mean of 10 seeds (APGR {rnd.apgr.mean:.3f})")
    oracle = report.methods["oracle"]
    ax.plot(x, np.asarray(oracle.quality_mean) * unit, color="tab:green", linestyle="-.",
            label=f"oracle (APGR {oracle.apgr.mean:.3f})")
    ax.axhline(report.q_weak.mean * unit, color="grey", linestyle="--",
               label=f"weak: {report.weak_model}")
    ax.axhline(report.q_strong.mean * unit, color="red", linestyle="--",
               label=f"strong: {report.strong_model}")
    how = (f"{report.folds}-fold CV by prompt" if report.protocol == "cv"
           else "held-out table")
    ax.set_title(f"{report.dataset} ({report.n_prompts} prompts, {how})")
    ax.set_xlabel("Strong model calls (%)")
    ax.set_ylabel("Quality (% correct)" if report.quality_is_share else "Mean score")
    ax.set_xlim(0, 100)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize="small")


def plot_reports(reports: Sequence[EvalReport], path: str | Path) -> Path:
    """Write a PNG with one panel per report to ``path``; returns the path.

    Quality is the percentage of good answers for True/False (0-1) tables, and the mean
    score as it is for grades (e.g. 1-10).
    """
    require_extra("matplotlib", "eval", "evaluation plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not reports:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(7.5 * len(reports), 5.5), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(reports), squeeze=False)[0]
    for ax, report in zip(axes, reports, strict=True):
        _panel(ax, report)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
