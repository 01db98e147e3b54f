"""``POST /v1/messages`` (Anthropic's Messages API) with the official ``anthropic`` SDK as
the client, against a real gateway on loopback over fake upstreams: text, system, tools,
images, streaming, auth by ``x-api-key`` or Bearer, errors in Anthropic's shape, the data
guard, ``model: auto`` routing, usage rows and ``count_tokens``."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from pydantic import ValidationError

from _guard_fakes import RegexDetector
from _pixels import TINY_PNG
from _servers import serve_app
from modelmix.catalog import Config, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import (
    BudgetExceeded,
    GatewayBusy,
    KeyRateLimited,
    ModelmixError,
    NoDeploymentAvailable,
    PayloadTooLarge,
    PolicyDenied,
    ProviderAuthError,
    ProviderTimeout,
    UpstreamUnavailable,
)
from modelmix.guard import Guard, load_policy
from modelmix.protocol import (
    RAW_ARGUMENTS,
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    MessagesRequest,
    ResponseMessage,
    Usage,
    message_json,
    messages_error_body,
)
from modelmix.server import create_app
from modelmix.server._auth import MasterKeyAuth
from modelmix.testing import FakeProvider, ListSink

KEY = "sk-test-master"
CONFIG = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open", "context_window": 4096},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud",
         "input_modalities": ["text", "image"], "context_window": 100000,
         "supports_tools": True},
    ],
    "router": "rules",
}
WEATHER = {"name": "get_weather", "description": "Weather in a city",
           "input_schema": {"type": "object", "properties": {"city": {"type": "string"}},
                            "required": ["city"]}}


class ToolCaller(FakeProvider):
    """Calls the first tool it is offered (arguments ``{"city": "Paris"}``) until the
    conversation holds a tool result; otherwise replies as FakeProvider does."""

    def _wants_tool(self, request: ChatRequest) -> bool:
        return bool(request.tools) and all(m.role != "tool" for m in request.messages)

    def _tool_name(self, request: ChatRequest) -> str:
        assert request.tools
        return str(request.tools[0]["function"]["name"])

    async def complete(self, request: ChatRequest) -> ChatResponse:
        if not self._wants_tool(request):
            return await super().complete(request)
        await self._maybe_fail(request)
        call = {"id": "call_1", "type": "function",
                "function": {"name": self._tool_name(request), "arguments": '{"city": "Paris"}'}}
        return ChatResponse(id="chatcmpl-1", created=0, model=self.deployment.model,
                            choices=[ChatChoice(message=ResponseMessage(tool_calls=[call]),
                                                finish_reason="tool_calls")],
                            usage=Usage(prompt_tokens=20, completion_tokens=7, total_tokens=27))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        if not self._wants_tool(request):
            async for chunk in super().stream(request):
                yield chunk
            return
        await self._maybe_fail(request)

        def chunk(delta: Delta | None, finish: str | None = None,
                  usage: Usage | None = None) -> ChatChunk:
            choices = [ChunkChoice(delta=delta, finish_reason=finish)] if delta else []
            return ChatChunk(id="chatcmpl-2", created=0, model=self.deployment.model,
                             choices=choices, usage=usage)

        yield chunk(Delta(role="assistant", content=""))
        yield chunk(Delta(content="Let me check."))
        yield chunk(Delta(tool_calls=[{"index": 0, "id": "call_9", "type": "function",
                                       "function": {"name": self._tool_name(request),
                                                    "arguments": ""}}]))
        for piece in ('{"city": ', '"Paris"}'):
            yield chunk(Delta(tool_calls=[{"index": 0, "function": {"arguments": piece}}]))
        yield chunk(Delta(), finish="tool_calls")
        yield chunk(None, usage=Usage(prompt_tokens=20, completion_tokens=7, total_tokens=27))


class BreaksMidStream(FakeProvider):
    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        async for chunk in super().stream(request):
            yield chunk
            raise UpstreamUnavailable("connection reset", deployment=self.deployment.name)


@dataclass
class Gateway:
    url: str
    fakes: dict[str, FakeProvider]
    sink: ListSink

    def client(self, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("api_key", KEY)
        return anthropic.Anthropic(base_url=self.url, max_retries=0, **kw)


def _serve(config: Config, fakes: dict[str, FakeProvider], **service: Any
           ) -> Iterator[Gateway]:
    sink = ListSink()
    app = create_app(service=ChatService(config, providers=fakes, usage=sink, **service),
                     auth=MasterKeyAuth(KEY))
    with serve_app(app) as url:
        yield Gateway(url, fakes, sink)


@pytest.fixture()
def gw() -> Iterator[Gateway]:
    cfg = config_from_dict(CONFIG)
    fakes: dict[str, FakeProvider] = {
        d.name: ToolCaller(d, reply=f"hello from {d.name}") for d in cfg.deployments}
    yield from _serve(cfg, fakes)


def _user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


# -- answers ----------------------------------------------------------------------------


def test_text_with_system_prompt(gw: Gateway) -> None:
    raw = gw.client().messages.with_raw_response.create(
        model="open-a", max_tokens=64, messages=_user("hi"),
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}},
                {"type": "text", "text": "Be kind."}],
        metadata={"user_id": "u-42"}, stop_sequences=["END"],
        extra_body={"temperature": 0.5, "top_p": 0.9})
    message = raw.parse()
    assert message.id.startswith("msg_") and message.type == "message"
    assert message.role == "assistant" and message.model == "m-open"
    assert [(b.type, getattr(b, "text", None)) for b in message.content] == [
        ("text", "hello from open-a")]
    assert (message.stop_reason, message.stop_sequence) == ("end_turn", None)
    assert (message.usage.input_tokens, message.usage.output_tokens) == (10, 3)
    assert raw.headers["x-modelmix-deployment"] == "open-a"
    sent = gw.fakes["open-a"].calls[-1]
    assert [(m.role, m.text()) for m in sent.messages] == [
        ("system", "Be brief.\n\nBe kind."), ("user", "hi")]
    assert (sent.max_tokens, sent.stop, sent.user) == (64, ["END"], "u-42")
    assert (sent.temperature, sent.top_p) == (0.5, 0.9)
    assert "cache_control" not in sent.model_dump_json()


def test_stream_text_equals_the_answer_and_events_are_anthropics(gw: Gateway) -> None:
    client = gw.client()
    whole = client.messages.create(model="open-a", max_tokens=64, messages=_user("hi"))
    with client.messages.stream(model="open-a", max_tokens=64, messages=_user("hi")) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == whole.content[0].text == "hello from open-a"  # type: ignore[union-attr]
    assert final.content[0].text == text  # type: ignore[union-attr]
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == (
        "end_turn", 10, 3)
    raw = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json={
        "model": "open-a", "max_tokens": 9, "stream": True, "messages": _user("hi")})
    assert raw.headers["content-type"].startswith("text/event-stream")
    events = [line[len("event: "):] for line in raw.text.splitlines()
              if line.startswith("event: ")]
    assert events == ["message_start", "ping", "content_block_start",
                      *["content_block_delta"] * 3, "content_block_stop", "message_delta",
                      "message_stop"]


def test_tool_use_round_trip(gw: Gateway) -> None:
    client = gw.client()
    first = client.messages.create(
        model="prop-b", max_tokens=64, messages=_user("weather in Paris?"), tools=[WEATHER],
        tool_choice={"type": "any", "disable_parallel_tool_use": True})
    assert first.stop_reason == "tool_use"
    (use,) = first.content
    assert use.type == "tool_use" and use.name == "get_weather"
    assert use.input == {"city": "Paris"} and use.id == "call_1"
    offered = gw.fakes["prop-b"].calls[-1]
    assert offered.tools == [{"type": "function", "function": {
        "name": "get_weather", "parameters": WEATHER["input_schema"],
        "description": "Weather in a city"}}]
    assert (offered.tool_choice, offered.parallel_tool_calls) == ("required", False)
    second = client.messages.create(model="prop-b", max_tokens=64, tools=[WEATHER], messages=[
        *_user("weather in Paris?"),
        {"role": "assistant", "content": first.content},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": use.id, "content": "18C and sunny"},
            {"type": "text", "text": "thanks"}]}])
    assert second.content[0].text == "hello from prop-b"  # type: ignore[union-attr]
    sent = gw.fakes["prop-b"].calls[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[1].tool_calls == [{"id": "call_1", "type": "function", "function": {
        "name": "get_weather", "arguments": '{"city":"Paris"}'}}]
    assert (sent[2].tool_call_id, sent[2].content) == ("call_1", "18C and sunny")


def test_tool_use_streamed(gw: Gateway) -> None:
    with gw.client().messages.stream(model="prop-b", max_tokens=64, tools=[WEATHER],
                                     messages=_user("weather?")) as stream:
        final = stream.get_final_message()
    assert [b.type for b in final.content] == ["text", "tool_use"]
    use = final.content[1]
    assert use.type == "tool_use" and use.input == {"city": "Paris"} and use.id == "call_9"
    assert final.stop_reason == "tool_use" and final.usage.output_tokens == 7


def test_images_route_auto_to_a_vision_deployment(gw: Gateway) -> None:
    data = TINY_PNG.split(",", 1)[1]
    raw = gw.client().messages.with_raw_response.create(
        model="auto", max_tokens=32, messages=[{"role": "user", "content": [
            {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data}},
            {"type": "text", "text": "what is this?"}]}])
    assert raw.headers["x-modelmix-deployment"] == "prop-b"
    parts = gw.fakes["prop-b"].calls[-1].messages[-1].content
    assert isinstance(parts, list)
    assert [p.type for p in parts] == ["image_url", "text"]
    assert parts[0].image_url is not None and parts[0].image_url.url == TINY_PNG
    text_only = gw.client().messages.with_raw_response.create(
        model="auto", max_tokens=32, messages=_user("hi"))
    assert text_only.headers["x-modelmix-deployment"] == "open-a"


def test_images_a_tool_returned_reach_the_model_after_the_tool_messages(gw: Gateway) -> None:
    """What Claude Code sends when its Read tool opens an image: a tool_result holding an
    image block (refused at first; chat tool messages carry text only)."""
    data = TINY_PNG.split(",", 1)[1]
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                         "data": data}}
    call = {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.png"}}
    raw = gw.client().messages.with_raw_response.create(
        model="auto", max_tokens=32, messages=[
            *_user("what is in a.png?"),
            {"role": "assistant", "content": [call]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_1",
                 "content": [{"type": "text", "text": "a.png:"}, image]},
                {"type": "text", "text": "describe it"}]}])
    assert raw.headers["x-modelmix-deployment"] == "prop-b"  # the image routes to vision
    sent = gw.fakes["prop-b"].calls[-1].messages
    assert [m.role for m in sent] == ["user", "assistant", "tool", "user"]
    assert sent[2].tool_call_id == "toolu_1"
    assert sent[2].content == "a.png:\n[1 image(s) returned; sent in the next user message]"
    parts = sent[3].content
    assert isinstance(parts, list) and [p.type for p in parts] == ["text", "image_url", "text"]
    assert parts[0].text == "[image 1 of 1 returned by tool call toolu_1]"
    assert parts[1].image_url is not None and parts[1].image_url.url == TINY_PNG
    assert parts[2].text == "describe it"


# -- auth and errors --------------------------------------------------------------------


def test_x_api_key_and_bearer_both_authenticate(gw: Gateway) -> None:
    by_header = gw.client(api_key=None, default_headers={"x-api-key": KEY})
    by_bearer = gw.client(auth_token=KEY, api_key=None)
    for client in (by_header, by_bearer):
        assert client.messages.create(model="open-a", max_tokens=8,
                                      messages=_user("hi")).content
    for bad in (gw.client(api_key="wrong"),
                gw.client(api_key=None, default_headers={"x-api-key": "wrong"})):
        with pytest.raises(anthropic.AuthenticationError) as caught:
            bad.messages.create(model="open-a", max_tokens=8, messages=_user("hi"))
        assert caught.value.body["error"]["type"] == "authentication_error"  # type: ignore[index]
    assert not gw.fakes["open-a"].calls[2:]  # the two refused never reached it


@pytest.mark.parametrize(("extra", "field"), [
    ({"top_k": 5}, "top_k"),
    ({"thinking": {"type": "enabled", "budget_tokens": 2048}}, "thinking"),
    ({"service_tier": "auto"}, "service_tier"),
    ({"tools": [{"type": "web_search_20250305", "name": "web_search"}]}, "tools.0"),
    ({"messages": [{"role": "user", "content": [{"type": "thinking", "thinking": "x"}]}]},
     "messages.0.content.0"),
    ({"messages": [{"role": "assistant", "content": [{"type": "tool_result",
                                                      "tool_use_id": "t"}]}]},
     "messages.0.content.0"),
    ({"stop_sequences": ["a", "b", "c", "d", "e"]}, "stop_sequences"),
    ({"max_tokens": 0}, "max_tokens"),
])
def test_bad_body_is_a_bad_request_naming_the_field(gw: Gateway, extra: dict[str, Any],
                                                   field: str) -> None:
    body: dict[str, Any] = {"model": "open-a", "max_tokens": 8, "messages": _user("hi"),
                            **extra}
    with pytest.raises(anthropic.BadRequestError) as caught:
        gw.client().post("/v1/messages", body=body, cast_to=object)
    error = caught.value.body
    assert isinstance(error, dict) and error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert error["error"]["message"].startswith(field + ":"), error
    assert not gw.fakes["open-a"].calls



def test_a_server_tool_type_is_not_repeated(gw: Gateway) -> None:
    secret = "Patient John Smith SSN 536-22-8761"
    resp = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json={
        "model": "open-a", "max_tokens": 8, "messages": _user("hi"),
        "tools": [{"type": secret, "name": "a", "input_schema": {}}]})
    assert resp.status_code == 400 and "an unknown type" in resp.text
    assert "536-22" not in resp.text
    (rec,) = gw.sink.wait_for(1)
    assert rec.error and "536-22" not in rec.error
    known = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json={
        "model": "open-a", "max_tokens": 8, "messages": _user("hi"),
        "tools": [{"type": "web_search_20250305", "name": "web_search"}]})
    assert known.status_code == 400 and "'web_search_20250305'" in known.text

def test_max_tokens_is_required_and_unknown_models_are_not_found(gw: Gateway) -> None:
    resp = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY},
                      json={"model": "open-a", "messages": _user("hi")})
    assert resp.status_code == 400 and resp.json()["error"]["message"].startswith("max_tokens")
    with pytest.raises(anthropic.NotFoundError) as caught:
        gw.client().messages.create(model="nope", max_tokens=8, messages=_user("hi"))
    assert caught.value.body["error"]["type"] == "not_found_error"  # type: ignore[index]


def test_upstream_failures_in_anthropic_shape() -> None:
    cfg = config_from_dict({**CONFIG, "reliability": {"num_retries": 0}})
    fakes: dict[str, FakeProvider] = {
        "open-a": BreaksMidStream(cfg.deployments[0], reply="one two three"),
        "prop-b": FakeProvider(cfg.deployments[1], fail_times=99,
                               error=UpstreamUnavailable("down", deployment="prop-b"))}
    for gw in _serve(cfg, fakes):
        with pytest.raises(anthropic.InternalServerError) as caught:
            gw.client().messages.create(model="prop-b", max_tokens=8, messages=_user("hi"))
        assert caught.value.status_code == 502
        assert caught.value.body["error"]["type"] == "api_error"  # type: ignore[index]
        raw = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json={
            "model": "open-a", "max_tokens": 9, "stream": True, "messages": _user("hi")})
        assert raw.status_code == 200
        assert raw.text.rstrip().splitlines()[-2:] == [
            "event: error",
            'data: {"type":"error","error":{"type":"api_error","message":"connection reset"},'
            f'"request_id":"{raw.headers["x-request-id"]}"}}']
        with pytest.raises(anthropic.APIStatusError, match="connection reset"), \
                gw.client().messages.stream(model="open-a", max_tokens=8,
                                            messages=_user("hi")) as stream:
            stream.get_final_message()


# -- the rest of the pipeline -----------------------------------------------------------


def test_data_guard_applies() -> None:
    cfg = config_from_dict(CONFIG)
    fakes: dict[str, FakeProvider] = {d.name: FakeProvider(d) for d in cfg.deployments}
    guard = Guard(load_policy("finance"), RegexDetector(), in_thread=False)
    secret = "sk-abcdefghijklmnop"
    for gw in _serve(cfg, fakes, guard=guard):
        for stream in (False, True):
            with pytest.raises(anthropic.PermissionDeniedError) as caught:
                gw.client().messages.create(model="auto", max_tokens=8, stream=stream,
                                            messages=_user(f"my key is {secret}"))
            assert caught.value.body["error"]["type"] == "permission_error"  # type: ignore[index]
            assert secret not in str(caught.value.body)
        with pytest.raises(anthropic.PermissionDeniedError):  # inside a tool result too
            gw.client().messages.create(model="auto", max_tokens=8, messages=[
                *_user("go"),
                {"role": "assistant", "content": [{"type": "tool_use", "id": "t1",
                                                   "name": "f", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1",
                                              "content": f"found {secret}"}]}])
        assert not any(f.calls for f in gw.fakes.values())
        records = gw.sink.wait_for(3)
        assert {(r.endpoint, r.status_code) for r in records} == {("messages", 403)}


def test_usage_rows_say_messages(gw: Gateway) -> None:
    client = gw.client()
    client.messages.create(model="open-a", max_tokens=8, messages=_user("hi"))
    with client.messages.stream(model="open-a", max_tokens=8, messages=_user("hi")) as s:
        s.get_final_message()
    records = gw.sink.wait_for(2)
    assert [(r.endpoint, r.deployment, r.completion_tokens) for r in records] == [
        ("messages", "open-a", 3)] * 2


def test_paths_without_v1_and_version_headers(gw: Gateway) -> None:
    resp = httpx.post(gw.url + "/messages", json={
        "model": "open-a", "max_tokens": 8, "messages": _user("hi")},
        headers={"x-api-key": KEY, "anthropic-version": "2023-06-01",
                 "anthropic-beta": "prompt-caching-2024-07-31"})
    assert resp.status_code == 200 and resp.json()["content"][0]["text"] == "hello from open-a"


def test_count_tokens_is_an_estimate(gw: Gateway) -> None:
    client = gw.client()
    small = client.messages.with_raw_response.count_tokens(model="open-a",
                                                           messages=_user("hi"))
    assert small.headers["x-modelmix-token-count"] == "estimate"
    large = client.messages.count_tokens(model="open-a", messages=_user("word " * 400),
                                         system="Be brief.", tools=[WEATHER])
    assert 0 < small.parse().input_tokens < 20 < 400 < large.input_tokens < 800
    with pytest.raises(anthropic.AuthenticationError):
        gw.client(api_key="wrong").messages.count_tokens(model="open-a", messages=_user("x"))
    with pytest.raises(anthropic.BadRequestError, match="thinking"):
        client.messages.count_tokens(model="open-a", messages=_user("x"),
                                     thinking={"type": "enabled", "budget_tokens": 2048})
    assert not any(f.calls for f in gw.fakes.values()) and not gw.sink.records



def test_a_failure_writing_the_answer_is_a_502_in_anthropic_shape(
        gw: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelmix.server._messages as messages

    def broken(*args: object, **kw: object) -> object:
        raise TypeError("a bug")

    monkeypatch.setattr(messages, "message_json", broken)
    monkeypatch.setattr(messages.MessageStream, "on_chunk", broken)
    body = {"model": "open-a", "max_tokens": 8, "messages": _user("hi")}
    resp = httpx.post(gw.url + "/v1/messages", headers={"x-api-key": KEY}, json=body)
    assert resp.status_code == 502 and resp.headers["request-id"]
    assert resp.json()["type"] == "error" and "a bug" not in resp.text
    with httpx.stream("POST", gw.url + "/v1/messages", headers={"x-api-key": KEY},
                      json={**body, "stream": True}) as streamed:
        lines = list(streamed.iter_lines())
    assert "event: error" in lines and "a bug" not in "".join(lines)


def test_count_tokens_checks_the_keys_models(tmp_path: Any, monkeypatch: pytest.MonkeyPatch
                                             ) -> None:
    master = "sk-master-count-0123456789"
    monkeypatch.setenv("MODELMIX_DB_URL", f"sqlite:///{tmp_path / 'keys.db'}")
    monkeypatch.setenv("MODELMIX_MASTER_KEY", master)
    app = create_app(service=ChatService(config_from_dict(CONFIG)), policy_env=False)
    with serve_app(app) as url:
        made = httpx.post(url + "/key/generate", json={"models": ["open-a"]},
                          headers={"authorization": f"Bearer {master}"})
        assert made.status_code == 200, made.text
        client = anthropic.Anthropic(base_url=url, api_key=made.json()["key"], max_retries=0)
        assert client.messages.count_tokens(model="open-a", messages=_user("hi")).input_tokens
        with pytest.raises(anthropic.PermissionDeniedError) as denied:
            client.messages.with_raw_response.count_tokens(
                model="prop-b", messages=_user("hi"), extra_headers={"x-request-id": "rq-1"})
        assert denied.value.response.headers["request-id"] == "rq-1"
        with pytest.raises(anthropic.PermissionDeniedError):  # as /v1/messages says
            client.messages.create(model="prop-b", max_tokens=8, messages=_user("hi"))

# -- the translation, unit by unit ------------------------------------------------------


def test_documents_and_url_images_map_to_chat_parts() -> None:
    body = MessagesRequest.model_validate({
        "model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [
            {"type": "document", "title": "a.pdf", "source": {
                "type": "base64", "media_type": "application/pdf", "data": "JVBERi0="}},
            {"type": "document", "title": "Notes", "source": {
                "type": "text", "media_type": "text/plain", "data": "line"}},
            {"type": "image", "source": {"type": "url", "url": "https://e.x/a.png"}}]}]}
    ).to_chat()
    chat = ChatRequest.model_validate(body)
    parts = chat.messages[0].content
    assert isinstance(parts, list)
    assert parts[0].file is not None and parts[0].file.filename == "a.pdf"
    assert parts[0].file.file_data == "data:application/pdf;base64,JVBERi0="
    assert (parts[1].type, parts[1].text) == ("text", "Notes\n\nline")
    assert parts[2].image_url is not None and parts[2].image_url.url == "https://e.x/a.png"
    with pytest.raises(ValidationError, match="application/pdf"):
        MessagesRequest.model_validate({"model": "m", "max_tokens": 5, "messages": [
            {"role": "user", "content": [{"type": "document", "source": {
                "type": "base64", "media_type": "image/png", "data": "x"}}]}]})


def _chat_response(finish: str, **choice: Any) -> ChatResponse:
    message = choice.pop("message", ResponseMessage(content="done"))
    usage = Usage(prompt_tokens=100, completion_tokens=5, total_tokens=105,
                  prompt_tokens_details={"cached_tokens": 60})
    return ChatResponse(id="chatcmpl-x", created=0, model="m", usage=usage,
                        choices=[ChatChoice(message=message, finish_reason=finish, **choice)])


def test_answers_say_what_chat_completions_tell() -> None:
    hit = anthropic.types.Message.model_validate_json(message_json(
        _chat_response("stop", stop_reason="END"), ["END"]))
    assert (hit.stop_reason, hit.stop_sequence) == ("stop_sequence", "END")
    assert (hit.usage.input_tokens, hit.usage.cache_read_input_tokens) == (40, 60)
    cut = anthropic.types.Message.model_validate_json(message_json(
        _chat_response("length"), None))
    assert (cut.stop_reason, cut.stop_sequence) == ("max_tokens", None)
    broken = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{oops"}}
    odd = orjson.loads(message_json(_chat_response(
        "tool_calls", message=ResponseMessage(tool_calls=[broken])), None))
    assert odd["content"] == [{"type": "tool_use", "id": "c1", "name": "f",
                               "input": {RAW_ARGUMENTS: "{oops"}}]


@pytest.mark.parametrize(("error", "status", "kind"), [
    (BudgetExceeded("spent"), 402, "billing_error"),
    (KeyRateLimited("slow down", retry_after=3), 429, "rate_limit_error"),
    (PolicyDenied("no"), 403, "permission_error"),
    (PayloadTooLarge("big"), 413, "invalid_request_error"),
    (NoDeploymentAvailable("circuits open"), 503, "overloaded_error"),
    (GatewayBusy("busy"), 503, "overloaded_error"),
    (ProviderTimeout("slow", deployment="d"), 504, "timeout_error"),
    (ProviderAuthError("bad upstream key", deployment="d"), 502, "api_error"),
])
def test_every_error_class_has_an_anthropic_type(error: ModelmixError, status: int,
                                                 kind: str) -> None:
    got_status, body = messages_error_body(error, "req-1")
    assert (got_status, body) == (status, {"type": "error", "request_id": "req-1",
                                           "error": {"type": kind, "message": error.message}})
