"""Fitting a :class:`~modelmix.routing.learned._model.RouterModel` from features and outcomes.

scikit-learn (logistic regression) is imported inside the functions that fit; the
matrix-factorisation head is fitted with numpy (full-batch Adam). The domain posterior
that the heads read is *cross-fitted*: on training rows it comes from domain models that
did not see the row, so the heads learn how much to trust it on unseen prompts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelmix.routing.learned._model import Learner, RouterModel

__all__ = ["FitOptions", "FittedBase", "Progress", "fit_base", "fit_head", "fit_router"]

#: Progress callback: (stage label, steps done, steps in total).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True, kw_only=True)
class FitOptions:
    """How to fit.

    Attributes:
        learner: ``logreg`` | ``mf`` | ``knn`` (see :mod:`._model`).
        c: inverse L2 strength of the logistic heads (scikit-learn's ``C``).
        domain_c: inverse L2 strength of the domain classifier.
        domains: learn the domain posterior feature (needs >= 2 domains).
        inner_folds: folds of the domain cross-fitting.
        mf_rank / mf_l2 / mf_epochs / mf_lr: matrix factorisation size and training.
        knn_k / knn_shrink: neighbours and prior strength (in similarity units).
        seed: fixes the cross-fitting split and initialisations.
    """

    learner: Learner = "logreg"
    c: float = 0.01
    domain_c: float = 0.1
    domains: bool = True
    inner_folds: int = 5
    mf_rank: int = 16
    mf_l2: float = 1e-2
    mf_epochs: int = 300
    mf_lr: float = 0.01
    knn_k: int = 100
    knn_shrink: float = 5.0
    seed: int = 0

    def describe(self) -> dict[str, Any]:
        """The parameters that matter for ``learner`` (for the manifest)."""
        common = {"domains": self.domains, "domain_c": self.domain_c,
                  "inner_folds": self.inner_folds, "seed": self.seed}
        specific: dict[str, dict[str, Any]] = {
            "logreg": {"c": self.c},
            "mf": {"rank": self.mf_rank, "l2": self.mf_l2, "epochs": self.mf_epochs,
                   "lr": self.mf_lr},
            "knn": {"k": self.knn_k, "shrink": self.knn_shrink},
        }
        return {"name": self.learner, **specific[self.learner], **common}


def _noop(stage: str, done: int, total: int) -> None:
    return None


def _fit_domain(x0: np.ndarray, labels: np.ndarray, n_classes: int,
                c: float) -> tuple[np.ndarray, np.ndarray]:
    """Multinomial logistic regression, returned as ``(K, F0)`` coef and ``(K,)`` intercept
    over all ``n_classes`` (classes absent from ``labels`` get a very low intercept)."""
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
                     progress: Progress) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Full-data domain model and cross-fitted log-posteriors for the training rows."""
    names = sorted(set(domains))
    if not options.domains or len(names) < 2:
        return np.zeros((0, x0.shape[1])), np.zeros(0), np.zeros((len(x0), 0))
    labels = np.searchsorted(names, np.asarray(domains))
    k = len(names)
    folds = np.random.default_rng(options.seed).integers(0, options.inner_folds, len(x0))
    logpost = np.zeros((len(x0), k))
    steps = options.inner_folds + 1
    for j in range(options.inner_folds):
        progress("domain model", j, steps)
        train, held = folds != j, folds == j
        coef, intercept = _fit_domain(x0[train], labels[train], k, options.domain_c)
        model = RouterModel(learner="logreg", mean=np.zeros(0), std=np.ones(0),
                            domain_coef=coef, domain_intercept=intercept)
        logpost[held] = model.domain_log_posterior(x0[held])
    progress("domain model", options.inner_folds, steps)
    coef, intercept = _fit_domain(x0, labels, k, options.domain_c)
    progress("domain model", steps, steps)
    return coef, intercept, logpost


def _logistic_heads(x: np.ndarray, outcomes: np.ndarray, c: float,
                    progress: Progress) -> dict[str, np.ndarray]:
    """One L2 logistic regression per model column; soft labels become two weighted rows."""
    from sklearn.linear_model import LogisticRegression

    m = outcomes.shape[1]
    coef, intercept = np.zeros((m, x.shape[1])), np.zeros(m)
    for j in range(m):
        progress("quality heads", j, m)
        rows = np.isfinite(outcomes[:, j])
        xj, y = x[rows], outcomes[rows, j]
        if np.all((y == 0) | (y == 1)):
            xs, ys, ws = xj, y.astype(int), np.ones(len(y))
        else:
            xs = np.vstack([xj, xj])
            ys = np.concatenate([np.ones(len(y), int), np.zeros(len(y), int)])
            ws = np.concatenate([y, 1.0 - y])
        if len(np.unique(ys[ws > 0])) < 2:  # constant column: the intercept says it all
            p = float(np.clip(np.average(ys, weights=ws), 1e-3, 1 - 1e-3))
            intercept[j] = np.log(p / (1 - p))
            continue
        clf = LogisticRegression(C=c, max_iter=1000).fit(xs, ys, sample_weight=ws)
        coef[j], intercept[j] = clf.coef_[0], clf.intercept_[0]
    progress("quality heads", m, m)
    return {"coef": coef, "intercept": intercept}


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
        mean / std: ``(F0,)``; domain_coef / domain_intercept: ``(K, F0)`` / ``(K,)``.
        x: ``(n, F0 + K)`` training features with *cross-fitted* domain log-posteriors.
    """

    mean: np.ndarray
    std: np.ndarray
    domain_coef: np.ndarray
    domain_intercept: np.ndarray
    x: np.ndarray


def fit_base(embeddings: np.ndarray, lexical: np.ndarray, domains: Sequence[str],
             options: FitOptions | None = None,
             progress: Progress | None = None) -> FittedBase:
    """Fit the standardisation and the domain model (see :func:`fit_router`)."""
    options = options or FitOptions()
    raw = np.hstack([embeddings, lexical]).astype(np.float64)
    mean, std = raw.mean(0), raw.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    x0 = (raw - mean) / std
    coef, intercept, logpost = _domain_features(x0, domains, options, progress or _noop)
    return FittedBase(mean, std, coef, intercept, np.hstack([x0, logpost]))


def fit_head(base: FittedBase, embeddings: np.ndarray, outcomes: np.ndarray,
             options: FitOptions | None = None,
             progress: Progress | None = None) -> RouterModel:
    """Fit the learner's head on top of ``base`` (see :func:`fit_router`)."""
    options = options or FitOptions()
    progress = progress or _noop
    arrays: dict[str, np.ndarray]
    if options.learner == "logreg":
        arrays = _logistic_heads(base.x, outcomes, options.c, progress)
    elif options.learner == "mf":
        arrays = _mf_heads(base.x, outcomes, options, progress)
    else:
        k = base.domain_coef.shape[0]
        posterior = np.exp(base.x[:, base.x.shape[1] - k:]) if k else np.zeros((len(base.x), 0))
        arrays = _knn_arrays(embeddings, outcomes, posterior, options)
    return RouterModel(learner=options.learner, mean=base.mean, std=base.std,
                       domain_coef=base.domain_coef, domain_intercept=base.domain_intercept,
                       arrays=arrays)


def fit_router(
    embeddings: np.ndarray,
    lexical: np.ndarray,
    outcomes: np.ndarray,
    domains: Sequence[str],
    options: FitOptions | None = None,
    progress: Progress | None = None,
) -> RouterModel:
    """Fit the standardisation, domain model and the learner's head.

    Args:
        embeddings: ``(n, dim)`` L2-normalised prompt embeddings.
        lexical: ``(n, L)`` raw lexical features.
        outcomes: ``(n, M)`` in [0, 1], NaN where unknown.
        domains: ``n`` domain labels (subject or dataset name).
    """
    base = fit_base(embeddings, lexical, domains, options, progress)
    return fit_head(base, embeddings, outcomes, options, progress)
