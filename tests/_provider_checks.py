"""Checks shared by the SDK-backed provider adapters' tests (Anthropic, Gemini), each run
against that provider's recorded exchanges on the loopback replay server."""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import pytest

from modelmix.errors import ProviderError
from modelmix.protocol import ChatChunk, ChatRequest
from modelmix.providers.base import Provider
from recorded._replay import Exchange, ReplayServer


def chat(model: str, **body: Any) -> ChatRequest:
    """A validated request for deployment ``model`` ("Hello" unless ``messages`` given)."""
    body.setdefault("model", model)
    body.setdefault("messages", [{"role": "user", "content": "Hello"}])
    return ChatRequest.model_validate(body)


async def collect(provider: Provider, request: ChatRequest) -> list[ChatChunk]:
    return [chunk async for chunk in provider.stream(request)]


def tool_call_deltas(chunks: list[ChatChunk]) -> list[dict[str, Any]]:
    return [call for c in chunks for ch in c.choices for call in ch.delta.tool_calls or []]


async def assert_error_mapped(provider: Provider, replay: ReplayServer, request: ChatRequest,
                              fixture: str, error: type[ProviderError]) -> ProviderError:
    """The recorded error ``fixture`` raises exactly ``error``, after one upstream call (the
    SDK must not retry: the executor does), with the upstream's message kept."""
    replay.add(fixture)
    with pytest.raises(error) as info:
        if request.stream:
            await collect(provider, request)
        else:
            await provider.complete(request)
    exc = info.value
    assert type(exc) is error and exc.deployment == provider.deployment.name
    assert len(replay.captured) == 1
    recorded = json.loads(Exchange.load(fixture).body)
    assert recorded["error"]["message"].strip() in exc.message
    return exc


async def assert_abandoned_stream_released(provider: Provider, replay: ReplayServer,
                                           request: ChatRequest, stream_fixture: str,
                                           complete_fixture: str) -> None:
    """Closing a stream after its first chunk (what the executor does when the client goes
    away) leaves the provider able to serve the next request."""
    replay.add(stream_fixture, complete_fixture)
    stream = provider.stream(request)
    assert isinstance(stream, AsyncGenerator)
    first = await anext(stream)
    assert first.choices[0].delta.role == "assistant"
    await stream.aclose()
    answer = await provider.complete(request.model_copy(update={"stream": False}))
    assert answer.choices[0].finish_reason == "stop"
