"""The in-process library API: :class:`AsyncClient` and its sync twin :class:`Client`.

No server needed::

    from modelmix import Client

    with Client() as client:                      # embedded default catalog
        reply = client.chat(model="auto", messages=[{"role": "user", "content": "Hi"}])
        print(reply.text, reply.route.deployment, reply.route.reason, reply.cost_usd)
        stream = client.chat(model="auto", messages=[...], stream=True)
        print(stream.route.deployment)            # known once the stream has started
        for chunk in stream:
            print(chunk.text, end="")

``AsyncClient`` has the same methods: ``await client.chat(...)``, and
``async for chunk in await client.chat(..., stream=True)`` (or ``client.chat_stream``).

The sync client runs the async core on a private event loop in a background thread,
so there is one implementation of routing, retries and fallback.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import AsyncIterator, Coroutine, Generator, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, ValidationError

from modelmix.catalog import Config, load_config
from modelmix.engine import (
    POLICY_FROM_CONFIG,
    CallContext,
    ChatService,
    Completion,
    Embeddings,
    FromConfig,
    StreamCompletion,
    SystemInfo,
    parse_cache_control,
)
from modelmix.errors import invalid_request
from modelmix.protocol import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    EmbeddingResponse,
    parse_embedding_request,
)
from modelmix.providers import Provider
from modelmix.routing import RouteDecision, parse_hints
from modelmix.store import UsageSink

if TYPE_CHECKING:
    from modelmix.guard import Guard

__all__ = ["AsyncChatStream", "AsyncClient", "ChatResult", "ChatStream", "Client",
           "EmbeddingsResult", "Route"]

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
    forwarded upstream: ``router`` (routing hints), ``tags`` (data policy tags) and
    ``cache`` (response cache options, docs/cache.md)."""
    from modelmix.guard import request_tags  # the guard loads only when used

    return CallContext(hints=parse_hints(params.pop("router", None)),
                       tags=request_tags(params.pop("tags", None)),
                       cache_control=parse_cache_control(params.pop("cache", None)))


class Route(BaseModel):
    """How modelmix routed a call.

    Attributes:
        deployment: the deployment that served it.
        reason: the router's reason (as in the gateway's ``x-modelmix-route-reason``).
        score: the strategy's score (the learned router: P(strong model needed), [0, 1]).
        fallbacks: the decision's fallbacks after its first choice, in order.
        tried: deployments called before the one that served, which failed.
        attempts: upstream calls made, retries included (for a stream, those made before
            its first chunk).
        system: for ``model="system/<name>"``, the system's name (else None); the
            deployment and score are then those of the call that produced the answer.
        steps: for a system, ``(step, deployment)`` in execution order, ``"-"`` for a
            step that called no model (the gateway's ``x-modelmix-steps``).
        conversions: how the request's media were converted to text for the deployment
            (``ocr``, ``pdf``, ``asr``; the gateway's ``x-modelmix-conversions``); empty
            when none were (docs/multimodal.md).
    """

    model_config = ConfigDict(frozen=True)

    deployment: str
    reason: str
    score: float | None = None
    fallbacks: tuple[str, ...] = ()
    tried: tuple[str, ...] = ()
    attempts: int = 0
    system: str | None = None
    steps: tuple[tuple[str, str], ...] = ()
    conversions: tuple[str, ...] = ()


def _route(decision: RouteDecision, served: str, attempts: list[Any] | None = None,
           system: SystemInfo | None = None, conversions: tuple[str, ...] = ()) -> Route:
    calls = attempts or []
    steps = () if system is None or not system.steps else tuple(
        tuple(entry.rsplit(":", 1)) for entry in system.steps.split(","))
    return Route(deployment=served, reason=decision.reason, score=decision.score,
                 fallbacks=tuple(d.name for d in decision.fallbacks),
                 tried=tuple(dict.fromkeys(a.deployment for a in calls
                                           if a.error is not None and a.deployment != served)),
                 attempts=len(calls), system=None if system is None else system.name,
                 steps=steps, conversions=conversions)


class ChatResult(ChatResponse):
    """A chat completion (all of :class:`ChatResponse`) plus what modelmix did.

    Attributes:
        route: where it was routed and why (:class:`Route`).
        cost_usd: its cost at catalog prices, USD (prompt and completion tokens as the
            upstream reported them x the deployment's USD per 1M tokens).
        latency_ms: time from the call to the answer, ms.
        cache: what the response cache did (docs/cache.md): ``hit`` (answered from it,
            ``cost_usd`` 0), ``miss`` or ``bypass`` (the gateway's ``x-modelmix-cache``).
        saved_usd: on a hit, what the answer cost when first produced, USD (else 0).
    """

    route: Route
    cost_usd: float
    latency_ms: float
    cache: str = "bypass"
    saved_usd: float = 0.0


def _result(done: Completion) -> ChatResult:
    return ChatResult.model_validate({
        **done.response.model_dump(), "route": _route(done.decision, done.deployment.name,
                                                      done.attempts, done.system,
                                                      done.conversions),
        "cost_usd": done.cost_usd, "latency_ms": done.latency_ms, "cache": done.cache,
        "saved_usd": done.saved_usd})


class EmbeddingsResult(EmbeddingResponse):
    """An embeddings answer (all of :class:`~modelmix.protocol.EmbeddingResponse`: one
    vector per input, in order) plus how it was routed, its cost (prompt tokens x the
    deployment's input price, USD) and latency (ms)."""

    route: Route
    cost_usd: float
    latency_ms: float


def _embeddings_result(done: Embeddings) -> EmbeddingsResult:
    r = done.response  # built unvalidated: its vectors are not copied again
    return EmbeddingsResult.model_construct(
        object=r.object, data=r.data, model=r.model, usage=r.usage,
        route=_route(done.decision, done.deployment.name, done.attempts),
        cost_usd=done.cost_usd, latency_ms=done.latency_ms)


class AsyncChatStream:
    """A started stream: ``async for chunk in stream``; ``route`` is known already.

    Close it (``await stream.aclose()``, or iterate to the end) to end the upstream call
    and record the request.
    """

    def __init__(self, started: StreamCompletion):
        self._started = started
        self.route = _route(started.decision, started.deployment.name, started.attempts,
                            started.system, conversions=started.conversions)
        #: the response cache: ``hit`` (replayed from it), ``miss`` or ``bypass``
        self.cache = started.cache

    @property
    def cost_usd(self) -> float | None:
        """Its cost at catalog prices, USD, once iterated to the end (None before)."""
        return self._started.cost_usd

    def __aiter__(self) -> AsyncIterator[ChatChunk]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[ChatChunk]:
        try:
            async for chunk in self._started.chunks:
                yield chunk
        finally:
            await self._started.aclose()

    async def aclose(self) -> None:
        await self._started.aclose()


class AsyncClient:
    """Async chat over a modelmix catalog, in-process.

    Args:
        config: a :class:`Config`, a YAML path, or None for the embedded default.
        providers: adapter overrides by deployment name (e.g. ``FakeProvider`` in tests).
        usage: a usage sink (records are discarded when omitted).
        guard: the data guard; by default built from the catalog's ``policy`` (none when it
            names none). ``guard_from_config(config, os.environ)`` honours
            ``$MODELMIX_POLICY`` as the gateway does; ``None`` turns the guard off.

    Raises (from ``chat``): InvalidRequest, NoDeployment, PolicyDenied, ProviderError.
    """

    def __init__(
        self,
        config: Config | str | os.PathLike[str] | None = None,
        *,
        providers: Mapping[str, Provider] | None = None,
        usage: UsageSink | None = None,
        guard: Guard | Literal[FromConfig.POLICY] | None = POLICY_FROM_CONFIG,
    ):
        self.service = ChatService(_as_config(config), providers=providers, usage=usage,
                                   guard=guard)
        self._closed = False

    @property
    def config(self) -> Config:
        return self.service.config

    @overload
    async def chat(self, *, model: str, messages: list[dict[str, Any]],
                   stream: Literal[False] = False, **params: Any) -> ChatResult: ...

    @overload
    async def chat(self, *, model: str, messages: list[dict[str, Any]],
                   stream: Literal[True], **params: Any) -> AsyncChatStream: ...

    async def chat(self, *, model: str, messages: list[dict[str, Any]],
                   stream: bool = False, **params: Any) -> ChatResult | AsyncChatStream:
        """One chat completion (:class:`ChatResult`), or with ``stream=True`` a started
        :class:`AsyncChatStream` of chunks.

        ``router={...}`` passes routing hints, ``tags=[...]`` data-policy tags and
        ``cache={"mode": ..., "ttl_s": ...}`` response-cache options (as ``extra_body``
        does at the gateway); other keyword arguments are OpenAI's.
        """
        if self._closed:
            raise RuntimeError("this modelmix AsyncClient is closed")
        ctx = _context(params)
        if stream:
            started = await self.service.stream(_request(model, messages, True, params), ctx)
            return AsyncChatStream(started)
        done = await self.service.complete(_request(model, messages, False, params), ctx)
        return _result(done)

    async def embeddings(self, *, model: str, input: str | list[str],
                         tags: list[str] | None = None, **params: Any) -> EmbeddingsResult:
        """Embed ``input`` with an embedding deployment (``local-embed`` in the embedded
        default), through the same guard, router and usage records as ``chat``.
        ``params`` are OpenAI's (``encoding_format``, ``dimensions``, ``user``) plus
        ``input_type`` (``query`` | ``passage``); ``tags`` are data-policy tags.

        Example::

            out = await client.embeddings(model="local-embed", input=["a", "b"])
            out.data[0].embedding          # 384 floats

        Raises InvalidRequest (a chat model, a bad field), PolicyDenied, NoDeployment,
        ProviderError."""
        if self._closed:
            raise RuntimeError("this modelmix AsyncClient is closed")
        from modelmix.guard import request_tags  # the guard loads only when used

        request = parse_embedding_request({"model": model, "input": input, **params})
        done = await self.service.embed(request, CallContext(tags=request_tags(tags)))
        return _embeddings_result(done)

    async def chat_stream(self, *, model: str, messages: list[dict[str, Any]],
                          **params: Any) -> AsyncIterator[ChatChunk]:
        """Stream chat completion chunks (``chat(..., stream=True)`` without the route)."""
        stream = await self.chat(model=model, messages=messages, stream=True, **params)
        async for chunk in stream:
            yield chunk

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self.service.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class ChatStream(Iterator[ChatChunk]):
    """A started stream of the sync :class:`Client`: iterate it for chunks; ``route`` is
    known already. Iterate to the end or :meth:`close` it to end the upstream call."""

    def __init__(self, client: Client, stream: AsyncChatStream):
        self.route = stream.route
        self.cache = stream.cache
        self._client = client
        self._stream = stream
        self._chunks = client._iterate(aiter(stream))

    @property
    def cost_usd(self) -> float | None:
        """Its cost at catalog prices, USD, once iterated to the end (None before)."""
        return self._stream.cost_usd

    def __next__(self) -> ChatChunk:
        return next(self._chunks)

    def close(self) -> None:
        """End the stream now (the upstream call too) and record it."""
        self._chunks.close()
        if self._client._loop.is_running():
            self._client._run(self._stream.aclose())


class Client:
    """Synchronous twin of :class:`AsyncClient` (same arguments and methods).

    ``chat(...)`` returns a :class:`ChatResult`; ``chat(..., stream=True)`` a
    :class:`ChatStream` of :class:`ChatChunk`; ``chat_stream(...)`` an iterator of chunks.
    """

    def __init__(self, config: Config | str | os.PathLike[str] | None = None, **kw: Any):
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True,
                                        name="modelmix-client")
        self._thread.start()
        try:
            self._async = self._run(_build(config, kw))
        except BaseException:  # a bad config: do not leave the loop thread running
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=5)
            self._loop.close()
            raise

    def _run(self, coro: Coroutine[Any, Any, _T]) -> _T:
        if not self._loop.is_running():
            coro.close()
            raise RuntimeError("this modelmix Client is closed")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    @property
    def config(self) -> Config:
        return self._async.config

    @overload
    def chat(self, *, model: str, messages: list[dict[str, Any]],
             stream: Literal[False] = False, **params: Any) -> ChatResult: ...

    @overload
    def chat(self, *, model: str, messages: list[dict[str, Any]],
             stream: Literal[True], **params: Any) -> ChatStream: ...

    def chat(self, *, model: str, messages: list[dict[str, Any]], stream: bool = False,
             **params: Any) -> ChatResult | ChatStream:
        """A :class:`ChatResult`, or a started :class:`ChatStream` when ``stream=True``."""
        if stream:
            started = self._run(self._async.chat(model=model, messages=messages, stream=True,
                                                 **params))
            return ChatStream(self, started)
        result: ChatResult = self._run(self._async.chat(model=model, messages=messages,
                                                        stream=False, **params))
        return result

    def embeddings(self, *, model: str, input: str | list[str],
                   tags: list[str] | None = None, **params: Any) -> EmbeddingsResult:
        """An :class:`EmbeddingsResult` (see :meth:`AsyncClient.embeddings`)."""
        result: EmbeddingsResult = self._run(self._async.embeddings(
            model=model, input=input, tags=tags, **params))
        return result

    def chat_stream(self, *, model: str, messages: list[dict[str, Any]],
                    **params: Any) -> Iterator[ChatChunk]:
        """Stream chat completion chunks (``chat(..., stream=True)``)."""
        return self.chat(model=model, messages=messages, stream=True, **params)

    def _iterate(self, agen: AsyncIterator[ChatChunk]) -> Generator[ChatChunk, None, None]:
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
