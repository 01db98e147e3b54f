"""The ``learned`` verifier: P(answer acceptable | prompt, answer), scored with numpy only.

An artifact is a directory, written by ``modelmix cascade train``
(:func:`~modelmix.routing.cascade.train_verifier`)::

    manifest.json   format + version, feature names, learner, training data (SHA-256),
                    cross-validated metrics (AUC, accuracy)
    model.npz       standardisation (mean, std) and the logistic head (coef, intercept)

Loading reads these two files and needs numpy only (no scikit-learn, no tokenizer). The
shipped default, trained on Mixtral-8x7B's GSM8K answers (``data/routellm/gsm8k.csv``),
lives in ``modelmix/data/cascade/default`` (``load_verifier("default")``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelmix.errors import ConfigError
from modelmix.routing.cascade._arithmetic import ArithmeticVerifier, analyse
from modelmix.routing.cascade._base import Check, Verifier, check_options, float_option
from modelmix.routing.cascade._features import answer_row, feature_names
from modelmix.routing.learned._features import lexical_features

__all__ = ["VERIFIER_FORMAT", "VERIFIER_FORMAT_VERSION", "LearnedVerifier", "VerifierManifest",
           "VerifierModel", "default_verifier_dir", "load_verifier"]

#: ``manifest.json``'s ``format`` value.
VERIFIER_FORMAT = "modelmix-verifier"
#: The artifact layout this modelmix reads and writes.
VERIFIER_FORMAT_VERSION = 1
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.npz"
_SHIPPED = ("default",)


class VerifierManifest(BaseModel):
    """The fields of ``manifest.json`` modelmix reads; others are kept as written."""

    model_config = ConfigDict(extra="allow", frozen=True)

    format: Literal["modelmix-verifier"]
    format_version: int
    features: list[str] = Field(min_length=1)
    prompt_features: bool
    learner: dict[str, Any] = Field(default_factory=dict)
    training_data: dict[str, Any] | None = None
    cv_metrics: dict[str, Any] | None = None


def default_verifier_dir(name: str = "default") -> Path:
    """Directory of a shipped verifier artifact (``modelmix/data/cascade/<name>``)."""
    return Path(str(resources.files("modelmix") / "data" / "cascade" / name))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return np.asarray(1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0))), dtype=np.float64)


@dataclass(kw_only=True)
class VerifierModel:
    """Arrays of a fitted verifier: ``P = sigmoid(((x - mean) / std) @ coef + intercept)``.

    Attributes:
        mean / std: ``(F,)`` standardisation of the raw features.
        coef: ``(F,)`` logistic weights; intercept: a scalar.
        prompt_features: the features include the prompt's lexical features.
    """

    mean: np.ndarray
    std: np.ndarray
    coef: np.ndarray
    intercept: float
    prompt_features: bool

    def predict_features(self, x: np.ndarray) -> np.ndarray:
        """P(acceptable) from raw features ``(n, F)``."""
        return _sigmoid(((x - self.mean) / self.std) @ self.coef + self.intercept)

    def save(self, directory: Path) -> None:
        np.savez_compressed(directory / MODEL_FILE, mean=self.mean, std=self.std,
                            coef=self.coef, intercept=np.array(self.intercept))

    @classmethod
    def load(cls, directory: Path, prompt_features: bool, n_features: int) -> VerifierModel:
        with np.load(directory / MODEL_FILE) as data:
            model = cls(mean=data["mean"].astype(np.float64), std=data["std"].astype(np.float64),
                        coef=data["coef"].astype(np.float64),
                        intercept=float(data["intercept"]), prompt_features=prompt_features)
        if not model.mean.shape == model.std.shape == model.coef.shape == (n_features,):
            raise ValueError(f"arrays do not match the manifest's {n_features} features")
        return model


class LearnedVerifier(Verifier):
    """Scores P(acceptable) of an answer with a trained artifact; escalation score is
    ``1 - P``, and the answer is accepted when that is below ``threshold``.

    Options: ``artifact`` (``"default"`` or a directory; default ``"default"``) and
    ``threshold`` (in [0, 1], default 0.5).

    Example::

        v = load_verifier("default")
        v.check(question, answer)         # Check(ok=..., score=1 - P(acceptable), ...)
        v.scores(questions, answers)      # batched
    """

    name: ClassVar[str] = "learned"
    OPTIONS: ClassVar[tuple[str, ...]] = ("artifact", "threshold")

    def __init__(self, model: VerifierModel, *, manifest: Mapping[str, Any] | None = None,
                 threshold: float = 0.5, artifact_dir: Path | None = None) -> None:
        self.model = model
        self.manifest: dict[str, Any] = dict(manifest or {})
        self.threshold = threshold
        self.artifact_dir = artifact_dir
        #: After training with ``cv_folds``: each training row's out-of-fold escalation
        #: score, in table order (not saved with the artifact).
        self.cv_scores: np.ndarray | None = None

    def __repr__(self) -> str:
        return f"LearnedVerifier(artifact={self.artifact_dir}, threshold={self.threshold})"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> LearnedVerifier:
        """Load the ``artifact`` option's verifier. Raises :class:`ConfigError` for a bad
        option or an artifact that cannot be loaded."""
        check_options(cls.name, options, cls.OPTIONS)
        artifact = options.get("artifact", "default")
        if not isinstance(artifact, str | Path):
            raise ConfigError(f"verifier 'learned': option 'artifact' must be 'default' or a "
                              f"directory, got {artifact!r}")
        return load_verifier(artifact, threshold=float_option(cls.name, options, "threshold",
                                                              0.5))

    def _features(self, prompts: Sequence[str], answers: Sequence[str],
                  rows: list[list[float]]) -> np.ndarray:
        x = np.asarray(rows, dtype=np.float64).reshape(len(rows), -1)
        if self.model.prompt_features:
            x = np.hstack([x, lexical_features(list(prompts)).astype(np.float64)])
        return x

    def acceptable(self, prompts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
        """P(acceptable) per (prompt, answer) pair, ``(n,)`` float64."""
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        rows = [answer_row(p, a) for p, a in zip(prompts, answers, strict=True)]
        return self.model.predict_features(self._features(prompts, answers, rows))

    def scores(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Escalation scores ``1 - P(acceptable)``, batched."""
        return [float(v) for v in 1.0 - self.acceptable(prompts, answers)]

    def check(self, prompt: str, answer: str) -> Check:
        """Accept when ``1 - P(acceptable) < threshold``; the reason adds the arithmetic
        verifier's finding."""
        found = analyse(prompt, answer)
        x = self._features([prompt], [answer], [answer_row(prompt, answer, found)])
        p = float(self.model.predict_features(x)[0])
        score = min(max(1.0 - p, 0.0), 1.0)
        arithmetic = ArithmeticVerifier().check_analysis(found)
        verdict = "accept" if score < self.threshold else "escalate"
        return Check(ok=score < self.threshold, score=score,
                     reason=f"P(acceptable) {p:.2f}, {verdict} (escalation threshold "
                            f"{self.threshold:.2f}); arithmetic: {arithmetic.reason}")

    def save(self, directory: Path | str) -> Path:
        """Write ``manifest.json`` and ``model.npz`` into ``directory`` (created)."""
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        self.model.save(out)
        manifest = {**self.manifest, "format": VERIFIER_FORMAT,
                    "format_version": VERIFIER_FORMAT_VERSION,
                    "features": feature_names(self.model.prompt_features),
                    "prompt_features": self.model.prompt_features}
        (out / MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n",
                                         encoding="utf-8")
        self.manifest = manifest
        self.artifact_dir = out
        return out


def _resolve(name_or_dir: str | Path) -> Path:
    text = str(name_or_dir)
    if text in _SHIPPED and not Path(text).is_dir():
        return default_verifier_dir(text)
    return Path(text).expanduser()


def read_verifier_manifest(directory: Path) -> tuple[dict[str, Any], VerifierManifest]:
    """The manifest as written and parsed.

    Raises:
        ConfigError: missing, unreadable, another format or version, a missing field.
    """
    file = directory / MANIFEST_FILE
    if not file.is_file():
        hint = f"; shipped verifiers: {', '.join(_SHIPPED)}" if not directory.exists() else ""
        raise ConfigError(f"no verifier artifact at {directory} (no {MANIFEST_FILE}){hint}")
    try:
        raw = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{file}: unreadable manifest ({exc})") from None
    if not isinstance(raw, dict) or raw.get("format") != VERIFIER_FORMAT:
        raise ConfigError(f"{file}: not a modelmix verifier manifest")
    if raw.get("format_version") != VERIFIER_FORMAT_VERSION:
        raise ConfigError(f"{file}: verifier format version {raw.get('format_version')}, "
                          f"this modelmix reads version {VERIFIER_FORMAT_VERSION}: retrain it "
                          "with `modelmix cascade train`")
    try:
        return raw, VerifierManifest.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(f"{file}: {where}: {first['msg']}") from None


def load_verifier(name_or_dir: str | Path = "default", *,
                  threshold: float = 0.5) -> LearnedVerifier:
    """Load a learned verifier: ``"default"`` (shipped) or an artifact directory.

    Raises:
        ConfigError: no artifact there, another format version, features this modelmix
            does not compute, or broken files.
    """
    directory = _resolve(name_or_dir)
    raw, manifest = read_verifier_manifest(directory)
    if manifest.features != feature_names(manifest.prompt_features):
        raise ConfigError(f"{directory}: features differ from this modelmix's; retrain the "
                          "verifier with `modelmix cascade train`")
    try:
        model = VerifierModel.load(directory, manifest.prompt_features, len(manifest.features))
    except Exception as exc:  # numpy and zipfile raise their own kinds
        raise ConfigError(f"{directory}: cannot load verifier files ({exc})") from exc
    return LearnedVerifier(model, manifest=raw, threshold=threshold, artifact_dir=directory)

