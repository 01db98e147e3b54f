"""The scaling benchmark's RESULTS.md block, from the JSON-ready report ``run.py`` builds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["END", "START", "markdown", "write_markdown"]

START = "<!-- generated:start -->"
END = "<!-- generated:end -->"


def _throughput(runs: list[dict[str, Any]]) -> list[str]:
    lines = ["| replicas | upstream delay | key | req/s | x k=1 | p50 ms | p99 ms | "
             "gateways' CPU (100 = 1 core) | gateway CPU ms / request | other CPU | errors |",
             "| ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    first = {(r["delay_ms"], r["key"]): r["rps"] for r in runs if r["k"] == 1}
    for r in sorted(runs, key=lambda x: (x["delay_ms"], x["key"], x["k"])):
        base = first.get((r["delay_ms"], r["key"]))
        ratio = f"{r['rps'] / base:.2f}" if base else "-"
        key = "none (master)" if r["key"] == "none" else "budget + RPM (Redis)"
        lines.append(
            f"| {r['k']} | {r['delay_ms']} ms | {key} | {r['rps']:.0f} | {ratio} | "
            f"{r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {r['gateway_cpu_pct']:.0f}% | "
            f"{r['gateway_cpu_ms_per_request']:.2f} | "
            f"{r['other_cpu_pct']:.0f}% | {r['errors'] + r['non_2xx']} |")
    return lines


def _exactness(rows: list[dict[str, Any]]) -> list[str]:
    lines = ["| replicas | shared state | budget: successes (exact) | spend / budget USD | "
             "overshoot USD | RPM: successes / limit | RPM error | usage rows / requests | "
             "lost rows | 503 state_unavailable (Redis up) | revoked key refused by replica 1 "
             "after |",
             "| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for e in sorted(rows, key=lambda x: (not x["redis"], x["k"])):
        exact = round(e["budget_usd"] / 0.001)
        lines.append(
            f"| {e['k']} | {'Redis' if e['redis'] else 'none (per process)'} | "
            f"{e['budget_successes']} ({exact}) | {e['spent_usd']:.6f} / "
            f"{e['budget_usd']:.6f} | {max(e['overshoot_usd'], 0.0):.6f} | "
            f"{e['rpm_successes']} / {e['rpm']} | {e['rpm_error']:+d} | "
            f"{e['rows']} / {2 * e['requests']} | {e['lost_rows']} | "
            f"{e.get('unavailable', 0)} | {_seconds(e.get('revoked_elsewhere_s'))} |")
    return lines


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} s"


def markdown(report: dict[str, Any]) -> str:
    """The generated block (between START and END)."""
    m = report["machine"]
    host = (f"{m['cpu_model']}, {m['cpus_usable']} usable CPUs of {m['cpus_online']}, "
            f"{m['ram_gib']} GiB, {m['os']}, kernel {m['kernel']}, Python {m['python']}, "
            f"{m['nginx']}, {m['wrk']}, {report['engines']['redis'].split(' sha=')[0]}, "
            f"{report['engines']['postgresql']}")
    out = [START, "",
           f"Run {report['date']} on modelmix {report['modelmix_commit']}: "
           f"`{report['command']}`.", "",
           f"Host: {host}.", "",
           f"Settings: {report['settings']}.", "",
           "### Throughput", "", *_throughput(report["runs"]), "",
           "### Exactness under load", "", *_exactness(report["exactness"]), "", END]
    return "\n".join(out) + "\n"


def write_markdown(path: Path, block: str) -> None:
    """Replace the generated block of ``path`` (create the file around it if missing)."""
    text = path.read_text() if path.exists() else (
        "# Replica scaling benchmark\n\n" + START + "\n" + END + "\n")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + block.rstrip("\n") + tail)
