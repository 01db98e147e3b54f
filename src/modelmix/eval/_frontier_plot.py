"""The many-model plot: quality against USD per 1k requests (log axis) for routing among
all models (each rule's sweep and Pareto points), the best pair, random mixing of single
models (their upper hull) and every single model, labelled.

Drawn on a matplotlib ``Figure`` with the Agg canvas (no ``pyplot``), as
:mod:`modelmix.eval._plot` does; matplotlib is imported only when a plot is made.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING

from modelmix.errors import require_extra
from modelmix.eval._frontier import Point, pareto

if TYPE_CHECKING:
    from matplotlib.axes import Axes

    from modelmix.eval._frontier_eval import FrontierReport

__all__ = ["plot_frontier"]


def _xy(points: list[Point]) -> tuple[list[float], list[float]]:
    return [p.usd_per_1k for p in points], [p.quality for p in points]


def _segments(points: list[Point], per_segment: int = 40) -> tuple[list[float], list[float]]:
    """Points joined by straight lines in linear cost (random mixing), sampled densely so
    the log axis shows the real curve rather than a straight chord."""
    xs, ys = [], []
    for a, b in itertools.pairwise(points):
        for k in range(per_segment):
            f = k / per_segment
            xs.append(a.usd_per_1k + f * (b.usd_per_1k - a.usd_per_1k))
            ys.append(a.quality + f * (b.quality - a.quality))
    if points:
        xs.append(points[-1].usd_per_1k)
        ys.append(points[-1].quality)
    return xs, ys


_RULES = {"utility": ("tab:blue", "max predicted quality - lambda*cost"),
          "threshold": ("tab:purple", "cheapest predicted >= tau")}


def _draw_rules(ax: Axes, report: FrontierReport) -> None:
    for rule, points in report.sweeps.items():
        color, name = _RULES.get(rule, ("tab:green", rule))
        ax.plot(*_xy(sorted(points, key=lambda p: p.usd_per_1k)), color=color, linewidth=1,
                alpha=0.3)
        ax.plot(*_xy(pareto(points)), color=color, linewidth=2.2, marker=".",
                label=f"routing among all {len(report.models)}, {name}: Pareto points "
                      f"(score {report.rule_scores[rule]:.3f})")


def _draw(ax: Axes, report: FrontierReport, quality_label: str) -> None:
    _draw_rules(ax, report)
    cheap, dear = report.best_pair
    ax.plot(*_xy(report.best_pair_curve), color="tab:orange", linewidth=1.8, marker="s",
            markersize=3, label=f"best pair: {cheap} -> {dear} (deciles)")
    ax.plot(*_segments(report.hull), color="tab:gray", linestyle="--",
            label="random mixing of single models (upper hull, linear in cost; score "
                  f"{report.hull_score:.3f})")
    xs, ys = _xy(report.singles)
    ax.scatter(xs, ys, color="black", zorder=5, s=22, label="single models")
    for p in report.singles:
        ax.annotate(p.label, (p.usd_per_1k, p.quality), textcoords="offset points",
                    xytext=(4, 3), fontsize=7)
    ax.set_xscale("log")
    ax.set_xlabel("USD per 1,000 requests (log scale)")
    ax.set_ylabel(quality_label)
    ax.grid(True, which="both", alpha=0.25)
    ax.legend(loc="upper left", fontsize="small")


def plot_frontier(report: FrontierReport, path: str | Path, *, title: str = "",
                  quality_label: str = "Mean quality") -> Path:
    """Write the frontier PNG to ``path``; returns the path."""
    require_extra("matplotlib", "eval", "evaluation plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(10, 6.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    _draw(ax, report, quality_label)
    ax.set_title(title or f"{report.dataset}: routing among {len(report.models)} models "
                          f"({report.n_prompts} prompts)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out
