"""Training a learned verifier on answers with known outcomes (``modelmix cascade train``).

The data is a table with a prompt column, a response column (the answer to verify) and a
label column (True/False, 1/0 or a score in [0, 1]: was the answer acceptable?), e.g.
``data/routellm/gsm8k.csv`` with ``mistralai/Mixtral-8x7B-Instruct-v0.1_response`` and
``mistralai/Mixtral-8x7B-Instruct-v0.1``. The learner is one L2 logistic regression
(scikit-learn, the ``train`` extra, imported only here) on standardised
:func:`~modelmix.routing.cascade._features.verifier_features`; the saved arrays score with
numpy alone. Cross-validation splits by prompt (:func:`modelmix.metrics.stratified_folds`).

Example::

    from modelmix.routing.cascade import train_verifier
    v = train_verifier("data/routellm/gsm8k.csv", "my-verifier",
                       response_column="mistralai/Mixtral-8x7B-Instruct-v0.1_response")
    v.manifest["cv_metrics"]["auc"]["mean"]
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from modelmix._version import __version__
from modelmix.errors import require_extra
from modelmix.metrics import Stat, stratified_folds
from modelmix.routing.cascade._features import verifier_features
from modelmix.routing.cascade._learned import LearnedVerifier, VerifierModel
from modelmix.routing.learned._tables import (
    RouterDataError,
    header_of,
    outcome_value,
    prompt_of,
    read_rows,
)

__all__ = ["RESPONSE_SUFFIX", "ResponseTable", "VerifierFitOptions", "cross_validate_verifier",
           "fit_verifier", "read_answers", "read_response_table", "roc_auc", "train_verifier"]

#: A table's response column is ``<label column>_response`` (RouteLLM's layout).
RESPONSE_SUFFIX = "_response"


@dataclass(frozen=True, kw_only=True)
class VerifierFitOptions:
    """How to fit a learned verifier.

    Attributes:
        c: inverse L2 strength of the logistic regression (scikit-learn's ``C``).
        prompt_features: also read the prompt's lexical features.
        threshold: escalation threshold recorded as the default and used for accuracy.
    """

    c: float = 0.1
    prompt_features: bool = True
    threshold: float = 0.5

    def describe(self) -> dict[str, Any]:
        return {"name": "logreg", **asdict(self)}


@dataclass(frozen=True)
class ResponseTable:
    """Answers with outcomes: ``prompts``, ``answers`` and ``labels`` (``(n,)`` in [0, 1],
    1 = acceptable) of the rows that have all three; ``skipped_rows`` without."""

    prompts: tuple[str, ...]
    answers: tuple[str, ...]
    labels: np.ndarray
    skipped_rows: int = 0

    def __len__(self) -> int:
        return len(self.prompts)


def _label_column(response_column: str, label_column: str | None) -> str:
    if label_column is not None:
        return label_column
    if response_column.endswith(RESPONSE_SUFFIX):
        return response_column.removesuffix(RESPONSE_SUFFIX)
    raise RouterDataError(f"name the label column (--label-column): {response_column!r} does "
                          f"not end in {RESPONSE_SUFFIX!r}")


def read_response_table(path: Path | str, *, response_column: str,
                        label_column: str | None = None,
                        prompt_column: str = "prompt") -> ResponseTable:
    """Read a table of answers and outcomes (CSV/TSV/JSON/JSONL). ``label_column``
    defaults to ``response_column`` without ``_response``. Rows with an empty label or a
    null response are skipped.

    Raises:
        RouterDataError: unreadable file, a missing column, a label that is not an outcome
            or outside [0, 1], or no usable row.
    """
    path = Path(path)
    rows = read_rows(path)
    label = _label_column(response_column, label_column)
    header = header_of(rows)
    for column, option in ((prompt_column, "--prompt-column"),
                           (response_column, "--response-column"), (label, "--label-column")):
        if column not in header:
            raise RouterDataError(f"{path}: no column {column!r} (columns: "
                                  f"{', '.join(header)}); use {option}")
    prompts, answers, labels = [], [], []
    for i, row in enumerate(rows, 1):
        value = outcome_value(row.get(label), where=f"{path}: row {i}, column {label!r}")
        if value is not None and not 0.0 <= value <= 1.0:
            raise RouterDataError(f"{path}: row {i}, column {label!r}: {value} is outside "
                                  "[0, 1]; labels are True/False or a score in [0, 1]")
        response = row.get(response_column)
        if value is None or response is None:
            continue
        prompts.append(prompt_of(row, prompt_column, where=f"{path}: row {i}"))
        answers.append(response if isinstance(response, str) else str(response))
        labels.append(value)
    if not prompts:
        raise RouterDataError(f"{path}: no row has both a {response_column!r} answer and a "
                              f"{label!r} label")
    return ResponseTable(tuple(prompts), tuple(answers), np.asarray(labels, dtype=np.float64),
                         skipped_rows=len(rows) - len(prompts))


def fit_verifier(x: np.ndarray, labels: np.ndarray,
                 options: VerifierFitOptions | None = None) -> VerifierModel:
    """Fit the logistic head on raw features ``x`` ``(n, F)`` and labels in [0, 1]
    (soft labels become two rows weighted ``y`` and ``1 - y``).

    Raises:
        MissingExtra: scikit-learn is not installed.
        ValueError: no rows.
    """
    require_extra("sklearn", "train", "verifier training")
    from sklearn.linear_model import LogisticRegression

    options = options or VerifierFitOptions()
    if len(x) == 0:
        raise ValueError("no training rows")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    z = (x - mean) / std
    if np.all((labels == 0) | (labels == 1)):
        xs, ys, ws = z, labels.astype(int), np.ones(len(labels))
    else:
        xs = np.vstack([z, z])
        ys = np.concatenate([np.ones(len(labels), int), np.zeros(len(labels), int)])
        ws = np.concatenate([labels, 1.0 - labels])
    if len(np.unique(ys[ws > 0])) < 2:  # one class only: the base rate says it all
        p = float(np.clip(np.average(ys, weights=ws), 1e-3, 1 - 1e-3))
        return VerifierModel(mean=mean, std=std, coef=np.zeros(x.shape[1]),
                             intercept=float(np.log(p / (1 - p))),
                             prompt_features=options.prompt_features)
    clf = LogisticRegression(C=options.c, max_iter=2000).fit(xs, ys, sample_weight=ws)
    return VerifierModel(mean=mean, std=std, coef=clf.coef_[0].astype(np.float64),
                         intercept=float(clf.intercept_[0]),
                         prompt_features=options.prompt_features)


def roc_auc(scores: np.ndarray, positives: np.ndarray) -> float:
    """Area under the ROC curve of ``scores`` for the ``positives`` mask (ties count half;
    the Mann-Whitney U statistic). NaN when one class is empty."""
    pos, neg = scores[positives], scores[~positives]
    if not len(pos) or not len(neg):
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    values = np.concatenate([pos, neg])[order]
    i = 0
    while i < len(values):  # average ranks over ties
        j = i
        while j + 1 < len(values) and values[j + 1] == values[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0
    return float(u / (len(pos) * len(neg)))


def _fold_metrics(score: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """AUC of the escalation score for bad answers, accuracy of ``score < threshold`` as
    "acceptable", log loss and the share of acceptable answers, on one fold."""
    good = labels >= 0.5
    p = np.clip(1.0 - score, 1e-6, 1 - 1e-6)
    return {"auc": roc_auc(score, ~good),
            "accuracy": float(np.mean((score < threshold) == good)),
            "log_loss": float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p))),
            "acceptable_share": float(np.mean(good))}


def cross_validate_verifier(x: np.ndarray, table: ResponseTable, options: VerifierFitOptions,
                            folds: int = 5, seed: int = 0
                            ) -> tuple[dict[str, Any], np.ndarray]:
    """k-fold CV by prompt: metrics ``{"protocol", "folds", "seed", "auc" | "accuracy" |
    "log_loss" | "acceptable_share": Stat.to_dict()}`` and every row's out-of-fold
    escalation score.

    Raises:
        ValueError: fewer distinct prompts than ``folds``.
    """
    parts = stratified_folds(table.prompts, None, folds, seed)
    oof = np.full(len(table), np.nan)
    per: dict[str, list[float]] = {}
    for test in parts:
        train = np.ones(len(table), dtype=bool)
        train[test] = False
        model = fit_verifier(x[train], table.labels[train], options)
        oof[test] = 1.0 - model.predict_features(x[test])
        for key, value in _fold_metrics(oof[test], table.labels[test],
                                        options.threshold).items():
            per.setdefault(key, []).append(value)
    metrics: dict[str, Any] = {"protocol": f"{folds}-fold CV split by prompt", "folds": folds,
                               "seed": seed}
    metrics.update({k: Stat.of(v).to_dict() for k, v in per.items()})
    return metrics, oof


def _data_summary(path: Path, table: ResponseTable, columns: dict[str, str]) -> dict[str, Any]:
    return {"file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": len(table), "skipped_rows": table.skipped_rows,
            "acceptable_share": float(np.mean(table.labels >= 0.5)), "columns": columns}


def train_verifier(
    data: Path | str,
    out: Path | str | None = None,
    *,
    response_column: str,
    label_column: str | None = None,
    prompt_column: str = "prompt",
    options: VerifierFitOptions | None = None,
    cv_folds: int = 5,
    seed: int = 0,
    extra_manifest: dict[str, Any] | None = None,
) -> LearnedVerifier:
    """Read a table of answers and outcomes, cross-validate (``cv_folds`` >= 2), fit on all
    rows, and (with ``out``) write the artifact. The returned verifier's ``cv_scores``
    holds each row's out-of-fold escalation score.

    Raises:
        RouterDataError: unusable data, or more folds than distinct prompts.
        MissingExtra: scikit-learn is not installed.
    """
    options = options or VerifierFitOptions()
    path = Path(data)
    table = read_response_table(path, response_column=response_column,
                                label_column=label_column, prompt_column=prompt_column)
    x = verifier_features(table.prompts, table.answers, prompt_features=options.prompt_features)
    cv, oof = None, None
    if cv_folds >= 2:
        try:
            cv, oof = cross_validate_verifier(x, table, options, cv_folds, seed)
        except ValueError as exc:
            raise RouterDataError(f"cannot cross-validate: {exc}") from exc
    model = fit_verifier(x, table.labels, options)
    columns = {"prompt": prompt_column, "response": response_column,
               "label": _label_column(response_column, label_column)}
    manifest = {"modelmix_version": __version__,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "learner": options.describe(),
                "training_data": _data_summary(path, table, columns), "cv_metrics": cv,
                **(extra_manifest or {})}
    verifier = LearnedVerifier(model, manifest=manifest, threshold=options.threshold)
    verifier.cv_scores = oof
    if out is not None:
        verifier.save(out)
    return verifier



def read_answers(path: Path | str, *, response_column: str,
                 prompt_column: str = "prompt") -> tuple[list[str], list[str]]:
    """The prompts and answers of a CSV/TSV/JSON/JSONL file, in file order.

    Raises:
        RouterDataError: unreadable file, a missing column, a null answer.
    """
    path = Path(path)
    rows = read_rows(path)
    header = header_of(rows)
    for column, option in ((prompt_column, "--prompt-column"),
                           (response_column, "--response-column")):
        if column not in header:
            raise RouterDataError(f"{path}: no column {column!r} (columns: "
                                  f"{', '.join(header)}); use {option}")
    prompts, answers = [], []
    for i, row in enumerate(rows, 1):
        value = row.get(response_column)
        if value is None:
            raise RouterDataError(f"{path}: row {i}: {response_column!r} is empty (null or a "
                                  "missing CSV cell)")
        prompts.append(prompt_of(row, prompt_column, where=f"{path}: row {i}"))
        answers.append(value if isinstance(value, str) else str(value))
    return prompts, answers
