"""CircuitBreaker state machine with a fake clock: closed -> open -> half-open -> closed."""

from __future__ import annotations

import pytest

from modelmix.catalog import CircuitBreakerSettings
from modelmix.engine import BreakerState, CircuitBreaker


class FakeClock:
    """A monotonic clock the test moves by hand (seconds)."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture()
def clock() -> FakeClock:
    return FakeClock()


def _breaker(clock: FakeClock, threshold: int = 3, cooldown: float = 10.0) -> CircuitBreaker:
    settings = CircuitBreakerSettings(failure_threshold=threshold, cooldown_s=cooldown)
    return CircuitBreaker(settings, clock=clock)


def _state(breaker: CircuitBreaker) -> BreakerState:
    """The state, read through a call so mypy does not narrow it across actions."""
    return breaker.state


def _trip(breaker: CircuitBreaker, times: int) -> None:
    for _ in range(times):
        assert breaker.acquire()
        breaker.record_failure()


def test_closed_lets_every_call_through(clock: FakeClock) -> None:
    breaker = _breaker(clock)
    for _ in range(10):
        assert breaker.blocked_reason() is None
        assert breaker.acquire()
        breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED


def test_opens_after_threshold_consecutive_failures(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=3, cooldown=10)
    _trip(breaker, 2)
    assert _state(breaker) is BreakerState.CLOSED
    _trip(breaker, 1)
    assert _state(breaker) is BreakerState.OPEN
    assert not breaker.acquire()
    assert breaker.blocked_reason() == "circuit open (3 consecutive failures; retry in 10s)"
    clock.advance(6)
    assert breaker.blocked_reason() == "circuit open (3 consecutive failures; retry in 4s)"


def test_success_resets_the_consecutive_count(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=3)
    for _ in range(5):
        _trip(breaker, 2)
        assert breaker.acquire()
        breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED and breaker.failures == 0


def test_half_open_allows_a_single_probe(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=1, cooldown=5)
    _trip(breaker, 1)
    clock.advance(4.9)
    assert not breaker.acquire()
    clock.advance(0.2)
    assert breaker.blocked_reason() is None  # cooldown over: a probe may go
    assert breaker.acquire()
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert breaker.blocked_reason() == "circuit half-open (probe in flight)"
    assert not breaker.acquire()


def test_probe_success_closes(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=2, cooldown=5)
    _trip(breaker, 2)
    clock.advance(5)
    assert breaker.acquire()
    breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED and breaker.failures == 0
    assert breaker.acquire() and breaker.acquire()  # closed: no single-probe limit
    _trip(breaker, 1)
    assert _state(breaker) is BreakerState.CLOSED  # the count restarted from zero


def test_probe_failure_reopens_for_a_full_cooldown(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=2, cooldown=5)
    _trip(breaker, 2)
    clock.advance(7)
    assert breaker.acquire()
    breaker.record_failure()
    assert _state(breaker) is BreakerState.OPEN
    clock.advance(4)
    assert not breaker.acquire()
    clock.advance(1)
    assert breaker.acquire()


def test_release_frees_the_probe_without_a_verdict(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=1, cooldown=5)
    _trip(breaker, 1)
    clock.advance(5)
    assert breaker.acquire()
    breaker.release()  # e.g. the client went away mid-probe
    assert _state(breaker) is BreakerState.HALF_OPEN
    assert breaker.acquire()  # another probe may go
    breaker.record_success()
    assert _state(breaker) is BreakerState.CLOSED


def test_release_in_closed_state_changes_nothing(clock: FakeClock) -> None:
    breaker = _breaker(clock, threshold=2)
    _trip(breaker, 1)
    assert breaker.acquire()
    breaker.release()
    assert _state(breaker) is BreakerState.CLOSED and breaker.failures == 1
