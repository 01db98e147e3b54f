"""Loading a learned router for a hot swap: fully, checked, off the request path.

:func:`load_router` reads an artifact and its calibration, makes one test prediction and
checks that the calibration was computed for this very artifact (its fingerprint), and
returns a :class:`LoadedRouter` the ``learned`` strategy can swap in with one assignment
(:meth:`~modelmix.routing.LearnedStrategy.install`). Anything wrong raises
:class:`RouterReloadFailed` and nothing changes: the router in use keeps serving.
docs/decisions/0014-router-hot-swap.md says why it works this way.

Example::

    loaded = load_router("/var/lib/modelmix/router/current")   # blocking, seconds
    old = strategy.install(loaded)                               # instant
    print(old.fingerprint if old else None, "->", loaded.fingerprint)
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmix.errors import InvalidRequest, ModelmixError
from modelmix.routing._calibration import (
    CALIBRATION_FILE,
    Calibration,
    load_calibration,
    router_fingerprint,
)

if TYPE_CHECKING:
    from modelmix.routing.learned._base import QualityPredictor

__all__ = ["LoadedRouter", "RouterReloadFailed", "artifact_dir_of", "describe_loaded",
           "is_fatal", "load_router", "resolved_artifact"]

#: The prompt of the test prediction every loaded router must answer.
_PROBE = "Summarise the plot of a short story in two sentences."


def is_fatal(exc: BaseException) -> bool:
    """Whether ``exc`` must propagate: the process or task is being stopped.

    Everything else, ``BaseException`` subclasses included, is a failure of the router
    to handle: ``tokenizers`` (PyO3) raises ``pyo3_runtime.PanicException``, a
    ``BaseException``, when its Rust code panics (e.g. an onig regex retry-limit
    overflow), and that must not kill a request or a reload."""
    return isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit
                      | asyncio.CancelledError)


def resolved_artifact(artifact: str) -> str:
    """``artifact`` with symlinks resolved when it names a directory (``current`` -> the
    version it points at now), else as given (``default``). Loading and fingerprinting
    the resolved directory keeps both on the same files when ``current`` is flipped
    later."""
    path = Path(artifact).expanduser()
    return str(path.resolve()) if path.is_dir() else artifact


class RouterReloadFailed(InvalidRequest):
    """A router could not be loaded or failed its checks (HTTP 422,
    ``router_reload_failed``); the router in use keeps serving."""

    status_code = 422
    default_code = "router_reload_failed"


@dataclass(frozen=True, slots=True)
class LoadedRouter:
    """A loaded and checked router, ready to swap in.

    Attributes:
        predictor: the quality predictor.
        calibration: its calibrated targets (empty when none was found).
        artifact: what was asked for (``default`` or a directory).
        directory: the artifact's directory with symlinks resolved (the version a
            ``current`` link pointed at when it was loaded), when known.
        calibration_path: the calibration file given instead of the artifact's own.
        target: the calibrated target requests use when they name none (None: the
            calibration's default).
        fingerprint: :func:`~modelmix.routing.router_fingerprint` of ``directory``,
            computed when the router was loaded.
        loaded_at: Unix time (s) the router was loaded.
    """

    predictor: QualityPredictor
    calibration: Calibration
    artifact: str
    directory: Path | None
    calibration_path: str | None
    target: str | None
    fingerprint: str | None
    loaded_at: float

    def summary(self) -> dict[str, Any]:
        """What ``GET /router/info`` shows: identity, manifest summary, targets."""
        manifest: dict[str, Any] = dict(getattr(self.predictor, "manifest", None) or {})
        learner = manifest.get("learner")
        return {
            "fingerprint": self.fingerprint,
            "artifact": self.artifact,
            "directory": None if self.directory is None else str(self.directory),
            "loaded_at": self.loaded_at,
            "models": list(self.predictor.model_names),
            "weak_model": self.predictor.weak_model,
            "strong_model": self.predictor.strong_model,
            "learner": learner.get("name") if isinstance(learner, dict) else None,
            "created": manifest.get("created"),
            "modelmix_version": manifest.get("modelmix_version"),
            "cv_metrics": manifest.get("cv_metrics"),
            "calibration": {
                "path": self.calibration_path,
                "fingerprint": self.calibration.fingerprint,
                "default": self.calibration.default,
                "target": self.target,
                "targets": {name: {"kind": r.target.kind, "value": r.target.value,
                                   "threshold": r.threshold}
                            for name, r in sorted(self.calibration.targets.items())},
            },
        }


def artifact_dir_of(predictor: object, artifact: str) -> Path | None:
    """A predictor's directory (its ``artifact_dir``), else ``artifact`` when that is a
    directory, else None; symlinks resolved."""
    for attr in ("artifact_dir", "path", "directory"):
        value = getattr(predictor, attr, None)
        if isinstance(value, str | Path):
            return Path(value).resolve()
    given = Path(artifact)
    return given.resolve() if given.is_dir() else None


def load_router(artifact: str, loader: Callable[[str], QualityPredictor], *,
                calibration: str | None = None, target: str | None = None) -> LoadedRouter:
    """Load ``artifact`` with ``loader`` and check it. Blocking (reads files, hashes the
    artifact, makes a prediction): call it off the event loop.

    Args:
        artifact: ``default`` or a directory made by ``modelmix router train``.
        loader: loads a predictor by name or directory.
        calibration: a ``calibration.json`` to use instead of the artifact's own.
        target: the target requests use when they name none; must be calibrated.

    Raises:
        RouterReloadFailed: the artifact cannot be loaded, its test prediction is not a
            row of numbers in [0, 1], the calibration is malformed or was computed for
            another router (fingerprint), or ``target`` is not calibrated.
    """
    source = resolved_artifact(artifact)  # `current` flipped later: still these files
    try:
        predictor = loader(source)
    except ModelmixError as exc:
        raise RouterReloadFailed(f"cannot load router {artifact!r}: {exc.message}",
                                 param="artifact") from exc
    except BaseException as exc:  # a loader may raise anything; a reload must answer
        if is_fatal(exc):
            raise
        raise RouterReloadFailed(f"cannot load router {artifact!r}: "
                                 f"{type(exc).__name__}: {exc}"[:500], param="artifact") from exc
    _probe(predictor, artifact)
    directory = artifact_dir_of(predictor, source)
    fingerprint = None if directory is None else router_fingerprint(directory)
    found = _calibration(directory, calibration, fingerprint)
    if target is not None and target not in found.targets:
        known = ", ".join(sorted(found.targets)) or "none"
        raise RouterReloadFailed(f"target {target!r} is not calibrated for this router; "
                                 f"calibrated targets: {known}", param="target")
    return LoadedRouter(predictor=predictor, calibration=found, artifact=artifact,
                        directory=directory, calibration_path=calibration, target=target,
                        fingerprint=fingerprint, loaded_at=time.time())


def describe_loaded(predictor: QualityPredictor, calibration: Calibration, artifact: str,
                    *, calibration_path: str | None, target: str | None,
                    loaded_at: float) -> LoadedRouter:
    """A :class:`LoadedRouter` for a router loaded some other way (the strategy's
    start-up load: call it right after loading), with its fingerprint computed now from
    its resolved directory (blocking: hashes the files)."""
    directory = artifact_dir_of(predictor, artifact)
    return LoadedRouter(predictor=predictor, calibration=calibration, artifact=artifact,
                        directory=directory, calibration_path=calibration_path, target=target,
                        fingerprint=None if directory is None else router_fingerprint(directory),
                        loaded_at=loaded_at)


def _probe(predictor: QualityPredictor, artifact: str) -> None:
    """One test prediction: a row per model of finite numbers in [0, 1] (and a strong
    score likewise, for a weak/strong router)."""
    try:
        rows = predictor.predict([_PROBE])
        values = [float(v) for v in rows[0]]
        if predictor.weak_model is not None and predictor.strong_model is not None:
            values.append(float(predictor.strong_score([_PROBE])[0]))
            width = len(values) - 1
        else:
            width = len(values)
    except BaseException as exc:  # any failure of the new router is a failed reload
        if is_fatal(exc):
            raise
        raise RouterReloadFailed(f"router {artifact!r} failed its test prediction: "
                                 f"{type(exc).__name__}: {exc}"[:500], param="artifact") from exc
    if width != len(predictor.model_names):
        raise RouterReloadFailed(f"router {artifact!r} predicted {width} values for "
                                 f"{len(predictor.model_names)} models", param="artifact")
    if not all(math.isfinite(v) and 0.0 <= v <= 1.0 for v in values):
        raise RouterReloadFailed(f"router {artifact!r} predicted values outside [0, 1]: "
                                 f"{values[:4]}", param="artifact")


def _calibration(directory: Path | None, given: str | None,
                 fingerprint: str | None) -> Calibration:
    """The calibration (``given``, else the artifact's own file), checked against the
    artifact's fingerprint. A missing file is an empty calibration unless ``given``."""
    path = Path(given) if given else None if directory is None else directory / CALIBRATION_FILE
    if path is None:
        return Calibration()
    if given and not path.is_file():
        raise RouterReloadFailed(f"calibration file {given!r} does not exist",
                                 param="calibration")
    try:
        found = load_calibration(path)
    except ModelmixError as exc:
        raise RouterReloadFailed(exc.message, param="calibration") from exc
    if found.fingerprint and fingerprint and found.fingerprint != fingerprint:
        raise RouterReloadFailed(
            f"{path} was calibrated for router {found.fingerprint}, not this one "
            f"({fingerprint}): run modelmix router calibrate for it", param="calibration")
    return found
