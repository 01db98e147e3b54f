"""Running a system's DAG for one request.

Steps start as soon as every step they wait for has finished; independent steps run
concurrently (one asyncio task each; a step with nothing else running is awaited
inline, which keeps a linear pipeline's overhead to the steps themselves). A step whose
``when`` is false is skipped (its outputs read ``{"ran": false}``). The first failure
cancels the steps still running and is raised; so is the caller's cancellation. When
the request streams and the output step is a model step nobody waits for, it runs last,
as a stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelmix.errors import StepFailed
from modelmix.protocol import ChatRequest
from modelmix.systems._base import StepRun
from modelmix.systems._contracts import ModelAnswer, ModelCaller, StepTrace, SystemResult
from modelmix.systems._system import System

__all__ = ["SystemRunner", "input_names"]


def input_names(request: ChatRequest) -> dict[str, Any]:
    """What expressions see as ``input``: ``text`` (the last user message), ``messages``
    (``{role, content}`` with text content) and ``model``."""
    text = ""
    for msg in reversed(request.messages):
        if msg.role == "user":
            text = msg.text()
            break
    return {"text": text, "model": request.model,
            "messages": [{"role": m.role, "content": m.text()} for m in request.messages]}


@dataclass(slots=True)
class _Run:
    """One request's progress through a system."""

    system: System
    request: ChatRequest
    caller: ModelCaller
    names: dict[str, Any]
    trace: list[StepTrace] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    calls: dict[str, list[ModelAnswer]] = field(default_factory=dict)
    order: list[ModelAnswer] = field(default_factory=list)

    def step_run(self, name: str) -> StepRun:
        calls = self.calls.setdefault(name, [])
        return StepRun(self.system.name, name, self.request, self.caller, self.names,
                       self.system.guard, self.trace, self.notes, calls, self.calls)

    def should_run(self, name: str) -> bool:
        when = self.system.nodes[name].when
        if when is None:
            return True
        try:
            held = when.test(self.names)
        except Exception as exc:
            raise StepFailed(f"system {self.system.name}, step {name}: when "
                             f"{when.source!r}: {exc}") from exc
        if not held:
            self.names[name] = {"ran": False}
            if self.system.nodes[name].step.kind in ("model", "cascade"):
                self.notes.append(f"{name}: skipped")
        return held

    async def run_step(self, name: str) -> None:
        outputs = await self.system.nodes[name].step.run(self.step_run(name))
        self.names[name] = {"ran": True, **outputs}


class SystemRunner:
    """Runs systems; stateless, one per service."""

    async def run(self, system: System, request: ChatRequest, caller: ModelCaller, *,
                  stream: bool = False) -> SystemResult:
        """Run ``system`` for ``request``. Raises the failing step's ModelmixError
        (message prefixed with system and step) or StepFailed."""
        state = _Run(system, request, caller, {"input": input_names(request)})
        deferred = self._deferred(system) if stream else ()
        await self._schedule(state, [n for n in system.order if n not in deferred])
        return await self._result(state, deferred)

    @staticmethod
    def _deferred(system: System) -> tuple[str, ...]:
        """Output steps that may stream: model steps no other step waits for."""
        return tuple(n for n in system.outputs
                     if system.nodes[n].step.streams and not system.dependents[n])

    async def _schedule(self, state: _Run, pending: list[str]) -> None:
        nodes = state.system.nodes
        done: set[str] = set()
        running: dict[asyncio.Task[None], str] = {}
        try:
            while pending or running:
                ready = [n for n in pending if nodes[n].deps <= done]
                for name in ready:
                    pending.remove(name)
                    if not state.should_run(name):
                        done.add(name)
                    elif not running and len(ready) == 1:
                        await state.run_step(name)  # nothing to overlap with: inline
                        done.add(name)
                    else:
                        running[asyncio.create_task(state.run_step(name))] = name
                if not running:
                    continue
                finished, _ = await asyncio.wait(running, return_when=asyncio.FIRST_COMPLETED)
                for task in finished:
                    done.add(running.pop(task))
                    task.result()  # the first failure is raised
        finally:
            await _cancel(running)

    async def _result(self, state: _Run, deferred: tuple[str, ...]) -> SystemResult:
        system = state.system
        result = SystemResult(system.name, "", None, state.trace, state.notes)
        for name in system.outputs:
            if name in deferred and name not in state.names:
                if not state.should_run(name):
                    continue
                step_run = state.step_run(name)
                result.stream = await system.nodes[name].step.start_stream(step_run)
                break
            if (state.names.get(name) or {}).get("ran"):
                result.text = str(state.names[name].get("text") or "")
                own = state.calls.get(name)
                result.answer = own[-1] if own else None
                break
        else:
            raise StepFailed(f"system {system.name}: no output step ran (output: "
                             f"{', '.join(system.outputs)})")
        calls = [c for cs in state.calls.values() for c in cs]
        if result.answer is None and calls and result.stream is None:
            result.answer = calls[-1]
        _totals(result, calls)
        result.outputs = {k: v for k, v in state.names.items() if k != "input"}
        return result


def _totals(result: SystemResult, calls: list[ModelAnswer]) -> None:
    for call in calls:
        result.cost_usd += call.cost_usd
        usage = call.response.usage
        if usage is not None:
            result.prompt_tokens += usage.prompt_tokens
            result.completion_tokens += usage.completion_tokens


async def _cancel(running: Mapping[asyncio.Task[None], str]) -> None:
    """Cancel steps still running and wait for them to end (their usage rows are
    written as cancelled by the service)."""
    if not running:
        return
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
