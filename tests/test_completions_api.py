"""``POST /v1/completions`` (legacy text completions) through a real gateway on loopback,
with the official OpenAI SDK, over a recording OpenAI-compatible upstream; every
endpoint with and without ``/v1``; ``GET /v1/models/{id}``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
from starlette.routing import Route

from _choices_upstream import ChoicesUpstream
from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.testing import FakeProvider, ListSink


@dataclass
class Gateway:
    url: str
    upstream: ChoicesUpstream
    sink: ListSink
    local: FakeProvider

    @property
    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0)

    def last_body(self) -> dict[str, object]:
        return self.upstream.received[-1].body


@pytest.fixture()
def gateway(tmp_path: Path) -> Iterator[Gateway]:
    model_file = tmp_path / "m.gguf"
    model_file.write_bytes(b"GGUF")
    with ChoicesUpstream("up") as upstream:
        config = config_from_dict({
            "deployments": [
                {"name": "compat", "provider": "openai-compatible", "base_url": upstream.url,
                 "model": "up-model", "context_window": 4096},
                {"name": "org/local-model", "provider": "local", "model": "smol",
                 "model_path": str(model_file)},
            ],
            "router": "rules",
        })
        local = FakeProvider(config.deployment("org/local-model"), reply="local words")
        sink = ListSink()
        service = ChatService(config, providers={"org/local-model": local}, usage=sink)
        with serve_app(create_app(service=service)) as url:
            yield Gateway(url, upstream, sink, local)


def test_completion_maps_onto_one_chat_request(gateway: Gateway) -> None:
    done = gateway.client.completions.create(
        model="compat", prompt="Once upon a time", temperature=0.5, top_p=0.9, stop=["\n"],
        seed=7, user="u1", presence_penalty=0.1, frequency_penalty=0.2)
    body = gateway.last_body()
    assert body["messages"] == [{"role": "user", "content": "Once upon a time"}]
    assert body["max_tokens"] == 16  # the legacy API's default, honoured
    assert (body["temperature"], body["top_p"], body["stop"], body["seed"], body["user"],
            body["presence_penalty"], body["frequency_penalty"]) == (
        0.5, 0.9, ["\n"], 7, "u1", 0.1, 0.2)
    assert "prompt" not in body and "logprobs" not in body and "n" not in body
    assert done.object == "text_completion" and done.id.startswith("cmpl-")
    assert [(c.index, c.text, c.finish_reason) for c in done.choices] == [
        (0, "choice 0 of up", "stop")]
    assert done.usage is not None and done.usage.completion_tokens == 4
    rec = gateway.sink.wait_for(1)[-1]
    assert (rec.endpoint, rec.deployment, rec.completion_tokens) == ("completions", "compat", 4)


def test_list_of_one_prompt_and_explicit_max_tokens(gateway: Gateway) -> None:
    gateway.client.completions.create(model="compat", prompt=["Hi"], max_tokens=40)
    body = gateway.last_body()
    assert body["messages"] == [{"role": "user", "content": "Hi"}]
    assert body["max_tokens"] == 40


def test_completion_stream(gateway: Gateway) -> None:
    chunks = list(gateway.client.completions.create(
        model="compat", prompt="go", stream=True, stream_options={"include_usage": True}))
    assert {c.object for c in chunks} == {"text_completion"}
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "choice 0 of up"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finishes[-1] == "stop" and set(finishes[:-1]) == {None}
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    raw = httpx.post(gateway.url + "/v1/completions",
                     json={"model": "compat", "prompt": "go", "stream": True})
    assert raw.text.endswith("data: [DONE]\n\n")
    assert '"usage"' not in raw.text  # not asked for
    assert gateway.sink.wait_for(2)[-1].endpoint == "completions"


def test_n_choices_forwarded_and_indexed(gateway: Gateway) -> None:
    done = gateway.client.completions.create(model="compat", prompt="p", n=3, best_of=3)
    assert gateway.last_body()["n"] == 3 and gateway.upstream.count == 1
    assert [(c.index, c.text) for c in done.choices] == [
        (i, f"choice {i} of up") for i in range(3)]
    streamed: dict[int, str] = {}
    for chunk in gateway.client.completions.create(model="compat", prompt="p", n=2,
                                                   stream=True):
        for c in chunk.choices:
            streamed[c.index] = streamed.get(c.index, "") + c.text
    assert streamed == {0: "choice 0 of up", 1: "choice 1 of up"}


def test_logprobs_in_the_legacy_shape(gateway: Gateway) -> None:
    done = gateway.client.completions.create(model="compat", prompt="abc", logprobs=2)
    body = gateway.last_body()
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    lp = done.choices[0].logprobs
    assert lp is not None
    assert lp.tokens == ["choice", " 0", " of", " up"]
    assert lp.token_logprobs == [-0.1, -0.2, -0.3, -0.4]
    assert lp.top_logprobs is not None and lp.top_logprobs[1] == {" 0": -0.2, "alt1": -1.2}
    # offsets count from the prompt's start, as the legacy API's do
    assert lp.text_offset == [3, 9, 11, 14]
    streamed = [c.choices[0].logprobs for c in gateway.client.completions.create(
        model="compat", prompt="abc", logprobs=1, stream=True) if c.choices and
        c.choices[0].logprobs]
    assert [lp.tokens[0] for lp in streamed] == ["choice", " 0", " of", " up"]
    assert [lp.text_offset[0] for lp in streamed] == [3, 9, 11, 14]


def test_echo_prepends_the_prompt(gateway: Gateway) -> None:
    done = gateway.client.completions.create(model="compat", prompt="Q: ", echo=True)
    assert done.choices[0].text == "Q: choice 0 of up"
    chunks = list(gateway.client.completions.create(model="compat", prompt="Q: ", echo=True,
                                                    stream=True))
    assert chunks[0].choices[0].text == "Q: "
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "Q: choice 0 of up"


@pytest.mark.parametrize(("extra", "needle"), [
    ({"prompt": ["a", "b"]}, "2 prompts"),
    ({"prompt": [1, 2, 3]}, "token-id prompts"),
    ({"prompt": None}, "prompt"),
    ({"suffix": "end"}, "suffix"),
    ({"best_of": 3}, "best_of 3 with n 1"),
    ({"echo": True, "logprobs": 1}, "echo with logprobs"),
    ({"logprobs": 6}, "logprobs"),
    ({"n": 9}, "n"),
    ({"messages": [{"role": "user", "content": "x"}]}, "messages: chat completions field"),
])
def test_unmappable_requests_are_refused(gateway: Gateway, extra: dict[str, object],
                                         needle: str) -> None:
    resp = httpx.post(gateway.url + "/v1/completions",
                      json={"model": "compat", "prompt": "p", **extra})
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert needle in error["message"] or error["param"] == needle
    assert gateway.upstream.count == 0


def test_logprobs_refused_where_the_deployment_has_none(gateway: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gateway.client.completions.create(model="org/local-model", prompt="p", logprobs=1)
    assert "logprobs" in str(err.value)
    assert gateway.local.calls == []
    done = gateway.client.completions.create(model="org/local-model", prompt="p")
    assert done.choices[0].text == "local words"


def test_every_v1_route_has_its_twin_without_v1(gateway: Gateway) -> None:
    app = create_app(service=ChatService(config_from_dict(
        {"deployments": [{"name": "a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
                          "model": "m"}]})))
    routes = {r.path: r for r in app.routes if isinstance(r, Route)}
    v1 = [p for p in routes if p.startswith("/v1/")]
    assert "/v1/completions" in v1 and "/v1/models/{model_id:path}" in v1
    for path in v1:
        twin = routes.get(path[3:])
        assert twin is not None, path
        assert twin.endpoint is routes[path].endpoint and twin.methods == routes[path].methods


@pytest.mark.parametrize("prefix", ["/v1", ""])
def test_endpoints_answer_alike_with_and_without_v1(gateway: Gateway, prefix: str) -> None:
    url = gateway.url + prefix
    chat = httpx.post(url + "/chat/completions", json={
        "model": "compat", "messages": [{"role": "user", "content": "x"}]})
    assert chat.json()["choices"][0]["message"]["content"] == "choice 0 of up"
    done = httpx.post(url + "/completions", json={"model": "compat", "prompt": "x"})
    assert done.json()["choices"][0]["text"] == "choice 0 of up"
    listed = httpx.get(url + "/models").json()
    assert {"compat", "org/local-model"} <= {m["id"] for m in listed["data"]}
    one = httpx.get(url + "/models/org/local-model")  # an id holding a slash
    assert one.status_code == 200 and one.json()["id"] == "org/local-model"
    assert one.json()["modelmix"]["kind"] == "deployment"
    missing = httpx.get(url + "/models/no/such-model")
    assert missing.status_code == 404
    assert missing.json()["error"]["code"] == "model_not_found"
    bad = httpx.post(url + "/completions", json={"model": "compat"})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "prompt"


def test_sdk_model_retrieve(gateway: Gateway) -> None:
    assert gateway.client.models.retrieve("compat").id == "compat"
    with pytest.raises(openai.NotFoundError):
        gateway.client.models.retrieve("nope")


# -- malformed upstream logprobs, and a bug while writing the answer ------------------------


class _OddLogprobs(ChoicesUpstream):
    """Answers ``logprobs`` with whatever shape it is given (as a broken server may)."""

    def __init__(self, shape: object):
        super().__init__("odd")
        self.shape = shape

    def _logprobs(self, tokens: list[str], top: int) -> dict[str, object]:  # type: ignore[override]
        return self.shape  # type: ignore[return-value]


@pytest.mark.parametrize("shape", [
    {"content": [None]},
    {"content": ["x"]},
    {"content": [{"token": "a", "logprob": -1, "top_logprobs": [None]}]},
    {"content": [{"token": "a", "logprob": -1, "top_logprobs": "zz"}]},
    {"content": "zz"},
])
def test_malformed_upstream_logprobs_are_skipped_not_a_500(shape: object) -> None:
    with _OddLogprobs(shape) as upstream:
        config = config_from_dict({"deployments": [
            {"name": "odd", "provider": "openai-compatible", "base_url": upstream.url,
             "model": "m"}], "router": "rules"})
        with serve_app(create_app(service=ChatService(config))) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
            done = client.completions.create(model="odd", prompt="hi", logprobs=1)
            assert done.choices[0].text == "choice 0 of odd"
            logprobs = done.choices[0].logprobs  # what could be read, or none
            assert logprobs is None or all(isinstance(t, str) for t in logprobs.tokens or [])
            texts = [c.choices[0].text for c in client.completions.create(
                model="odd", prompt="hi", logprobs=1, stream=True) if c.choices]
            assert "".join(texts) == "choice 0 of odd"


def test_a_failure_writing_the_answer_is_a_502_and_an_error_event(
        gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    import modelmix.server._completions as completions

    def broken(*args: object, **kw: object) -> object:
        raise AttributeError("a bug")

    monkeypatch.setattr(completions, "text_completion", broken)
    monkeypatch.setattr(completions.CompletionStream, "convert", broken)
    r = httpx.post(gateway.url + "/v1/completions", json={"model": "compat", "prompt": "hi"},
                   headers={"x-request-id": "req-502"})
    assert r.status_code == 502 and r.headers["x-request-id"] == "req-502"
    error = r.json()["error"]
    assert error["code"] == "invalid_upstream_response" and "a bug" not in error["message"]
    with httpx.stream("POST", gateway.url + "/v1/completions",
                      json={"model": "compat", "prompt": "hi", "stream": True}) as s:
        events = [line for line in s.iter_lines() if line.startswith("data: ")]
    assert s.status_code == 200
    assert len(events) == 1 and '"invalid_upstream_response"' in events[0]
