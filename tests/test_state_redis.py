"""SharedRedis against a real redis-server: scripts, pub/sub, outage -> StateUnavailable."""

from __future__ import annotations

import asyncio

import pytest

from modelmix.catalog import StateSettings
from modelmix.errors import ConfigError, StateUnavailable
from modelmix.state import SharedRedis, redis_url


def test_url_from_env_overrides_catalog() -> None:
    from modelmix.catalog import config_from_dict

    cfg = config_from_dict({"deployments": [{"name": "a", "provider": "local", "model": "m"}],
                            "state": {"redis_url": "redis://10.0.0.1:6379/0"}})
    assert redis_url(cfg, {}) == "redis://10.0.0.1:6379/0"
    assert redis_url(cfg, {"MODELMIX_REDIS_URL": "redis://127.0.0.1:1/2"}) == "redis://127.0.0.1:1/2"


def test_bad_scheme_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="redis://"):
        SharedRedis("http://127.0.0.1:6379", StateSettings())


def test_malformed_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError, match="malformed") as info:
        SharedRedis("redis://:s3cret@127.0.0.1:notaport/0", StateSettings())
    assert "s3cret" not in str(info.value)
    shared = SharedRedis("redis://127.0.0.1:6379/0?password=s3cret", StateSettings())
    assert "s3cret" not in repr(shared)


async def test_script_and_pubsub(redis_url: str) -> None:
    shared = SharedRedis(redis_url, StateSettings(key_prefix="t:"))
    got: list[str] = []
    shared.subscribe(shared.channel("x"), got.append)
    await shared.start()
    bump = shared.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    assert await shared.call(bump, keys=[shared.key("n", "a")], args=[3]) == 3
    assert await shared.call(bump, keys=[shared.key("n", "a")], args=[2]) == 5
    await shared.publish(shared.channel("x"), "hello")
    for _ in range(50):
        if got:
            break
        await asyncio.sleep(0.02)
    assert got == ["hello"]
    await shared.aclose()


async def test_outage_raises_state_unavailable_then_recovers(own_redis: object) -> None:
    from _redis import RedisServer

    assert isinstance(own_redis, RedisServer)
    shared = SharedRedis(own_redis.url, StateSettings(timeout_s=0.2))
    ping = shared.script("return 1")
    assert await shared.call(ping) == 1
    own_redis.stop()
    with pytest.raises(StateUnavailable) as info:
        await shared.call(ping)
    assert info.value.status_code == 503 and info.value.code == "state_unavailable"
    assert shared.down
    own_redis.start()
    assert await shared.call(ping) == 1
    assert not shared.down
    await shared.aclose()


async def test_ready_reports_shared_state(own_redis: object) -> None:
    """/ready says whether Redis answers, without leaving the load balancer over it."""
    import httpx

    from _redis import RedisServer
    from _servers import serve_app
    from modelmix.catalog import config_from_dict
    from modelmix.engine import ChatService
    from modelmix.server.app import create_app
    from modelmix.store import NullSink

    assert isinstance(own_redis, RedisServer)
    cfg = config_from_dict({"deployments": [{"name": "a", "provider": "openai-compatible",
                                             "base_url": "http://127.0.0.1:9/v1",
                                             "model": "m"}]})
    shared = SharedRedis(own_redis.url, StateSettings(timeout_s=0.2))
    app = create_app(service=ChatService(cfg, usage=NullSink(), shared=shared))
    with serve_app(app) as base:
        async with httpx.AsyncClient(base_url=base) as http:
            first = (await http.get("/ready")).json()
            own_redis.stop()
            second = await http.get("/ready")
    assert first["shared_state"] == "ok"
    assert second.status_code == 200 and second.json()["shared_state"] == "unreachable"
