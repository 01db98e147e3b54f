"""How much request body the gateway holds at once.

LiteLLM's proxy users report base64 images slowing it to 10 s and more; a gateway that
takes every large body it is sent at once holds bursts of them in memory together (20
requests with a 9.5 MB image are 254 MB of base64 before any processing). modelmix admits
large bodies against a byte budget (``server.max_inflight_body_bytes``) before reading
them: a request that does not fit waits with its body unread in the socket (TCP flow
control pauses the client's upload), so memory stays bounded and CPU-bound work is not
slowed further by contention. Bodies up to :data:`SMALL_BODY` bytes skip the budget.
"""

from __future__ import annotations

import asyncio
from collections import deque

from modelmix.errors import GatewayBusy

__all__ = ["SMALL_BODY", "BodyBudget", "BodyHold"]

#: Bodies up to this size (bytes; chat text) are not counted against the budget.
SMALL_BODY = 1024 * 1024


class BodyHold:
    """Bytes held for one request; :meth:`release` (idempotent) gives them back."""

    def __init__(self, budget: BodyBudget | None, size: int):
        self._budget, self.size = budget, size

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget._give_back(self.size)


class BodyBudget:
    """A byte budget shared by the gateway's requests, first come, first served.

    Args:
        limit: bytes of large bodies held at once; a body larger than the whole budget
            is admitted alone.
    """

    def __init__(self, limit: int):
        self.limit = limit
        self.used = 0
        self._waiting: deque[tuple[int, asyncio.Future[None]]] = deque()

    async def hold(self, declared: int | None, *, fallback: int, timeout_s: float
                   ) -> BodyHold:
        """Room for a body of ``declared`` bytes (``fallback`` when the client sent no
        Content-Length), waiting up to ``timeout_s`` seconds behind earlier requests.

        Raises:
            GatewayBusy: no room within ``timeout_s`` (503 ``server_busy``).
        """
        size = fallback if declared is None else declared
        if size <= SMALL_BODY:
            return BodyHold(None, 0)
        size = min(size, self.limit)
        if not self._waiting and self.used + size <= self.limit:
            self.used += size
            return BodyHold(self, size)
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append((size, admitted))
        try:
            await asyncio.wait_for(admitted, timeout_s)
        except TimeoutError:
            self._wake()  # those behind it may fit now
            raise GatewayBusy(
                f"the gateway is busy with other large requests (no room for a "
                f"{size // 1024} KiB body within {timeout_s:g}s); retry later") from None
        except BaseException:  # cancelled (the client left) after being admitted
            if admitted.done() and not admitted.cancelled():
                self._give_back(size)
            raise
        return BodyHold(self, size)

    def _give_back(self, size: int) -> None:
        self.used -= size
        self._wake()

    def _wake(self) -> None:
        while self._waiting:
            size, admitted = self._waiting[0]
            if admitted.done():  # timed out or cancelled: it left the queue
                self._waiting.popleft()
                continue
            if self.used + size > self.limit:
                return
            self._waiting.popleft()
            self.used += size
            admitted.set_result(None)
