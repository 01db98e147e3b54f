"""Gateway overhead benchmark: direct-to-upstream against modelmix and LiteLLM's proxy.

An nginx ``return 200`` upstream answers every chat completion with the same OpenAI
JSON body (with usage). wrk POSTs one fixed chat completion body on loopback at each
concurrency, first to nginx directly, then through modelmix's gateway (one worker,
pass-through route: the deployment is called by name, usage logging on), then through
LiteLLM's proxy (pinned version, its own virtualenv under ``benchmarks/.work``).
Overhead = gateway latency minus direct latency at the same percentile.

Usage::

    .venv/bin/python benchmarks/overhead/run.py --duration 10
    .venv/bin/python benchmarks/overhead/run.py --install          # apt-get nginx + wrk first
    .venv/bin/python benchmarks/overhead/run.py --targets direct,modelmix \\
        --variant uvicorn-h11 --out benchmarks/.work/exp-h11.json    # one experiment
    .venv/bin/python benchmarks/overhead/run.py --targets direct,modelmix,modelmix-auto \\
        --prompt-chars 400 --concurrency 1 --out benchmarks/.work/auto.json  # issue 15

``modelmix-auto`` is the routed case: ``model: "auto"`` with the learned router (the
shipped artifact) choosing between an open self-hosted and a proprietary cloud
deployment on the same nginx upstream, and the data guard on (``policy: healthcare``,
a PHI policy); compare it with ``modelmix`` (the deployment called by name, no policy)
at the same ``--prompt-chars``.

Writes ``results.json`` and the generated part of ``RESULTS.md`` next to this file
(unless ``--out`` sends the JSON elsewhere, which also skips RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from _report import checks, machine, markdown, summary, write_markdown

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
WORK = HERE.parent / ".work"
LITELLM_VENV = WORK / "litellm-venv"
LITELLM_SPEC = "litellm[proxy]==1.106.12"
EXP_PKGS = WORK / "exp-pkgs"  # granian / py-spy for experiments: pip install --target
APT_INSTALL = "apt-get update && apt-get install -y nginx-light wrk"

#: Both gateways check this key (LiteLLM refuses to start without one); nginx ignores it.
MASTER_KEY = f"sk-bench-{secrets.token_hex(24)}"
MODEL = "bench-upstream"
UPSTREAM_MODEL = "gpt-4o-mini"
REQUEST_BODY = {
    "model": MODEL,
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "Say hello in one short sentence."},
    ],
    "max_tokens": 16,
    "temperature": 0.2,
}
UPSTREAM_BODY = {
    "id": "chatcmpl-bench00000000000000000000",
    "object": "chat.completion",
    "created": 1767225600,
    "model": UPSTREAM_MODEL,
    "system_fingerprint": "fp_bench",
    "choices": [{
        "index": 0,
        "message": {"role": "assistant", "content": "Hello! How can I help you today?"},
        "logprobs": None,
        "finish_reason": "stop",
    }],
    "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33},
}

#: How modelmix's gateway is started. ``serve`` (the CLI) is what users run; the others
#: are the server experiments recorded in RESULTS.md.
VARIANTS: dict[str, list[str]] = {
    "serve": ["-m", "modelmix.cli", "serve", "--host", "127.0.0.1", "--port", "{port}",
              "--log-level", "{log_level}", "--config", "{config}"],
    "uvicorn-h11": ["-m", "uvicorn", "--factory", "{app}",
                    "--host", "127.0.0.1", "--port", "{port}", "--loop", "asyncio",
                    "--http", "h11", "--no-access-log", "--log-level", "warning"],
    "uvicorn-httptools-uvloop": ["-m", "uvicorn", "--factory",
                                 "{app}", "--host", "127.0.0.1",
                                 "--port", "{port}", "--loop", "uvloop", "--http",
                                 "httptools", "--no-access-log", "--log-level", "warning"],
    "granian": ["-m", "granian", "--interface", "asgi", "--factory", "--host", "127.0.0.1",
                "--port", "{port}", "--workers", "1", "--loop", "uvloop", "--log-level",
                "warning", "--no-access-log", "{app}"],
}


# --- processes -------------------------------------------------------------------------


@dataclass
class Cpus:
    """CPU sets: the gateway gets its own core; nginx and wrk share the rest."""

    gateway: list[int] | None
    load: list[int] | None

    @classmethod
    def plan(cls, pin: bool) -> Cpus:
        cpus = sorted(os.sched_getaffinity(0))
        if not pin or len(cpus) < 2 or shutil.which("taskset") is None:
            return cls(None, None)
        return cls([cpus[0]], cpus[1:])

    @staticmethod
    def prefix(cpus: list[int] | None) -> list[str]:
        return ["taskset", "-c", ",".join(map(str, cpus))] if cpus else []


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def fill(template: str, values: dict[str, str]) -> str:
    """Replace ``{name}`` placeholders (nginx and YAML braces are left alone)."""
    for key, value in values.items():
        template = template.replace("{" + key + "}", value)
    return template


@contextlib.contextmanager
def launched(name: str, cmd: list[str], log: Path, env: dict[str, str] | None = None
             ) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own process group; stop the whole group on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT,
                                env={**os.environ, **(env or {})}, start_new_session=True)
    try:
        yield proc
    finally:
        _stop(proc)
        print(f"  stopped {name}", flush=True)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def http(url: str, body: bytes | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method="POST" if body else "GET",
                                 headers={"Content-Type": "application/json",
                                          "Authorization": f"Bearer {MASTER_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, timeout: float) -> float:
    """Poll ``url`` until it answers 200; returns seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"{url}: process exited ({proc.returncode}); see {log}:\n"
                             + log.read_text(errors="replace")[-3000:])
        with contextlib.suppress(OSError):
            if http(url, timeout=2)[0] == 200:
                return time.monotonic() - start
        time.sleep(0.1)
    raise SystemExit(f"{url} not ready after {timeout:.0f}s; see {log}")


#: Prose the ``--prompt-chars`` prompt is cut from (repeated as needed): a plain chat
#: request with nothing a data policy would flag.
PROMPT_PROSE = (
    "I am planning a small vegetable garden on a sunny balcony and would like some "
    "practical advice. Which vegetables grow well in containers, how deep should the "
    "pots be, and how often should I water them during a warm summer? I would also like "
    "to know whether it makes sense to start from seeds or to buy young plants, and "
    "which simple mistakes beginners usually make in their first season. ")


def request_body(prompt_chars: int) -> dict[str, Any]:
    """:data:`REQUEST_BODY`, with a user message of ``prompt_chars`` characters when > 0."""
    if prompt_chars <= 0:
        return REQUEST_BODY
    text = (PROMPT_PROSE * (prompt_chars // len(PROMPT_PROSE) + 1))[:prompt_chars]
    messages = [REQUEST_BODY["messages"][0], {"role": "user", "content": text}]
    return {**REQUEST_BODY, "messages": messages}


def check_completion(url: str, request: bytes) -> int:
    """One real request: must be a 200 chat.completion with usage. Returns body size."""
    status, body = http(url, request, timeout=30)
    data = json.loads(body) if body.startswith(b"{") else {}
    if status != 200 or data.get("object") != "chat.completion" or not data.get("usage"):
        raise SystemExit(f"{url}: bad answer {status}: {body[:500]!r}")
    return len(body)


# --- memory ----------------------------------------------------------------------------


def _status_kb(pid: int, field_name: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    return 0


def process_tree(root: int) -> list[int]:
    """``root`` and its descendants (workers a server forks)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        parents.setdefault(ppid, []).append(int(entry.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo.extend(parents.get(pid, []))
    return tree


def tree_kb(root: int, field_name: str = "VmRSS") -> int:
    return sum(_status_kb(pid, field_name) for pid in process_tree(root))


def settled_rss_kb(root: int, limit_s: float = 60.0) -> int:
    """RSS once start-up work in the background (model warm-up) has finished: two
    readings 1 s apart within 1 MB of each other."""
    last = tree_kb(root)
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        time.sleep(1.0)
        now = tree_kb(root)
        if abs(now - last) < 1024:
            return now
        last = now
    return last


class RssSampler:
    """Samples the summed RSS of a process tree every 50 ms while active."""

    def __init__(self, root: int):
        self.root = root
        self.peak_kb = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        pids, listed = process_tree(self.root), time.monotonic()
        while not self._stop.wait(0.05):
            if time.monotonic() - listed > 2.0:  # walking /proc is not free: now and then
                pids, listed = process_tree(self.root), time.monotonic()
            rss = sum(_status_kb(pid, "VmRSS") for pid in pids)
            self.peak_kb = max(self.peak_kb, rss)

    def __enter__(self) -> RssSampler:
        self.peak_kb = tree_kb(self.root)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# --- load ------------------------------------------------------------------------------


@dataclass
class Load:
    """One wrk run against one target at one concurrency.

    ``gateway_cpu_pct``: CPU the gateway process tree used (100 = one core);
    ``cpu_us_per_request``: that CPU time per request, the least noisy efficiency figure;
    ``other_cpu_pct``: CPU used by processes outside this benchmark during the run
    (100 = one core), to tell a clean run from one on a busy machine.
    """

    concurrency: int
    threads: int
    requests: int
    rps: float
    p50_us: int
    p90_us: int
    p99_us: int
    p999_us: int
    mean_us: float
    max_us: int
    errors: int
    non_2xx: int
    gateway_cpu_pct: float | None = None
    cpu_us_per_request: float | None = None
    other_cpu_pct: float | None = None


def wrk(url: str, concurrency: int, duration: float, cpus: Cpus, body_file: Path) -> Load:
    threads = max(1, min(concurrency, len(cpus.load or os.sched_getaffinity(0)), 2))
    cmd = [*Cpus.prefix(cpus.load), "wrk", f"-t{threads}", f"-c{concurrency}",
           f"-d{max(1, round(duration))}s", "--timeout", "10s", "-s", str(HERE / "post.lua"),
           url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "BENCH_BODY_FILE": str(body_file),
                              "BENCH_AUTH": f"Bearer {MASTER_KEY}"}).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no BENCH_JSON line:\n{out}")
    raw = json.loads(line.removeprefix("BENCH_JSON "))
    errors = sum(raw[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    return Load(concurrency=concurrency, threads=threads, requests=raw["requests"],
                rps=round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
                p50_us=raw["p50_us"], p90_us=raw["p90_us"], p99_us=raw["p99_us"],
                p999_us=raw["p999_us"], mean_us=round(raw["mean_us"], 1),
                max_us=raw["max_us"], errors=errors, non_2xx=raw["err_status"])


@contextlib.contextmanager
def profiled(pid: int, label: str, duration: float, cpus: Cpus, gil: bool
             ) -> Iterator[None]:
    """Sample ``pid`` with py-spy (from benchmarks/.work/exp-pkgs) into collapsed stacks;
    with ``gil``, only the thread holding the GIL (a thread waiting for the GIL otherwise
    shows up in whatever line it was at)."""
    exe = EXP_PKGS / "bin" / "py-spy"
    if not exe.exists():
        raise SystemExit(f"--profile needs py-spy: .venv/bin/pip install --target {EXP_PKGS}"
                         " py-spy")
    out = WORK / f"profile-{label}.txt"
    cmd = [*Cpus.prefix(cpus.load), str(exe), "record", "--pid", str(pid), "--rate", "200",
           "--duration", str(max(1, round(duration) - 1)), "--format", "raw", "--nonblocking",
           "--output", str(out), *(["--gil"] if gil else [])]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           env={**os.environ, "PYTHONPATH": str(EXP_PKGS)})
    try:
        yield
    finally:
        spy.wait(timeout=60)
        print(f"  profile: {out}", flush=True)


@dataclass
class TargetResult:
    name: str
    startup_s: float | None = None
    response_bytes: int = 0
    idle_rss_mb: float | None = None
    peak_rss_mb: float | None = None
    hwm_rss_mb: float | None = None
    loads: list[Load] = field(default_factory=list)
    runs: list[Load] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def run_loads(res: TargetResult, url: str, args: argparse.Namespace, cpus: Cpus,
              body_file: Path, pid: int | None) -> None:
    res.response_bytes = check_completion(url, body_file.read_bytes())
    for conc in args.concurrency:
        runs = []
        for _ in range(args.repeat):
            wrk(url, conc, args.warmup, cpus, body_file)
            wait_quiet(args.quiet_wait)
            runs.append(measured(res, url, conc, args, cpus, body_file, pid))
        # The median run by p99 speaks for the N (all are kept in the JSON).
        load = sorted(runs, key=lambda x: x.p99_us)[(len(runs) - 1) // 2]
        res.loads.append(load)
        res.runs.extend(runs)
        print(f"  {res.name:<10} c={conc:<3} {load.rps:>9.1f} req/s  p50 {load.p50_us:>6} us"
              f"  p99 {load.p99_us:>6} us  cpu/req {load.cpu_us_per_request} us"
              f"  errors {load.errors + load.non_2xx}  other CPU {load.other_cpu_pct}%",
              flush=True)
    if pid:
        res.hwm_rss_mb = round(tree_kb(pid, "VmHWM") / 1024, 1)


def measured(res: TargetResult, url: str, conc: int, args: argparse.Namespace, cpus: Cpus,
             body_file: Path, pid: int | None) -> Load:
    """One measured wrk run, with RSS sampling, CPU accounting and optional profiling."""
    with contextlib.ExitStack() as stack:
        sampler = stack.enter_context(RssSampler(pid)) if pid and args.rss else None
        if pid and args.profile:
            stack.enter_context(profiled(pid, f"{res.name}-c{conc}", args.duration, cpus,
                                         args.profile == "gil"))
        before = CpuSnapshot.take(pid)
        load = wrk(url, conc, args.duration, cpus, body_file)
        CpuSnapshot.take(pid).annotate(before, load)
    if sampler is not None:
        res.peak_rss_mb = max(res.peak_rss_mb or 0.0, round(sampler.peak_kb / 1024, 1))
    return load


def wait_quiet(limit_s: float, threshold_pct: float = 10.0) -> None:
    """Wait (at most ``limit_s``) until processes outside the benchmark use under
    ``threshold_pct`` of a core over one second."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        before = CpuSnapshot.take(None)
        time.sleep(1.0)
        if CpuSnapshot.take(None).other_pct(before) < threshold_pct:
            return


@dataclass
class CpuSnapshot:
    """CPU time (s) of the whole machine, of this benchmark's process tree, and of the
    gateway's tree."""

    at: float
    busy_s: float
    ours_s: float
    gateway_s: float

    @staticmethod
    def _tree_cpu_s(root: int) -> float:
        total = 0
        for pid in process_tree(root):
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            total += sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
        return total / os.sysconf("SC_CLK_TCK")

    @classmethod
    def take(cls, gateway: int | None) -> CpuSnapshot:
        cpu = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
        user, nice, system, _idle, _iowait, irq, softirq, steal = map(int, cpu[:8])
        busy = (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")
        return cls(time.monotonic(), busy, cls._tree_cpu_s(os.getpid()),
                   cls._tree_cpu_s(gateway) if gateway else 0.0)

    def other_pct(self, before: CpuSnapshot) -> float:
        elapsed = self.at - before.at
        other = (self.busy_s - before.busy_s) - (self.ours_s - before.ours_s)
        return round(max(0.0, other) / elapsed * 100, 1)

    def annotate(self, before: CpuSnapshot, load: Load) -> None:
        load.other_cpu_pct = self.other_pct(before)
        if self.gateway_s:
            used = self.gateway_s - before.gateway_s
            load.gateway_cpu_pct = round(used / (self.at - before.at) * 100, 1)
            load.cpu_us_per_request = round(used / max(1, load.requests) * 1e6, 1)


def measure_server(res: TargetResult, proc: subprocess.Popen[bytes], base: str,
                   health: str, log: Path, ctx: RunContext) -> None:
    res.startup_s = round(wait_ready(proc, base + health, log, ctx.args.ready_timeout), 2)
    res.idle_rss_mb = round(settled_rss_kb(proc.pid) / 1024, 1)
    print(f"  {res.name}: ready in {res.startup_s}s, idle RSS {res.idle_rss_mb} MB",
          flush=True)
    run_loads(res, base + "/v1/chat/completions", ctx.args, ctx.cpus, ctx.body_file,
              proc.pid)


# --- targets ---------------------------------------------------------------------------


@dataclass
class RunContext:
    args: argparse.Namespace
    cpus: Cpus
    tmp: Path
    upstream: str  # http://127.0.0.1:PORT/v1
    body_file: Path


def bench_direct(ctx: RunContext) -> TargetResult:
    res = TargetResult("direct")
    run_loads(res, ctx.upstream + "/chat/completions", ctx.args, ctx.cpus, ctx.body_file,
              None)
    return res


def bench_modelmix(ctx: RunContext) -> TargetResult:
    res = TargetResult("modelmix")
    db = ctx.tmp / "usage.db"
    db_url = f"sqlite:///{db}"
    config = ctx.tmp / "modelmix.yaml"
    config.write_text(fill((HERE / "modelmix.yaml.template").read_text(), {
        "model": MODEL, "upstream_model": UPSTREAM_MODEL, "api_base": ctx.upstream,
        "db_url": db_url}))
    if not ctx.args.usage:
        config.write_text(config.read_text().replace("store:\n", "store:\n  enabled: false\n"))
    if ctx.args.router:
        config.write_text(config.read_text() + f"\nrouter: {ctx.args.router}\n")
    env = {"MODELMIX_DB_URL": db_url, "MODELMIX_CONFIG": str(config),
           "MODELMIX_MASTER_KEY": MASTER_KEY,
           **dict(kv.split("=", 1) for kv in ctx.args.env)}
    python_server(res, ctx, ctx.args.variant, ctx.args.app, env, config)
    res.notes.append(f"server: {ctx.args.variant}" + (
        f", app {ctx.args.app}" if ctx.args.variant != "serve"
        else f", --log-level {ctx.args.log_level}") + ("" if ctx.args.usage else ", usage off")
        + (f", router: {ctx.args.router}" if ctx.args.router else "")
        + "".join(f", {kv}" for kv in ctx.args.env))
    res.notes.append(usage_note(db))
    return res


def bench_modelmix_auto(ctx: RunContext) -> TargetResult:
    """``model: "auto"``: the learned router picks one of two deployments on the same
    upstream, with the data guard on (a PHI policy). Same server settings as
    ``modelmix``; the request body differs only in ``model``."""
    res = TargetResult("modelmix-auto")
    config = ctx.tmp / "modelmix-auto.yaml"
    config.write_text(fill((HERE / "modelmix-auto.yaml.template").read_text(), {
        "upstream_model": UPSTREAM_MODEL, "api_base": ctx.upstream,
        "policy": ctx.args.policy}))
    if not ctx.args.usage:
        config.write_text(config.read_text() + "\nstore:\n  enabled: false\n")
    body = ctx.tmp / "request-auto.json"
    body.write_text(json.dumps({**json.loads(ctx.body_file.read_text()), "model": "auto"}))
    env = {"MODELMIX_CONFIG": str(config), "MODELMIX_MASTER_KEY": MASTER_KEY,
           "MODELMIX_DB_URL": f"sqlite:///{ctx.tmp / 'usage-auto.db'}",
           **dict(kv.split("=", 1) for kv in ctx.args.env)}
    python_server(res, replace(ctx, body_file=body), ctx.args.variant, ctx.args.app, env,
                  config)
    res.notes.append(f"model: auto, router: learned (shipped artifact), policy: "
                     f"{ctx.args.policy}" + ("" if ctx.args.usage else ", usage off")
                     + "".join(f", {kv}" for kv in ctx.args.env))
    res.notes.append(usage_note(ctx.tmp / "usage-auto.db"))
    return res


def bench_floor(ctx: RunContext) -> TargetResult:
    """A trivial ASGI app (fixed answer) on uvicorn in the gateway's place: the latency
    any Python server shows on this machine at this moment."""
    res = TargetResult("floor")
    python_server(res, ctx, "uvicorn-httptools-uvloop", "layers:raw_fixed", {}, None)
    res.notes.append("uvicorn (httptools, uvloop) + layers.raw_fixed: no upstream call")
    return res


def python_server(res: TargetResult, ctx: RunContext, variant: str, app: str,
                  env: dict[str, str], config: Path | None) -> None:
    """Start one Python gateway process on the gateway CPU and measure it."""
    port = free_port()
    values = {"{port}": str(port), "{config}": str(config), "{app}": app,
              "{log_level}": ctx.args.log_level}
    argv = [values.get(a, a) for a in VARIANTS[variant]]
    env = {**env, "BENCH_UPSTREAM": ctx.upstream}
    if variant != "serve":  # granian, and layers.py apps
        env["PYTHONPATH"] = os.pathsep.join(p for p in (
            str(HERE), str(EXP_PKGS), os.environ.get("PYTHONPATH", "")) if p)
    cmd = [*Cpus.prefix(ctx.cpus.gateway), sys.executable, *argv]
    log = ctx.tmp / f"{res.name}.log"
    with launched(res.name, cmd, log, env) as proc:
        measure_server(res, proc, f"http://127.0.0.1:{port}", "/health", log, ctx)
        if res.name.startswith("modelmix"):
            res.notes.append(routing_note(f"http://127.0.0.1:{port}"))


def routing_note(base: str) -> str:
    """The gateway's own mean routing time over every request it served
    (``modelmix_routing_latency_seconds`` sum / count on ``/metrics``): the router's
    share of the added latency, measured inside the process."""
    status, body = http(base + "/metrics")
    if status != 200:
        return f"routing time: /metrics answered {status}"
    values = {}
    for line in body.decode(errors="replace").splitlines():
        for key in ("modelmix_routing_latency_seconds_sum",
                    "modelmix_routing_latency_seconds_count"):
            if line.startswith(key + " "):
                values[key] = float(line.split()[1])
    count = values.get("modelmix_routing_latency_seconds_count", 0.0)
    if not count:
        return "routing time: not reported"
    mean_us = values["modelmix_routing_latency_seconds_sum"] / count * 1e6
    return f"routing time (gateway metrics): mean {mean_us:.0f} us over {count:.0f} requests"


def usage_note(db: Path) -> str:
    """How many usage rows the run left in the SQLite store, if it is wired."""
    if not db.exists():
        return "usage store: no database written (store not wired in this build)"
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn:
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table'")]
        counts = {t: conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                  for t in tables}
    return f"usage store: {counts}"


def ensure_litellm_venv() -> Path:
    """Create the LiteLLM virtualenv on first use; returns its ``litellm`` command."""
    exe = LITELLM_VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"creating {LITELLM_VENV} with {LITELLM_SPEC} (one-off, a few minutes)",
          flush=True)
    LITELLM_VENV.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run([sys.executable, "-m", "venv", str(LITELLM_VENV)], check=True)
    subprocess.run([str(LITELLM_VENV / "bin" / "pip"), "install", "-q", LITELLM_SPEC],
                   check=True)
    return exe


def bench_litellm(ctx: RunContext) -> TargetResult:
    res = TargetResult("litellm")
    exe = ensure_litellm_venv()
    port = free_port()
    config = ctx.tmp / "litellm.yaml"
    config.write_text(fill((HERE / "litellm.yaml.template").read_text(), {
        "model": MODEL, "upstream_model": UPSTREAM_MODEL, "api_base": ctx.upstream}))
    cmd = [*Cpus.prefix(ctx.cpus.gateway), str(exe), "--config", str(config), "--host",
           "127.0.0.1", "--port", str(port), "--num_workers", "1"]
    env = {"LITELLM_MASTER_KEY": MASTER_KEY, "LITELLM_LOG": "ERROR",
           "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_TELEMETRY": "False",
           "DISABLE_ADMIN_UI": "True", "LITELLM_DONT_SHOW_FEEDBACK_BOX": "True"}
    log = ctx.tmp / "litellm.log"
    with launched("litellm", cmd, log, env) as proc:
        measure_server(res, proc, f"http://127.0.0.1:{port}", "/health/liveliness", log,
                       ctx)
    res.notes.append("1 uvicorn worker, master key, no database, LITELLM_LOG=ERROR, "
                     "no callbacks")
    return res


BENCHES = {"direct": bench_direct, "floor": bench_floor, "modelmix": bench_modelmix,
           "modelmix-auto": bench_modelmix_auto, "litellm": bench_litellm}


@contextlib.contextmanager
def nginx_upstream(tmp: Path, cpus: Cpus) -> Iterator[str]:
    port = free_port()
    body = json.dumps(UPSTREAM_BODY, separators=(",", ":"))
    conf = tmp / "nginx.conf"
    conf.write_text(fill((HERE / "nginx.conf.template").read_text(), {
        "workdir": str(tmp), "port": str(port), "body": body.replace("'", "\\'")}))
    cmd = [*Cpus.prefix(cpus.load), "nginx", "-p", str(tmp), "-c", str(conf)]
    log = tmp / "nginx.log"
    with launched("nginx", cmd, log) as proc:
        wait_ready(proc, f"http://127.0.0.1:{port}/", log, 10)
        yield f"http://127.0.0.1:{port}/v1"


# --- main ------------------------------------------------------------------------------


def prerequisites(install: bool) -> None:
    missing = [t for t in ("nginx", "wrk") if shutil.which(t) is None]
    if not missing:
        return
    if not install:
        raise SystemExit(f"missing {', '.join(missing)}; install them with:\n  {APT_INSTALL}"
                         "\n(or run this script with --install, as root)")
    subprocess.run(["sh", "-c", f"DEBIAN_FRONTEND=noninteractive {APT_INSTALL}"], check=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of warm-up per run")
    p.add_argument("--concurrency", default="1,32",
                   type=lambda s: [int(x) for x in s.split(",")])
    p.add_argument("--targets", default="direct,floor,modelmix,litellm",
                   type=lambda s: s.split(","), help=f"of {', '.join(BENCHES)}")
    _gateway_options(p)
    p.add_argument("--rss-sampling", dest="rss", action="store_true",
                   help="also sample RSS every 50 ms during runs (it disturbs the load "
                   "generator's CPU a little; VmHWM gives the peak without it)")
    p.add_argument("--no-pin", dest="pin", action="store_false",
                   help="do not give the gateway its own CPU")
    p.add_argument("--repeat", type=int, default=1,
                   help="measured runs per target and concurrency; the median run by p99 "
                   "is reported (all are kept in the JSON)")
    p.add_argument("--quiet-wait", type=float, default=20.0,
                   help="seconds to wait for other processes to go quiet before each run")
    p.add_argument("--install", action="store_true", help="apt-get install nginx and wrk")
    p.add_argument("--profile", nargs="?", const="all", choices=["all", "gil"],
                   help="py-spy the gateways during each run (benchmarks/.work/profile-*); "
                   "'gil': only the thread holding the GIL")
    p.add_argument("--ready-timeout", type=float, default=180.0)
    p.add_argument("--out", type=Path, default=None,
                   help="write the JSON here instead of results.json + RESULTS.md")
    args = p.parse_args(argv)
    unknown = set(args.targets) - set(BENCHES)
    if unknown:
        p.error(f"unknown targets {sorted(unknown)}")
    return args


def _gateway_options(p: argparse.ArgumentParser) -> None:
    """How modelmix is started and configured (the experiments change these)."""
    p.add_argument("--variant", default="serve", choices=sorted(VARIANTS),
                   help="how the modelmix gateway is started (experiments)")
    p.add_argument("--app", default="modelmix.server.app:create_app",
                   help="ASGI app factory for the non-serve variants (layers:... apps "
                   "split the cost into layers)")
    p.add_argument("--log-level", default="warning",
                   help="modelmix serve --log-level (info logs one line per request)")
    p.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                   help="extra environment for the modelmix gateway (repeatable)")
    p.add_argument("--router", default=None,
                   help="set the catalog's `router` (default: modelmix's default)")
    p.add_argument("--prompt-chars", type=int, default=0,
                   help="user message of exactly this many characters (fixed prose, no "
                   "personal data) instead of the short greeting; 0: the greeting")
    p.add_argument("--policy", default="healthcare",
                   help="the modelmix-auto target's data policy (a ready policy name)")
    p.add_argument("--no-usage", dest="usage", action="store_false",
                   help="turn modelmix's usage store off (store.enabled: false; experiments)")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prerequisites(args.install)
    cpus = Cpus.plan(args.pin)
    usable = len(os.sched_getaffinity(0))
    if cpus.load:  # this script and what it starts stay off the gateway's CPU
        os.sched_setaffinity(0, cpus.load)
    results: dict[str, TargetResult] = {}
    with tempfile.TemporaryDirectory(prefix="modelmix-bench-") as tmp_name:
        tmp = Path(tmp_name)
        body_file = tmp / "request.json"
        body_file.write_text(json.dumps(request_body(args.prompt_chars)))
        with nginx_upstream(tmp, cpus) as upstream:
            ctx = RunContext(args, cpus, tmp, upstream, body_file)
            for name in args.targets:
                print(f"[{name}]", flush=True)
                results[name] = BENCHES[name](ctx)
        keep_logs(tmp)
    host = machine(usable, LITELLM_VENV / "bin" / "python", EXP_PKGS)
    report = build_report(args, cpus, results, host)
    out = args.out or HERE / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.out is None:
        write_markdown(HERE / "RESULTS.md", markdown(report))
    for c in report["checks"]:
        print(f"  {c['target']:<32} {c['goal']:<10} reached {c['reached']} {c['unit']}"
              f"  met={c['met']}")
    print(f"wrote {out}")


def git_commit() -> str:
    """The checked-out commit, with "+changes" when the tree differs from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, text=True,
                              capture_output=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=ROOT, text=True, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "?"
    return head + ("+changes" if dirty.strip() else "")


def keep_logs(tmp: Path) -> None:
    """Copy the servers' logs to benchmarks/.work/logs (the temp dir goes away)."""
    dest = WORK / "logs"
    dest.mkdir(parents=True, exist_ok=True)
    for log in tmp.glob("*.log"):
        shutil.copy(log, dest / log.name)


def build_report(args: argparse.Namespace, cpus: Cpus, results: dict[str, TargetResult],
                 host: dict[str, Any]) -> dict[str, Any]:
    pin = (f"gateway pinned to CPU {cpus.gateway}, nginx + wrk to CPU {cpus.load}"
           if cpus.gateway else "no CPU pinning")
    runs = f", median of {args.repeat} runs by p99" if args.repeat > 1 else ""
    settings = (f"{args.duration:g} s per run after {args.warmup:g} s warm-up{runs}, "
                f"concurrency {', '.join(map(str, args.concurrency))}, {pin}")
    targets = {k: asdict(v) for k, v in results.items()}
    summ = summary(targets)
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python", "benchmarks/overhead/run.py", *sys.argv[1:]]),
        "modelmix_commit": git_commit(),
        "settings": settings,
        "machine": host,
        "request_body": request_body(args.prompt_chars),
        "targets": targets,
        "summary": summ,
        "checks": checks(targets, summ),
    }


if __name__ == "__main__":
    main()
