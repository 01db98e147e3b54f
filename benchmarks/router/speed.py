"""Speed of the shipped router: load time, single-prompt latency, batch throughput.

    .venv/bin/python benchmarks/router/speed.py            # ~1 min, benchmarks/.work/
    .venv/bin/python benchmarks/router/speed.py --out benchmarks/router/speed.json

Single prompts: ``strong_score([prompt])`` for 2,000 MMLU + GSM8K prompts in random order
after 200 warm-up calls, one at a time (what the gateway does per request); p50/p90/p99
in ms. Batch: ``strong_score`` over all 12,275 training prompts in batches of 1,024.
Load: ``load_predictor("default")`` in a fresh interpreter (imports included), median of 5.
Writes ``--out`` (default ``benchmarks/.work/router-speed.json``, so a trial run does not
replace the committed ``benchmarks/router/speed.json``; name that file to regenerate it);
numbers go into RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.routing.learned import (
    artifact_size,
    default_artifact_dir,
    load_predictor,
    read_outcome_tables,
)

HERE = Path(__file__).resolve().parent
DATA = [HERE.parents[1] / "data" / "routellm" / f"{n}.csv" for n in ("mmlu", "gsm8k")]
_LOAD = ("import time; t = time.perf_counter(); "
         "from modelmix.routing.learned import load_predictor; r = load_predictor('default'); "
         "print(time.perf_counter() - t)")


def load_seconds(runs: int = 5) -> list[float]:
    out = []
    for _ in range(runs):
        done = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True,
                              check=True)
        out.append(float(done.stdout.strip()))
    return out


def single_latency(prompts: list[str], n: int = 2000) -> dict[str, float]:
    router = load_predictor("default")
    sample = random.Random(0).sample(prompts, n + 200)
    for p in sample[:200]:
        router.strong_score([p])
    times = []
    for p in sample[200:]:
        start = time.perf_counter()
        router.strong_score([p])
        times.append(time.perf_counter() - start)
    ms = np.asarray(times) * 1e3
    return {"p50_ms": float(np.percentile(ms, 50)), "p90_ms": float(np.percentile(ms, 90)),
            "p99_ms": float(np.percentile(ms, 99)), "mean_ms": float(ms.mean()), "n": n}


def batch_throughput(prompts: list[str], batch: int = 1024) -> dict[str, float]:
    router = load_predictor("default")
    router.strong_score(prompts[:batch])
    start = time.perf_counter()
    for i in range(0, len(prompts), batch):
        router.strong_score(prompts[i:i + batch])
    seconds = time.perf_counter() - start
    return {"prompts": len(prompts), "seconds": seconds, "prompts_per_s": len(prompts) / seconds,
            "batch": batch}


def machine() -> dict[str, Any]:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "numpy": np.__version__,
            "openblas_env": {k: v for k, v in os.environ.items() if k.startswith("OPENBLAS")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=HERE.parent / ".work" / "router-speed.json",
                        help="where the JSON goes (benchmarks/router/speed.json: the committed "
                        "one)")
    args = parser.parse_args()
    prompts = list(read_outcome_tables(DATA).prompts)
    loads = load_seconds()
    result = {
        "machine": machine(),
        "artifact_bytes": artifact_size(default_artifact_dir()),
        "load_s": {"median": statistics.median(loads), "runs": loads},
        "single": single_latency(prompts),
        "batch": batch_throughput(prompts),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
