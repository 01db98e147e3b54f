"""The overhead benchmark's report: machine description, goals, RESULTS.md block.

Works on the JSON-ready dicts ``run.py`` builds (``report["targets"]``).
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["END", "START", "checks", "machine", "markdown", "summary", "write_markdown"]

Targets = dict[str, dict[str, Any]]


def _cmd_output(cmd: list[str]) -> str:
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    return (done.stdout + done.stderr).strip().splitlines()[0] if (
        done.stdout + done.stderr).strip() else "?"


def _versions(python: Path | str, names: list[str], extra_path: Path) -> dict[str, str]:
    code = ("import importlib.metadata as m, json, sys\n"
            "out = {}\n"
            "for n in sys.argv[1:]:\n"
            "    try: out[n] = m.version(n)\n"
            "    except m.PackageNotFoundError: pass\n"
            "print(json.dumps(out))")
    env = {**os.environ, "PYTHONPATH": str(extra_path)}
    try:
        done = subprocess.run([str(python), "-c", code, *names], capture_output=True,
                              text=True, timeout=60, env=env, check=True)
    except (OSError, subprocess.SubprocessError):
        return {}
    found: dict[str, str] = json.loads(done.stdout)
    return found


def machine(usable_cpus: int, litellm_python: Path, extra_path: Path) -> dict[str, Any]:
    """CPU, memory, OS and the package versions of both environments."""
    cpuinfo = Path("/proc/cpuinfo").read_text()
    model = next((ln.split(":", 1)[1].strip() for ln in cpuinfo.splitlines()
                  if ln.startswith("model name")), platform.processor() or "?")
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])
    os_name = "?"
    with contextlib.suppress(OSError):
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    ours = ["modelmix", "uvicorn", "uvloop", "httptools", "starlette", "aiohttp", "orjson",
            "pydantic", "pydantic-core", "sqlalchemy"]
    peer = ["litellm", "uvicorn", "fastapi", "httpx", "aiohttp", "pydantic"]
    lite_py = litellm_python
    return {
        "cpu_model": model,
        "cpus_online": os.cpu_count(),
        "cpus_usable": usable_cpus,
        "ram_gib": round(mem_kb / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": os_name,
        "python": platform.python_version(),
        "nginx": _cmd_output(["nginx", "-v"]),
        "wrk": _cmd_output(["wrk", "-v"]).split(" [")[0],
        "modelmix_packages": _versions(sys.executable, ours, extra_path),
        "litellm_packages": _versions(lite_py, peer, extra_path) if lite_py.exists() else {},
    }


def _load(targets: Targets, name: str, conc: int) -> dict[str, Any] | None:
    res = targets.get(name)
    return next((x for x in res["loads"] if x["concurrency"] == conc), None) if res else None


def summary(results: Targets) -> dict[str, Any]:
    """Overheads and the issue's targets, from whatever targets were run."""
    out: dict[str, Any] = {}
    for gw in ("modelmix", "litellm"):
        for conc in (1, 32):
            g = _load(results, gw, conc)
            # "added": over direct nginx; "over_floor": over a trivial Python server
            for base, label in (("direct", "added"), ("floor", "over_floor")):
                d = _load(results, base, conc)
                if d and g:
                    for pct in ("p50", "p99"):
                        diff = (g[f"{pct}_us"] - d[f"{pct}_us"]) / 1000
                        out[f"{gw}_c{conc}_{label}_{pct}_ms"] = round(diff, 3)
    for conc in (1, 32):  # issue 15: model auto + learned router + data policy vs by name
        m, auto = _load(results, "modelmix", conc), _load(results, "modelmix-auto", conc)
        if m and auto:
            for pct in ("p50", "p99"):
                diff = (auto[f"{pct}_us"] - m[f"{pct}_us"]) / 1000
                out[f"auto_over_named_c{conc}_{pct}_ms"] = round(diff, 3)
            if auto["cpu_us_per_request"] and m["cpu_us_per_request"]:
                out[f"auto_over_named_c{conc}_cpu_us"] = round(
                    auto["cpu_us_per_request"] - m["cpu_us_per_request"], 1)
    for conc in (1, 32):
        m, lt = _load(results, "modelmix", conc), _load(results, "litellm", conc)
        if m and lt and lt["rps"]:
            out[f"throughput_vs_litellm_c{conc}"] = round(m["rps"] / lt["rps"], 1)
    return out


def checks(results: Targets, summ: dict[str, Any]) -> list[dict[str, Any]]:
    m32 = _load(results, "modelmix", 32)
    mm = results.get("modelmix")
    rows: list[tuple[str, str, float | None, str, Callable[[float], bool]]] = [
        ("added p50 at concurrency 1", "<= 0.5 ms", summ.get("modelmix_c1_added_p50_ms"),
         "ms", lambda v: v <= 0.5),
        ("added p99 at concurrency 1", "<= 2 ms", summ.get("modelmix_c1_added_p99_ms"),
         "ms", lambda v: v <= 2.0),
        ("requests/s at concurrency 32", ">= 2,000", m32["rps"] if m32 else None, "req/s",
         lambda v: v >= 2000),
        ("throughput vs LiteLLM (c=32)", ">= 20x", summ.get("throughput_vs_litellm_c32"),
         "x", lambda v: v >= 20),
        ("idle RSS, no local model", "<= 120 MB", mm["idle_rss_mb"] if mm else None, "MB",
         lambda v: v <= 120),
        ("model auto + learned router + policy, added p50 over named (c=1)", "<= 1.0 ms",
         summ.get("auto_over_named_c1_p50_ms"), "ms", lambda v: v <= 1.0),
    ]
    return [{"target": name, "goal": goal, "reached": val, "unit": unit,
             "met": None if val is None else bool(ok(val))}
            for name, goal, val, unit, ok in rows]


# --- RESULTS.md ------------------------------------------------------------------------

START, END = "<!-- generated:start -->", "<!-- generated:end -->"


def _machine_rows(report: dict[str, Any]) -> list[str]:
    m = report["machine"]
    return [f"Run: {report['date']}, modelmix at {report.get('modelmix_commit', '?')}, "
            f"{report['settings']}.", "",
            f"Command: `{report.get('command', 'benchmarks/overhead/run.py')}`", "",
            "| machine | |", "| --- | --- |",
            f"| CPU | {m['cpu_model']}, {m['cpus_online']} cores ({m['cpus_usable']} usable) |",
            f"| RAM | {m['ram_gib']} GiB |", f"| OS, kernel | {m['os']}, {m['kernel']} |",
            f"| Python | {m['python']} |", f"| upstream, load | {m['nginx']}; {m['wrk']} |",
            "| modelmix env | " + _pkgs(m["modelmix_packages"]) + " |",
            "| LiteLLM env | " + _pkgs(m["litellm_packages"]) + " |"]


def markdown(report: dict[str, Any]) -> str:
    """The generated block of RESULTS.md: machine, one row per target and concurrency,
    the goals."""
    lines = [START, "", *_machine_rows(report), "",
             "| target | conc. | req/s | p50 ms | p99 ms | p99.9 ms | added p50 ms "
             "| added p99 ms | gateway CPU µs/req | errors | idle RSS MB | peak RSS MB "
             "| other CPU % |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
             "| ---: | ---: |"]
    direct = {x["concurrency"]: x for x in report["targets"].get("direct", {}).get("loads", [])}
    for name, res in report["targets"].items():
        for ld in res["loads"]:
            d = direct.get(ld["concurrency"])
            add50 = f"{(ld['p50_us'] - d['p50_us']) / 1000:.3f}" if d and name != "direct" \
                else "-"
            add99 = f"{(ld['p99_us'] - d['p99_us']) / 1000:.3f}" if d and name != "direct" \
                else "-"
            idle = res["idle_rss_mb"] if res["idle_rss_mb"] is not None else "-"
            peak = res["hwm_rss_mb"] if res["hwm_rss_mb"] is not None else "-"
            lines.append(
                f"| {name} | {ld['concurrency']} | {ld['rps']:,.0f} | {ld['p50_us'] / 1000:.3f}"
                f" | {ld['p99_us'] / 1000:.3f} | {ld['p999_us'] / 1000:.3f} | {add50} | {add99}"
                f" | {_num(ld['cpu_us_per_request'])} | {ld['errors'] + ld['non_2xx']}"
                f" | {idle} | {peak} | {_num(ld['other_cpu_pct'])} |")
    lines += ["", "| goal (2 cores, 1 worker) | wanted | reached | met |",
              "| --- | --- | ---: | --- |"]
    for c in report["checks"]:
        val = "-" if c["reached"] is None else f"{c['reached']:,} {c['unit']}"
        met = {True: "yes", False: "**no**", None: "-"}[c["met"]]
        lines.append(f"| {c['target']} | {c['goal']} | {val} | {met} |")
    notes = [f"- {n}: {'; '.join(r['notes'])}" for n, r in report["targets"].items()
             if r["notes"]]
    return "\n".join([*lines, "", *notes, "", END])


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def _pkgs(found: dict[str, str]) -> str:
    return ", ".join(f"{k} {v}" for k, v in found.items()) or "-"


def write_markdown(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else (
        "# Gateway overhead benchmark\n\n" + START + "\n" + END + "\n")
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(head + block + tail)
