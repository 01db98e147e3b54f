"""Finished ``/v1/responses`` answers kept for ``previous_response_id`` and ``GET``.

Per process, in memory, bounded: at most ``max_entries`` responses and ``max_bytes`` of
them, each for ``ttl_s`` seconds after it was last used, least recently used first out.
A response belongs to the virtual key that created it: any other key is told it does
not exist. One key may hold at most a quarter of the store (``key_max_entries``,
``key_max_bytes``): past that its own least recently used responses go, so no key can
push every other key's conversations out. Behind a load balancer, pin a conversation to
one replica or send the whole conversation as ``input`` (docs/endpoints.md).
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from modelmix.errors import InvalidRequest
from modelmix.protocol import TurnMessages, named

__all__ = ["ResponseNotFound", "ResponseStore"]


class ResponseNotFound(InvalidRequest):
    """No stored response of this id for this key (expired, evicted, never stored, or
    another key's): 404 ``previous_response_not_found``."""

    status_code = 404
    default_code = "previous_response_not_found"


@dataclass(slots=True)
class _Entry:
    key: str | None
    parent: str | None
    turn: TurnMessages
    response: dict[str, Any]
    size: int
    expires: float


@dataclass(slots=True)
class _Holding:
    """One key's responses, least recently used first, and their bytes."""

    ids: OrderedDict[str, None] = field(default_factory=OrderedDict)
    size: int = 0


class ResponseStore:
    """An LRU of finished responses scoped to virtual keys.

    Args:
        max_entries: responses kept at most.
        max_bytes: their serialised size kept at most (bytes; the oldest go first).
        ttl_s: seconds a response is kept after it was stored or last used.
        key_max_entries: responses one key keeps at most (default: a quarter of
            ``max_entries``).
        key_max_bytes: their size, bytes (default: a quarter of ``max_bytes``).
        clock: monotonic seconds (tests pass their own).
    """

    def __init__(self, *, max_entries: int = 10_000, max_bytes: int = 256 * 2**20,
                 ttl_s: float = 3600.0, key_max_entries: int | None = None,
                 key_max_bytes: int | None = None,
                 clock: Callable[[], float] = time.monotonic):
        self.max_entries, self.max_bytes, self.ttl_s = max_entries, max_bytes, ttl_s
        self.key_max_entries = key_max_entries or max(1, max_entries // 4)
        self.key_max_bytes = key_max_bytes or max(1, max_bytes // 4)
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._keys: dict[str | None, _Holding] = {}
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def put(self, response_id: str, *, key: str | None, parent: str | None,
            turn: TurnMessages, response: dict[str, Any], size: int) -> None:
        """Keep a finished response: ``turn`` is its input and output as chat messages,
        ``parent`` the response it continued, ``size`` its bytes (for the byte bound)."""
        self._drop(response_id)
        self._entries[response_id] = _Entry(key, parent, turn, response, size,
                                            self._clock() + self.ttl_s)
        self._bytes += size
        held = self._keys.setdefault(key, _Holding())
        held.ids[response_id] = None
        held.size += size
        while held.ids and (len(held.ids) > self.key_max_entries
                            or held.size > self.key_max_bytes):
            self._drop(next(iter(held.ids)))  # the key's own least recently used
        while self._entries and (len(self._entries) > self.max_entries
                                 or self._bytes > self.max_bytes):
            self._drop(next(iter(self._entries)))

    def get(self, response_id: str, key: str | None) -> dict[str, Any]:
        """The response object. Raises ResponseNotFound (404)."""
        return self._find(response_id, key, "response_id").response

    def history(self, response_id: str, key: str | None) -> TurnMessages:
        """The chat messages of the conversation ending with ``response_id``, oldest
        first (every turn of its chain). Raises ResponseNotFound (404) when it, or a
        response it continued, is not kept for ``key``."""
        chain: list[tuple[str, _Entry]] = []
        current: str | None = response_id
        while current is not None:
            chain.append((current, self._find(current, key, "previous_response_id")))
            current = chain[-1][1].parent
        for rid, _ in reversed(chain):  # the root least recently used, the last turn most
            self._used(rid, key)
        return [message for _, entry in reversed(chain) for message in entry.turn]

    def delete(self, response_id: str, key: str | None) -> None:
        """Forget a response. Raises ResponseNotFound (404)."""
        self._find(response_id, key, "response_id")
        self._drop(response_id)

    def _find(self, response_id: str, key: str | None, param: str) -> _Entry:
        entry = self._entries.get(response_id)
        now = self._clock()
        if entry is not None and entry.expires <= now:
            self._drop(response_id)
            entry = None
        if entry is None or entry.key != key:
            code = ("previous_response_not_found" if param == "previous_response_id"
                    else "response_not_found")
            raise ResponseNotFound(f"response with {named('id', response_id)} not found "
                                   "(responses are kept per gateway process, per key, for a "
                                   "limited time)", param=param, code=code)
        entry.expires = now + self.ttl_s
        self._used(response_id, key)
        return entry

    def _used(self, response_id: str, key: str | None) -> None:
        self._entries.move_to_end(response_id)
        self._keys[key].ids.move_to_end(response_id)

    def _drop(self, response_id: str) -> None:
        entry = self._entries.pop(response_id, None)
        if entry is None:
            return
        self._bytes -= entry.size
        held = self._keys[entry.key]
        del held.ids[response_id]
        held.size -= entry.size
        if not held.ids:
            del self._keys[entry.key]
