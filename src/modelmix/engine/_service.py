"""The chat service: route, admit, execute, record. The gateway and the library's
:class:`~modelmix.AsyncClient` are both thin shells over :class:`ChatService`."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

from modelmix.catalog import Config, Deployment
from modelmix.engine._cache import ResponseCache, StreamCapture, cached_stream
from modelmix.engine._contracts import (
    Admission,
    CallContext,
    Completion,
    ServiceObserver,
    StreamCompletion,
)
from modelmix.engine._embed import Embeddings, EmbeddingService
from modelmix.engine._executor import Attempt, Executor
from modelmix.engine._media import MediaStage, decide_media, has_media_parts
from modelmix.engine._systems import SystemExecution, is_system, stack_guard
from modelmix.errors import (
    ClientDisconnected,
    InvalidRequest,
    ModelmixError,
    ProviderError,
)
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, Usage
from modelmix.providers import Provider, availability, create_provider
from modelmix.providers._choices import with_choices
from modelmix.routing import (
    Exclusion,
    ExclusionKind,
    LoadStats,
    RouteDecision,
    Router,
    Rule,
    Strategy,
    prompt_text,
)
from modelmix.state import SharedRedis
from modelmix.store import NullSink, UsageRecord, UsageSink
from modelmix.systems import load_systems

if TYPE_CHECKING:
    from modelmix.guard import Guard

__all__ = [
    "KEPT_TEXT_CHARS",
    "POLICY_FROM_CONFIG",
    "Admission",
    "CallContext",
    "ChatService",
    "Completion",
    "Embeddings",
    "FromConfig",
    "ServiceObserver",
    "StreamCompletion",
]


class FromConfig(Enum):
    """The type of :data:`POLICY_FROM_CONFIG`."""

    POLICY = "policy"


#: ``ChatService(guard=...)`` default: build the guard from the config's ``policy``.
POLICY_FROM_CONFIG = FromConfig.POLICY


class _LazyProviders(dict[str, Provider]):
    """Adapters built on first use, so unused SDKs are never imported."""

    def __init__(self, config: Config):
        super().__init__()
        self._config = config

    def __missing__(self, name: str) -> Provider:
        provider = self[name] = create_provider(self._config.deployment(name))
        return provider


#: Longest prompt or answer text (characters) kept when ``store.keep_prompts`` /
#: ``store.keep_responses`` are on.
KEPT_TEXT_CHARS = 32_000


@dataclass(slots=True)
class _RelayState:
    started: bool = False
    content_chunks: int = 0
    cost_usd: float | None = None  # set when the stream has finished
    parts: list[str] | None = None  # the answer's text, kept when store.keep_responses
    capture: StreamCapture | None = None  # the answer, rebuilt for the response cache

    def add_text(self, text: str) -> None:
        self.content_chunks += 1
        if self.parts is not None:
            self.parts.append(text)

    def text(self) -> str | None:
        """The streamed answer's text when kept (``store.keep_responses``), else None."""
        return None if self.parts is None else "".join(self.parts)[:KEPT_TEXT_CHARS]

    def partial_usage(self) -> Usage:
        """Completion tokens of a stream cut short, counted as one per content chunk
        (what OpenAI-compatible servers send); the prompt's count is unknown (0)."""
        return Usage(completion_tokens=self.content_chunks,
                     total_tokens=self.content_chunks)


class ChatService:
    """Routes and executes chat requests over a catalog; records every request.

    Args:
        config: the validated catalog and settings.
        providers: adapters by deployment name (built from the catalog when omitted;
            tests pass :class:`modelmix.testing.FakeProvider` instances).
        usage: where usage records go (discarded when omitted).
        sleep: the executor's backoff sleep (tests pass a recorder).
        strategies: routing strategies by name, used instead of building them from
            the config (tests pass a learned strategy over a fake predictor).
        guard: the data guard (docs/guard.md): a :class:`~modelmix.guard.Guard`, None for
            none, or (the default) :data:`POLICY_FROM_CONFIG`: built from the config's
            ``policy`` (no guard when it names none). The service reads no environment
            variable; pass ``guard_from_config(config, os.environ)`` to let
            ``$MODELMIX_POLICY`` override the config, as the gateway does.
        shared: the replicas' shared state (:func:`modelmix.state.shared_redis`): circuit
            breakers, deployment rate limits and the response cache then hold across
            every process using the same Redis; None keeps them in this process.

    Raises:
        ConfigError: the config's policy does not load, or its ``router`` names no
            strategy.

    Attributes:
        observers: hooks told of routing time and of each finished request
            (the gateway appends its metrics and tracing here).
    """

    def __init__(
        self,
        config: Config,
        *,
        providers: Mapping[str, Provider] | None = None,
        usage: UsageSink | None = None,
        sleep: Callable[[float], Awaitable[None]] | None = None,
        strategies: Mapping[str, Strategy] | None = None,
        guard: Guard | FromConfig | None = FromConfig.POLICY,
        shared: SharedRedis | None = None,
    ):
        self.config = config
        self.shared = shared
        built = _LazyProviders(config)
        built.update(providers or {})
        self.providers = built
        self._with_choices = with_choices(built)  # for n > 1 (providers/_choices.py)
        kw: dict[str, Any] = {"sleep": sleep} if sleep is not None else {}
        #: this process's calls in flight and latencies per deployment: the executor
        #: counts them, the router's group strategies read them (docs/load-balancing.md)
        self.load = LoadStats()
        self.executor = Executor(built, config.reliability, load=self.load, shared=shared,
                                 **kw)
        self.router = Router(config, health=self._health, strategies=dict(strategies or {}),
                             load=self.load)
        self.usage: UsageSink = usage or NullSink()
        self.observers: list[ServiceObserver] = []
        if isinstance(guard, FromConfig):
            from modelmix.guard import guard_from_config

            guard = guard_from_config(config)
        self.guard = guard
        if guard is not None:  # first, so it scrubs records before others see them
            self.observers.append(guard)
        self._availability: dict[str, Exclusion | None] = {}
        self.media = MediaStage(config.media)
        self.cache = ResponseCache.from_config(config, shared)  # docs/cache.md
        #: ``POST /v1/embeddings`` over the same guard, router and executor (:meth:`embed`)
        self.embeddings = EmbeddingService(self)
        self.systems = SystemExecution(self, load_systems(
            config, guard=guard,
            make_guard=lambda ref, base: stack_guard(ref, base, config.guard_ner)))

    def _health(self, dep: Deployment) -> Exclusion | None:
        if dep.name not in self._availability:
            avail = availability(dep)
            self._availability[dep.name] = (
                None if avail.available else Exclusion(ExclusionKind.UNAVAILABLE, avail.reason))
        return self._availability[dep.name] or self.executor.health(dep)

    def refresh_availability(self) -> None:
        """Re-read API key variables and model files on the next request."""
        self._availability.clear()

    def route(self, request: ChatRequest, ctx: CallContext, *, rules: tuple[Rule, ...] = (),
              quiet: bool = False) -> RouteDecision:
        """Route ``request`` (the form that will be sent: its needs decide which
        deployments can take it); the prompt the router reads is the screening's redacted
        one. ``rules`` add policy-filter rules; ``quiet`` tells observers nothing of a
        failure (a first try the caller retries in another form)."""
        needs = request.needs()
        screening = ctx.screening
        if screening is not None:  # routing, logs and observers see no detected value
            request = screening.redacted
        if request.timeout is not None:
            ctx.timeout_s = min(ctx.timeout_s or request.timeout, request.timeout)
        started = time.perf_counter()
        decision: RouteDecision | None = None
        try:
            decision = self.router.route(
                request.model, needs, allowed_models=ctx.allowed_models, tags=ctx.tags,
                prompt=prompt_text(request), hints=ctx.hints,
                extra_rules=(*(screening.rules if screening is not None else ()), *ctx.rules,
                             *rules),
            )
            if screening is not None and screening.verdict.constrained:
                v = screening.verdict  # say which data rule limited the choice
                decision = dataclasses.replace(decision, reason=(
                    f"{decision.reason}; data policy {v.policy}: {v.data_class.value} "
                    f"({v.rule})"))
            return decision
        finally:
            if decision is not None or not quiet:
                for observer in self.observers:
                    observer.routed(request, ctx, decision, time.perf_counter() - started)

    async def complete(self, request: ChatRequest, ctx: CallContext | None = None) -> Completion:
        """Route and run a non-streaming request. Raises ModelmixError subclasses."""
        ctx = ctx or CallContext()
        if is_system(request.model):
            self._system_request(request, ctx)
            return await self.systems.complete(request, ctx)
        rec = self._record(request, ctx)
        reservation = None
        log: list[Attempt] = []
        try:
            decision, reservation, sent = await self._decide(request, ctx, rec)
            if ctx.cache is not None and ctx.cache.entry is not None:
                response = self._answer_cached(ctx, rec, decision)
                return Completion(response, decision, decision.deployment, [], 0.0,
                                  rec.latency_ms, cache="hit", saved_usd=rec.saved_usd or 0.0)
            response, dep, attempts = await self.executor.complete(
                decision, sent, timeout_s=ctx.timeout_s, attempts=log,
                providers=self._guarded(ctx, sent),
            )
        except ModelmixError as exc:
            self._fail(rec, exc, ctx, reservation)
            raise
        except asyncio.CancelledError:
            self._cancelled(rec, ctx, reservation, log)
            raise
        if self.config.store.keep_responses:
            rec.response = response.text[:KEPT_TEXT_CHARS]
        cost = self._finish(rec, dep, response.usage, attempts, ctx, reservation)
        await self.cache.store(ctx.cache, response, dep)
        return Completion(response, decision, dep, attempts, cost, rec.latency_ms,
                          conversions=ctx.conversions, cache=rec.cache or "bypass")

    async def embed(self, request: EmbeddingRequest, ctx: CallContext | None = None
                    ) -> Embeddings:
        """Screen, route (embedding deployments only), admit, run and record an embedding
        request (engine/_embed.py). Raises ModelmixError subclasses, as :meth:`complete`."""
        return await self.embeddings.embed(request, ctx)

    async def stream(self, request: ChatRequest, ctx: CallContext | None = None
                     ) -> StreamCompletion:
        """Route and start a stream; errors before the first chunk raise here."""
        ctx = ctx or CallContext()
        if is_system(request.model):
            self._system_request(request, ctx)
            return await self.systems.stream(request, ctx)
        rec = self._record(request, ctx)
        rec.stream = True
        reservation = None
        log: list[Attempt] = []
        try:
            decision, reservation, sent = await self._decide(request, ctx, rec)
            if ctx.cache is not None and ctx.cache.entry is not None:
                response = self._answer_cached(ctx, rec, decision)
                return cached_stream(decision, response, request.include_usage)
            start = await self.executor.stream(decision, sent, timeout_s=ctx.timeout_s,
                                               attempts=log,
                                               providers=self._guarded(ctx, sent))
        except ModelmixError as exc:
            self._fail(rec, exc, ctx, reservation)
            raise
        except asyncio.CancelledError:
            self._cancelled(rec, ctx, reservation, log)
            raise
        rec.ttft_ms = (time.perf_counter() - ctx.started) * 1000
        state = _RelayState(parts=[] if self.config.store.keep_responses else None,
                            capture=StreamCapture() if rec.cache == "miss" else None)
        chunks = self._relay(start.first, start.rest, request, rec, start.deployment,
                             start.attempts, ctx, reservation, state)

        async def close() -> None:
            await chunks.aclose()
            if not state.started:  # the client left before the first chunk was sent
                await _aclose(start.rest)  # the relay never ran: end the upstream call here
                rec.deployment = start.deployment.name
                self._fail(rec, ClientDisconnected("client disconnected before the stream"),
                           ctx, reservation, attempts=start.attempts)

        return StreamCompletion(decision, start.deployment, chunks, close,
                                lambda: state.cost_usd, attempts=list(start.attempts),
                                cache=rec.cache or "bypass",
                                conversions=ctx.conversions)

    async def _relay(
        self,
        first: ChatChunk,
        rest: AsyncIterator[ChatChunk],
        request: ChatRequest,
        rec: UsageRecord,
        dep: Deployment,
        attempts: list[Attempt],
        ctx: CallContext,
        reservation: object,
        state: _RelayState,
    ) -> AsyncGenerator[ChatChunk, None]:
        state.started = True
        usage: Usage | None = None
        finished = False
        rec.deployment = dep.name
        try:
            chunk: ChatChunk | None = first
            while chunk is not None:
                if state.capture is not None:
                    state.capture.feed(chunk)
                if chunk.usage is not None:
                    usage = chunk.usage
                elif chunk.choices and (text := chunk.choices[0].delta.content):
                    state.add_text(text)
                if chunk.choices or request.include_usage:
                    yield chunk
                chunk = await anext(rest, None)
            finished = True
        except ProviderError as exc:
            if exc.retryable:  # a stream that breaks mid-way counts against its circuit
                await self.executor.record_failure(dep.name)
            self._fail(rec, exc, ctx, reservation, usage=usage or state.partial_usage(),
                       attempts=attempts)
            raise
        finally:
            if not finished:  # end the upstream call now, not when the GC finds it
                await _aclose(rest)
            if finished:
                rec.response = state.text()
                state.cost_usd = self._finish(rec, dep, usage, attempts, ctx, reservation)
                answer = state.capture.response() if state.capture is not None else None
                if answer is not None:
                    await self.cache.store(ctx.cache, answer, dep)
            elif rec.error is None:  # the consumer stopped early (client disconnect)
                self._fail(rec, ClientDisconnected("client disconnected mid-stream"), ctx,
                           reservation, usage=usage or state.partial_usage(),
                           attempts=attempts)

    async def _decide(self, request: ChatRequest, ctx: CallContext, rec: UsageRecord
                      ) -> tuple[RouteDecision, object, ChatRequest]:
        """Screen, route and admit one request: (decision, the admission's reservation or
        None, the request to send: ``request``, or its media converted to text). Raises
        PolicyDenied, routing errors, BudgetExceeded / KeyRateLimited, InvalidMedia."""
        plan = await self.media.plan(request) if has_media_parts(request) else None
        if plan is None:
            await self._screen(request, ctx, rec)
            decision, sent = self.route(request, ctx), request
        else:
            decision, sent = await decide_media(self, plan, ctx, rec)
        rec.route_reason = decision.reason
        ctx.cache = await self.cache.lookup(request, sent, decision, ctx)  # docs/cache.md
        rec.cache = ctx.cache.status.value
        if ctx.cache.entry is not None:  # a hit costs nothing and reserves nothing
            return decision, None, sent
        reservation = None
        if ctx.admission is not None:
            reservation = await ctx.admission.admit(decision, _as_sent(sent, ctx))
        return decision, reservation, sent

    async def _screen(self, request: ChatRequest, ctx: CallContext, rec: UsageRecord) -> None:
        """Apply the data policy, when one is set: audit what was found (in ``rec``),
        refuse a blocked request (PolicyDenied) and keep the screening in ``ctx`` for
        routing and the calls (docs/guard.md)."""
        guard = ctx.guard or self.guard
        if guard is None:
            return
        ctx.screening = await guard.screen(request, rec, key_id=ctx.key_id, tags=ctx.tags)
        ctx.screening.enforce()

    def _answer_cached(self, ctx: CallContext, rec: UsageRecord,
                       decision: RouteDecision) -> ChatResponse:
        """Record a cache hit (cost 0; ``saved_usd``: the answer's tokens at the
        deployment's prices) and return the cached answer."""
        assert ctx.cache is not None and ctx.cache.entry is not None
        entry, dep = ctx.cache.entry, decision.deployment
        response = ctx.cache.response()
        rec.deployment, rec.provider = dep.name, dep.provider
        rec.saved_usd = dep.cost_usd(entry.prompt_tokens, entry.completion_tokens)
        if self.config.store.keep_responses:
            rec.response = response.text[:KEPT_TEXT_CHARS]
        rec.latency_ms = (time.perf_counter() - ctx.started) * 1000
        if rec.stream:
            rec.ttft_ms = rec.latency_ms
        self._tell(rec, [], ctx)
        return response

    def _guarded(self, ctx: CallContext, request: ChatRequest
                 ) -> Mapping[str, Provider] | None:
        """The providers as this request uses them (None: as they are): answering its
        ``n`` choices, seen through its screening."""
        base = self.providers if request.choices == 1 else self._with_choices
        guarded = None if ctx.screening is None else ctx.screening.providers(base)
        if guarded is not None:
            return guarded
        return None if base is self.providers else base

    def _record(self, request: ChatRequest, ctx: CallContext) -> UsageRecord:
        return UsageRecord(
            request_id=ctx.request_id,
            created_at=ctx.created_at,
            requested_model=request.model,
            key_id=ctx.key_id,
            prompt=(prompt_text(request, KEPT_TEXT_CHARS) if self.config.store.keep_prompts
                    else None),
            parent_id=ctx.parent_id,
            system=ctx.system,
            step=ctx.step,
            endpoint=ctx.endpoint,
        )

    def _finish(
        self,
        rec: UsageRecord,
        dep: Deployment,
        usage: Usage | None,
        attempts: list[Attempt],
        ctx: CallContext,
        reservation: object,
    ) -> float:
        rec.deployment, rec.provider = dep.name, dep.provider
        if usage is not None:
            rec.prompt_tokens, rec.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        rec.cost_usd = dep.cost_usd(rec.prompt_tokens, rec.completion_tokens)
        rec.attempts = len(attempts)
        rec.latency_ms = (time.perf_counter() - ctx.started) * 1000
        if ctx.admission is not None and reservation is not None:
            ctx.admission.settle(reservation, rec.cost_usd,
                                 rec.prompt_tokens + rec.completion_tokens)
        self._tell(rec, attempts, ctx)
        return rec.cost_usd

    def _fail(
        self,
        rec: UsageRecord,
        exc: ModelmixError,
        ctx: CallContext,
        reservation: object,
        *,
        usage: Usage | None = None,
        attempts: list[Attempt] | None = None,
    ) -> None:
        attempts = attempts if attempts is not None else getattr(exc, "attempts", [])
        if isinstance(exc, ProviderError) and exc.deployment and rec.deployment is None:
            rec.deployment = exc.deployment
        if rec.deployment:
            dep = self.config.deployment(rec.deployment)
            rec.provider = dep.provider
            if usage is not None:
                rec.prompt_tokens = usage.prompt_tokens
                rec.completion_tokens = usage.completion_tokens
            rec.cost_usd = dep.cost_usd(rec.prompt_tokens, rec.completion_tokens)
        rec.status_code = exc.status_code
        rec.error, rec.error_type = exc.message[:1000], type(exc).__name__
        rec.attempts = len(attempts)
        rec.latency_ms = (time.perf_counter() - ctx.started) * 1000
        if ctx.admission is not None and reservation is not None:
            # A call that reached an upstream and was cut off (timeout, reset, the client
            # leaving) may be billed in full though no usage came back: charge the key
            # at least its reservation. An upstream's own error answer is not billed.
            unknown = bool(attempts) and not rec.prompt_tokens and not (
                isinstance(exc, ProviderError) and exc.upstream_status is not None)
            ctx.admission.settle(reservation, rec.cost_usd,
                                 rec.prompt_tokens + rec.completion_tokens, unknown=unknown)
        self._tell(rec, attempts, ctx)

    def _tell(self, rec: UsageRecord, attempts: list[Attempt], ctx: CallContext) -> None:
        """Hand a finished record to the observers, then the sink. A system's own guard
        scrubs its records first (the service's guard is an observer already)."""
        if ctx.guard is not None and ctx.guard is not self.guard:
            ctx.guard.finished(rec, attempts)
        for observer in self.observers:
            observer.finished(rec, attempts)
        self.usage.record(rec)

    def _cancelled(self, rec: UsageRecord, ctx: CallContext, reservation: object,
                   attempts: list[Attempt]) -> None:
        """Record a request cancelled before an answer (499), naming the deployment
        whose call was abandoned."""
        if attempts:
            rec.deployment = attempts[-1].deployment
        self._fail(rec, ClientDisconnected("client disconnected"), ctx, reservation,
                   attempts=attempts)

    def _system_request(self, request: ChatRequest, ctx: CallContext) -> None:
        """Refuse (and record) what a system of models cannot answer: several choices,
        token logprobs (its steps each make their own calls). Raises InvalidRequest."""
        exc = None
        if request.choices > 1:
            exc = InvalidRequest(f"n={request.n}: a system of models answers one choice; "
                                 "send n requests", param="n", code="unsupported_parameter")
        elif request.logprobs:
            exc = InvalidRequest("logprobs: a system of models cannot return token "
                                 "logprobs", param="logprobs", code="unsupported_parameter")
        if exc is not None:
            self.record_rejected(ctx, exc, request.model)
            raise exc

    def record_rejected(self, ctx: CallContext, exc: ModelmixError,
                        model: str | None = None) -> None:
        """Record a request refused before routing (bad JSON, auth, size...)."""
        rec = UsageRecord(request_id=ctx.request_id, created_at=ctx.created_at,
                          requested_model=model, key_id=ctx.key_id,
                          endpoint=ctx.endpoint)
        self._fail(rec, exc, ctx, None)

    async def aclose(self) -> None:
        for provider in self.providers.values():
            await provider.aclose()
        await self.media.aclose()
        await self.cache.aclose()
        self.usage.close()
        if self.shared is not None:
            await self.shared.aclose()


def _as_sent(request: ChatRequest, ctx: CallContext) -> ChatRequest:
    """The request a budget must cover: the pseudonymised one when its placeholders make
    it longer than the original (either may be sent, depending on the deployment)."""
    screening = ctx.screening
    if screening is None or screening.outgoing is request:
        return request
    return max((request, screening.outgoing), key=lambda r: r.prompt_token_bound())


async def _aclose(stream: AsyncIterator[ChatChunk]) -> None:
    """Close an upstream stream (an async generator) if it can be closed."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()
