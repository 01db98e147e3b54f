"""Write the generated part of RESULTS.md (between the markers); the rest is hand-written."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["write_report"]

BEGIN = "<!-- generated: begin -->"
END = "<!-- generated: end -->"


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f}"


def _type_table(results: dict[str, Any]) -> list[str]:
    names = list(results)
    header = "| type | gold | " + " | ".join(f"{n} recall | {n} precision" for n in names) + " |"
    lines = [header, "|" + " --- |" * (2 + 2 * len(names))]
    types = sorted({t for r in results.values() for t in r["per_type"]})
    for kind in types:
        cells = []
        gold = 0
        for name in names:
            row = results[name]["per_type"].get(kind, {})
            gold = max(gold, row.get("gold", 0))
            cells += [_fmt(row.get("recall")), _fmt(row.get("precision"))]
        lines.append(f"| {kind} | {gold} | " + " | ".join(cells) + " |")
    return lines


def _summary_table(results: dict[str, Any]) -> list[str]:
    lines = ["| system | structured recall | micro recall | micro precision | FP rate (clean) | "
             "1k chars p50 CPU / wall (ms) | 20k chars p50 CPU / wall (ms) | 20k p95 CPU (ms) | "
             "load avg | corpus time (s) |",
             "|" + " --- |" * 10]
    for name, r in results.items():
        small, large = r["latency"]["1000"], r["latency"]["20000"]
        lines.append(
            f"| {name} | {_fmt(r['structured_recall'])} | {_fmt(r['micro']['recall'])} | "
            f"{_fmt(r['micro']['precision'])} | {_fmt(r['fp_rate_clean'])} | "
            f"{small['cpu_p50_ms']:.2f} / {small['p50_ms']:.2f} | "
            f"{large['cpu_p50_ms']:.2f} / {large['p50_ms']:.2f} | {large['cpu_p95_ms']:.2f} | "
            f"{large['load_avg_1m']} | {r['corpus_seconds']} |")
    return lines


def _tag_table(results: dict[str, Any]) -> list[str]:
    names = list(results)
    lines = ["| form | " + " | ".join(names) + " |", "|" + " --- |" * (1 + len(names))]
    tags = sorted({t for r in results.values() for t in r["per_tag_recall"]})
    for tag in tags:
        lines.append(f"| {tag} | " + " | ".join(
            _fmt(results[n]["per_tag_recall"].get(tag)) for n in names) + " |")
    return lines


def write_report(path: Path, meta: dict[str, Any], results: dict[str, Any]) -> None:
    body = [BEGIN, "",
            f"Corpus: {meta['sensitive']} sensitive + {meta['clean']} clean texts, "
            f"{meta['gold_entities']} gold entities. Machine: {meta['cpus']} CPUs "
            f"({meta['machine']}), Python {meta['python']}.", "",
            "### Summary", "", *_summary_table(results), "",
            "### Per type (recall over gold spans; precision over predicted spans)", "",
            *_type_table(results), "",
            "### Recall by form (all gold entities in texts with that tag)", "",
            *_tag_table(results), "", END]
    text = path.read_text("utf-8") if path.exists() else f"# Guard benchmark\n\n{BEGIN}\n{END}\n"
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    path.write_text(head + "\n".join(body) + tail, "utf-8")
