"""Stage breakdown of the routed hot path: the learned router and the data guard on one
prompt, in process, with ``time.perf_counter`` (median of many calls per stage).

The gateway benchmark (``run.py --targets modelmix,modelmix-auto``) measures what
``model: "auto"`` with a data policy adds end to end; this script says where that time
goes. Stages call the public pieces the gateway calls, in the order it calls them:

- ``router: predict + strong_score``: what ``LearnedStrategy`` calls per request, on a
  fresh copy of the prompt each time (as each request's JSON gives one: a router that
  remembered the last prompt object must not be measured on a hit);
- ``router: predict``: the first of those calls alone;
- ``router: route (in-process)``: ``Router.route`` on a two-deployment catalog, the
  whole routing step (policy filter, strategy, decision);
- the router's inner stages (tokenise, embed, lexical + structure features, token
  n-gram rows, heads), each timed alone;
- ``guard: screen``: ``Guard.screen`` under ``--policy`` (healthcare: PHI) on the
  request, detection, classification and verdict.

Usage::

    .venv/bin/python benchmarks/overhead/hot_path.py                  # this tree
    PYTHONPATH=/tmp/base/src .venv/bin/python benchmarks/overhead/hot_path.py  # another
    .venv/bin/python benchmarks/overhead/hot_path.py --out benchmarks/.work/stages.json

Prints a table (µs per call, median and p90) and writes JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from run import request_body  # the benchmark's own request


def timed(fn: Callable[[], object], repeat: int) -> dict[str, float]:
    """Median and p90 of ``repeat`` calls of ``fn`` (µs), after 20 warm-up calls."""
    for _ in range(20):
        fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append((time.perf_counter() - start) * 1e6)
    samples.sort()
    return {"p50_us": round(statistics.median(samples), 1),
            "p90_us": round(samples[int(0.9 * (len(samples) - 1))], 1)}


def router_stages(prompt: str, repeat: int) -> dict[str, dict[str, float]]:
    from modelmix.routing.learned import load_predictor
    from modelmix.routing.learned._features import lexical_features

    pred = load_predictor("default")
    model, emb = pred.model, pred.embedder
    ids = emb.token_ids([prompt])
    vec = emb.embed_ids(ids)
    lex = lexical_features([prompt], model.structure)
    x0 = model.base_features(vec, lex)
    rows = model.token_rows(ids) if model.uses_tokens else None
    def fresh() -> str:  # an equal text that is a new object, as each request brings
        return prompt[:-1] + prompt[-1]

    def one_request() -> object:
        text = fresh()
        return pred.predict([text]), pred.strong_score([text])

    stages = {
        "router: predict + strong_score": one_request,
        "router: predict": lambda: pred.predict([fresh()]),
        "  tokenise": lambda: emb.token_ids([prompt]),
        "  embed (table rows)": lambda: emb.embed_ids(ids),
        "  lexical + structure": lambda: lexical_features([prompt], model.structure),
        "  token n-gram rows": lambda: model.token_rows(ids),
        "  heads (x0 -> P)": lambda: model.predict_features(model.base_features(vec, lex),
                                                            vec, rows),
        "  domain posterior": lambda: model.domain_log_posterior(x0),
    }
    return {name: timed(fn, repeat) for name, fn in stages.items()}


def route_stage(body: dict[str, Any], repeat: int) -> dict[str, dict[str, float]]:
    from modelmix.catalog import Config
    from modelmix.protocol import ChatRequest
    from modelmix.routing import Router
    from modelmix.routing._input import prompt_text

    config = Config.model_validate({"deployments": [
        {"name": "bench-open", "provider": "openai-compatible", "model": "m",
         "base_url": "http://127.0.0.1:9/v1", "tier": "open", "hosting": "self-hosted",
         "input_cost_per_mtok": 0.15, "output_cost_per_mtok": 0.6},
        {"name": "bench-cloud", "provider": "openai-compatible", "model": "m",
         "base_url": "http://127.0.0.1:9/v1", "tier": "proprietary", "hosting": "cloud",
         "input_cost_per_mtok": 2.5, "output_cost_per_mtok": 10.0}]})
    router = Router(config, health=lambda dep: None)  # every deployment healthy
    request = ChatRequest.model_validate({**body, "model": "auto"})
    needs = request.needs()

    def route() -> object:
        text = prompt_text(request)
        return router.route("auto", needs, prompt=text[:-1] + text[-1])  # a new object

    return {"router: route (in-process)": timed(route, repeat),
            "request: needs() + prompt_text": timed(
                lambda: (request.needs(), prompt_text(request)), repeat)}


def guard_stage(body: dict[str, Any], policy: str, repeat: int
                ) -> dict[str, dict[str, float]]:
    from modelmix.catalog import Config
    from modelmix.guard import guard_from_config
    from modelmix.protocol import ChatRequest

    config = Config.model_validate({"policy": policy, "deployments": [
        {"name": "x", "provider": "openai-compatible", "model": "m",
         "base_url": "http://127.0.0.1:9/v1"}]})
    guard = guard_from_config(config)
    assert guard is not None
    guard.warm()
    request = ChatRequest.model_validate(body)
    loop = asyncio.new_event_loop()
    try:
        return {f"guard: screen ({policy})": timed(
            lambda: loop.run_until_complete(guard.screen(request)), repeat)}
    finally:
        loop.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--prompt-chars", type=int, default=400)
    p.add_argument("--policy", default="healthcare")
    p.add_argument("--repeat", type=int, default=2000)
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args()
    body = request_body(args.prompt_chars)
    prompt = body["messages"][-1]["content"]
    started = time.perf_counter()
    import modelmix.routing.learned  # import time is not the hot path

    results = {**router_stages(prompt, args.repeat), **route_stage(body, args.repeat),
               **guard_stage(body, args.policy, args.repeat)}
    print(f"{'stage':<34} {'p50 µs':>9} {'p90 µs':>9}")
    for name, r in results.items():
        print(f"{name:<34} {r['p50_us']:>9.1f} {r['p90_us']:>9.1f}")
    if args.out:
        import modelmix

        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({
            "modelmix_src": str(Path(modelmix.__file__).parent),
            "prompt_chars": args.prompt_chars, "policy": args.policy,
            "repeat": args.repeat, "stages": results,
            "seconds": round(time.perf_counter() - started, 1)}, indent=1) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
