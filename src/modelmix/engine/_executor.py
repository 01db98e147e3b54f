"""Executor: call a route's deployments with timeout, retries, backoff and fallback.

For each candidate of a :class:`RouteDecision`, in order: call it; on a retryable
error (429, timeout, 5xx, connection failure) retry the same deployment up to
``num_retries`` times after a backoff (full jitter, or the upstream's Retry-After);
on any other error that another deployment may not share (auth, context too long)
move to the next candidate; on a bad request, stop. Only candidates of the decision
are ever tried, so a fallback never reaches a deployment the policy filter removed.
Streams fall back only before their first chunk.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from modelmix.catalog import Deployment, ReliabilitySettings
from modelmix.engine._breaker import CircuitBreaker
from modelmix.errors import (
    NoDeploymentAvailable,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.providers import Provider
from modelmix.routing import Exclusion, ExclusionKind, LoadStats, RouteDecision

__all__ = ["Attempt", "Executor", "StreamStart"]

_T = TypeVar("_T")
_Started = tuple[ChatChunk, AsyncIterator[ChatChunk]]


@dataclass(slots=True)
class Attempt:
    """One upstream call: which deployment, how long (ms), and the error if any."""

    deployment: str
    latency_ms: float
    error: str | None = None
    error_type: str | None = None


@dataclass(slots=True)
class StreamStart:
    """A stream that has produced its first chunk on ``deployment``."""

    deployment: Deployment
    first: ChatChunk
    rest: AsyncIterator[ChatChunk]
    ttft_ms: float
    attempts: list[Attempt] = field(default_factory=list)


class _Budget:
    """The request's deadline, shared by all attempts."""

    def __init__(self, timeout_s: float):
        self.deadline = time.monotonic() + timeout_s

    def left(self) -> float:
        return self.deadline - time.monotonic()


class Executor:
    """Runs calls against :class:`Provider` adapters with the reliability settings.

    ``sleep`` and ``rng`` are injectable so tests can observe backoff without waiting.
    ``load`` (the router's, for group load balancing) counts every upstream attempt: in
    flight while it runs (a stream until its last chunk) and its latency.
    """

    def __init__(
        self,
        providers: dict[str, Provider],
        settings: ReliabilitySettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        load: LoadStats | None = None,
    ):
        self.providers = providers
        self.settings = settings
        #: calls in flight and latency per deployment, for the router's group strategies
        self.load = load if load is not None else LoadStats()
        self.breakers: dict[str, CircuitBreaker] = {}
        self._limits: dict[str, asyncio.Semaphore] = {}
        self._sleep = sleep
        self._rng = rng

    def health(self, dep: Deployment) -> Exclusion | None:
        """None when ``dep``'s circuit lets calls through, else why not (UNHEALTHY, with
        the seconds until it may)."""
        breaker = self.breaker(dep.name)
        why = breaker.blocked_reason()
        if why is None:
            return None
        return Exclusion(ExclusionKind.UNHEALTHY, why, retry_after_s=breaker.retry_in_s())

    def breaker(self, name: str) -> CircuitBreaker:
        """The circuit breaker of deployment ``name`` (created closed on first use)."""
        found = self.breakers.get(name)
        if found is None:
            found = self.breakers[name] = CircuitBreaker(self.settings.circuit_breaker)
        return found

    def backoff_s(self, retry: int, error: ProviderError) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): the upstream's
        Retry-After when it sent one (429, or a 503 during maintenance), else full jitter."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, (RateLimited, UpstreamUnavailable)) and retry_after is not None:
            return float(min(retry_after, self.settings.backoff_max_s * 4))
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2.0 ** (retry - 1))
        return float(self._rng() * cap)

    def _semaphore(self, dep: Deployment) -> asyncio.Semaphore | None:
        if dep.max_concurrency is None:
            return None
        sem = self._limits.get(dep.name)
        if sem is None:
            sem = self._limits[dep.name] = asyncio.Semaphore(dep.max_concurrency)
        return sem

    async def _attempt(self, dep: Deployment, call: Callable[[], Awaitable[_T]],
                       budget: _Budget) -> _T:
        timeout = min(dep.timeout_s or self.settings.attempt_timeout_s, budget.left())
        if timeout <= 0:
            raise ProviderTimeout(f"{dep.name}: request deadline passed", deployment=dep.name)
        sem = self._semaphore(dep)
        try:
            async with asyncio.timeout(timeout):
                if sem is None:
                    return await call()
                async with sem:
                    return await call()
        except TimeoutError as exc:
            raise ProviderTimeout(
                f"{dep.name}: no answer within {timeout:.1f}s", deployment=dep.name
            ) from exc

    async def _run(
        self,
        decision: RouteDecision,
        call: Callable[[Deployment], Callable[[], Awaitable[_T]]],
        timeout_s: float | None,
        attempts: list[Attempt] | None = None,
    ) -> tuple[_T, Deployment, list[Attempt]]:
        budget = _Budget(timeout_s or self.settings.timeout_s)
        attempts = [] if attempts is None else attempts
        last: ProviderError | None = None
        for dep in decision.candidates:
            breaker = self.breaker(dep.name)
            for retry in range(self.settings.num_retries + 1):
                if not breaker.acquire():
                    break
                started = time.perf_counter()
                try:
                    result = await self._attempt(dep, call(dep), budget)
                except ProviderError as exc:
                    exc.deployment = exc.deployment or dep.name
                    attempts.append(_failed(dep, started, exc))
                    last = exc
                    _judge(breaker, exc)
                    if not exc.fallbackable:
                        exc.attempts = attempts
                        raise
                    if not exc.retryable or retry == self.settings.num_retries:
                        break
                    wait = self.backoff_s(retry + 1, exc)
                    if wait >= budget.left() or wait > self.settings.backoff_max_s * 4:
                        break
                    await self._sleep(wait)
                    continue
                except BaseException as exc:  # cancelled (client left) or a bug
                    breaker.release()
                    attempts.append(Attempt(dep.name, _ms(started), "call abandoned",
                                            type(exc).__name__))
                    raise
                breaker.record_success()
                attempts.append(Attempt(dep.name, _ms(started)))
                return result, dep, attempts
        if last is None:
            waits = [w for d in decision.candidates
                     if (w := self.breaker(d.name).retry_in_s()) is not None]
            raise NoDeploymentAvailable("every candidate deployment's circuit is open",
                                        retry_after=min(waits, default=None))
        last.attempts = attempts
        raise last

    async def complete(
        self, decision: RouteDecision, request: ChatRequest, *, timeout_s: float | None = None,
        attempts: list[Attempt] | None = None, providers: Mapping[str, Provider] | None = None,
    ) -> tuple[ChatResponse, Deployment, list[Attempt]]:
        """Non-streaming call with retries and fallback. Raises the last ProviderError.

        ``attempts``, when given, is filled as calls end, so a caller that is cancelled
        still knows which deployments were called. ``providers`` replaces the executor's
        own for this call (the data guard passes them wrapped for one request).
        """
        adapters = self.providers if providers is None else providers

        def call(dep: Deployment) -> Callable[[], Awaitable[ChatResponse]]:
            return lambda: _counted_call(self.load, dep.name, adapters[dep.name].complete(request))

        return await self._run(decision, call, timeout_s, attempts)

    async def stream(
        self, decision: RouteDecision, request: ChatRequest, *, timeout_s: float | None = None,
        attempts: list[Attempt] | None = None, providers: Mapping[str, Provider] | None = None,
    ) -> StreamStart:
        """Start a stream: retries and fallback apply until the first chunk arrives.
        ``attempts`` and ``providers`` as for :meth:`complete`."""
        started = time.perf_counter()
        adapters = self.providers if providers is None else providers

        def call(dep: Deployment) -> Callable[[], Awaitable[_Started]]:
            async def first() -> _Started:
                it = _CountedStream(aiter(adapters[dep.name].stream(request)), self.load,
                                    dep.name)
                try:
                    chunk = await anext(it)
                except StopAsyncIteration:
                    raise ProviderError(f"{dep.name}: empty stream", deployment=dep.name) from None
                except BaseException:
                    await _close(it)
                    raise
                return chunk, it

            return first

        (first, rest), dep, log = await self._run(decision, call, timeout_s, attempts)
        idle = dep.timeout_s or self.settings.attempt_timeout_s
        return StreamStart(dep, first, _IdleGuard(rest, idle, dep.name), _ms(started), log)


class _CountedStream:
    """Re-yield an upstream stream, counted in ``load`` from creation to its end: ok when
    it ended after at least one chunk; an error, an empty stream or a close before the
    end finishes it as failed. A class for the same reason as :class:`_IdleGuard`."""

    def __init__(self, it: AsyncIterator[ChatChunk], load: LoadStats, name: str):
        self._it, self._load, self._name = it, load, name
        self._started = time.perf_counter()
        self._chunks = 0
        self._open = True
        load.started(name)

    def _finish(self, ok: bool) -> None:
        if self._open:
            self._open = False
            self._load.finished(self._name, _ms(self._started), ok)

    def __aiter__(self) -> _CountedStream:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            chunk = await anext(self._it)
        except StopAsyncIteration:
            self._finish(self._chunks > 0)
            raise
        except BaseException:
            self._finish(False)
            raise
        self._chunks += 1
        return chunk

    async def aclose(self) -> None:
        self._finish(False)
        await _close(self._it)


class _IdleGuard:
    """Re-yield ``it``, raising ProviderTimeout if the upstream goes quiet for ``idle_s``.

    A class rather than an async generator so that :meth:`aclose` closes the upstream
    even when no chunk was ever asked of it (an async generator that never started runs
    no ``finally`` on ``aclose``): a client that leaves after the first chunk must end
    the upstream call at once, not when the garbage collector finds it.
    """

    def __init__(self, it: AsyncIterator[ChatChunk], idle_s: float, name: str):
        self._it = it
        self._idle_s = idle_s
        self._name = name

    def __aiter__(self) -> _IdleGuard:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            async with asyncio.timeout(self._idle_s):
                return await anext(self._it)
        except TimeoutError as exc:
            await self.aclose()
            raise ProviderTimeout(f"{self._name}: stream idle for {self._idle_s:.0f}s",
                                  deployment=self._name) from exc

    async def aclose(self) -> None:
        await _close(self._it)


async def _close(it: AsyncIterator[ChatChunk]) -> None:
    aclose = getattr(it, "aclose", None)
    if aclose is not None:
        await aclose()


async def _counted_call(load: LoadStats, name: str, call: Awaitable[_T]) -> _T:
    """Await ``call``, counted in ``load`` as a call to deployment ``name``."""
    load.started(name)
    started, ok = time.perf_counter(), False
    try:
        result = await call
        ok = True
        return result
    finally:
        load.finished(name, _ms(started), ok)


def _judge(breaker: CircuitBreaker, exc: ProviderError) -> None:
    """Deployment faults count against the circuit; the request's own faults do not."""
    if exc.retryable or exc.code == "upstream_auth_error":
        breaker.record_failure()
    else:
        breaker.release()


def _failed(dep: Deployment, started: float, exc: ProviderError) -> Attempt:
    return Attempt(dep.name, _ms(started), exc.message, type(exc).__name__)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000

