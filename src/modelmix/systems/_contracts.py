"""What a system exchanges with the engine that runs its model calls.

Systems sit below the engine (docs/architecture.md): the engine's ``ChatService``
hands a ``system/<name>`` request to :class:`~modelmix.systems.SystemRunner` and passes
itself, as a :class:`ModelCaller`, for the model calls the steps make. Each such call
goes through the whole service path (guard, router, budget admission, executor,
usage record), so policy, budgets and fallbacks apply inside a system exactly as
outside it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.routing import RouteDecision, RoutingHints
from modelmix.store import UsageRecord

if TYPE_CHECKING:
    from modelmix.guard import Guard, Screening

__all__ = ["MediaText", "ModelAnswer", "ModelCaller", "ModelStream", "StepCall", "StepTrace",
           "SystemResult"]


@dataclass(frozen=True, slots=True)
class StepCall:
    """Who makes a model call: the system and step (for the usage row) and the guard
    its calls are screened with (None: the service's own)."""

    system: str
    step: str
    guard: Guard | None = None
    hints: RoutingHints | None = None


@dataclass(frozen=True, slots=True)
class ModelAnswer:
    """One finished model call made by a step.

    Attributes:
        cost_usd: USD at catalog prices; latency_ms: the call's own time, ms.
        request: what the step sent (verifiers check the answer against it, and a
            repair or a re-sample goes with it, not with the caller's original).
    """

    response: ChatResponse
    decision: RouteDecision
    deployment: str
    cost_usd: float
    latency_ms: float
    request: ChatRequest

    @property
    def text(self) -> str:
        return self.response.text


@dataclass(slots=True)
class ModelStream:
    """A started model call whose chunks the caller relays (a system's last step)."""

    decision: RouteDecision
    deployment: str
    chunks: AsyncIterator[ChatChunk]
    close: Callable[[], Awaitable[None]]
    cost: Callable[[], float | None]


@dataclass(frozen=True, slots=True)
class MediaText:
    """The text read from one media part of a request (docs/multimodal.md).

    Attributes:
        part: the part's path (``messages.0.content.1``).
        kind: ``image``, ``pdf`` or ``audio``.
        methods: how it was read (``ocr``, ``pdf``, ``asr``).
        text: what was read ('' when nothing was).
        delimited: ``text`` wrapped in the ``<media ...>`` block that stands for the part
            in a converted request.
    """

    part: str
    kind: str
    methods: tuple[str, ...]
    text: str
    delimited: str


class ModelCaller(Protocol):
    """Runs the model calls of a system's steps (implemented by the engine)."""

    async def call(self, request: ChatRequest, call: StepCall) -> ModelAnswer:
        """Route and run ``request`` (non-streaming). Raises ModelmixError subclasses."""
        ...

    async def stream(self, request: ChatRequest, call: StepCall) -> ModelStream:
        """Route and start ``request`` as a stream; errors before the first chunk raise."""
        ...

    async def screen(self, request: ChatRequest, guard: Guard) -> Screening:
        """The guard's screening of ``request`` for this caller's key and tags."""
        ...

    async def read_media(self, request: ChatRequest) -> list[MediaText]:
        """Every media part of ``request`` read locally, in order (cached by content).

        Raises:
            InvalidMedia / MediaTooLarge: a bad part (400 / 413, naming it).
            StepFailed: a part could not be read (no reader installed, reading off, an
                image URL not fetched): a system must not go on without its content.
        """
        ...

    def router_score(self, prompt: str, target: str | None) -> tuple[float, float] | None:
        """The learned router's (score, threshold) for ``prompt``: the probability that
        the strong model is needed and the calibrated threshold of ``target`` (the
        default target when None). None when the learned router is unavailable."""
        ...

    def record(self, rec: UsageRecord) -> None:
        """Write a usage row for a step that made no model call (a verdict)."""
        ...

    def new_record(self, call: StepCall) -> UsageRecord:
        """A usage row for ``call``'s step, linked to the system request."""
        ...


@dataclass(frozen=True, slots=True)
class StepTrace:
    """One entry of ``x-modelmix-steps``: a step and the deployment it called (``-``
    for a step that called none)."""

    step: str
    deployment: str = "-"

    def __str__(self) -> str:
        return f"{self.step}:{self.deployment}"


@dataclass(slots=True)
class SystemResult:
    """What a system answered.

    Attributes:
        text: the answer (the output step's ``text``).
        answer: the last model call of the output's chain (its decision and deployment
            say who served), None when no model was called.
        steps: model calls and non-model steps, in execution order.
        notes: per-step notes for the route reason (``verify: escalate (...)``).
        cost_usd: every model call's cost, USD.
        outputs: every step's outputs by step name.
        stream: the last step's stream, when the request streams and the output step is
            a model step (``text`` is then empty).
    """

    system: str
    text: str
    answer: ModelAnswer | None
    steps: list[StepTrace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    cost_usd: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: ModelStream | None = None

    def steps_header(self) -> str:
        """The ``x-modelmix-steps`` value: ``step:deployment`` in execution order."""
        return ",".join(map(str, self.steps))

    def reason(self) -> str:
        """The route reason: what each step decided."""
        return f"system {self.system}: " + "; ".join(self.notes or ["no step ran"])
