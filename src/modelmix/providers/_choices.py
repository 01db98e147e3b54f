"""Several choices (``n > 1``) from any deployment, in one place.

OpenAI-compatible upstreams take ``n`` themselves: it is forwarded, and when one answers
with fewer choices than asked (some servers ignore ``n``), the missing ones are asked
for one by one. Other adapters (anthropic, gemini, local) get one call per choice, all at
once (the first failure cancels the others), or one after another when the deployment
has a ``max_concurrency``: the executor holds one concurrency slot for the whole request
(and counts it as ``n`` requests against ``rpm``, engine/_executor.py), so its calls
must not overlap. The answers are merged into one: choices
indexed ``0..n-1``, usage summed (a fan-out bills the prompt once per call, and so does
the merged usage).

A stream fans out one choice after another (choice 0 streams to its end, then choice
1...), each chunk carrying its choice's ``index``; the usage of every call is summed into
one last usage chunk. Calls are not interleaved, so the n-th choice's first token waits
for the others: that keeps one upstream stream open at a time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Iterator, Mapping
from dataclasses import dataclass, field

from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, Usage
from modelmix.providers.base import Provider

__all__ = ["ChoicesProvider", "with_choices"]


class ChoicesProvider(Provider):
    """``inner`` answering a request's ``n`` choices (see the module docstring); a request
    with one choice passes through unchanged.

    It never closes the provider it wraps (that one is shared by every request).

    Example::

        provider = ChoicesProvider(create_provider(dep))
        response = await provider.complete(request)   # request.n == 3 -> 3 choices
    """

    def __init__(self, inner: Provider):
        super().__init__(inner.deployment)
        self.inner = inner
        self.native = inner.deployment.openai_compatible
        #: the calls of one request overlap only when the deployment allows it
        self.sequential = inner.deployment.max_concurrency is not None

    def _first(self, request: ChatRequest) -> ChatRequest:
        return request if self.native else _one(request)

    async def complete(self, request: ChatRequest) -> ChatResponse:
        n = request.choices
        if n == 1:
            return await self.inner.complete(request)
        single = _one(request)
        if not self.native:  # every choice at once
            first, *more = await self._all(single, n)
            return _merge(first, more, n)
        first = await self.inner.complete(request)
        missing = n - len(first.choices)
        if missing <= 0:
            return first
        return _merge(first, await self._all(single, missing), n)

    async def _all(self, single: ChatRequest, calls: int) -> list[ChatResponse]:
        """``calls`` answers to ``single``: at once, or one after another."""
        if self.sequential:
            return [await self.inner.complete(single) for _ in range(calls)]
        return await _all([self.inner.complete(single) for _ in range(calls)])

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        n = request.choices
        if n == 1:
            async for chunk in self.inner.stream(request):
                yield chunk
            return
        rounds = _Rounds()
        async for chunk in rounds.relay(self.inner.stream(self._first(request)), n):
            yield chunk
        single = _one(request)
        while rounds.seen < n:
            async for chunk in rounds.relay(self.inner.stream(single), n):
                yield chunk
        if rounds.usage is not None and rounds.last is not None:
            last = rounds.last
            yield ChatChunk(id=rounds.id, created=last.created, model=last.model,
                            choices=[], usage=rounds.usage)


def _one(request: ChatRequest) -> ChatRequest:
    return request.model_copy(update={"n": None})


@dataclass(slots=True)
class _Rounds:
    """A fanned-out stream's state: choices seen so far (the next round's first index),
    its id (the first call's), the usage of every call summed."""

    seen: int = 0
    id: str = ""
    usage: Usage | None = None
    last: ChatChunk | None = None
    _indexes: set[int] = field(default_factory=set)

    async def relay(self, upstream: AsyncIterator[ChatChunk], n: int
                    ) -> AsyncIterator[ChatChunk]:
        """Re-yield one call's chunks with their indexes moved past the earlier rounds'
        (choices beyond ``n`` dropped) and its usage held back for the sum."""
        offset, self._indexes = self.seen, set()
        it = aiter(upstream)
        try:
            async for chunk in it:
                self.id = self.id or chunk.id
                self.last = chunk
                if chunk.usage is not None:
                    self.usage = _add(self.usage, chunk.usage)
                choices = []
                for choice in chunk.choices:
                    index = offset + choice.index
                    if index < n:
                        self._indexes.add(choice.index)
                        choices.append(choice.model_copy(update={"index": index}))
                if choices:
                    yield chunk.model_copy(update={"id": self.id, "choices": choices,
                                                   "usage": None})
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
        self.seen = offset + max(len(self._indexes), 1)  # an empty call still counts


def _add(total: Usage | None, usage: Usage) -> Usage:
    if total is None:
        return usage.model_copy()
    return Usage(prompt_tokens=total.prompt_tokens + usage.prompt_tokens,
                 completion_tokens=total.completion_tokens + usage.completion_tokens,
                 total_tokens=total.total_tokens + usage.total_tokens)


def _merge(first: ChatResponse, more: list[ChatResponse], n: int) -> ChatResponse:
    """``first`` with the choices of ``more`` appended, indexed 0..n-1, usage summed."""
    choices = list(first.choices)
    usage = first.usage
    for response in more:
        choices += response.choices
        if response.usage is not None:
            usage = _add(usage, response.usage)
    indexed = [c.model_copy(update={"index": i}) for i, c in enumerate(choices[:n])]
    return first.model_copy(update={"choices": indexed, "usage": usage})


async def _all(calls: list[Awaitable[ChatResponse]]) -> list[ChatResponse]:
    """Every call's answer, run at once; on the first failure the others are cancelled
    and that failure is raised."""
    tasks = [asyncio.ensure_future(call) for call in calls]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
        for task in tasks:
            if task.done() and not task.cancelled() and (exc := task.exception()):
                raise exc
        return [task.result() for task in tasks]
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


class _WithChoices(Mapping[str, Provider]):
    """``base`` with each provider wrapped in a :class:`ChoicesProvider` (made once)."""

    def __init__(self, base: Mapping[str, Provider]):
        self._base = base
        self._wrapped: dict[str, ChoicesProvider] = {}

    def __getitem__(self, name: str) -> Provider:
        wrapped = self._wrapped.get(name)
        if wrapped is None or wrapped.inner is not self._base[name]:
            wrapped = self._wrapped[name] = ChoicesProvider(self._base[name])
        return wrapped

    def __iter__(self) -> Iterator[str]:
        return iter(self._base)

    def __len__(self) -> int:
        return len(self._base)


def with_choices(base: Mapping[str, Provider]) -> Mapping[str, Provider]:
    """``base`` as requests with ``n > 1`` use it: each provider a :class:`ChoicesProvider`."""
    return _WithChoices(base)
