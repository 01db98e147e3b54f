"""Two "replicas" in one test: two ChatService instances, each with its own Redis pool and
pub/sub listener (as two gateway processes have), over one redis-server and real
loopback upstreams (tests/faulty_upstream.py, which can also count its peak
concurrency)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from faulty_upstream import FaultyUpstream
from modelmix.catalog import Config, StateSettings, config_from_dict
from modelmix.engine import ChatService, Completion
from modelmix.protocol import ChatRequest
from modelmix.state import SharedRedis


class CountingUpstream(FaultyUpstream):
    """A FaultyUpstream that also knows how many requests it is serving at once, and the
    most it ever served at once (``peak``)."""

    def __init__(self, name: str, **kw: Any):
        super().__init__(name, **kw)
        self.in_flight = 0
        self.peak = 0

    async def _chat(self, request: Any, reader: Any, writer: Any) -> bool:
        self.in_flight += 1  # the upstream's own event loop: no lock needed
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._chat(request, reader, writer)
        finally:
            self.in_flight -= 1


def catalog(ups: dict[str, FaultyUpstream], *, limits: dict[str, dict[str, Any]] | None = None,
            threshold: int = 3, cooldown_s: float = 1.0, timeout_s: float = 5.0,
            on_redis_down: str = "closed", groups: dict[str, list[str]] | None = None,
            state_timeout_s: float = 0.3) -> Config:
    """Deployments on ``ups``; ``state_timeout_s`` bounds each Redis call (short, so the
    Redis-down tests are quick; a test of many concurrent calls on a busy host needs more)."""
    limits = limits or {}
    return config_from_dict({
        "deployments": [{"name": name, "provider": "openai-compatible", "base_url": up.url,
                         "model": f"model-{name}", "timeout_s": timeout_s,
                         **limits.get(name, {})} for name, up in ups.items()],
        "groups": groups or {},
        "reliability": {"num_retries": 0, "timeout_s": timeout_s * 2,
                        "circuit_breaker": {"failure_threshold": threshold,
                                            "cooldown_s": cooldown_s}},
        "state": {"on_redis_down": on_redis_down, "timeout_s": state_timeout_s},
    })


async def replica(config: Config, url: str) -> ChatService:
    """A started replica: its shared state subscribed before ``start``, as the app does."""
    shared = SharedRedis(url, StateSettings(key_prefix="t:", timeout_s=config.state.timeout_s,
                                            on_redis_down=config.state.on_redis_down))
    service = ChatService(config, shared=shared, guard=None)
    await shared.start()
    return service


def request(model: str = "a", **body: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": "hi"}], **body})


async def ask(service: ChatService, model: str = "a", **body: Any) -> Completion | Exception:
    """``service.complete``'s result, or the exception it raised."""
    try:
        return await service.complete(request(model, **body))
    except Exception as exc:  # the tests look at which errors came back
        return exc


async def eventually(check: Callable[[], bool], timeout: float = 2.0) -> float:
    """Seconds until ``check()`` held (polled every 2 ms); fails after ``timeout``."""
    started = time.monotonic()
    while not check():
        assert time.monotonic() - started < timeout, "condition never held"
        await asyncio.sleep(0.002)
    return time.monotonic() - started
