"""Fitting a :class:`~modelmix.routing.learned._model.RouterModel` from features and outcomes.

scikit-learn (logistic regression) is imported inside the functions that fit; the
matrix-factorisation head is fitted with numpy (full-batch Adam). The domain posterior
that the heads read is *cross-fitted*: on training rows it comes from domain models that
did not see the row, so the heads learn how much to trust it on unseen prompts.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from modelmix.errors import require_extra
from modelmix.routing.learned._fit_tokens import token_heads
from modelmix.routing.learned._model import Learner, RouterModel
from modelmix.routing.learned._pool import pooled_targets
from modelmix.routing.learned._tokens import SparseRows

__all__ = ["FitOptions", "FittedBase", "Progress", "fit_base", "fit_head", "fit_router"]

#: Progress callback: (stage label, steps done, steps in total).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How to fit.

    Attributes:
        learner: ``logreg`` | ``mf`` | ``knn`` (see :mod:`._model`).
        c: inverse L2 strength of the logistic heads (scikit-learn's ``C``).
        per_source: logreg: one set of heads per source file (benchmark), mixed by the
            domain model's posterior of each source (a mixture of experts); a prompt
            like no source gets the heads of the sources it resembles.
        domain_c: inverse L2 strength of the domain classifier.
        te_prior_rows: smoothing of the per-domain mean outcomes (pseudo-rows at the
            overall mean).
        domains: learn the domain posterior feature (needs >= 2 domains).
        inner_folds: folds of the domain cross-fitting.
        mf_rank / mf_l2 / mf_epochs / mf_lr: matrix factorisation size and training.
        knn_k / knn_shrink: neighbours and prior strength (in similarity units).
        structure: append the question-structure features
            (:mod:`._structure`) to the lexical ones (every learner).
        tokens: logreg: the heads also read sparse TF-IDF token features (WordPiece
            unigrams + hashed bigrams, :mod:`._tokens`), fitted jointly with the dense
            features in one L2 logistic regression per head.
        token_buckets: hash slots of the token bigrams.
        token_c: inverse L2 strength of that joint regression (liblinear's ``C``).
        token_beta: scale of the dense features in it; the dense weights are penalised
            like a separate ``C = token_c * token_beta**2`` (0.5 * 0.03**2 ~ 0.0005).
        pool: multi-task denoising of the training targets, in [0, 1]: each model's
            target becomes ``(1 - pool) * own + pool * mean of the other informative
            models`` on the same prompt (:func:`pooled_targets`); 0 (the default) trains
            on the outcomes as they are. Prompt difficulty is largely shared across
            models, so on small, noisy tables (judge preferences) the other models'
            outcomes are extra labels for it.
        seed: fixes the cross-fitting split and initialisations.
    """

    learner: Learner = "logreg"
    c: float = 0.001
    per_source: bool = True
    domain_c: float = 0.1
    te_prior_rows: float = 10.0
    domains: bool = True
    inner_folds: int = 5
    mf_rank: int = 16
    mf_l2: float = 1e-2
    mf_epochs: int = 300
    mf_lr: float = 0.01
    knn_k: int = 100
    knn_shrink: float = 5.0
    structure: bool = True
    tokens: bool = True
    token_buckets: int = 1 << 17
    token_c: float = 0.5
    token_beta: float = 0.03
    pool: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.pool <= 1.0:
            raise ValueError(f"pool must be in [0, 1], not {self.pool}")

    def describe(self) -> dict[str, Any]:
        """The parameters that matter for ``learner`` (for the manifest)."""
        common = {"structure": self.structure, "domains": self.domains, "domain_c": self.domain_c,
                  "te_prior_rows": self.te_prior_rows,
                  "inner_folds": self.inner_folds, "seed": self.seed}
        if self.pool:  # absent when off, so existing manifests read the same
            common["pool"] = self.pool
        specific: dict[str, dict[str, Any]] = {
            "logreg": {"c": self.c, "per_source": self.per_source} | (
                {"tokens": {"buckets": self.token_buckets, "c": self.token_c,
                            "beta": self.token_beta}} if self.tokens else {}),
            "mf": {"rank": self.mf_rank, "l2": self.mf_l2, "epochs": self.mf_epochs,
                   "lr": self.mf_lr},
            "knn": {"k": self.knn_k, "shrink": self.knn_shrink},
        }
        return {"name": self.learner, **specific[self.learner], **common}

    @classmethod
    def from_description(cls, described: Mapping[str, Any]) -> FitOptions:
        """The options a manifest's ``learner`` entry (:meth:`describe`) was made with
        (unlisted fields take their defaults; ``tokens`` absent means off).

        Raises:
            ValueError: an unknown learner.
        """
        d = dict(described)
        learner = d.pop("name", "logreg")
        if learner not in ("logreg", "mf", "knn"):
            raise ValueError(f"unknown learner {learner!r}")
        tokens = d.pop("tokens", None)
        renames = {"rank": "mf_rank", "l2": "mf_l2", "epochs": "mf_epochs", "lr": "mf_lr",
                   "k": "knn_k", "shrink": "knn_shrink"}
        fields = {f.name for f in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {renames.get(k, k): v for k, v in d.items()
                                  if renames.get(k, k) in fields}
        kwargs["tokens"] = bool(tokens)
        if tokens:
            kwargs.update(token_buckets=int(tokens["buckets"]), token_c=float(tokens["c"]),
                          token_beta=float(tokens["beta"]))
        return cls(learner=learner, **kwargs)


def _noop(stage: str, done: int, total: int) -> None:
    return None


def _fit_domain(x0: np.ndarray, labels: np.ndarray, n_classes: int,
                c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, returned as ``(K, F0)`` coef and ``(K,)`` intercept
    over all ``n_classes`` (classes absent from ``labels`` get a very low intercept)."""
    require_extra("sklearn", "train", "router training")
    from sklearn.linear_model import LogisticRegression

    clf = LogisticRegression(C=c, max_iter=200, tol=1e-2).fit(x0, labels)
    coef = np.zeros((n_classes, x0.shape[1]))
    intercept = np.full(n_classes, -30.0)
    present = clf.classes_.astype(int)
    if len(present) == 2:  # sklearn stores one row for two classes
        coef[present[1]], intercept[present[1]] = clf.coef_[0], clf.intercept_[0]
        intercept[present[0]] = 0.0
    else:
        coef[present], intercept[present] = clf.coef_, clf.intercept_
    return coef, intercept


def _domain_features(x0: np.ndarray, domains: Sequence[str], options: FitOptions,
                     progress: Progress) -> tuple[RouterModel, np.ndarray, np.ndarray]:
    """The full-data domain model (as a RouterModel shell), cross-fitted log-posteriors
    of the training rows ``(n, K)`` and the rows' domain indices ``(n,)``."""
    names = sorted(set(domains))
    shell = _shell(np.zeros((0, x0.shape[1])), np.zeros(0))
    if not options.domains or len(names) < 2:
        return shell, np.zeros((len(x0), 0)), np.zeros(len(x0), dtype=int)
    labels = np.searchsorted(names, np.asarray(domains))
    k = len(names)
    folds = np.random.default_rng(options.seed).integers(0, options.inner_folds, len(x0))
    logpost = np.zeros((len(x0), k))
    steps = options.inner_folds + 1
    for j in range(options.inner_folds):
        progress("domain model", j, steps)
        train, held = folds != j, folds == j
        logpost[held] = _shell(*_fit_domain(x0[train], labels[train], k,
                                            options.domain_c)).domain_log_posterior(x0[held])
    progress("domain model", options.inner_folds, steps)
    full = _shell(*_fit_domain(x0, labels, k, options.domain_c))
    progress("domain model", steps, steps)
    return full, logpost, labels


def _shell(coef: np.ndarray, intercept: np.ndarray) -> RouterModel:
    """A RouterModel holding only a domain model (to compute posteriors with)."""
    return RouterModel(learner="logreg", mean=np.zeros(0), std=np.ones(0), domain_coef=coef,
                       domain_intercept=intercept, domain_means=np.zeros((len(coef), 0)),
                       te_mean=np.zeros(0), te_std=np.ones(0))


def _domain_means(labels: np.ndarray, k: int, outcomes: np.ndarray,
                  prior_rows: float) -> np.ndarray:
    """``(K, M)`` mean outcome per domain and model, shrunk towards the model's overall
    mean as if ``prior_rows`` rows at that mean were added (missing outcomes skipped)."""
    known = np.isfinite(outcomes)
    filled = np.where(known, outcomes, 0.0)
    overall = filled.sum(0) / np.maximum(known.sum(0), 1)
    sums = np.zeros((k, outcomes.shape[1]))
    counts = np.zeros((k, outcomes.shape[1]))
    np.add.at(sums, labels, filled)
    np.add.at(counts, labels, known.astype(float))
    return np.asarray((sums + prior_rows * overall) / (counts + prior_rows))


def _logistic_head(x: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """One L2 logistic regression on outcomes ``y`` in [0, 1] (NaN rows skipped); soft
    labels become two rows weighted ``y`` and ``1 - y``. Returns (coef, intercept)."""
    require_extra("sklearn", "train", "router training")
    from sklearn.linear_model import LogisticRegression

    rows = np.isfinite(y)
    xj, y = x[rows], y[rows]
    if np.all((y == 0) | (y == 1)):
        xs, ys, ws = xj, y.astype(int), np.ones(len(y))
    else:
        xs = np.vstack([xj, xj])
        ys = np.concatenate([np.ones(len(y), int), np.zeros(len(y), int)])
        ws = np.concatenate([y, 1.0 - y])
    if len(np.unique(ys[ws > 0])) < 2:  # constant column: the intercept says it all
        p = float(np.clip(np.average(ys, weights=ws), 1e-3, 1 - 1e-3)) if ws.sum() else 0.5
        return np.zeros(x.shape[1]), float(np.log(p / (1 - p)))
    clf = LogisticRegression(C=c, solver="newton-cholesky", max_iter=100).fit(
        xs, ys, sample_weight=ws)
    return clf.coef_[0], float(clf.intercept_[0])


def _logistic_heads(base: FittedBase, outcomes: np.ndarray, options: FitOptions,
                    progress: Progress) -> dict[str, np.ndarray]:
    """Per source (or one shared set) and model column, a logistic head.

    Arrays: ``coef (S, M, F)``, ``intercept (S, M)``, ``gate (K, S)`` (domain -> source).
    """
    groups = base.source if options.per_source else np.zeros(len(base.x), dtype=int)
    gate = base.gate if options.per_source else np.ones((base.gate.shape[0], 1))
    n_src, m = int(gate.shape[1]), outcomes.shape[1]
    coef, intercept = np.zeros((n_src, m, base.x.shape[1])), np.zeros((n_src, m))
    for g in range(n_src):
        rows = groups == g
        for j in range(m):
            progress("quality heads", g * m + j, n_src * m)
            coef[g, j], intercept[g, j] = _logistic_head(base.x[rows], outcomes[rows, j],
                                                         options.c)
    progress("quality heads", n_src * m, n_src * m)
    return {"coef": coef, "intercept": intercept, "gate": gate}


def _mf_heads(x: np.ndarray, outcomes: np.ndarray, options: FitOptions,
              progress: Progress) -> dict[str, np.ndarray]:
    """RouteLLM-style matrix factorisation ``sigmoid(b_m + v_m . (P x))``, full-batch Adam
    on the masked binary cross-entropy plus ``mf_l2 * (|P|^2 + |V|^2) / 2``."""
    rng = np.random.default_rng(options.seed)
    mask = np.isfinite(outcomes)
    y = np.where(mask, outcomes, 0.0)
    n_obs = np.maximum(mask.sum(0), 1)
    params = {
        "proj": rng.normal(0, 1 / np.sqrt(x.shape[1]), (options.mf_rank, x.shape[1])),
        "vectors": rng.normal(0, 0.1, (outcomes.shape[1], options.mf_rank)),
        "bias": np.log((y.sum(0) + 1) / (n_obs - y.sum(0) + 1)),
    }
    moments = {k: (np.zeros_like(v), np.zeros_like(v)) for k, v in params.items()}
    for epoch in range(1, options.mf_epochs + 1):
        if epoch % 25 == 0:
            progress("matrix factorisation", epoch, options.mf_epochs)
        z = x @ params["proj"].T
        logits = z @ params["vectors"].T + params["bias"]
        g = (1.0 / (1.0 + np.exp(-logits)) - y) * mask / n_obs
        grads = {
            "vectors": g.T @ z + options.mf_l2 * params["vectors"],
            "proj": (g @ params["vectors"]).T @ x + options.mf_l2 * params["proj"],
            "bias": g.sum(0),
        }
        for key, grad in grads.items():
            m1, m2 = moments[key]
            m1[...] = 0.9 * m1 + 0.1 * grad
            m2[...] = 0.999 * m2 + 0.001 * grad**2
            step = m1 / (1 - 0.9**epoch) / (np.sqrt(m2 / (1 - 0.999**epoch)) + 1e-8)
            params[key] = params[key] - options.mf_lr * step
    return params


def _knn_arrays(embeddings: np.ndarray, outcomes: np.ndarray, posterior: np.ndarray,
                options: FitOptions) -> dict[str, np.ndarray]:
    """The neighbour bank (float16) and the per-domain prior the neighbours shrink to."""
    filled = np.where(np.isfinite(outcomes), outcomes, np.nanmean(outcomes, axis=0))
    if posterior.shape[1]:
        weights = posterior / np.maximum(posterior.sum(0, keepdims=True), 1e-9)
        prior = weights.T @ filled
    else:
        prior = filled.mean(0, keepdims=True)
    return {"bank": embeddings.astype(np.float16), "outcomes": filled.astype(np.float16),
            "prior": prior, "k": np.array(options.knn_k), "shrink": np.array(options.knn_shrink)}


@dataclass(frozen=True)
class FittedBase:
    """What every learner shares: standardisation, domain model, training features.

    Attributes:
        model: a RouterModel without learner arrays (standardisation, domain model,
            target encoding).
        x: ``(n, F)`` training features with *cross-fitted* domain log-posteriors and
            target encodings.
        posterior: ``(n, K)`` the cross-fitted domain posteriors of the training rows.
        source: ``(n,)`` source index of each training row.
        gate: ``(K, S)`` one-hot: the source each domain belongs to (``(0, S)`` without
            domains).
    """

    model: RouterModel
    x: np.ndarray
    posterior: np.ndarray
    source: np.ndarray
    gate: np.ndarray


def _qualified(domains: Sequence[str], sources: Sequence[str] | None) -> list[str]:
    """Domain labels made unique per source (``source/domain``), so each domain belongs
    to exactly one source."""
    if sources is None:
        return list(domains)
    return [d if d == s else f"{s}/{d}" for d, s in zip(domains, sources, strict=True)]


def _gate(labels: Sequence[str], sources: Sequence[str] | None,
          names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Source index per row ``(n,)`` and the domain -> source one-hot ``(K, S)``."""
    src = list(sources) if sources is not None else [""] * len(labels)
    src_names = sorted(set(src))
    row_source = np.searchsorted(src_names, np.asarray(src))
    owner = dict(zip(labels, row_source, strict=True))
    gate = np.zeros((len(names), len(src_names)))
    for k, name in enumerate(names):
        gate[k, owner[name]] = 1.0
    return row_source, gate


def fit_base(embeddings: np.ndarray, lexical: np.ndarray, outcomes: np.ndarray,
             domains: Sequence[str], options: FitOptions | None = None,
             progress: Progress | None = None, *,
             sources: Sequence[str] | None = None) -> FittedBase:
    """Fit the standardisation, the domain model and the target encoding.

    ``sources`` (per row: the file it came from) lets logreg fit one head per source.
    """
    options = options or FitOptions()
    labels = _qualified(domains, sources)
    raw = np.hstack([embeddings, lexical]).astype(np.float64)
    mean, std = raw.mean(0), raw.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    x0 = (raw - mean) / std
    domain, logpost, index = _domain_features(x0, labels, options, progress or _noop)
    k = logpost.shape[1]
    means = (_domain_means(index, k, outcomes, options.te_prior_rows) if k
             else np.zeros((0, outcomes.shape[1])))
    model = RouterModel(learner=options.learner, mean=mean, std=std,
                        structure=options.structure,
                        domain_coef=domain.domain_coef,
                        domain_intercept=domain.domain_intercept, domain_means=means,
                        te_mean=np.zeros(means.shape[1] if k else 0),
                        te_std=np.ones(means.shape[1] if k else 0))
    if k:
        raw_te = np.exp(logpost) @ means
        model.te_mean, model.te_std = raw_te.mean(0), np.maximum(raw_te.std(0), 1e-6)
        row_source, gate = _gate(labels, sources, sorted(set(labels)))
    else:  # no domain model, no gate: one set of heads
        row_source, gate = np.zeros(len(x0), dtype=int), np.zeros((0, 1))
    x = np.hstack([x0, logpost, model.target_encoding(logpost)])
    return FittedBase(model, x, np.exp(logpost), row_source, gate)


def fit_head(base: FittedBase, embeddings: np.ndarray, outcomes: np.ndarray,
             options: FitOptions | None = None,
             progress: Progress | None = None, *, tokens: SparseRows | None = None,
             token_vocab: int = 0) -> RouterModel:
    """Fit the learner's head on top of ``base`` (see :func:`fit_router`)."""
    options = options or FitOptions()
    progress = progress or _noop
    arrays: dict[str, np.ndarray]
    if options.learner == "logreg" and options.tokens:
        if tokens is None or token_vocab <= 0:
            raise ValueError("FitOptions(tokens=True) needs the token rows and vocab size")
        arrays = token_heads(base, outcomes, tokens, token_vocab, options, progress)
    elif options.learner == "logreg":
        arrays = _logistic_heads(base, outcomes, options, progress)
    elif options.learner == "mf":
        arrays = _mf_heads(base.x, outcomes, options, progress)
    else:
        arrays = _knn_arrays(embeddings, outcomes, base.posterior, options)
    return replace(base.model, learner=options.learner, arrays=arrays)


def fit_router(
    embeddings: np.ndarray,
    lexical: np.ndarray,
    outcomes: np.ndarray,
    domains: Sequence[str],
    options: FitOptions | None = None,
    progress: Progress | None = None,
    *,
    sources: Sequence[str] | None = None,
    tokens: SparseRows | None = None,
    token_vocab: int = 0,
) -> RouterModel:
    """Fit the standardisation, domain model and the learner's head.

    Args:
        embeddings: ``(n, dim)`` L2-normalised prompt embeddings.
        lexical: ``(n, L)`` raw lexical features.
        outcomes: ``(n, M)`` in [0, 1], NaN where unknown.
        domains: ``n`` domain labels (subject or dataset name).
        sources: ``n`` source (file) names; logreg fits heads per source.
        tokens / token_vocab: with ``options.tokens``, the prompts' token n-gram rows
            (:func:`~modelmix.routing.learned._tokens.ngram_rows`) and the vocab size.
    """
    if options is not None and options.pool:
        outcomes = pooled_targets(outcomes, options.pool)
    base = fit_base(embeddings, lexical, outcomes, domains, options, progress,
                    sources=sources)
    return fit_head(base, embeddings, outcomes, options, progress, tokens=tokens,
                    token_vocab=token_vocab)
