"""``n > 1`` and ``logprobs`` for chat completions: forwarded to OpenAI-compatible
upstreams (the official SDK against a real gateway and a recording upstream), fanned out
for other deployments (FakeProvider), and what must stay right with them: budgets, the
response cache, the data guard's restoring of every choice, explicit refusals."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from _choices_upstream import ChoicesUpstream
from _guard_fakes import EchoProvider, RegexDetector
from _servers import serve_app
from faulty_upstream import Fault
from modelmix.catalog import Config, config_from_dict
from modelmix.engine import CallContext, ChatService
from modelmix.engine._cache import StreamCapture, replay
from modelmix.errors import BudgetExceeded, InvalidRequest, UpstreamUnavailable
from modelmix.guard import Guard, load_policy
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, ChunkChoice, Delta
from modelmix.routing import RouteDecision
from modelmix.server import create_app
from modelmix.server._limits import KeyLimiter, KeyLimits, request_bounds
from modelmix.testing import FakeProvider, ListSink

MESSAGES = [{"role": "user", "content": "hello"}]


def _request(**kw: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": kw.pop("model", "local"),
                                       "messages": MESSAGES, **kw})


# -- OpenAI-compatible upstreams: n and logprobs forwarded -----------------------------------


@pytest.fixture()
def upstreams() -> Iterator[tuple[str, ChoicesUpstream, ChoicesUpstream]]:
    with ChoicesUpstream("native") as native, ChoicesUpstream("deaf", honour_n=False) as deaf:
        config = config_from_dict({"deployments": [
            {"name": "native", "provider": "openai-compatible", "base_url": native.url,
             "model": "m"},
            {"name": "deaf", "provider": "vllm", "base_url": deaf.url, "model": "m"},
        ], "router": "rules"})
        with serve_app(create_app(service=ChatService(config))) as url:
            yield url, native, deaf


def _client(url: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)


def test_n_forwarded_to_an_openai_compatible_upstream(upstreams: Any) -> None:
    url, native, _ = upstreams
    done = _client(url).chat.completions.create(model="native", messages=MESSAGES, n=3)
    assert native.count == 1 and native.received[0].body["n"] == 3
    assert [(c.index, c.message.content) for c in done.choices] == [
        (i, f"choice {i} of native") for i in range(3)]
    assert done.usage is not None and done.usage.completion_tokens == 12


def test_upstream_ignoring_n_is_topped_up(upstreams: Any) -> None:
    url, _, deaf = upstreams
    done = _client(url).chat.completions.create(model="deaf", messages=MESSAGES, n=3)
    bodies = [r.body for r in deaf.received]
    assert [b.get("n") for b in bodies] == [3, None, None]  # asked once, then one by one
    assert [c.index for c in done.choices] == [0, 1, 2]
    assert {c.message.content for c in done.choices} == {"choice 0 of deaf"}
    assert done.usage is not None
    assert (done.usage.prompt_tokens, done.usage.completion_tokens) == (21, 12)  # summed


def test_streamed_n_keeps_each_choice_apart(upstreams: Any) -> None:
    url, native, deaf = upstreams
    for name, up in (("native", native), ("deaf", deaf)):
        texts: dict[int, str] = {}
        finished: set[int] = set()
        usage = None
        for chunk in _client(url).chat.completions.create(
                model=name, messages=MESSAGES, n=2, stream=True,
                stream_options={"include_usage": True}):
            usage = chunk.usage or usage
            for c in chunk.choices:
                texts[c.index] = texts.get(c.index, "") + (c.delta.content or "")
                if c.finish_reason:
                    finished.add(c.index)
        expected = ({0: "choice 0 of native", 1: "choice 1 of native"} if name == "native"
                    else {0: "choice 0 of deaf", 1: "choice 0 of deaf"})
        assert texts == expected and finished == {0, 1}
        assert usage is not None and usage.completion_tokens == 8
        assert up.count == (1 if name == "native" else 2)


def test_logprobs_forwarded_and_returned(upstreams: Any) -> None:
    url, native, _ = upstreams
    done = _client(url).chat.completions.create(model="native", messages=MESSAGES,
                                                logprobs=True, top_logprobs=2)
    body = native.received[-1].body
    assert (body["logprobs"], body["top_logprobs"]) == (True, 2)
    lp = done.choices[0].logprobs
    assert lp is not None and lp.content is not None
    assert [t.token for t in lp.content] == ["choice", " 0", " of", " native"]
    assert [t.token for t in lp.content[0].top_logprobs] == ["choice", "alt1"]
    streamed = [c.choices[0].logprobs for c in _client(url).chat.completions.create(
        model="native", messages=MESSAGES, logprobs=True, top_logprobs=1, stream=True)
        if c.choices and c.choices[0].logprobs]
    assert [p.content[0].token for p in streamed if p.content] == [
        "choice", " 0", " of", " native"]


@pytest.mark.parametrize(("body", "param"), [
    ({"n": 9}, "n"),
    ({"n": 0}, "n"),
    ({"top_logprobs": 2}, None),  # without logprobs: refused, as OpenAI does
    ({"top_logprobs": 21, "logprobs": True}, "top_logprobs"),
])
def test_bad_n_and_logprobs_are_400(upstreams: Any, body: dict[str, Any],
                                    param: str | None) -> None:
    url, native, _ = upstreams
    resp = httpx.post(url + "/v1/chat/completions",
                      json={"model": "native", "messages": MESSAGES, **body})
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["param"] == param or "top_logprobs needs logprobs" in error["message"]
    assert native.count == 0


# -- the fan-out for deployments without native n ------------------------------------------


def _local_config(tmp_path: Path, **extra: Any) -> Config:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    return config_from_dict({"deployments": [
        {"name": "local", "provider": "local", "model": "smol", "model_path": str(model),
         "input_cost_per_mtok": 1, "output_cost_per_mtok": 2, "context_window": 4096},
        {"name": "claude", "provider": "anthropic", "model": "c", "api_key_env": "PATH"},
        {"name": "compat", "provider": "openai-compatible",
         "base_url": "http://127.0.0.1:9/v1", "model": "x"},
    ], "groups": {"mixed": ["claude", "compat"]}, "router": "rules", **extra})


class Numbered(FakeProvider):
    """Answers ``answer <k>`` for its k-th call."""

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.reply = f"answer {len(self.calls)}"
        return await super().complete(request)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.reply = f"answer {len(self.calls)}"
        async for chunk in super().stream(request):
            yield chunk


async def test_fan_out_merges_choices_and_sums_usage(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    fake = Numbered(config.deployment("local"), prompt_tokens=10)
    sink = ListSink()
    service = ChatService(config, providers={"local": fake}, usage=sink)
    done = await service.complete(_request(n=3))
    assert len(fake.calls) == 3 and {c.n for c in fake.calls} == {None}  # one call a choice
    assert [c.index for c in done.response.choices] == [0, 1, 2]
    assert sorted(c.message.content or "" for c in done.response.choices) == [
        "answer 0", "answer 1", "answer 2"]
    usage = done.response.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (30, 6)
    rec = sink.records[-1]
    assert (rec.prompt_tokens, rec.completion_tokens) == (30, 6)
    assert done.cost_usd == pytest.approx((30 * 1 + 6 * 2) / 1e6)


async def test_fan_out_stream_one_choice_after_another(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    fake = Numbered(config.deployment("local"), prompt_tokens=10)
    service = ChatService(config, providers={"local": fake})
    started = await service.stream(_request(n=3, stream=True,
                                            stream_options={"include_usage": True}))
    chunks = [c async for c in started.chunks]
    await started.aclose()
    order = [c.choices[0].index for c in chunks if c.choices]
    assert order == sorted(order) and set(order) == {0, 1, 2}
    texts = {i: "".join(c.text for c in chunks if c.choices and c.choices[0].index == i)
             for i in range(3)}
    assert texts == {0: "answer 0", 1: "answer 1", 2: "answer 2"}
    assert len({c.id for c in chunks}) == 1  # one completion id throughout
    usages = [c.usage for c in chunks if c.usage is not None]
    assert len(usages) == 1 and usages[0].prompt_tokens == 30


async def test_fan_out_failure_cancels_the_rest(tmp_path: Path) -> None:
    config = _local_config(tmp_path, reliability={"num_retries": 0})

    class OneFails(FakeProvider):
        async def complete(self, request: ChatRequest) -> ChatResponse:
            if len(self.calls) == 1:
                self.calls.append(request)
                raise UpstreamUnavailable("boom", deployment="local")
            return await super().complete(request)

    fake = OneFails(config.deployment("local"), delay_s=5)
    service = ChatService(config, providers={"local": fake})
    with pytest.raises(UpstreamUnavailable):
        await asyncio.wait_for(service.complete(_request(n=3)), timeout=2)


async def test_n_one_never_goes_through_the_fan_out(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    fake = FakeProvider(config.deployment("local"))
    service = ChatService(config, providers={"local": fake})
    assert service._guarded(CallContext(), _request()) is None
    await service.complete(_request(n=1))
    assert len(fake.calls) == 1


# -- logprobs refused where they cannot be returned ----------------------------------------


@pytest.mark.parametrize("model", ["local", "claude"])
async def test_logprobs_refused_by_deployments_without_them(tmp_path: Path,
                                                            model: str) -> None:
    config = _local_config(tmp_path)
    fake = FakeProvider(config.deployment(model))
    service = ChatService(config, providers={model: fake})
    with pytest.raises(InvalidRequest, match="no logprobs") as err:
        await service.complete(_request(model=model, logprobs=True))
    assert err.value.code == "unsupported_request"
    assert fake.calls == []


async def test_logprobs_route_within_a_group_to_a_deployment_with_them(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    fakes = {n: FakeProvider(config.deployment(n)) for n in ("claude", "compat")}
    service = ChatService(config, providers=fakes)
    assert (await service.complete(_request(model="mixed"))).deployment.name == "claude"
    done = await service.complete(_request(model="mixed", logprobs=True))
    assert done.deployment.name == "compat"
    assert done.decision.excluded["claude"].why == "no logprobs"


def test_supports_logprobs_overrides_the_provider_default(tmp_path: Path) -> None:
    config = config_from_dict({"deployments": [
        {"name": "ollama", "provider": "ollama", "model": "x", "supports_logprobs": False},
        {"name": "vllm", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "y"},
        {"name": "claude", "provider": "anthropic", "model": "c"}]})
    assert [d.returns_logprobs for d in config.deployments] == [False, True, False]


async def test_systems_refuse_n_and_logprobs(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    sink = ListSink()
    service = ChatService(config, usage=sink)
    for kw, param in (({"n": 2}, "n"), ({"logprobs": True}, "logprobs")):
        with pytest.raises(InvalidRequest) as err:
            await service.complete(_request(model="system/any", **kw))
        assert err.value.param == param
    assert [r.status_code for r in sink.records] == [400, 400]


# -- budgets ---------------------------------------------------------------------------------


def test_admission_bound_scales_with_n(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    dep = config.deployment("local")
    decision = RouteDecision(deployment=dep, reason="test")
    one_cost, one_tokens = request_bounds(decision, _request(max_tokens=100))
    three_cost, three_tokens = request_bounds(decision, _request(max_tokens=100, n=3))
    assert one_cost > 0 and three_cost == pytest.approx(3 * one_cost)
    assert three_tokens == 3 * one_tokens


async def test_budget_admits_n_only_when_every_choice_fits(tmp_path: Path) -> None:
    config = _local_config(tmp_path)
    decision = RouteDecision(deployment=config.deployment("local"), reason="test")
    one, _ = request_bounds(decision, _request(max_tokens=100))
    limiter = KeyLimiter("k", KeyLimits(budget_usd=one * 2.5))
    with pytest.raises(BudgetExceeded):
        await limiter.admit(decision, _request(max_tokens=100, n=3))
    reservation = await limiter.admit(decision, _request(max_tokens=100, n=2))
    assert limiter.reserved_usd == pytest.approx(2 * one)
    limiter.settle(reservation, 0.0, 0)


# -- the response cache ----------------------------------------------------------------------


async def test_cache_keeps_n_apart(tmp_path: Path) -> None:
    config = _local_config(tmp_path, cache={"mode": "exact"})
    fake = Numbered(config.deployment("local"))
    service = ChatService(config, providers={"local": fake})
    three = await service.complete(_request(n=3), CallContext())
    assert three.cache == "miss" and len(three.response.choices) == 3
    one = await service.complete(_request(), CallContext())
    assert one.cache == "miss" and len(one.response.choices) == 1  # not n=3's answer
    again = await service.complete(_request(n=3), CallContext())
    assert again.cache == "hit"
    assert [c.message.content for c in again.response.choices] == [
        c.message.content for c in three.response.choices]
    replayed = await service.stream(_request(n=3, stream=True), CallContext())
    indexes = {c.choices[0].index async for c in replayed.chunks if c.choices}
    assert replayed.cache == "hit" and indexes == {0, 1, 2}


def test_streamed_logprobs_are_not_rebuilt_but_replayed() -> None:
    logprobs = {"content": [{"token": "hi", "logprob": -0.5, "top_logprobs": []}]}
    capture = StreamCapture()
    capture.feed(ChatChunk(id="c", created=1, model="m", choices=[ChunkChoice(
        delta=Delta(content="hi"), logprobs=logprobs)]))
    capture.feed(ChatChunk(id="c", created=1, model="m", choices=[ChunkChoice(
        delta=Delta(), finish_reason="stop")]))
    assert capture.response() is None  # would be stored without its logprobs
    stored = ChatResponse.model_validate({"id": "c", "created": 1, "model": "m", "choices": [
        {"index": 0, "message": {"content": "hi"}, "finish_reason": "stop",
         "logprobs": logprobs}]})

    async def chunks() -> list[ChatChunk]:
        return [c async for c in replay(stored, False)]

    first = asyncio.run(chunks())[0]
    assert first.choices[0].logprobs == logprobs


async def test_streamed_n_answers_are_not_cached(tmp_path: Path) -> None:
    config = _local_config(tmp_path, cache={"mode": "exact"})
    fake = Numbered(config.deployment("local"))
    service = ChatService(config, providers={"local": fake})
    first = await service.stream(_request(n=2, stream=True), CallContext())
    _ = [c async for c in first.chunks]
    await first.aclose()
    after = await service.complete(_request(n=2), CallContext())
    assert after.cache == "miss"  # the stream's two choices were not stored as one


# -- the data guard ----------------------------------------------------------------------------


def _guarded(provider: str, model: str) -> tuple[ChatService, EchoProvider]:
    config = config_from_dict({"deployments": [
        {"name": "cloud", "provider": provider, "model": model, "api_key_env": "PATH"}],
        "router": "ordered"})
    echo = EchoProvider(config.deployment("cloud"))
    guard = Guard(load_policy("finance"), RegexDetector(), in_thread=False)
    return ChatService(config, providers={"cloud": echo}, guard=guard), echo


SECRET = "card 4111 1111 1111 1111 and ssn 123-45-6789"


@pytest.mark.parametrize("provider", ["openai", "anthropic"])
async def test_every_choice_is_restored(provider: str) -> None:
    service, echo = _guarded(provider, "m")
    request = ChatRequest.model_validate(
        {"model": "cloud", "n": 3, "messages": [{"role": "user", "content": SECRET}]})
    done = await service.complete(request)
    assert all("4111" not in c.messages[-1].text() for c in echo.calls)  # placeholders sent
    assert [c.message.content for c in done.response.choices] == [SECRET] * 3
    started = await service.stream(request.model_copy(update={"stream": True}))
    chunks = [c async for c in started.chunks]
    await started.aclose()
    texts = {i: "".join(c.text for c in chunks if c.choices and c.choices[0].index == i)
             for i in range(3)}
    assert texts == {0: SECRET, 1: SECRET, 2: SECRET}


async def test_logprobs_refused_under_pseudonymisation() -> None:
    service, echo = _guarded("openai", "m")
    request = ChatRequest.model_validate({"model": "cloud", "logprobs": True,
                                          "messages": [{"role": "user", "content": SECRET}]})
    with pytest.raises(InvalidRequest, match="logprobs: token logprobs would show"):
        await service.complete(request)
    assert echo.calls == []
    clean = ChatRequest.model_validate({"model": "cloud", "logprobs": True, "messages": [
        {"role": "user", "content": "nothing secret"}]})
    assert (await service.complete(clean)).deployment.name == "cloud"


# -- a deployment's rpm and max_concurrency hold for n > 1 -----------------------------------


class _PeakUpstream(ChoicesUpstream):
    """A ChoicesUpstream that also knows the most requests it served at once."""

    def __init__(self, name: str, **kw: Any):
        super().__init__(name, **kw)
        self.in_flight = self.peak = 0

    async def _chat(self, request: Any, reader: Any, writer: Any) -> bool:
        self.in_flight += 1  # the upstream's own event loop: no lock needed
        self.peak = max(self.peak, self.in_flight)
        try:
            return await super()._chat(request, reader, writer)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("stream", [False, True])
def test_n_counts_against_rpm_and_never_passes_max_concurrency(stream: bool) -> None:
    """An upstream that ignores n is asked once per choice: each of those calls is a
    request against the deployment's rpm, and they never overlap past max_concurrency."""
    with _PeakUpstream("deaf", honour_n=False) as deaf:
        deaf.default = Fault.hang(0.05)
        config = config_from_dict({"deployments": [
            {"name": "deaf", "provider": "vllm", "base_url": deaf.url, "model": "m",
             "rpm": 5, "max_concurrency": 1}], "router": "rules"})
        with serve_app(create_app(service=ChatService(config))) as url:
            client = _client(url)

            def ask(n: int) -> Any:
                return client.chat.completions.create(model="deaf", messages=MESSAGES, n=n,
                                                      stream=stream)

            done = ask(4)
            if stream:
                list(done)  # drain the stream
            assert deaf.count == 4 and deaf.peak == 1
            for n in (2, 6):  # 4 + 2 > 5, and 6 is more than 5 in any minute
                with pytest.raises(openai.RateLimitError) as err:
                    ask(n)
                assert err.value.code == "deployment_rate_limited"
            assert deaf.count == 4  # refused before any upstream call
            one = ask(1)
            if stream:
                list(one)
            assert deaf.count == 5


async def test_fan_out_is_sequential_under_max_concurrency(tmp_path: Path) -> None:
    model = tmp_path / "m.gguf"
    model.write_bytes(b"GGUF")
    config = config_from_dict({"deployments": [
        {"name": "local", "provider": "local", "model": "smol", "model_path": str(model),
         "max_concurrency": 2}]})

    class Peak(FakeProvider):
        in_flight = peak = 0

        async def complete(self, request: ChatRequest) -> ChatResponse:
            Peak.in_flight += 1
            Peak.peak = max(Peak.peak, Peak.in_flight)
            try:
                return await super().complete(request)
            finally:
                Peak.in_flight -= 1

    fake = Peak(config.deployment("local"), delay_s=0.02)
    service = ChatService(config, providers={"local": fake})
    done = await service.complete(_request(n=3))
    assert len(done.response.choices) == 3 and len(fake.calls) == 3
    assert Peak.peak == 1  # one request holds one slot: its calls take turns
