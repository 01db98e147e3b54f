"""Per-deployment circuit breaker (closed -> open -> half-open -> closed).

After ``failure_threshold`` consecutive failures the circuit opens and calls are
refused for ``cooldown_s``; then one probe call is let through (half-open). Its success
closes the circuit, its failure reopens it. (Nygard, *Release It!*, 2nd ed., ch. 5.)
"""

from __future__ import annotations

import time
from collections.abc import Callable
from enum import StrEnum

from modelmix.catalog import CircuitBreakerSettings

__all__ = ["BreakerState", "CircuitBreaker"]


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half-open"


class CircuitBreaker:
    """State for one deployment. Not thread-safe: use from one event loop."""

    def __init__(self, settings: CircuitBreakerSettings,
                 clock: Callable[[], float] = time.monotonic):
        self._settings = settings
        self._clock = clock
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._opened_at = 0.0
        self._probe_in_flight = False

    def blocked_reason(self) -> str | None:
        """None when a call may go ahead now (without taking the probe slot)."""
        if self.state is BreakerState.CLOSED:
            return None
        if self.state is BreakerState.OPEN:
            left = self._settings.cooldown_s - (self._clock() - self._opened_at)
            if left > 0:
                return f"circuit open ({self.failures} consecutive failures; retry in {left:.0f}s)"
            return None
        return "circuit half-open (probe in flight)" if self._probe_in_flight else None

    def retry_in_s(self) -> float | None:
        """Seconds until a call may go ahead (None when one may now): the cooldown left
        while open, 1 while a half-open probe is in flight."""
        if self.blocked_reason() is None:
            return None
        if self.state is BreakerState.OPEN:
            return max(self._settings.cooldown_s - (self._clock() - self._opened_at), 0.0)
        return 1.0

    def acquire(self) -> bool:
        """Take permission for one call; in half-open state only one probe at a time."""
        if self.blocked_reason() is not None:
            return False
        if self.state is BreakerState.OPEN:
            self.state = BreakerState.HALF_OPEN
        if self.state is BreakerState.HALF_OPEN:
            self._probe_in_flight = True
        return True

    def record_success(self) -> None:
        self.state = BreakerState.CLOSED
        self.failures = 0
        self._probe_in_flight = False

    def record_failure(self) -> None:
        self.failures += 1
        self._probe_in_flight = False
        tripped = self.failures >= self._settings.failure_threshold
        if self.state is BreakerState.HALF_OPEN or tripped:
            self.state = BreakerState.OPEN
            self._opened_at = self._clock()

    def release(self) -> None:
        """The call ended without a verdict on the deployment (e.g. the client left)."""
        self._probe_in_flight = False
