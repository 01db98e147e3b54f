"""Executor: call a route's deployments with timeout, retries, backoff and fallback.

For each candidate of a :class:`RouteDecision`, in order: call it; on a retryable
error (429, timeout, 5xx, connection failure) retry the same deployment up to
``num_retries`` times after a backoff (full jitter, or the upstream's Retry-After);
on any other error that another deployment may not share (auth, context too long)
move to the next candidate; on a bad request, stop. Only candidates of the decision
are ever tried, so a fallback never reaches a deployment the policy filter removed.
Streams fall back only before their first chunk.

Each call also takes the deployment's own limits (``rpm`` / ``tpm`` / ``max_concurrency``,
:class:`~modelmix.state.DeploymentLimits`): a deployment over its rpm or tpm is skipped
for the next candidate (no retry on it, no circuit failure); a concurrency slot is
waited for within the call's timeout and held until the answer, or the stream, ends.
A request for ``n > 1`` choices counts as ``n`` requests against rpm (however its
deployment answers it, it may take up to ``n`` upstream calls:
providers/_choices.py), and those calls run one at a time under its one concurrency
slot when the deployment has a ``max_concurrency``.
With shared state (Redis) both the limits and the circuit breakers hold across replicas.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

from modelmix.catalog import Deployment, ReliabilitySettings
from modelmix.engine._breaker import Breakers, CircuitBreaker
from modelmix.errors import (
    DeploymentRateLimited,
    NoDeploymentAvailable,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    StateUnavailable,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, Usage
from modelmix.providers import EmbeddingResult, Provider
from modelmix.routing import Exclusion, ExclusionKind, LoadStats, RouteDecision
from modelmix.state import DeploymentLimits, SharedRedis, Ticket

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
    flight while it runs (a stream until its last chunk) and its latency. ``shared``
    (the replicas' Redis) makes circuit breakers and deployment limits hold across
    replicas; None keeps them in this process.
    """

    def __init__(
        self,
        providers: dict[str, Provider],
        settings: ReliabilitySettings,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: Callable[[], float] = random.random,
        load: LoadStats | None = None,
        shared: SharedRedis | None = None,
    ):
        self.providers = providers
        self.settings = settings
        #: calls in flight and latency per deployment, for the router's group strategies
        self.load = load if load is not None else LoadStats()
        self._breakers = Breakers(settings.circuit_breaker, shared)
        #: each deployment's circuit breaker (the replicas' shared state's mirror when shared)
        self.breakers: dict[str, CircuitBreaker] = self._breakers.local
        #: each deployment's rpm / tpm / max_concurrency
        self.limits = DeploymentLimits(shared)
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
        return self._breakers.get(name)

    async def record_failure(self, name: str) -> None:
        """Count a failure of deployment ``name`` outside a call the executor made (a
        stream that broke after its first chunk), across replicas when shared."""
        await self._breakers.failed(name)

    def backoff_s(self, retry: int, error: ProviderError) -> float:
        """Seconds to wait before retry number ``retry`` (1-based): the upstream's
        Retry-After when it sent one (429, or a 503 during maintenance), else full jitter."""
        retry_after = getattr(error, "retry_after", None)
        if isinstance(error, (RateLimited, UpstreamUnavailable)) and retry_after is not None:
            return float(min(retry_after, self.settings.backoff_max_s * 4))
        cap = min(self.settings.backoff_max_s, self.settings.backoff_base_s * 2.0 ** (retry - 1))
        return float(self._rng() * cap)

    async def _attempt(self, dep: Deployment, call: Callable[[], Awaitable[_T]],
                       budget: _Budget, ticket: Ticket | None) -> _T:
        timeout = min(dep.timeout_s or self.settings.attempt_timeout_s, budget.left())
        if timeout <= 0:
            raise ProviderTimeout(f"{dep.name}: request deadline passed", deployment=dep.name)
        try:
            async with asyncio.timeout(timeout):
                await self.limits.hold(ticket)  # a concurrency slot, within the timeout
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
        tokens: int = 0,
        requests: int = 1,
    ) -> tuple[_T, Deployment, list[Attempt], Ticket | None]:
        """The first result among the candidates, its deployment, the attempts and the
        limits' ticket of the call (the caller releases it when the answer ends).
        ``tokens`` and ``requests`` are what the call takes of a deployment's tpm and
        rpm windows."""
        budget = _Budget(timeout_s or self.settings.timeout_s)
        attempts = [] if attempts is None else attempts
        last: ProviderError | None = None
        for dep in decision.candidates:
            for retry in range(self.settings.num_retries + 1):
                lock_s = dep.timeout_s or self.settings.attempt_timeout_s
                if not await self._breakers.acquire(dep.name, lock_s=lock_s):
                    break
                try:
                    ticket = await self._admit(dep, tokens, requests)
                except DeploymentRateLimited as exc:  # skipped, like an upstream 429
                    last = _soonest(last, exc)
                    break
                started = time.perf_counter()
                try:
                    result = await self._attempt(dep, call(dep), budget, ticket)
                except ProviderError as exc:
                    last = exc
                    if await self._again(dep, exc, retry, budget, attempts, started, ticket):
                        continue
                    break
                except StateUnavailable:  # the shared limits cannot be read (fail closed)
                    self._breakers.released(dep.name)
                    self.limits.abandon(ticket)
                    raise
                except BaseException as exc:  # cancelled (client left) or a bug
                    self._breakers.released(dep.name)
                    self.limits.abandon(ticket)
                    attempts.append(Attempt(dep.name, _ms(started), "call abandoned",
                                            type(exc).__name__))
                    raise
                attempts.append(Attempt(dep.name, _ms(started)))
                self._breakers.succeeded(dep.name)
                return result, dep, attempts, ticket
        if last is None:
            waits = [w for d in decision.candidates
                     if (w := self.breaker(d.name).retry_in_s()) is not None]
            raise NoDeploymentAvailable("every candidate deployment's circuit is open",
                                        retry_after=min(waits, default=None))
        last.attempts = attempts
        raise last

    async def _admit(self, dep: Deployment, tokens: int, requests: int) -> Ticket | None:
        """A place in ``dep``'s limits for one call; the circuit's permission is given
        back when there is none."""
        try:
            return await self.limits.admit(dep, tokens, requests)
        except BaseException:
            self._breakers.released(dep.name)
            raise

    async def _again(self, dep: Deployment, exc: ProviderError, retry: int, budget: _Budget,
                     attempts: list[Attempt], started: float, ticket: Ticket | None) -> bool:
        """After a failed attempt: whether to retry ``dep`` (after the backoff). Raises
        ``exc`` when no other deployment may do better."""
        exc.deployment = exc.deployment or dep.name
        attempts.append(_failed(dep, started, exc))
        await self.limits.release(ticket)
        if exc.retryable or exc.code == "upstream_auth_error":  # the deployment's fault
            await self._breakers.failed(dep.name)
        else:  # the request's own fault: no verdict on the deployment
            self._breakers.released(dep.name)
        if not exc.fallbackable:
            exc.attempts = attempts
            raise exc
        if not exc.retryable or retry == self.settings.num_retries:
            return False
        wait = self.backoff_s(retry + 1, exc)
        if wait >= budget.left() or wait > self.settings.backoff_max_s * 4:
            return False
        await self._sleep(wait)
        return True

    async def embed(
        self, decision: RouteDecision,
        call: Callable[[Deployment], Awaitable[EmbeddingResult]], *,
        timeout_s: float | None = None, attempts: list[Attempt] | None = None,
        tokens: int = 0,
    ) -> tuple[EmbeddingResult, Deployment, list[Attempt]]:
        """An embedding call (``call(deployment)`` makes one) with the same deadline,
        retries, fallback over the decision's candidates, circuit breakers and
        deployment limits as a chat call; ``tokens`` is what it reserves in a
        deployment's tpm window. Raises the last ProviderError."""
        def attempt(dep: Deployment) -> Callable[[], Awaitable[EmbeddingResult]]:
            return lambda: _counted_call(self.load, dep.name, call(dep))

        result, dep, log, ticket = await self._run(decision, attempt, timeout_s, attempts,
                                                   tokens)
        await self.limits.release(ticket, result.prompt_tokens)
        return result, dep, log

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

        response, dep, log, ticket = await self._run(decision, call, timeout_s, attempts,
                                                     _tokens(decision, request),
                                                     request.choices)
        await self.limits.release(ticket, _used(response.usage))
        return response, dep, log

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

        (first, rest), dep, log, ticket = await self._run(decision, call, timeout_s, attempts,
                                                          _tokens(decision, request),
                                                          request.choices)
        idle = dep.timeout_s or self.settings.attempt_timeout_s
        guard = _IdleGuard(rest, idle, dep.name, self.limits, ticket)
        return StreamStart(dep, first, guard, _ms(started), log)


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

    It also releases the call's deployment limits (its concurrency slot; its tokens, from
    the usage chunk when one comes) when the stream ends or is closed.
    """

    def __init__(self, it: AsyncIterator[ChatChunk], idle_s: float, name: str,
                 limits: DeploymentLimits | None = None, ticket: Ticket | None = None):
        self._it = it
        self._idle_s = idle_s
        self._name = name
        self._limits = limits
        self._ticket = ticket
        self._tokens: int | None = None

    def __aiter__(self) -> _IdleGuard:
        return self

    async def __anext__(self) -> ChatChunk:
        try:
            async with asyncio.timeout(self._idle_s):
                chunk = await anext(self._it)
        except TimeoutError as exc:
            await self.aclose()
            raise ProviderTimeout(f"{self._name}: stream idle for {self._idle_s:.0f}s",
                                  deployment=self._name) from exc
        except StopAsyncIteration:
            await self._release()
            raise
        if chunk.usage is not None:
            self._tokens = _used(chunk.usage)
        return chunk

    async def aclose(self) -> None:
        try:
            await _close(self._it)
        finally:
            await self._release()

    async def _release(self) -> None:
        if self._limits is not None:
            await self._limits.release(self._ticket, self._tokens)


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


def _tokens(decision: RouteDecision, request: ChatRequest) -> int:
    """What a call reserves in a deployment's tpm window: the prompt estimate plus
    ``max_tokens``, times ``n`` (0 when no candidate has a tpm limit: not worth
    estimating)."""
    if not any(dep.tpm for dep in decision.candidates):
        return 0
    needs = request.needs()
    return (needs.prompt_tokens_estimate + needs.max_output_tokens) * needs.choices


def _used(usage: Usage | None) -> int | None:
    """Tokens an upstream reported for a call, None when it reported none."""
    if usage is None:
        return None
    return max(usage.total_tokens, usage.prompt_tokens + usage.completion_tokens)


def _soonest(last: ProviderError | None, exc: DeploymentRateLimited) -> DeploymentRateLimited:
    """``exc``, its ``retry_after`` the soonest of it and the over-limit ``last``."""
    if isinstance(last, DeploymentRateLimited) and last.retry_after is not None:
        ours = exc.retry_after
        exc.retry_after = last.retry_after if ours is None else min(ours, last.retry_after)
    return exc


def _failed(dep: Deployment, started: float, exc: ProviderError) -> Attempt:
    return Attempt(dep.name, _ms(started), exc.message, type(exc).__name__)


def _ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000

