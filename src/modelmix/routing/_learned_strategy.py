"""The ``learned`` strategy: a quality predictor and a calibrated threshold pick the
cheapest deployment likely to answer well. The default strategy of ``model: "auto"``.

How one request is decided (docs/routing-in-gateway.md has the long form):

1. ``max_cost_per_1k`` hint: deployments whose estimated cost of 1,000 such requests
   is above the cap are dropped (none left: 400).
2. Each candidate maps to a predictor column: its ``quality_profile``; else a column
   named like the deployment or its model; else the predictor's weak model for open
   deployments and its strong model for proprietary ones.
3. Threshold mode (a predictor with a weak/strong pair, the default): ``p`` =
   P(strong needed) for the prompt; ``p >= threshold`` puts the cheapest strong-column
   candidate first, else the cheapest weak-column one; the other group follows,
   cheapest first. The threshold is a calibrated target's (the request's ``target``,
   else ``learned_router.target``, else the calibration's default), or
   :data:`UNCALIBRATED_THRESHOLD`.
4. Quality mode (a ``min_quality`` hint, or a predictor without a weak/strong pair):
   the cheapest candidate whose predicted quality reaches the bar goes first, then the
   others that reach it by price, then the rest by predicted quality.
5. ``learned_router.quality_rule: utility`` (any predictor, no ``min_quality`` hint):
   candidates go by ``predicted quality - cost_weight * estimated USD per 1k requests``,
   highest first (RouterBench's predictive router, Hu et al. 2024, arXiv:2403.12031),
   instead of steps 3-4.
6. ``prefer_open`` hint: open deployments first (cheapest first), whatever ``p``.

The orderings themselves are in :mod:`modelmix.routing._learned_order`.

When no predictor can be loaded (numpy missing, no artifact) or it fails on a request,
the ``rules`` ordering serves and the reason says why: routing never fails because of
the learned router.
"""

from __future__ import annotations

import dataclasses
import importlib
import logging
import math
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from modelmix.catalog import Config, Deployment, LearnedRouterSettings, Tier
from modelmix.errors import InvalidRequest, ModelmixError
from modelmix.protocol import RequestNeeds
from modelmix.routing._calibration import (
    CALIBRATION_FILE,
    Calibration,
    load_calibration,
)
from modelmix.routing._decision import RouteDecision
from modelmix.routing._exclusion import Exclusion, ExclusionKind
from modelmix.routing._input import RoutingInput
from modelmix.routing._learned_order import (
    Choice,
    by_quality,
    by_threshold,
    by_utility,
    estimated_cost_usd,
    open_first,
)
from modelmix.routing._router_swap import (
    LoadedRouter,
    artifact_dir_of,
    describe_loaded,
    is_fatal,
    load_router,
    resolved_artifact,
)
from modelmix.routing._strategies import STRATEGIES, RulesStrategy, Strategy

if TYPE_CHECKING:  # the learned package imports numpy: load it only when routing needs it
    from modelmix.routing.learned._base import QualityPredictor

__all__ = [
    "UNCALIBRATED_THRESHOLD",
    "LearnedStrategy",
    "PredictorLoader",
    "default_predictor_loader",
    "estimated_cost_usd",
]

log = logging.getLogger("modelmix.routing")

#: Threshold on P(strong needed) when no calibration exists: strong when the predictor
#: thinks it more likely than not. Run ``modelmix router calibrate`` for a real one.
UNCALIBRATED_THRESHOLD = 0.5

#: Loads a predictor from a name (``default``) or an artifact directory.
PredictorLoader = Callable[[str], "QualityPredictor"]


def default_predictor_loader(name: str) -> QualityPredictor:
    """``modelmix.routing.learned.load_predictor(name)``, imported on first use."""
    module = importlib.import_module("modelmix.routing.learned")
    load: PredictorLoader = module.load_predictor
    return load(name)


def _unit(value: float) -> float:
    """A prediction checked to be a finite number, clipped to [0, 1]."""
    if not math.isfinite(value):
        raise ValueError(f"predictor returned {value!r}")
    return min(1.0, max(0.0, float(value)))


class LearnedStrategy(Strategy):
    """Cheapest candidate whose predicted quality is good enough (see the module doc).

    Args:
        predictor: a loaded predictor (tests pass a fake); loaded from
            ``settings.artifact`` on first use when omitted.
        calibration: calibrated targets; read from ``settings.calibration`` or the
            artifact's ``calibration.json`` when omitted.
        settings: the config's ``learned_router`` section.
        loader: loads a predictor by name or directory (default:
            ``modelmix.routing.learned.load_predictor``).
    """

    name = "learned"

    def __init__(
        self,
        predictor: QualityPredictor | None = None,
        *,
        calibration: Calibration | None = None,
        settings: LearnedRouterSettings | None = None,
        loader: PredictorLoader | None = None,
    ):
        self.settings = settings or LearnedRouterSettings()
        self._predictor = predictor
        self._calibration = calibration
        self._loader = loader or default_predictor_loader
        self._loaded = False
        self._unavailable: str | None = None
        self._lock = threading.Lock()
        self._rules = RulesStrategy()
        self._columns: dict[str, str | None] = {}
        self._failures = 0
        self._configured = self.settings  # what a reload without arguments re-reads
        self._active: LoadedRouter | None = None  # set by install() / active()
        self._loaded_at = 0.0

    @classmethod
    def from_config(cls, config: Config) -> LearnedStrategy:
        return cls(settings=config.learned_router)

    def __repr__(self) -> str:
        return f"LearnedStrategy(artifact={self.settings.artifact!r})"

    # -- loading -------------------------------------------------------------------------

    def warm(self) -> None:
        self._ready()

    @property
    def calibration(self) -> Calibration:
        """The calibrated targets in use (loads the router on first access)."""
        self._ready()
        return self._calibration or Calibration()

    def _ready(self) -> QualityPredictor | None:
        """The predictor, loaded once (thread-safe); None when it cannot be loaded."""
        if not self._loaded:
            with self._lock:
                if not self._loaded:
                    self._load()
                    self._loaded_at = time.time()
                    self._loaded = True
        return self._predictor

    def _load(self) -> None:
        """Load the predictor (a ``current`` symlink resolved first) and describe it at
        once: its fingerprint is of the files loaded, whatever the link points at later."""
        s = self.settings
        if self._predictor is None:
            try:
                self._predictor = self._loader(resolved_artifact(s.artifact))
            except BaseException as exc:  # any failure must leave routing working
                if is_fatal(exc):
                    raise
                self._unavailable = f"{type(exc).__name__}: {exc}"[:200]
                log.warning("learned router %r unavailable, routing by rules: %s",
                            s.artifact, self._unavailable)
        if self._predictor is None:  # rules route; a target named by requests still resolves
            if self._calibration is None:
                folder = artifact_dir_of(None, s.artifact)
                self._calibration = self._read_calibration(folder, None)
            return
        described = describe_loaded(self._predictor, Calibration(), s.artifact,
                                    calibration_path=s.calibration, target=s.target,
                                    loaded_at=time.time())
        if self._calibration is None:
            self._calibration = self._read_calibration(described.directory,
                                                       described.fingerprint)
        self._active = dataclasses.replace(described, calibration=self._calibration)

    def _read_calibration(self, folder: Path | None, fingerprint: str | None) -> Calibration:
        path = (Path(self.settings.calibration) if self.settings.calibration
                else None if folder is None else folder / CALIBRATION_FILE)
        if path is None:
            return Calibration()
        try:
            calibration = load_calibration(path)
        except ModelmixError as exc:
            log.error("ignoring the router calibration: %s", exc.message)
            return Calibration()
        if calibration.fingerprint and fingerprint not in (None, calibration.fingerprint):
            log.warning("%s was calibrated for another version of the router in %s; its "
                        "thresholds may be off: re-run modelmix router calibrate", path, folder)
        return calibration

    # -- hot swap (docs/decisions/0014-router-hot-swap.md) --------------------------------

    @property
    def unavailable(self) -> str | None:
        """Why no predictor could be loaded (routing is by rules then), or None."""
        return self._unavailable

    def active(self) -> LoadedRouter | None:
        """The router in use, None when none could be loaded. Blocking on first call (it
        loads the router and hashes its files for the fingerprint): call off the loop."""
        predictor = self._ready()
        if predictor is None:
            return None
        if self._active is None or self._active.predictor is not predictor:
            s = self.settings
            described = describe_loaded(
                predictor, self._calibration or Calibration(), s.artifact,
                calibration_path=s.calibration, target=s.target, loaded_at=self._loaded_at)
            with self._lock:  # a swap meanwhile wins: describe only what is still in use
                if self._predictor is predictor:
                    self._active = described
            return described
        return self._active

    def prepare(self, artifact: str | None = None, *, calibration: str | None = None,
                target: str | None = None) -> LoadedRouter:
        """Load and check a router for :meth:`install`; blocking (seconds): call it off
        the event loop. No ``artifact``: the configured one again, with the configured
        calibration and target unless given. A new ``artifact`` brings its own
        ``calibration.json`` unless ``calibration`` names another file.

        Raises:
            RouterReloadFailed: see :func:`~modelmix.routing._router_swap.load_router`.
        """
        self.active()  # the start-up load and its description first: install() never waits
        conf = self._configured
        if artifact is None:
            artifact = conf.artifact
            calibration = calibration or conf.calibration
            target = target or conf.target
        return load_router(artifact, self._loader, calibration=calibration, target=target)

    def install(self, loaded: LoadedRouter) -> LoadedRouter | None:
        """Swap ``loaded`` in; return the router it replaced (None: none was loaded).
        Instant. Call it on the thread that routes (the gateway's event loop): routing a
        request is synchronous there, so each request sees the old router or the new
        one, never half of each."""
        old = self._active if self._active is not None and self._loaded else None
        with self._lock:
            self.settings = self._configured.model_copy(update={
                "artifact": loaded.artifact, "calibration": loaded.calibration_path,
                "target": loaded.target})
            self._predictor, self._calibration = loaded.predictor, loaded.calibration
            self._columns = {}
            self._unavailable, self._failures = None, 0
            self._active, self._loaded = loaded, True
        return old

    def strong_score(self, prompt: str, target: str | None = None
                     ) -> tuple[float, float] | None:
        """(score, threshold) for ``prompt``: the probability in [0, 1] that the strong
        model is needed, and the calibrated threshold of ``target`` (the configured
        target when None). None when the router is unavailable or has no weak / strong
        pair. Used by systems' ``classify`` steps (docs/systems.md).

        Raises InvalidRequest for an uncalibrated ``target``."""
        predictor = self._ready()
        if predictor is None or predictor.weak_model is None or predictor.strong_model is None:
            return None
        threshold, _ = self._threshold(target)
        try:
            score = _unit(predictor.strong_score([prompt])[0])
        except BaseException as exc:  # a broken predictor must not fail the request
            if is_fatal(exc):
                raise
            log.exception("learned router failed scoring for a classify step")
            return None
        return score, threshold

    # -- deciding ------------------------------------------------------------------------

    def order(self, candidates: Sequence[Deployment], request: RoutingInput,
              excluded: dict[str, Exclusion]) -> tuple[list[Deployment], str, float | None]:
        choice = self._choose(candidates, request, excluded)
        return choice.ordered, choice.reason, choice.score

    def decide(self, candidates: Sequence[Deployment], request: RoutingInput | RequestNeeds,
               excluded: dict[str, Exclusion]) -> RouteDecision:
        """Like :meth:`Strategy.decide`, plus per-candidate predicted quality and the
        threshold that decided."""
        if isinstance(request, RequestNeeds):
            request = RoutingInput(needs=request)
        choice = self._choose(candidates, request, excluded)
        return RouteDecision(
            deployment=choice.ordered[0], reason=choice.reason, score=choice.score,
            fallbacks=tuple(choice.ordered[1:]), excluded=dict(excluded),
            predicted_quality=choice.quality, threshold=choice.threshold)

    def _choose(self, candidates: Sequence[Deployment], request: RoutingInput,
                excluded: dict[str, Exclusion]) -> Choice:
        kept = self._within_budget(candidates, request, excluded)
        predictor = self._ready()
        threshold = self._threshold(request.hints.target)
        if predictor is None:
            return self._by_rules(kept, request, excluded,
                                  f"learned router unavailable ({self._unavailable})")
        try:
            return self._predicted(predictor, kept, request, threshold, excluded)
        except BaseException as exc:  # a broken predictor (a tokenizer panic included)
            if is_fatal(exc):  # must not fail the request
                raise
            self._failures += 1
            if self._failures == 1 or self._failures % 1000 == 0:
                log.exception("learned router failed (%d times); routing by rules",
                              self._failures)
            return self._by_rules(kept, request, excluded,
                                  f"learned router failed ({type(exc).__name__})")

    def _by_rules(self, candidates: list[Deployment], request: RoutingInput,
                  excluded: dict[str, Exclusion], why: str) -> Choice:
        ordered, reason, _ = self._rules.order(candidates, request, excluded)
        return Choice(ordered, f"{why}; {reason}")

    def _within_budget(self, candidates: Sequence[Deployment], request: RoutingInput,
                       excluded: dict[str, Exclusion]) -> list[Deployment]:
        """Apply the ``max_cost_per_1k`` hint. Raises InvalidRequest when nothing fits."""
        cap = request.hints.max_cost_per_1k
        if cap is None:
            return list(candidates)
        per_1k = {d.name: 1000 * estimated_cost_usd(d, request) for d in candidates}
        kept = [d for d in candidates if per_1k[d.name] <= cap]
        for dep in candidates:
            if per_1k[dep.name] > cap:
                excluded[dep.name] = Exclusion(
                    ExclusionKind.HINT, f"estimated ${per_1k[dep.name]:.4f} per 1k requests > "
                                        f"max_cost_per_1k ${cap:g}")
        if not kept:
            cheapest = min(candidates, key=lambda d: per_1k[d.name])
            raise InvalidRequest(
                f"no deployment fits router.max_cost_per_1k={cap:g}: the cheapest, "
                f"{cheapest.name}, is estimated at ${per_1k[cheapest.name]:.4f} per 1,000 "
                "requests like this one", param="router.max_cost_per_1k",
                code="max_cost_unsatisfiable")
        return kept

    def _threshold(self, requested: str | None) -> tuple[float, str]:
        """(threshold, label) of the request's target, the configured one or the default.

        Raises InvalidRequest for a request naming an uncalibrated target."""
        calibration = self._calibration or Calibration()
        name = requested or self.settings.target
        try:
            found = calibration.resolve(name)
        except KeyError:
            if requested is not None:
                known = ", ".join(sorted(calibration.targets)) or "none"
                raise InvalidRequest(
                    f"unknown router target {requested!r}; calibrated targets: {known}",
                    param="router.target", code="unknown_router_target") from None
            log.warning("learned_router.target %r is not calibrated; using the default", name)
            found = calibration.resolve(None)
        if found is None:
            return UNCALIBRATED_THRESHOLD, "uncalibrated"
        target_name, result = found
        return result.threshold, f"target {target_name}: {result.target.describe()}"

    def _column(self, dep: Deployment, predictor: QualityPredictor) -> str | None:
        """The predictor column ``dep`` answers like (cached per deployment)."""
        if dep.name not in self._columns:
            names = predictor.model_names
            if dep.quality_profile is not None:
                column = dep.quality_profile if dep.quality_profile in names else None
                if column is None:
                    log.warning("deployment %s: quality_profile %r is not a column of the "
                                "learned router %s", dep.name, dep.quality_profile, names)
            elif dep.name in names or dep.model in names:
                column = dep.name if dep.name in names else dep.model
            else:
                column = (predictor.weak_model if dep.tier is Tier.OPEN
                          else predictor.strong_model)
            self._columns[dep.name] = column
        return self._columns[dep.name]

    def _predicted(self, predictor: QualityPredictor, candidates: list[Deployment],
                   request: RoutingInput, threshold: tuple[float, str],
                   excluded: dict[str, Exclusion]) -> Choice:
        columns = {d.name: self._column(d, predictor) for d in candidates}
        row = [_unit(v) for v in predictor.predict([request.prompt])[0]]
        index = {name: i for i, name in enumerate(predictor.model_names)}
        quality = {n: row[index[c]] for n, c in columns.items() if c is not None}
        hints = request.hints
        if hints.prefer_open:
            return open_first(candidates, request, quality)
        weak, strong = predictor.weak_model, predictor.strong_model
        if hints.min_quality is None and self.settings.quality_rule == "utility":
            return by_utility(candidates, request, quality, self.settings.cost_weight)
        if hints.min_quality is not None or weak is None or strong is None:
            bar = self.settings.min_quality if hints.min_quality is None else hints.min_quality
            return by_quality(candidates, request, quality, bar)
        score = _unit(predictor.strong_score([request.prompt])[0])
        return by_threshold(candidates, request, columns, strong, score, threshold, quality,
                            excluded)

STRATEGIES[LearnedStrategy.name] = LearnedStrategy
