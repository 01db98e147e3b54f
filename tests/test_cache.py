"""The response cache in the service (docs/cache.md): exact hits and misses, what the key
covers, isolation per key and per data class, expiry, streams, the usage row of a hit."""

from __future__ import annotations

from typing import Any

import pytest

from modelmix.catalog import config_from_dict
from modelmix.engine import CallContext, ChatService, parse_cache_control
from modelmix.engine._cache import CacheControl, ResponseCache
from modelmix.errors import InvalidRequest, UpstreamUnavailable
from modelmix.guard import Guard, load_detector, load_policy
from modelmix.protocol import ChatRequest
from modelmix.state._cache import LocalStore
from modelmix.testing import FakeProvider, ListSink

DEPLOYMENTS = [
    {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m-a",
     "input_cost_per_mtok": 1, "output_cost_per_mtok": 2, "hosting": "self-hosted",
     "supports_tools": True, "supports_json_mode": True},
    {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
     "model": "m-b", "tier": "proprietary", "hosting": "cloud", "input_cost_per_mtok": 3,
     "output_cost_per_mtok": 15, "supports_tools": True, "supports_json_mode": True},
]


def make(cache: dict[str, Any] | None = None, **extra: Any
         ) -> tuple[ChatService, dict[str, FakeProvider], ListSink]:
    cfg = config_from_dict({"deployments": DEPLOYMENTS, "router": "rules",
                            "cache": {"mode": "exact", **(cache or {})}, **extra})
    fakes = {d.name: FakeProvider(d, reply=f"answer from {d.name}") for d in cfg.deployments}
    sink = ListSink()
    return ChatService(cfg, providers=fakes, usage=sink, guard=None), fakes, sink


def req(text: str = "hello there", model: str = "open-a", **kw: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **kw})


def calls(fakes: dict[str, FakeProvider]) -> int:
    return sum(len(f.calls) for f in fakes.values())


async def test_exact_hit_costs_nothing_and_shows_the_saving() -> None:
    service, fakes, sink = make()
    first = await service.complete(req(), CallContext(key_id="k1"))
    second = await service.complete(req(), CallContext(key_id="k1"))
    assert (first.cache, second.cache) == ("miss", "hit")
    assert calls(fakes) == 1
    assert second.response.text == first.response.text == "answer from open-a"
    assert second.response.id != first.response.id  # a new completion
    assert second.cost_usd == 0 and second.attempts == []
    assert second.deployment.name == "open-a"
    hit = sink.records[1]
    assert (hit.cache, hit.cost_usd, hit.prompt_tokens, hit.completion_tokens) == ("hit", 0, 0, 0)
    assert hit.saved_usd == pytest.approx(first.cost_usd) and first.cost_usd > 0
    assert sink.records[0].cache == "miss" and sink.records[0].saved_usd is None
    assert second.saved_usd == pytest.approx(first.cost_usd)


async def test_off_by_default_is_a_bypass() -> None:
    service, fakes, sink = make({"mode": "off"})
    for _ in range(2):
        done = await service.complete(req(), CallContext())
        assert done.cache == "bypass"
    assert calls(fakes) == 2 and [r.cache for r in sink.records] == ["bypass", "bypass"]


async def test_keys_are_isolated_unless_shared() -> None:
    service, fakes, _ = make()
    await service.complete(req(), CallContext(key_id="k1"))
    assert (await service.complete(req(), CallContext(key_id="k2"))).cache == "miss"
    assert calls(fakes) == 2
    shared, fakes, _ = make({"shared": True})
    await shared.complete(req(), CallContext(key_id="k1"))
    assert (await shared.complete(req(), CallContext(key_id="k2"))).cache == "hit"
    assert calls(fakes) == 1


@pytest.mark.parametrize("change", [
    {"temperature": 0.7}, {"top_p": 0.5}, {"max_tokens": 12}, {"stop": ["\n"]}, {"seed": 3},
    {"presence_penalty": 0.5}, {"response_format": {"type": "json_object"}},
    {"tools": [{"type": "function", "function": {"name": "f", "parameters": {}}}]},
    {"tool_choice": "none"}, {"logprobs": True}, {"reasoning_effort": "high"},
    {"messages": [{"role": "system", "content": "Be terse."},
                  {"role": "user", "content": "hello there"}]},
    {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"},
                  {"role": "user", "content": "hello there"}]},
    {"model": "prop-b"},
])
async def test_what_changes_the_answer_changes_the_key(change: dict[str, Any]) -> None:
    service, fakes, _ = make()
    await service.complete(req(), CallContext())
    body = {"model": "open-a", "messages": [{"role": "user", "content": "hello there"}]}
    body.update(change)
    done = await service.complete(ChatRequest.model_validate(body), CallContext())
    assert done.cache == "miss" and calls(fakes) == 2


async def test_what_does_not_change_the_answer_still_hits() -> None:
    service, fakes, _ = make()
    await service.complete(req(user="alice", timeout=30), CallContext())
    assert (await service.complete(req(user="bob"), CallContext())).cache == "hit"
    stream = await service.stream(req(stream=True), CallContext())
    assert stream.cache == "hit"
    assert "".join([c.text async for c in stream.chunks]) == "answer from open-a"
    assert calls(fakes) == 1


async def test_ttl_expiry_and_max_age() -> None:
    now = [1000.0]
    service, fakes, _ = make({"ttl_s": 60})
    service.cache = ResponseCache(service.config.cache,
                                  LocalStore(100, clock=lambda: now[0]))
    await service.complete(req(), CallContext())
    now[0] += 59
    assert (await service.complete(req(), CallContext())).cache == "hit"
    now[0] += 2
    assert (await service.complete(req(), CallContext())).cache == "miss"
    assert calls(fakes) == 2
    # a request's ttl_s is a maximum age: a fresh enough entry only
    young = CallContext(cache_control=CacheControl(ttl_s=3600))
    assert (await service.complete(req(), young)).cache == "hit"
    old = CallContext(cache_control=CacheControl(ttl_s=1e-9))
    assert (await service.complete(req(), old)).cache == "miss"


async def test_lru_bound() -> None:
    store = LocalStore(2)
    service, _fakes, _ = make()
    service.cache = ResponseCache(service.config.cache, store)
    for text in ("one", "two", "three"):
        await service.complete(req(text), CallContext())
    assert len(store) == 2
    assert (await service.complete(req("one"), CallContext())).cache == "miss"
    assert (await service.complete(req("three"), CallContext())).cache == "hit"


async def test_request_and_key_options() -> None:
    service, fakes, _ = make()
    off = CallContext(cache_control=parse_cache_control({"mode": "off"}))
    assert (await service.complete(req(), off)).cache == "bypass"
    await service.complete(req(), CallContext())
    no_store = CallContext(cache_control=parse_cache_control(None, "no-store"))
    assert (await service.complete(req(), no_store)).cache == "bypass"
    refresh = CallContext(cache_control=parse_cache_control(None, "no-cache"))
    assert (await service.complete(req(), refresh)).cache == "miss"  # fetched, stored again
    key_off = CallContext(cache_control=parse_cache_control({"mode": "exact"}, None, "off"))
    assert (await service.complete(req(), key_off)).cache == "bypass"  # the key's ceiling
    assert calls(fakes) == 5
    assert (await service.complete(req(), CallContext())).cache == "hit"
    opted_in, fakes, _ = make({"mode": "off"})
    ask = CallContext(cache_control=parse_cache_control({"mode": "exact"}))
    await opted_in.complete(req(), ask)
    assert (await opted_in.complete(req(), ask)).cache == "hit"


def test_parse_cache_control() -> None:
    assert parse_cache_control(None) == CacheControl()
    assert parse_cache_control({"mode": "semantic", "ttl_s": 60}, None, "exact") == \
        CacheControl(mode="semantic", ttl_s=60, key_mode="exact")
    assert CacheControl(mode="semantic", key_mode="exact").effective("off") == "exact"
    assert CacheControl(key_mode="semantic").effective("off") == "semantic"
    assert CacheControl().effective("exact") == "exact"
    assert parse_cache_control(None, "max-age=30").ttl_s == 30
    assert parse_cache_control(None, "No-Cache").refresh
    for bad in ({"mode": "always"}, {"ttl_s": -1}, {"other": 1}, "exact", {"ttl_s": "5"}):
        with pytest.raises(InvalidRequest, match="cache"):
            parse_cache_control(bad)


async def test_failures_and_fallback_answers_are_not_cached() -> None:
    service, fakes, _ = make(groups={"pair": ["open-a", "prop-b"]},
                             reliability={"num_retries": 0})
    fakes["open-a"].fail_times = 1
    fakes["open-a"].error = UpstreamUnavailable("down", deployment="open-a")
    first = await service.complete(req(model="pair"), CallContext())
    assert first.deployment.name == "prop-b" and first.cache == "miss"
    second = await service.complete(req(model="pair"), CallContext())  # open-a answers now
    assert second.deployment.name == "open-a" and second.cache == "miss"
    assert (await service.complete(req(model="pair"), CallContext())).cache == "hit"
    failing, fakes, sink = make(reliability={"num_retries": 0})
    fakes["open-a"].fail_times = 10
    fakes["open-a"].error = UpstreamUnavailable("down", deployment="open-a")
    for _ in range(2):
        with pytest.raises(UpstreamUnavailable):
            await failing.complete(req(), CallContext())
    assert [r.cache for r in sink.records] == ["miss", "miss"]


async def test_streams_are_stored_and_replayed() -> None:
    service, fakes, sink = make()
    first = await service.stream(req(stream=True, stream_options={"include_usage": True}),
                                 CallContext())
    text = "".join([c.text async for c in first.chunks])
    await first.aclose()
    assert first.cache == "miss" and text == "answer from open-a"
    again = await service.stream(req(stream=True, stream_options={"include_usage": True}),
                                 CallContext())
    chunks = [c async for c in again.chunks]
    await again.aclose()
    assert again.cache == "hit" and again.cost_usd == 0
    assert "".join(c.text for c in chunks) == text
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert (await service.complete(req(), CallContext())).response.text == text
    assert calls(fakes) == 1
    hit = sink.records[1]
    assert hit.stream and hit.cache == "hit" and hit.saved_usd and hit.ttft_ms is not None


async def test_media_and_systems_bypass() -> None:
    from _pixels import TINY_PNG

    service, _fakes, _ = make()
    body = {"model": "prop-b", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "what is this?"},
        {"type": "image_url", "image_url": {"url": TINY_PNG}}]}]}
    cfg = config_from_dict({"deployments": [
        {**DEPLOYMENTS[1], "input_modalities": ["text", "image"]}], "router": "rules",
        "cache": {"mode": "exact"}})
    fake = FakeProvider(cfg.deployments[0], reply="a pixel")
    media = ChatService(cfg, providers={"prop-b": fake}, guard=None)
    for _ in range(2):
        done = await media.complete(ChatRequest.model_validate(body), CallContext())
        assert done.cache == "bypass"
    step = CallContext(parent_id="p1", system="s", step="a")
    assert (await service.complete(req(), step)).cache == "bypass"


# -- data policy ---------------------------------------------------------------------------

def guarded(shared: bool = False) -> tuple[ChatService, dict[str, FakeProvider], ListSink]:
    service, fakes, sink = make({"shared": shared})
    service.guard = Guard(load_policy("healthcare"), load_detector())
    service.observers.insert(0, service.guard)
    return service, fakes, sink


REGULATED = "Patient John Smith, MRN 4471923, has type 2 diabetes: what dose of metformin?"


async def test_regulated_answers_stay_in_their_key() -> None:
    service, fakes, sink = guarded(shared=True)
    first = await service.complete(req(REGULATED), CallContext(key_id="k1"))
    assert first.deployment.name == "open-a"  # route-local under healthcare
    assert sink.records[0].audit is not None
    assert sink.records[0].audit.data_class == "regulated"
    assert (await service.complete(req(REGULATED), CallContext(key_id="k2"))).cache == "miss"
    assert (await service.complete(req(REGULATED), CallContext(key_id="k1"))).cache == "hit"
    # public requests share the namespace when cache.shared is on
    await service.complete(req("What is the capital of France?", model="prop-b"),
                           CallContext(key_id="k1"))
    shared_hit = await service.complete(req("What is the capital of France?", model="prop-b"),
                                        CallContext(key_id="k2"))
    assert shared_hit.cache == "hit"
    assert calls(fakes) == 3


async def test_no_hit_across_a_data_class_or_a_routing_outcome() -> None:
    service, fakes, _ = guarded()
    text = "What is the usual dose of metformin?"  # public: any deployment
    first = await service.complete(req(text, model="auto"), CallContext(key_id="k1"))
    assert first.cache == "miss"
    # the same text tagged phi: the policy keeps it local, another class and route
    tagged = await service.complete(req(text, model="auto"),
                                    CallContext(key_id="k1", tags=frozenset({"phi"})))
    assert tagged.cache == "miss"
    assert (await service.complete(req(text, model="auto"),
                                   CallContext(key_id="k1"))).cache == "hit"
    assert (await service.complete(req(text, model="auto"),
                                   CallContext(key_id="k1", tags=frozenset({"phi"})))
            ).cache == "hit"
    assert calls(fakes) == 2


async def test_a_tagged_request_stays_in_its_key_when_shared() -> None:
    service, fakes, _ = guarded(shared=True)
    text = "What is the usual dose of metformin?"  # public, but the caller tags it phi
    phi = frozenset({"phi"})
    await service.complete(req(text, model="auto"), CallContext(key_id="k1", tags=phi))
    other = await service.complete(req(text, model="auto"), CallContext(key_id="k2", tags=phi))
    assert other.cache == "miss"
    assert calls(fakes) == 2


def test_library_results_say_what_the_cache_did() -> None:
    from modelmix import Client

    cfg = config_from_dict({"deployments": DEPLOYMENTS, "router": "rules",
                            "cache": {"mode": "exact"}})
    fake = FakeProvider(cfg.deployments[0], reply="library answer")
    with Client(cfg, providers={"open-a": fake}, guard=None) as client:
        messages = [{"role": "user", "content": "hi"}]
        first = client.chat(model="open-a", messages=messages)
        second = client.chat(model="open-a", messages=messages)
        off = client.chat(model="open-a", messages=messages, cache={"mode": "off"})
        stream = client.chat(model="open-a", messages=messages, stream=True)
        assert "".join(c.text for c in stream) == "library answer"
    assert (first.cache, second.cache, off.cache, stream.cache) == ("miss", "hit", "bypass",
                                                                    "hit")
    assert second.cost_usd == 0 and second.saved_usd == pytest.approx(first.cost_usd)
    assert len(fake.calls) == 2 and "cache" not in (fake.calls[-1].model_extra or {})
