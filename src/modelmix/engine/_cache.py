"""The response cache in the request path (docs/cache.md): which requests it may answer,
under which key, and the answer it gives.

The service looks up after screening and routing (so the data class and the deployment
are known) and before admission: a hit costs nothing and reserves nothing. What is keyed:

* the namespace: the key's own (``key:<id>``), or ``shared`` when ``cache.shared`` is on
  and the request carries no detected data (no policy, or ``public`` with nothing found);
* the deployment routed to (name, provider, model) and, under a data policy, the verdict
  (policy, data class, action, deciding rule);
* the whole request as it will be sent, but ``model``, ``stream``, ``stream_options``,
  ``timeout`` and ``user``: messages (system prompt and history), tools, tool_choice,
  response_format, sampling parameters, forwarded extra fields.

The semantic cache (``semantic``) also looks among answers to requests equal in all of
that but the last user message: the nearest prompts by embedding at least
``cache.similarity`` cosine-similar, served only when the word-by-word check
(:mod:`modelmix.state._paraphrase`) finds no difference in numbers, negations, polarity,
names... It is used only for requests in which the guard found nothing.

Never cached: failed calls, answers from a fallback deployment (the key names the one
routed to), media requests, systems of models and their steps, streamed answers with
tool calls, logprobs or several choices (``n``; a non-streamed one is kept, under a key
holding ``n``), answers over ``cache.max_response_bytes``.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelmix.catalog import CacheSettings, Config, Deployment
from modelmix.errors import InvalidRequest, ModelmixError, StateUnavailable, invalid_request
from modelmix.protocol import (
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    Usage,
    new_completion_id,
    now,
)
from modelmix.routing import RouteDecision
from modelmix.state import SharedRedis
from modelmix.state._cache import CacheEntry, ResponseStore, response_store
from modelmix.state._paraphrase import differences
from modelmix.state._semantic import Embedder, IndexItem, Vector, load_embedder, nearest

if TYPE_CHECKING:
    from modelmix.engine._contracts import CallContext, StreamCompletion

__all__ = ["CACHE_HEADER", "CacheControl", "CacheLookup", "CacheMode", "CacheStatus",
           "ResponseCache", "StreamCapture", "cached_stream", "parse_cache_control",
           "replay"]

log = logging.getLogger("modelmix.cache")

CacheMode = Literal["off", "exact", "semantic"]
_RANK: dict[str, int] = {"off": 0, "exact": 1, "semantic": 2}

#: The gateway's response header: ``hit``, ``miss`` or ``bypass``.
CACHE_HEADER = "x-modelmix-cache"

#: Bumped when what a key covers changes, so old entries are never read.
_KEY_VERSION = 1
#: Request fields that do not change the answer.
_UNKEYED = frozenset({"model", "stream", "stream_options", "timeout", "user"})
#: Longest last user message the semantic cache compares (longer ones: exact only).
SEMANTIC_MAX_CHARS = 2000
#: Nearest prompts checked word by word per lookup.
_CANDIDATES = 4


class CacheStatus(StrEnum):
    """What the cache did for a request (``x-modelmix-cache``, usage column ``cache``)."""

    HIT = "hit"  # answered from the cache
    MISS = "miss"  # looked up (or refreshed): not found; the answer may be stored
    BYPASS = "bypass"  # not used: off, not cacheable, or the shared cache unreachable


class _Options(BaseModel):
    """The ``cache`` object of a request body (``extra_body={"cache": {...}}``)."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    mode: CacheMode | None = None
    ttl_s: float | None = Field(default=None, gt=0, le=366 * 86400, allow_inf_nan=False)


@dataclass(frozen=True, slots=True)
class CacheControl:
    """What the caller and its key ask of the cache for one request.

    Attributes:
        mode: the request's ``cache.mode`` (None: the key's, else the catalog's).
        ttl_s: the request's ``cache.ttl_s``: an older cached answer is not served, and
            its own answer is kept at most this long (never longer than ``cache.ttl_s``).
        refresh: ``cache-control: no-cache``: do not serve from the cache, store the
            fresh answer.
        key_mode: the virtual key's ``cache`` setting, a ceiling (None: no limit).
    """

    mode: CacheMode | None = None
    ttl_s: float | None = None
    refresh: bool = False
    key_mode: CacheMode | None = None

    def effective(self, default: CacheMode) -> CacheMode:
        """The mode in effect: the request's, else the key's, else ``default``, never
        above the key's."""
        mode = self.mode or self.key_mode or default
        if self.key_mode is not None and _RANK[mode] > _RANK[self.key_mode]:
            return self.key_mode
        return mode


def parse_cache_control(raw: Any, header: str | None = None,
                        key_mode: str | None = None) -> CacheControl:
    """A request's cache options from its ``cache`` body object and ``cache-control``
    header: ``no-store`` turns the cache off for it, ``no-cache`` refreshes (no lookup,
    the answer is stored); ``max-age=N`` is ``ttl_s``. Raises InvalidRequest (400)
    naming the bad field.

    Example::

        client.chat.completions.create(..., extra_body={"cache": {"mode": "off"}})
    """
    if raw is not None and not isinstance(raw, dict):
        raise InvalidRequest('cache: must be an object, e.g. {"mode": "exact"}',
                             param="cache", code="invalid_value")
    try:
        options = _Options.model_validate(raw or {})
    except ValidationError as exc:
        raise invalid_request(exc, prefix=("cache",)) from exc
    mode, ttl_s, refresh = options.mode, options.ttl_s, False
    for directive in (header or "").lower().split(","):
        name, _, value = directive.strip().partition("=")
        if name == "no-store":
            mode = "off"
        elif name == "no-cache":
            refresh = True
        elif name == "max-age" and value.strip().isdigit() and ttl_s is None:
            ttl_s = float(value) or None
            refresh = refresh or float(value) == 0
    key = key_mode if key_mode in _RANK else None
    return CacheControl(mode=mode, ttl_s=ttl_s, refresh=refresh,
                        key_mode=key)  # type: ignore[arg-type]


@dataclass(slots=True)
class CacheLookup:
    """One request's dealings with the cache (``CallContext.cache``).

    Attributes:
        status: hit, miss or bypass.
        key: the exact key (set on a miss, to store the answer under).
        deployment: the deployment the key names (a fallback's answer is not stored).
        ttl_s: how long the answer is kept.
        index: (bucket, item) adding the prompt to the semantic index on store.
        entry: the cached answer (on a hit).
        similarity: the cosine similarity of a semantic hit (1.0 for an exact one).
        reason: why the cache was bypassed.
    """

    status: CacheStatus
    key: str | None = None
    deployment: str | None = None
    ttl_s: float = 0.0
    index: tuple[str, IndexItem] | None = None
    entry: CacheEntry | None = None
    similarity: float | None = None
    reason: str = ""

    @classmethod
    def bypass(cls, reason: str) -> CacheLookup:
        return cls(CacheStatus.BYPASS, reason=reason)

    def response(self) -> ChatResponse:
        """The cached answer as a new completion (new id and time)."""
        assert self.entry is not None
        data = orjson.loads(self.entry.body)
        data.update(id=new_completion_id(), created=now())
        return ChatResponse.model_validate(data)


class ResponseCache:
    """Lookup and store of cached answers for a :class:`~modelmix.engine.ChatService`.

    Args:
        settings: the catalog's ``cache`` settings.
        store: where entries live (:class:`~modelmix.state._cache.LocalStore` or
            :class:`~modelmix.state._cache.RedisStore`).
        embedder: the semantic cache's embedder (loaded when first needed when omitted;
            without the ``cache`` extra, semantic requests use the exact cache).
    """

    def __init__(self, settings: CacheSettings, store: ResponseStore, *,
                 embedder: Embedder | None = None):
        self.settings = settings
        self.backend = store
        self._embedder = embedder
        self._no_embedder = False
        self._bypassing = False  # an outage of the shared cache is logged once

    @classmethod
    def from_config(cls, config: Config, shared: SharedRedis | None) -> ResponseCache:
        """The cache of ``config``: in Redis when ``shared``, else in this process.

        Raises:
            MissingExtra: ``cache.mode: semantic`` without the ``cache`` extra.
        """
        embedder = load_embedder() if config.cache.mode == "semantic" else None
        return cls(config.cache, response_store(config.cache, shared), embedder=embedder)

    def __repr__(self) -> str:
        return f"ResponseCache(mode={self.settings.mode!r}, store={self.backend!r})"

    def _embedder_or_none(self) -> Embedder | None:
        if self._embedder is None and not self._no_embedder:
            try:
                self._embedder = load_embedder()
            except ModelmixError as exc:
                log.warning("%s; semantic cache requests use the exact cache", exc.message)
                self._no_embedder = True
        return self._embedder

    async def lookup(self, request: ChatRequest, sent: ChatRequest, decision: RouteDecision,
                     ctx: CallContext) -> CacheLookup:
        """Look ``request`` up (routed by ``decision``; ``sent`` is what would be sent:
        ``request`` unless its media were converted). Never raises for the cache's own
        failures: an unreachable shared cache is a bypass, logged."""
        control = ctx.cache_control or CacheControl()
        mode = control.effective(self.settings.mode)
        why = _bypass_reason(request, sent, ctx, mode)
        if why:
            return CacheLookup.bypass(why)
        dep = decision.deployment
        scope = _scope(self.settings, ctx, dep)
        key = _digest(scope, _keyed(request))
        ttl = min(self.settings.ttl_s, control.ttl_s or self.settings.ttl_s)
        text = _semantic_text(request, ctx) if mode == "semantic" else None
        try:
            if not control.refresh:
                entry = await self._fresh(key, control)
                self._bypassing = False
                if entry is not None:
                    return CacheLookup(CacheStatus.HIT, key, dep.name, ttl, entry=entry,
                                       similarity=1.0)
            index = None
            if text is not None and (embedder := self._embedder_or_none()) is not None:
                vector = await embedder.embed(text)
                bucket = _digest(scope, _keyed(request, last_prompt=False))
                if not control.refresh:
                    hit = await self._neighbour(bucket, text, vector, control)
                    if hit is not None:
                        return CacheLookup(CacheStatus.HIT, key, dep.name, ttl, entry=hit[0],
                                           similarity=hit[1])
                index = (bucket, IndexItem(key, text, vector))
        except StateUnavailable:
            # once per outage: SharedRedis logs its start and end
            log.log(logging.DEBUG if self._bypassing else logging.WARNING,
                    "response cache bypassed while the shared cache (Redis) is unreachable")
            self._bypassing = True
            return CacheLookup.bypass("shared cache unreachable")
        return CacheLookup(CacheStatus.MISS, key, dep.name, ttl, index=index)

    async def _fresh(self, key: str, control: CacheControl) -> CacheEntry | None:
        entry = await self.backend.get(key)
        if entry is None or control.ttl_s is None:
            return entry
        return entry if time.time() - entry.created_at <= control.ttl_s else None

    async def _neighbour(self, bucket: str, text: str, vector: Vector,
                         control: CacheControl) -> tuple[CacheEntry, float] | None:
        items = await self.backend.items(bucket)
        for item, score in nearest(items, vector, self.settings.similarity, _CANDIDATES):
            if differences(item.text, text):
                continue
            entry = await self._fresh(item.key, control)
            if entry is not None:
                return entry, score
        return None

    async def store(self, lookup: CacheLookup | None, response: ChatResponse,
                    served_by: Deployment) -> None:
        """Keep ``response`` for a request that missed, when it may be kept (see the
        module docstring). Never raises for the cache's own failures."""
        if lookup is None or lookup.status is not CacheStatus.MISS or lookup.key is None:
            return
        if served_by.name != lookup.deployment or not response.choices:
            return
        body = orjson.dumps(response.model_dump()).decode()
        if len(body) > self.settings.max_response_bytes:
            return
        usage = response.usage or Usage()
        entry = CacheEntry(body, served_by.name, usage.prompt_tokens, usage.completion_tokens,
                           time.time())
        try:
            await self.backend.put(lookup.key, entry, lookup.ttl_s, lookup.index)
        except StateUnavailable:
            log.warning("answer not cached: the shared cache (Redis) is unreachable")

    async def aclose(self) -> None:
        if self._embedder is not None:
            self._embedder.close()
        await self.backend.aclose()


def _bypass_reason(request: ChatRequest, sent: ChatRequest, ctx: CallContext,
                   mode: CacheMode) -> str:
    if mode == "off":
        return "off"
    if ctx.parent_id is not None or ctx.system is not None:
        return "system step"
    if sent is not request or request.media_parts():
        return "media"
    return ""


def _scope(settings: CacheSettings, ctx: CallContext, dep: Deployment) -> dict[str, Any]:
    """What besides the request a key covers: namespace, deployment, data policy."""
    screening = ctx.screening
    verdict = None if screening is None else screening.verdict
    # a rule that limits the deployments (a tag such as healthcare's ``phi``, a key rule)
    # says the caller's data needs care even with nothing detected: keep it to the key
    clean = screening is None or (verdict is not None and verdict.data_class == "public"
                                  and not screening.audit.entities
                                  and not verdict.constrained)
    namespace = "shared" if settings.shared and clean else f"key:{ctx.key_id or '-'}"
    return {
        "v": _KEY_VERSION, "ns": namespace,
        "dep": [dep.name, dep.provider, dep.model, dep.base_url],
        "policy": None if verdict is None else [
            verdict.policy, str(verdict.data_class), str(verdict.action), verdict.rule],
    }


def _keyed(request: ChatRequest, *, last_prompt: bool = True) -> dict[str, Any]:
    """The request fields that change the answer; without the last user message's
    content when ``last_prompt`` is False (the semantic bucket)."""
    body = request.model_dump(exclude_none=True, exclude=set(_UNKEYED))
    if not last_prompt:
        body["messages"][-1].pop("content", None)
    return body


def _digest(scope: dict[str, Any], body: dict[str, Any]) -> str:
    data = orjson.dumps({"scope": scope, "request": body}, option=orjson.OPT_SORT_KEYS)
    return hashlib.sha256(data).hexdigest()


def _semantic_text(request: ChatRequest, ctx: CallContext) -> str | None:
    """The last message's text when the semantic cache may compare it: a user message of
    text only, at most :data:`SEMANTIC_MAX_CHARS`, in which the guard found nothing."""
    screening = ctx.screening
    if screening is not None and (screening.audit.entities
                                  or screening.verdict.data_class != "public"):
        return None
    last = request.messages[-1]
    if last.role != "user" or (isinstance(last.content, list)
                               and any(p.type != "text" for p in last.content)):
        return None
    text = last.text().strip()
    return text if 0 < len(text) <= SEMANTIC_MAX_CHARS else None


@dataclass(slots=True)
class StreamCapture:
    """Rebuilds a streamed answer from its chunks, to store it; tool-call deltas make it
    unstorable."""

    id: str = ""
    created: int = 0
    model: str = ""
    parts: list[str] = field(default_factory=list)
    finish_reason: str | None = None
    usage: Usage | None = None
    storable: bool = True

    def feed(self, chunk: ChatChunk) -> None:
        if not self.id:
            self.id, self.created, self.model = chunk.id, chunk.created, chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        for choice in chunk.choices:
            if choice.index != 0 or choice.delta.tool_calls or choice.logprobs is not None:
                self.storable = False  # several choices, or logprobs: not rebuilt here
            if choice.delta.content:
                self.parts.append(choice.delta.content)
            if choice.finish_reason is not None:
                self.finish_reason = choice.finish_reason

    def response(self) -> ChatResponse | None:
        """The whole answer, None when it cannot be stored."""
        if not self.storable or self.finish_reason is None:
            return None
        return ChatResponse.model_validate({
            "id": self.id, "created": self.created, "model": self.model,
            "choices": [{"index": 0, "message": {"role": "assistant",
                                                 "content": "".join(self.parts)},
                         "finish_reason": self.finish_reason}],
            "usage": None if self.usage is None else self.usage.model_dump()})


async def replay(response: ChatResponse, include_usage: bool
                 ) -> AsyncGenerator[ChatChunk, None]:
    """A cached answer as a stream: per choice, one chunk with the whole message (and its
    logprobs), one with the finish reason; then the usage when asked for."""
    cid, created, model = response.id, response.created, response.model
    for choice in response.choices:
        message = choice.message
        tools = [{"index": i, **call} for i, call in enumerate(message.tool_calls or ())]
        delta = Delta(role="assistant", content=message.content, tool_calls=tools or None)
        yield ChatChunk(id=cid, created=created, model=model, choices=[ChunkChoice(
            index=choice.index, delta=delta, logprobs=choice.logprobs)])
        yield ChatChunk(id=cid, created=created, model=model, choices=[ChunkChoice(
            index=choice.index, delta=Delta(), finish_reason=choice.finish_reason)])
    if include_usage:
        yield ChatChunk(id=cid, created=created, model=model, choices=[],
                        usage=response.usage or Usage())


def cached_stream(decision: RouteDecision, response: ChatResponse, include_usage: bool
                  ) -> StreamCompletion:
    """A stream answering from the cache (its usage row is written already)."""
    from modelmix.engine._contracts import StreamCompletion

    chunks = replay(response, include_usage)

    async def close() -> None:
        await chunks.aclose()

    return StreamCompletion(decision, decision.deployment, chunks, close, lambda: 0.0,
                            cache=CacheStatus.HIT.value)
