"""Steps that call models: ``model`` (one routed call) and ``cascade`` (cheapest tier
first, verify, escalate only when verification fails)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelmix.errors import (
    ConfigError,
    InvalidRequest,
    ModelmixError,
    NoDeployment,
    PolicyDenied,
)
from modelmix.protocol import ChatMessage, ChatRequest
from modelmix.protocol._request import ResponseFormat
from modelmix.routing import RoutingHints, parse_hints
from modelmix.routing.cascade import JsonSchemaVerifier
from modelmix.systems._base import (
    BuildContext,
    SpecError,
    Step,
    StepOptions,
    StepRun,
    compile_template,
    messages_from,
    template_names,
)
from modelmix.systems._contracts import ModelAnswer, ModelStream, StepCall, StepTrace
from modelmix.systems._verifiers import VerifierSpec, build_verifier

__all__ = ["CascadeStep", "MessageTemplate", "ModelStep", "ResponseFormats"]

#: A ``response_format`` entry: ``caller``, ``caller_schema``, ``text`` or a format.
FormatEntry = str | dict[str, Any]
_KEYWORDS = ("caller", "caller_schema", "text")


class MessageTemplate(BaseModel):
    """One message a step sends: ``content`` is a template over step outputs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "developer", "user", "assistant"]
    content: str


class _CallOptions(StepOptions):
    #: the step whose ``messages`` output (a transform step's) is sent
    input: str | None = None
    messages: tuple[MessageTemplate, ...] | None = None
    #: a system message (template) put before the messages sent
    system: str | None = None
    router: dict[str, Any] | None = None
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    #: what the call asks for (``caller``: the caller's format, as sent); see
    #: :class:`ResponseFormats`
    response_format: FormatEntry | tuple[FormatEntry, ...] = "caller"


class ResponseFormats:
    """A step's ``response_format``: what its call asks the model for.

    - ``caller`` (the default): the caller's ``response_format``, as it was sent;
    - ``text``: plain text, whatever the caller asked (a summary after a JSON step);
    - a format (``{type: json_schema, json_schema: {name: ..., schema: {...}}}``),
      checked at load (a JSON Schema must be one);
    - ``caller_schema``: the caller's format when it carries a JSON Schema
      (``json_schema`` with a ``schema``), nothing otherwise;
    - a list: the first entry that gives a format, e.g. ``[caller_schema, {type:
      json_schema, ...}]``: the caller's own schema, else the step's.
    """

    def __init__(self, spec: FormatEntry | tuple[FormatEntry, ...]):
        self.entries = spec if isinstance(spec, tuple) else (spec,)
        if not self.entries:
            raise SpecError("response_format", "name at least one format")
        for i, entry in enumerate(self.entries):
            where = "response_format" if len(self.entries) == 1 else f"response_format.{i}"
            if isinstance(entry, str):
                if entry not in _KEYWORDS:
                    raise SpecError(where, f"{entry!r}: use {', '.join(_KEYWORDS)} or a "
                                    "response format")
                continue
            try:
                ResponseFormat.model_validate(entry)
                _check_schema(entry)
            except (ValidationError, ConfigError) as exc:
                raise SpecError(where, _why(exc)) from exc
        #: the caller's format goes as it is (nothing to set on the step's call)
        self.as_sent = self.entries == ("caller",)

    def resolve(self, request: ChatRequest) -> dict[str, Any] | None:
        """The format the step's call sends for the caller's ``request`` (None: none).
        Raises InvalidRequest when the caller's JSON Schema is no valid schema."""
        for entry in self.entries:
            if entry == "text":
                return None
            if entry == "caller":
                if request.response_format is not None:
                    return request.response_format
            elif entry == "caller_schema":
                fmt = request.response_format or {}
                if _schema_of(fmt) is not None:
                    try:
                        _check_schema(fmt)
                    except ConfigError as exc:
                        raise InvalidRequest(_why(exc), param="response_format") from exc
                    return fmt
            else:
                assert isinstance(entry, dict)
                return entry
        return None


def _schema_of(fmt: dict[str, Any]) -> Any:
    """The JSON Schema a response format carries (None: it carries none)."""
    return (fmt.get("json_schema") or {}).get("schema") if fmt.get(
        "type") == "json_schema" else None


def _check_schema(fmt: dict[str, Any]) -> None:
    """Raise ConfigError when ``fmt`` carries a JSON Schema that is no valid schema."""
    schema = _schema_of(fmt)
    if schema is not None:
        JsonSchemaVerifier(schema)


def _why(exc: ValidationError | ConfigError) -> str:
    if isinstance(exc, ConfigError):
        return exc.message.replace("verifier 'json-schema': option 'schema'",
                                   "the JSON Schema")
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"])
    return f"{where}: {err['msg']}" if where else str(err["msg"])


class _Caller:
    """Shared by model-calling kinds: the messages, hints and limits of the call."""

    def _prepare(self, options: _CallOptions, build: BuildContext) -> None:
        if options.input is not None and options.messages is not None:
            raise SpecError("input", "give input or messages, not both")
        if options.input is not None and options.input not in build.steps:
            raise SpecError("input", f"unknown step {options.input!r}")
        self._input = options.input
        #: the transform step whose messages are sent, if any (checked by the loader)
        self.input_step = options.input
        self._system = (None if options.system is None
                        else compile_template(options.system, "system"))
        self._templates = None if options.messages is None else [
            (m.role, compile_template(m.content, f"messages.{i}.content"))
            for i, m in enumerate(options.messages)]
        try:
            self._hints: RoutingHints | None = parse_hints(options.router)
        except InvalidRequest as exc:
            raise SpecError("router", exc.message) from exc
        self._limits = {k: v for k, v in (("max_tokens", options.max_tokens),
                                          ("temperature", options.temperature))
                        if v is not None}
        self._format = ResponseFormats(options.response_format)

    def _template_refs(self) -> frozenset[str]:
        templates = [t for _, t in self._templates or ()]
        if self._system is not None:
            templates.append(self._system)
        found = template_names(templates)
        return found | {self._input} if self._input else found

    def _messages(self, run: StepRun) -> list[ChatMessage]:
        if self._input is None:
            messages = messages_from(run, self._templates)
        else:
            given = (run.names.get(self._input) or {}).get("messages") or []
            if not given:
                raise run.failure(f"input step {self._input} produced no messages")
            messages = [ChatMessage.model_validate(m) for m in given]
        if self._system is not None:
            messages.insert(0, ChatMessage(role="system", content=run.render(self._system)))
        return messages

    def _request(self, run: StepRun, model: str, *, stream: bool = False) -> ChatRequest:
        update: dict[str, Any] = {"model": model, "messages": self._messages(run),
                                  "stream": stream, **self._limits}
        cap = run.request.completion_limit
        if cap is not None and "max_tokens" in update:  # the caller's limit caps every step
            update["max_tokens"] = min(update["max_tokens"], cap)
        if not stream:
            update["stream_options"] = None
        if not self._format.as_sent:
            try:
                update["response_format"] = self._format.resolve(run.request)
            except InvalidRequest as exc:
                raise run.prefixed(exc) from None
        return run.request.model_copy(update=update)

    def _call(self, run: StepRun) -> StepCall:
        return StepCall(run.system, run.step, run.guard, self._hints)


def _unavailable(exc: ModelmixError) -> bool:
    """Whether a call failed because nothing may serve it here (no key, policy), so a
    system may go on with what it has instead."""
    return isinstance(exc, NoDeployment | PolicyDenied)


class ModelStep(_Caller, Step):
    """A chat call, pinned to a deployment or group, or routed (``auto``).

    ``model`` may list several names: the first one that can serve is used, and the
    route reason says which were passed over and why (no API key, the data policy...).
    Outputs: ``text``, ``deployment``, ``cost_usd``, ``reason``, ``score``,
    ``prompt_tokens``, ``completion_tokens``, ``passed_over``.
    """

    kind = "model"
    streams: ClassVar[bool] = True

    class Options(_CallOptions):
        model: str | tuple[str, ...] = "auto"

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, ModelStep.Options)
        names = (options.model,) if isinstance(options.model, str) else options.model
        if not names:
            raise SpecError("model", "name at least one deployment or group")
        self.models = tuple(build.model_name(n, "model") for n in names)
        self._prepare(options, build)

    def references(self) -> frozenset[str]:
        return self._template_refs()

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        passed: list[str] = []
        for i, model in enumerate(self.models):
            try:
                answer = await run.complete(self._request(run, model), self._call(run))
            except ModelmixError as exc:
                if i + 1 == len(self.models) or not _unavailable(exc):
                    raise
                passed.append(f"{model} ({_short(exc)})")
                continue
            run.notes.append(f"{run.step}: {answer.deployment}" + (
                f" (would have used {'; '.join(passed)})" if passed else ""))
            return _outputs(answer, passed)
        raise AssertionError("unreachable: the last model raises or returns")

    async def start_stream(self, run: StepRun) -> ModelStream:
        passed: list[str] = []
        for i, model in enumerate(self.models):
            try:
                started = await run.caller.stream(self._request(run, model, stream=True),
                                                  self._call(run))
            except ModelmixError as exc:
                if i + 1 == len(self.models) or not _unavailable(exc):
                    raise run.prefixed(exc) from None
                passed.append(f"{model} ({_short(exc)})")
                continue
            if passed:
                run.notes.append(f"{run.step}: would have used {'; '.join(passed)}")
            run.trace.append(StepTrace(run.step, started.deployment))
            return started
        raise AssertionError("unreachable: the last model raises or returns")


_PREFIX = re.compile(r"^system [^,]+, step [^:]+: ")


def _short(exc: ModelmixError) -> str:
    """Why a model could not serve, in a few words: the message's first clause without
    the system / step prefix and the per-deployment details (``no deployment for
    'proprietary' can serve requests in this configuration: no API key set``)."""
    message = _PREFIX.sub("", exc.message.split("\n", 1)[0])
    head = message.split(" (", 1)[0]
    if "_API_KEY is not set" in message or "KEY is not set" in message:
        head += ": no API key set"
    return head[:160]


def _outputs(answer: ModelAnswer, passed: list[str] | None = None) -> dict[str, Any]:
    usage = answer.response.usage
    return {
        "text": answer.text,
        "deployment": answer.deployment,
        "cost_usd": answer.cost_usd,
        "reason": answer.decision.reason,
        "score": answer.decision.score,
        "prompt_tokens": usage.prompt_tokens if usage else 0,
        "completion_tokens": usage.completion_tokens if usage else 0,
        "passed_over": list(passed or ()),
    }


class CascadeStep(_Caller, Step):
    """A verified cascade: call ``tiers[0]``, verify its answer, escalate to the next
    tier only when verification fails; every tier's call is counted (its own usage row).

    When a tier cannot serve here (no API key, the data policy), the cascade keeps the
    last answer and its note says it would have escalated, and why not. Outputs: those
    of ``model`` plus ``tier`` (0-based index of the accepted tier), ``escalated``,
    ``would_escalate`` (the tier it could not reach, or None), ``ok`` / ``verdicts``.
    """

    kind = "cascade"

    class Options(_CallOptions):
        tiers: tuple[str, ...] = Field(min_length=2)
        verifier: VerifierSpec

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, CascadeStep.Options)
        self.tiers = tuple(build.model_name(t, f"tiers.{i}") for i, t in
                           enumerate(options.tiers))
        self.verifier = build_verifier(options.verifier, build, "verifier")
        self._prepare(options, build)

    def references(self) -> frozenset[str]:
        return self._template_refs() | self.verifier.references()

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        answer: ModelAnswer | None = None
        verdicts: list[dict[str, Any]] = []
        would: str | None = None
        for i, tier in enumerate(self.tiers):
            try:
                current = await run.complete(self._request(run, tier), self._call(run))
            except ModelmixError as exc:
                if answer is None or not _unavailable(exc):
                    raise
                would = tier
                run.notes.append(f"{run.step}: could not escalate to {tier} ({_short(exc)}): "
                                 f"answered by tier {i - 1}, UNVERIFIED")
                break
            answer = current
            started = time.perf_counter()
            check = await self.verifier.check(run, current.request, current.text)
            verdicts.append({"tier": i, "deployment": current.deployment, "ok": check.ok,
                             "score": check.score, "reason": check.reason})
            run.verdict(check, current.deployment, started)
            if check.ok:
                run.notes.append(f"{run.step}: tier {i} ({current.deployment}) passed: "
                                 f"{check.reason}")
                break
            last = i + 1 == len(self.tiers)
            run.notes.append(f"{run.step}: tier {i} ({current.deployment}) failed "
                             f"verification ({check.reason})"
                             + ("; last tier, answer UNVERIFIED" if last else ""))
            if last:
                break
        assert answer is not None
        accepted = len(verdicts) - 1
        return {**_outputs(answer), "tier": accepted, "escalated": accepted > 0,
                "would_escalate": would, "ok": verdicts[-1]["ok"], "verdicts": verdicts}
