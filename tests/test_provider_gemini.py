"""GeminiProvider against recorded Gemini API exchanges replayed on loopback.

The replay server answers with bodies shaped as the Gemini API reference shows them
(tests/recorded/gemini/) and captures what the official google-genai SDK sent.
"""

from __future__ import annotations

import base64
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
from modelmix.providers.gemini import GeminiProvider
from modelmix.server import create_app
from recorded._replay import Exchange, ReplayServer

KEY_ENV = "MODELMIX_TEST_GEMINI_KEY"
MODEL = "gemini-2.5-flash"
PNG_B64 = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJ"
           "RU5ErkJggg==")  # a 1x1 PNG
SIGNATURE = "Q2lZQmNzanZQd2RlYWRiZWVm"
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
    monkeypatch.setenv(KEY_ENV, "AIza-test-key")
    for name in ("GOOGLE_API_KEY", "GEMINI_API_KEY", "GOOGLE_GENAI_USE_VERTEXAI",
                 "GOOGLE_GENAI_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    server[0].reset()
    return server[0]


def deployment(url: str, **kw: Any) -> Deployment:
    fields: dict[str, Any] = {"name": "flash", "provider": "gemini", "model": MODEL,
                              "base_url": url, "api_key_env": KEY_ENV, **kw}
    return Deployment(**fields)


@pytest.fixture()
async def provider(server: tuple[ReplayServer, str], replay: ReplayServer
                   ) -> AsyncIterator[GeminiProvider]:
    prov = GeminiProvider(deployment(server[1]))
    yield prov
    await prov.aclose()


def chat(**body: Any) -> ChatRequest:
    return checks.chat("flash", **body)


# --- plain completion --------------------------------------------------------------------


async def test_audio_and_pdf_parts_go_as_inline_data(
        provider: GeminiProvider, replay: ReplayServer) -> None:
    """The default catalog's Gemini deployment declares audio input: the adapter must
    express it (and PDFs), not fail the request a router sent it."""
    replay.add("gemini/generate_text.json")
    wav, pdf = base64.b64encode(b"RIFF-wav").decode(), base64.b64encode(b"%PDF-1.4").decode()
    await provider.complete(chat(messages=[{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": wav, "format": "wav"}},
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{pdf}",
                                  "filename": "a.pdf"}}]}]))
    assert replay.last.json["contents"][0]["parts"] == [
        {"inlineData": {"mime_type": "audio/wav", "data": wav}},
        {"inlineData": {"mime_type": "application/pdf", "data": pdf}}]


async def test_complete_translates_request_and_response(
        provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/generate_text.json")
    response = await provider.complete(chat(
        messages=[
            {"role": "system", "content": "You are terse."},
            {"role": "developer", "content": "Answer in English."},
            {"role": "user", "content": [
                {"type": "text", "text": "What is in these images?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG_B64}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg?s=1"}},
            ]},
            {"role": "assistant", "content": "A cat?"},
            {"role": "user", "content": "Describe it."},
        ],
        stop="END", temperature=0.2, top_p=0.9, max_tokens=256, seed=7))

    sent = replay.last
    assert sent.method == "POST"
    assert sent.path == f"/v1/models/{MODEL}:generateContent"  # the SDK's default version
    assert sent.headers["x-goog-api-key"] == "AIza-test-key"
    body = sent.json
    assert body["systemInstruction"]["parts"] == [{"text": "You are terse.\n\nAnswer in English."}]
    assert body["contents"] == [
        {"role": "user", "parts": [
            {"text": "What is in these images?"},
            {"inlineData": {"mime_type": "image/png", "data": PNG_B64}},
            {"fileData": {"file_uri": "https://example.com/cat.jpg?s=1",
                          "mime_type": "image/jpeg"}},
        ]},
        {"role": "model", "parts": [{"text": "A cat?"}]},
        {"role": "user", "parts": [{"text": "Describe it."}]},
    ]
    assert body["generationConfig"] == {
        "temperature": 0.2, "topP": 0.9, "maxOutputTokens": 256, "stopSequences": ["END"],
        "seed": 7}
    assert "tools" not in body

    assert response.id == "mKq0aN3cNqSbz7IPtvrVqQk"
    assert response.model == "gemini-2.5-flash"
    assert response.text == "The image shows a small orange cat sitting on a windowsill."
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None
    assert (response.usage.prompt_tokens, response.usage.completion_tokens,
            response.usage.total_tokens) == (271, 29, 300)  # thinking tokens are output


@pytest.mark.parametrize(("fixture", "finish", "text"), [
    ("generate_max_tokens", "length", "Once upon a"),
    ("generate_safety", "content_filter", ""),
    ("generate_prompt_blocked", "content_filter", ""),
])
async def test_finish_reasons(provider: GeminiProvider, replay: ReplayServer, fixture: str,
                              finish: str, text: str) -> None:
    replay.add(f"gemini/{fixture}.json")
    response = await provider.complete(chat())
    assert response.choices[0].finish_reason == finish
    assert response.text == text


async def test_json_modes(provider: GeminiProvider, replay: ReplayServer) -> None:
    schema = {"type": "object", "properties": {"name": {"type": "string"}},
              "required": ["name"]}
    replay.add("gemini/generate_text.json", "gemini/generate_text.json")
    await provider.complete(chat(response_format={"type": "json_object"}))
    assert replay.last.json["generationConfig"] == {"responseMimeType": "application/json"}
    await provider.complete(chat(response_format={
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema}}))
    assert replay.last.json["generationConfig"] == {
        "responseMimeType": "application/json", "responseJsonSchema": schema}


async def test_base_url_with_api_version(server: tuple[ReplayServer, str],
                                         replay: ReplayServer) -> None:
    prov = create_provider(deployment(server[1] + "/v1beta/"))
    assert isinstance(prov, GeminiProvider)
    replay.add("gemini/generate_text.json")
    try:
        await prov.complete(chat())
    finally:
        await prov.aclose()
    assert replay.last.path == f"/v1beta/models/{MODEL}:generateContent"


# --- tools -------------------------------------------------------------------------------


async def test_tools_and_function_call(provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/generate_function_call.json")
    response = await provider.complete(chat(
        messages=[{"role": "user", "content": "Weather in Boston?"}], tools=[WEATHER_TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}}))

    body = replay.last.json
    # The SDK sends declarations with proto field names (snake_case), which the API's
    # proto3 JSON parser accepts as it does lowerCamelCase.
    assert body["tools"] == [{"functionDeclarations": [{
        "name": "get_weather", "description": "Get the current weather in a given location",
        "parameters_json_schema": WEATHER_TOOL["function"]["parameters"]}]}]
    assert body["toolConfig"] == {"functionCallingConfig": {
        "mode": "ANY", "allowedFunctionNames": ["get_weather"]}}

    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls"  # Gemini says STOP
    assert choice.message.content == "Let me look that up."
    calls = choice.message.tool_calls or []
    assert len(calls) == 1 and calls[0]["id"].startswith("call_")
    assert calls[0]["type"] == "function"
    assert calls[0]["function"]["name"] == "get_weather"
    assert json.loads(calls[0]["function"]["arguments"]) == {"location": "Boston, MA",
                                                             "unit": "celsius"}
    assert calls[0]["extra_content"] == {"google": {"thought_signature": SIGNATURE}}


@pytest.mark.parametrize(("choice", "mode"), [("auto", "AUTO"), ("none", "NONE"),
                                              ("required", "ANY")])
async def test_tool_choice_modes(provider: GeminiProvider, replay: ReplayServer, choice: str,
                                 mode: str) -> None:
    replay.add("gemini/generate_text.json")
    await provider.complete(chat(tools=[WEATHER_TOOL], tool_choice=choice))
    assert replay.last.json["toolConfig"] == {"functionCallingConfig": {"mode": mode}}


async def test_tool_results_round_trip(provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/generate_after_tool.json")
    response = await provider.complete(chat(
        tools=[WEATHER_TOOL],
        messages=[
            {"role": "user", "content": "Weather in Boston and Paris?"},
            {"role": "assistant", "content": None, "tool_calls": [
                {"id": "call_b", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location": "Boston"}'},
                 "extra_content": {"google": {"thought_signature": SIGNATURE}}},
                {"id": "call_p", "type": "function",
                 "function": {"name": "get_weather", "arguments": '{"location": "Paris"}'}},
            ]},
            {"role": "tool", "tool_call_id": "call_b", "content": '{"temp_c": 15}'},
            {"role": "tool", "tool_call_id": "call_p", "content": "22 C, sunny"},
        ]))

    assert replay.last.json["contents"] == [
        {"role": "user", "parts": [{"text": "Weather in Boston and Paris?"}]},
        {"role": "model", "parts": [
            {"functionCall": {"id": "call_b", "name": "get_weather",
                              "args": {"location": "Boston"}},
             "thoughtSignature": SIGNATURE},
            {"functionCall": {"id": "call_p", "name": "get_weather",
                              "args": {"location": "Paris"}}},
        ]},
        {"role": "user", "parts": [  # both results in one turn, names looked up by id
            {"functionResponse": {"id": "call_b", "name": "get_weather",
                                  "response": {"temp_c": 15}}},
            {"functionResponse": {"id": "call_p", "name": "get_weather",
                                  "response": {"output": "22 C, sunny"}}},
        ]},
    ]
    assert response.text == "It is 15 degrees and foggy in Boston."


@pytest.mark.parametrize("messages", [
    [{"role": "user", "content": [{"type": "input_audio",
                                   "input_audio": {"data": "AAAA", "format": "flac"}}]}],
    [{"role": "user", "content": [{"type": "file", "file": {"file_id": "file-1"}}]}],
    [{"role": "user", "content": [{"type": "image_url",
                                   "image_url": {"url": "data:image/png;base64,%%%"}}]}],
    [{"role": "user", "content": "hi"},
     {"role": "tool", "tool_call_id": "call_unknown", "content": "x"}],
])
async def test_untranslatable_requests_are_bad_requests(
        provider: GeminiProvider, replay: ReplayServer, messages: list[Any]) -> None:
    with pytest.raises(ProviderBadRequest):
        await provider.complete(chat(messages=messages))
    assert replay.captured == []


# --- streaming ---------------------------------------------------------------------------


async def test_stream_text(provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/stream_text.sse")
    chunks = await collect(provider, chat(stream=True))

    sent = replay.last
    assert sent.path == f"/v1/models/{MODEL}:streamGenerateContent"
    assert sent.query == "alt=sse"
    assert sent.json["contents"] == [{"role": "user", "parts": [{"text": "Hello"}]}]
    assert chunks[0].choices[0].delta.role == "assistant"
    assert "".join(c.text for c in chunks) == "The quick brown fox jumps."
    assert {c.id for c in chunks} == {"st0aN3cNqSbz7IPtvrVqQk"}
    assert chunks[-2].choices[0].finish_reason == "stop"
    usage = chunks[-1]
    assert usage.choices == [] and usage.usage is not None
    assert (usage.usage.prompt_tokens, usage.usage.completion_tokens,
            usage.usage.total_tokens) == (9, 6, 15)


async def test_stream_function_calls(provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/stream_function_call.sse")
    chunks = await collect(provider, chat(stream=True, tools=[WEATHER_TOOL]))

    assert "".join(c.text for c in chunks) == "Checking the weather."
    deltas = tool_call_deltas(chunks)
    assert [d["index"] for d in deltas] == [0, 1]
    assert all(d["type"] == "function" and d["id"].startswith("call_") for d in deltas)
    assert [json.loads(d["function"]["arguments"]) for d in deltas] == [
        {"location": "Boston, MA"}, {"location": "Paris"}]
    assert deltas[0]["extra_content"] == {"google": {"thought_signature": SIGNATURE}}
    assert "extra_content" not in deltas[1]
    assert chunks[-2].choices[0].finish_reason == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 30


async def test_stream_error_mid_stream(provider: GeminiProvider, replay: ReplayServer) -> None:
    replay.add("gemini/stream_error.sse")
    seen: list[ChatChunk] = []
    with pytest.raises(UpstreamUnavailable, match=r"mid-stream.*overloaded") as info:
        async for chunk in provider.stream(chat(stream=True)):
            seen.append(chunk)
    assert "".join(c.text for c in seen) == "The"
    assert info.value.retryable and info.value.deployment == "flash"


async def test_stream_cut_off_without_finish_reason(provider: GeminiProvider,
                                                    replay: ReplayServer) -> None:
    replay.add("gemini/stream_truncated.sse")
    with pytest.raises(UpstreamUnavailable, match="finishReason"):
        await collect(provider, chat(stream=True))


async def test_abandoned_stream_releases_the_connection(provider: GeminiProvider,
                                                      replay: ReplayServer) -> None:
    await checks.assert_abandoned_stream_released(
        provider, replay, chat(stream=True), "gemini/stream_text.sse",
        "gemini/generate_text.json")


# --- errors ------------------------------------------------------------------------------

ERROR_CASES = [
    ("error_400_token_count", ContextTooLong, 400),
    ("error_400_invalid_argument", ProviderBadRequest, 400),
    ("error_400_api_key_invalid", ProviderAuthError, 400),
    ("error_403_permission_denied", ProviderAuthError, 403),
    ("error_404_not_found", ProviderBadRequest, 404),
    ("error_429_resource_exhausted", RateLimited, 429),
    ("error_500_internal", UpstreamUnavailable, 500),
    ("error_503_unavailable", UpstreamUnavailable, 503),
    ("error_504_deadline_exceeded", ProviderTimeout, 504),
]


@pytest.mark.parametrize("streaming", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize(("fixture", "error", "status"), ERROR_CASES,
                         ids=[c[0] for c in ERROR_CASES])
async def test_error_mapping(provider: GeminiProvider, replay: ReplayServer, streaming: bool,
                             fixture: str, error: type[ProviderError], status: int) -> None:
    exc = await checks.assert_error_mapped(provider, replay, chat(stream=streaming),
                                           f"gemini/{fixture}.json", error)
    if status == 429:
        assert isinstance(exc, RateLimited) and exc.retry_after == 37.0  # from RetryInfo
    assert exc.retryable == (status in (429, 500, 503, 504))


async def test_connection_refused_is_unavailable(replay: ReplayServer) -> None:
    prov = GeminiProvider(deployment(f"http://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(UpstreamUnavailable) as info:
            await prov.complete(chat())
        assert info.value.retryable
    finally:
        await prov.aclose()


async def test_slow_upstream_is_a_timeout(server: tuple[ReplayServer, str],
                                          replay: ReplayServer) -> None:
    prov = GeminiProvider(deployment(server[1], timeout_s=0.3))
    replay.add(Exchange.load("gemini/generate_text.json", delay_s=1.5))
    try:
        with pytest.raises(ProviderTimeout):
            await prov.complete(chat())
    finally:
        await prov.aclose()


async def test_missing_key_env_is_an_auth_error(server: tuple[ReplayServer, str],
                                                replay: ReplayServer,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(KEY_ENV)
    prov = GeminiProvider(deployment(server[1]))
    with pytest.raises(ProviderAuthError, match=KEY_ENV):
        await prov.complete(chat())
    no_env = GeminiProvider(deployment(server[1], api_key_env=None))
    with pytest.raises(ProviderAuthError, match="no Gemini API key"):
        await no_env.complete(chat())
    assert replay.captured == []


async def test_rotated_key_is_used(provider: GeminiProvider, replay: ReplayServer,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    replay.add("gemini/generate_text.json", "gemini/generate_text.json")
    await provider.complete(chat())
    monkeypatch.setenv(KEY_ENV, "AIza-rotated")
    await provider.complete(chat())
    assert replay.last.headers["x-goog-api-key"] == "AIza-rotated"


# --- through the gateway -----------------------------------------------------------------


def test_gateway_relays_gemini_stream(server: tuple[ReplayServer, str],
                                      replay: ReplayServer) -> None:
    cfg = config_from_dict({"deployments": [{
        "name": "flash", "provider": "gemini", "model": MODEL, "base_url": server[1],
        "api_key_env": KEY_ENV, "supports_tools": True, "context_window": 1048576}]})
    replay.add("gemini/stream_function_call.sse")
    with serve_app(create_app(service=ChatService(cfg))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x")
        chunks = list(client.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "weather?"}],
            tools=[WEATHER_TOOL], stream=True, stream_options={"include_usage": True}))
    calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
    assert [t.index for t in calls] == [0, 1]
    assert calls[0].function is not None and calls[0].function.name == "get_weather"
    extra = calls[0].model_extra or {}
    signature = extra["extra_content"]["google"]["thought_signature"]
    assert base64.b64decode(signature)  # survives the gateway for the next turn
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 104


def test_gateway_retries_a_transient_failure(server: tuple[ReplayServer, str],
                                             replay: ReplayServer) -> None:
    cfg = config_from_dict({"deployments": [
        {"name": "flash", "provider": "gemini", "model": MODEL,
         "base_url": server[1], "api_key_env": KEY_ENV}]})
    replay.add("gemini/error_503_unavailable.json", "gemini/generate_text.json")
    with serve_app(create_app(service=ChatService(cfg))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        reply = client.chat.completions.create(
            model="flash", messages=[{"role": "user", "content": "hi"}])
    assert reply.choices[0].finish_reason == "stop"
    assert len(replay.captured) == 2  # the executor retried the retryable failure
