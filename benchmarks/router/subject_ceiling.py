"""How much would a better subject classifier help the learned router? (5-fold CV)

    .venv/bin/python benchmarks/router/subject_ceiling.py    # ~3 min on 2 cores

A compact re-implementation of the shipped ``logreg`` + tokens + structure learner
(`src/modelmix/routing/learned/_fit.py`, `_fit_tokens.py`: per-benchmark L2 logistic
heads over [TF-IDF WordPiece uni+bigrams, 0.03 x standardised dense features], the
dense features carrying the domain log-posterior and target encoding) in which only the
domain posterior changes:

- ``dense``: the shipped domain model (multinomial logistic regression on the static
  embedding + lexical features, C=0.1, cross-fitted in 5 inner folds); reproduces the
  shipped CV numbers within 0.002.
- ``svc``: a stronger subject classifier (linear SVM on the TF-IDF tokens + dense
  features, C=1, softmax of its margins with a temperature fitted on the cross-fitted
  margins).
- ``true``: the prompt's *true* subject as a (smoothed) one-hot, for training and test
  rows alike. Not a router (scoring never has the subject): the ceiling of any router
  whose only improvement is a better subject classifier.

Same folds and metrics as ``compare.py``. Writes ``subject_ceiling.json``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp
from compare import STRONG, WEAK, Bench
from scipy.optimize import minimize_scalar
from sklearn.linear_model import LogisticRegression
from sklearn.svm import LinearSVC

from modelmix.routing.learned._tokens import idf_from_rows, tfidf_csr
from modelmix.routing.learned._train import cross_validate_method

HERE = Path(__file__).resolve().parent
BETA, HEAD_C, DOMAIN_C, SVC_C, PRIOR_ROWS = 0.03, 0.5, 0.1, 1.0, 10.0


class Setup:
    def __init__(self) -> None:
        self.bench = Bench(256)
        table = self.bench.table
        self.sources = np.asarray(table.sources)
        names = sorted(set(table.domains))
        self.labels = np.searchsorted(names, np.asarray(table.domains))
        self.k = len(names)
        self.tokens = self.bench.tokens(1 << 17)
        self.vocab = self.bench.embedder.table.shape[0] + (1 << 17)
        self.dense = np.hstack([self.bench.emb["static"], self.bench.lexical(True)])
        self.y = table.outcomes[:, [self.bench.w, self.bench.s]]


def _softmax(z: np.ndarray, t: float) -> np.ndarray:
    z = t * (z - z.max(1, keepdims=True))
    e = np.exp(z)
    return np.asarray(e / e.sum(1, keepdims=True))


def _posteriors(s: Setup, mode: str, tr: np.ndarray, te: np.ndarray, xtr: Any, xte: Any,
                dtr: np.ndarray, dte: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Domain posteriors ``(len(tr), K)`` (cross-fitted) and ``(len(te), K)``."""
    if mode == "true":
        def onehot(rows: np.ndarray) -> np.ndarray:
            p = np.full((len(rows), s.k), 0.02 / s.k)
            p[np.arange(len(rows)), s.labels[rows]] += 0.98
            return p
        return onehot(tr), onehot(te)

    def fit(rows: np.ndarray) -> Any:
        if mode == "dense":
            clf = LogisticRegression(C=DOMAIN_C, max_iter=200, tol=1e-2)
            clf.fit(dtr[rows], s.labels[tr][rows])
            return lambda x, d: clf.predict_proba(d), clf
        clf = LinearSVC(C=SVC_C).fit(sp.hstack([xtr[rows], sp.csr_matrix(0.02 * dtr[rows])]),
                                     s.labels[tr][rows])
        return lambda x, d: clf.decision_function(sp.hstack([x, sp.csr_matrix(0.02 * d)])), clf

    inner = np.random.default_rng(0).integers(0, 5, len(tr))
    ptr = np.zeros((len(tr), s.k))
    for j in range(5):
        predict, clf = fit(np.flatnonzero(inner != j))
        held = inner == j
        ptr[np.ix_(held, clf.classes_)] = predict(xtr[held], dtr[held])
    predict, clf = fit(np.arange(len(tr)))
    pte = np.zeros((len(te), s.k))
    pte[:, clf.classes_] = predict(xte, dte)
    if mode == "svc":  # margins -> probabilities, temperature by cross-fitted NLL
        def nll(t: float) -> float:
            p = _softmax(ptr, t)[np.arange(len(tr)), s.labels[tr]]
            return float(-np.log(np.maximum(p, 1e-12)).mean())
        t = float(minimize_scalar(nll, bounds=(0.1, 50), method="bounded").x)
        ptr, pte = _softmax(ptr, t), _softmax(pte, t)
    return ptr, pte


def method(s: Setup, mode: str) -> Any:
    def score(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        tr, te = np.flatnonzero(train), np.flatnonzero(test)
        idf = idf_from_rows([s.tokens[i] for i in tr], s.vocab)
        xtr = tfidf_csr([s.tokens[i] for i in tr], idf)
        xte = tfidf_csr([s.tokens[i] for i in te], idf)
        mu, sd = s.dense[tr].mean(0), s.dense[tr].std(0) + 1e-8
        dtr, dte = (s.dense[tr] - mu) / sd, (s.dense[te] - mu) / sd
        ptr, pte = _posteriors(s, mode, tr, te, xtr, xte, dtr, dte)
        counts = np.bincount(s.labels[tr], minlength=s.k)[:, None]
        sums = np.zeros((s.k, 2))
        np.add.at(sums, s.labels[tr], s.y[tr])
        means = (sums + PRIOR_ROWS * s.y[tr].mean(0)) / (counts + PRIOR_ROWS)
        ftr = np.hstack([dtr, np.log(np.maximum(ptr, 1e-6)), ptr @ means])
        fte = np.hstack([dte, np.log(np.maximum(pte, 1e-6)), pte @ means])
        fm, fs = ftr.mean(0), ftr.std(0) + 1e-8
        ftr, fte = (ftr - fm) / fs, (fte - fm) / fs
        out = np.zeros(len(te))
        for source in np.unique(s.sources):
            a, b = s.sources[tr] == source, s.sources[te] == source
            xa = sp.hstack([xtr[a], sp.csr_matrix(BETA * ftr[a])]).tocsr()
            xb = sp.hstack([xte[b], sp.csr_matrix(BETA * fte[b])]).tocsr()
            p = [LogisticRegression(C=HEAD_C, solver="liblinear").fit(
                xa, s.y[tr][a][:, j].astype(int)).predict_proba(xb)[:, 1] for j in (0, 1)]
            out[b] = (1.0 + p[1] - p[0]) / 2.0
        return out
    return score


def main() -> None:
    s = Setup()
    results: dict[str, Any] = {}
    for mode in ("dense", "svc", "true"):
        start = time.perf_counter()
        r = cross_validate_method(s.bench.table, s.bench.fold, WEAK, STRONG, method(s, mode))
        results[mode] = {**r, "seconds": time.perf_counter() - start}
        print(f"{mode}: " + " | ".join(
            f"{b} APGR {r[b]['apgr']['mean']:.3f} ± {r[b]['apgr']['std']:.3f}, CPT(50%) "
            f"{100 * r[b]['cpt50']['mean']:.1f} ± {100 * r[b]['cpt50']['std']:.1f}"
            for b in ("mmlu", "gsm8k")), file=sys.stderr, flush=True)
    (HERE / "subject_ceiling.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
