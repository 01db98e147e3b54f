"""Systems-of-models overhead benchmark: what a system adds beyond its model calls.

The fixed upstream is the overhead benchmark's (``benchmarks/overhead``, imported): nginx
answering every chat completion with one OpenAI JSON body, on loopback. The catalog
(``catalog.yaml.template``) has that one ``openai-compatible`` deployment and four
systems over it: ``chain1`` (1 model step), ``chain4`` (4 model steps in a chain),
``wide4`` (4 independent model steps + a join) and ``mixed`` (classify + transform +
1 model step + verify + transform). Everything runs at concurrency 1. Phases:

- ``fake``: ``ChatService.complete`` of the gateway's own service (``create_app``'s,
  with its observers and the SQLite usage store) over a FakeProvider: no network.
- ``inprocess``: the same over nginx. Both time, per request, the wall time, the wall
  time outside the upstream (no provider call in flight) and the process CPU; targets
  take turns in blocks, and each system is compared with a baseline of its shape (one
  plain request, four in a row, four at once).
- ``http``: ``modelmix serve`` with that catalog; wrk (``overhead/post.lua``) runs per
  target in rounds, and an aiohttp client taking turns between the targets.
- ``ab``: plain requests, the build before systems (``--before-ref``, a git worktree,
  ``PYTHONPATH=<worktree>/src``, same virtualenv) against this build with and without
  systems in the catalog: three gateways up at once (wrk rounds, the client taking
  turns), and the in-process worker of each build in rounds.

Per-step overhead = (system - its baseline) / steps; over HTTP, (p50 system - p50 plain
- (baseline - plain, in-process)) / steps: a system request crosses the HTTP layer once.
RESULTS.md explains the figures.

Usage::

    .venv/bin/python benchmarks/systems/run.py                 # all phases, ~5 minutes
    .venv/bin/python benchmarks/systems/run.py --phases fake --profile
    .venv/bin/python benchmarks/systems/run.py --after-ref HEAD   # a clean worktree of HEAD

Writes ``results.json`` and the generated part of ``RESULTS.md`` next to this file
(unless ``--out`` sends the JSON elsewhere, which also skips RESULTS.md).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
OVERHEAD = HERE.parent / "overhead"
WORK = HERE.parent / ".work"

# The overhead benchmark's helpers (nginx upstream, wrk, process control, CPU accounting).
sys.path.insert(0, str(OVERHEAD))
_spec = importlib.util.spec_from_file_location("overhead_run", OVERHEAD / "run.py")
assert _spec is not None and _spec.loader is not None
ov = importlib.util.module_from_spec(_spec)
sys.modules["overhead_run"] = ov
_spec.loader.exec_module(ov)
from _report import machine  # noqa: E402  (overhead/_report.py)

MODEL = ov.MODEL
START, END = "<!-- generated:start -->", "<!-- generated:end -->"


@dataclass(frozen=True)
class Target:
    """What one measured request is: its model name, its model calls and its steps, and
    the in-process baseline its model calls are compared with: ``plain`` (one call),
    ``plain*4`` (four plain requests one after the other, timed as one) or ``plain|4``
    (four at once). A baseline of the system's own shape matters: upstream latency is
    skewed, so the p50 of four calls in a row is not four times the p50 of one."""

    model: str
    calls: int
    steps: int
    base: str = "plain"


TARGETS: dict[str, Target] = {
    "plain": Target(MODEL, 1, 0),
    "chain1": Target("system/chain1", 1, 1),
    "chain4": Target("system/chain4", 4, 4, "plain*4"),
    "wide4": Target("system/wide4", 4, 5, "plain|4"),
    "mixed": Target("system/mixed", 1, 5),
}
SYSTEMS = [name for name, t in TARGETS.items() if t.steps]
#: In-process only: baselines made of several plain requests.
BASELINES = ["plain*4", "plain|4"]
#: Requests per turn when in-process targets take turns (set by --block).
BLOCK = 50
#: Set by --no-usage: the catalogs turn the usage store off (an experiment).
NO_USAGE = False
#: In-process targets with this prefix run over a FakeProvider (no network).
FAKE = "fake:"


def body(model: str) -> dict[str, Any]:
    return {**ov.REQUEST_BODY, "model": model}


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (0-100), nearest rank, of unsorted ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# --- the in-process worker (a child process; imports modelmix from PYTHONPATH) -----------


def worker(args: argparse.Namespace) -> None:
    """Time ``ChatService.complete`` (and the provider call alone) at concurrency 1."""
    import asyncio
    import gc

    import uvloop

    result = uvloop.run(_worker(args)) if hasattr(uvloop, "run") else asyncio.run(
        _worker(args))
    gc.collect()
    Path(args.worker_out).write_text(json.dumps(result))


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    """Targets take turns in blocks of ``args.block`` requests (so slow drifts of a shared
    machine hit them alike), ``args.n`` requests each per segment, ``args.rounds``
    segments (the spread of the per-segment figures is the noise). Per request: wall
    time, and wall time outside the upstream (the time no provider call was in flight)."""
    import gc

    import modelmix

    names = args.targets.split(",")
    upstream = _InFlight()
    services: dict[str, Any] = {}
    if any(not n.startswith(FAKE) for n in names):
        services[""] = _service(args.config, False, upstream)
    if any(n.startswith(FAKE) for n in names):
        services[FAKE] = _service(args.fake_config, True, upstream)
    calls = {n: _caller(n, services[FAKE if n.startswith(FAKE) else ""]) for n in names}
    for name in names:  # warm-up (connections, caches, first-call imports)
        for _ in range(args.warmup_n):
            await calls[name]()
    gc.collect()
    gc.freeze()  # as `modelmix serve` does
    segs = range(args.rounds)
    wall: dict[str, list[list[float]]] = {n: [[] for _ in segs] for n in names}
    own: dict[str, list[list[float]]] = {n: [[] for _ in segs] for n in names}
    cpu: dict[str, list[float]] = {n: [0.0 for _ in segs] for n in names}
    profilers: dict[str, Any] = {}
    if args.profile:  # one profile per target: <profile>-<target>.prof
        import cProfile

        profilers = {n: cProfile.Profile() for n in names}
    block = max(1, min(args.block, args.n))
    for seg in segs:
        for _ in range(max(1, args.n // block)):
            for name in names:
                with _profiling(profilers.get(name)):
                    c0 = time.process_time()
                    for _ in range(block):
                        upstream.reset()
                        t0 = time.perf_counter()
                        await calls[name]()
                        took = time.perf_counter() - t0
                        wall[name][seg].append(took * 1e6)
                        own[name][seg].append((took - upstream.busy) * 1e6)
                    cpu[name][seg] += time.process_time() - c0
    for name, profiler in profilers.items():
        profiler.dump_stats(f"{args.profile}-{name.replace(':', '-')}.prof")
    for service in services.values():
        await service.aclose()
    return {"modelmix_file": modelmix.__file__,
            "targets": {n: _stats(wall[n], own[n], cpu[n]) for n in names}}


def _service(path: str, fake: bool, upstream: _InFlight) -> Any:
    """The gateway's own ChatService (``create_app``'s, with its observers and the usage
    store), its provider timed by ``upstream``; over a FakeProvider when ``fake``."""
    from modelmix.catalog import load_config
    from modelmix.server import create_app
    from modelmix.store import build_usage_sink

    if os.environ.get("BENCH_TUNE") == "flat-jinja":
        _flat_jinja_globals()
    config = load_config(path)
    service = create_app(config, usage=build_usage_sink(config.store)).state.gateway.service
    if fake:  # no network: the service's and the systems' own Python work only
        from modelmix.testing import FakeProvider

        text = ov.UPSTREAM_BODY["choices"][0]["message"]["content"]
        fake_provider = FakeProvider(config.deployment(MODEL), reply=text, prompt_tokens=24)
        fake_provider.calls = _NoList()
        service.providers[MODEL] = fake_provider
    upstream.wrap(service.providers[MODEL])
    return service


def _flat_jinja_globals() -> None:
    """Experiment (``--tune flat-jinja``): give every compiled template and condition a
    plain dict of globals instead of Jinja2's ChainMap, which ``new_context`` copies key
    by key on every render (the fix proposed in RESULTS.md, applied from outside)."""
    from modelmix.systems import _expr

    def flatten(cls: Any, attr: str) -> None:
        init = cls.__init__
        if getattr(init, "_flat", False):
            return

        def __init__(self: Any, source: str) -> None:
            init(self, source)
            compiled = getattr(self, attr)
            template = getattr(compiled, "_template", compiled)  # TemplateExpression
            template.globals = dict(template.globals)

        __init__._flat = True  # type: ignore[attr-defined]
        cls.__init__ = __init__

    flatten(_expr.Template, "_template")
    flatten(_expr.Condition, "_run")


def _caller(name: str, service: Any) -> Any:
    """A coroutine function making one measured request of target ``name``."""
    import asyncio

    from modelmix.engine import CallContext
    from modelmix.protocol import ChatRequest

    bare = name.removeprefix(FAKE)
    request = ChatRequest.model_validate(body(TARGETS[bare].model if bare in TARGETS
                                              else MODEL))

    async def provider() -> None:
        await service.providers[MODEL].complete(request)

    async def one() -> None:
        done = await service.complete(request, CallContext())
        assert done.response.choices, done

    async def in_a_row() -> None:
        for _ in range(4):
            await service.complete(request, CallContext())

    async def at_once() -> None:
        await asyncio.gather(*(service.complete(request, CallContext()) for _ in range(4)))

    return {"provider": provider, "plain*4": in_a_row, "plain|4": at_once}.get(bare, one)


@contextlib.contextmanager
def _profiling(profiler: Any) -> Iterator[None]:
    if profiler is None:
        yield
        return
    profiler.enable()
    try:
        yield
    finally:
        profiler.disable()


def _stats(wall: list[list[float]], own: list[list[float]], cpu: list[float]
           ) -> dict[str, Any]:
    w = [x for seg in wall for x in seg]
    o = [x for seg in own for x in seg]
    return {
        "requests": len(w), "p50_us": round(pct(w, 50), 1), "p90_us": round(pct(w, 90), 1),
        "p99_us": round(pct(w, 99), 1), "mean_us": round(statistics.fmean(w), 1),
        "cpu_us_per_request": round(sum(cpu) / len(w) * 1e6, 1),
        "own_p50_us": round(pct(o, 50), 1),
        "round_p50_us": [round(statistics.median(seg), 1) for seg in wall],
        "round_own_p50_us": [round(statistics.median(seg), 1) for seg in own],
        "round_cpu_us": [round(c / max(1, len(seg)) * 1e6, 1)
                         for c, seg in zip(cpu, wall, strict=True)]}


class _InFlight:
    """Wraps providers' ``complete`` to measure, per request, the wall time during which
    at least one upstream call was in flight (concurrent calls overlap)."""

    def __init__(self) -> None:
        self.busy = 0.0
        self._open = 0
        self._since = 0.0

    def reset(self) -> None:
        self.busy, self._open = 0.0, 0

    def wrap(self, provider: Any) -> None:
        inner = provider.complete

        async def complete(request: Any) -> Any:
            if self._open == 0:
                self._since = time.perf_counter()
            self._open += 1
            try:
                return await inner(request)
            finally:
                self._open -= 1
                if self._open == 0:
                    self.busy += time.perf_counter() - self._since

        provider.complete = complete


class _NoList(list):  # type: ignore[type-arg]
    """FakeProvider keeps every request it got; not here (memory over many requests)."""

    def append(self, item: Any) -> None:
        pass


def run_worker(config: Path, targets: list[str], n: int, rounds: int, warmup: int,
               cpus: Any, src: Path | None, tmp: Path, profile: Path | None = None,
               fake_config: Path | None = None) -> dict[str, Any]:
    """Run the in-process worker in a child process on the gateway's CPU."""
    out = tmp / f"worker-{time.monotonic_ns()}.json"
    cmd = [*ov.Cpus.prefix(cpus.gateway), sys.executable, str(Path(__file__).resolve()),
           "--worker", "--config", str(config), "--targets", ",".join(targets),
           "--n", str(n), "--rounds", str(rounds), "--warmup-n", str(warmup),
           "--block", str(BLOCK),
           "--worker-out", str(out), *(["--profile-out", str(profile)] if profile else []),
           *(["--fake-config", str(fake_config)] if fake_config else [])]
    env = {**os.environ, "MODELMIX_MASTER_KEY": ov.MASTER_KEY}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    before = ov.CpuSnapshot.take(None)
    done = subprocess.run(cmd, cwd=tmp, env=env, capture_output=True, text=True)
    other = ov.CpuSnapshot.take(None).other_pct(before)
    if done.returncode != 0:
        raise SystemExit(f"in-process worker failed ({done.returncode}):\n"
                         f"{done.stdout[-2000:]}\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["other_cpu_pct"] = other
    return result


# --- the interleaved HTTP client (a child process on the load CPUs) -----------------------


def client(args: argparse.Namespace) -> None:
    """POST to several (gateway, model) targets at concurrency 1, taking turns in blocks;
    per target: latency percentiles over all requests and the p50 of each segment."""
    import uvloop

    spec = json.loads(Path(args.client_spec).read_text())
    Path(args.worker_out).write_text(json.dumps(uvloop.run(_client(args, spec))))


async def _client(args: argparse.Namespace, spec: dict[str, dict[str, str]]
                  ) -> dict[str, Any]:
    import aiohttp

    headers = {"Content-Type": "application/json",
               "Authorization": os.environ["BENCH_AUTH"]}
    sessions: dict[str, Any] = {}
    for t in spec.values():
        if t["url"] not in sessions:
            sessions[t["url"]] = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1), headers=headers)
    payload = {n: json.dumps(body(t["model"])).encode() for n, t in spec.items()}

    async def once(name: str) -> float:
        url = spec[name]["url"]
        t0 = time.perf_counter()
        async with sessions[url].post(url, data=payload[name]) as resp:
            await resp.read()
            took = time.perf_counter() - t0
            if resp.status != 200:
                raise SystemExit(f"{name}: HTTP {resp.status}")
        return took * 1e6

    for name in spec:
        for _ in range(args.warmup_n):
            await once(name)
    segs = range(args.rounds)
    lat: dict[str, list[list[float]]] = {n: [[] for _ in segs] for n in spec}
    block = max(1, min(args.block, args.n))
    for seg in segs:
        for _ in range(max(1, args.n // block)):
            for name in spec:
                for _ in range(block):
                    lat[name][seg].append(await once(name))
    for session in sessions.values():
        await session.close()
    out: dict[str, Any] = {}
    for name in spec:
        w = [x for seg in lat[name] for x in seg]
        out[name] = {"requests": len(w), "p50_us": round(pct(w, 50), 1),
                     "p90_us": round(pct(w, 90), 1), "p99_us": round(pct(w, 99), 1),
                     "round_p50_us": [round(statistics.median(seg), 1) for seg in lat[name]]}
    return out


def run_client(spec: dict[str, dict[str, str]], n: int, rounds: int, warmup: int,
               cpus: Any, tmp: Path) -> dict[str, Any]:
    spec_file, out = tmp / "client-spec.json", tmp / f"client-{time.monotonic_ns()}.json"
    spec_file.write_text(json.dumps(spec))
    cmd = [*ov.Cpus.prefix(cpus.load), sys.executable, str(Path(__file__).resolve()),
           "--client", str(spec_file), "--n", str(n), "--rounds", str(rounds),
           "--warmup-n", str(warmup), "--block", str(BLOCK), "--worker-out", str(out)]
    before = ov.CpuSnapshot.take(None)
    done = subprocess.run(cmd, cwd=tmp, capture_output=True, text=True,
                          env={**os.environ, "BENCH_AUTH": f"Bearer {ov.MASTER_KEY}"})
    other = ov.CpuSnapshot.take(None).other_pct(before)
    if done.returncode != 0:
        raise SystemExit(f"HTTP client failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                         f"{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(out.read_text())
    result["_other_cpu_pct"] = other
    return result


# --- gateways --------------------------------------------------------------------------


def write_catalog(tmp: Path, name: str, upstream: str, systems: bool) -> tuple[Path, str]:
    """A catalog (with or without the ``systems:`` section) and its SQLite URL."""
    db_url = f"sqlite:///{tmp / (name + '.db')}"
    text = ov.fill((HERE / "catalog.yaml.template").read_text(), {
        "model": MODEL, "upstream_model": ov.UPSTREAM_MODEL, "api_base": upstream,
        "db_url": db_url})
    if not systems:
        text = text.split("\nsystems:\n", 1)[0] + "\n"
    if NO_USAGE:
        text = text.replace("store:\n", "store:\n  enabled: false\n")
    path = tmp / f"{name}.yaml"
    path.write_text(text)
    return path, db_url


@contextlib.contextmanager
def gateway(name: str, config: Path, db_url: str, src: Path | None, tmp: Path, cpus: Any,
            ready_timeout: float) -> Iterator[tuple[str, int]]:
    """``modelmix serve`` (one uvicorn worker, master key, usage store on) on the gateway
    CPU; yields (base URL, pid)."""
    port = ov.free_port()
    cmd = [*ov.Cpus.prefix(cpus.gateway), sys.executable, "-m", "modelmix.cli", "serve",
           "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning",
           "--config", str(config)]
    env = {"MODELMIX_DB_URL": db_url, "MODELMIX_CONFIG": str(config),
           "MODELMIX_MASTER_KEY": ov.MASTER_KEY}
    if src is not None:
        env["PYTHONPATH"] = str(src)
    log = tmp / f"{name}.log"
    base = f"http://127.0.0.1:{port}"
    with ov.launched(name, cmd, log, env) as proc:
        ov.wait_ready(proc, base + "/health", log, ready_timeout)
        yield base, proc.pid


def check(base: str, model: str) -> None:
    """One real request: a 200 chat.completion with usage (and a steps header for a
    system)."""
    import urllib.request

    req = urllib.request.Request(
        base + "/v1/chat/completions", data=json.dumps(body(model)).encode(), method="POST",
        headers={"Content-Type": "application/json",
                 "Authorization": f"Bearer {ov.MASTER_KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            status, data, steps = resp.status, json.loads(resp.read()), resp.headers.get(
                "x-modelmix-steps")
    except urllib.error.HTTPError as exc:
        raise SystemExit(f"{base} {model}: {exc.code} {exc.read()[:500]!r}") from exc
    if status != 200 or data.get("object") != "chat.completion" or not data.get("usage"):
        raise SystemExit(f"{base} {model}: bad answer {status}: {data}")
    if model.startswith("system/") and not steps:
        raise SystemExit(f"{base} {model}: no x-modelmix-steps header")


def wrk_run(base: str, target: str, seconds: float, cpus: Any, tmp: Path, pid: int | None,
            quiet_wait: float) -> dict[str, Any]:
    """One wrk run at concurrency 1 (after waiting for a quiet machine), with the
    gateway's CPU per request and the CPU others used meanwhile."""
    body_file = tmp / f"body-{target}.json"
    if not body_file.exists():
        body_file.write_text(json.dumps(body(TARGETS[target].model)))
    ov.wait_quiet(quiet_wait)
    before = ov.CpuSnapshot.take(pid)
    load = ov.wrk(base + "/v1/chat/completions", 1, seconds, cpus, body_file)
    ov.CpuSnapshot.take(pid).annotate(before, load)
    if load.errors or load.non_2xx:
        raise SystemExit(f"{base} {target}: {load.errors} errors, {load.non_2xx} non-2xx")
    return {k: getattr(load, k) for k in ("requests", "p50_us", "p90_us", "p99_us",
                                           "p999_us", "mean_us", "cpu_us_per_request",
                                           "other_cpu_pct")}


def warm(base: str, target: str, seconds: float, cpus: Any, tmp: Path) -> None:
    body_file = tmp / f"body-{target}.json"
    body_file.write_text(json.dumps(body(TARGETS[target].model)))
    ov.wrk(base + "/v1/chat/completions", 1, seconds, cpus, body_file)


def combine(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Several wrk runs of one target: the median of each percentile over the runs, and
    every run's p50 (its spread is the noise)."""
    out: dict[str, Any] = {"runs": len(runs), "requests": sum(r["requests"] for r in runs)}
    for key in ("p50_us", "p90_us", "p99_us", "p999_us", "mean_us", "cpu_us_per_request"):
        vals = [r[key] for r in runs if r[key] is not None]
        out[key] = round(statistics.median(vals), 1) if vals else None
    out["round_p50_us"] = [r["p50_us"] for r in runs]
    out["other_cpu_pct_max"] = max(r["other_cpu_pct"] or 0 for r in runs)
    return out


# --- phases ----------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    cpus: Any
    tmp: Path
    upstream: str
    after_src: Path | None


def phase_inprocess(ctx: Ctx, fake: bool = False) -> dict[str, Any]:
    """``ChatService.complete`` at concurrency 1, targets interleaved in rounds; with
    ``fake``, over a FakeProvider (no network): CPU is then the whole cost."""
    a = ctx.args
    label = "fake" if fake else "in-process"
    config, _ = write_catalog(ctx.tmp, label, ctx.upstream, True)
    profile = WORK / f"systems-{label}" if a.profile else None
    prefix = FAKE if fake else ""
    res = run_worker(config, [prefix + n for n in ("provider", *TARGETS, *BASELINES)],
                     a.fake_n if fake else a.n, a.fake_rounds if fake else a.rounds,
                     a.warmup_n, ctx.cpus, ctx.after_src, ctx.tmp, profile,
                     fake_config=config if fake else None)
    res["targets"] = {n.removeprefix(FAKE): t for n, t in res["targets"].items()}
    for name, t in res["targets"].items():
        print(f"  {label} {name:<9} p50 {t['p50_us']:>8.1f} us  p99 {t['p99_us']:>8.1f}"
              f"  cpu/req {t['cpu_us_per_request']:>8.1f} us  round p50 {t['round_p50_us']}"
              f"  round cpu {t['round_cpu_us']}", flush=True)
    if profile:
        print(f"  profiles: {profile}-<target>.prof (timings above are under cProfile)")
    return res


def phase_http(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    config, db_url = write_catalog(ctx.tmp, "http", ctx.upstream, True)
    runs: dict[str, list[dict[str, Any]]] = {n: [] for n in TARGETS}
    with gateway("http", config, db_url, ctx.after_src, ctx.tmp, ctx.cpus,
                 a.ready_timeout) as (base, pid):
        for name, t in TARGETS.items():
            check(base, t.model)
            warm(base, name, a.warmup, ctx.cpus, ctx.tmp)
        for i in range(a.http_rounds):
            order = list(TARGETS) if i % 2 == 0 else list(reversed(TARGETS))
            for name in order:
                runs[name].append(wrk_run(base, name, a.duration, ctx.cpus, ctx.tmp, pid,
                                          a.quiet_wait))
        url = base + "/v1/chat/completions"
        spec = {n: {"url": url, "model": t.model} for n, t in TARGETS.items()}
        # nginx itself in the same turns: the client's and the upstream's share of the times
        spec["direct"] = {"url": ctx.upstream + "/chat/completions", "model": MODEL}
        turns = run_client(spec, a.client_n, a.rounds, a.warmup_n // 4, ctx.cpus, ctx.tmp)
    out: dict[str, Any] = {name: combine(r) for name, r in runs.items()}
    for name, t in out.items():
        t["turns"] = turns[name]
        print(f"  http {name:<9} wrk p50 {t['p50_us']:>8.1f} us  p99 {t['p99_us']:>8.1f}"
              f"  cpu/req {t['cpu_us_per_request']} us  rounds {t['round_p50_us']};  "
              f"in turns p50 {turns[name]['p50_us']:>8.1f} us  segments "
              f"{turns[name]['round_p50_us']}", flush=True)
    out["_turns_other_cpu_pct"] = turns["_other_cpu_pct"]
    out["_turns_direct"] = turns["direct"]
    print(f"  http direct (nginx)  in turns p50 {turns['direct']['p50_us']:>8.1f} us  segments "
          f"{turns['direct']['round_p50_us']}", flush=True)
    out["_usage_rows"] = ov.usage_note(Path(db_url.removeprefix("sqlite:///")))
    return out


def phase_ab(ctx: Ctx, before_src: Path) -> dict[str, Any]:
    """Plain requests: before systems, this build, this build with systems declared."""
    a = ctx.args
    builds = {"before": (before_src, False), "after": (ctx.after_src, False),
              "after+systems": (ctx.after_src, True)}
    configs = {n: write_catalog(ctx.tmp, f"ab-{n.replace('+', '-')}", ctx.upstream, s)
               for n, (_, s) in builds.items()}
    http_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in builds}
    with contextlib.ExitStack() as stack:
        bases = {}
        for n, (src, _) in builds.items():
            cfg, db = configs[n]
            bases[n] = stack.enter_context(gateway(f"ab-{n.replace('+', '-')}", cfg, db, src,
                                                   ctx.tmp, ctx.cpus, a.ready_timeout))
            check(bases[n][0], MODEL)
        for base, _ in bases.values():
            warm(base, "plain", a.warmup, ctx.cpus, ctx.tmp)
        for i in range(a.ab_rounds):
            order = list(builds) if i % 2 == 0 else list(reversed(builds))
            for n in order:
                base, pid = bases[n]
                r = wrk_run(base, "plain", a.ab_duration, ctx.cpus, ctx.tmp, pid,
                            a.quiet_wait)
                http_runs[n].append(r)
                print(f"  ab http  round {i} {n:<14} p50 {r['p50_us']:>6} us  p99 "
                      f"{r['p99_us']:>6} us  cpu/req {r['cpu_us_per_request']} us  other "
                      f"{r['other_cpu_pct']}%", flush=True)
        turns = run_client({n: {"url": base + "/v1/chat/completions", "model": MODEL}
                            for n, (base, _) in bases.items()},
                           a.ab_client_n, a.ab_rounds, a.warmup_n // 4, ctx.cpus, ctx.tmp)
        for n in builds:
            print(f"  ab http in turns {n:<14} p50 {turns[n]['p50_us']:>7.1f} us  p99 "
                  f"{turns[n]['p99_us']:>7.1f} us  segments {turns[n]['round_p50_us']}",
                  flush=True)
    inproc_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in builds}
    fake_runs: dict[str, list[dict[str, Any]]] = {n: [] for n in builds}
    for i in range(a.ab_rounds):
        order = list(builds) if i % 2 == 0 else list(reversed(builds))
        for n in order:
            src, with_systems = builds[n]
            fake_cfg, _ = write_catalog(ctx.tmp, f"ab-{n.replace('+', '-')}-fake",
                                        ctx.upstream, with_systems)
            r = run_worker(configs[n][0], ["plain", FAKE + "plain"], a.ab_n, 1, a.warmup_n,
                           ctx.cpus, src, ctx.tmp, fake_config=fake_cfg)
            for runs, key in ((inproc_runs, "plain"), (fake_runs, FAKE + "plain")):
                t = r["targets"][key]
                t["other_cpu_pct"] = r["other_cpu_pct"]
                t["modelmix_file"] = r["modelmix_file"]
                runs[n].append(t)
            real, fake = r["targets"]["plain"], r["targets"][FAKE + "plain"]
            print(f"  ab in-process round {i} {n:<14} p50 {real['p50_us']:>7.1f} us  cpu/req "
                  f"{real['cpu_us_per_request']:>7.1f} us; fake provider p50 "
                  f"{fake['p50_us']:>6.1f} us  cpu/req {fake['cpu_us_per_request']:>6.1f} us"
                  f"  other {r['other_cpu_pct']}%  ({Path(r['modelmix_file']).parents[2]})",
                  flush=True)
    return {"http": {n: {"summary": combine(r), "runs": r} for n, r in http_runs.items()},
            "http_turns": {n: {"summary": turns[n], "runs": [{"p50_us": x} for x in
                                                             turns[n]["round_p50_us"]]}
                           for n in builds},
            "http_turns_other_cpu_pct": turns["_other_cpu_pct"],
            "inprocess": {n: {"runs": r} for n, r in inproc_runs.items()},
            "fake": {n: {"runs": r} for n, r in fake_runs.items()}}


# --- analysis --------------------------------------------------------------------------


def per_step(inproc: dict[str, Any] | None, http: dict[str, Any] | None,
             fake: dict[str, Any] | None = None) -> dict[str, dict[str, Any]]:
    """Per-step overhead of each system (µs): (system - its baseline) / steps, where the
    baseline is the same model calls made as plain requests (``Target.base``).

    - ``fake_*`` / ``inprocess_*``: in-process, over a fake / the nginx upstream; ``p50``
      on wall time, ``own_p50`` on wall time outside the upstream (no provider call in
      flight), ``cpu`` on the process's CPU time (usage writer thread included).
    - ``http_*``: end to end through ``modelmix serve``: (p50 system - p50 plain) minus
      what the system's extra model calls cost in-process (baseline - plain), / steps;
      p50s from the client that takes turns (``http_wrk_*``: from wrk's runs).
    - ``http_naive_*``: (p50 system - calls x p50 plain) / steps over HTTP: subtracts the
      HTTP layer once per model call though a system request crosses it once, and ignores
      the skew of upstream latency; shown only for comparison.
    """
    out: dict[str, dict[str, Any]] = {}
    for name in SYSTEMS:
        t = TARGETS[name]
        row: dict[str, Any] = {"model_calls": t.calls, "steps": t.steps, "baseline": t.base}
        for view, res in (("inprocess", inproc), ("fake", fake)):
            if not res:
                continue
            base, sysm = res["targets"][t.base], res["targets"][name]
            row[f"{view}_p50_us"] = sysm["p50_us"]
            for key, field in (("p50", "p50_us"), ("own_p50", "own_p50_us"),
                               ("cpu", "cpu_us_per_request")):
                row[f"{view}_per_step_{key}_us"] = round(
                    (sysm[field] - base[field]) / t.steps, 1)
            for key, field in (("own_p50", "round_own_p50_us"), ("p50", "round_p50_us")):
                # the same for each segment of the run (the spread is the noise)
                row[f"{view}_per_step_round_{key}_us"] = [
                    round((x - b) / t.steps, 1) for x, b in
                    zip(sysm[field], base[field], strict=True)]
        if http:
            plain, sysm = http["plain"], http[name]
            p50 = {k: (v.get("turns") or v)["p50_us"] for k, v in (("plain", plain),
                                                                  ("sys", sysm))}
            row["http_p50_us"] = p50["sys"]
            if inproc:
                ip = inproc["targets"]
                extra = {f: ip[t.base][f] - ip["plain"][f]
                         for f in ("p50_us", "cpu_us_per_request")}
                row["http_per_step_p50_us"] = round(
                    (p50["sys"] - p50["plain"] - extra["p50_us"]) / t.steps, 1)
                row["http_wrk_per_step_p50_us"] = round(
                    (sysm["p50_us"] - plain["p50_us"] - extra["p50_us"]) / t.steps, 1)
                row["http_per_step_cpu_us"] = round(
                    (sysm["cpu_us_per_request"] - plain["cpu_us_per_request"]
                     - extra["cpu_us_per_request"]) / t.steps, 1)
            row["http_naive_per_step_p50_us"] = round(
                (p50["sys"] - t.calls * p50["plain"]) / t.steps, 1)
        out[name] = row
    return out


def ab_summary(ab: dict[str, Any]) -> dict[str, Any]:
    """Median of each build's runs, and the paired (same round) differences."""
    out: dict[str, Any] = {}
    for view, key in (("http_turns", "p50_us"),
                      ("http", "p50_us"), ("http_cpu", "cpu_us_per_request"),
                      ("inprocess", "p50_us"), ("inprocess_cpu", "cpu_us_per_request"),
                      ("fake", "p50_us"), ("fake_cpu", "cpu_us_per_request")):
        src = ab[view.removesuffix("_cpu")]
        vals = {n: [r[key] for r in v["runs"]] for n, v in src.items()}
        row: dict[str, Any] = {n: {"median": round(statistics.median(v), 1),
                                   "min": min(v), "max": max(v)} for n, v in vals.items()}
        for other in ("after", "after+systems"):
            diffs = [round(x - b, 1) for x, b in zip(vals[other], vals["before"], strict=True)]
            row[f"{other} - before"] = {
                "median_diff": round(statistics.median(vals[other])
                                     - statistics.median(vals["before"]), 1),
                "paired_diffs": diffs,
                "paired_median": round(statistics.median(diffs), 1),
                # noise: the spread of the same build over the rounds
                "noise_before_range": round(max(vals["before"]) - min(vals["before"]), 1),
                "noise_after_range": round(max(vals[other]) - min(vals[other]), 1),
                "pct_of_before": round((statistics.median(vals[other])
                                        / statistics.median(vals["before"]) - 1) * 100, 1)}
        out[view] = row
    return out


# --- report ----------------------------------------------------------------------------


def markdown(report: dict[str, Any]) -> str:
    m = report["machine"]
    lines = [f"Run: {report['date']}, modelmix at {report['modelmix_commit']}"
             f"{' (after = ' + report['after_src'] + ')' if report.get('after_src') else ''}"
             f", before = {report.get('before_ref') or '-'}. {report['settings']}", "",
             f"Command: `{report['command']}`", "",
             f"Machine: {m['cpu_model']}, `nproc` = {report['nproc']} ({m['cpus_usable']} "
             f"usable), {m['ram_gib']} GiB RAM, {m['os']}, kernel {m['kernel']}, Python "
             f"{m['python']}, {m['nginx']}, wrk {m['wrk']}.", ""]
    fk, ip, http = report.get("fake"), report.get("inprocess"), report.get("http")
    if fk or ip or http:
        lines += ["| request | model calls | steps | fake upstream p50 µs | fake upstream CPU "
                  "µs/req | in-process p50 µs | in-process p99 µs | in-process CPU µs/req "
                  "| HTTP p50 µs, wrk | HTTP p99 µs, wrk | HTTP p50 µs, in turns "
                  "| gateway CPU µs/req, wrk |",
                  "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: "
                  "| ---: |"]
        for name in ["provider", *TARGETS, *BASELINES]:
            t = TARGETS.get(name)
            f = (fk or {}).get("targets", {}).get(name, {})
            i = (ip or {}).get("targets", {}).get(name, {})
            h = (http or {}).get(name, {})
            label = {"provider": "provider call alone (no service)",
                     "plain": f"plain (`{MODEL}` by name)",
                     "plain*4": "baseline: 4 plain requests one after another",
                     "plain|4": "baseline: 4 plain requests at once"}.get(
                         name, f"`system/{name}`")
            calls = t.calls if t else (4 if name in BASELINES else 1)
            lines.append(
                f"| {label} | {calls} | {t.steps if t else '-'} | "
                f"{_f(f.get('p50_us'))} | {_f(f.get('cpu_us_per_request'))} | "
                f"{_f(i.get('p50_us'))} | {_f(i.get('p99_us'))} | "
                f"{_f(i.get('cpu_us_per_request'))} | {_f(h.get('p50_us'))} | "
                f"{_f(h.get('p99_us'))} | {_f((h.get('turns') or {}).get('p50_us'))} | "
                f"{_f(h.get('cpu_us_per_request'))} |")
        direct = (http or {}).get("_turns_direct")
        if direct:
            lines += ["", f"nginx called directly by the same HTTP client, in the same turns: "
                      f"p50 {_f(direct['p50_us'])} µs (segments "
                      f"{', '.join(_f(x) for x in direct['round_p50_us'])}): the client's and "
                      "the upstream's part of the HTTP times."]
        others = [f"{label} {v}%" for label, v in (
            ("fake", (fk or {}).get("other_cpu_pct")),
            ("in-process", (ip or {}).get("other_cpu_pct")),
            ("HTTP wrk runs (max)", max((r.get("other_cpu_pct_max") or 0)
                                       for r in (http or {}).values()
                                       if isinstance(r, dict)) if http else None),
            ("HTTP in turns", (http or {}).get("_turns_other_cpu_pct")),
            ("A/B HTTP in turns", (report.get("ab") or {}).get("http_turns_other_cpu_pct")),
            ("A/B in-process (max)", max((r.get("other_cpu_pct") or 0)
                                        for v in (report.get("ab") or {}).get("inprocess", {})
                                        .values() for r in v["runs"])
             if report.get("ab") else None))
            if v is not None]
        lines += ["", "CPU used by other processes during the runs (100% = one core): "
                  + ", ".join(others) + ".", ""]
        lines += ["Overhead per step, µs: (system - the same model calls as plain requests) / "
                  "steps (target: ≤ 1,000 µs per step at p50; `≤ 1 ms` says whether the "
                  "in-process p50 views and the HTTP p50 view all meet it):", "",
                  "| system | calls / steps | fake upstream p50 | fake upstream CPU "
                  "| in-process p50 | in-process p50 outside the upstream (each segment) "
                  "| in-process CPU | HTTP p50 | HTTP gateway CPU | HTTP p50, naive "
                  "| ≤ 1 ms |",
                  "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: "
                  "| --- |"]
        for name, r in report["per_step"].items():
            judged = [v for k, v in r.items() if k in (
                "inprocess_per_step_p50_us", "inprocess_per_step_own_p50_us",
                "http_per_step_p50_us")]
            met = "-" if not judged else ("yes" if max(judged) <= 1000 else "NO")
            segs = ", ".join(_f(x) for x in r.get("inprocess_per_step_round_own_p50_us", []))
            lines.append(
                f"| `system/{name}` | {r['model_calls']} / {r['steps']} | "
                f"{_f(r.get('fake_per_step_p50_us'))} | {_f(r.get('fake_per_step_cpu_us'))} | "
                f"{_f(r.get('inprocess_per_step_p50_us'))} | "
                f"{_f(r.get('inprocess_per_step_own_p50_us'))} ({segs}) | "
                f"{_f(r.get('inprocess_per_step_cpu_us'))} | "
                f"{_f(r.get('http_per_step_p50_us'))} | {_f(r.get('http_per_step_cpu_us'))} | "
                f"{_f(r.get('http_naive_per_step_p50_us'))} | {met} |")
        lines.append("")
    ab = report.get("ab_summary")
    if ab:
        lines += ["Plain requests, before systems vs this build (interleaved rounds; "
                  "µs; median of the rounds [min-max]):", "",
                  "| view | before | after | after, systems in catalog | after - before "
                  "(paired median; per round) | after+systems - before (paired median; "
                  "per round) |", "| --- | ---: | ---: | ---: | --- | --- |"]
        for view, label in (("http_turns", "HTTP p50, builds taking turns (segments)"),
                            ("http", "HTTP p50, wrk runs"),
                            ("http_cpu", "HTTP gateway CPU µs/req, wrk runs"),
                            ("inprocess", "in-process p50"),
                            ("inprocess_cpu", "in-process CPU µs/req"),
                            ("fake", "in-process p50, fake provider"),
                            ("fake_cpu", "in-process CPU µs/req, fake provider")):
            row = ab[view]
            cells = [f"{_f(row[n]['median'])} [{_f(row[n]['min'])}-{_f(row[n]['max'])}]"
                     for n in ("before", "after", "after+systems")]
            diffs = [f"{_f(row[k]['median_diff'])} ({row[k]['pct_of_before']:+.1f}%; "
                     f"paired {_f(row[k]['paired_median'])}: "
                     f"{', '.join(_f(x) for x in row[k]['paired_diffs'])})"
                     for k in ("after - before", "after+systems - before")]
            lines.append(f"| {label} | {' | '.join(cells)} | {' | '.join(diffs)} |")
        lines.append("")
    if http:
        lines.append(f"HTTP gateway's usage store after the run: {http.get('_usage_rows')}")
        lines.append("")
    return "\n".join(lines)


def _f(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float | int):
        return f"{v:,.1f}" if abs(v) < 10_000 else f"{v:,.0f}"
    return str(v)


def write_markdown(path: Path, block: str) -> None:
    text = path.read_text() if path.exists() else f"# Systems overhead\n\n{START}\n{END}\n"
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    path.write_text(f"{head}{START}\n\n{block}\n{END}{tail}")


# --- main ------------------------------------------------------------------------------


def worktree(ref: str, where: Path) -> Path:
    """A git worktree of ``ref`` at ``where`` (created when missing); returns its src."""
    sha = subprocess.run(["git", "rev-parse", ref], cwd=ROOT, capture_output=True,
                         text=True, check=True).stdout.strip()
    if not (where / ".git").exists():
        subprocess.run(["git", "worktree", "add", "--detach", str(where), sha], cwd=ROOT,
                       check=True, capture_output=True)
    have = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                          text=True, check=True).stdout.strip()
    if have != sha:
        raise SystemExit(f"{where} is at {have[:7]}, not {ref} ({sha[:7]}); remove it "
                         f"(git worktree remove {where}) or pass another directory")
    return where / "src"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--phases", default="fake,inprocess,http,ab",
                   type=lambda s: s.split(","), help="of fake, inprocess, http, ab")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds (in-process, "
                   "http)")
    p.add_argument("--n", type=int, default=1000, help="in-process requests per target "
                   "and round")
    p.add_argument("--client-n", type=int, default=300,
                   help="http: requests per target and segment for the HTTP client that "
                   "interleaves targets (p50s for the per-step figures)")
    p.add_argument("--block", type=int, default=50,
                   help="in-process: requests per turn (targets take turns in blocks)")
    p.add_argument("--fake-n", type=int, default=1000, help="fake-provider requests per "
                   "target and round")
    p.add_argument("--fake-rounds", type=int, default=5)
    p.add_argument("--warmup-n", type=int, default=200, help="in-process warm-up requests")
    p.add_argument("--http-rounds", type=int, default=3,
                   help="http: interleaved rounds (order reversed every other round)")
    p.add_argument("--duration", type=float, default=2.0, help="seconds per wrk run (http)")
    p.add_argument("--warmup", type=float, default=2.0, help="seconds of wrk warm-up")
    p.add_argument("--ab-rounds", type=int, default=4)
    p.add_argument("--ab-duration", type=float, default=2.0)
    p.add_argument("--ab-n", type=int, default=1500)
    p.add_argument("--ab-client-n", type=int, default=800,
                   help="A/B: requests per build and segment for the HTTP client that "
                   "interleaves the builds")
    p.add_argument("--before-ref", default="a52cda6",
                   help="the build before systems (the commit before 'systems of models: "
                   "spec ...')")
    p.add_argument("--before-dir", type=Path, default=Path("/tmp/mm-before"))
    p.add_argument("--after-ref", default=None,
                   help="measure a clean worktree of this ref (default: this checkout)")
    p.add_argument("--after-dir", type=Path, default=Path("/tmp/mm-after"))
    p.add_argument("--quiet-wait", type=float, default=2.0,
                   help="seconds to wait for other processes to go quiet before each run")
    p.add_argument("--no-pin", dest="pin", action="store_false")
    p.add_argument("--nice", type=int, default=0,
                   help="run the benchmark's processes at this nice level (e.g. -10, as "
                   "root: ahead of other jobs on a shared machine)")
    p.add_argument("--tune", choices=["flat-jinja"], default=None,
                   help="experiment: patch the build under test from outside (see "
                   "RESULTS.md); in-process phases only")
    p.add_argument("--no-usage", dest="usage", action="store_false",
                   help="turn the usage store off in every catalog (experiment: what the "
                   "extra usage rows of a system cost)")
    p.add_argument("--profile", action="store_true",
                   help="cProfile the in-process runs, one file per target (benchmarks/"
                   ".work/systems-inprocess-<target>.prof); their timings are inflated")
    p.add_argument("--ready-timeout", type=float, default=120.0)
    p.add_argument("--out", type=Path, default=None)
    # the in-process worker (internal)
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--client", dest="client_spec", help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--targets", help=argparse.SUPPRESS)
    p.add_argument("--worker-out", help=argparse.SUPPRESS)
    p.add_argument("--profile-out", dest="profile_path", help=argparse.SUPPRESS)
    p.add_argument("--fake-config", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.worker:
        args.profile = args.profile_path
        worker(args)
        return
    if args.client_spec:
        client(args)
        return
    ov.prerequisites(False)
    global NO_USAGE, BLOCK
    NO_USAGE, BLOCK = not args.usage, args.block
    started = time.monotonic()
    cpus = ov.Cpus.plan(args.pin)
    if cpus.load:
        os.sched_setaffinity(0, cpus.load)
    if args.tune:  # read by the in-process workers
        os.environ["BENCH_TUNE"] = args.tune
    if args.nice:  # inherited by nginx, the gateways, wrk and the workers
        os.setpriority(os.PRIO_PROCESS, 0, args.nice)
    after_src = worktree(args.after_ref, args.after_dir) if args.after_ref else None
    before_src = worktree(args.before_ref, args.before_dir) if "ab" in args.phases else None
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="modelmix-systems-bench-") as tmp_name:
        tmp = Path(tmp_name)
        with ov.nginx_upstream(tmp, cpus) as upstream:
            ctx = Ctx(args, cpus, tmp, upstream, after_src)
            if "fake" in args.phases:
                print("[fake]", flush=True)
                report["fake"] = phase_inprocess(ctx, fake=True)
            if "inprocess" in args.phases:
                print("[inprocess]", flush=True)
                report["inprocess"] = phase_inprocess(ctx)
            if "http" in args.phases:
                print("[http]", flush=True)
                report["http"] = phase_http(ctx)
            if "ab" in args.phases:
                print("[ab]", flush=True)
                assert before_src is not None
                report["ab"] = phase_ab(ctx, before_src)
        dest = WORK / "logs"
        dest.mkdir(parents=True, exist_ok=True)
        for log in tmp.glob("*.log"):
            log.replace(dest / f"systems-{log.name}")
    report["per_step"] = per_step(report.get("inprocess"), report.get("http"),
                                  report.get("fake"))
    if "ab" in report:
        report["ab_summary"] = ab_summary(report["ab"])
    pin = (f"gateway / in-process worker pinned to CPU {cpus.gateway}, nginx + wrk to CPU "
           f"{cpus.load}" if cpus.gateway else "no CPU pinning")
    report = {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python", "benchmarks/systems/run.py", *sys.argv[1:]]),
        "modelmix_commit": ov.git_commit(),
        "after_src": str(after_src) + f" ({args.after_ref})" if after_src else None,
        "before_ref": args.before_ref if "ab" in args.phases else None,
        "settings": (f"Concurrency 1 throughout; in-process: {args.rounds} segments x "
                     f"{args.n} requests per target (fake upstream: {args.fake_rounds} x "
                     f"{args.fake_n}), targets taking turns in blocks of {args.block}, "
                     f"after {args.warmup_n} of warm-up each; "
                     f"HTTP: {args.http_rounds} rounds x {args.duration:g} s wrk per target "
                     f"after {args.warmup:g} s warm-up; A/B: {args.ab_rounds} rounds x "
                     f"{args.ab_duration:g} s wrk and {args.ab_n} in-process requests per "
                     f"build; {pin}; nice {args.nice}; usage store (SQLite) "
                     f"{'' if not args.tune else '(tune: ' + args.tune + ') '}"
                     f"{'on' if args.usage else 'OFF'}; `--quiet-wait "
                     f"{args.quiet_wait:g}`. Full run took "
                     f"{time.monotonic() - started:.0f} s."),
        "nproc": os.cpu_count(),
        "machine": machine(len(os.sched_getaffinity(0)) if not cpus.load else
                           len(cpus.load) + len(cpus.gateway or []),
                           WORK / "none", WORK / "none"),
        "targets": {n: {"model": t.model, "model_calls": t.calls, "steps": t.steps}
                    for n, t in TARGETS.items()},
        **report,
    }
    out = args.out or HERE / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.out is None:
        write_markdown(HERE / "RESULTS.md", markdown(report))
    for name, r in report["per_step"].items():
        print(f"  per step {name:<7} fake p50 {r.get('fake_per_step_p50_us')}  in-process p50 "
              f"{r.get('inprocess_per_step_p50_us')} (outside the upstream "
              f"{r.get('inprocess_per_step_own_p50_us')})  HTTP p50 "
              f"{r.get('http_per_step_p50_us')}  (us)")
    print(f"wrote {out} in {time.monotonic() - started:.0f} s")


if __name__ == "__main__":
    main()
