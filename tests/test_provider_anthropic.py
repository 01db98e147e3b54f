"""AnthropicProvider against recorded Messages API exchanges replayed on loopback.

The replay server answers with bodies shaped as Anthropic's API reference shows them
(tests/recorded/anthropic/) and captures what the official SDK sent, so each test checks
both directions of the translation.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import openai
import pytest

import _provider_checks as checks
from _provider_checks import collect, tool_call_deltas
from _servers import free_port, serve_app
from modelmix.catalog import Deployment, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import (
    ContextTooLong,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest
from modelmix.providers import create_provider
from modelmix.providers.anthropic import DEFAULT_MAX_TOKENS, AnthropicProvider
from modelmix.server import create_app
from recorded._replay import Exchange, ReplayServer

KEY_ENV = "MODELMIX_TEST_ANTHROPIC_KEY"
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
           "RU5ErkJggg==")  # a 1x1 PNG
WEATHER_TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "parameters": {
            "type": "object",
            "properties": {"location": {"type": "string"},
                           "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
            "required": ["location"],
        },
    },
}


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[ReplayServer, str]]:
    replay = ReplayServer()
    with serve_app(replay.app()) as url:
        yield replay, url


@pytest.fixture()
def replay(server: tuple[ReplayServer, str], monkeypatch: pytest.MonkeyPatch) -> ReplayServer:
    monkeypatch.setenv(KEY_ENV, "sk-ant-test-key")
    server[0].reset()
    return server[0]


def deployment(url: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {"name": "claude", "provider": "anthropic",
                              "model": "claude-sonnet-4-6", "base_url": url,
                              "api_key_env": KEY_ENV, **kw}
    return Deployment(**fields)


@pytest.fixture()
async def provider(server: tuple[ReplayServer, str], replay: ReplayServer
                   ) -> AsyncIterator[AnthropicProvider]:
    prov = AnthropicProvider(deployment(server[1], max_output_tokens=1024))
    yield prov
    await prov.aclose()


def chat(**body: Any) -> ChatRequest:
    return checks.chat("claude", **body)


# --- plain completion --------------------------------------------------------------------


async def test_complete_translates_request_and_response(
        provider: AnthropicProvider, replay: ReplayServer) -> None:
    replay.add("anthropic/message_text.json")
    response = await provider.complete(chat(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ]},
        ],
        stop=["\n\nHuman:", "END"], temperature=0.2, top_p=0.9, user="user-42"))

    sent = replay.last
    assert sent.method == "POST" and sent.path == "/v1/messages"
    assert sent.headers["authorization"] == "Bearer sk-ant-test-key"
    assert sent.headers["anthropic-version"]
    assert sent.headers["x-stainless-retry-count"] == "0"
    body = sent.json
    assert body["model"] == "claude-sonnet-4-6"
    assert body["max_tokens"] == 1024  # the deployment's max_output_tokens
    assert body["system"] == "You are terse.\n\nAnswer in English."
    assert body["stop_sequences"] == ["\n\nHuman:", "END"]
    assert body["metadata"] == {"user_id": "user-42"}
    assert "temperature" not in body and "top_p" not in body  # rejected by API 2026-10-21
    assert "stream" not in body or body["stream"] is False
    assert body["messages"] == [{"role": "user", "content": [
        {"type": "text", "text": "What is in these images?"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                     "data": PNG_B64}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    ]}]

    assert response.id == "msg_013Zva2CMHLNnXjNJJKqJ2EF"
    assert response.model == "claude-sonnet-4-5-20250929"
    assert response.text == "Hi! My name is Claude."
    assert response.choices[0].finish_reason == "stop"
    assert response.choices[0].message.tool_calls is None
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens,
            response.usage.total_tokens) == (2100, 503, 2603)  # input includes cache reads


async def test_max_tokens_from_request_or_default(server: tuple[ReplayServer, str],
                                                  replay: ReplayServer) -> None:
    prov = AnthropicProvider(deployment(server[1]))
    try:
        replay.add("anthropic/message_max_tokens.json", "anthropic/message_text.json")
        response = await prov.complete(chat(max_completion_tokens=3))
        assert replay.last.json["max_tokens"] == 3
        assert response.choices[0].finish_reason == "length"
        await prov.complete(chat())
        assert replay.last.json["max_tokens"] == DEFAULT_MAX_TOKENS
    finally:
        await prov.aclose()


async def test_registry_builds_the_adapter(server: tuple[ReplayServer, str],
                                           replay: ReplayServer) -> None:
    prov = create_provider(deployment(server[1]))
    assert isinstance(prov, AnthropicProvider)
    await prov.aclose()


# --- tools -------------------------------------------------------------------------------


async def test_tools_and_tool_choice(provider: AnthropicProvider, replay: ReplayServer) -> None:
    replay.add("anthropic/message_tool_use.json")
    response = await provider.complete(chat(
        messages=[{"role": "user", "content": "What's the weather like in San Francisco?"}],
        tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False))

    body = replay.last.json
    assert body["tools"] == [{
        "name": "get_weather",
        "description": "Get the current weather in a given location",
        "input_schema": WEATHER_TOOL["function"]["parameters"],
    }]
    assert body["tool_choice"] == {"type": "tool", "name": "get_weather",
                                   "disable_parallel_tool_use": True}
    message = response.choices[0].message
    assert response.choices[0].finish_reason == "tool_calls"
    assert message.content == "I'll check the current weather in San Francisco for you."
    assert message.tool_calls == [{
        "id": "toolu_01A09q90qw90lq917835lq9", "type": "function",
        "function": {"name": "get_weather",
                     "arguments": '{"location":"San Francisco, CA","unit":"celsius"}'},
    }]
    assert json.loads(message.tool_calls[0]["function"]["arguments"])["unit"] == "celsius"


@pytest.mark.parametrize(("choice", "expected"), [
    ("auto", {"type": "auto"}),
    ("required", {"type": "any"}),
    ("none", {"type": "none"}),
])
async def test_tool_choice_modes(provider: AnthropicProvider, replay: ReplayServer,
                                 choice: str, expected: dict[str, Any]) -> None:
    replay.add("anthropic/message_text.json")
    await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice=choice))
    assert replay.last.json["tool_choice"] == expected


async def test_tool_results_round_trip(provider: AnthropicProvider,
                                       replay: ReplayServer) -> None:
    replay.add("anthropic/message_after_tool.json")
    response = await provider.complete(chat(
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in San Francisco and Paris?"},
            {"role": "assistant", "content": "Checking both.", "tool_calls": [
                {"id": "toolu_sf", "type": "function",
                 "function": {"name": "get_weather",
                              "arguments": '{"location": "San Francisco, CA"}'}},
                {"id": "toolu_paris", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
            ]},
            {"role": "tool", "tool_call_id": "toolu_sf", "content": "15 C, foggy"},
            {"role": "tool", "tool_call_id": "toolu_paris", "content": "22 C, sunny"},
            {"role": "user", "content": "Summarise."},
        ]))

    assert replay.last.json["messages"] == [
        {"role": "user", "content": [
            {"type": "text", "text": "Weather in San Francisco and Paris?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking both."},
            {"type": "tool_use", "id": "toolu_sf", "name": "get_weather",
             "input": {"location": "San Francisco, CA"}},
            {"type": "tool_use", "id": "toolu_paris", "name": "get_weather",
             "input": {"location": "Paris"}},
        ]},
        {"role": "user", "content": [  # tool results and the next user turn merged
            {"type": "tool_result", "tool_use_id": "toolu_sf", "content": "15 C, foggy"},
            {"type": "tool_result", "tool_use_id": "toolu_paris", "content": "22 C, sunny"},
            {"type": "text", "text": "Summarise."},
        ]},
    ]
    assert "Paris is 22" in response.text
    assert response.choices[0].finish_reason == "stop"


async def test_json_schema_response_format(provider: AnthropicProvider,
                                           replay: ReplayServer) -> None:
    replay.add("anthropic/message_text.json")
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"], "additionalProperties": False}
    await provider.complete(chat(response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema}}))
    assert replay.last.json["output_config"] == {
        "format": {"type": "json_schema", "schema": schema}}


@pytest.mark.parametrize("content", [
    [{"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}],
    [{"type": "image_url", "image_url": {"url": "ftp://example.com/x.png"}}],
    [{"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}}],
])
async def test_untranslatable_content_is_a_bad_request(
        provider: AnthropicProvider, replay: ReplayServer, content: list[Any]) -> None:
    with pytest.raises(ProviderBadRequest):
        await provider.complete(chat(messages=[{"role": "user", "content": content}]))
    assert replay.captured == []


async def test_invalid_tool_arguments_are_a_bad_request(provider: AnthropicProvider,
                                                         replay: ReplayServer) -> None:
    with pytest.raises(ProviderBadRequest, match="not valid JSON"):
        await provider.complete(chat(messages=[
            {"role": "user", "content": "hi"},
            {"role": "assistant", "tool_calls": [
                {"id": "t1", "type": "function",
                 "function": {"name": "get_weather", "arguments": "{oops"}}]},
            {"role": "tool", "tool_call_id": "t1", "content": "x"},
        ]))


# --- streaming ---------------------------------------------------------------------------


async def test_stream_text(provider: AnthropicProvider, replay: ReplayServer) -> None:
    replay.add("anthropic/stream_text.sse")
    chunks = await collect(provider, chat(stream=True))

    assert replay.last.json["stream"] is True
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.text for c in chunks) == "Hello!"
    assert {c.id for c in chunks} == {"msg_1nZdL29xx5MUA1yADyHTEsnR8uuvGzszyY"}
    finish, usage = chunks[-2], chunks[-1]
    assert finish.choices[0].finish_reason == "stop"
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens,
            usage.usage.total_tokens) == (25, 15, 40)


async def test_stream_tool_call(provider: AnthropicProvider, replay: ReplayServer) -> None:
    replay.add("anthropic/stream_tool_use.sse")
    chunks = await collect(provider, chat(stream=True, tools=[WEATHER_TOOL]))

    assert "".join(c.text for c in chunks) == (
        "Okay, let's check the weather for San Francisco, CA:")
    deltas = tool_call_deltas(chunks)
    assert deltas[0] == {"index": 0, "id": "toolu_01T1x1fJ34qAmk2tNTrN7Up6",
                         "type": "function",
                         "function": {"name": "get_weather", "arguments": ""}}
    assert all(d["index"] == 0 and "id" not in d for d in deltas[1:])
    arguments = "".join(d["function"]["arguments"] for d in deltas)
    assert json.loads(arguments) == {"location": "San Francisco, CA", "unit": "fahrenheit"}
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 89


async def test_stream_error_mid_stream(provider: AnthropicProvider,
                                       replay: ReplayServer) -> None:
    replay.add("anthropic/stream_error_overloaded.sse")
    seen: list[ChatChunk] = []
    with pytest.raises(UpstreamUnavailable, match=r"mid-stream.*overloaded_error") as info:
        async for chunk in provider.stream(chat(stream=True)):
            seen.append(chunk)
    assert "".join(c.text for c in seen) == "Hello"
    assert info.value.retryable and info.value.deployment == "claude"


async def test_stream_cut_off_before_message_stop(provider: AnthropicProvider,
                                                  replay: ReplayServer) -> None:
    replay.add("anthropic/stream_truncated.sse")
    with pytest.raises(UpstreamUnavailable, match="message_stop"):
        await collect(provider, chat(stream=True))


async def test_abandoned_stream_releases_the_connection(provider: AnthropicProvider,
                                                      replay: ReplayServer) -> None:
    await checks.assert_abandoned_stream_released(
        provider, replay, chat(stream=True), "anthropic/stream_text.sse",
        "anthropic/message_text.json")


# --- errors ------------------------------------------------------------------------------

ERROR_CASES = [
    ("error_400_prompt_too_long", ContextTooLong, 400),
    ("error_400_invalid_request", ProviderBadRequest, 400),
    ("error_401_authentication", ProviderAuthError, 401),
    ("error_403_permission", ProviderAuthError, 403),
    ("error_404_not_found", ProviderBadRequest, 404),
    ("error_429_rate_limit", RateLimited, 429),
    ("error_500_api_error", UpstreamUnavailable, 500),
    ("error_529_overloaded", UpstreamUnavailable, 529),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(("fixture", "error", "status"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
async def test_error_mapping(provider: AnthropicProvider, replay: ReplayServer, streaming: bool,
                             fixture: str, error: type[ProviderError], status: int) -> None:
    exc = await checks.assert_error_mapped(provider, replay, chat(stream=streaming),
                                           f"anthropic/{fixture}.json", error)
    assert exc.upstream_status == status
    if status == 429:
        assert isinstance(exc, RateLimited) and exc.retry_after == 7.0
    assert exc.retryable == (status in (429, 500, 529))


async def test_connection_refused_is_unavailable(replay: ReplayServer) -> None:
    prov = AnthropicProvider(deployment(f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await prov.complete(chat())
        assert info.value.retryable
    finally:
        await prov.aclose()


async def test_slow_upstream_is_a_timeout(server: tuple[ReplayServer, str],
                                          replay: ReplayServer) -> None:
    prov = AnthropicProvider(deployment(server[1], timeout_s=0.3))
    replay.add(Exchange.load("anthropic/message_text.json", delay_s=1.5))
    try:
        with pytest.raises(ProviderTimeout):
            await prov.complete(chat())
    finally:
        await prov.aclose()


async def test_missing_key_env_is_an_auth_error(server: tuple[ReplayServer, str],
                                                replay: ReplayServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    prov = AnthropicProvider(deployment(server[1]))
    with pytest.raises(ProviderAuthError, match=KEY_ENV):
        await prov.complete(chat())
    assert replay.captured == []


async def test_rotated_key_is_used(provider: AnthropicProvider, replay: ReplayServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    replay.add("anthropic/message_text.json", "anthropic/message_text.json")
    await provider.complete(chat())
    monkeypatch.setenv(KEY_ENV, "sk-ant-rotated")
    await provider.complete(chat())
    assert replay.last.headers["authorization"] == "Bearer sk-ant-rotated"


# --- through the gateway -----------------------------------------------------------------


def test_gateway_relays_anthropic_tool_stream(server: tuple[ReplayServer, str],
                                              replay: ReplayServer) -> None:
    cfg = config_from_dict({"deployments": [{
        "name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-6",
        "base_url": server[1], "api_key_env": KEY_ENV, "supports_tools": True,
        "context_window": 200000}]})
    replay.add("anthropic/stream_tool_use.sse")
    with serve_app(create_app(service=ChatService(cfg))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x")
        stream = client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "weather in SF?"}],
            tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True})
        chunks = list(stream)
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert calls[0].id == "toolu_01T1x1fJ34qAmk2tNTrN7Up6"
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    arguments = "".join((t.function.arguments or "") for t in calls if t.function)
    assert json.loads(arguments)["unit"] == "fahrenheit"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 472 + 89


def test_gateway_retries_a_transient_failure(server: tuple[ReplayServer, str],
                                             replay: ReplayServer) -> None:
    cfg = config_from_dict({"deployments": [
        {"name": "claude", "provider": "anthropic", "model": "claude-sonnet-4-6",
         "base_url": server[1], "api_key_env": KEY_ENV}]})
    replay.add("anthropic/error_529_overloaded.json", "anthropic/message_text.json")
    with serve_app(create_app(service=ChatService(cfg))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="claude", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason == "stop"
    assert len(replay.captured) == 2  # the executor retried the retryable failure
