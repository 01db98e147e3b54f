"""Verifiers as systems use them: the offline ones of :mod:`modelmix.routing.cascade`
(``arithmetic``, ``json-schema``, ``learned``) and three that call models or read step
outputs (``judge``, ``self-consistency``, ``rules``), behind one interface,
:class:`AnswerVerifier`, with a registry (:data:`LIVE_VERIFIERS`)."""

from __future__ import annotations

import asyncio
import re
from abc import ABC, abstractmethod
from collections import Counter
from collections.abc import Coroutine, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelmix.errors import ConfigError, InvalidRequest
from modelmix.protocol import ChatMessage, ChatRequest
from modelmix.routing.cascade import (
    Check,
    JsonSchemaVerifier,
    Verifier,
    find_final,
    repair_prompt,
    verifier_from_spec,
)
from modelmix.systems._base import (
    BuildContext,
    SpecError,
    StepRun,
    compile_condition,
    conversation,
)
from modelmix.systems._expr import references

if TYPE_CHECKING:
    from modelmix.systems._expr import Condition

__all__ = ["LIVE_VERIFIERS", "AnswerVerifier", "AskedSchemaVerifier", "VerifierSpec",
           "asked_schema", "build_verifier"]

_T = TypeVar("_T")


class VerifierSpec(BaseModel):
    """``verifier: arithmetic`` or ``verifier: {name: json-schema, schema: {...}}``: a
    verifier's name and its options."""

    model_config = ConfigDict(extra="allow", frozen=True)

    name: str = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, data: Any) -> Any:
        return {"name": data} if isinstance(data, str) else data

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class AnswerVerifier(ABC):
    """Decides accept / escalate for one answer of a model step."""

    name: ClassVar[str]

    @abstractmethod
    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        """Verify ``answer`` (a text) to ``asked`` (what the answering call sent); never
        raises for a bad answer."""

    def references(self) -> frozenset[str]:
        """Step names the verifier reads (beyond the answer)."""
        return frozenset()

    def repair_prompt(self, asked: ChatRequest, answer: str, check: Check) -> str:
        """What to send back for one repair attempt after ``check`` of ``answer`` to
        ``asked`` failed."""
        return repair_prompt(answer, check)


class _Offline(AnswerVerifier):
    """An offline verifier (a pure function of prompt and answer, microseconds to a
    millisecond: run on the loop)."""

    def __init__(self, verifier: Verifier):
        self.verifier = verifier
        self.name = verifier.name  # type: ignore[misc]

    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        return self.verifier.check(conversation(asked), answer)

    def repair_prompt(self, asked: ChatRequest, answer: str, check: Check) -> str:
        own = getattr(self.verifier, "repair_prompt", None)  # json-schema: with its schema
        return str(own(answer, check)) if callable(own) else repair_prompt(answer, check)


def asked_schema(request: ChatRequest) -> Mapping[str, Any] | None:
    """The JSON Schema ``request`` asks the model to follow: its ``response_format``'s
    ``json_schema.schema``; ``{"type": "object"}`` for ``json_object``; None when it asks
    for no JSON."""
    fmt = request.response_format or {}
    if fmt.get("type") == "json_schema":
        schema = (fmt.get("json_schema") or {}).get("schema")
        return schema if isinstance(schema, Mapping) else None
    if fmt.get("type") == "json_object":
        return {"type": "object"}
    return None


class AskedSchemaVerifier(AnswerVerifier):
    """``json-schema`` with ``schema: asked``: the answer must hold JSON valid against the
    JSON Schema its call asked for (:func:`asked_schema` of the answering call's
    request): the schema a step's ``response_format`` set, or the caller's own when the
    step passed it on. A call that asked for no JSON fails the check. Other options
    (``strict``, ``check_formats``) are the json-schema verifier's."""

    name = "json-schema"
    #: schemas kept validated, per verifier (a caller's schema is checked once)
    CACHED = 32

    def __init__(self, options: Mapping[str, Any]):
        self.options = {k: v for k, v in options.items() if k != "schema"}
        JsonSchemaVerifier.from_options({**self.options, "schema": {}})  # options check
        self._built: dict[str, JsonSchemaVerifier] = {}

    def _verifier(self, schema: Mapping[str, Any]) -> JsonSchemaVerifier:
        """The validator of ``schema``. Raises InvalidRequest when it is no schema (the
        caller's: a step's own is checked at load)."""
        key = orjson.dumps(schema, option=orjson.OPT_SORT_KEYS).decode()
        found = self._built.get(key)
        if found is None:
            try:
                found = JsonSchemaVerifier.from_options({**self.options, "schema": schema})
            except ConfigError as exc:
                raise InvalidRequest(exc.message.replace(
                    "verifier 'json-schema': option 'schema'", "the JSON Schema"),
                    param="response_format") from exc
            if len(self._built) >= self.CACHED:
                self._built.clear()
            self._built[key] = found
        return found

    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        schema = asked_schema(asked)
        if schema is None:
            return Check(False, 1.0, "the answer's call asked for no JSON (no "
                         "response_format json_schema)")
        return self._verifier(schema).check("", answer)

    def repair_prompt(self, asked: ChatRequest, answer: str, check: Check) -> str:
        return repair_prompt(answer, check, schema=asked_schema(asked))


class _Options(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class JudgeVerifier(AnswerVerifier):
    """A deployment grades the answer against a rubric from 1 to 10; accepted at
    ``min_grade`` or above. An unreadable grade escalates (the safe side)."""

    name = "judge"

    class Options(_Options):
        model: str
        rubric: str = ("Is the answer correct, complete and safe for the question? "
                       "Penalise invented facts.")
        min_grade: int = Field(default=7, ge=1, le=10)

    _GRADE = re.compile(r"\b(10|[1-9])\b")

    def __init__(self, options: Options, build: BuildContext):
        self.options = options
        self.model = build.model_name(options.model, "verifier.model")

    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        ask = (f"Rubric: {self.options.rubric}\n\nQuestion:\n{conversation(asked)}\n\n"
               f"Answer:\n"
               f"{answer}\n\nGrade the answer from 1 (unacceptable) to 10 (excellent)."
               " Reply with the number only.")
        # a fresh request: the caller's tools, JSON mode or limits must not shape a grade
        request = ChatRequest(model=self.model, max_tokens=8, temperature=0,
                              messages=[ChatMessage(role="user", content=ask)])
        graded = await run.complete(request)
        found = self._GRADE.search(graded.text)
        if found is None:
            return Check(False, 1.0, f"judge {graded.deployment} gave no grade")
        grade = int(found.group(1))
        return Check(grade >= self.options.min_grade, round((10 - grade) / 9, 4),
                     f"judge {graded.deployment} graded {grade}/10")


def _final(text: str) -> str:
    """An answer's final answer for voting: its final number as the cascade verifiers
    read it (``####``, ``\\boxed{}``, "the answer is", else the last number; ``1,000``
    and ``1000.0`` vote together), else its words."""
    final = find_final(text)
    if final is not None:
        return str(final.value)
    return " ".join(re.findall(r"\w+", text.lower()))[:200]


async def _all_or_none(calls: list[Coroutine[Any, Any, _T]]) -> list[_T]:
    """Every call's result; the first failure cancels the others (no call goes on
    spending after the request has failed) and is raised as it is."""
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:  # a failed one may come after one still running
            if task.done() and not task.cancelled() and task.exception() is not None:
                raise task.exception()  # type: ignore[misc]
        return [t.result() for t in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class SelfConsistencyVerifier(AnswerVerifier):
    """Samples the model ``k`` more times and accepts when at least ``agreement`` of the
    samples reach the answer's final answer (Wang et al. 2023, self-consistency)."""

    name = "self-consistency"

    class Options(_Options):
        model: str
        k: int = Field(default=3, ge=1, le=10)
        agreement: float = Field(default=0.5, gt=0, le=1)
        temperature: float = Field(default=0.7, ge=0, le=2)

    def __init__(self, options: Options, build: BuildContext):
        self.options = options
        self.model = build.model_name(options.model, "verifier.model")

    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        request = asked.model_copy(update={
            "model": self.model, "stream": False, "stream_options": None,
            "temperature": self.options.temperature})
        samples = await _all_or_none([run.complete(request) for _ in range(self.options.k)])
        target = _final(answer)
        votes = Counter(_final(s.text) for s in samples)
        share = votes[target] / len(samples)
        return Check(share >= self.options.agreement, round(1 - share, 4),
                     f"{votes[target]} of {len(samples)} samples agree")


class RulesVerifier(AnswerVerifier):
    """Named conditions over ``answer`` (its text), ``prompt`` and step outputs; the
    answer is accepted when every one holds. Example (healthcare-triage)::

        verifier:
          name: rules
          checks:
            dosing_has_disclaimer: >-
              not (answer is search("\\b\\d+\\s?(mg|mcg|ml|units?)\\b"))
              or "not medical advice" in answer | lower
    """

    name = "rules"

    class Options(_Options):
        checks: dict[str, str] = Field(min_length=1)

    def __init__(self, options: Options, build: BuildContext):
        self.checks: dict[str, Condition] = {
            name: compile_condition(expr, f"verifier.checks.{name}")
            for name, expr in options.checks.items()}

    def references(self) -> frozenset[str]:
        found: set[str] = set()
        for cond in self.checks.values():
            found |= references(cond.source)
        return frozenset(found - {"answer", "prompt", "input"})

    async def check(self, run: StepRun, asked: ChatRequest, answer: str) -> Check:
        names = {**run.names, "answer": answer, "prompt": conversation(asked)}
        failed = []
        for name, cond in self.checks.items():
            try:
                held = cond.test(names)
            except Exception as exc:
                raise run.failure(f"check {name}: {exc}") from exc
            if not held:
                failed.append(name)
        if failed:
            return Check(False, len(failed) / len(self.checks), "failed " + ", ".join(failed))
        return Check(True, 0.0, f"passed {len(self.checks)} checks")


#: Verifiers that need a model call or step outputs, by name.
LIVE_VERIFIERS: dict[str, Any] = {
    v.name: v for v in (JudgeVerifier, SelfConsistencyVerifier, RulesVerifier)}


def build_verifier(spec: VerifierSpec, build: BuildContext, field: str) -> AnswerVerifier:
    """The verifier ``spec`` names. Raises SpecError naming ``field`` and the option."""
    live = LIVE_VERIFIERS.get(spec.name)
    if live is not None:
        try:
            options = live.Options.model_validate(spec.options)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(p) for p in err["loc"])
            raise SpecError(f"{field}.{where}" if where else field, err["msg"]) from exc
        verifier: AnswerVerifier = live(options, build)
        return verifier
    try:
        if spec.name == "json-schema" and spec.options.get("schema") == "asked":
            return AskedSchemaVerifier(spec.options)
        return _Offline(verifier_from_spec(spec.name, spec.options))
    except ConfigError as exc:
        known = ", ".join(sorted(LIVE_VERIFIERS))
        raise SpecError(field, f"{exc.message} (live verifiers: {known})") from exc


def answer_of(outputs: Mapping[str, Any]) -> str:
    """The text a step produced (its ``text`` output)."""
    return str(outputs.get("text") or "")
