"""The main job: start the gateway on loopback and push a real workload through it.

``modelmix demo`` starts ``modelmix serve`` as a subprocess with the embedded default
catalog, waits for ``/ready``, then sends MMLU and GSM8K prompts (bundled sample, see
``data/NOTICE.md``) with the OpenAI Python SDK, alternating streaming and non-streaming,
plus a few malformed requests. It prints a progress bar, a per-request table and a
summary: cost against sending everything to a proprietary deployment at catalog price,
p50/p95 latency and errors.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
import textwrap
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
from rich import box
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from modelmix.catalog import Config, Deployment, Tier
from modelmix.cli._demo_systems import run_systems, systems_table
from modelmix.cli._output import plain
from modelmix.errors import ConfigError, require_extra

__all__ = ["DemoResult", "load_prompts", "run_demo"]

SYSTEM = "Answer briefly. For multiple choice, give the letter first."

#: Characters of an answer shown in the requests table (one line per request).
ANSWER_WIDTH = 40

#: Characters of an error message shown in the malformed-requests table.
MESSAGE_WIDTH = 110


@dataclass(slots=True)
class DemoResult:
    """One demo request as the client saw it (latency and TTFT in ms, cost in USD)."""

    index: int
    source: str
    stream: bool
    status: int
    deployment: str = "-"
    reason: str = "-"
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    cost_usd: float = 0.0
    answer: str = ""
    error: str = ""


def load_prompts(limit: int) -> list[dict[str, str]]:
    """The bundled demo prompts (MMLU and GSM8K), at most ``limit``."""
    text = resources.files("modelmix.data").joinpath("demo_prompts.jsonl").read_text("utf-8")
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return rows[:limit]


def _percentile(values: list[float], q: float) -> float:
    """Linear-interpolation percentile (numpy's default method); 0.0 when empty."""
    if not values:
        return 0.0
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q
    lo, hi = int(pos), min(int(pos) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


class _Gateway:
    """``modelmix serve`` as a subprocess on loopback."""

    def __init__(self, port: int, workdir: Path, config_path: str | None):
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = workdir / "demo_gateway.log"
        env = dict(os.environ)
        env.setdefault("MODELMIX_DB_URL", f"sqlite:///{workdir / 'demo_usage.db'}")
        self.db_url = env["MODELMIX_DB_URL"]
        cmd = [sys.executable, "-m", "modelmix", "serve", "--host", "127.0.0.1",
               "--port", str(port)]
        if config_path:
            cmd += ["--config", config_path]
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(cmd, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def _last_error(self) -> str:
        """The gateway's own one-line ``error: ...`` (a bad catalog or policy), if any."""
        try:
            lines = self.log_path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError:
            return "no log"
        errors = [line for line in lines if line.startswith("error:")]
        return errors[-1][len("error:"):].strip() if errors else "see its log"

    def wait_ready(self, timeout_s: float = 60) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited: {self._last_error()} (log: {self.log_path})")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"gateway not ready after {timeout_s:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        self.proc.terminate()  # SIGTERM: the gateway flushes its usage records
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def _send(client: Any, index: int, row: dict[str, str], stream: bool, max_tokens: int,
          deployments: dict[str, Deployment]) -> DemoResult:
    res = DemoResult(index=index, source=row["source"], stream=stream, status=200)
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": row["prompt"]}]
    started = time.perf_counter()
    try:
        if stream:
            _stream(client, res, messages, max_tokens, started)
        else:
            raw = client.chat.completions.with_raw_response.create(
                model="auto", messages=messages, max_tokens=max_tokens, temperature=0)
            _from_headers(res, raw.headers)
            body = raw.parse()
            res.answer = body.choices[0].message.content or ""
            if body.usage:
                res.prompt_tokens = body.usage.prompt_tokens
                res.completion_tokens = body.usage.completion_tokens
    except Exception as exc:  # the demo reports every failure in its table
        res.status = getattr(exc, "status_code", 0) or 0
        res.error = f"{type(exc).__name__}: {exc}"[:200]
    res.latency_ms = (time.perf_counter() - started) * 1000
    dep = deployments.get(res.deployment)
    if dep is not None:
        res.cost_usd = dep.cost_usd(res.prompt_tokens, res.completion_tokens)
    return res


def _stream(client: Any, res: DemoResult, messages: list[dict[str, str]], max_tokens: int,
            started: float) -> None:
    with client.chat.completions.with_streaming_response.create(
        model="auto", messages=messages, max_tokens=max_tokens, temperature=0, stream=True,
        stream_options={"include_usage": True},
    ) as raw:
        _from_headers(res, raw.headers)
        parts: list[str] = []
        for chunk in raw.parse():
            if chunk.choices and chunk.choices[0].delta.content:
                if res.ttft_ms is None:
                    res.ttft_ms = (time.perf_counter() - started) * 1000
                parts.append(chunk.choices[0].delta.content)
            if chunk.usage:
                res.prompt_tokens = chunk.usage.prompt_tokens
                res.completion_tokens = chunk.usage.completion_tokens
        res.answer = "".join(parts)


def _from_headers(res: DemoResult, headers: Any) -> None:
    res.deployment = headers.get("x-modelmix-deployment", "-")
    res.reason = headers.get("x-modelmix-route-reason", "-")


MALFORMED: list[tuple[str, bytes, dict[str, str]]] = [
    ("invalid JSON", b'{"model": "auto", "messages": [', {}),
    ("missing messages", b'{"model": "auto"}', {}),
    ("unknown model", b'{"model": "gpt-9", "messages": [{"role": "user", "content": "hi"}]}', {}),
    ("max_tokens = -5",
     b'{"model": "auto", "max_tokens": -5, "messages": [{"role": "user", "content": "hi"}]}', {}),
    ("invalid UTF-8", b'{"model": "auto", "messages": [{"role": "user", "content": "\xff"}]}', {}),
    ("image that is not one", b'{"model": "auto", "messages": [{"role": "user", "content": '
     b'[{"type": "image_url", "image_url": {"url": "data:image/png;base64,aGVsbG8="}}]}]}', {}),
    ("40 MB body", b'{"model": "auto", "messages": [{"role": "user", "content": "'
     + b"a" * 40_000_000 + b'"}]}', {}),
]


def _malformed(base: str) -> list[tuple[str, int, str]]:
    out = []
    for label, body, headers in MALFORMED:
        resp = httpx.post(base + "/v1/chat/completions", content=body, timeout=30,
                          headers={"content-type": "application/json", **headers})
        try:
            message = resp.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = resp.text[:80]
        out.append((label, resp.status_code, message))
    return out


def _shorten(text: str, width: int) -> str:
    """``text`` on one line, cut at a word boundary with an ellipsis beyond ``width``."""
    flat = " ".join(text.split())
    if len(flat) <= width:
        return flat
    cut = textwrap.shorten(flat, width, placeholder=" …")
    return flat[: width - 1] + "…" if cut == "…" else cut  # "…": the first word is too long


def _reference(config: Config, name: str | None) -> Deployment | None:
    """The deployment to price the workload against: ``name``, else the first proprietary
    deployment, else None (the summary then says there is nothing to compare with).

    Raises:
        ConfigError: ``name`` is not a deployment of ``config``.
    """
    if name:
        try:
            return config.deployment(name)
        except KeyError:
            valid = ", ".join(d.name for d in config.deployments)
            raise ConfigError(f"--compare-to {name!r} is not a deployment; "
                              f"valid names: {valid}") from None
    prop = [d for d in config.deployments if d.tier is Tier.PROPRIETARY and d.mode == "chat"]
    return prop[0] if prop else None


def _results_table(results: list[DemoResult]) -> Table:
    """One line per request (nothing wraps), about 160 columns wide."""
    table = Table(title="Requests", box=box.SIMPLE_HEAD, collapse_padding=True,
                  pad_edge=False)
    widths = {"route reason": 28, "answer": ANSWER_WIDTH}
    for col in ("#", "set", "mode", "status", "deployment", "route reason", "tok in / out",
                "latency ms", "TTFT ms", "cost USD", "answer"):
        table.add_column(col, overflow="ellipsis", no_wrap=True, max_width=widths.get(col))
    for r in results:
        table.add_row(*plain(  # cells are text, never markup ('modelmix[local]')
            str(r.index), r.source, "stream" if r.stream else "sync", str(r.status),
            r.deployment, _short_reason(r.reason), f"{r.prompt_tokens} / {r.completion_tokens}",
            f"{r.latency_ms:,.0f}", f"{r.ttft_ms:,.0f}" if r.ttft_ms is not None else "-",
            f"{r.cost_usd:.6f}", _shorten(r.answer or r.error, ANSWER_WIDTH),
        ))
    return table


_LEARNED_REASON = re.compile(r"^learned: p\(strong needed\)=([\d.]+) (<|>=) ([\d.]+) \(([^)]*)\)")


def _short_reason(reason: str) -> str:
    """The route reason as the table shows it: the learned router's score and threshold
    first ("p(strong)=0.55<0.58 balanced; ..."); the full text is in the header and log."""
    return _LEARNED_REASON.sub(
        lambda m: f"p(strong)={m[1]}{m[2]}{m[3]} {m[4].removeprefix('target ')}", reason,
        count=1)


def _malformed_table(malformed: list[tuple[str, int, str]]) -> Table:
    table = Table(title="Malformed requests", show_header=True)
    table.add_column("request", no_wrap=True)
    table.add_column("status", no_wrap=True)
    table.add_column("error message (OpenAI format)", min_width=MESSAGE_WIDTH // 2)
    for label, status, message in malformed:
        table.add_row(*plain(label, str(status), _shorten(message, MESSAGE_WIDTH)))
    return table


def _ms(values: list[float], q: float) -> str:
    """A latency percentile in ms, or "-" when nothing succeeded."""
    return f"{_percentile(values, q):,.0f} ms" if values else "-"


def _summary(results: list[DemoResult], ref: Deployment | None,
             malformed: list[tuple[str, int, str]], wall_s: float) -> Table:
    ok = [r for r in results if r.status == 200 and not r.error]
    lat = [r.latency_ms for r in ok]
    ttft = [r.ttft_ms for r in ok if r.ttft_ms is not None]
    tok_in = sum(r.prompt_tokens for r in ok)
    tok_out = sum(r.completion_tokens for r in ok)
    actual = sum(r.cost_usd for r in results)
    all_prop = ref.cost_usd(tok_in, tok_out) if ref is not None else 0.0
    saved = f" ({(1 - actual / all_prop):.1%} saved)" if all_prop > 0 else ""
    table = Table(title="Summary", show_header=False)
    table.add_column("metric", style="bold")
    table.add_column("value")
    table.add_row("requests", f"{len(results)} workload + {len(malformed)} malformed "
                  f"in {wall_s:.1f}s")
    table.add_row("succeeded / failed", f"{len(ok)} / {len(results) - len(ok)}")
    served: dict[str, int] = {}
    for r in ok:
        served[r.deployment] = served.get(r.deployment, 0) + 1
    table.add_row("served by", Text(", ".join(f"{k}: {v}" for k, v in served.items()) or "-"))
    table.add_row("tokens in / out", f"{tok_in:,} / {tok_out:,}")
    table.add_row("cost (catalog prices)", f"${actual:.6f}{saved}")
    if ref is None:
        table.add_row("compared with", "no proprietary deployment in the catalog to compare "
                      "with (see --compare-to)")
    else:
        table.add_row(f"same tokens all on {ref.name}",
                      f"${all_prop:.6f} (at ${ref.input_cost_per_mtok:g} / "
                      f"${ref.output_cost_per_mtok:g} per 1M tokens in / out)")
    table.add_row("latency p50 / p95", f"{_ms(lat, 0.5)} / {_ms(lat, 0.95)}")
    table.add_row("stream TTFT p50", _ms(ttft, 0.5))
    bad = [m for m in malformed if not 400 <= m[1] < 500]
    table.add_row("malformed -> 4xx", f"{len(malformed) - len(bad)} / {len(malformed)}")
    return table


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_demo(*, config: Config, config_path: str | None = None, n: int = 60,
             max_tokens: int = 48, compare_to: str | None = None,
             workdir: Path = Path(".modelmix"), console: Console | None = None) -> int:
    """Run the demo; returns a process exit code (0 when the workload succeeded).

    Raises:
        ConfigError: ``compare_to`` is not a deployment of ``config``.
        RuntimeError: the gateway did not start (its log is named).
    """
    require_extra("openai", "demo", "the demo's client")
    from openai import OpenAI

    console = console or Console(width=None if sys.stdout.isatty() else 160)
    ref = _reference(config, compare_to)
    workdir.mkdir(parents=True, exist_ok=True)
    rows = load_prompts(n)
    deployments = {d.name: d for d in config.deployments}
    gateway = _Gateway(_free_port(), workdir, config_path)
    console.print(f"[bold]modelmix demo[/bold]: gateway at {gateway.url} "
                  f"(log: {gateway.log_path})")
    try:
        gateway.wait_ready()
        client = OpenAI(base_url=gateway.url + "/v1", api_key="demo", max_retries=0,
                        timeout=120)
        started = time.perf_counter()
        results = _workload(client, rows, max_tokens, deployments, console)
        malformed = _malformed(gateway.url)
        wall = time.perf_counter() - started
        with console.status("systems of models (blueprints)..."):
            systems = run_systems(client, max_tokens)
    finally:
        gateway.stop()
    console.print(_results_table(results))
    console.print(_malformed_table(malformed))
    console.print(_summary(results, ref, malformed, wall))
    console.print(systems_table(systems, ref, _shorten))
    console.print(f"usage records: {gateway.db_url}\nsummarise them with: "
                  f"modelmix usage --db {shlex.quote(gateway.db_url)}", soft_wrap=True,
                  markup=False, highlight=False)
    failed = [r for r in results if r.error] + [s for s in systems if s.error]
    return 1 if failed or any(not 400 <= m[1] < 500 for m in malformed) else 0


def _workload(client: Any, rows: list[dict[str, str]], max_tokens: int,
              deployments: dict[str, Deployment], console: Console) -> list[DemoResult]:
    results = []
    columns = (*Progress.get_default_columns(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console) as progress:
        task = progress.add_task("prompts through the gateway", total=len(rows))
        for i, row in enumerate(rows, 1):
            results.append(_send(client, i, row, i % 2 == 0, max_tokens, deployments))
            progress.advance(task)
    return results

