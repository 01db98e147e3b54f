"""What the engine exchanges with the layers around it: the per-request context, the
admission (budget) and observer protocols that upper layers implement, and the results of
a call. Kept apart from :mod:`~modelmix.engine._service` so the protocols read on their own."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncGenerator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from modelmix.catalog import Deployment
from modelmix.engine._executor import Attempt
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.routing import RouteDecision, RoutingHints, Rule
from modelmix.store import UsageRecord

if TYPE_CHECKING:
    from modelmix.engine._cache import CacheControl, CacheLookup
    from modelmix.guard import Guard, Screening

__all__ = ["Admission", "CallContext", "Completion", "ServiceObserver", "StreamCompletion",
           "SystemInfo"]


class Admission(Protocol):
    """Budget and rate-limit gate for one key (implemented by the gateway's key store).

    ``admit`` reserves the request's maximum cost before any upstream call and raises
    BudgetExceeded / KeyRateLimited; ``settle`` replaces the reservation by the actual
    cost and tokens once the call ends (success or failure). ``request`` is the request
    as it is sent upstream (after pseudonymisation, when that made it longer).
    """

    async def admit(self, decision: RouteDecision, request: ChatRequest) -> object: ...

    def settle(self, reservation: object, cost_usd: float, tokens: int, *,
               unknown: bool = False) -> None:
        """``unknown``: the call was cut off after it reached an upstream, which may bill
        it in full; charge at least what was reserved."""


class ServiceObserver(Protocol):
    """Hooks for metrics, logs and traces. Called on the request path: keep them cheap
    (microseconds) and never raise from them."""

    def routed(self, request: ChatRequest, ctx: CallContext,
               decision: RouteDecision | None, seconds: float) -> None:
        """Routing took ``seconds``; ``decision`` is None when it raised."""

    def finished(self, rec: UsageRecord, attempts: Sequence[Attempt]) -> None:
        """The request ended (success or failure); ``rec`` goes to the sink next."""


@dataclass(slots=True)
class CallContext:
    """Per-request facts from outside routing: who calls, what they may use, deadline,
    and the caller's routing hints (``extra_body={"router": {...}}`` at the gateway)."""

    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    key_id: str | None = None
    allowed_models: frozenset[str] | None = None
    tags: frozenset[str] = frozenset()
    timeout_s: float | None = None
    admission: Admission | None = None
    hints: RoutingHints | None = None
    #: The data guard's screening of this request (set by the service when a policy is on).
    screening: Screening | None = None
    #: Screen with this guard instead of the service's (a system's stacked policies).
    guard: Guard | None = None
    #: For a model call made by a step of a system of models: the system request's id,
    #: the system and the step (copied to the usage row).
    parent_id: str | None = None
    system: str | None = None
    step: str | None = None
    #: Extra policy-filter rules (a system request's own screening limits every step's
    #: deployments: what a step derives from the input may escape detection).
    rules: tuple[Rule, ...] = ()
    #: How the request's media were turned into text for the deployment that served
    #: (``ocr``, ``pdf``, ``asr``; set by the service, sent as ``x-modelmix-conversions``).
    conversions: tuple[str, ...] = ()
    #: The caller's and its key's cache options (``extra_body={"cache": ...}``,
    #: ``cache-control``; docs/cache.md); None: the catalog's ``cache.mode``.
    cache_control: CacheControl | None = None
    #: What the response cache did (set by the service after routing).
    cache: CacheLookup | None = None
    #: The HTTP API the request came through (``chat``, ``responses``, ``messages``,
    #: ``completions``, ``embeddings``; copied to the usage row); None for library calls.
    endpoint: str | None = None
    started: float = field(default_factory=time.perf_counter)
    created_at: float = field(default_factory=time.time)


@dataclass(frozen=True, slots=True)
class SystemInfo:
    """What a system of models did for a request (the ``x-modelmix-system`` and
    ``x-modelmix-steps`` headers): its name and ``step:deployment`` entries in
    execution order (``step:-`` for a step that called no model)."""

    name: str
    steps: str


@dataclass(slots=True)
class Completion:
    """A finished non-streaming call with what routed and served it. For a system of
    models: ``decision`` and ``deployment`` are those of the call that produced the
    answer, ``cost_usd`` counts every step's calls, and ``system`` is set."""

    response: ChatResponse
    decision: RouteDecision
    deployment: Deployment
    attempts: list[Attempt]
    cost_usd: float
    latency_ms: float
    system: SystemInfo | None = None
    #: how the request's media were converted to text (``ocr``, ``pdf``, ``asr``)
    conversions: tuple[str, ...] = ()
    #: the response cache: ``hit`` (``cost_usd`` 0; ``saved_usd`` what it cost when
    #: first answered, at catalog prices), ``miss`` or ``bypass`` (docs/cache.md)
    cache: str = "bypass"
    saved_usd: float = 0.0


@dataclass(slots=True)
class StreamCompletion:
    """A started stream: ``chunks`` yields OpenAI chunks and records usage at its end.

    Call :meth:`aclose` when done with it, even if ``chunks`` was never iterated (the
    client left early): it closes the upstream stream and records the request.
    """

    decision: RouteDecision
    deployment: Deployment
    chunks: AsyncGenerator[ChatChunk, None]
    _close: Callable[[], Awaitable[None]]
    _cost: Callable[[], float | None] = lambda: None
    #: upstream calls made before the first chunk (failed ones first, then the one
    #: streaming)
    attempts: list[Attempt] = field(default_factory=list)
    #: set for a system of models (its steps so far: the streamed step is the last)
    system: SystemInfo | None = None
    #: how the request's media were converted to text (``ocr``, ``pdf``, ``asr``)
    conversions: tuple[str, ...] = ()
    #: the response cache: ``hit`` (replayed, cost 0), ``miss`` or ``bypass``
    cache: str = "bypass"

    @property
    def cost_usd(self) -> float | None:
        """The stream's cost at catalog prices, USD, once it has finished (None before,
        and for a stream cut short)."""
        return self._cost()

    async def aclose(self) -> None:
        await self._close()
