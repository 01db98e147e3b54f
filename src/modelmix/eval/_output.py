"""Presenting evaluation results: a Rich table per dataset, ``results.json`` and ``plot.png``."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.table import Table

from modelmix.eval._plot import plot_reports
from modelmix.eval._report import EvalReport
from modelmix.metrics import Stat

__all__ = ["PLOT_FILE", "RESULTS_FILE", "render_table", "write_results"]

RESULTS_FILE = "results.json"
PLOT_FILE = "plot.png"
_LABELS = {"router": "router", "random": "random (10 seeds)", "oracle": "oracle"}


def _cpt_cell(report: EvalReport, stat: Stat) -> str:
    text = stat.fmt(scale=100, digits=1, unit="%")
    at = report.cost_at(stat.mean)
    if at is not None:
        usd, share = at
        rel = f"{share * 100:.0f}% of strong" if math.isfinite(share) else "strong is free"
        text += f"\n${usd:.3f}/1k req · {rel}"
    return text


def _caption(report: EvalReport) -> str:
    how = (f"{report.folds}-fold CV split by prompt (seed {report.seed}), mean ± std over folds"
           if report.protocol == "cv" else "held-out table, one trained router")
    stats = (report.q_weak, report.q_strong)
    if report.quality_is_share:
        weak, strong = (q.fmt(100, 1, "%") for q in stats)
        lines = [f"{how}; weak {weak}, strong {strong} quality"]
    else:  # numeric grades (an MT-Bench-style 1-10 score), not a share of correct answers
        weak, strong = (q.fmt(1, 2) for q in stats)
        lines = [f"{how}; mean score weak {weak}, strong {strong}"]
    if report.skipped_rows:
        rows = "row" if report.skipped_rows == 1 else "rows"
        lines.append(f"{report.skipped_rows} {rows} without both outcomes left out")
    cost = report.cost
    if cost is not None:
        tokens = "measured" if cost.completion_measured else "assumed"
        lines.append(
            f"cost: {cost.weak_deployment} ${cost.weak_usd * 1000:.3f}/1k req, "
            f"{cost.strong_deployment} ${cost.strong_usd * 1000:.3f}/1k req "
            f"({cost.prompt_tokens:.0f} prompt tokens, {cost.weak_completion_tokens:.0f}/"
            f"{cost.strong_completion_tokens:.0f} completion tokens {tokens}; chars/4)")
    return "\n".join(lines)


def render_table(report: EvalReport) -> Table:
    """A Rich table: per method APGR and CPT(20/50/80%) (strong-call %, ± std over folds)
    with the cost at each CPT point, per 1k requests and as a share of always-strong."""
    table = Table(title=f"{report.dataset}: {report.weak_model} -> {report.strong_model} "
                        f"({report.n_prompts} prompts)", caption=_caption(report),
                  show_lines=True)
    table.add_column("method")
    table.add_column("APGR", justify="right")
    for target in report.methods["router"].cpt:
        table.add_column(f"CPT({target * 100:.0f}%)", justify="right")
    for name, summary in report.methods.items():
        cells = [_cpt_cell(report, s) for s in summary.cpt.values()]
        table.add_row(_LABELS.get(name, name), summary.apgr.fmt(digits=3), *cells)
    return table


def write_results(reports: Sequence[EvalReport], out_dir: str | Path,
                  extra: dict[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``results.json`` (every number, per fold too) and ``plot.png`` to ``out_dir``.

    Returns the two paths.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc: dict[str, Any] = {"datasets": [r.to_dict() for r in reports], **(extra or {})}
    results = out / RESULTS_FILE
    results.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return results, plot_reports(reports, out / PLOT_FILE)
