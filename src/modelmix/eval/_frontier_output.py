"""Presenting a many-model frontier: a Rich table, a markdown table, ``results.json`` and
``plot.png`` (the same file names as the pair evaluation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.table import Table

from modelmix.eval._frontier import quality_at_cost
from modelmix.eval._frontier_eval import FrontierReport
from modelmix.eval._frontier_plot import plot_frontier
from modelmix.eval._output import PLOT_FILE, RESULTS_FILE

__all__ = ["frontier_markdown", "frontier_rows", "render_frontier_table", "write_frontier"]

_RULE_NAMES = {"utility": "max quality - lambda*cost", "threshold": "cheapest meeting tau"}


def _header(report: FrontierReport) -> tuple[str, ...]:
    cols = ["model", "USD/1k req", "quality"]
    for rule in report.sweeps:
        name = _RULE_NAMES.get(rule, rule)
        cols += [f"{name}: USD/1k at this quality", f"{name}: quality at this cost"]
    return (*cols, "best pair: quality at this cost", "random mixing: quality at this cost")


def _usd(value: float | None) -> str:
    return "not reached" if value is None else f"${value:.3f}"


def _q(value: float | None) -> str:
    return "unaffordable" if value is None else f"{value:.3f}"


def frontier_rows(report: FrontierReport) -> list[tuple[str, ...]]:
    """One row per single model, by cost: its point; per rule, what routing among all
    pays for its quality (and as a share of its cost) and reaches at its cost; the
    quality the best pair and random mixing of single models reach at its cost."""
    per = report.headlines["per_model"]
    rows: list[tuple[str, ...]] = []
    for p in sorted(report.singles, key=lambda p: p.usd_per_1k):
        h = per[p.label]
        row = [p.label, f"${p.usd_per_1k:.3f}", f"{p.quality:.3f}"]
        for rule in report.sweeps:
            r = h["routing"][rule]
            paid = _usd(r["usd_per_1k_at_its_quality"])
            if r["cost_share_at_its_quality"] is not None:
                paid += f" ({r['cost_share_at_its_quality'] * 100:.0f}%)"
            row += [paid, _q(r["quality_at_its_cost"])]
        rows.append((*row, _q(h["pair_quality_at_its_cost"]),
                     _q(quality_at_cost(report.hull, p.usd_per_1k))))
    return rows


def _summary(report: FrontierReport) -> list[str]:
    h = report.headlines
    at95 = h["at_95pct_of_best"]
    cheap, dear = report.best_pair
    lines = []
    for rule in report.sweeps:
        share = at95[rule]["cost_share_of_best"]
        reach = ("not reached" if share is None
                 else f"${at95[rule]['usd_per_1k']:.3f}/1k, {share * 100:.0f}% of its cost")
        single, mix = h["gaps"][rule]["best_single_model"], h["gaps"][rule]["random_mixing"]
        lines.append(
            f"{_RULE_NAMES.get(rule, rule)}: budget score {report.rule_scores[rule]:.3f}; "
            f"95% of {h['best_single']}'s quality ({at95['quality']:.3f}): {reach}; vs the "
            f"best single model a budget affords: worst {single['min']:+.3f} (at "
            f"${single['min_at_usd_per_1k']:.3f}/1k), mean {single['mean']:+.3f}; vs random "
            f"mixing: worst {mix['min']:+.3f} (at ${mix['min_at_usd_per_1k']:.3f}/1k), mean "
            f"{mix['mean']:+.3f}")
    lines.append(f"best pair: {cheap} -> {dear}, budget score "
                 f"{report.pair_scores[f'{cheap} -> {dear}']:.3f}; random mixing "
                 f"{report.hull_score:.3f} (budget score: mean best quality over log-spaced "
                 "budgets)")
    return lines


def render_frontier_table(report: FrontierReport) -> Table:
    """A Rich table of :func:`frontier_rows` with the summary as caption."""
    table = Table(title=f"{report.dataset}: routing among {len(report.models)} models "
                        f"({report.n_prompts} prompts)", caption="\n".join(_summary(report)))
    for i, name in enumerate(_header(report)):
        table.add_column(name, justify="left" if i == 0 else "right")
    for row in frontier_rows(report):
        table.add_row(*row)
    return table


def frontier_markdown(report: FrontierReport) -> str:
    """:func:`frontier_rows` as a markdown table, then the summary lines."""
    header = _header(report)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join(["---"] + ["---:"] * (len(header) - 1)) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in frontier_rows(report)]
    return "\n".join([*lines, "", *(f"- {s}" for s in _summary(report))])


def write_frontier(report: FrontierReport, out_dir: str | Path, *,
                   extra: dict[str, Any] | None = None, results_name: str = RESULTS_FILE,
                   plot_name: str = PLOT_FILE, title: str = "",
                   quality_label: str = "Mean quality") -> tuple[Path, Path]:
    """Write the report's JSON and plot into ``out_dir``; returns the two paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    doc = {"frontier": report.to_dict(), **(extra or {})}
    results = out / results_name
    results.write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    plot = plot_frontier(report, out / plot_name, title=title, quality_label=quality_label)
    return results, plot
