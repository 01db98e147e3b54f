"""Where the response cache keeps answers: this process (:class:`LocalStore`, an LRU with
expiry) or the replicas' Redis (:class:`RedisStore`). What goes in and when a cached answer
may be served is decided by the engine (``modelmix.engine._cache``, docs/cache.md); a
store only keeps entries by key and, for the semantic cache, a bounded index of answered
prompts per bucket (one bucket per namespace, deployment, data class and everything of
the request but its last user message).

Both bound what they keep: ``cache.max_entries`` answers in process (least recently used
goes first) and :data:`BUCKET_LIMIT` index items per bucket; in Redis every key expires
(``cache.ttl_s``) and each index is a list trimmed to :data:`BUCKET_LIMIT`.

Example::

    store = response_store(config.cache, shared)   # RedisStore when shared is not None
    await store.put(key, entry, ttl_s=3600, index=("bucket", item))
    entry = await store.get(key)                    # None when absent or expired
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

import orjson

from modelmix.catalog import CacheSettings
from modelmix.errors import StateUnavailable
from modelmix.state._redis import SharedRedis
from modelmix.state._semantic import IndexItem, decode_vector, encode_vector

__all__ = ["BUCKET_LIMIT", "CacheEntry", "LocalStore", "RedisStore", "ResponseStore",
           "response_store"]

log = logging.getLogger("modelmix.cache")

#: Most prompts a semantic index keeps per bucket (newest first); older ones drop out.
BUCKET_LIMIT = 256

#: Seconds the Redis store answers "unavailable" at once after a failed call, so an
#: outage costs one timeout a second at most, not one per request.
_RETRY_AFTER_S = 1.0

Index = tuple[str, IndexItem]


@dataclass(frozen=True, slots=True)
class CacheEntry:
    """One cached answer.

    Attributes:
        body: the ``chat.completion`` as JSON.
        deployment: the deployment that produced it.
        prompt_tokens / completion_tokens: what it cost upstream (for the saving shown
            in usage when it is served again).
        created_at: Unix time (s) it was stored.
    """

    body: str
    deployment: str
    prompt_tokens: int
    completion_tokens: int
    created_at: float

    def dumps(self) -> str:
        return orjson.dumps(asdict(self)).decode()

    @classmethod
    def loads(cls, text: str) -> CacheEntry:
        """Raises ValueError / TypeError when ``text`` is no entry."""
        return cls(**orjson.loads(text))


class ResponseStore(Protocol):
    """A cache's storage. Redis-backed stores raise StateUnavailable when unreachable."""

    async def get(self, key: str) -> CacheEntry | None:
        """The entry stored under ``key``, None when absent or expired."""

    async def put(self, key: str, entry: CacheEntry, ttl_s: float,
                  index: Index | None = None) -> None:
        """Store ``entry`` for ``ttl_s`` seconds; ``index`` = (bucket, item) also adds
        the prompt to that bucket's semantic index."""

    async def items(self, bucket: str) -> list[IndexItem]:
        """The bucket's semantic index, newest first."""

    async def aclose(self) -> None: ...


class LocalStore:
    """An in-process LRU with expiry (the default store).

    Args:
        max_entries: answers kept; the least recently used goes first. The semantic
            index keeps as many prompts in all, at most :data:`BUCKET_LIMIT` a bucket.
        clock: monotonic seconds (tests pass a fake one).
    """

    def __init__(self, max_entries: int, *, clock: Callable[[], float] = time.monotonic):
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[CacheEntry, float]] = OrderedDict()
        self._buckets: OrderedDict[str, deque[tuple[IndexItem, float]]] = OrderedDict()
        self._indexed = 0

    def __repr__(self) -> str:
        return f"LocalStore(max_entries={self.max_entries}, entries={len(self._entries)})"

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> CacheEntry | None:
        found = self._entries.get(key)
        if found is None:
            return None
        entry, expires = found
        if expires <= self._clock():
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return entry

    async def put(self, key: str, entry: CacheEntry, ttl_s: float,
                  index: Index | None = None) -> None:
        expires = self._clock() + ttl_s
        self._entries[key] = (entry, expires)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        if index is not None:
            self._index(index[0], index[1], expires)

    def _index(self, bucket: str, item: IndexItem, expires: float) -> None:
        rows = self._buckets.get(bucket)
        if rows is None:
            rows = self._buckets[bucket] = deque()
        self._buckets.move_to_end(bucket)
        rows.appendleft((item, expires))
        self._indexed += 1
        if len(rows) > BUCKET_LIMIT:
            rows.pop()
            self._indexed -= 1
        while self._indexed > self.max_entries:  # the least recently added-to bucket
            oldest = next(iter(self._buckets.values()))
            oldest.pop()
            self._indexed -= 1
            if not oldest:
                self._buckets.popitem(last=False)

    async def items(self, bucket: str) -> list[IndexItem]:
        rows = self._buckets.get(bucket)
        if not rows:
            return []
        now = self._clock()
        while rows and rows[-1][1] <= now:  # the oldest expire first
            rows.pop()
            self._indexed -= 1
        return [item for item, _ in rows]

    async def aclose(self) -> None:
        self._entries.clear()
        self._buckets.clear()
        self._indexed = 0


#: SET the entry with its expiry; with an index item, push it on the bucket's list,
#: trim the list and let it live as long as its longest-lived entry (the expiry only
#: ever grows: a request with a short ttl_s must not drop other entries' index). One
#: round trip, atomic.
_PUT = """
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then
  redis.call('LPUSH', KEYS[2], ARGV[3])
  redis.call('LTRIM', KEYS[2], 0, tonumber(ARGV[4]) - 1)
  if redis.call('PTTL', KEYS[2]) < tonumber(ARGV[2]) then
    redis.call('PEXPIRE', KEYS[2], ARGV[2])
  end
end
return 1
"""


class RedisStore:
    """Entries as Redis strings with an expiry, shared by every replica; each semantic
    bucket a Redis list of JSON items trimmed to :data:`BUCKET_LIMIT`.

    Keys: ``<prefix>cache:<key>`` and ``<prefix>cache-index:<bucket>`` (both SHA-256 hex,
    so no prompt text is in a key name). Calls raise StateUnavailable when Redis is
    unreachable, and for :data:`_RETRY_AFTER_S` after that without trying, so an outage
    never holds requests up for more than one timeout a second.
    """

    def __init__(self, shared: SharedRedis, *, clock: Callable[[], float] = time.monotonic):
        self.shared = shared
        self._clock = clock
        self._put = shared.script(_PUT)
        self._skip_until = 0.0

    def __repr__(self) -> str:
        return f"RedisStore({self.shared!r})"

    async def _run(self, awaitable: Any) -> Any:
        if self._clock() < self._skip_until:
            close = getattr(awaitable, "close", None)
            if close is not None:
                close()  # never awaited: say so, or Python warns
            raise StateUnavailable("the shared cache (Redis) was unreachable a moment ago")
        try:
            return await self.shared.run(awaitable)
        except StateUnavailable:
            self._skip_until = self._clock() + _RETRY_AFTER_S
            raise

    async def get(self, key: str) -> CacheEntry | None:
        text = await self._run(self.shared.client.get(self.shared.key("cache", key)))
        if text is None:
            return None
        try:
            return CacheEntry.loads(text)
        except (ValueError, TypeError):
            log.warning("dropping a malformed cache entry")
            return None

    async def put(self, key: str, entry: CacheEntry, ttl_s: float,
                  index: Index | None = None) -> None:
        bucket, item = index if index is not None else ("", None)
        row = "" if item is None else orjson.dumps(
            {"k": item.key, "t": item.text, "v": encode_vector(item.vector)}).decode()
        await self._run(self._put(
            keys=[self.shared.key("cache", key), self.shared.key("cache-index", bucket)],
            args=[entry.dumps(), max(1, round(ttl_s * 1000)), row, BUCKET_LIMIT]))

    async def items(self, bucket: str) -> list[IndexItem]:
        rows = await self._run(self.shared.client.lrange(
            self.shared.key("cache-index", bucket), 0, BUCKET_LIMIT - 1))
        out: list[IndexItem] = []
        for row in rows:
            try:
                data = orjson.loads(row)
                out.append(IndexItem(str(data["k"]), str(data["t"]), decode_vector(data["v"])))
            except (ValueError, KeyError, TypeError):
                continue  # written by another version, or damaged: never a hit
        return out

    async def aclose(self) -> None:
        return None  # the SharedRedis belongs to the service


def response_store(settings: CacheSettings, shared: SharedRedis | None) -> ResponseStore:
    """A :class:`RedisStore` when the replicas share a Redis, else a :class:`LocalStore`."""
    if shared is not None:
        return RedisStore(shared)
    return LocalStore(settings.max_entries)
