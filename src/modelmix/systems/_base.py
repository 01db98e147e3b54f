"""The step interface and its registry.

Every step kind is a :class:`Step` subclass with one method, :meth:`Step.run`, and an
``Options`` model for its own fields; subclasses register themselves in
:data:`STEP_KINDS` by their ``kind`` (no if/elif on kind strings anywhere). Fields every
kind shares (``kind``, ``when``, ``after``, ``description``) are read by the loader.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict

from modelmix.catalog import Config
from modelmix.errors import ModelmixError, StepFailed
from modelmix.protocol import ChatMessage, ChatRequest
from modelmix.routing import prompt_text
from modelmix.routing.cascade import Check
from modelmix.systems._contracts import ModelAnswer, ModelCaller, StepCall, StepTrace
from modelmix.systems._expr import Condition, ExpressionError, Template, references

if TYPE_CHECKING:
    from modelmix.guard import Guard

__all__ = ["STEP_KINDS", "BuildContext", "SpecError", "Step", "StepOptions", "StepRun",
           "conversation"]


class SpecError(ValueError):
    """A step's field is wrong; ``field`` names it (the loader adds file, system, step)."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


class StepOptions(BaseModel):
    """Base of every kind's ``Options``: unknown fields are refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What building a step may consult: the catalog (deployment and group names), the
    system's guard, and the step names known so far."""

    config: Config
    system: str
    guard: Guard | None
    steps: frozenset[str]
    #: builds the guard for a policy reference (a ready name, a file, a mapping), stacked
    #: on the system's; raises ConfigError
    guard_factory: Callable[[str | dict[str, Any]], Guard] | None = None

    def make_guard(self, policy: str | dict[str, Any], field_name: str) -> Guard:
        """The guard enforcing ``policy`` on top of the system's. Raises SpecError."""
        if self.guard_factory is None:
            raise SpecError(field_name, "policies cannot be set here")
        try:
            return self.guard_factory(policy)
        except ModelmixError as exc:
            raise SpecError(field_name, exc.message) from exc

    def model_name(self, name: str, field_name: str) -> str:
        """``name`` if the catalog knows it as a deployment or group, else SpecError."""
        if name.startswith("system/"):
            raise SpecError(field_name, f"{name!r}: a step cannot call a system (systems "
                            "do not nest); name a deployment or group")
        if name not in self.config.model_names():
            raise SpecError(field_name, f"unknown deployment or group {name!r}")
        return name


#: Step kinds by name, filled by :class:`Step` subclasses as they are defined.
STEP_KINDS: dict[str, type[Step]] = {}


@dataclass(slots=True)
class StepRun:
    """One step's view of one request: the names its expressions read, the caller for
    model calls, and the trace it adds to."""

    system: str
    step: str
    request: ChatRequest
    caller: ModelCaller
    names: dict[str, Any]
    guard: Guard | None
    trace: list[StepTrace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: list[ModelAnswer] = field(default_factory=list)
    #: every step's model calls so far, by step name
    answers: Mapping[str, list[ModelAnswer]] = field(default_factory=dict)

    @property
    def call(self) -> StepCall:
        return StepCall(self.system, self.step, self.guard)

    def render(self, template: Template) -> str:
        try:
            return template.render(self.names)
        except Exception as exc:  # a sandbox refusal or a type error on this request
            raise self.failure(f"template {template.source!r}: {exc}") from exc

    def prefixed(self, exc: ModelmixError) -> ModelmixError:
        """``exc`` with ``system <name>, step <step>:`` before its message (once)."""
        prefix = f"system {self.system}, step {self.step}: "
        if not exc.message.startswith(prefix):
            exc.message = prefix + exc.message
            exc.args = (exc.message,)
        return exc

    def asked(self, step: str) -> ChatRequest:
        """What ``step``'s last model call sent (the caller's request when it made none:
        a transform, a tool)."""
        calls = self.answers.get(step)
        return calls[-1].request if calls else self.request

    def failure(self, why: str) -> StepFailed:
        return StepFailed(f"system {self.system}, step {self.step}: {why}")

    async def complete(self, request: ChatRequest, call: StepCall | None = None
                       ) -> ModelAnswer:
        """Run one model call through the service and trace it."""
        try:
            answer = await self.caller.call(request, call or self.call)
        except ModelmixError as exc:
            raise self.prefixed(exc) from None
        self.calls.append(answer)
        self.trace.append(StepTrace(self.step, answer.deployment))
        return answer

    def verdict(self, check: Check, verified: str | None, started: float) -> None:
        """Write the step's verdict row (``accept`` / ``escalate``) to the usage table;
        ``started``: when verification began (``time.perf_counter()``)."""
        rec = self.caller.new_record(self.call)
        rec.latency_ms = elapsed_ms(started)
        rec.verdict = "accept" if check.ok else "escalate"
        # whole: the caller redacts it, then cuts it (a value cut in two is not found)
        rec.route_reason = (f"verified {verified}: " if verified else "") + check.reason
        self.caller.record(rec)

    def prompt(self) -> str:
        """The request's last user message (what routers and classifiers read)."""
        return prompt_text(self.request)


def conversation(request: ChatRequest) -> str:
    """Every message's text, in order (what verifiers check an answer against: the
    question, and tool results and earlier turns where there are any)."""
    return "\n".join(m.text() for m in request.messages if m.content)


class Step(ABC):
    """One node of a system's DAG.

    Subclasses set ``kind`` and ``Options``, and implement :meth:`run`, returning the
    step's outputs (a mapping later steps read by name, e.g. ``{"text": ...}``).
    ``references`` are the step names the options read, beyond ``when`` and ``after``.
    """

    kind: ClassVar[str]
    Options: ClassVar[type[StepOptions]] = StepOptions
    #: Whether the step may be a system's streamed last step.
    streams: ClassVar[bool] = False

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        self.name = name
        self.options = options

    def __init_subclass__(cls, **kwargs: Any):
        super().__init_subclass__(**kwargs)
        if "kind" in cls.__dict__:
            STEP_KINDS[cls.kind] = cls

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"

    def references(self) -> frozenset[str]:
        """Step names this step reads through its options (templates, ``answer``...)."""
        return frozenset()

    @abstractmethod
    async def run(self, run: StepRun) -> Mapping[str, Any]:
        """Run the step for one request; returns its outputs."""

    async def start_stream(self, run: StepRun) -> Any:
        """Start this step as the system's streamed answer (``streams`` kinds only)."""
        raise NotImplementedError


def compile_condition(source: str, field_name: str) -> Condition:
    try:
        return Condition(source)
    except ExpressionError as exc:
        raise SpecError(field_name, str(exc)) from exc


def compile_template(source: str, field_name: str) -> Template:
    try:
        return Template(source)
    except ExpressionError as exc:
        raise SpecError(field_name, str(exc)) from exc


def template_names(templates: Iterable[Template]) -> frozenset[str]:
    """Top-level names the templates read."""
    names: set[str] = set()
    for t in templates:
        names |= references(t.source, template=True)
    return frozenset(names)


def messages_from(run: StepRun, templates: Sequence[tuple[str, Template]] | None
                  ) -> list[ChatMessage]:
    """The messages a step sends: its templates rendered, or the request's own."""
    if templates is None:
        return list(run.request.messages)
    return [ChatMessage(role=role, content=run.render(t))  # type: ignore[arg-type]
            for role, t in templates]


def elapsed_ms(started: float) -> float:
    return (time.perf_counter() - started) * 1000
