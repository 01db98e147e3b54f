from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))


# -- Redis (tests/_redis.py): one server per session, flushed before each test ------------

from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def redis_server() -> Iterator[object]:
    """A redis-server on loopback shared by the session (skips, or fails under CI=true,
    without Debian's redis-server)."""
    from _redis import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture()
def redis_url(redis_server: object) -> str:
    """The session server's URL, emptied for this test."""
    from _redis import RedisServer

    assert isinstance(redis_server, RedisServer)
    redis_server.flush()
    return redis_server.url


@pytest.fixture()
def own_redis() -> Iterator[object]:
    """A redis-server of this test's own, which it may stop and start (Redis-down tests)."""
    from _redis import RedisServer

    server = RedisServer()
    server.start()
    try:
        yield server
    finally:
        server.close()
