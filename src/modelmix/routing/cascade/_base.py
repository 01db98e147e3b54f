"""The contract of a verifier: ``check(prompt, answer) -> Check``, one abstract method.

A verified cascade calls the cheapest capable model first, checks its answer with a
verifier, and escalates to the next tier only when the check fails. Verifiers here need
no live model: they read the prompt and the answer text and nothing else, so a check is
pure and costs CPU time only. The live runtime (``modelmix.systems``) builds them by
name with :func:`~modelmix.routing.cascade.verifier_from_spec`.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from modelmix.errors import ConfigError

__all__ = ["Check", "Verifier", "bool_option", "check_options", "float_option"]


@dataclass(frozen=True, slots=True)
class Check:
    """A verifier's verdict on one answer.

    Attributes:
        ok: accept the answer (no escalation).
        score: escalation score in [0, 1]; higher means escalate sooner. A cascade with a
            threshold ``t`` escalates when ``score >= t``; ``ok`` is the verifier's own
            default decision.
        reason: a short human reason, e.g. ``"final answer 540 matches the recomputed
            steps"`` or ``"invalid JSON at $.qty: 'x' is not of type 'integer'"``.
    """

    ok: bool
    score: float
    reason: str

    def __post_init__(self) -> None:
        if not (math.isfinite(self.score) and 0.0 <= self.score <= 1.0):
            raise ValueError(f"score must be in [0, 1], got {self.score}")


class Verifier(ABC):
    """Checks a model's answer to a prompt without calling any model.

    Subclasses set :attr:`name` (the registry key), parse their options once in
    :meth:`from_options` and implement :meth:`check`, which never raises for a bad
    answer: a malformed, empty or hostile answer is ``Check(ok=False, ...)``.

    Example::

        from modelmix.routing.cascade import verifier_from_spec
        v = verifier_from_spec("arithmetic", {})
        v.check("3 sprints of 60 m, 3 times a week?", "3 x 60 = 180\\n180 x 3 = 540\\n#### 540")
    """

    name: ClassVar[str]

    @classmethod
    @abstractmethod
    def from_options(cls, options: Mapping[str, Any]) -> Verifier:
        """Build from a mapping of options (YAML / JSON).

        Raises:
            ConfigError: an unknown option or a bad value, naming the option.
        """

    @abstractmethod
    def check(self, prompt: str, answer: str) -> Check:
        """The verdict on ``answer`` to ``prompt``: pure, no I/O."""

    def scores(self, prompts: Sequence[str], answers: Sequence[str]) -> list[float]:
        """Escalation scores of many (prompt, answer) pairs (batched where a verifier can)."""
        if len(prompts) != len(answers):
            raise ValueError(f"{len(prompts)} prompts but {len(answers)} answers")
        return [self.check(p, a).score for p, a in zip(prompts, answers, strict=True)]


def check_options(verifier: str, options: Mapping[str, Any], known: Sequence[str]) -> None:
    """Raise :class:`ConfigError` for an option ``verifier`` does not take.

    Raises:
        ConfigError: names the option and lists the known ones.
    """
    if not isinstance(options, Mapping):
        raise ConfigError(f"verifier {verifier!r}: options must be a mapping, got "
                          f"{type(options).__name__}")
    unknown = [str(k) for k in options if k not in known]
    if unknown:
        allowed = ", ".join(known) or "none"
        raise ConfigError(f"verifier {verifier!r}: unknown option {unknown[0]!r} "
                          f"(options: {allowed})")


def bool_option(verifier: str, options: Mapping[str, Any], key: str, default: bool) -> bool:
    """A true/false option. Raises :class:`ConfigError` for another type."""
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"verifier {verifier!r}: option {key!r} must be true or false, "
                          f"got {value!r}")
    return value


def float_option(verifier: str, options: Mapping[str, Any], key: str, default: float, *,
                 low: float = 0.0, high: float = 1.0) -> float:
    """A number option in ``[low, high]``. Raises :class:`ConfigError` otherwise."""
    value = options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
            math.isfinite(value) and low <= value <= high):
        raise ConfigError(f"verifier {verifier!r}: option {key!r} must be a number in "
                          f"[{low:g}, {high:g}], got {value!r}")
    return float(value)
