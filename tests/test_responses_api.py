"""``POST /v1/responses`` with the official ``openai`` SDK against a real gateway on
loopback: text, items, instructions, function calls, JSON formats, streaming events,
``previous_response_id`` (per key), refusals, the data guard and usage rows."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from pydantic import BaseModel

from _guard_fakes import RegexDetector
from _pixels import TINY_PNG
from _servers import serve_app
from modelmix.catalog import Deployment, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import UpstreamUnavailable
from modelmix.guard import Guard, load_policy
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ResponseMessage,
)
from modelmix.server import create_app
from modelmix.testing import FakeProvider, ListSink

MASTER = "sk-master-responses-0123456789"
SSN = "123-45-6789"
API_KEY = "sk-abcdefghijklmnop"

CONFIG = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open", "context_window": 8192, "supports_tools": True,
         "supports_json_mode": True},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud",
         "input_modalities": ["text", "image"], "context_window": 100000,
         "supports_tools": True, "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
    ],
    "groups": {"cloud-first": ["prop-b", "open-a"]},
    "router": "ordered",
    "server": {"max_tokens_limit": 4096},
}

WEATHER_TOOL = {"type": "function", "name": "get_weather", "description": "Weather now",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
                               "required": ["city"], "additionalProperties": False},
                "strict": True}
CALL_ARGUMENTS = '{"city": "Paris"}'


class ScriptedProvider(FakeProvider):
    """A model with one habit per request shape: offered tools and no tool result yet, it
    calls ``get_weather``; given a tool result, it reports it; asked for JSON, it answers
    JSON; else ``hello from <deployment>: <last message>``. Replies longer than
    ``max_completion_tokens`` words are cut (finish_reason ``length``)."""

    fail_mid_stream = False

    def __init__(self, deployment: Deployment, log: list[ChatRequest]):
        super().__init__(deployment)
        self.log = log  # every fake's requests, in order
        #: when set, what to answer instead: a message (non-streaming) and its deltas
        self.script: tuple[ResponseMessage, list[Delta]] | None = None

    def answer(self, request: ChatRequest) -> tuple[str | None, list[dict[str, Any]], str]:
        self.log.append(request)
        last = request.messages[-1]
        if request.tools and last.role != "tool":
            call = {"id": "call_weather_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": CALL_ARGUMENTS}}
            return None, [call], "tool_calls"
        if last.role == "tool":
            text = f"The weather: {last.text()}"
        elif request.response_format:
            text = '{"city": "Paris", "sunny": true}'
        else:
            text = f"hello from {self.deployment.name}: {last.text()}"
        limit = request.max_completion_tokens
        if limit is not None and len(text.split()) > limit:
            return " ".join(text.split()[:limit]), [], "length"
        return text, [], "stop"

    async def complete(self, request: ChatRequest) -> ChatResponse:
        await self._maybe_fail(request)
        if self.script is not None:
            return ChatResponse(id="chatcmpl-1", created=1, model=self.deployment.model,
                                choices=[ChatChoice(message=self.script[0],
                                                    finish_reason="tool_calls")])
        text, calls, finish = self.answer(request)
        return ChatResponse(
            id="chatcmpl-1", created=1, model=self.deployment.model,
            choices=[ChatChoice(message=ResponseMessage(content=text, tool_calls=calls or None),
                                finish_reason=finish)],
            usage=self._usage(text or CALL_ARGUMENTS))

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        await self._maybe_fail(request)
        text, calls, finish = self.answer(request)
        if self.script is not None:
            text, calls, finish = None, [], "tool_calls"

        def chunk(delta: Delta, finish_reason: str | None = None) -> ChatChunk:
            return ChatChunk(id="chatcmpl-1", created=1, model=self.deployment.model,
                             choices=[ChunkChoice(delta=delta, finish_reason=finish_reason)])

        for delta in self.script[1] if self.script is not None else ():
            yield chunk(delta)
        for i, word in enumerate((text or "").split(" ") if text else ()):
            yield chunk(Delta(content=word if i == 0 else " " + word))
            if self.fail_mid_stream:
                raise UpstreamUnavailable("upstream went away", deployment=self.deployment.name)
        for call in calls:  # the arguments in two pieces, as OpenAI streams them
            args = call["function"]["arguments"]
            yield chunk(Delta(tool_calls=[{"index": 0, "id": call["id"], "type": "function",
                                           "function": {"name": "get_weather",
                                                        "arguments": args[:5]}}]))
            yield chunk(Delta(tool_calls=[{"index": 0, "function": {"arguments": args[5:]}}]))
        yield chunk(Delta(), finish)
        yield ChatChunk(id="chatcmpl-1", created=1, model=self.deployment.model, choices=[],
                        usage=self._usage(text or CALL_ARGUMENTS))


@dataclass
class Gateway:
    url: str
    fakes: dict[str, ScriptedProvider]
    sink: ListSink

    def client(self, key: str = MASTER, v1: bool = True) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + ("/v1" if v1 else ""), api_key=key,
                             max_retries=0)

    def new_key(self) -> str:
        resp = httpx.post(self.url + "/key/generate", json={},
                          headers={"authorization": f"Bearer {MASTER}"})
        assert resp.status_code == 200, resp.text
        return str(resp.json()["key"])

    @property
    def last(self) -> ChatRequest:
        """The request the upstream received last (whichever deployment served it)."""
        assert self.log, "no upstream was called"
        return self.log[-1]

    @property
    def log(self) -> list[ChatRequest]:
        return next(iter(self.fakes.values())).log


def _serve(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str | None = None
           ) -> Iterator[Gateway]:
    monkeypatch.setenv("MODELMIX_DB_URL", f"sqlite:///{tmp_path / 'keys.db'}")
    monkeypatch.setenv("MODELMIX_MASTER_KEY", MASTER)
    cfg = config_from_dict(CONFIG)
    log: list[ChatRequest] = []
    fakes = {d.name: ScriptedProvider(d, log) for d in cfg.deployments}
    sink = ListSink()
    guard = Guard(load_policy(policy), RegexDetector(), in_thread=False) if policy else None
    service = ChatService(cfg, providers=fakes, usage=sink, guard=guard)
    with serve_app(create_app(service=service, policy_env=False)) as url:
        yield Gateway(url, fakes, sink)


@pytest.fixture()
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    yield from _serve(tmp_path, monkeypatch)


def _messages(request: ChatRequest) -> list[dict[str, Any]]:
    return [m.model_dump(exclude_none=True) for m in request.messages]


# -- text in, text out ----------------------------------------------------------------------


def test_text_and_instructions(gw: Gateway) -> None:
    raw = gw.client().responses.with_raw_response.create(
        model="open-a", input="hi there", instructions="Be brief", temperature=0.5,
        max_output_tokens=50, metadata={"ticket": "42"}, user="u-1")
    resp = raw.parse()
    assert resp.output_text == "hello from open-a: hi there"
    assert resp.id.startswith("resp_") and resp.object == "response"
    assert resp.status == "completed" and resp.error is None
    assert resp.model == "m-open" and resp.instructions == "Be brief"
    assert resp.metadata == {"ticket": "42"} and resp.temperature == 0.5
    assert resp.usage is not None
    assert (resp.usage.input_tokens, resp.usage.output_tokens, resp.usage.total_tokens) == (
        10, 5, 15)
    (item,) = resp.output
    assert item.type == "message" and item.role == "assistant" and item.status == "completed"
    assert raw.headers["x-modelmix-deployment"] == "open-a"
    assert "x-modelmix-cost-usd" in raw.headers
    sent = gw.last
    assert _messages(sent) == [{"role": "system", "content": "Be brief"},
                               {"role": "user", "content": "hi there"}]
    assert (sent.temperature, sent.max_completion_tokens, sent.user) == (0.5, 50, "u-1")
    assert "metadata" not in (sent.model_extra or {})  # kept on the response, not forwarded


def test_input_items_map_to_chat_messages(gw: Gateway) -> None:
    resp = gw.client().responses.create(model="auto", input=[
        {"role": "developer", "content": "Answer in French"},
        {"role": "user", "content": "earlier question"},
        {"type": "message", "role": "assistant",
         "content": [{"type": "output_text", "text": "earlier answer", "annotations": []}]},
        {"role": "user", "content": [
            {"type": "input_text", "text": "what is this?"},
            {"type": "input_image", "image_url": TINY_PNG, "detail": "low"}]},
    ])
    assert resp.output_text.startswith("hello from prop-b")  # images go to the image model
    assert _messages(gw.last) == [
        {"role": "developer", "content": "Answer in French"},
        {"role": "user", "content": "earlier question"},
        {"role": "assistant", "content": "earlier answer"},
        {"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": TINY_PNG, "detail": "low"}}]},
    ]


def test_paths_without_v1_and_length_is_incomplete(gw: Gateway) -> None:
    resp = gw.client(v1=False).responses.create(model="open-a", input="one two three",
                                                max_output_tokens=2)
    assert resp.status == "incomplete"
    assert resp.incomplete_details is not None
    assert resp.incomplete_details.reason == "max_output_tokens"
    assert resp.output_text == "hello from"
    assert resp.output[0].status == "incomplete"  # type: ignore[union-attr]


# -- function calling ----------------------------------------------------------------------


def test_function_call_round_trip_with_full_input(gw: Gateway) -> None:
    client = gw.client()
    first = client.responses.create(model="open-a", input="weather in Paris?",
                                    tools=[WEATHER_TOOL], tool_choice="auto",
                                    parallel_tool_calls=False)
    (call,) = first.output
    assert call.type == "function_call"
    assert (call.name, call.arguments, call.call_id) == ("get_weather", CALL_ARGUMENTS,
                                                         "call_weather_1")
    assert first.output_text == "" and first.tools[0].name == "get_weather"
    sent = gw.last
    assert sent.tools == [{"type": "function", "function": {
        "name": "get_weather", "description": "Weather now",
        "parameters": WEATHER_TOOL["parameters"], "strict": True}}]
    assert (sent.tool_choice, sent.parallel_tool_calls) == ("auto", False)

    second = client.responses.create(model="open-a", tools=[WEATHER_TOOL], input=[
        {"role": "user", "content": "weather in Paris?"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21C"}])
    assert second.output_text == "The weather: sunny, 21C"
    assert _messages(gw.last)[1:] == [
        {"role": "assistant", "tool_calls": [{"id": "call_weather_1", "type": "function",
                                              "function": {"name": "get_weather",
                                                           "arguments": CALL_ARGUMENTS}}]},
        {"role": "tool", "tool_call_id": "call_weather_1", "content": "sunny, 21C"}]


def test_function_call_round_trip_with_previous_response_id(gw: Gateway) -> None:
    client = gw.client()
    first = client.responses.create(model="open-a", input="weather?", tools=[WEATHER_TOOL],
                                    tool_choice={"type": "function", "name": "get_weather"})
    assert gw.last.tool_choice == {"type": "function", "function": {"name": "get_weather"}}
    call = first.output[0]
    assert call.type == "function_call"
    second = client.responses.create(
        model="open-a", previous_response_id=first.id, tools=[WEATHER_TOOL],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "rain"}])
    assert second.output_text == "The weather: rain"
    assert second.previous_response_id == first.id
    assert [m["role"] for m in _messages(gw.last)] == ["user", "assistant", "tool"]


# -- structured output -----------------------------------------------------------------------


class Weather(BaseModel):
    city: str
    sunny: bool


def test_json_schema_format_parses_with_the_sdk(gw: Gateway) -> None:
    parsed = gw.client().responses.parse(model="open-a", input="weather as JSON",
                                         text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris", sunny=True)
    fmt = gw.last.response_format
    assert fmt is not None and fmt["type"] == "json_schema"
    assert fmt["json_schema"]["name"] == "Weather" and fmt["json_schema"]["strict"] is True
    assert fmt["json_schema"]["schema"]["required"] == ["city", "sunny"]

    plain = gw.client().responses.create(model="open-a", input="JSON please",
                                         text={"format": {"type": "json_object"}})
    assert json.loads(plain.output_text) == {"city": "Paris", "sunny": True}
    assert gw.last.response_format == {"type": "json_object"}
    assert plain.text is not None and plain.text.format is not None
    assert plain.text.format.type == "json_object"


# -- streaming -------------------------------------------------------------------------------


def test_stream_events_parse_and_match_the_answer(gw: Gateway) -> None:
    client = gw.client()
    plain = client.responses.create(model="open-a", input="stream me", instructions="Hi")
    with client.responses.stream(model="open-a", input="stream me", instructions="Hi") as s:
        events = list(s)
        final = s.get_final_response()
    assert final.output_text == plain.output_text == "hello from open-a: stream me"
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress",
                         "response.output_item.added", "response.content_part.added"]
    assert kinds[-4:] == ["response.output_text.done", "response.content_part.done",
                          "response.output_item.done", "response.completed"]
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == final.output_text and len(deltas) == 5
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert final.status == "completed" and final.usage is not None
    assert final.usage.output_tokens == 5 and final.instructions == "Hi"
    assert final.id == events[0].response.id  # type: ignore[union-attr]


def test_stream_function_call_events(gw: Gateway) -> None:
    events = list(gw.client().responses.create(model="open-a", input="weather?",
                                               tools=[WEATHER_TOOL], stream=True))
    kinds = [e.type for e in events]
    assert kinds == ["response.created", "response.in_progress",
                     "response.output_item.added",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.delta",
                     "response.function_call_arguments.done",
                     "response.output_item.done", "response.completed"]
    done = events[-2]
    assert done.type == "response.output_item.done" and done.item.type == "function_call"
    assert done.item.arguments == CALL_ARGUMENTS and done.item.call_id == "call_weather_1"
    final = events[-1]
    assert final.type == "response.completed"
    assert final.response.output[0].arguments == CALL_ARGUMENTS  # type: ignore[union-attr]


def test_stream_error_mid_way_is_a_failed_response(gw: Gateway) -> None:
    gw.fakes["open-a"].fail_mid_stream = True
    events = list(gw.client().responses.create(model="open-a", input="a b c", stream=True))
    kinds = [e.type for e in events]
    assert kinds[-2:] == ["error", "response.failed"]
    assert "response.output_text.delta" in kinds and "response.completed" not in kinds
    error, failed = events[-2], events[-1]
    assert error.type == "error" and "went away" in error.message
    assert failed.type == "response.failed" and failed.response.status == "failed"
    assert failed.response.error is not None
    assert gw.sink.wait_for(1)[0].endpoint == "responses"


def _call(index: int, arguments: str, name: str | None = None) -> Delta:
    function: dict[str, Any] = {"arguments": arguments}
    if name:
        function["name"] = name
    call: dict[str, Any] = {"index": index, "function": function}
    if name:
        call |= {"id": f"call_{name}", "type": "function"}
    return Delta(tool_calls=[call])


def test_stream_of_mixed_output_matches_the_non_stream_answer(gw: Gateway) -> None:
    """Text, a refusal, two tool calls, more text: four items, parts in order, both ways."""
    message = ResponseMessage(content="Let me check.", refusal="Not that.", tool_calls=[
        {"id": "call_a", "type": "function", "function": {"name": "a", "arguments": "{}"}},
        {"id": "call_b", "type": "function", "function": {"name": "b", "arguments": '{"x": 1}'}}])
    gw.fakes["open-a"].script = (message, [
        Delta(content="Let me "), Delta(content="check."), Delta(refusal="Not that."),
        _call(0, "{}", "a"), _call(1, '{"x"', "b"), _call(1, ": 1}"), Delta(content="Done.")])
    client = gw.client()
    with client.responses.stream(model="open-a", input="go") as s:
        events = list(s)
        streamed = s.get_final_response()
    plain = client.responses.create(model="open-a", input="go")

    def shape(output: list[Any]) -> list[Any]:
        return [(o.type, [(c.type, getattr(c, "text", None) or c.refusal) for c in o.content])
                if o.type == "message" else (o.type, o.call_id, o.name, o.arguments)
                for o in output]

    assert shape(streamed.output) == [
        ("message", [("output_text", "Let me check."), ("refusal", "Not that.")]),
        ("function_call", "call_a", "a", "{}"), ("function_call", "call_b", "b", '{"x": 1}'),
        ("message", [("output_text", "Done.")])]
    assert shape(plain.output) == shape(streamed.output)[:3]  # the message holds one text
    assert streamed.output_text == "Let me check.Done."
    kinds = [e.type for e in events]
    assert kinds.count("response.output_item.added") == 4 == kinds.count(
        "response.output_item.done")
    assert "response.refusal.delta" in kinds and "response.refusal.done" in kinds
    assert [e.sequence_number for e in events] == list(range(len(events)))


# -- previous_response_id and stored responses -----------------------------------------------


def test_previous_response_id_sends_the_conversation(gw: Gateway) -> None:
    client = gw.client()
    first = client.responses.create(model="open-a", input="my name is Ann",
                                    instructions="first instructions")
    with client.responses.stream(model="open-a", input="and yours?",
                                 previous_response_id=first.id) as s:
        second = s.get_final_response()
    third = client.responses.create(model="open-a", input="bye", previous_response_id=second.id,
                                    instructions="third instructions")
    assert third.previous_response_id == second.id
    assert _messages(gw.last) == [  # earlier instructions are not carried over (as OpenAI)
        {"role": "system", "content": "third instructions"},
        {"role": "user", "content": "my name is Ann"},
        {"role": "assistant", "content": "hello from open-a: my name is Ann"},
        {"role": "user", "content": "and yours?"},
        {"role": "assistant", "content": "hello from open-a: and yours?"},
        {"role": "user", "content": "bye"}]
    again = client.responses.retrieve(second.id)
    assert again.output_text == second.output_text and again.id == second.id


def test_stored_responses_belong_to_their_key(gw: Gateway) -> None:
    alice, bob = gw.client(gw.new_key()), gw.client(gw.new_key())
    first = alice.responses.create(model="open-a", input="alice's secret plan")
    with pytest.raises(openai.NotFoundError) as err:
        bob.responses.create(model="open-a", input="tell me", previous_response_id=first.id)
    assert err.value.code == "previous_response_not_found"
    assert "secret" not in err.value.message
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(first.id)
    assert alice.responses.retrieve(first.id).output_text == first.output_text
    follow = alice.responses.create(model="open-a", input="go on", previous_response_id=first.id)
    assert follow.status == "completed"
    alice.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        alice.responses.create(model="open-a", input="again", previous_response_id=first.id)
    unkept = alice.responses.create(model="open-a", input="forget me", store=False)
    assert unkept.store is False
    with pytest.raises(openai.NotFoundError):
        alice.responses.retrieve(unkept.id)
    assert len(gw.log) == 3  # the refused follow-ups never reached a model


# -- refusals --------------------------------------------------------------------------------


@pytest.mark.parametrize(("extra", "param", "needle"), [
    ({"tools": [{"type": "web_search"}]}, "tools.0.type", "web_search"),
    ({"tools": [WEATHER_TOOL, {"type": "file_search", "vector_store_ids": ["v"]}]},
     "tools.1.type", "file_search"),
    ({"tool_choice": {"type": "web_search_preview"}}, "tool_choice.type", "web_search_preview"),
    ({"background": True}, "background", "background"),
    ({"include": ["reasoning.encrypted_content"]}, "include", "encrypted_content"),
    ({"reasoning": {"effort": "low", "summary": "auto"}}, "reasoning.summary", "summar"),
    ({"conversation": "conv_1"}, "conversation", "previous_response_id"),
    ({"truncation": "auto"}, "truncation", "auto"),
    ({"extra_body": {"frobnicate": 1}}, "frobnicate", "does not know"),
    ({"input": [{"type": "reasoning", "id": "rs_1", "summary": []}]}, "input.0.type",
     "reasoning"),
    ({"input": [{"role": "user", "content": [{"type": "input_image", "file_id": "f1",
                                              "detail": "auto"}]}]},
     "input.0.content.0.file_id", "image_url"),
    ({"input": [{"role": "user", "content": [{"type": "input_audio"}]}]},
     "input.0.content.0.type", "input_audio"),
    ({"max_output_tokens": 10**6}, "max_output_tokens", "limit"),
])
def test_unsupported_fields_are_refused_by_name(gw: Gateway, extra: dict[str, Any],
                                               param: str, needle: str) -> None:
    body: dict[str, Any] = {"model": "open-a", "input": "hi", **extra}
    with pytest.raises(openai.BadRequestError) as err:
        gw.client().responses.create(**body)
    assert err.value.status_code == 400
    assert err.value.param == param, err.value.message
    assert needle in err.value.message
    assert not gw.log
    (rec,) = gw.sink.wait_for(1)
    assert (rec.endpoint, rec.status_code) == ("responses", 400)



PHI = f"Patient John Smith SSN {SSN} has diabetes"


@pytest.mark.parametrize(("extra", "param"), [
    ({"input": [{"type": PHI}]}, "input.0.type"),
    ({"input": [{"role": "user", "content": [{"type": PHI}]}]}, "input.0.content.0.type"),
    ({"tools": [{"type": PHI}]}, "tools.0.type"),
    ({"tool_choice": {"type": PHI}}, "tool_choice.type"),
    ({"include": [PHI]}, "include"),
    ({"previous_response_id": PHI}, "previous_response_id"),
])
def test_refusals_never_repeat_the_callers_text(gw: Gateway, extra: dict[str, Any],
                                                param: str) -> None:
    """What the caller typed where a type or an id belongs may be anything (personal data
    included): the error, and so the usage row and the logs, say "an unknown type/id"."""
    resp = httpx.post(gw.url + "/v1/responses", json={"model": "open-a", "input": "hi", **extra},
                      headers={"authorization": f"Bearer {MASTER}"})
    assert resp.status_code in (400, 404) and resp.json()["error"]["param"] == param
    assert "an unknown" in resp.text and SSN not in resp.text and "Smith" not in resp.text
    (rec,) = gw.sink.wait_for(1)
    assert rec.error and "an unknown" in rec.error and SSN not in rec.error
    stored = httpx.get(gw.url + f"/v1/responses/{PHI}",
                       headers={"authorization": f"Bearer {MASTER}"})
    assert stored.status_code == 404 and SSN not in stored.text

def test_bad_json_and_missing_input_are_openai_errors(gw: Gateway) -> None:
    bad = httpx.post(gw.url + "/v1/responses", content=b"{nope",
                     headers={"authorization": f"Bearer {MASTER}"})
    assert bad.status_code == 400 and "not valid JSON" in bad.json()["error"]["message"]
    empty = httpx.post(gw.url + "/v1/responses", json={"model": "open-a"},
                       headers={"authorization": f"Bearer {MASTER}"})
    assert empty.status_code == 400 and empty.json()["error"]["param"] == "input"
    anon = httpx.post(gw.url + "/v1/responses", json={"model": "open-a", "input": "x"})
    assert anon.status_code == 401


# -- guard and usage -------------------------------------------------------------------------


@pytest.fixture()
def guarded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    yield from _serve(tmp_path, monkeypatch, policy="healthcare")


def test_data_guard_applies_to_responses_and_their_history(guarded: Gateway) -> None:
    client = guarded.client()
    with pytest.raises(openai.PermissionDeniedError) as err:
        client.responses.create(model="cloud-first", input=f"use key {API_KEY}")
    assert err.value.code == "data_policy_blocked" and API_KEY not in err.value.message
    assert not guarded.log

    plain = client.responses.with_raw_response.create(model="cloud-first", input="hello")
    assert plain.headers["x-modelmix-deployment"] == "prop-b"
    phi = client.responses.with_raw_response.create(model="cloud-first",
                                                    input=f"patient ssn {SSN}")
    assert phi.headers["x-modelmix-deployment"] == "open-a"  # kept local
    # the follow-up says nothing sensitive, but its history does: still kept local
    follow = client.responses.with_raw_response.create(
        model="cloud-first", input="what next?", previous_response_id=phi.parse().id)
    assert follow.headers["x-modelmix-deployment"] == "open-a"
    with client.responses.with_streaming_response.create(
            model="cloud-first", input=f"ssn {SSN} again", stream=True) as streamed:
        assert streamed.headers["x-modelmix-deployment"] == "open-a"
        streamed.read()
    records = guarded.sink.wait_for(5)
    assert [r.endpoint for r in records] == ["responses"] * 5
    assert [r.audit.action for r in records if r.audit] == [
        "block", "allow", "route-local", "route-local", "route-local"]


def test_usage_rows_say_responses(gw: Gateway) -> None:
    gw.client().responses.create(model="open-a", input="count me")
    with gw.client().responses.stream(model="open-a", input="and me") as s:
        s.get_final_response()
    records = gw.sink.wait_for(2)
    assert [(r.endpoint, r.deployment, r.status_code) for r in records] == [
        ("responses", "open-a", 200), ("responses", "open-a", 200)]
    assert all(r.completion_tokens and r.completion_tokens > 0 for r in records)


# -- the store -------------------------------------------------------------------------------


def test_store_bounds_ttl_and_chains() -> None:
    from modelmix.server._response_store import ResponseNotFound, ResponseStore

    now = [0.0]
    store = ResponseStore(max_entries=3, max_bytes=1000, ttl_s=60, clock=lambda: now[0],
                          key_max_entries=3, key_max_bytes=1000)  # the whole store's bounds

    def put(rid: str, parent: str | None = None, size: int = 10, key: str | None = "k") -> None:
        store.put(rid, key=key, parent=parent, turn=[{"role": "user", "content": rid}],
                  response={"id": rid}, size=size)

    put("a")
    put("b", "a")
    put("c", "b")
    assert [m["content"] for m in store.history("c", "k")] == ["a", "b", "c"]
    with pytest.raises(ResponseNotFound):
        store.history("c", "other-key")
    put("d")  # over max_entries: the least recently used goes (the chain's root, "a")
    assert store.get("c", "k") == {"id": "c"}
    with pytest.raises(ResponseNotFound) as err:
        store.history("c", "k")  # its chain is broken
    assert err.value.status_code == 404 and err.value.param == "previous_response_id"
    assert len(store) == 3
    now[0] = 61.0  # past the TTL since last use
    with pytest.raises(ResponseNotFound):
        store.get("d", "k")
    put("big", size=900)
    put("bigger", size=900)  # over max_bytes: "big" goes
    assert store.get("bigger", "k") == {"id": "bigger"}
    with pytest.raises(ResponseNotFound) as err:
        store.get("big", "k")
    assert err.value.code == "response_not_found"
    store.delete("bigger", "k")
    with pytest.raises(ResponseNotFound):
        store.get("bigger", "k")


def test_one_key_cannot_evict_the_others() -> None:
    from modelmix.server._response_store import ResponseNotFound, ResponseStore

    store = ResponseStore(max_entries=8, max_bytes=1000)  # a key holds 2 / 250 bytes at most

    def put(rid: str, key: str, size: int = 10) -> None:
        store.put(rid, key=key, parent=None, turn=[], response={"id": rid}, size=size)

    put("victim", "tenant-a")
    for i in range(20):
        put(f"flood-{i}", "tenant-b")
    assert store.get("victim", "tenant-a") == {"id": "victim"}
    assert len(store) == 3  # the flooder keeps its own two newest
    assert store.get("flood-19", "tenant-b") and store.get("flood-18", "tenant-b")
    with pytest.raises(ResponseNotFound):
        store.get("flood-17", "tenant-b")
    store.get("flood-18", "tenant-b")  # used: now its most recent
    put("flood-20", "tenant-b")  # so flood-19 goes, not flood-18
    assert store.get("flood-18", "tenant-b")
    with pytest.raises(ResponseNotFound):
        store.get("flood-19", "tenant-b")
    put("fat", "tenant-b", size=245)  # flood-20 goes (count), then flood-18 (10 + 245 > 250)
    for gone in ("flood-20", "flood-18"):
        with pytest.raises(ResponseNotFound):
            store.get(gone, "tenant-b")
    assert store.get("victim", "tenant-a") == {"id": "victim"}
    store.delete("fat", "tenant-b")
    assert len(store) == 1 and store._keys.keys() == {"tenant-a"}
