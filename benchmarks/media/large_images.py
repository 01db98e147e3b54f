"""Large images through the gateway: added latency and the gateway's peak memory.

The question (LiteLLM's users report base64 images slowing its proxy to 10 s+): what does
``modelmix serve`` add, in time and memory, when many requests carry large base64 images?

- Images: PNGs of seeded numpy noise (incompressible, so the file is about width x height
  x 3 bytes), sized to about 1.0 MB and 9.5 MB, generated here; sent as
  ``data:image/png;base64,...`` in an ``image_url`` part after a short text part.
- Upstream: a small aiohttp server in its own process on loopback that reads the whole
  request body and answers one fixed ``chat.completion`` (with ``usage``); nothing else.
- Gateway: ``python -m modelmix serve`` in its own process (one uvicorn worker, a master
  key), a catalog written to a temporary folder with one deployment ``vision``
  (``openai-compatible`` on the upstream, ``input_modalities: [text, image]``),
  ``server.max_body_bytes`` 64 MiB, usage logged to SQLite in that folder, no policy.
  A FRESH gateway per image size: ``VmHWM`` (peak RSS, read from /proc) is the process's
  lifetime peak. Idle RSS is read after start-up, before any request.
- Load: ``--concurrency`` requests (20) sent at once (asyncio + httpx, each request its
  own pre-built body bytes), ``--rounds`` rounds (5), direct to the upstream and through
  the gateway, taking turns. Per-request latency p50 / p95; added = gateway p50 - direct
  p50.
- With a data policy (``--policy healthcare``) the gateway reads images (OCR) before
  screening them: measured separately, 1 MB image, fewer requests, and skipped with a
  message when ``modelmix.media.MediaReader`` is not installed.
- Memory profile (9.5 MB image): an in-process harness (``--profile-worker``) drives the
  gateway's ASGI app (``create_app``, the same catalog, uvloop) with the body in 64 KiB
  chunks as uvicorn delivers it, against the same upstream, under ``tracemalloc``; probes
  at each stage of the request path record the memory traced, the peak since the
  previous probe and every live block of 1 MiB or more with the line that allocated it.

Usage::

    .venv/bin/python benchmarks/media/large_images.py              # about 2 minutes
    .venv/bin/python benchmarks/media/large_images.py --rounds 3 --no-profile
    # experiments: the gateway's environment (malloc settings...); --out leaves
    # results.json / RESULTS.md alone. experiments/*.json hold the runs that measured
    # the memory changes before they were built in (RESULTS.md, "Before and after"),
    # made with a patch script of the pre-change code, removed once the changes landed.
    .venv/bin/python benchmarks/media/large_images.py --sizes 9.5MB --rounds 3 --no-policy \
        --no-profile --gateway-env MALLOC_ARENA_MAX=2 --out /tmp/arena.json

Writes ``results.json`` and the generated part of the "Large images through the gateway"
section of ``RESULTS.md`` next to this file (``--out`` sends the JSON elsewhere and leaves
RESULTS.md alone).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import datetime as dt
import importlib.util
import io
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
RESULTS_JSON = HERE / "results.json"
RESULTS_MD = HERE / "RESULTS.md"
sys.path.insert(0, str(HERE))

# CPU pinning and free ports: the overhead benchmark's helpers, loaded as
# benchmarks/systems/run.py loads them.
_spec = importlib.util.spec_from_file_location("overhead_run",
                                               HERE.parent / "overhead" / "run.py")
assert _spec is not None and _spec.loader is not None
_overhead = importlib.util.module_from_spec(_spec)
sys.path.insert(0, str(HERE.parent / "overhead"))
sys.modules["overhead_run"] = _overhead
_spec.loader.exec_module(_overhead)
Cpus = _overhead.Cpus
free_port = _overhead.free_port

MASTER_KEY = "sk-bench-large-images"
DEPLOYMENT = "vision"
UPSTREAM_MODEL = "fixed-vision"
#: Target encoded sizes (bytes) of the test images, by label.
SIZES = {"1MB": 1_000_000, "9.5MB": 9_500_000}
SEED = 20240607
#: The issue's target: the gateway's peak RSS with 20 concurrent 9.5 MB images.
TARGET_PEAK_MB = 250.0
TARGET_SIZE, TARGET_CONCURRENCY = "9.5MB", 20
MAX_BODY_BYTES = 64 * 1024 * 1024

UPSTREAM_BODY = json.dumps({
    "id": "chatcmpl-large-images", "object": "chat.completion", "created": 1700000000,
    "model": UPSTREAM_MODEL,
    "choices": [{"index": 0, "finish_reason": "stop",
                 "message": {"role": "assistant", "content": "Random noise, no text."}}],
    "usage": {"prompt_tokens": 1105, "completion_tokens": 6, "total_tokens": 1111},
}).encode()

CATALOG = """\
# Written by benchmarks/media/large_images.py
deployments:
  - name: {deployment}
    provider: openai-compatible
    base_url: {base_url}
    model: {upstream_model}
    input_modalities: [text, image]
server:
  max_body_bytes: {max_body}
store:
  url: {db_url}
"""


# --- images and bodies -----------------------------------------------------------------


def noise_png(target: int, seed: int = SEED) -> bytes:
    """A PNG of seeded RGB noise whose file is within 0.5% of ``target`` bytes. Noise
    does not compress: a row costs 3 x width + 1 (filter byte) bytes plus zlib framing."""
    import numpy as np
    from PIL import Image

    width = max(8, int((target / 3) ** 0.5))
    height = max(1, round(target / (3 * width + 1)))
    rng = np.random.default_rng(seed)
    for _ in range(4):
        pixels = rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8)
        out = io.BytesIO()
        Image.fromarray(pixels, "RGB").save(out, format="PNG")
        data = out.getvalue()
        if abs(len(data) - target) <= target * 0.005:
            return data
        height = max(1, height + round((target - len(data)) / (3 * width + 1)))
    return data


def chat_bodies(png: bytes, n: int) -> list[bytes]:
    """``n`` request bodies (distinct bytes objects, as ``n`` clients would send), each a
    short text part and the image as a base64 data URL."""
    b64 = base64.b64encode(png)
    out = []
    for i in range(n):
        body = {"model": DEPLOYMENT, "max_tokens": 16, "messages": [{"role": "user", "content": [
            {"type": "text", "text": f"What does this image show? (request {i})"},
            {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]}
        head, tail = json.dumps(body).encode().split(b"@@")
        out.append(head + b64 + tail)
    return out


# --- the fixed upstream (a child process) ------------------------------------------------


def upstream_main(port: int) -> None:
    """Read the whole body, answer the fixed completion (the body's size in a header)."""
    from aiohttp import web

    async def chat(request: web.Request) -> web.Response:
        size = len(await request.read())
        return web.Response(body=UPSTREAM_BODY, content_type="application/json",
                            headers={"x-upstream-body-bytes": str(size)})

    async def health(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    app = web.Application(client_max_size=256 * 1024 * 1024)
    app.router.add_post("/v1/chat/completions", chat)
    app.router.add_get("/health", health)
    web.run_app(app, host="127.0.0.1", port=port, access_log=None, print=None)


# --- processes -------------------------------------------------------------------------


@contextlib.contextmanager
def launched(cmd: list[str], log: Path, env: dict[str, str], ready_url: str,
             timeout: float = 120.0) -> Iterator[subprocess.Popen[bytes]]:
    """Run ``cmd`` in its own session until ``ready_url`` answers 200; stop it on exit."""
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
                                start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while not _answers(ready_url):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{cmd[-1]}: not ready ({proc.poll()}); {log}:\n"
                                 + log.read_text(errors="replace")[-3000:])
            time.sleep(0.1)
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:
            return bool(resp.status == 200)
    except OSError:
        return False


def proc_status(pid: int) -> dict[str, float]:
    """VmRSS and VmHWM (the lifetime peak RSS) of ``pid``, in MB (10^6 bytes)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024 / 1e6
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def busy_seconds() -> float:
    """CPU time all processes of the machine have used (``/proc/stat``: all but idle and
    iowait)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


class OtherCpu:
    """The CPU processes outside the benchmark used meanwhile (100 = one core busy): the
    machine's busy time less the gateway's, the upstream's and this client's."""

    def __init__(self, pids: list[int]):
        self.pids = pids
        self.t0, self.busy0, self.ours0 = time.monotonic(), busy_seconds(), self._ours()

    def _ours(self) -> float:
        t = os.times()
        return sum(cpu_seconds(p) for p in self.pids) + t.user + t.system

    def pct(self) -> float:
        other = (busy_seconds() - self.busy0) - (self._ours() - self.ours0)
        return round(max(0.0, other) / (time.monotonic() - self.t0) * 100, 1)


def settled_rss(pid: int, timeout: float = 30.0) -> float:
    """VmRSS once it has not moved for 2 s (background warm-up done), in MB."""
    last, since = -1.0, time.monotonic()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rss = proc_status(pid)["VmRSS"]
        if abs(rss - last) > 0.2:
            last, since = rss, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            break
        time.sleep(0.25)
    return last


def gateway_env(tmp: Path, extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "MODELMIX_POLICY"}
    env.update({"MODELMIX_MASTER_KEY": MASTER_KEY, "MODELMIX_DB_URL": _db_url(tmp),
                "PYTHONPATH": str(ROOT / "src")})
    env.update(extra)
    return env


def _db_url(tmp: Path) -> str:
    return f"sqlite:///{tmp / 'usage.db'}"


def write_catalog(tmp: Path, upstream: str) -> Path:
    path = tmp / "catalog.yaml"
    path.write_text(CATALOG.format(deployment=DEPLOYMENT, base_url=upstream + "/v1",
                                   upstream_model=UPSTREAM_MODEL, max_body=MAX_BODY_BYTES,
                                   db_url=_db_url(tmp)))
    return path


@contextlib.contextmanager
def gateway(ctx: Ctx, name: str, policy: str | None) -> Iterator[tuple[str, int]]:
    """A fresh ``python -m modelmix serve`` on the gateway CPU; yields (base URL, pid)."""
    port = free_port()
    serve = ["-m", "modelmix"]
    cmd = [*Cpus.prefix(ctx.cpus.gateway), sys.executable, *serve, "serve",
           "--config", str(ctx.catalog), "--host", "127.0.0.1", "--port", str(port),
           "--log-level", "warning", *(["--policy", policy] if policy else [])]
    base = f"http://127.0.0.1:{port}"
    env = gateway_env(ctx.tmp, ctx.extra_env)
    env["MODELMIX_DB_URL"] = f"sqlite:///{ctx.tmp / (name + '.db')}"  # a database per gateway
    with launched(cmd, ctx.tmp / f"{name}.log", env, base + "/health") as proc:
        yield base, proc.pid


# --- load --------------------------------------------------------------------------------


@dataclass
class Batch:
    latencies_ms: list[float]
    wall_ms: float
    statuses: dict[int, int]
    conversions: set[str]


async def _send_batch(url: str, bodies: list[bytes], timeout: float) -> Batch:
    """POST every body at once, one connection each; per-request latency to the last
    byte of the answer."""
    import httpx

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {MASTER_KEY}"}
    limits = httpx.Limits(max_connections=len(bodies), max_keepalive_connections=len(bodies))
    statuses: dict[int, int] = {}
    conversions: set[str] = set()
    async with httpx.AsyncClient(limits=limits, timeout=timeout) as client:
        async def one(body: bytes) -> float:
            t0 = time.perf_counter()
            resp = await client.post(url, content=body, headers=headers)
            took = (time.perf_counter() - t0) * 1000
            statuses[resp.status_code] = statuses.get(resp.status_code, 0) + 1
            if resp.status_code != 200:
                print(f"    {resp.status_code}: {resp.text[:300]}", flush=True)
            elif json.loads(resp.content).get("usage") is None:
                raise SystemExit(f"{url}: an answer without usage")
            conversions.add(resp.headers.get("x-modelmix-conversions", ""))
            return took

        t0 = time.perf_counter()
        lat = await asyncio.gather(*(one(b) for b in bodies))
        wall = (time.perf_counter() - t0) * 1000
    return Batch(list(lat), wall, statuses, conversions)


def send_batch(url: str, bodies: list[bytes], timeout: float = 600.0) -> Batch:
    return asyncio.run(_send_batch(url, bodies, timeout))


def pct(values: list[float], q: float) -> float:
    """The q-th percentile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, -(-len(ordered) * q // 100) - 1))]


def summarise(batches: list[Batch]) -> dict[str, Any]:
    lat = [x for b in batches for x in b.latencies_ms]
    statuses: dict[str, int] = {}
    for b in batches:
        for code, n in b.statuses.items():
            statuses[str(code)] = statuses.get(str(code), 0) + n
    return {"requests": len(lat), "p50_ms": round(pct(lat, 50), 1),
            "p95_ms": round(pct(lat, 95), 1), "max_ms": round(max(lat), 1),
            "mean_ms": round(statistics.fmean(lat), 1),
            "round_p50_ms": [round(statistics.median(b.latencies_ms), 1) for b in batches],
            "round_wall_ms": [round(b.wall_ms, 1) for b in batches],
            "statuses": statuses,
            "conversions": sorted({c for b in batches for c in b.conversions if c})}


# --- scenarios ---------------------------------------------------------------------------


@dataclass
class Ctx:
    args: argparse.Namespace
    cpus: Cpus
    tmp: Path
    upstream: str
    upstream_pid: int
    catalog: Path
    images: dict[str, bytes]
    extra_env: dict[str, str]


@dataclass
class Scenario:
    """One row: ``concurrency`` requests with a ``size`` image, ``rounds`` times. With
    ``distinct``, every request of every round carries an image of its own (the media
    reader caches readings by content hash: the same image twice is read once)."""

    label: str
    size: str
    concurrency: int
    rounds: int
    policy: str | None = None
    distinct: bool = False

    def bodies(self, ctx: Ctx, r: int) -> list[bytes]:
        if not self.distinct:
            return chat_bodies(ctx.images[self.size], self.concurrency)
        first = SEED + 1000 * (r + 1)
        return [chat_bodies(noise_png(SIZES[self.size], first + i), 1)[0]
                for i in range(self.concurrency)]


def run_scenario(ctx: Ctx, sc: Scenario) -> dict[str, Any]:
    """Direct and gateway batches taking turns, against a fresh gateway: its RSS after
    start-up (idle), its peak RSS (``VmHWM``, reset before each gateway batch to get each
    round's peak too), its RSS after the last batch, its CPU per request, the usage rows."""
    png = ctx.images[sc.size]
    warm = chat_bodies(noise_png(3000, SEED + 1), sc.concurrency)
    direct_url = ctx.upstream + "/v1/chat/completions"
    print(f"{sc.label}: {sc.concurrency} x {sc.size} ({len(png):,} bytes PNG), {sc.rounds} "
          f"rounds{', a distinct image per request' if sc.distinct else ''}", flush=True)
    with gateway(ctx, sc.label, sc.policy) as (base, pid):
        idle = settled_rss(pid)
        peaks = {"start-up": proc_status(pid)["VmHWM"]}  # start-up's own peak
        gw_url = base + "/v1/chat/completions"
        for url in (direct_url, gw_url):  # connections, lazy imports (Pillow, OCR models)
            send_batch(url, warm)
        peaks["warm-up"] = proc_status(pid)["VmHWM"]
        after_warmup = proc_status(pid)["VmRSS"]
        direct, through, cpu, round_peaks = [], [], 0.0, []
        others = OtherCpu([pid, ctx.upstream_pid])
        for r in range(sc.rounds):
            bodies = sc.bodies(ctx, r)
            for target in ("direct", "gateway") if r % 2 == 0 else ("gateway", "direct"):
                if target == "direct":
                    direct.append(send_batch(direct_url, bodies))
                    continue
                c0, reset = cpu_seconds(pid), reset_hwm(pid)
                through.append(send_batch(gw_url, bodies))
                cpu += cpu_seconds(pid) - c0
                round_peaks.append(proc_status(pid)["VmHWM"] if reset else None)
            print(f"  round {r + 1}: direct p50 {statistics.median(direct[-1].latencies_ms):7.1f}"
                  f" ms, gateway p50 {statistics.median(through[-1].latencies_ms):7.1f} ms, "
                  f"gateway peak RSS {round_peaks[-1] or 0:.0f} MB", flush=True)
        mem = proc_status(pid)
        other_cpu = others.pct()
    peak = max([mem["VmHWM"], *peaks.values(), *(p for p in round_peaks if p)])
    out = {"label": sc.label, "size": sc.size, "png_bytes": len(png),
           "body_bytes": len(bodies[0]), "concurrency": sc.concurrency, "rounds": sc.rounds,
           "policy": sc.policy, "distinct_images": sc.distinct,
           "direct": summarise(direct), "gateway": summarise(through),
           "gateway_cpu_ms_per_request": round(cpu / (sc.rounds * sc.concurrency) * 1000, 1),
           "idle_rss_mb": round(idle, 1), "rss_after_warmup_mb": round(after_warmup, 1),
           "peak_rss_mb": round(peak, 1),
           "peak_rss_by_phase_mb": {k: round(v, 1) for k, v in peaks.items()},
           "round_peak_rss_mb": [round(p, 1) if p else None for p in round_peaks],
           "rss_after_mb": round(mem["VmRSS"], 1),
           "usage_rows": usage_rows(ctx.tmp / f"{sc.label}.db"),
           "other_cpu_pct": other_cpu, "load_average": round(os.getloadavg()[0], 2)}
    out["added_p50_ms"] = round(out["gateway"]["p50_ms"] - out["direct"]["p50_ms"], 1)
    print(f"  => direct p50 {out['direct']['p50_ms']} ms; gateway p50 {out['gateway']['p50_ms']}"
          f" / p95 {out['gateway']['p95_ms']} ms (added p50 {out['added_p50_ms']} ms); "
          f"gateway CPU {out['gateway_cpu_ms_per_request']} ms/request; RSS idle {idle:.0f} MB,"
          f" peak {peak:.0f} MB (rounds {out['round_peak_rss_mb']}), after "
          f"{mem['VmRSS']:.0f} MB; usage {out['usage_rows']}; other processes' CPU "
          f"{other_cpu}%", flush=True)
    return out


def reset_hwm(pid: int) -> bool:
    """Reset ``pid``'s VmHWM to its current RSS (``clear_refs`` 5, Linux >= 4.0)."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def usage_rows(db: Path) -> dict[str, Any]:
    """What the gateway recorded (read after it stopped and flushed): rows by status, rows
    with media, media reading time (ms) and conversions."""
    import sqlite3

    if not db.exists():
        return {"rows": 0}
    with contextlib.closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT status_code, media IS NOT NULL, media_ms, conversions "
                            "FROM usage").fetchall()
    read = sorted(r[2] for r in rows if r[2] is not None)
    return {"rows": len(rows), "ok": sum(r[0] == 200 for r in rows),
            "with_media": sum(bool(r[1]) for r in rows),
            "media_ms_p50": round(read[len(read) // 2], 1) if read else None,
            "media_ms_max": round(read[-1], 1) if read else None,
            "conversions": sorted({r[3] for r in rows if r[3]})}


def reader_available() -> tuple[bool, str]:
    """Whether ``modelmix.media.MediaReader`` (the ``media`` extra) can be imported."""
    code = "from modelmix.media import MediaReader; print(MediaReader.__module__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT / "src")}, timeout=120)
    if done.returncode == 0:
        return True, done.stdout.strip()
    lines = (done.stderr.strip().splitlines() or ["?"])
    return False, lines[-1]


def run_policy(ctx: Ctx) -> dict[str, Any]:
    a = ctx.args
    ok, why = reader_available()
    if not ok:
        msg = ("skipped: the gateway reads images (OCR) before a data policy screens them, "
               "and modelmix.media.MediaReader (the `media` extra) is not installed here "
               f"({why})")
        print(f"policy case {msg}", flush=True)
        return {"skipped": msg}
    res = run_scenario(ctx, Scenario("policy-healthcare", "1MB", a.policy_concurrency,
                                     a.policy_rounds, policy="healthcare", distinct=True))
    res["note"] = ("data policy healthcare: each image (a distinct one per request: readings "
                   "are cached by content hash) is read by OCR before screening; random noise "
                   "holds no text, so nothing is found, but the read costs time")
    return res


def run_profile(ctx: Ctx) -> dict[str, Any]:
    """The tracemalloc harness (``_memprofile.py``) in a child process."""
    a = ctx.args
    image = ctx.tmp / f"{TARGET_SIZE}.png"
    image.write_bytes(ctx.images[TARGET_SIZE])
    out = ctx.tmp / "profile.json"
    cmd = [*Cpus.prefix(ctx.cpus.gateway), sys.executable, str(HERE / "_memprofile.py"),
           "--catalog", str(ctx.catalog), "--image", str(image), "--out", str(out),
           "--concurrency", str(a.concurrency), "--seed", str(SEED)]
    print(f"memory profile: 1 and {a.concurrency} x {TARGET_SIZE} in-process under "
          "tracemalloc", flush=True)
    done = subprocess.run(cmd, cwd=ROOT, env=gateway_env(ctx.tmp, ctx.extra_env),
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        raise SystemExit(f"profile worker failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}")
    print(done.stdout.rstrip(), flush=True)
    result: dict[str, Any] = json.loads(out.read_text())
    return result


# --- report -----------------------------------------------------------------------------


def machine(cpus: Cpus) -> dict[str, Any]:
    model = "?"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((ln.split(":", 1)[1].strip() for ln in lscpu.splitlines()
                      if ln.startswith("Model name")), "?")
    import importlib.metadata as md

    versions = {}
    for name in ("modelmix", "uvicorn", "uvloop", "httptools", "starlette", "aiohttp",
                 "orjson", "pydantic", "pillow", "httpx"):
        with contextlib.suppress(md.PackageNotFoundError):
            versions[name] = md.version(name)
    return {"cpu_model": model, "cpus": len(os.sched_getaffinity(0)),
            "memory_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9, 1),
            "python": platform.python_version(), "os": platform.platform(),
            "pinning": {"gateway": cpus.gateway, "upstream_and_client": cpus.load},
            "versions": versions}


def command() -> str:
    python = Path(sys.executable)
    with contextlib.suppress(ValueError):
        python = python.relative_to(ROOT)
    script = Path(sys.argv[0]).resolve()
    with contextlib.suppress(ValueError):
        script = script.relative_to(ROOT)
    return " ".join([str(python), str(script), *sys.argv[1:]])


def git_commit() -> str:
    done = subprocess.run(["git", "describe", "--always", "--dirty", "--abbrev=12"],
                          cwd=ROOT, capture_output=True, text=True)
    return done.stdout.strip() or "?"


def main_run(args: argparse.Namespace) -> None:
    cpus = Cpus.plan(not args.no_pin)
    host = machine(cpus)  # before this process is pinned to the load CPUs
    if cpus.load:
        os.sched_setaffinity(0, cpus.load)  # the load client runs with the upstream
    started = time.time()
    images = {label: noise_png(target) for label, target in SIZES.items()}
    for label, png in images.items():
        print(f"image {label}: {len(png):,} bytes PNG, {len(base64.b64encode(png)):,} "
              "bytes base64", flush=True)
    with tempfile.TemporaryDirectory(prefix="mm-large-images-") as tmp_name:
        tmp = Path(tmp_name)
        port = free_port()
        up_cmd = [*Cpus.prefix(cpus.load), sys.executable, str(Path(__file__).resolve()),
                  "--upstream", str(port)]
        upstream = f"http://127.0.0.1:{port}"
        with launched(up_cmd, tmp / "upstream.log", dict(os.environ),
                      upstream + "/health") as up:
            ctx = Ctx(args, cpus, tmp, upstream, up.pid, write_catalog(tmp, upstream), images,
                      dict(kv.split("=", 1) for kv in args.gateway_env))
            scenarios = [run_scenario(ctx, Scenario(f"no-policy-{size}", size, args.concurrency,
                                                    args.rounds)) for size in args.sizes]
            policy = run_policy(ctx) if not args.no_policy else {"skipped": "--no-policy"}
            profile = run_profile(ctx) if not args.no_profile else None
    report = {
        "benchmark": "large images through the gateway",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "git_commit": git_commit(), "command": command(),
        "seconds": round(time.time() - started, 1), "machine": host,
        "gateway_env": args.gateway_env,
        "images": {label: {"png_bytes": len(png), "base64_bytes": len(base64.b64encode(png)),
                           "seed": SEED} for label, png in images.items()},
        "scenarios": scenarios, "policy": policy, "profile": profile,
        "target": target_check(scenarios),
    }
    out = Path(args.out) if args.out else RESULTS_JSON
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out} ({report['seconds']} s)")
    if not args.out:
        from _large_images_report import write_markdown

        write_markdown(RESULTS_MD, report)
        print(f"wrote {RESULTS_MD}")


def target_check(scenarios: list[dict[str, Any]]) -> dict[str, Any]:
    hit = [s for s in scenarios
           if s["size"] == TARGET_SIZE and s["concurrency"] == TARGET_CONCURRENCY]
    if not hit:
        return {"checked": False, "why": f"no {TARGET_CONCURRENCY} x {TARGET_SIZE} run"}
    peak = hit[0]["peak_rss_mb"]
    return {"checked": True, "peak_rss_mb": peak, "limit_mb": TARGET_PEAK_MB,
            "pass": peak <= TARGET_PEAK_MB}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--sizes", nargs="*", default=list(SIZES), choices=list(SIZES))
    p.add_argument("--policy-concurrency", type=int, default=4)
    p.add_argument("--policy-rounds", type=int, default=2)
    p.add_argument("--no-policy", action="store_true", help="skip the data-policy case")
    p.add_argument("--no-profile", action="store_true", help="skip the memory profile")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--gateway-env", nargs="*", default=[], metavar="KEY=VALUE",
                   help="extra environment of the gateway (experiments: malloc settings)")
    p.add_argument("--out", help="write the JSON here and leave RESULTS.md alone")
    p.add_argument("--upstream", type=int, metavar="PORT", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    if args.upstream:
        upstream_main(args.upstream)
    else:
        main_run(args)


if __name__ == "__main__":
    main()
