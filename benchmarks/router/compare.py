"""Learner comparison for the learned router: 5-fold CV on MMLU and GSM8K.

    .venv/bin/python benchmarks/router/distill.py --dim 256 --full   # once (train extra)
    .venv/bin/python benchmarks/router/compare.py                    # ~15 min on 2 cores
    .venv/bin/python benchmarks/router/compare.py --methods logreg,knn

Protocol (``modelmix.routing.learned._train``, the same code as ``router train --cv``):
folds by prompt from ``modelmix.eval.stratified_folds`` (MMLU stratified by subject),
one router per fold trained on the other folds of both benchmarks together, metrics from
``modelmix.eval.evaluate_scores``. Features are computed once per prompt (they do not
depend on labels); the domain model is refitted inside every fold.

Writes ``benchmarks/router/results.json`` and prints the Markdown table of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.routing.learned import FitOptions, OutcomeTable, StaticEmbedder
from modelmix.routing.learned._features import lexical_features
from modelmix.routing.learned._fit import FittedBase, fit_base, fit_head
from modelmix.routing.learned._structure import structure_features
from modelmix.routing.learned._tables import read_outcome_tables
from modelmix.routing.learned._tokens import ngram_rows
from modelmix.routing.learned._train import assign_folds, cross_validate_method

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
DATA = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
WORK = ROOT / "benchmarks" / ".work" / "router"
WEAK, STRONG = "mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview"


class Bench:
    """Features of every prompt, and per (embedding, fold) the fitted base."""

    def __init__(self, dim: int) -> None:
        self.table: OutcomeTable = read_outcome_tables(DATA)
        self.embedder = StaticEmbedder.load(WORK / f"embedder-{dim}")
        self.emb = {"static": self.embedder.embed(self.table.prompts)}
        full = [WORK / f"minilm-{p.stem}.npy" for p in DATA]
        if all(f.exists() for f in full):
            self.emb["minilm"] = np.vstack([np.load(f) for f in full])
        self.lex = lexical_features(self.table.prompts)
        self.fold = assign_folds(self.table)
        self.w = self.table.model_names.index(WEAK)
        self.s = self.table.model_names.index(STRONG)
        self._bases: dict[tuple[str, bool, int, bool], FittedBase] = {}
        self._lex_structure: np.ndarray | None = None
        self._tokens: dict[int, list] = {}

    def tokens(self, buckets: int) -> list:
        """Token n-gram rows of every prompt (``FitOptions(tokens=True)``)."""
        if buckets not in self._tokens:
            ids = self.embedder.token_ids(list(self.table.prompts))
            self._tokens[buckets] = ngram_rows(ids, self.embedder.table.shape[0], buckets)
        return self._tokens[buckets]

    def lexical(self, structure: bool) -> np.ndarray:
        """Lexical features, with the structure features appended when asked."""
        if not structure:
            return self.lex
        if self._lex_structure is None:
            self._lex_structure = np.hstack([self.lex, structure_features(self.table.prompts)])
        return self._lex_structure

    def base(self, emb: str, domains: bool, train: np.ndarray,
             structure: bool = False) -> FittedBase:
        key = (emb, domains, int(np.flatnonzero(~train)[0]), structure)
        if key not in self._bases:
            rows = np.flatnonzero(train)
            self._bases[key] = fit_base(self.emb[emb][rows], self.lexical(structure)[rows],
                                        self.table.outcomes[rows],
                                        [self.table.domains[i] for i in rows],
                                        FitOptions(domains=domains, structure=structure),
                                        sources=[self.table.sources[i] for i in rows])
        return self._bases[key]

    def test_x(self, base: FittedBase, emb: str, test: np.ndarray) -> np.ndarray:
        x0 = base.model.base_features(self.emb[emb][test], self.lex[test])
        return base.model.head_features(x0)

    def score(self, probs: np.ndarray) -> np.ndarray:
        return np.asarray((1.0 + probs[:, self.s] - probs[:, self.w]) / 2.0)


Method = Callable[[np.ndarray, np.ndarray], np.ndarray]


def package_learner(bench: Bench, options: FitOptions, emb: str = "static") -> Method:
    """A learner of the package, trained on rows ``train`` (optionally of one source)."""
    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        base = bench.base(emb, options.domains, train, options.structure)
        rows = np.flatnonzero(train)
        tok = bench.tokens(options.token_buckets) if options.tokens else None
        model = fit_head(base, bench.emb[emb][rows], bench.table.outcomes[rows], options,
                         tokens=[tok[i] for i in rows] if tok else None,
                         token_vocab=bench.embedder.table.shape[0])
        x0 = model.base_features(bench.emb[emb][test],
                                 bench.lexical(options.structure)[test])
        return bench.score(model.predict_features(
            x0, bench.emb[emb][test],
            [tok[i] for i in np.flatnonzero(test)] if tok else None))
    return method


def per_benchmark(bench: Bench, options: FitOptions) -> Method:
    """The same learner trained on each benchmark alone (no joint training)."""
    sources = np.asarray(bench.table.sources)

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        out = np.zeros(int(test.sum()))
        for source in np.unique(sources):
            tr, te = train & (sources == source), test & (sources == source)
            rows = np.flatnonzero(tr)
            base = fit_base(bench.emb["static"][rows], bench.lex[rows],
                            bench.table.outcomes[rows], [bench.table.domains[i] for i in rows],
                            options)
            model = fit_head(base, bench.emb["static"][rows], bench.table.outcomes[rows],
                             options)
            x0 = model.base_features(bench.emb["static"][te], bench.lex[te])
            out[(sources[test] == source)] = bench.score(
                model.predict_features(x0, bench.emb["static"][te]))
        return out
    return method


def gbm(bench: Bench) -> Method:
    """scikit-learn gradient boosting on the same features (regression on strong - weak)."""
    from sklearn.ensemble import HistGradientBoostingRegressor

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        base = bench.base("static", True, train)
        y = bench.table.outcomes[train][:, bench.s] - bench.table.outcomes[train][:, bench.w]
        reg = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.05,
                                            max_leaf_nodes=15, min_samples_leaf=40,
                                            random_state=0).fit(base.x, y)
        return np.asarray(reg.predict(bench.test_x(base, "static", test)))
    return method


def lexical_only(bench: Bench) -> Method:
    """Logistic heads on the lexical features alone (no embedding, no domain)."""
    from sklearn.linear_model import LogisticRegression

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        mean, std = bench.lex[train].mean(0), bench.lex[train].std(0) + 1e-8
        xtr, xte = (bench.lex[train] - mean) / std, (bench.lex[test] - mean) / std
        probs = np.zeros((int(test.sum()), 2))
        for j, col in enumerate((bench.w, bench.s)):
            clf = LogisticRegression(C=1.0, max_iter=1000).fit(
                xtr, bench.table.outcomes[train][:, col].astype(int))
            probs[:, j] = clf.predict_proba(xte)[:, 1]
        return probs[:, 1] - probs[:, 0]
    return method


def random_router(bench: Bench) -> Method:
    """Uniform random scores (seeded per fold): the floor, APGR ~0.5."""
    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        return np.random.default_rng(int(np.flatnonzero(test)[0])).random(int(test.sum()))
    return method


def true_subject(bench: Bench) -> Method:
    """Reference, not a router: the training folds' mean gain (strong - weak) of the
    prompt's *true* MMLU subject / benchmark, which scoring never has. The ceiling of
    any router that only knows the subject."""
    domains = np.asarray(bench.table.domains)
    gain = bench.table.outcomes[:, bench.s] - bench.table.outcomes[:, bench.w]

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        means = {d: float(gain[train & (domains == d)].mean()) for d in np.unique(domains)}
        tie = np.random.default_rng(0).random(int(test.sum())) * 1e-9
        return np.array([means[d] for d in domains[test]]) + tie
    return method


def methods(bench: Bench) -> dict[str, tuple[str, Method]]:
    """key -> (label, method)."""
    dense = FitOptions(c=0.001, tokens=False, structure=False)  # shipped until 2026-11-30

    def variant(**changes: Any) -> FitOptions:
        return replace(dense, **changes)

    out: dict[str, tuple[str, Method]] = {
        "logreg": ("logreg heads (C=0.001): static emb + lexical + domain (dense features)",
                   package_learner(bench, dense)),
        "logreg-tokens": ("logreg heads + TF-IDF WordPiece uni+bigram features (joint, "
                          "liblinear C=0.5, dense scaled 0.03)",
                          package_learner(bench, variant(tokens=True))),
        "logreg-structure": ("logreg heads + question-structure features",
                             package_learner(bench, variant(structure=True))),
        "logreg-tokens-structure": ("logreg heads + TF-IDF tokens + question-structure "
                                    "features (shipped)", package_learner(
                                        bench, variant(tokens=True, structure=True))),
        "logreg-shared": ("logreg, one set of heads for both benchmarks",
                          package_learner(bench, variant(per_source=False))),
        "logreg-c0.01": ("logreg heads, C=0.01", package_learner(bench, variant(c=0.01))),
        "logreg-c0.0003": ("logreg heads, C=0.0003",
                           package_learner(bench, variant(c=0.0003))),
        "mf-l2": ("matrix factorisation, rank 16, l2=0.1",
                  package_learner(bench, variant(learner="mf", mf_l2=0.1))),
        "logreg-nodomain": ("logreg heads: static emb + lexical, no domain feature",
                            package_learner(bench, variant(domains=False))),
        "logreg-separate": ("logreg heads, one router per benchmark",
                            per_benchmark(bench, dense)),
        "mf": ("matrix factorisation (RouteLLM-style), rank 16",
               package_learner(bench, variant(learner="mf"))),
        "knn": ("kNN (k=100, cosine) shrunk to domain prior",
                package_learner(bench, variant(learner="knn"))),
        "gbm": ("gradient boosting (sklearn HistGB) on the same features", gbm(bench)),
        "lexical": ("logreg heads on lexical features only", lexical_only(bench)),
        "random": ("random router (floor)", random_router(bench)),
        "true-subject": ("reference: true subject's mean gain (not available when scoring)",
                         true_subject(bench)),
    }
    if "minilm" in bench.emb:
        out["logreg-minilm"] = ("logreg heads: full MiniLM emb + lexical + domain",
                                package_learner(bench, dense, emb="minilm"))
    return out


def _row(label: str, result: dict[str, Any]) -> str:
    cells = []
    for name in ("mmlu", "gsm8k"):
        r = result[name]
        cells += [f"{r['apgr']['mean']:.3f} ± {r['apgr']['std']:.3f}",
                  f"{100 * r['cpt50']['mean']:.1f} ± {100 * r['cpt50']['std']:.1f}"]
    return f"| {label} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--methods", default="", help="comma-separated keys (default: all)")
    parser.add_argument("--out", type=Path, default=HERE / "results.json")
    args = parser.parse_args()
    bench = Bench(args.dim)
    available = methods(bench)
    keys = [k for k in args.methods.split(",") if k] or list(available)
    previous = json.loads(args.out.read_text()) if args.out.exists() else {}
    results: dict[str, Any] = previous.get("methods", {})
    for key in keys:
        label, method = available[key]
        start = time.perf_counter()
        result = cross_validate_method(bench.table, bench.fold, WEAK, STRONG, method)
        results[key] = {"label": label, **result, "seconds": time.perf_counter() - start}
        print(_row(label, result), f"({results[key]['seconds']:.0f} s)", file=sys.stderr,
              flush=True)
    doc = {"protocol": "5-fold CV by prompt (modelmix.eval.stratified_folds, seed 0), MMLU "
                       "stratified by subject; mean ± sample std over folds; CPT as % of "
                       "strong calls", "embedding_dim": args.dim, "methods": results}
    args.out.write_text(json.dumps(doc, indent=1) + "\n")
    print("| learner | MMLU APGR | MMLU CPT(50%) | GSM8K APGR | GSM8K CPT(50%) |")
    print("| --- | --- | --- | --- | --- |")
    for entry in results.values():
        print(_row(entry["label"], entry))


if __name__ == "__main__":
    main()
