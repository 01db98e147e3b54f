"""Steps that look rather than answer: ``guard`` (detection and data class),
``classify`` (pick a branch) and ``verify`` (accept or escalate an answer)."""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, model_validator

from modelmix.protocol import ChatMessage, ChatRequest
from modelmix.routing.cascade import Check
from modelmix.systems._base import (
    BuildContext,
    SpecError,
    Step,
    StepOptions,
    StepRun,
    compile_condition,
)
from modelmix.systems._contracts import StepTrace
from modelmix.systems._expr import references
from modelmix.systems._verifiers import VerifierSpec, build_verifier

if TYPE_CHECKING:
    from modelmix.guard import Guard
    from modelmix.systems._expr import Condition

__all__ = ["ClassifyStep", "GuardStep", "VerifyStep"]


class GuardStep(Step):
    """Detects sensitive data in the request and classifies it under a policy (the
    step's ``policy``, else the system's): outputs ``class`` (public, internal,
    confidential, regulated), ``action``, ``rule``, ``entities`` (types found),
    ``found`` and ``policy``. It only looks: the policy itself is enforced on every model
    call of the system whatever this step says (docs/systems.md)."""

    kind = "guard"

    class Options(StepOptions):
        policy: str | dict[str, Any] | None = None

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, GuardStep.Options)
        guard = build.guard if options.policy is None else build.make_guard(
            options.policy, "policy")
        if guard is None:
            raise SpecError("policy", "a guard step needs a policy: set the system's "
                            "`policy` or this step's (e.g. healthcare)")
        self.guard: Guard = guard

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        screening = await run.caller.screen(run.request, self.guard)
        verdict, audit = screening.verdict, screening.audit
        run.trace.append(StepTrace(run.step))
        run.notes.append(f"{run.step}: {verdict.data_class.value} ({verdict.rule})")
        return {"class": verdict.data_class.value, "action": verdict.action.value,
                "rule": verdict.rule, "policy": verdict.policy,
                "entities": sorted(audit.entities), "found": bool(audit.entities)}


class ClassifyStep(Step):
    """Picks a label (a branch for later ``when`` conditions), ``by``:

    - ``router``: the learned router's score that the strong model is needed;
      ``labels`` are conditions over ``score`` and ``threshold`` (the calibrated
      threshold of ``target``), e.g. ``{hard: "score >= threshold"}``;
    - ``rules``: ``labels`` are conditions over ``input`` and step outputs;
    - ``keywords``: a topic / intent classifier: ``labels`` list words or phrases, and
      the label with the most matches in the last user message wins.

    The first label whose condition holds wins; ``default`` otherwise (and when the
    learned router is unavailable). Outputs: ``label``, ``score``, ``threshold``.
    """

    kind = "classify"

    class Options(StepOptions):
        by: Literal["router", "rules", "keywords"]
        labels: dict[str, str | list[str]] = Field(min_length=1)
        default: str
        target: str | None = None

        @model_validator(mode="after")
        def _shapes(self) -> ClassifyStep.Options:
            want = list if self.by == "keywords" else str
            bad = [k for k, v in self.labels.items() if not isinstance(v, want)]
            if bad:
                what = "a list of words" if want is list else "a condition"
                raise ValueError(f"labels {bad} must each be {what} when by={self.by}")
            return self

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, ClassifyStep.Options)
        self.by, self.default, self.target = options.by, options.default, options.target
        self.conditions: dict[str, Condition] = {}
        self.keywords: dict[str, re.Pattern[str]] = {}
        for label, rule in options.labels.items():
            if isinstance(rule, str):
                self.conditions[label] = compile_condition(rule, f"labels.{label}")
            else:
                words = "|".join(re.escape(w) for w in rule)
                self.keywords[label] = re.compile(rf"\b(?:{words})\b", re.IGNORECASE)

    def references(self) -> frozenset[str]:
        found: set[str] = set()
        for cond in self.conditions.values():
            found |= references(cond.source)
        return frozenset(found - {"score", "threshold", "input"})

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        run.trace.append(StepTrace(run.step))
        if self.by == "keywords":
            label, score, threshold = self._by_keywords(run.prompt()), None, None
        else:
            names, score, threshold = run.names, None, None
            if self.by == "router":
                scored = run.caller.router_score(run.prompt(), self.target)
                if scored is None:
                    run.notes.append(f"{run.step}: {self.default} (learned router "
                                     "unavailable)")
                    return {"label": self.default, "score": None, "threshold": None}
                score, threshold = scored
                names = {**names, "score": score, "threshold": threshold}
            label = self._first(run, names)
        shown = "" if score is None or threshold is None else (
            f" (score {score:.3f} {'>=' if score >= threshold else '<'} {threshold:.3f})")
        run.notes.append(f"{run.step}: {label}{shown}")
        return {"label": label, "score": score, "threshold": threshold}

    def _first(self, run: StepRun, names: Mapping[str, Any]) -> str:
        for label, cond in self.conditions.items():
            try:
                if cond.test(names):
                    return label
            except Exception as exc:
                raise run.failure(f"labels.{label}: {exc}") from exc
        return self.default

    def _by_keywords(self, text: str) -> str:
        hits = {label: len(p.findall(text)) for label, p in self.keywords.items()}
        best = max(hits.values(), default=0)
        return next(label for label, n in hits.items() if n == best) if best else self.default


class VerifyStep(Step):
    """Decides accept / escalate for the answer of step ``answer`` with a verifier
    (docs/systems.md: arithmetic, json-schema, learned, judge, self-consistency, rules).
    With ``repair: true`` a failed answer is sent back once to the deployment that wrote
    it, with the verifier's reason, and re-checked (for JSON-schema answers).

    Outputs: ``ok``, ``score`` (escalation score, higher = escalate), ``reason``,
    ``verdict`` (``accept`` / ``escalate``), ``text`` (the answer, repaired if it was)
    and ``repaired``. A verdict row goes to the usage table.
    """

    kind = "verify"

    class Options(StepOptions):
        answer: str
        verifier: VerifierSpec
        repair: bool = False

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, VerifyStep.Options)
        if options.answer not in build.steps:
            raise SpecError("answer", f"unknown step {options.answer!r}")
        self.answer, self.repair = options.answer, options.repair
        self.verifier = build_verifier(options.verifier, build, "verifier")

    def references(self) -> frozenset[str]:
        return frozenset({self.answer}) | self.verifier.references()

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        started = time.perf_counter()
        produced = run.names.get(self.answer) or {}
        if not produced.get("ran"):
            return self._outputs(run, Check(False, 1.0, f"step {self.answer} did not run"),
                                 "", None, False, started)
        text, deployment = str(produced.get("text") or ""), produced.get("deployment")
        asked = run.asked(self.answer)
        check = await self.verifier.check(run, asked, text)
        repaired = False
        if not check.ok and self.repair and deployment:
            text, check = await self._repair(run, asked, text, check, str(deployment))
            repaired = True
        return self._outputs(run, check, text, deployment, repaired, started)

    async def _repair(self, run: StepRun, asked: ChatRequest, text: str, check: Check,
                      deployment: str) -> tuple[str, Check]:
        """Send the answer back once, with what was wrong, to the deployment that wrote
        it, in the conversation that step sent (not the caller's original)."""
        fix = self.verifier.repair_prompt(asked, text, check)
        messages = [*asked.messages, ChatMessage(role="assistant", content=text),
                    ChatMessage(role="user", content=fix)]
        request = asked.model_copy(update={
            "model": deployment, "messages": messages, "stream": False,
            "stream_options": None})
        fixed = await run.complete(request)
        second = await self.verifier.check(run, asked, fixed.text)
        return (fixed.text, second) if second.ok else (text, second)

    def _outputs(self, run: StepRun, check: Check, text: str, deployment: Any,
                 repaired: bool, started: float) -> dict[str, Any]:
        if not run.calls:
            run.trace.append(StepTrace(run.step))
        run.verdict(check, deployment, started)
        verdict = "accept" if check.ok else "escalate"
        run.notes.append(f"{run.step}: {verdict} ({check.reason})")
        return {"ok": check.ok, "score": check.score, "reason": check.reason,
                "verdict": verdict, "text": text, "repaired": repaired}
