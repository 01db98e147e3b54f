"""Presenting a cascade evaluation: ``cascade.md`` (a markdown table), ``cascade.json``
(every number, per fold too) and ``cascade.png`` (quality against strong calls and
against cost), plus a Rich table for the terminal."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from rich.table import Table

from modelmix.errors import require_extra
from modelmix.eval._cascade import CascadeReport
from modelmix.eval._report import CURVE_GRID
from modelmix.metrics import Stat, finite_or_none

if TYPE_CHECKING:
    from matplotlib.axes import Axes

__all__ = ["CASCADE_JSON", "CASCADE_MARKDOWN", "CASCADE_PLOT", "cascade_markdown",
           "cascade_table", "cascade_to_dict", "plot_cascade", "write_cascade_results"]

CASCADE_JSON = "cascade.json"
CASCADE_MARKDOWN = "cascade.md"
CASCADE_PLOT = "cascade.png"
_TARGETS = (0.5, 0.8)
_STYLE = {"cascade": ("tab:orange", "-"), "router": ("tab:blue", "-"),
          "random": ("tab:gray", ":"), "oracle": ("tab:green", "-.")}


def _label(report: CascadeReport, name: str) -> str:
    return {"cascade": f"cascade ({report.verifier})",
            "router": f"router, prompt only ({report.router})",
            "random": "random (10 seeds)",
            "oracle": "oracle (routing)"}.get(name, name)


def _cost_cell(report: CascadeReport, name: str, stat: Stat) -> str:
    if not math.isfinite(stat.mean):
        return "n/a"
    usd = report.usd_per_1k(name, stat.mean)
    share = usd / (1000 * report.cost.strong_usd) if report.cost.strong_usd else math.nan
    return f"${usd:.3f} ({share * 100:.0f}%)"


def _rows(report: CascadeReport) -> list[list[str]]:
    rows = []
    for name, summary in report.methods.items():
        cells = [_label(report, name), summary.apgr.fmt(digits=3)]
        cells += [summary.cpt[t].fmt(scale=100, digits=1, unit="%") for t in _TARGETS]
        cells += [_cost_cell(report, name, summary.cpt[t]) for t in _TARGETS]
        rows.append(cells)
    return rows


_HEADER = ["method", "APGR", "CPT(50%)", "CPT(80%)", "USD/1k req at CPT(50%) (share of "
           "all-strong)", "USD/1k req at CPT(80%)"]


def _notes(report: CascadeReport) -> list[str]:
    c = report.cost
    weak_q, strong_q = (q.fmt(100, 1, "%") for q in (report.q_weak, report.q_strong))
    notes = [
        f"{report.dataset}: {report.n_prompts} prompts, weak {report.weak_model} "
        f"({weak_q}), strong {report.strong_model} ({strong_q}); {report.folds}-fold CV split "
        f"by prompt (seed {report.seed}), mean ± std over folds.",
        f"Verifier AUC for wrong weak answers: {report.verifier_metrics['auc'].fmt()}.",
        f"Cost per request: weak ${c.weak_usd * 1000:.3f}/1k ({c.weak_price}), strong "
        f"${c.strong_usd * 1000:.3f}/1k ({c.strong_price}); {c.prompt_tokens:.0f} prompt, "
        f"{c.weak_completion_tokens:.0f} weak and {c.strong_completion_tokens:.0f} strong "
        "completion tokens (characters / 4 of the table's texts). A cascade pays the weak "
        "call on every prompt: weak + f * strong; routers pay (1 - f) * weak + f * strong.",
    ]
    if report.skipped_rows:
        notes.append(f"{report.skipped_rows} rows without both outcomes left out.")
    return notes


def cascade_markdown(report: CascadeReport) -> str:
    """A markdown table (methods x APGR, CPT, cost) with the notes that read it."""
    lines = ["| " + " | ".join(_HEADER) + " |", "|" + " --- |" * len(_HEADER)]
    lines += ["| " + " | ".join(r) + " |" for r in _rows(report)]
    return "\n".join([*lines, "", *_notes(report)]) + "\n"


def cascade_table(report: CascadeReport) -> Table:
    """The same as :func:`cascade_markdown`, as a Rich table for the terminal."""
    table = Table(title=f"{report.dataset}: cascade {report.weak_model} -> "
                        f"{report.strong_model}", caption="\n".join(_notes(report)),
                  show_lines=True)
    for i, name in enumerate(_HEADER):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in _rows(report):
        table.add_row(*row)
    return table


def _stat(stat: Stat) -> dict[str, Any]:
    return stat.to_dict()


def cascade_to_dict(report: CascadeReport) -> dict[str, Any]:
    """JSON-ready dict of a report (NaN written as null)."""
    methods = {}
    for name, summary in report.methods.items():
        entry = summary.to_dict()
        entry["usd_per_1k_at_cpt"] = {
            f"{round(t * 100)}%": finite_or_none(report.usd_per_1k(name, summary.cpt[t].mean))
            if math.isfinite(summary.cpt[t].mean) else None for t in summary.cpt}
        methods[name] = entry
    return {"dataset": report.dataset, "weak_model": report.weak_model,
            "strong_model": report.strong_model, "n_prompts": report.n_prompts,
            "skipped_rows": report.skipped_rows, "folds": report.folds, "seed": report.seed,
            "verifier": report.verifier, "router": report.router,
            "q_weak": _stat(report.q_weak), "q_strong": _stat(report.q_strong),
            "verifier_metrics": {k: _stat(v) for k, v in report.verifier_metrics.items()},
            "cost_model": report.cost.to_dict(),
            "cost_rule": {"cascade": "weak_usd + f * strong_usd",
                          "router, random, oracle": "(1 - f) * weak_usd + f * strong_usd"},
            "methods": methods}


def _panels(ax_calls: Axes, ax_cost: Axes, report: CascadeReport) -> None:
    x = np.asarray(CURVE_GRID)
    for name, summary in report.methods.items():
        color, style = _STYLE.get(name, ("black", "-"))
        quality = np.asarray(summary.quality_mean) * 100
        label = f"{_label(report, name)}, APGR {summary.apgr.mean:.3f}"
        ax_calls.plot(x * 100, quality, color=color, linestyle=style, label=label)
        cost = [report.usd_per_1k(name, f) for f in x]
        ax_cost.plot(cost, quality, color=color, linestyle=style, label=_label(report, name))
    for ax in (ax_calls, ax_cost):
        ax.axhline(report.q_weak.mean * 100, color="grey", linestyle="--",
                   label=f"weak: {report.weak_model}")
        ax.axhline(report.q_strong.mean * 100, color="red", linestyle="--",
                   label=f"strong: {report.strong_model}")
        ax.set_ylabel("Quality (% correct)")
        ax.grid(True, alpha=0.3)
    ax_calls.set_xlabel("Strong model calls (% of prompts)")
    ax_calls.set_xlim(0, 100)
    ax_calls.set_title(f"{report.dataset} ({report.n_prompts} prompts, "
                       f"{report.folds}-fold CV by prompt)")
    ax_calls.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")
    ax_cost.set_xlabel("USD per 1k requests (cascade: weak call on every prompt)")
    ax_cost.set_title("Quality against cost")
    ax_cost.legend(loc="upper center", bbox_to_anchor=(0.5, -0.12), fontsize="small")


def plot_cascade(reports: Sequence[CascadeReport], path: str | Path) -> Path:
    """A PNG with two panels per report (quality vs strong calls, quality vs cost)."""
    require_extra("matplotlib", "eval", "evaluation plots")
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    if not reports:
        raise ValueError("nothing to plot")
    fig = Figure(figsize=(15, 7 * len(reports)), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(reports), 2, squeeze=False)
    for row, report in zip(axes, reports, strict=True):
        _panels(row[0], row[1], report)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    return out


def write_cascade_results(reports: Sequence[CascadeReport], out_dir: str | Path,
                          extra: dict[str, Any] | None = None) -> list[Path]:
    """Write ``cascade.json``, ``cascade.md`` and ``cascade.png`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"datasets": [cascade_to_dict(r) for r in reports], **(extra or {})}
    results = out / CASCADE_JSON
    results.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    markdown = out / CASCADE_MARKDOWN
    markdown.write_text("\n".join(cascade_markdown(r) for r in reports), encoding="utf-8")
    return [results, markdown, plot_cascade(reports, out / CASCADE_PLOT)]
