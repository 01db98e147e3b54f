"""Training the token-feature heads of the ``logreg`` learner (``FitOptions.tokens``):
one L2 logistic regression per source and model over [TF-IDF tokens, beta * dense
features] (liblinear; scipy and scikit-learn, training only). Scoring is in
:mod:`._tokens` and :mod:`._model`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from modelmix.errors import require_extra
from modelmix.routing.learned._tokens import SparseRows, idf_from_rows, tfidf_csr

if TYPE_CHECKING:
    from modelmix.routing.learned._fit import FitOptions, FittedBase, Progress

__all__ = ["token_heads"]


def _token_head(x: object, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2 logistic regression (liblinear) on a sparse ``x``; soft labels as in
    :func:`_logistic_head`. Returns (coef, intercept)."""
    import scipy.sparse as sp
    require_extra("sklearn", "train", "router training")
    from sklearn.linear_model import LogisticRegression

    rows = np.flatnonzero(np.isfinite(y))
    xj, y = x[rows], y[rows]  # type: ignore[index]
    if np.all((y == 0) | (y == 1)):
        xs, ys, ws = xj, y.astype(int), np.ones(len(y))
    else:
        xs = sp.vstack([xj, xj]).tocsr()
        ys = np.concatenate([np.ones(len(y), int), np.zeros(len(y), int)])
        ws = np.concatenate([y, 1.0 - y])
    if len(np.unique(ys[ws > 0])) < 2:
        p = float(np.clip(np.average(ys, weights=ws), 1e-3, 1 - 1e-3)) if ws.sum() else 0.5
        return np.zeros(x.shape[1]), float(np.log(p / (1 - p)))  # type: ignore[attr-defined]
    clf = LogisticRegression(C=c, solver="liblinear").fit(xs, ys, sample_weight=ws)
    return clf.coef_[0], float(clf.intercept_[0])


def token_heads(base: FittedBase, outcomes: np.ndarray, tokens: SparseRows, vocab: int,
                 options: FitOptions, progress: Progress) -> dict[str, np.ndarray]:
    """Like :func:`_logistic_heads`, each head on [TF-IDF tokens, beta * dense x]; the
    dense weights are stored multiplied by beta, so scoring adds the two dot products.

    Extra arrays: ``tok_coef (S, M, V)`` float32, ``tok_idf (V,)`` float32,
    ``tok_buckets`` (scalar).
    """
    import scipy.sparse as sp

    size = vocab + options.token_buckets
    idf = idf_from_rows(tokens, size).astype(np.float32)
    tfidf = tfidf_csr(tokens, idf.astype(np.float64))
    groups = base.source if options.per_source else np.zeros(len(base.x), dtype=int)
    gate = base.gate if options.per_source else np.ones((base.gate.shape[0], 1))
    n_src, m = int(gate.shape[1]), outcomes.shape[1]
    coef, intercept = np.zeros((n_src, m, base.x.shape[1])), np.zeros((n_src, m))
    tok_coef = np.zeros((n_src, m, size), dtype=np.float32)
    beta = options.token_beta
    for g in range(n_src):
        rows = np.flatnonzero(groups == g)
        x = sp.hstack([tfidf[rows], sp.csr_matrix(beta * base.x[rows])]).tocsr()  # type: ignore[index]
        for j in range(m):
            progress("quality heads", g * m + j, n_src * m)
            w, intercept[g, j] = _token_head(x, outcomes[rows, j], options.token_c)
            tok_coef[g, j], coef[g, j] = w[:size], beta * w[size:]
    progress("quality heads", n_src * m, n_src * m)
    return {"coef": coef, "intercept": intercept, "gate": gate, "tok_coef": tok_coef,
            "tok_idf": idf, "tok_buckets": np.array(options.token_buckets),
            "tok_vocab": np.array(vocab)}
