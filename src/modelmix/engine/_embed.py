"""The embeddings pipeline: ``POST /v1/embeddings`` and ``AsyncClient.embeddings``.

The same stages as a chat request, over the same collaborators of the
:class:`~modelmix.engine._service.ChatService` that owns it:

- **guard**: every input is screened as one user message of a chat-shaped view of the
  request (plus ``user``); a blocked verdict is a 403, and a guard that cannot run blocks
  (fail closed). A verdict that limits deployments (keep regulated data on local or
  self-hosted ones) becomes a router rule, exactly as for chat. A verdict that
  pseudonymises sends placeholders to the deployments that may not see raw values:
  vectors need no restoring, but a name embedded as ``<PERSON_1>`` is not findable by
  name (docs/endpoints.md, "Embeddings").
- **route**: ``mode="embedding"``: only embedding deployments serve; ``auto``, ``open``
  and ``proprietary`` are refused (vectors of different models are not comparable); a
  deployment's configured fallbacks (embedding deployments only) apply. The context
  filter reads the longest input.
- **admit**: the key's budget and rate limits reserve the inputs' upper-bound cost.
- **execute**: the executor's deadline, retries, fallback, circuit breakers and the
  deployment's rpm / tpm / concurrency.
- **record**: one usage row per request (``endpoint`` ``embeddings``): prompt tokens,
  cost at the input price, deployment, status, error.

Responses are never cached.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelmix.catalog import Deployment
from modelmix.engine._contracts import CallContext
from modelmix.engine._executor import Attempt
from modelmix.errors import ModelmixError
from modelmix.protocol import (
    ChatMessage,
    ChatRequest,
    EmbeddingRequest,
    EmbeddingResponse,
    RequestNeeds,
    Usage,
    embedding_response,
    estimate_tokens,
)
from modelmix.providers import EmbeddingResult
from modelmix.routing import RouteDecision
from modelmix.store import UsageRecord

if TYPE_CHECKING:
    from modelmix.engine._service import ChatService

__all__ = ["EmbeddingService", "Embeddings"]


@dataclass(slots=True)
class Embeddings:
    """A finished embedding request.

    Attributes:
        response: the OpenAI-format answer (vectors in the inputs' order).
        decision: the routing decision; ``deployment`` the one that served.
        cost_usd: prompt tokens at the deployment's input price (USD).
        latency_ms: the whole request, routing and guard included.
    """

    response: EmbeddingResponse
    decision: RouteDecision
    deployment: Deployment
    attempts: list[Attempt]
    cost_usd: float
    latency_ms: float


@dataclass(slots=True)
class _Call:
    """One request's state while it runs (what a failure must settle and record)."""

    request: EmbeddingRequest
    view: ChatRequest
    ctx: CallContext
    rec: UsageRecord
    reservation: object = None


def chat_view(request: EmbeddingRequest) -> ChatRequest:
    """The request as the guard, budgets and records see it: one user message per input,
    and ``user``."""
    messages = [ChatMessage(role="user", content=text) for text in request.input]
    return ChatRequest(model=request.model, messages=messages, user=request.user)


class EmbeddingService:
    """Runs embedding requests with ``service``'s guard, router, executor and usage sink.

    Example::

        done = await service.embed(EmbeddingRequest(model="local-embed", input=["hi"]))
        done.response.data[0].embedding    # 384 floats
    """

    def __init__(self, service: ChatService):
        self._service = service

    async def embed(self, request: EmbeddingRequest, ctx: CallContext | None = None
                    ) -> Embeddings:
        """Screen, route, admit, run and record ``request``.

        Raises:
            PolicyDenied: the data policy blocks it, or no deployment it allows is left.
            InvalidRequest: the model is a chat model or a built-in group, or an input
                is longer than every candidate's context window.
            NoDeployment, PermissionDenied, BudgetExceeded, KeyRateLimited,
            ProviderError: as for chat completions.
        """
        ctx = ctx or CallContext()
        svc = self._service
        view = chat_view(request)
        call = _Call(request, view, ctx, svc._record(view, ctx))
        log: list[Attempt] = []
        try:
            decision = await self._decide(call)
            result, dep, attempts = await svc.executor.embed(
                decision, self._caller(call), timeout_s=ctx.timeout_s, attempts=log,
                tokens=view.needs().prompt_tokens_estimate)
        except ModelmixError as exc:
            svc._fail(call.rec, exc, ctx, call.reservation)
            raise
        except asyncio.CancelledError:
            svc._cancelled(call.rec, ctx, call.reservation, log)
            raise
        usage = Usage(prompt_tokens=result.prompt_tokens, completion_tokens=0,
                      total_tokens=result.prompt_tokens)
        cost = svc._finish(call.rec, dep, usage, attempts, ctx, call.reservation)
        response = embedding_response(result.vectors, dep.model, result.prompt_tokens,
                                      request.encoding_format)
        return Embeddings(response, decision, dep, attempts, cost, call.rec.latency_ms)

    async def _decide(self, call: _Call) -> RouteDecision:
        """Screen (403 when blocked), route among embedding deployments, admit."""
        svc, ctx = self._service, call.ctx
        guard = ctx.guard or svc.guard
        if guard is not None:
            ctx.screening = await guard.screen(call.view, call.rec, key_id=ctx.key_id,
                                               tags=ctx.tags)
            ctx.screening.enforce()
        decision = self._route(call)
        call.rec.route_reason = decision.reason
        if ctx.admission is not None:
            call.reservation = await ctx.admission.admit(decision, self._bound_view(call))
        return decision

    def _route(self, call: _Call) -> RouteDecision:
        svc, ctx, screening = self._service, call.ctx, call.ctx.screening
        longest = max(len(text) for text in call.request.input)
        needs = RequestNeeds(prompt_tokens_estimate=estimate_tokens(longest))
        started = time.perf_counter()
        decision: RouteDecision | None = None
        try:
            decision = svc.router.route(
                call.request.model, needs, allowed_models=ctx.allowed_models, tags=ctx.tags,
                extra_rules=(*(screening.rules if screening is not None else ()),
                             *ctx.rules),
                mode="embedding")
            if screening is not None and screening.verdict.constrained:
                v = screening.verdict  # say which data rule limited the choice, as chat does
                decision = dataclasses.replace(decision, reason=(
                    f"{decision.reason}; data policy {v.policy}: {v.data_class.value} "
                    f"({v.rule})"))
            return decision
        finally:
            seen = screening.redacted if screening is not None else call.view
            for observer in svc.observers:
                observer.routed(seen, ctx, decision, time.perf_counter() - started)

    @staticmethod
    def _bound_view(call: _Call) -> ChatRequest:
        """What a budget must cover: the pseudonymised inputs when placeholders made
        them longer than the originals."""
        screening = call.ctx.screening
        if screening is None or screening.outgoing is call.view:
            return call.view
        return max((call.view, screening.outgoing), key=lambda r: r.prompt_token_bound())

    def _caller(self, call: _Call) -> Callable[[Deployment], Awaitable[EmbeddingResult]]:
        """One call to a deployment, with the inputs as the screening lets it see them
        (raw, or with placeholders) and raw values scrubbed out of its errors."""
        providers, screening = self._service.providers, call.ctx.screening

        async def run(dep: Deployment) -> EmbeddingResult:
            provider = providers[dep.name]
            if screening is None:
                return await provider.embed(call.request.input, call.request)
            sent, pseudo = screening.request_for(dep)  # PolicyDenied: the last line
            request = call.request
            if pseudo:
                request = request.model_copy(update={"user": sent.user})
            with screening.scrubbing():
                return await provider.embed([m.text() for m in sent.messages], request)

        return run
