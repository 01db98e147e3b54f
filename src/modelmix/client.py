"""The in-process library API: :class:`AsyncClient` and its sync twin :class:`Client`.

No server needed::

    from modelmix import Client

    with Client() as client:                      # embedded default catalog
        reply = client.chat(model="auto", messages=[{"role": "user", "content": "Hi"}])
        print(reply.text)
        for chunk in client.chat(model="auto", messages=[...], stream=True):
            print(chunk.text, end="")

The sync client runs the async core on a private event loop in a background thread,
so there is one implementation of routing, retries and fallback.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping
from typing import Any, TypeVar

from pydantic import ValidationError

from modelmix.catalog import Config, load_config
from modelmix.engine import CallContext, ChatService
from modelmix.errors import InvalidRequest, invalid_request
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse
from modelmix.providers import Provider
from modelmix.routing import parse_hints
from modelmix.store import UsageSink

__all__ = ["AsyncClient", "Client"]

_T = TypeVar("_T")


def _as_config(config: Config | str | os.PathLike[str] | None) -> Config:
    return config if isinstance(config, Config) else load_config(config)


def _request(model: str, messages: list[dict[str, Any]], stream: bool,
             params: dict[str, Any]) -> ChatRequest:
    try:
        return ChatRequest.model_validate(
            {"model": model, "messages": messages, "stream": stream, **params}
        )
    except ValidationError as exc:
        raise invalid_request(exc) from exc


def _context(params: dict[str, Any]) -> CallContext:
    """The modelmix extensions of a chat call, taken out of ``params`` so they are never
    forwarded upstream: ``router`` (routing hints) and ``tags`` (data policy tags)."""
    from modelmix.guard import request_tags  # the guard loads only when used

    return CallContext(hints=parse_hints(params.pop("router", None)),
                       tags=request_tags(params.pop("tags", None)))


class AsyncClient:
    """Async chat over a modelmix catalog, in-process.

    Args:
        config: a :class:`Config`, a YAML path, or None for the embedded default.
        providers: adapter overrides by deployment name (e.g. ``FakeProvider`` in tests).
        usage: a usage sink (records are discarded when omitted).

    Raises (from ``chat``): InvalidRequest, NoDeployment, PolicyDenied, ProviderError.
    """

    def __init__(
        self,
        config: Config | str | os.PathLike[str] | None = None,
        *,
        providers: Mapping[str, Provider] | None = None,
        usage: UsageSink | None = None,
    ):
        self.service = ChatService(_as_config(config), providers=providers, usage=usage)

    @property
    def config(self) -> Config:
        return self.service.config

    async def chat(self, *, model: str, messages: list[dict[str, Any]],
                   stream: bool = False, **params: Any) -> ChatResponse:
        """One chat completion (use :meth:`chat_stream` for streaming).

        ``router={...}`` passes routing hints and ``tags=[...]`` data-policy tags (as
        ``extra_body`` does at the gateway).
        """
        if stream:
            raise InvalidRequest("use chat_stream() for streaming", param="stream")
        ctx = _context(params)
        completion = await self.service.complete(_request(model, messages, False, params), ctx)
        return completion.response

    async def chat_stream(self, *, model: str, messages: list[dict[str, Any]],
                          **params: Any) -> AsyncIterator[ChatChunk]:
        """Stream chat completion chunks."""
        ctx = _context(params)
        started = await self.service.stream(_request(model, messages, True, params), ctx)
        try:
            async for chunk in started.chunks:
                yield chunk
        finally:
            await started.aclose()

    async def aclose(self) -> None:
        await self.service.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Client:
    """Synchronous twin of :class:`AsyncClient` (same arguments).

    ``chat(..., stream=True)`` returns an iterator of :class:`ChatChunk`.
    """

    def __init__(self, config: Config | str | os.PathLike[str] | None = None, **kw: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="modelmix-client")
        self._thread.start()
        self._async = self._run(_build(config, kw))

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if not self._loop.is_running():
            coro.close()
            raise RuntimeError("this modelmix Client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def config(self) -> Config:
        return self._async.config

    def chat(self, *, model: str, messages: list[dict[str, Any]], stream: bool = False,
             **params: Any) -> Any:
        """A :class:`ChatResponse`, or an iterator of chunks when ``stream=True``."""
        if stream:
            return self._iterate(self._async.chat_stream(model=model, messages=messages,
                                                         **params))
        return self._run(self._async.chat(model=model, messages=messages, **params))

    def _iterate(self, agen: AsyncIterator[ChatChunk]) -> Iterator[ChatChunk]:
        # Unbounded, so the event loop never blocks on a consumer that stopped reading.
        out: queue.SimpleQueue[tuple[str, Any]] = queue.SimpleQueue()

        async def pump() -> None:
            try:
                async for chunk in agen:
                    out.put(("chunk", chunk))
                out.put(("end", None))
            except BaseException as exc:
                out.put(("error", exc))
                if isinstance(exc, asyncio.CancelledError):
                    raise
            finally:
                await agen.aclose()  # type: ignore[attr-defined]

        if not self._loop.is_running():
            raise RuntimeError("this modelmix Client is closed")
        future = asyncio.run_coroutine_threadsafe(pump(), self._loop)
        try:
            while True:
                kind, value = out.get()
                if kind == "chunk":
                    yield value
                elif kind == "error":
                    raise value
                else:
                    return
        finally:
            future.cancel()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._async.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


async def _build(config: Config | str | os.PathLike[str] | None, kw: dict[str, Any]
                 ) -> AsyncClient:
    return AsyncClient(config, **kw)
