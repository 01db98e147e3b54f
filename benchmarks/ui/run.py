"""Dashboard API on a million usage rows: fill a store, then time every ``/ui/api/*`` call
through a real gateway on loopback (p50 of a few warm runs; the first, cold call that
builds the roll-ups is reported apart).

    .venv/bin/python benchmarks/ui/run.py                # SQLite, and PostgreSQL if found
    .venv/bin/python benchmarks/ui/run.py --rows 200000 --no-postgres

Writes benchmarks/ui/results.json; RESULTS.md holds the numbers as read.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parents[1] / "tests")]

from _fill import DEPLOYMENTS, fill  # noqa: E402

from _servers import serve_app  # noqa: E402
from modelmix.catalog import config_from_dict  # noqa: E402
from modelmix.engine import ChatService  # noqa: E402
from modelmix.server import create_app  # noqa: E402
from modelmix.server.keys import KeyStore, VirtualKeyAuth  # noqa: E402
from modelmix.store import UsageStore, UsageWriter  # noqa: E402
from modelmix.testing import FakeProvider  # noqa: E402

MASTER = "mk-bench"
CALLS = [
    ("status", {}),
    *((name, {"window": w}) for w in ("1h", "24h", "7d", "30d")
      for name in ("overview", "series", "keys", "guard")),
    ("requests", {}),
    ("requests", {"deployment": "gpt-4o"}),
    ("requests", {"key": "k07"}),
    ("requests", {"status": "error"}),
    ("requests", {"status": "403"}),
    ("requests", {"deployment": "no-such-deployment"}),
    ("audit", {}),
]


def _config(url: str) -> Any:
    deps = [{"name": name, "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
             "model": name, "tier": "open" if provider in ("local", "vllm") else "proprietary",
             "input_cost_per_mtok": price_in, "output_cost_per_mtok": price_out}
            for name, (provider, price_in, price_out) in DEPLOYMENTS.items()]
    return config_from_dict({"deployments": deps, "router": "rules", "store": {"url": url}})


def _time(client: httpx.Client, name: str, params: dict[str, str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        resp = client.get(f"/ui/api/{name}", params=params)
        out.append((time.perf_counter() - started) * 1000)
        resp.raise_for_status()
    return out


def measure(url: str, runs: int) -> dict[str, Any]:
    cfg = _config(url)
    fakes = {d.name: FakeProvider(d) for d in cfg.deployments}
    service = ChatService(cfg, providers=fakes, usage=UsageWriter(UsageStore(url)))
    app = create_app(service=service, auth=VirtualKeyAuth(MASTER, KeyStore(url)))
    results: dict[str, Any] = {"cold_ms": {}, "p50_ms": {}, "max_ms": {}}
    with serve_app(app) as base, httpx.Client(
            base_url=base, headers={"authorization": f"Bearer {MASTER}"}, timeout=600) as client:
        for window in ("30d",):  # the first calls build every hour and day once
            for name in ("overview", "keys", "guard"):
                results["cold_ms"][f"{name}?window={window}"] = _time(
                    client, name, {"window": window}, 1)[0]
        for name, params in CALLS:
            label = name + ("?" + "&".join(f"{k}={v}" for k, v in params.items())
                            if params else "")
            times = _time(client, name, params, runs)
            results["p50_ms"][label] = round(statistics.median(times), 1)
            results["max_ms"][label] = round(max(times), 1)
            print(f"{label:40s} p50 {statistics.median(times):8.1f} ms  max {max(times):8.1f}")
    return results


def _postgres(workdir: Path) -> tuple[str, Any] | None:
    try:
        from _postgres import Cluster, pg_bindir
    except ImportError:
        return None
    bindir = pg_bindir()
    if bindir is None:
        return None
    cluster = Cluster(bindir)
    return cluster.start(), cluster


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--days", type=float, default=30)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--no-postgres", action="store_true")
    args = parser.parse_args()
    out: dict[str, Any] = {"rows": args.rows, "days": args.days, "runs": args.runs}
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{Path(tmp) / 'usage.db'}"
        out["sqlite_fill_s"] = round(fill(url, args.rows, args.days), 1)
        print(f"sqlite: {args.rows} rows in {out['sqlite_fill_s']} s")
        out["sqlite"] = measure(url, args.runs)
        started = None if args.no_postgres else _postgres(Path(tmp))
        if started is not None:
            pg_url, cluster = started
            try:
                out["postgresql_fill_s"] = round(fill(pg_url, args.rows, args.days), 1)
                print(f"postgresql: {args.rows} rows in {out['postgresql_fill_s']} s")
                out["postgresql"] = measure(pg_url, args.runs)
            finally:
                cluster.stop()
    (HERE / "results.json").write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
