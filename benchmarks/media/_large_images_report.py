"""The generated part of the "Large images through the gateway" section of RESULTS.md.

Only the text between this section's markers is rewritten; the analysis after them and
the other sections of the file (the "Reading throughput" one belongs to
``ocr_throughput.py``) are kept as they are.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["markdown", "write_markdown"]

START, END = "<!-- large-images:start -->", "<!-- large-images:end -->"
HEADING = "## Large images through the gateway"
READING = "## Reading throughput"


def _mb(n: float) -> str:
    return f"{n / 1e6:.2f} MB"


def _row(s: dict[str, Any]) -> str:
    d, g = s["direct"], s["gateway"]
    status = ", ".join(f"{n}x{code}" for code, n in sorted(g["statuses"].items()))
    return (f"| {s['label']} | {_mb(s['png_bytes'])} | {s['concurrency']} | "
            f"{g['requests']} ({status}) | {d['p50_ms']:.0f} | {g['p50_ms']:.0f} | "
            f"{g['p95_ms']:.0f} | **{s['added_p50_ms']:.0f}** | "
            f"{s['gateway_cpu_ms_per_request']:.0f} | **{s['peak_rss_mb']:.0f}** | "
            f"{_span(s['round_peak_rss_mb'])} | {s['idle_rss_mb']:.0f} | "
            f"{s['rss_after_mb']:.0f} | {s['other_cpu_pct']:.0f} |")


def _span(values: list[float | None]) -> str:
    got = [v for v in values if v is not None]
    return f"{min(got):.0f}-{max(got):.0f}" if got else "?"


def _latency_table(report: dict[str, Any]) -> list[str]:
    rows = list(report["scenarios"])
    policy = report.get("policy") or {}
    if "label" in policy:
        rows.append(policy)
    out = ["| scenario | PNG | concurrency | gateway requests | direct p50 ms | "
           "gateway p50 ms | gateway p95 ms | added p50 ms | gateway CPU ms/req | "
           "peak RSS MB | round peaks MB | idle RSS MB | RSS after MB | other CPU % |",
           "| --- | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
           "| ---: | ---: |"]
    out += [_row(s) for s in rows]
    out += ["", "Latency: per request, from sending the body to the last byte of the answer "
            "(all requests of all rounds). Peak RSS: the gateway process's highest `VmHWM` "
            "(start-up, warm-up and every round; a fresh gateway per row); round peaks: the "
            "lowest and highest peak of one round (`VmHWM` reset before each round); idle: "
            "its RSS after start-up, before any request; after: its RSS after the last "
            "round. Other CPU: what processes outside the benchmark used meanwhile (100 = one "
            "core; this machine is shared)."]
    if "skipped" in policy:
        out += ["", f"Data policy case (`policy: healthcare`, images read by OCR before "
                f"screening): **{policy['skipped']}**."]
    elif "label" in policy:
        u = policy["usage_rows"]
        conv = ", ".join(u.get("conversions", [])) or (
            "none (the images went to the vision deployment as sent)")
        out += ["", f"`{policy['label']}`: {policy['note']}. Usage rows: {u.get('ok')} of "
                f"{u.get('rows')} OK, {u.get('with_media')} with media, reading time p50 "
                f"{u.get('media_ms_p50')} ms (max {u.get('media_ms_max')} ms); conversions: "
                f"{conv}."]
    return out


def _target(report: dict[str, Any]) -> str:
    t = report["target"]
    if not t.get("checked"):
        return f"Issue target (peak RSS <= 250 MB for 20 x 9.5 MB): not checked ({t['why']})."
    verdict = "**PASS**" if t["pass"] else "**FAIL**"
    return (f"Issue target, gateway peak RSS <= {t['limit_mb']:.0f} MB with 20 concurrent "
            f"9.5 MB images: {verdict} ({t['peak_rss_mb']:.0f} MB).")


def _blocks(p: dict[str, Any]) -> str:
    return "; ".join(f"{b['mb']:.1f} `{b['line']}`"
                     + (f" via `{b['via']}`" if b["via"] and b["via"] != b["line"] else "")
                     for b in p["blocks"]) or "none"


def _profile(report: dict[str, Any]) -> list[str]:
    prof = report.get("profile")
    if not prof:
        return ["Memory profile: not run (`--no-profile`)."]
    cpu = prof["cpu"]
    out = [f"**Profile** (`_memprofile.py`: the gateway's ASGI app in-process on uvloop, the "
           f"body fed in {prof['chunk_bytes'] // 1024} KiB chunks, the same upstream), 9.5 MB "
           f"image: {_mb(prof['png_bytes'])} decoded, {_mb(prof['base64_bytes'])} base64, "
           f"{_mb(prof['body_bytes'])} body.", "",
           f"CPU, one request at a time: median {cpu['median_ms']:.0f} ms wall per request "
           f"(upstream transfer included); own time under cProfile, top functions:", "",
           "| ms | calls | function |", "| ---: | ---: | --- |"]
    out += [f"| {r['ms']:.1f} | {r['calls']} | `{r['function']}` |"
            for r in cpu["top_own_time"][:10]]
    out += ["", "Memory of one request, at probes along its path (tracemalloc, MB beyond "
            "the warmed-up process). Traced counts what was allocated, RSS what was touched "
            "(and grows only past what the warmed-up process already held): "
            "orjson reserves about 10x the output while serialising and does not give it back, "
            "so its blocks are mostly untouched virtual memory. Copies: live blocks of at "
            "least 1 MiB, each a full copy of the payload (base64 or decoded).", "",
            "| probe | traced MB | traced peak since previous | RSS + MB | RSS peak since "
            "previous | live blocks >= 1 MiB (MB, allocated at) | copies |",
            "| --- | ---: | ---: | ---: | ---: | --- | ---: |"]
    for p in prof["single"]["points"]:
        out.append(f"| {p['at']} | {p['traced_mb']:.1f} | {p['peak_since_previous_mb']:.1f} "
                   f"| {p['rss_mb']:.1f} | {p['rss_peak_since_previous_mb']:.1f} | "
                   f"{_blocks(p)} | {len(p['blocks'])} |")
    c = prof["concurrent"]
    hi = c["at_highest"]
    out += ["", f"{c['requests']} requests at once, in-process: peak traced "
            f"{c['peak_traced_mb']:.0f} MB, peak RSS +{c['peak_rss_mb']:.0f} MB "
            f"({c['seconds']} s). Live memory by allocation site at the highest probe "
            f"(`{hi.get('at')}`, {hi.get('traced_mb')} MB traced):", "",
            "| MB traced | blocks | of them >= 1 MiB | allocated at | via (innermost modelmix "
            "line) |", "| ---: | ---: | ---: | --- | --- |"]
    out += [f"| {s['mb']:.1f} | {s['blocks']} | {s['big_blocks']} | `{s['line']}` | "
            + (f"`{s['via']}` |" if s["via"] else "(none on the stack: an aiohttp task) |")
            for s in hi.get("sites", [])[:8]]
    return out


def markdown(report: dict[str, Any]) -> str:
    """The generated block (without the markers)."""
    m = report["machine"]
    pin = m["pinning"]
    images = ", ".join(f"{label}: {i['png_bytes']:,} bytes PNG ({i['base64_bytes']:,} base64)"
                       for label, i in report["images"].items())
    lines = [
        f"Run {report['date']}, commit `{report['git_commit']}`, `{report['command']}` "
        f"({report['seconds']:.0f} s). Machine: {m['cpu_model']}, {m['cpus']} CPUs, "
        f"{m['memory_gb']} GB, Python {m['python']}; gateway pinned to CPUs "
        f"{pin['gateway']}, upstream and client to {pin['upstream_and_client']}. "
        + ", ".join(f"{k} {v}" for k, v in m["versions"].items()) + ".",
        "",
        f"Images (seeded noise PNGs): {images}."
        + (f" Gateway environment: `{' '.join(report['gateway_env'])}`."
           if report.get("gateway_env") else ""),
        "",
        *_latency_table(report),
        "",
        _target(report),
        "",
        *_profile(report),
    ]
    return "\n".join(lines)


_ANALYSIS = """
### Where the memory goes

_(analysis to be written)_
"""


def write_markdown(path: Path, report: dict[str, Any]) -> None:
    block = f"{START}\n{markdown(report)}\n{END}"
    if not path.exists():
        path.write_text(f"# Media benchmarks\n\n{HEADING}\n\n{block}\n{_ANALYSIS}\n"
                        f"{READING}\n\n_(placeholder: written by `ocr_throughput.py`)_\n")
        return
    text = path.read_text()
    if START in text and END in text:
        head, rest = text.split(START, 1)
        text = head + block + rest.split(END, 1)[1]
    elif READING in text:
        head, tail = text.split(READING, 1)
        text = f"{head.rstrip()}\n\n{HEADING}\n\n{block}\n{_ANALYSIS}\n{READING}{tail}"
    else:
        text = f"{text.rstrip()}\n\n{HEADING}\n\n{block}\n{_ANALYSIS}"
    path.write_text(text)
