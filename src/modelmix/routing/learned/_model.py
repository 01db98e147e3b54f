"""The fitted router: features of a prompt -> P(acceptable answer) per model, numpy only.

Feature vector of a prompt (all float32):

1. ``x0`` = standardised [static embedding (``dim``), lexical features
   (:data:`~modelmix.routing.learned._features.LEXICAL_FEATURES`)];
2. domain log-posterior (``K`` values): a multinomial logistic model over the training
   domains (MMLU subjects, dataset names), ``log softmax(x0 @ W_d.T + b_d)``, so the
   learner knows the task even though no subject is given at scoring time;
3. domain target encoding (``M`` values): per model, the expected outcome under the
   domain posterior, ``P(domain | prompt) @ domain_means`` (the mean outcome of each model
   in each training domain, smoothed), standardised. This one number per model carries
   the "which subject is hard for which model" signal that a strongly regularised head
   would otherwise shrink away;
4. learners read ``x = [x0, domain log-posterior, target encoding]``:

- ``logreg``: logistic heads per model, ``sigmoid(x @ W.T + b)``; with several source
  files one set per source, mixed by the domain posterior summed per source;
- ``mf``: RouteLLM's matrix factorisation with a shared projection,
  ``sigmoid(b_m + v_m . (P x))`` (rank ``r``; per-model vectors ``v_m``);
- ``knn``: similarity-weighted mean outcome of the ``k`` nearest training prompts
  (cosine on embeddings), shrunk towards the domain-weighted model means.

Scoring computes a prompt's features once (:class:`PromptFeatures`: token ids,
embedding, lexical features, ``x0``, token rows) and the heads read them from there, so
another score component can reuse them instead of tokenising again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from modelmix.routing.learned._embed import StaticEmbedder
from modelmix.routing.learned._features import lexical_features
from modelmix.routing.learned._tokens import SparseRows, ngram_rows, sparse_logits_rows

__all__ = ["LEARNERS", "Learner", "PromptFeatures", "RouterModel"]

Learner = Literal["logreg", "mf", "knn"]
#: Learners the package can train and ship.
LEARNERS: tuple[Learner, ...] = ("logreg", "mf", "knn")
MODEL_FILE = "model.npz"
#: Log-posteriors below this (P < 4.5e-5) carry no more information, only scale.
LOG_POSTERIOR_FLOOR = -10.0


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))), dtype=np.float64)


def _log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return np.asarray(z - np.log(np.exp(z).sum(axis=1, keepdims=True)), dtype=np.float64)


@dataclass(frozen=True, slots=True)
class PromptFeatures:
    """What a router reads of ``n`` prompts, computed once per prompt
    (:meth:`RouterModel.features`). Arrays are shared: treat them as read-only.

    Attributes:
        prompts: the texts, in order.
        ids: per prompt, its WordPiece ids (int64, at most the embedder's ``max_tokens``).
        embeddings: ``(n, dim)`` float32, L2-normalised static embeddings.
        lexical: ``(n, L)`` float32 raw lexical (and structure) features.
        x0: ``(n, F0)`` float64 standardised [embedding, lexical].
        tokens: the token n-gram rows when the heads read them, else None.
    """

    prompts: tuple[str, ...]
    ids: list[np.ndarray]
    embeddings: np.ndarray
    lexical: np.ndarray
    x0: np.ndarray
    tokens: SparseRows | None


@dataclass(kw_only=True)
class RouterModel:
    """Arrays of a fitted router (see the module doc for the maths).

    Attributes:
        learner: which head predicts.
        mean / std: ``(F0,)`` standardisation of [embedding, lexical].
        domain_coef / domain_intercept: ``(K, F0)`` / ``(K,)``; ``K == 0`` without domains.
        domain_means: ``(K, M)`` mean outcome per training domain and model (smoothed).
        te_mean / te_std: ``(M,)`` standardisation of the target encoding.
        arrays: learner arrays: logreg ``coef (S, M, F)``, ``intercept (S, M)``, ``gate
            (K, S)``; mf ``proj
            (r, F)``, ``vectors (M, r)``, ``bias (M,)``; knn ``bank (N, dim)`` float16,
            ``outcomes (N, M)``, ``prior (K, M)``, plus scalars ``k`` and ``shrink``.
    """

    learner: Learner
    mean: np.ndarray
    std: np.ndarray
    domain_coef: np.ndarray
    domain_intercept: np.ndarray
    domain_means: np.ndarray
    te_mean: np.ndarray
    te_std: np.ndarray
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    structure: bool = False
    #: ``tok_coef`` as ``(V, S * M)`` float64 rows, made on first scoring (not saved).
    _tok_rows: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def base_features(self, embeddings: np.ndarray, lexical: np.ndarray) -> np.ndarray:
        """``x0``: standardised [embedding, lexical], ``(n, F0)``."""
        raw = np.hstack([embeddings, lexical]).astype(np.float64)
        return np.asarray((raw - self.mean) / self.std, dtype=np.float64)

    def domain_log_posterior(self, x0: np.ndarray) -> np.ndarray:
        """``(n, K)`` log P(domain | prompt), floored at :data:`LOG_POSTERIOR_FLOOR`;
        ``(n, 0)`` when trained without domains."""
        if self.domain_coef.shape[0] == 0:
            return np.zeros((x0.shape[0], 0))
        logpost = _log_softmax(x0 @ self.domain_coef.T + self.domain_intercept)
        return np.asarray(np.maximum(logpost, LOG_POSTERIOR_FLOOR))

    def target_encoding(self, logpost: np.ndarray) -> np.ndarray:
        """``(n, M)`` standardised expected outcome per model under the domain posterior;
        ``(n, 0)`` without domains."""
        if logpost.shape[1] == 0:
            return np.zeros((logpost.shape[0], 0))
        return np.asarray((np.exp(logpost) @ self.domain_means - self.te_mean) / self.te_std)

    def head_features(self, x0: np.ndarray) -> np.ndarray:
        """``x`` = [x0, domain log-posterior, target encoding], ``(n, F)``."""
        logpost = self.domain_log_posterior(x0)
        return np.hstack([x0, logpost, self.target_encoding(logpost)])

    @property
    def uses_tokens(self) -> bool:
        """Whether the heads read sparse token features (logreg with ``tokens``)."""
        return "tok_coef" in self.arrays

    def _idf64(self) -> np.ndarray:
        """The token IDF as float64, converted once (it is stored as float32)."""
        idf = self.arrays["tok_idf"]
        if idf.dtype != np.float64:
            idf = self.arrays["tok_idf"] = idf.astype(np.float64)
        return idf

    def token_rows(self, ids: Sequence[np.ndarray]) -> SparseRows:
        """The token n-gram rows of prompts' token ids, in this model's layout."""
        return ngram_rows(ids, int(self.arrays["tok_vocab"]), int(self.arrays["tok_buckets"]))

    def _token_coef_rows(self) -> np.ndarray:
        """``tok_coef (S, M, V)`` as ``(V, S * M)`` float64, made once: a prompt's tokens
        then gather contiguous rows."""
        rows = self._tok_rows
        if rows is None:
            coef = self.arrays["tok_coef"]
            rows = np.ascontiguousarray(
                coef.reshape(-1, coef.shape[2]).T.astype(np.float64))
            self._tok_rows = rows
        return rows

    def features(self, embedder: StaticEmbedder, prompts: Sequence[str]) -> PromptFeatures:
        """Tokenise, embed and describe ``prompts`` once (:class:`PromptFeatures`)."""
        ids = embedder.token_ids(prompts)
        emb = embedder.embed_ids(ids)
        lexical = lexical_features(prompts, self.structure)
        return PromptFeatures(tuple(prompts), ids, emb, lexical,
                              self.base_features(emb, lexical),
                              self.token_rows(ids) if self.uses_tokens else None)

    def predict_prompts(self, features: PromptFeatures) -> np.ndarray:
        """P(acceptable) per model, ``(n, M)`` float64, from :meth:`features`."""
        return self.predict_features(features.x0, features.embeddings, features.tokens)

    def predict_features(self, x0: np.ndarray, embeddings: np.ndarray,
                         tokens: SparseRows | None = None) -> np.ndarray:
        """P(acceptable) per model, ``(n, M)``, from precomputed features (``tokens``:
        the token rows, needed when :attr:`uses_tokens`)."""
        logpost = self.domain_log_posterior(x0)
        x = np.hstack([x0, logpost, self.target_encoding(logpost)])
        a = self.arrays
        if self.learner == "logreg":
            return self._mixture(x, tokens, logpost)
        if self.learner == "mf":
            return _sigmoid((x @ a["proj"].T) @ a["vectors"].T + a["bias"])
        return self._knn(embeddings, np.exp(logpost))

    def _mixture(self, x: np.ndarray, tokens: SparseRows | None = None,
                 logpost: np.ndarray | None = None) -> np.ndarray:
        """Per-source logistic heads mixed by the posterior of each source (``logpost``:
        :meth:`domain_log_posterior` of ``x0``, recomputed when not given)."""
        a = self.arrays
        logits = np.einsum("nf,smf->nsm", x, a["coef"]) + a["intercept"]  # (n,S,M)
        if self.uses_tokens:
            if tokens is None:
                raise ValueError("this router's heads need the prompts' token rows")
            logits = logits + sparse_logits_rows(tokens, self._idf64(),
                                                 self._token_coef_rows(), logits.shape[1:])
        probs = _sigmoid(logits)
        if probs.shape[1] == 1:
            return np.asarray(probs[:, 0])
        if logpost is None:
            logpost = self.domain_log_posterior(x[:, : self.mean.shape[0]])
        gate = np.exp(logpost) @ a["gate"]
        gate = gate / np.maximum(gate.sum(1, keepdims=True), 1e-12)
        return np.asarray(np.einsum("ns,nsm->nm", gate, probs))

    def _knn(self, embeddings: np.ndarray, posterior: np.ndarray) -> np.ndarray:
        a = self.arrays
        bank = a["bank"].astype(np.float32)
        k = min(int(a["k"]), bank.shape[0])
        sims = embeddings.astype(np.float32) @ bank.T
        idx = np.argpartition(-sims, k - 1, axis=1)[:, :k]
        weights = np.maximum(np.take_along_axis(sims, idx, axis=1), 0.0).astype(np.float64)
        weights = weights + 1e-6
        outcomes = a["outcomes"].astype(np.float64)[idx]  # (n, k, M)
        local = (weights[:, :, None] * outcomes).sum(1) / weights.sum(1)[:, None]
        prior = posterior @ a["prior"] if posterior.shape[1] else a["prior"].mean(0)
        shrink = float(a["shrink"])
        total = weights.sum(1)[:, None]
        return np.asarray((total * local + shrink * prior) / (total + shrink), dtype=np.float64)

    def predict(self, embedder: StaticEmbedder, prompts: Sequence[str]) -> np.ndarray:
        """P(acceptable) per model, ``(len(prompts), M)`` float64 in [0, 1]."""
        return self.predict_prompts(self.features(embedder, prompts))

    def save(self, directory: Path) -> None:
        arrays: dict[str, Any] = {f"learner_{k}": v for k, v in self.arrays.items()}
        if "learner_tok_idf" in arrays:  # float64 in memory after scoring; 4 bytes suffice
            arrays["learner_tok_idf"] = arrays["learner_tok_idf"].astype(np.float32)
        arrays.update(mean=self.mean, std=self.std, domain_coef=self.domain_coef,
                      domain_intercept=self.domain_intercept, domain_means=self.domain_means,
                      te_mean=self.te_mean, te_std=self.te_std)
        if self.structure:
            arrays["structure"] = np.array(True)
        np.savez_compressed(directory / MODEL_FILE, **arrays)

    @classmethod
    def load(cls, directory: Path, learner: Learner) -> RouterModel:
        with np.load(directory / MODEL_FILE) as data:
            arrays = {k.removeprefix("learner_"): data[k] for k in data.files
                      if k.startswith("learner_")}
            return cls(learner=learner, mean=data["mean"], std=data["std"],
                       domain_coef=data["domain_coef"],
                       domain_intercept=data["domain_intercept"],
                       domain_means=data["domain_means"], te_mean=data["te_mean"],
                       te_std=data["te_std"], arrays=arrays,
                       structure="structure" in data.files and bool(data["structure"]))
