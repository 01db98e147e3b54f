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

from modelmix.errors import ConfigError
from modelmix.routing.learned._base import QualityPredictor
from modelmix.routing.learned._embed import StaticEmbedder
from modelmix.routing.learned._features import LEXICAL_FEATURES
from modelmix.routing.learned._model import LEARNERS, Learner, RouterModel

__all__ = [
    "ARTIFACT_FORMAT",
    "FORMAT_VERSION",
    "LearnedPredictor",
    "artifact_size",
    "default_artifact_dir",
    "load_predictor",
]

ARTIFACT_FORMAT = "modelmix-router"
#: Bump when the files or the meaning of arrays change; loaders refuse other versions.
FORMAT_VERSION = 1
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

    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        """P(acceptable answer) per model, ``(len(prompts), len(model_names))``."""
        return cast("list[list[float]]", self.predict_array(prompts).tolist())

    def predict_array(self, prompts: Sequence[str]) -> np.ndarray:
        """:meth:`predict` as a float64 array, clipped to [0, 1]."""
        if not prompts:
            return np.zeros((0, len(self.model_names)))
        return np.asarray(np.clip(self.model.predict(self.embedder, prompts), 0.0, 1.0))

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
        manifest = {**self.manifest, "format": ARTIFACT_FORMAT,
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


def _read_manifest(directory: Path) -> dict[str, Any]:
    file = directory / MANIFEST_FILE
    if not file.is_file():
        hint = f"; shipped routers: {', '.join(_SHIPPED)}" if not directory.exists() else ""
        raise ConfigError(f"no router artifact at {directory} (no {MANIFEST_FILE}){hint}")
    try:
        manifest = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: unreadable manifest ({exc})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != ARTIFACT_FORMAT:
        raise ConfigError(f"{file}: not a modelmix router manifest")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ConfigError(f"{file}: artifact format version {manifest.get('format_version')}"
                          f", this modelmix reads version {FORMAT_VERSION}: retrain it "
                          "with `modelmix router train`")
    return manifest


def load_predictor(name_or_dir: str | Path = "default") -> LearnedPredictor:
    """Load a router artifact: ``"default"`` (shipped) or a directory.

    Raises:
        ConfigError: no artifact there, a different format version, or broken files.
    """
    directory = _resolve(name_or_dir)
    manifest = _read_manifest(directory)
    learner = manifest.get("learner", {}).get("name")
    if learner not in LEARNERS:
        raise ConfigError(f"{directory}: unknown learner {learner!r}")
    from modelmix.routing.learned._structure import STRUCTURE_FEATURES

    structure = manifest.get("features", {}).get("structure", [])
    if structure and structure != list(STRUCTURE_FEATURES):
        raise ConfigError(f"{directory}: structure features differ from this modelmix's; "
                          "retrain the router")
    lexical = [name for name, _ in LEXICAL_FEATURES]
    if manifest.get("features", {}).get("lexical") != lexical:
        raise ConfigError(f"{directory}: lexical features differ from this modelmix's; "
                          "retrain the router")
    try:
        embedder = StaticEmbedder.load(
            directory, max_tokens=int(manifest["features"]["embedding"]["max_tokens"]))
        model = RouterModel.load(directory, cast("Learner", learner))
    except Exception as exc:  # numpy, zipfile and tokenizers each raise their own kinds
        raise ConfigError(f"{directory}: cannot load router files ({exc})") from exc
    return LearnedPredictor(
        model_names=tuple(manifest["model_names"]), weak_model=manifest.get("weak_model"),
        strong_model=manifest.get("strong_model"), embedder=embedder, model=model,
        manifest=manifest, artifact_dir=directory)


def _conforms(predictor: LearnedPredictor) -> QualityPredictor:
    """Never called: mypy checks here that LearnedPredictor implements the protocol."""
    return predictor
