"""Test doubles shipped with the library: :class:`FakeProvider` implements
:class:`~modelmix.providers.Provider` without any network, so routing, policy and
reliability can be tested in-process; :class:`ListSink` keeps usage records in memory.

Example::

    fake = FakeProvider(dep, reply="hello", fail_times=2, error=UpstreamUnavailable("boom"))
    client = AsyncClient(config, providers={dep.name: fake})
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from modelmix.catalog import Deployment
from modelmix.errors import ProviderError
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ResponseMessage,
    Usage,
    new_completion_id,
    now,
)
from modelmix.providers import Provider
from modelmix.store._records import UsageRecord

__all__ = ["FakeProvider", "ListSink"]


class FakeProvider(Provider):
    """Answers ``reply`` (split on spaces when streaming) after failing ``fail_times``.

    ``reply`` may be a function of the request (what the last user message asks), for
    tests of systems whose steps send different prompts to one deployment.

    Attributes:
        calls: requests received, in order.
    """

    def __init__(
        self,
        deployment: Deployment,
        *,
        reply: str | Callable[[ChatRequest], str] = "ok",
        fail_times: int = 0,
        error: ProviderError | None = None,
        delay_s: float = 0.0,
        prompt_tokens: int = 10,
    ):
        super().__init__(deployment)
        self.reply = reply
        self.fail_times = fail_times
        self.error = error or ProviderError("fake failure", deployment=deployment.name)
        self.delay_s = delay_s
        self.prompt_tokens = prompt_tokens
        self.calls: list[ChatRequest] = []

    async def _maybe_fail(self, request: ChatRequest) -> None:
        self.calls.append(request)
        if self.delay_s:
            await asyncio.sleep(self.delay_s)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise self.error

    def _text(self, request: ChatRequest) -> str:
        return self.reply(request) if callable(self.reply) else self.reply

    def _usage(self, text: str) -> Usage:
        completion = len(text.split())
        return Usage(prompt_tokens=self.prompt_tokens, completion_tokens=completion,
                     total_tokens=self.prompt_tokens + completion)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self._maybe_fail(request)
        text = self._text(request)
        return ChatResponse(
            id=new_completion_id(), created=now(), model=self.deployment.model,
            choices=[ChatChoice(message=ResponseMessage(content=text),
                                finish_reason="stop")],
            usage=self._usage(text),
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self._maybe_fail(request)
        cid, created, model = new_completion_id(), now(), self.deployment.model
        reply = self._text(request)
        words = reply.split(" ")
        for i, word in enumerate(words):
            text = word if i == 0 else " " + word
            yield ChatChunk(id=cid, created=created, model=model,
                            choices=[ChunkChoice(delta=Delta(content=text))])
        yield ChatChunk(id=cid, created=created, model=model,
                        choices=[ChunkChoice(delta=Delta(), finish_reason="stop")])
        yield ChatChunk(id=cid, created=created, model=model, choices=[],
                        usage=self._usage(reply))


class ListSink:
    """A :class:`~modelmix.store.UsageSink` that keeps every record in ``records``
    (``closed`` tells whether :meth:`close` was called)."""

    def __init__(self) -> None:
        self.records: list[UsageRecord] = []
        self.closed = False

    def record(self, rec: UsageRecord) -> None:
        self.records.append(rec)

    def close(self) -> None:
        self.closed = True

    def wait_for(self, count: int, timeout: float = 5.0) -> list[UsageRecord]:
        """The records once there are ``count`` of them, or after ``timeout`` (s): a server
        in another thread records a request after answering it."""
        deadline = time.monotonic() + timeout
        while len(self.records) < count and time.monotonic() < deadline:
            time.sleep(0.01)
        return self.records
