"""Calibration: turn a target (strong-model share, cost, quality) into a score threshold.

A two-model learned router scores each prompt with ``p`` = P(the strong model is needed)
and sends it to the strong (proprietary) model when ``p >= threshold``. Which threshold
is right depends on what you want; ``modelmix router calibrate`` computes it on an
outcome table (prompts with how well the weak and the strong model answered each) for
one of three targets:

``strong-share=X``  at most a share X in [0, 1] of requests go to the strong model:
    the lowest threshold whose strong share on the data is <= X.
``cost-per-1k=C``   at most C USD per 1,000 requests: the lowest threshold whose mean
    cost on the data (catalog prices x estimated tokens) is <= C.
``min-pgr=P``       at least a share P in (0, 1] of the quality gap recovered: PGR =
    (q_router - q_weak) / (q_strong - q_weak) (RouteLLM's definition, see
    shared/DESIGN.md); the highest threshold (fewest strong calls) whose PGR >= P.

Thresholds are candidate values of the data's own scores (route strong when
``p >= t``); "never strong" is a value above 1 and "always strong" is 0. Results are
stored as named targets in ``calibration.json`` next to the router artifact, one of
them the default; a request picks another with ``extra_body={"router": {"target":
NAME}}``.

Example::

    result = calibrate(Target.parse("strong-share=0.3"), scores, weak=weak, strong=strong)
    cal = load_calibration(artifact_dir).with_target("balanced", result, make_default=True)
    save_calibration(cal, artifact_dir)
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, cast, get_args

from modelmix.errors import ConfigError

__all__ = [
    "CALIBRATION_FILE",
    "Calibration",
    "CalibrationResult",
    "Target",
    "TargetKind",
    "calibrate",
    "load_calibration",
    "router_fingerprint",
    "save_calibration",
]

#: The file, in a router artifact directory, that holds its calibrated targets.
CALIBRATION_FILE = "calibration.json"
_VERSION = 1

TargetKind = Literal["strong-share", "cost-per-1k", "min-pgr"]
_KINDS: tuple[str, ...] = get_args(TargetKind)


@dataclass(frozen=True, slots=True)
class Target:
    """What to calibrate for: ``kind`` and its bound ``value`` (share, USD, or PGR)."""

    kind: TargetKind
    value: float

    def __post_init__(self) -> None:
        v = self.value
        ok = {"strong-share": 0 <= v <= 1, "cost-per-1k": v >= 0, "min-pgr": 0 < v <= 1}
        if not math.isfinite(v) or not ok[self.kind]:
            bounds = {"strong-share": "in [0, 1]", "cost-per-1k": ">= 0 (USD)",
                      "min-pgr": "in (0, 1]"}
            raise ValueError(f"{self.kind} must be {bounds[self.kind]}, got {v:g}")

    @classmethod
    def parse(cls, text: str) -> Target:
        """``strong-share=0.3``, ``cost-per-1k=0.50`` or ``min-pgr=0.8``.

        Raises:
            ValueError: unknown kind, not a number, or out of range.
        """
        kind, sep, raw = text.partition("=")
        kind = kind.strip()
        if not sep or kind not in _KINDS:
            raise ValueError(f"target {text!r}: expected one of "
                             f"{', '.join(k + '=VALUE' for k in _KINDS)}")
        try:
            value = float(raw.strip().lstrip("$").rstrip("%"))
        except ValueError:
            raise ValueError(f"target {text!r}: {raw!r} is not a number") from None
        if raw.strip().endswith("%"):
            value /= 100
        return cls(cast("TargetKind", kind), value)

    def describe(self) -> str:
        """Short form for route reasons: ``strong-share<=30%``, ``cost-per-1k<=$0.50``."""
        if self.kind == "strong-share":
            return f"strong-share<={self.value:.0%}"
        if self.kind == "cost-per-1k":
            return f"cost-per-1k<=${self.value:.2f}"
        return f"pgr>={self.value:.2f}"


@dataclass(frozen=True, slots=True)
class CalibrationResult:
    """One calibrated threshold with what it achieved on the calibration data.

    Attributes:
        target: what was asked for.
        threshold: route to the strong model when P(strong needed) >= this.
        strong_share: share of the data's prompts routed strong, in [0, 1].
        quality: mean quality of the routed answers on the data.
        pgr: performance gap recovered on the data (None when both models tie).
        cost_per_1k: mean USD per 1,000 requests on the data (None without costs).
        n: prompts in the calibration data; data: where they came from.
        created_at: Unix time (s).
    """

    target: Target
    threshold: float
    strong_share: float
    quality: float
    pgr: float | None = None
    cost_per_1k: float | None = None
    n: int = 0
    data: tuple[str, ...] = ()
    created_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.target.kind, "value": self.target.value,
                "threshold": self.threshold, "strong_share": self.strong_share,
                "quality": self.quality, "pgr": self.pgr, "cost_per_1k": self.cost_per_1k,
                "n": self.n, "data": list(self.data), "created_at": self.created_at}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> CalibrationResult:
        """Parse one stored target. Raises ValueError, KeyError or TypeError when malformed."""
        return cls(target=Target(raw["kind"], float(raw["value"])),
                   threshold=float(raw["threshold"]),
                   strong_share=float(raw["strong_share"]), quality=float(raw["quality"]),
                   pgr=_opt_float(raw.get("pgr")), cost_per_1k=_opt_float(raw.get("cost_per_1k")),
                   n=int(raw.get("n", 0)), data=tuple(str(d) for d in raw.get("data", ())),
                   created_at=float(raw.get("created_at", 0.0)))


def _opt_float(value: Any) -> float | None:
    return None if value is None else float(value)


def router_fingerprint(directory: str | os.PathLike[str]) -> str | None:
    """SHA-256 (hex, first 16) over a router artifact's files, ``calibration.json``
    excepted; None when ``directory`` holds no file. Thresholds belong to one trained
    router: a retrained one scores differently."""
    folder = Path(directory)
    if not folder.is_dir():
        return None
    digest = hashlib.sha256()
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.name != CALIBRATION_FILE
                   and not p.name.startswith("."))
    for file in files:
        digest.update(file.name.encode() + b"\0")
        with file.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16] if files else None


@dataclass(frozen=True, slots=True)
class Calibration:
    """Named calibrated targets of one router, and which one is the default.

    ``fingerprint`` is :func:`router_fingerprint` of the router they were computed for
    (None when unknown).
    """

    targets: dict[str, CalibrationResult] = field(default_factory=dict)
    default: str | None = None
    fingerprint: str | None = None

    def resolve(self, name: str | None) -> tuple[str, CalibrationResult] | None:
        """The target called ``name`` (or the default when None), or None when nothing
        is calibrated. Raises KeyError for an unknown name."""
        if name is None:
            name = self.default
            if name is None:
                return None
        return name, self.targets[name]

    def with_target(self, name: str, result: CalibrationResult, *,
                    make_default: bool = False) -> Calibration:
        """A copy holding ``result`` under ``name``; the default when asked or when
        there was none."""
        targets = {**self.targets, name: result}
        default = name if make_default or self.default is None else self.default
        return replace(self, targets=targets, default=default)

    def to_dict(self) -> dict[str, Any]:
        return {"version": _VERSION, "default": self.default,
                "router_fingerprint": self.fingerprint,
                "targets": {n: r.to_dict() for n, r in sorted(self.targets.items())}}

    @classmethod
    def from_dict(cls, raw: Any, *, source: str = "<calibration>") -> Calibration:
        """Parse ``calibration.json`` content. Raises ConfigError naming ``source``."""
        try:
            if raw.get("version") != _VERSION:
                raise ValueError(f"unsupported version {raw.get('version')!r}")
            targets = {str(n): CalibrationResult.from_dict(t)
                       for n, t in raw["targets"].items()}
            default = raw.get("default")
            if default is not None and default not in targets:
                raise ValueError(f"default {default!r} is not among the targets")
            fingerprint = raw.get("router_fingerprint")
        except (AttributeError, KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{source}: invalid calibration: {exc}") from exc
        return cls(targets=targets, default=default,
                   fingerprint=None if fingerprint is None else str(fingerprint))


def load_calibration(path: str | os.PathLike[str]) -> Calibration:
    """Read ``calibration.json`` (``path`` is the file or its directory); an empty
    calibration when the file does not exist.

    Raises:
        ConfigError: the file cannot be read or is malformed.
    """
    file = Path(path)
    if file.is_dir():
        file = file / CALIBRATION_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        return Calibration()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{file}: cannot read calibration: {exc}") from exc
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{file}: not valid JSON: {exc}") from exc
    return Calibration.from_dict(raw, source=str(file))


def save_calibration(calibration: Calibration, directory: str | os.PathLike[str]) -> Path:
    """Write ``calibration.json`` into ``directory`` atomically; returns the file.

    Raises:
        ConfigError: the directory is missing or not writable (the shipped router's
            directory is package data: write elsewhere and point
            ``learned_router.calibration`` at the file).
    """
    folder = Path(directory)
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ConfigError(f"{folder}: not a writable directory; pass --out DIR and set "
                          f"learned_router.calibration to DIR/{CALIBRATION_FILE}")
    text = json.dumps(calibration.to_dict(), indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".calibration-", suffix=".json")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)  # mkstemp makes it 0600; readers may be other users
        os.replace(tmp, folder / CALIBRATION_FILE)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return folder / CALIBRATION_FILE


@dataclass(frozen=True, slots=True)
class _Point:
    """Routing every prompt scoring >= ``threshold`` to the strong model gives these sums."""

    threshold: float
    strong: int
    quality_sum: float
    cost_sum: float


def _sweep(scores: Sequence[float], weak: Sequence[float], strong: Sequence[float],
           weak_cost: Sequence[float], strong_cost: Sequence[float]) -> list[_Point]:
    """Points from "never strong" down to "always strong", one per distinct score."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    never = math.nextafter(max(1.0, max(scores)), math.inf)
    point = _Point(never, 0, math.fsum(weak), math.fsum(weak_cost))
    points = [point]
    i = 0
    while i < len(order):
        value = scores[order[i]]
        q, c, k = point.quality_sum, point.cost_sum, point.strong
        while i < len(order) and scores[order[i]] == value:
            j = order[i]
            q += strong[j] - weak[j]
            c += strong_cost[j] - weak_cost[j]
            k, i = k + 1, i + 1
        point = _Point(value, k, q, c)
        points.append(point)
    last = points[-1]
    points[-1] = replace(last, threshold=min(0.0, last.threshold))  # all strong: any score
    return points


def _pick(target: Target, points: list[_Point], n: int, q_weak: float,
          q_strong: float, has_cost: bool) -> _Point:
    """The point that meets ``target`` (see the module docstring for each rule)."""
    if target.kind == "strong-share":
        return [p for p in points if p.strong <= target.value * n + 1e-9][-1]
    if target.kind == "cost-per-1k":
        if not has_cost:
            raise ValueError("a cost-per-1k target needs per-request costs")
        fits = [p for p in points if 1000 * p.cost_sum / n <= target.value + 1e-12]
        if not fits:
            cheapest = 1000 * points[0].cost_sum / n
            raise ValueError(f"cost-per-1k={target.value:g} is unreachable: sending "
                             f"everything to the weak model costs ${cheapest:.4f} per 1k")
        return fits[-1]
    if q_strong <= q_weak:
        raise ValueError(f"min-pgr needs a strong model better than the weak one on this "
                         f"data (mean quality {q_strong:.3f} vs {q_weak:.3f})")
    gap = q_strong - q_weak
    return next((p for p in points if (p.quality_sum / n - q_weak) / gap >= target.value - 1e-12),
                points[-1])


def calibrate(
    target: Target,
    scores: Sequence[float],
    *,
    weak: Sequence[float],
    strong: Sequence[float],
    weak_cost: Sequence[float] | None = None,
    strong_cost: Sequence[float] | None = None,
    data: Sequence[str] = (),
) -> CalibrationResult:
    """The threshold on ``scores`` that meets ``target`` on this data.

    Args:
        target: what to meet.
        scores: per prompt, the router's P(strong model needed).
        weak / strong: per prompt, each model's quality (1.0/0.0 for right/wrong).
        weak_cost / strong_cost: per prompt, USD of one request to each model (needed
            for ``cost-per-1k`` targets; reported when given).
        data: labels of the data's sources, kept with the result.

    Raises:
        ValueError: empty or mismatched inputs, non-finite scores, or a target the data
            cannot meet (a cost below the all-weak cost; min-pgr when the strong model
            is not better).
    """
    n = len(scores)
    has_cost = weak_cost is not None and strong_cost is not None
    wc = list(weak_cost) if weak_cost is not None and has_cost else [0.0] * n
    sc = list(strong_cost) if strong_cost is not None and has_cost else [0.0] * n
    if n == 0 or not len(weak) == len(strong) == len(wc) == len(sc) == n:
        raise ValueError("scores, weak, strong (and costs) must be non-empty and equally long")
    if not all(math.isfinite(s) for s in scores):
        raise ValueError("scores must be finite numbers")
    q_weak, q_strong = math.fsum(weak) / n, math.fsum(strong) / n
    point = _pick(target, _sweep(scores, weak, strong, wc, sc), n, q_weak, q_strong, has_cost)
    quality = point.quality_sum / n
    return CalibrationResult(
        target=target, threshold=point.threshold, strong_share=point.strong / n,
        quality=quality,
        pgr=(quality - q_weak) / (q_strong - q_weak) if q_strong != q_weak else None,
        cost_per_1k=1000 * point.cost_sum / n if has_cost else None, n=n, data=tuple(data))
