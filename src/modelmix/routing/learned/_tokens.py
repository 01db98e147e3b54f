"""Sparse token features: WordPiece unigrams + hashed token bigrams, TF-IDF, numpy only.

A prompt's feature vector has ``vocab + buckets`` entries: the count of every WordPiece
token id (the embedder's tokenizer, so no second tokenizer is shipped) and of every
adjacent token pair hashed into ``buckets`` slots. Counts become ``1 + log(count)``, are
multiplied by the training-set IDF (0 for features never seen in training) and the row is
L2-normalised. Scoring reads only the non-zero entries, so a prompt costs
O(tokens) beyond the tokenisation the embedder already does.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["SparseRows", "idf_from_rows", "ngram_rows", "sparse_logits", "sparse_logits_rows"]

#: Multiplier of the bigram hash ``(a * P + b) mod buckets``.
_BIGRAM_PRIME = 1_000_003

#: Rows of a sparse matrix: per prompt, (feature indices, raw 1 + log(count) values).
SparseRows = list[tuple[np.ndarray, np.ndarray]]


def ngram_rows(ids: Sequence[np.ndarray], vocab: int, buckets: int) -> SparseRows:
    """Unigram + hashed-bigram features per prompt with sublinear counts."""
    rows: SparseRows = []
    for row in ids:
        feats = row if row.size < 2 else np.concatenate(
            [row, vocab + (row[:-1] * _BIGRAM_PRIME + row[1:]) % buckets])
        idx, counts = np.unique(feats, return_counts=True)
        rows.append((idx, 1.0 + np.log(counts.astype(np.float64))))
    return rows


def idf_from_rows(rows: SparseRows, size: int) -> np.ndarray:
    """Smoothed IDF ``log((1 + n) / (1 + df)) + 1``; 0 for features no row has."""
    df = np.zeros(size)
    for idx, _ in rows:
        df[idx] += 1.0
    idf = np.log((1.0 + len(rows)) / (1.0 + df)) + 1.0
    return np.where(df > 0, idf, 0.0)


def _weighted(idx: np.ndarray, val: np.ndarray, idf: np.ndarray) -> np.ndarray:
    v = val * idf[idx]
    return np.asarray(v / max(float(np.sqrt(v @ v)), 1e-8))


def tfidf_csr(rows: SparseRows, idf: np.ndarray) -> object:
    """Training only: the TF-IDF rows as a ``scipy.sparse.csr_matrix``."""
    import scipy.sparse as sp

    data = [_weighted(i, v, idf) for i, v in rows]
    indptr = np.concatenate([[0], np.cumsum([len(i) for i, _ in rows])])
    indices = np.concatenate([i for i, _ in rows]) if rows else np.zeros(0, int)
    values = np.concatenate(data) if data else np.zeros(0)
    return sp.csr_matrix((values, indices, indptr), shape=(len(rows), idf.size))


def sparse_logits(rows: SparseRows, idf: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``(n, S, M)`` TF-IDF rows times ``coef (S, M, V)``."""
    out = np.zeros((len(rows), coef.shape[0], coef.shape[1]))
    for n, (idx, val) in enumerate(rows):
        out[n] = coef[:, :, idx].astype(np.float64) @ _weighted(idx, val, idf)
    return out


def sparse_logits_rows(rows: SparseRows, idf: np.ndarray, coef_rows: np.ndarray,
                       shape: tuple[int, ...]) -> np.ndarray:
    """:func:`sparse_logits` with the coefficients as ``(V, S * M)`` float64 rows (made
    once per model): a prompt gathers ``len(idx)`` contiguous rows instead of a strided
    slice of every ``(S, M)`` plane. Returns ``(n, *shape)`` with ``shape == (S, M)``;
    equal to :func:`sparse_logits` up to float rounding (~1e-16)."""
    out = np.zeros((len(rows), coef_rows.shape[1]))
    for n, (idx, val) in enumerate(rows):
        out[n] = _weighted(idx, val, idf) @ coef_rows[idx]
    return out.reshape((len(rows), *shape))
