"""Steps that compute without a model: ``tool`` (a Python callable) and ``transform``
(templating messages or text from earlier outputs)."""

from __future__ import annotations

import asyncio
import functools
import importlib
import inspect
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
from pydantic import Field, model_validator

from modelmix.errors import StepFailed, StepTimeout
from modelmix.systems._base import (
    BuildContext,
    SpecError,
    Step,
    StepOptions,
    StepRun,
    compile_template,
    template_names,
)
from modelmix.systems._contracts import StepTrace
from modelmix.systems._expr import Template
from modelmix.systems._model_steps import MessageTemplate

__all__ = ["ToolStep", "TransformStep", "import_callable"]


def import_callable(path: str) -> Callable[..., Any]:
    """The callable at ``package.module:function`` (or ``package.module.function``).

    Raises:
        ValueError: the module does not import, or has no such callable.
    """
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"{path!r} is not an import path like 'package.module:function'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"cannot import {module_name!r}: {exc}") from exc
    found = getattr(module, attr, None)
    if not callable(found):
        raise ValueError(f"{module_name!r} has no callable {attr!r}")
    return found  # type: ignore[no-any-return]


class ToolStep(Step):
    """Calls a Python function by import path with keyword arguments (string values are
    templates over step outputs), sync or async, within ``timeout_s``. A sync function
    runs in a worker thread; after a timeout the step fails (504) but Python cannot stop
    that thread, so keep tools short. Outputs: ``result`` (what it returned) and
    ``text`` (a string result, else its JSON)."""

    kind = "tool"

    class Options(StepOptions):
        call: str
        args: dict[str, Any] = Field(default_factory=dict)
        timeout_s: float = Field(default=10.0, gt=0, le=600)
        #: sync tools: worker threads of this step (its own pool, so a stuck tool never
        #: starves the threads the guard uses); a call finding all busy fails at once
        max_workers: int = Field(default=4, ge=1, le=64)

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, ToolStep.Options)
        try:
            self.function = import_callable(options.call)
        except ValueError as exc:
            raise SpecError("call", str(exc)) from exc
        self.is_async = inspect.iscoroutinefunction(self.function)
        self.timeout_s = options.timeout_s
        self.max_workers = options.max_workers
        self._busy = 0  # sync calls not yet returned (timed-out ones included)
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None
        self.args: dict[str, Template | Any] = {
            k: compile_template(v, f"args.{k}") if isinstance(v, str) else v
            for k, v in options.args.items()}

    def references(self) -> frozenset[str]:
        return template_names(v for v in self.args.values() if isinstance(v, Template))

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        kwargs = {k: run.render(v) if isinstance(v, Template) else v
                  for k, v in self.args.items()}
        run.trace.append(StepTrace(run.step))
        try:
            if self.is_async:
                result = await asyncio.wait_for(self.function(**kwargs), self.timeout_s)
            else:
                result = await asyncio.wait_for(self._in_thread(run, kwargs), self.timeout_s)
        except TimeoutError as exc:
            raise StepTimeout(f"system {run.system}, step {run.step}: tool did not finish "
                              f"within {self.timeout_s:g} s") from exc
        except StepFailed:
            raise
        except Exception as exc:
            raise run.failure(f"tool raised {type(exc).__name__}: {exc}") from exc
        return {"result": result, "text": _as_text(result)}


    def _in_thread(self, run: StepRun, kwargs: dict[str, Any]) -> asyncio.Future[Any]:
        """Run the sync tool in this step's pool; refuse when every worker is busy."""
        if self._busy >= self.max_workers:
            raise run.failure(f"all {self.max_workers} tool workers are busy (calls that "
                              "timed out may still be running)")
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_workers,
                                             thread_name_prefix=f"modelmix-tool-{self.name}")
        with self._lock:
            self._busy += 1
        return asyncio.get_running_loop().run_in_executor(
            self._pool, functools.partial(self._call, kwargs))

    def _call(self, kwargs: dict[str, Any]) -> Any:
        """In a worker thread: the tool, then the worker counts as free again (only
        then: a call that timed out still holds its thread)."""
        try:
            return self.function(**kwargs)
        finally:
            with self._lock:
                self._busy -= 1


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    try:
        return orjson.dumps(result, default=str).decode()
    except TypeError:
        return str(result)


class TransformStep(Step):
    """Builds text (``template``) or messages (``messages``) from earlier outputs, for a
    later model step to send (its ``messages: "{{ step.messages }}"`` is not needed: a
    model step reads ``input: <transform step>``). Outputs: ``text`` and ``messages``."""

    kind = "transform"

    class Options(StepOptions):
        template: str | None = None
        messages: tuple[MessageTemplate, ...] | None = None

        @model_validator(mode="after")
        def _one(self) -> TransformStep.Options:
            if (self.template is None) == (self.messages is None):
                raise ValueError("give exactly one of template or messages")
            return self

    def __init__(self, name: str, options: StepOptions, build: BuildContext):
        super().__init__(name, options, build)
        assert isinstance(options, TransformStep.Options)
        self.template = (None if options.template is None
                         else compile_template(options.template, "template"))
        self.messages = [(m.role, compile_template(m.content, f"messages.{i}.content"))
                         for i, m in enumerate(options.messages or ())]

    def references(self) -> frozenset[str]:
        found = [t for _, t in self.messages]
        if self.template is not None:
            found.append(self.template)
        return template_names(found)

    async def run(self, run: StepRun) -> Mapping[str, Any]:
        run.trace.append(StepTrace(run.step))
        if self.template is not None:
            text = run.render(self.template)
            return {"text": text, "messages": [{"role": "user", "content": text}]}
        messages = [{"role": role, "content": run.render(t)} for role, t in self.messages]
        return {"text": messages[-1]["content"] if messages else "", "messages": messages}
