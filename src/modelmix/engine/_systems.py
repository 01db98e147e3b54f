"""Running a system of models (``model: "system/<name>"``) inside the chat service.

The service hands the request to :class:`~modelmix.systems.SystemRunner` with a
:class:`StepCaller` bound to the request: each model call a step makes is a full
service call of its own (guard with the system's stacked policies, router, the key's
budget, executor, usage row linked to the system request by ``parent_id``). The system
request itself gets one envelope usage row (no deployment, cost 0: the step rows carry
the costs), written when it ends, success or failure (docs/usage.md).
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
import uuid
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from modelmix.engine._contracts import CallContext, Completion, StreamCompletion, SystemInfo
from modelmix.engine._media import media_view
from modelmix.errors import (
    ClientDisconnected,
    ModelmixError,
    NoDeployment,
    PermissionDenied,
    StepFailed,
)
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
)
from modelmix.protocol._chat import new_completion_id, now
from modelmix.routing import LearnedStrategy, RouteDecision
from modelmix.store import UsageRecord
from modelmix.systems import (
    SYSTEM_PREFIX,
    MediaText,
    ModelAnswer,
    ModelStream,
    StepCall,
    System,
    SystemResult,
    SystemRunner,
)

if TYPE_CHECKING:
    from modelmix.engine._media import MediaPlan
    from modelmix.engine._service import ChatService
    from modelmix.guard import Guard, Screening

__all__ = ["StepCaller", "SystemExecution", "is_system", "stack_guard"]


def is_system(model: str) -> bool:
    """Whether ``model`` names a system of models (``system/<name>``)."""
    return model.startswith(SYSTEM_PREFIX)


def stack_guard(policy: str | dict[str, Any], base: Guard | None,
                ner: Literal["none", "presidio"] = "none") -> Guard:
    """The guard for a system's ``policy`` (a ready name, a file or a mapping), stacked
    on the service's guard when there is one (both policies apply, the strictest wins;
    docs/guard.md).

    Raises:
        ConfigError: the policy does not load.
    """
    from modelmix.guard import stack_policy

    guard = stack_policy(base, policy, where="policy", ner=ner)
    assert guard is not None  # a policy was given
    return guard


class StepCaller:
    """The :class:`~modelmix.systems.ModelCaller` of one system request.

    ``screening`` is the system request's own screening (its guard: the system's policy
    stacked on the gateway's): its deployment limits apply to every step's call, and its
    known values are scrubbed out of the verdict and envelope rows' texts. ``request``
    is the system request and ``media_plan`` its media, decoded and read once for the
    screening and reused by ``read`` steps.
    """

    def __init__(self, service: ChatService, ctx: CallContext, system: System,
                 request: ChatRequest):
        self.service, self.ctx, self.system, self.request = service, ctx, system, request
        self.guard: Guard | None = system.guard or service.guard
        self.screening: Screening | None = None
        self.media_plan: MediaPlan | None = None

    def _child(self, call: StepCall) -> CallContext:
        ctx = self.ctx
        timeout = ctx.timeout_s
        if timeout is not None:  # the system's deadline bounds every step's call
            timeout = max(0.001, timeout - (time.perf_counter() - ctx.started))
        # The key was granted the system as a unit (allowed_models=None); the caller's
        # routing hints are not forwarded, so they cannot steer a step elsewhere.
        return CallContext(
            request_id=uuid.uuid4().hex, key_id=ctx.key_id, allowed_models=None,
            tags=ctx.tags, timeout_s=timeout, admission=ctx.admission, hints=call.hints,
            guard=call.guard, parent_id=ctx.request_id, system=call.system, step=call.step,
            rules=self.screening.rules if self.screening is not None else (),
            endpoint=ctx.endpoint)

    async def call(self, request: ChatRequest, call: StepCall) -> ModelAnswer:
        done = await self.service.complete(request, self._child(call))
        return ModelAnswer(done.response, done.decision, done.deployment.name,
                           done.cost_usd, done.latency_ms, request)

    async def stream(self, request: ChatRequest, call: StepCall) -> ModelStream:
        started = await self.service.stream(request, self._child(call))
        return ModelStream(started.decision, started.deployment.name, started.chunks,
                           started.aclose, lambda: started.cost_usd)

    async def screen(self, request: ChatRequest, guard: Guard) -> Screening:
        return await guard.screen(request, key_id=self.ctx.key_id, tags=self.ctx.tags)

    async def read_media(self, request: ChatRequest) -> list[MediaText]:
        # the system request's media were decoded, fetched and read for its screening
        plan = self.media_plan if request is self.request else None
        return await self.service.media.texts(request, plan)

    def router_score(self, prompt: str, target: str | None) -> tuple[float, float] | None:
        strategy = self.service.router.strategy("learned")
        if not isinstance(strategy, LearnedStrategy):
            return None
        return strategy.strong_score(prompt, target)

    def new_record(self, call: StepCall) -> UsageRecord:
        return UsageRecord(request_id=uuid.uuid4().hex, created_at=time.time(),
                           requested_model=self.system.model, key_id=self.ctx.key_id,
                           parent_id=self.ctx.request_id, system=call.system, step=call.step,
                           endpoint=self.ctx.endpoint)

    def record(self, rec: UsageRecord) -> None:
        self.scrub(rec)
        _trim(rec)
        for observer in self.service.observers:
            observer.finished(rec, [])
        self.service.usage.record(rec)

    def scrub(self, rec: UsageRecord) -> None:
        """Replace sensitive values in ``rec``'s reason and error: the request's known
        ones, then whatever the guard detects (verifier reasons and tool errors quote
        answers and inputs, reformatted: ``4111111111111111`` for ``4111 1111 ...``)."""
        if self.screening is None or self.guard is None:
            return
        if rec.route_reason:
            rec.route_reason = self.guard.redact(self.screening.scrub(rec.route_reason))
        if rec.error:
            rec.error = self.guard.redact(self.screening.scrub(rec.error))


class SystemExecution:
    """The service's systems and how it runs them."""

    def __init__(self, service: ChatService, systems: dict[str, System]):
        self.service = service
        self.systems = systems
        self.runner = SystemRunner()

    def model_names(self) -> list[str]:
        """Every system's model name (``system/<name>``)."""
        return [system.model for system in self.systems.values()]

    def get(self, request: ChatRequest, ctx: CallContext) -> System:
        """The system ``request.model`` names. Raises NoDeployment (404) or
        PermissionDenied (403: the key may not use it)."""
        name = request.model[len(SYSTEM_PREFIX):]
        system = self.systems.get(name)
        if system is None:
            known = ", ".join(f"{SYSTEM_PREFIX}{n}" for n in sorted(self.systems)) or "none"
            raise NoDeployment(f"no system named {name[:100]!r} (systems: {known})",
                               param="model")
        if ctx.allowed_models is not None and request.model not in ctx.allowed_models:
            raise PermissionDenied(f"this key may not use {request.model}", param="model")
        return system

    async def _start(self, request: ChatRequest, ctx: CallContext, rec: UsageRecord
                     ) -> StepCaller:
        """Check the system may be called, set the request's deadline and screen the
        request once with the system's guard: a blocked request runs no step, and the
        screening's deployment limits bind every step (what a step derives from the
        input may escape the detector). Raises ModelmixError subclasses."""
        system = self.get(request, ctx)
        rec.system = system.name  # only known names become metric labels
        if request.timeout is not None:
            ctx.timeout_s = min(ctx.timeout_s or request.timeout, request.timeout)
        caller = StepCaller(self.service, ctx, system, request)
        if caller.guard is not None:  # media read first: the guard sees what they say
            view, caller.media_plan = await media_view(self.service, request, rec)
            caller.screening = await caller.guard.screen(view, rec, key_id=ctx.key_id,
                                                         tags=ctx.tags)
            caller.screening.enforce()
        return caller

    async def complete(self, request: ChatRequest, ctx: CallContext) -> Completion:
        rec = self.service._record(request, ctx)
        with _Ending(self, rec, ctx) as ending:
            ending.caller = caller = await self._start(request, ctx, rec)
            result = await self.runner.run(caller.system, request, caller)
            answer = _answer_of(result)
        rec.route_reason = result.reason()
        self._end(rec, ctx, caller)
        response = _response(request, result, answer)
        decision = dataclasses.replace(answer.decision, reason=result.reason())
        return Completion(response, decision, self.service.config.deployment(
            answer.deployment), [], result.cost_usd, rec.latency_ms, _info(result))

    async def stream(self, request: ChatRequest, ctx: CallContext) -> StreamCompletion:
        rec = self.service._record(request, ctx)
        rec.stream = True
        with _Ending(self, rec, ctx) as ending:
            ending.caller = caller = await self._start(request, ctx, rec)
            result = await self.runner.run(caller.system, request, caller, stream=True)
            decision, deployment, chunks, cost = _stream_parts(request, result)
        rec.route_reason = result.reason()
        relay = self._relay(chunks, rec, ctx, caller)

        async def close() -> None:
            await relay.aclose()
            if result.stream is not None:
                await result.stream.close()
            if rec.latency_ms == 0.0:  # never iterated: the client left first
                self._end(rec, ctx, caller, ClientDisconnected(
                    "client disconnected before the stream"))

        decision = dataclasses.replace(decision, reason=result.reason())
        return StreamCompletion(decision, self.service.config.deployment(deployment), relay,
                                close, cost, system=_info(result))

    async def _relay(self, chunks: AsyncIterator[ChatChunk], rec: UsageRecord,
                     ctx: CallContext, caller: StepCaller
                     ) -> AsyncGenerator[ChatChunk, None]:
        failed: ModelmixError | None = None
        try:
            async for chunk in chunks:
                yield chunk
        except ModelmixError as exc:
            failed = exc
            raise
        except (asyncio.CancelledError, GeneratorExit):
            failed = ClientDisconnected("client disconnected mid-stream")
            raise
        finally:
            if rec.latency_ms == 0.0:
                self._end(rec, ctx, caller, failed)

    def _end(self, rec: UsageRecord, ctx: CallContext, caller: StepCaller | None,
             exc: ModelmixError | None = None) -> None:
        """Write the envelope row: the whole request's status and latency, no cost, its
        texts scrubbed of the request's detected values."""
        rec.latency_ms = max((time.perf_counter() - ctx.started) * 1000, 1e-6)
        if exc is not None:
            rec.status_code = exc.status_code
            rec.error, rec.error_type = exc.message, type(exc).__name__
        if caller is not None:
            caller.scrub(rec)
            guard = caller.system.guard
            if guard is not None and guard is not self.service.guard:
                guard.finished(rec, [])  # scrubs the kept prompt (the service's guard
                # is an observer below and does the same for its own screenings)
        _trim(rec)
        for observer in self.service.observers:
            observer.finished(rec, [])
        self.service.usage.record(rec)


@dataclass(slots=True)
class _Ending:
    """Writes the envelope row when a system request fails or is cancelled before it
    answers (the exception goes on)."""

    execution: SystemExecution
    rec: UsageRecord
    ctx: CallContext
    caller: StepCaller | None = None

    def __enter__(self) -> _Ending:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if isinstance(exc, ModelmixError):
            self.execution._end(self.rec, self.ctx, self.caller, exc)
        elif isinstance(exc, asyncio.CancelledError):
            self.execution._end(self.rec, self.ctx, self.caller,
                                ClientDisconnected("client disconnected"))
        elif isinstance(exc, Exception):  # a bug: still recorded (500), then raised
            self.execution._end(self.rec, self.ctx, self.caller, ModelmixError(
                f"internal error in the system: {type(exc).__name__}"))


def _trim(rec: UsageRecord) -> None:
    """Cut a record's reason and error to what the usage table keeps (after redaction:
    a value cut in two is no longer recognisable)."""
    if rec.route_reason:
        rec.route_reason = rec.route_reason[:2000]
    if rec.error:
        rec.error = rec.error[:1000]


def _stream_parts(request: ChatRequest, result: SystemResult) -> tuple[
        RouteDecision, str, AsyncIterator[ChatChunk], Callable[[], float | None]]:
    """What a system's stream relays: the last step's stream, or its finished answer as
    one block; the decision and deployment that produced it; its total cost."""
    if result.stream is not None:
        final = result.stream
        return final.decision, final.deployment, final.chunks, _stream_cost(result, final)
    answer = _answer_of(result)
    return answer.decision, answer.deployment, _chunks(request, result), \
        lambda: result.cost_usd


def _answer_of(result: SystemResult) -> ModelAnswer:
    if result.answer is None:
        raise StepFailed(f"system {result.system} answered without calling a model "
                         "(every path of a system must call one)")
    return result.answer


def _info(result: SystemResult) -> SystemInfo:
    return SystemInfo(result.system, result.steps_header())


def _usage(result: SystemResult) -> Usage:
    return Usage(prompt_tokens=result.prompt_tokens,
                 completion_tokens=result.completion_tokens,
                 total_tokens=result.prompt_tokens + result.completion_tokens)


def _response(request: ChatRequest, result: SystemResult, answer: ModelAnswer
              ) -> ChatResponse:
    upstream = answer.response.choices[0] if answer.response.choices else None
    finish = upstream.finish_reason if upstream is not None else "stop"
    return ChatResponse(
        id=new_completion_id(), created=now(), model=request.model,
        choices=[ChatChoice(message=ResponseMessage(content=result.text),
                            finish_reason=finish or "stop")],
        usage=_usage(result))


async def _chunks(request: ChatRequest, result: SystemResult
                  ) -> AsyncGenerator[ChatChunk, None]:
    """A finished system answer as a stream: role and text, finish, then usage."""
    cid, created = new_completion_id(), now()

    def chunk(delta: Delta, finish: str | None = None) -> ChatChunk:
        return ChatChunk(id=cid, created=created, model=request.model,
                         choices=[ChunkChoice(delta=delta, finish_reason=finish)])

    yield chunk(Delta(role="assistant", content=result.text))
    yield chunk(Delta(), "stop")
    if request.include_usage:
        yield ChatChunk(id=cid, created=created, model=request.model, choices=[],
                        usage=_usage(result))


def _stream_cost(result: SystemResult, final: ModelStream) -> Callable[[], float | None]:
    def cost() -> float | None:
        last = final.cost()
        return None if last is None else result.cost_usd + last
    return cost
