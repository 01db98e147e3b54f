"""Many models, priced (issue 15, must-have 3): route among the 11 models of the AlpacaEval
chat table by predicted quality and compare the quality-cost frontier with every single
model, random mixing and the best pair. About 2 minutes on 2 cores (10 trainings).

    .venv/bin/python benchmarks/router/many_models.py   # writes many_models.json / .png

The same as ``modelmix router eval --frontier --data ../shared/data/alpacaeval/chat.csv
--prices benchmarks/router/chat_prices.yaml``, with the results named for this folder,
plus: the rules considered (below) on the same out-of-fold predictions, and everything
again on a second fold seed (seed 1), so the chosen rule is not picked on noise.

Rules considered (each swept over its parameter; per fold, "training" numbers come from
the other folds only):

* ``utility``: argmax_j predicted_j - lambda * USD per 1k requests_j (RouterBench's
  predictive router, Hu et al. 2024, arXiv:2403.12031), the one the report headlines;
* ``threshold``: the cheapest model predicted >= tau (the issue's rule);
* ``*, shrunk 0.5``: predictions halfway to the model's training mean quality;
* ``threshold, mean + offset``: model training mean + the prompt's mean predicted offset
  from the training means (one shared difficulty per prompt, a rank-1 structure);
* ``*, Pareto models``: only the models no other beats on training mean cost and mean
  quality.

Quality is P(a GPT-4-turbo judge preferred the model's answer over gpt4_1106_preview's),
so gpt4_1106_preview is 0.5 by construction. Only numbers and the plot are written: the
table (CC BY-NC 4.0) is read from ../shared and never copied, and no router trained on it
is saved.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console

from modelmix.cli._eval import EvalRequest
from modelmix.cli._eval_frontier import frontier_inputs
from modelmix.eval._frontier import (
    Point,
    budget_score,
    cost_weight_grid,
    gaps,
    mixing_hull,
    pareto,
    sweep,
    sweep_utility,
    target_grid,
)
from modelmix.eval._frontier_eval import ManyModelTable, frontier_report
from modelmix.eval._frontier_output import frontier_markdown, write_frontier
from modelmix.metrics import source_folds

ROOT = Path(__file__).resolve().parents[2]
HERE = Path("benchmarks/router")               # paths relative to the repository root, so
CHAT = Path("../shared/data/alpacaeval/chat.csv")   # results.json records no local ones
PRICES = HERE / "chat_prices.yaml"
SEEDS = (0, 1)  # fold seeds: the first is written in full, the second checks the choice

Rule = Callable[[np.ndarray], list[Point]]


def _training_means(table: ManyModelTable, cost: np.ndarray, seed: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per prompt, every model's mean quality and mean USD on the other folds."""
    out = table.outcome
    fold = source_folds(out.prompts, out.sources, out.domains, 5, seed)
    mq, mc = np.zeros_like(table.quality), np.zeros_like(cost)
    for i in np.unique(fold):
        mq[fold == i] = table.quality[fold != i].mean(axis=0)
        mc[fold == i] = cost[fold != i].mean(axis=0)
    return mq, mc


def _pareto_mask(mq: np.ndarray, mc: np.ndarray) -> np.ndarray:
    """``(n, m)`` True where model j is Pareto-efficient on prompt i's training folds."""
    mask = np.zeros(mq.shape, dtype=bool)
    for i in range(mq.shape[0]):
        front = pareto([Point(mc[i, j], mq[i, j], str(j)) for j in range(mq.shape[1])])
        mask[i, [int(p.label) for p in front]] = True
    return mask


def _candidates(table: ManyModelTable, cost: np.ndarray, predicted: np.ndarray,
                seed: int) -> dict[str, dict[str, Any]]:
    """Budget score and gaps of every rule considered (module doc)."""
    q = table.quality
    mq, mc = _training_means(table, cost, seed)
    keep = _pareto_mask(mq, mc)

    def threshold(p: np.ndarray) -> list[Point]:
        return sweep(p, q, cost, target_grid(p[np.isfinite(p)]))

    def utility(p: np.ndarray) -> list[Point]:
        return sweep_utility(p, q, cost, cost_weight_grid(p, cost))

    shrunk = 0.5 * predicted + 0.5 * mq
    offset = mq + (predicted - mq).mean(axis=1, keepdims=True)
    only = np.where(keep, predicted, -np.inf)
    rules: dict[str, tuple[Rule, np.ndarray]] = {
        "utility": (utility, predicted), "threshold": (threshold, predicted),
        "utility, shrunk 0.5": (utility, shrunk), "threshold, shrunk 0.5": (threshold, shrunk),
        "threshold, mean + offset": (threshold, offset),
        "utility, Pareto models": (utility, only), "threshold, Pareto models": (threshold, only)}
    singles = [Point(float(cost[:, j].mean() * 1000), float(q[:, j].mean()))
               for j in range(q.shape[1])]
    lo, hi = min(p.usd_per_1k for p in singles), max(p.usd_per_1k for p in singles)
    hull = mixing_hull(singles)
    out = {}
    for name, (rule, p) in rules.items():
        points = rule(p)
        out[name] = {"budget_score": budget_score(points, lo, hi),
                     "vs_best_single_model": gaps(points, singles, lo, hi, mix_reference=False),
                     "vs_random_mixing": gaps(points, hull, lo, hi)}
    out["random mixing"] = {"budget_score": budget_score(hull, lo, hi)}
    return out


def _candidates_markdown(by_seed: dict[int, dict[str, dict[str, Any]]]) -> str:
    seeds = list(by_seed)
    head = ["rule", *(f"budget score (seed {s})" for s in seeds),
            *(f"worst vs best single model (seed {s})" for s in seeds),
            *(f"mean vs random mixing (seed {s})" for s in seeds)]
    lines = ["| " + " | ".join(head) + " |", "|---" + "|---:" * (len(head) - 1) + "|"]
    for name in by_seed[seeds[0]]:
        rows = [by_seed[s][name] for s in seeds]
        cells = [f"{r['budget_score']:.3f}" for r in rows]
        for key, field in (("vs_best_single_model", "min"), ("vs_random_mixing", "mean")):
            cells += [f"{r[key][field]:+.3f}" if key in r else "" for r in rows]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    os.chdir(ROOT)
    if not CHAT.exists():
        sys.exit(f"{CHAT} not found (the AlpacaEval chat table lives in ../shared)")
    err = Console(stderr=True)
    candidates, seconds = {}, {}
    for seed in SEEDS:
        req = EvalRequest(data=[CHAT], out=HERE, frontier=True, prices=PRICES, folds=5,
                          seed=seed)
        table, cost, predicted, about = frontier_inputs(req, err)
        report = frontier_report(predicted, table.quality, cost, table.models,
                                 dataset=table.name, about=about)
        candidates[seed] = _candidates(table, cost, predicted, seed)
        if seed == SEEDS[0]:
            first, options = report, req.describe()
            print(frontier_markdown(report))
        else:
            seconds[f"fold seed {seed}"] = {
                "budget_scores": report.to_dict()["budget_scores"]["routing"],
                "gaps": report.headlines["gaps"]}
    results, plot = write_frontier(
        first, HERE, extra={"options": options, "rules_considered": {
            f"fold seed {s}": c for s, c in candidates.items()}, "second_seed": seconds},
        results_name="many_models.json", plot_name="many_models.png",
        title=f"AlpacaEval chat ({first.n_prompts} prompts, 5-fold CV): routing among "
              f"{len(first.models)} models at list prices",
        quality_label="P(judge prefers the answer over gpt-4-1106-preview's)")
    print("\n" + _candidates_markdown(candidates))
    print(json.dumps(seconds, indent=1))
    print(f"\nwrote {results} and {plot}")


if __name__ == "__main__":
    main()
