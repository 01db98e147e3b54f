"""Throughput scaling of k gateway replicas behind nginx, and exactness of the shared limits.

For k = 1..4 ``modelmix serve`` processes behind Debian's nginx (round robin, keep-alive),
sharing one redis-server and one PostgreSQL (a throwaway cluster from Debian's binaries),
in front of the fixed upstream of the multi-replica tests (tests/replica_upstream.py:
fixed usage, optionally a delay per request), wrk POSTs one chat completion body:

* with the master key (no limits: no shared-state call on the request path) and with a
  virtual key that has a budget and an RPM limit (every request reserves and settles in
  Redis), at each upstream delay (0 and 50 ms by default);
* then, for each k, the exactness run: ``--clients`` concurrent clients on one key with a
  budget (is it ever exceeded?), on one key with an RPM limit (how far from exact?), and
  the usage rows in PostgreSQL against the requests sent (any lost?). With
  ``--no-redis-baseline`` skipped, the same run without Redis (per-process limits, the
  behaviour before issue 13) is recorded next to it.

Usage::

    .venv/bin/python benchmarks/scale/run.py                      # ~6 minutes
    .venv/bin/python benchmarks/scale/run.py --replicas 1,2 --duration 5 --out /tmp/s.json

Writes ``results.json`` and the generated part of ``RESULTS.md`` next to this file
(unless ``--out`` sends the JSON elsewhere, which also skips RESULTS.md). Needs nginx,
wrk, redis-server and PostgreSQL from Debian (``apt-get install nginx-light wrk
redis-server postgresql``) and the ``postgres`` and ``redis`` extras.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))

# CPU accounting, quiet waits and the machine description: the overhead benchmark's
# helpers, loaded as benchmarks/systems and benchmarks/media do.
_spec = importlib.util.spec_from_file_location("overhead_run",
                                               HERE.parent / "overhead" / "run.py")
assert _spec is not None and _spec.loader is not None
_overhead = importlib.util.module_from_spec(_spec)
sys.path.insert(0, str(HERE.parent / "overhead"))
sys.modules["overhead_run"] = _overhead
_spec.loader.exec_module(_overhead)
CpuSnapshot = _overhead.CpuSnapshot

import sqlalchemy as sa  # noqa: E402
from _scale_report import markdown, write_markdown  # noqa: E402

from _postgres import Cluster, pg_bindir  # noqa: E402
from _redis import RedisServer  # noqa: E402
from _replicas import MASTER_KEY, ReplicaSet, burst, chat_body, post  # noqa: E402

POST_LUA = HERE.parent / "overhead" / "post.lua"
COST = 0.001  # USD per request (10 completion tokens at 100 USD / 1M, input free)
APT_INSTALL = "apt-get install -y nginx-light wrk redis-server postgresql"


# -- load -----------------------------------------------------------------------------------


@dataclass
class Run:
    """One wrk run: ``k`` replicas, upstream delay, which key, the load and the CPU.

    ``gateway_cpu_pct``: CPU the k gateway processes used together (100 = one core);
    ``gateway_cpu_ms_per_request``: their CPU time per request served (the figure a busy
    host disturbs least);
    ``other_cpu_pct``: CPU used outside this benchmark's processes (a busy host).
    """

    k: int
    delay_ms: int
    key: str
    concurrency: int
    requests: int
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    errors: int
    non_2xx: int
    gateway_cpu_pct: float
    gateway_cpu_ms_per_request: float
    other_cpu_pct: float


def wrk(url: str, auth: str, concurrency: int, duration: float, body_file: Path
        ) -> dict[str, Any]:
    threads = max(1, min(2, concurrency))
    cmd = ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
           "--timeout", "10s", "-s", str(POST_LUA), url + "/v1/chat/completions"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True,
                         env={**os.environ, "BENCH_BODY_FILE": str(body_file),
                              "BENCH_AUTH": f"Bearer {auth}"}).stdout
    line = next((x for x in out.splitlines() if x.startswith("BENCH_JSON ")), None)
    if line is None:
        raise SystemExit(f"wrk printed no BENCH_JSON line:\n{out}")
    raw: dict[str, Any] = json.loads(line.removeprefix("BENCH_JSON "))
    return raw


def gateway_cpu_s(rs: ReplicaSet) -> float:
    return float(sum(CpuSnapshot._tree_cpu_s(g.proc.pid) for g in rs.gateways))


def measure(rs: ReplicaSet, key_name: str, auth: str, delay_ms: int,
            args: argparse.Namespace, body_file: Path) -> Run:
    rs.upstream.control(delay_s=delay_ms / 1000)
    wrk(rs.url, auth, args.concurrency, args.warmup, body_file)
    _overhead.wait_quiet(args.quiet_wait)
    before, cpu0 = CpuSnapshot.take(None), gateway_cpu_s(rs)
    raw = wrk(rs.url, auth, args.concurrency, args.duration, body_file)
    after, cpu1 = CpuSnapshot.take(None), gateway_cpu_s(rs)
    elapsed = after.at - before.at
    errors = sum(raw[k] for k in ("err_connect", "err_read", "err_write", "err_timeout"))
    run = Run(k=rs.k, delay_ms=delay_ms, key=key_name, concurrency=args.concurrency,
              requests=raw["requests"],
              rps=round(raw["requests"] / (raw["duration_us"] / 1e6), 1),
              p50_ms=raw["p50_us"] / 1000, p90_ms=raw["p90_us"] / 1000,
              p99_ms=raw["p99_us"] / 1000, errors=errors, non_2xx=raw["err_status"],
              gateway_cpu_pct=round((cpu1 - cpu0) / elapsed * 100, 1),
              gateway_cpu_ms_per_request=round((cpu1 - cpu0) / max(1, raw["requests"]) * 1e3,
                                               3),
              other_cpu_pct=after.other_pct(before))
    print(f"  k={run.k} delay={delay_ms:>3} ms key={key_name:<7} {run.rps:>8.1f} req/s "
          f"p50 {run.p50_ms:>7.2f} ms p99 {run.p99_ms:>7.2f} ms gateways "
          f"{run.gateway_cpu_pct}% CPU ({run.gateway_cpu_ms_per_request} ms/req), other "
          f"{run.other_cpu_pct}%, "
          f"errors {errors + run.non_2xx}", flush=True)
    return run


# -- exactness ------------------------------------------------------------------------------


@dataclass
class Exactness:
    """One key's budget, one key's RPM and the usage rows, ``clients`` at once.

    ``overshoot_usd``: spend beyond the budget (0 or less: never exceeded);
    ``rpm_error``: successes minus the RPM limit; ``lost_rows``: requests without a usage
    row once the writers flushed; ``unavailable``: requests refused 503
    ``state_unavailable`` although Redis was up (neither overshoot nor exact);
    ``revoked_elsewhere_s``: a key revoked on replica 0 is refused by replica 1 after.
    """

    k: int
    redis: bool
    clients: int
    requests: int
    budget_usd: float
    budget_successes: int
    spent_usd: float
    overshoot_usd: float
    rpm: int
    rpm_successes: int
    rpm_error: int
    rows: int
    lost_rows: int
    unavailable: int
    revoked_elsewhere_s: float | None
    statuses: dict[str, int]


def _rows_and_spend(engine: sa.Engine, key_ids: list[str], expected: int
                    ) -> tuple[int, float]:
    """Usage rows of ``key_ids`` (waiting up to 15 s for the writers) and the first key's
    persisted spend."""
    deadline = time.monotonic() + 15
    query = sa.text("SELECT count(*) FROM usage WHERE key_id IN :ids").bindparams(
        sa.bindparam("ids", expanding=True))
    while True:
        with engine.connect() as conn:
            rows = int(conn.execute(query, {"ids": key_ids}).scalar() or 0)
            spent = conn.execute(sa.text("SELECT spent_usd FROM virtual_keys WHERE id = :k"),
                                 {"k": key_ids[0]}).scalar()
        if rows >= expected or time.monotonic() > deadline:
            time.sleep(0.5)  # the spend ledger flushes every 0.2 s
            with engine.connect() as conn:
                spent = conn.execute(sa.text(
                    "SELECT spent_usd FROM virtual_keys WHERE id = :k"),
                    {"k": key_ids[0]}).scalar()
            return rows, float(spent or 0.0)
        time.sleep(0.2)


def exactness(rs: ReplicaSet, engine: sa.Engine, args: argparse.Namespace) -> Exactness:
    budget, rpm, n = args.budget, args.rpm, args.requests
    bkey = rs.create_key(max_budget=budget, key_alias=f"exact-budget-k{rs.k}")
    rkey = rs.create_key(rpm_limit=rpm, key_alias=f"exact-rpm-k{rs.k}")
    rs.upstream.control(delay_s=0.0)
    body = chat_body()
    by_budget = asyncio.run(burst(rs.url, bkey.key, [body] * n, concurrency=args.clients))
    by_rpm = asyncio.run(burst(rs.url, rkey.key, [body] * n, concurrency=args.clients))
    rows, spent = _rows_and_spend(engine, [bkey.id, rkey.id], 2 * n)
    seen = Counter(f"{r.status} {r.code or ''}".strip() for r in by_budget + by_rpm)
    ok_b = sum(r.status == 200 for r in by_budget)
    ok_r = sum(r.status == 200 for r in by_rpm)
    result = Exactness(k=rs.k, redis=rs.redis_url is not None, clients=args.clients,
                       requests=n, budget_usd=budget, budget_successes=ok_b,
                       spent_usd=round(spent, 9), overshoot_usd=round(spent - budget, 9),
                       rpm=rpm, rpm_successes=ok_r, rpm_error=ok_r - rpm, rows=rows,
                       lost_rows=2 * n - rows, unavailable=seen["503 state_unavailable"],
                       revoked_elsewhere_s=revocation_s(rs),
                       statuses=dict(seen))
    print(f"  exactness k={rs.k} redis={result.redis}: budget {budget} -> {ok_b} ok, spent "
          f"{result.spent_usd} (overshoot {result.overshoot_usd}); rpm {rpm} -> {ok_r} ok; "
          f"rows {rows}/{2 * n}; 503 state_unavailable {result.unavailable}; revoked "
          f"elsewhere after {result.revoked_elsewhere_s} s", flush=True)
    return result


def revocation_s(rs: ReplicaSet, timeout_s: float = 10.0) -> float | None:
    """Seconds from ``/key/revoke`` answering on replica 0 to replica 1 refusing the key
    (which it had cached); None with one replica."""
    if rs.k < 2:
        return None
    key = rs.create_key(key_alias=f"revoke-k{rs.k}")
    for i in range(rs.k):
        post(rs.replica(i), key.key, chat_body())
    rs.revoke(key.id, replica=0)
    start = time.monotonic()
    while time.monotonic() - start < timeout_s:
        if post(rs.replica(1), key.key, chat_body()).status == 401:
            return round(time.monotonic() - start, 3)
        time.sleep(0.005)
    return None


# -- engines --------------------------------------------------------------------------------


@contextlib.contextmanager
def engines() -> Iterator[tuple[str, str]]:
    """A throwaway PostgreSQL cluster and redis-server: (database URL, Redis URL)."""
    bindir = pg_bindir()
    if bindir is None:
        raise SystemExit(f"PostgreSQL binaries not found; {APT_INSTALL}")
    cluster, redis = Cluster(bindir), RedisServer()
    try:
        url = cluster.start()
        redis.start()
        yield url, redis.url
    finally:
        redis.close()
        cluster.stop()


def bench_k(k: int, db_url: str, redis_url: str, args: argparse.Namespace,
            tmp: Path, body_file: Path) -> tuple[list[Run], Exactness]:
    print(f"[k={k}]", flush=True)
    engine = sa.create_engine(db_url)
    with ReplicaSet(k, db_url=db_url, redis_url=redis_url, tmp=tmp / f"k{k}") as rs:
        limited = rs.create_key(max_budget=1_000_000.0, rpm_limit=1_000_000,
                                key_alias=f"bench-k{k}")
        runs = [measure(rs, name, auth, delay, args, body_file)
                for delay in args.delays
                for name, auth in (("none", MASTER_KEY), ("limited", limited.key))]
        exact = exactness(rs, engine, args)
    engine.dispose()
    return runs, exact


def baseline(k: int, db_url: str, args: argparse.Namespace, tmp: Path) -> Exactness:
    """The exactness run without Redis: per-process limits, as before issue 13."""
    engine = sa.create_engine(db_url)
    with ReplicaSet(k, db_url=db_url, redis_url=None, tmp=tmp / f"k{k}-local") as rs:
        result = exactness(rs, engine, args)
    engine.dispose()
    return result


# -- main -----------------------------------------------------------------------------------


def ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",")]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--replicas", type=ints, default=[1, 2, 3, 4])
    p.add_argument("--delays", type=ints, default=[0, 50], help="upstream delays, ms")
    p.add_argument("--duration", type=float, default=10.0, help="seconds per measured run")
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--concurrency", type=int, default=128, help="wrk connections")
    p.add_argument("--quiet-wait", type=float, default=10.0,
                   help="seconds to wait for other processes to go quiet before each run")
    p.add_argument("--clients", type=int, default=200, help="exactness run: clients")
    p.add_argument("--requests", type=int, default=400, help="exactness run: per key")
    p.add_argument("--budget", type=float, default=0.2, help="exactness run: USD")
    p.add_argument("--rpm", type=int, default=150, help="exactness run: RPM limit")
    p.add_argument("--no-redis-baseline", dest="baseline", action="store_false",
                   help="skip the exactness run without Redis")
    p.add_argument("--out", type=Path, default=None,
                   help="write the JSON here instead of results.json + RESULTS.md")
    return p.parse_args(argv)


def prerequisites() -> None:
    missing = [t for t in ("nginx", "wrk", "redis-server") if shutil.which(t) is None
               and not Path(f"/usr/sbin/{t}").exists()]
    if missing:
        raise SystemExit(f"missing {', '.join(missing)}: {APT_INSTALL}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    prerequisites()
    runs: list[Run] = []
    exact: list[Exactness] = []
    with tempfile.TemporaryDirectory(prefix="modelmix-scale-") as tmp_name, \
            engines() as (db_url, redis_url):
        tmp = Path(tmp_name)
        body_file = tmp / "request.json"
        body_file.write_text(json.dumps(chat_body()))
        for k in args.replicas:
            k_runs, k_exact = bench_k(k, db_url, redis_url, args, tmp, body_file)
            runs += k_runs
            exact.append(k_exact)
        if args.baseline:
            print("[without Redis]", flush=True)
            exact += [baseline(k, db_url, args, tmp) for k in args.replicas if k > 1]
        keep_logs(tmp)
    report = build_report(args, runs, exact)
    out = args.out or HERE / "results.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    if args.out is None:
        write_markdown(HERE / "RESULTS.md", markdown(report))
    print(f"wrote {out}")


def keep_logs(tmp: Path) -> None:
    """Copy the processes' logs to benchmarks/.work/scale-logs (the temp dir goes away)."""
    dest = HERE.parent / ".work" / "scale-logs"
    shutil.rmtree(dest, ignore_errors=True)
    for log in tmp.rglob("*.log"):
        target = dest / log.relative_to(tmp)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(log, target)


def build_report(args: argparse.Namespace, runs: list[Run], exact: list[Exactness]
                 ) -> dict[str, Any]:
    usable = len(os.sched_getaffinity(0))
    settings = (f"{args.duration:g} s per run after {args.warmup:g} s warm-up, wrk "
                f"{args.concurrency} connections, upstream delays "
                f"{', '.join(f'{d} ms' for d in args.delays)}, no CPU pinning (every "
                f"process shares the host's {usable} CPUs); exactness: {args.clients} "
                f"clients x {args.requests} requests per key, budget {args.budget} USD at "
                f"{COST} USD per request, rpm {args.rpm}")
    return {
        "date": dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "command": " ".join([".venv/bin/python", "benchmarks/scale/run.py", *sys.argv[1:]]),
        "modelmix_commit": _overhead.git_commit(),
        "settings": settings,
        "machine": _overhead.machine(usable, Path("/nonexistent"), Path("/nonexistent")),
        "engines": {"redis": _version(["redis-server", "--version"]),
                    "postgresql": _version([str((pg_bindir() or Path()) / "postgres"),
                                            "--version"])},
        "request_body": chat_body(),
        "runs": [asdict(r) for r in runs],
        "exactness": [asdict(e) for e in exact],
    }


def _version(cmd: list[str]) -> str:
    try:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=10).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main()
