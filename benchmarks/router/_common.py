"""Shared pieces of the router benchmarks: data, folds, cross-validated scoring.

Cross-validation (the eval module's protocol, ``modelmix.eval.stratified_folds``): each
benchmark is split into 5 folds by prompt (duplicates kept together, MMLU stratified by
subject, seed 0). For fold k one router is trained on the other folds of *every*
benchmark together (as the shipped router is trained on both) and scores fold k of each
benchmark; no prompt is ever scored by a router that trained on it. Metrics are
``modelmix.eval.evaluate_scores`` (RouteLLM's definitions, DESIGN.md "Router metrics"),
reported as mean ± sample std over the 5 folds.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.eval import PairTable, evaluate_scores, load_outcome_table, stratified_folds

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "routellm"
WORK = ROOT / "benchmarks" / ".work" / "router"
DATASETS = ("mmlu", "gsm8k")
FOLDS = 5
SEED = 0

#: A method: (train mask, test mask) over the concatenated benchmarks -> test scores.
Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def load_tables() -> list[PairTable]:
    return [load_outcome_table(DATA / f"{name}.csv") for name in DATASETS]


@dataclass
class Corpus:
    """All benchmarks concatenated, with per-row dataset index and fold."""

    tables: list[PairTable]
    prompts: list[str]
    weak: np.ndarray
    strong: np.ndarray
    domains: list[str]
    dataset: np.ndarray
    fold: np.ndarray

    @classmethod
    def load(cls) -> Corpus:
        tables = load_tables()
        fold_parts = []
        for table in tables:
            fold = np.empty(len(table), dtype=int)
            for k, rows in enumerate(stratified_folds(table, FOLDS, SEED)):
                fold[rows] = k
            fold_parts.append(fold)
        return cls(
            tables=tables,
            prompts=[p for t in tables for p in t.prompts],
            weak=np.concatenate([np.asarray(t.weak) for t in tables]),
            strong=np.concatenate([np.asarray(t.strong) for t in tables]),
            domains=[s for t in tables for s in (t.subjects or (t.name,) * len(t))],
            dataset=np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)]),
            fold=np.concatenate(fold_parts),
        )

    @property
    def outcomes(self) -> np.ndarray:
        """``(n, 2)``: weak, strong."""
        return np.stack([self.weak, self.strong], axis=1)


def _stat(values: list[float]) -> dict[str, Any]:
    arr = np.asarray(values, dtype=np.float64)
    return {"mean": float(arr.mean()), "std": float(arr.std(ddof=1)),
            "per_fold": [float(v) for v in arr]}


def cross_validate(corpus: Corpus, method: Method) -> dict[str, dict[str, Any]]:
    """Per benchmark: APGR and CPT(50%) (strong-call fraction) over the folds."""
    per: dict[str, dict[str, list[float]]] = {
        t.name: {"apgr": [], "cpt50": [], "cpt80": []} for t in corpus.tables}
    for k in range(FOLDS):
        train = corpus.fold != k
        test = ~train
        scores = np.full(len(corpus.prompts), math.nan)
        scores[test] = method(train, test)
        for i, table in enumerate(corpus.tables):
            rows = test & (corpus.dataset == i)
            m = evaluate_scores(scores[rows], corpus.weak[rows], corpus.strong[rows])
            per[table.name]["apgr"].append(m.apgr)
            per[table.name]["cpt50"].append(m.cpt[0.5])
            per[table.name]["cpt80"].append(m.cpt[0.8])
    return {name: {key: _stat(v) for key, v in d.items()} for name, d in per.items()}


def fmt(result: dict[str, dict[str, Any]], name: str) -> str:
    r = result[name]
    return (f"APGR {r['apgr']['mean']:.3f} ± {r['apgr']['std']:.3f}, CPT(50%) "
            f"{100 * r['cpt50']['mean']:.1f} ± {100 * r['cpt50']['std']:.1f}%")
