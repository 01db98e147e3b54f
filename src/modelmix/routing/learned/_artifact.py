"""Router artifacts on disk and the :class:`LearnedPredictor` that serves them.

An artifact is a directory::

    manifest.json     format + version, models, learner, features, data hash, CV metrics
    tokenizer.json    MiniLM's WordPiece tokenizer (``tokenizers`` format)
    embeddings.npz    the static token table, float16 (vocab x dim)
    model.npz         standardisation, domain model and learner arrays

Loading needs numpy and ``tokenizers`` only, reads nothing else and downloads nothing.
The shipped default lives in ``modelmix/data/router/default`` (``load_predictor("default")``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, cast

import numpy as np
from pydantic import ValidationError

from modelmix.errors import ConfigError
from modelmix.routing.learned._artifact_check import (
    check_array_headers,
    check_consistency,
    check_values,
)
from modelmix.routing.learned._base import QualityPredictor
from modelmix.routing.learned._embed import StaticEmbedder
from modelmix.routing.learned._features import LEXICAL_FEATURES
from modelmix.routing.learned._manifest import ARTIFACT_FORMAT, FORMAT_VERSION, Manifest
from modelmix.routing.learned._model import LEARNERS, PromptFeatures, RouterModel
from modelmix.routing.learned._prior import TaskPrior

__all__ = [
    "ARTIFACT_FORMAT",
    "FORMAT_VERSION",
    "LearnedPredictor",
    "artifact_size",
    "default_artifact_dir",
    "load_predictor",
]

MANIFEST_FILE = "manifest.json"
#: Names that resolve to artifacts shipped inside the package.
_SHIPPED = ("default",)


def default_artifact_dir(name: str = "default") -> Path:
    """Directory of a shipped artifact (``modelmix/data/router/<name>``)."""
    return Path(str(resources.files("modelmix") / "data" / "router" / name))


def artifact_size(directory: Path) -> int:
    """Bytes of all files of an artifact."""
    return sum(p.stat().st_size for p in directory.iterdir() if p.is_file())


@dataclass(kw_only=True)
class LearnedPredictor:
    """A loaded router: implements :class:`~modelmix.routing.learned.QualityPredictor`.

    Example::

        from modelmix.routing.learned import load_predictor
        router = load_predictor("default")
        router.strong_score(["What is 2 + 2?"])      # [0.43...]: P(strong needed)
    """

    model_names: tuple[str, ...]
    weak_model: str | None
    strong_model: str | None
    embedder: StaticEmbedder
    model: RouterModel
    manifest: dict[str, Any] = field(default_factory=dict)
    artifact_dir: Path | None = None
    #: After ``train_router(cv_folds=k)``: each training prompt's out-of-fold P(strong
    #: needed), in table order (not saved with the artifact).
    cv_scores: np.ndarray | None = None
    #: Scores the prompts its gate rejects by task type (manifest ``prior``; the shipped
    #: default has one: docs/router.md "Chat traffic"). Needs a weak/strong pair.
    prior: TaskPrior | None = None
    #: The last single prompt scored: (prompt, model, embedder, prior, features, P)
    #: (see :meth:`predict_array`).
    _last: tuple[str, RouterModel, StaticEmbedder, TaskPrior | None,
                 PromptFeatures | None, np.ndarray] | None = field(
        default=None, init=False, repr=False, compare=False)

    @property
    def info(self) -> Manifest:
        """The manifest as a typed model (validated each call: use it where it is read
        once, e.g. after loading or training, not per request).

        Raises:
            ConfigError: the manifest lacks a field modelmix needs.
        """
        return _parse_manifest({**self.manifest, "format": ARTIFACT_FORMAT,
                                "format_version": FORMAT_VERSION,
                                "model_names": list(self.model_names),
                                "weak_model": self.weak_model,
                                "strong_model": self.strong_model}, "manifest")

    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        """P(acceptable answer) per model, ``(len(prompts), len(model_names))``."""
        return cast("list[list[float]]", self.predict_array(prompts).tolist())

    def predict_array(self, prompts: Sequence[str]) -> np.ndarray:
        """:meth:`predict` as a float64 array, clipped to [0, 1].

        A single prompt that is the very object scored last (``is``, not ``==``) with
        the same model, embedder and prior gets that answer again (a copy) without any
        work: the gateway asks :meth:`predict` and :meth:`strong_score` of the same
        request's prompt. An equal text from another request is a different object and
        is scored afresh, so nothing is cached across requests; a reloaded router is a
        new predictor with nothing remembered."""
        if not prompts:
            return np.zeros((0, len(self.model_names)))
        last = self._last
        if (last is not None and len(prompts) == 1 and last[0] is prompts[0]
                and last[1] is self.model and last[2] is self.embedder
                and last[3] is self.prior):
            return last[5].copy()
        probs, features = self._probabilities(prompts)
        if len(prompts) == 1:
            self._last = (prompts[0], self.model, self.embedder, self.prior, features,
                          probs.copy())
        return probs

    def features(self, prompts: Sequence[str]) -> PromptFeatures:
        """The prompts' features (token ids, embedding, lexical, ...) as the heads read
        them; the last single prompt's are reused as :meth:`predict_array` says."""
        last = self._last
        if (last is not None and len(prompts) == 1 and last[0] is prompts[0]
                and last[1] is self.model and last[2] is self.embedder
                and last[4] is not None):
            return last[4]
        return self.model.features(self.embedder, prompts)

    def _probabilities(self, prompts: Sequence[str]
                       ) -> tuple[np.ndarray, PromptFeatures | None]:
        """Predictions and the heads' features (None when no prompt needed the heads).
        With a prior, the prompts its gate rejects are scored by the prior alone: their
        features are never computed (the costly part of scoring)."""
        prior, weak, strong = self.prior, self.weak_model, self.strong_model
        if prior is None or weak is None or strong is None:
            prior = None
        outside = (prior.outside(prompts) if prior is not None
                   else np.zeros(len(prompts), dtype=bool))
        probs = np.empty((len(prompts), len(self.model_names)))
        features = None
        inside = np.flatnonzero(~outside)
        if len(inside):
            heads = (prompts if len(inside) == len(prompts)
                     else [prompts[int(i)] for i in inside])
            features = self.model.features(self.embedder, heads)
            probs[inside] = np.clip(self.model.predict_prompts(features), 0.0, 1.0)
        if prior is not None and weak is not None and strong is not None and outside.any():
            probs[outside] = prior.predictions(
                [prompts[int(i)] for i in np.flatnonzero(outside)], len(self.model_names),
                self.model_names.index(weak), self.model_names.index(strong))
        return probs, features

    def strong_score(self, prompts: Sequence[str]) -> list[float]:
        """P(strong needed) = ``(1 + p_strong - p_weak) / 2``, per prompt.

        That is RouteLLM's strong win rate with ties counted half: P(strong right, weak
        wrong) + half of P(both right or both wrong), under the per-model predictions.
        Ranking by it sends the prompts with the largest expected quality gain to the
        strong model first; 0.5 means "no expected difference".

        Raises:
            ConfigError: the router has no weak/strong pair (an N-model table without
                ``--weak/--strong``).
        """
        if self.weak_model is None or self.strong_model is None:
            raise ConfigError("this router has no weak/strong model pair; use predict()")
        probs = self.predict_array(prompts)
        w = self.model_names.index(self.weak_model)
        s = self.model_names.index(self.strong_model)
        return cast("list[float]", ((1.0 + probs[:, s] - probs[:, w]) / 2.0).tolist())

    def save(self, directory: Path | str) -> Path:
        """Write the artifact files into ``directory`` (created if missing)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.embedder.save(out)
        self.model.save(out)
        manifest = {k: v for k, v in self.manifest.items() if k != "prior"}
        if self.prior is not None:
            manifest["prior"] = self.prior.to_manifest()
        manifest = {**manifest, "format": ARTIFACT_FORMAT,
                    "format_version": FORMAT_VERSION, "model_names": list(self.model_names),
                    "weak_model": self.weak_model, "strong_model": self.strong_model}
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n",
                                         encoding="utf-8")
        self.artifact_dir = out
        return out


def _resolve(name_or_dir: str | Path) -> Path:
    text = str(name_or_dir)
    if text in _SHIPPED and not Path(text).is_dir():
        return default_artifact_dir(text)
    return Path(text).expanduser()


def _read_manifest(directory: Path) -> tuple[dict[str, Any], Manifest]:
    """The manifest as written and as a typed model (parsed once here).

    Raises:
        ConfigError: no manifest, unreadable, another format or version, a missing field.
    """
    file = directory / MANIFEST_FILE
    if not file.is_file():
        hint = f"; shipped routers: {', '.join(_SHIPPED)}" if not directory.exists() else ""
        raise ConfigError(f"no router artifact at {directory} (no {MANIFEST_FILE}){hint}")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: unreadable manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != ARTIFACT_FORMAT:
        raise ConfigError(f"{file}: not a modelmix router manifest")
    if raw.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{file}: artifact format version {raw.get('format_version')}"
                          f", this modelmix reads version {FORMAT_VERSION}: retrain it "
                          "with `modelmix router train`")
    return raw, _parse_manifest(raw, str(file))


def _parse_manifest(raw: dict[str, Any], source: str) -> Manifest:
    try:
        return Manifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{source}: {where}: {first['msg']}") from None


def load_predictor(name_or_dir: str | Path = "default") -> LearnedPredictor:
    """Load a router artifact: ``"default"`` (shipped) or a directory.

    Raises:
        ConfigError: no artifact there, a different format version, or broken files.
    """
    directory = _resolve(name_or_dir)
    raw, manifest = _read_manifest(directory)
    learner = manifest.learner.name
    if learner not in LEARNERS:
        raise ConfigError(f"{directory}: unknown learner {learner!r}")
    from modelmix.routing.learned._structure import STRUCTURE_FEATURES

    structure = manifest.features.structure
    if structure and structure != list(STRUCTURE_FEATURES):
        raise ConfigError(f"{directory}: structure features differ from this modelmix's; "
                          "retrain the router")
    if manifest.features.lexical != [name for name, _ in LEXICAL_FEATURES]:
        raise ConfigError(f"{directory}: lexical features differ from this modelmix's; "
                          "retrain the router")
    try:
        prior = TaskPrior.from_manifest(raw.get("prior"))
    except ValueError as exc:
        raise ConfigError(f"{directory}: {exc}") from None
    if prior is not None and (manifest.weak_model is None or manifest.strong_model is None):
        raise ConfigError(f"{directory}: a router prior needs a weak/strong model pair")
    shapes = check_array_headers(directory)  # before decompressing anything
    try:
        embedder = StaticEmbedder.load(directory,
                                       max_tokens=manifest.features.embedding.max_tokens)
        model = RouterModel.load(directory, learner)
    except Exception as exc:  # numpy, zipfile and tokenizers each raise their own kinds
        raise ConfigError(f"{directory}: cannot load router files ({exc})") from exc
    _check_fits(directory, embedder, model, manifest, shapes)
    return LearnedPredictor(
        model_names=tuple(manifest.model_names), weak_model=manifest.weak_model,
        strong_model=manifest.strong_model, embedder=embedder, model=model,
        manifest=raw, artifact_dir=directory, prior=prior)


def _check_fits(directory: Path, embedder: StaticEmbedder, model: RouterModel,
                manifest: Manifest, shapes: dict[str, tuple[int, ...]]) -> None:
    """The loaded arrays fit the tokenizer, each other and the manifest
    (:func:`~._artifact_check.check_consistency`).

    Raises:
        ConfigError: naming the directory and what is inconsistent.
    """
    from modelmix.routing.learned._structure import STRUCTURE_FEATURES

    vocab = embedder._tokenizer.get_vocab_size()
    domains = (manifest.features.model_extra or {}).get("domains")
    try:
        check_consistency(
            vocab_size=vocab, table=embedder.table.shape, learner=model.learner,
            arrays={k.removeprefix("learner_"): v for k, v in shapes.items()},
            models=len(manifest.model_names),
            lexical=len(LEXICAL_FEATURES) + (len(STRUCTURE_FEATURES) if model.structure
                                             else 0),
            domains=domains if isinstance(domains, list) else None)
        check_values(model.arrays, vocab)
    except ConfigError as exc:
        raise ConfigError(f"{directory}: {exc.message}") from None


def _conforms(predictor: LearnedPredictor) -> QualityPredictor:
    """Never called: mypy checks here that LearnedPredictor implements the protocol."""
    return predictor
