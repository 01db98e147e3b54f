from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


# -- The tests never read the user's set-up ------------------------------------------------
# Found by a new user: after `modelmix keys create` in the checkout (as docs/keys.md shows),
# ./modelmix_usage.db held a virtual key, so every gateway the tests started demanded keys
# and 174 tests failed. The session runs in a directory of its own (the default store,
# spill files and anything else relative land there), without the user's MODELMIX_*
# settings or provider keys (a real OPENAI_API_KEY would make `auto` call OpenAI).
_KEEP = {"MODELMIX_TEST_PG_URL", "MODELMIX_SCREENSHOT_DIR"}
for _name in [n for n in os.environ if n.startswith("MODELMIX_") and n not in _KEEP]:
    del os.environ[_name]
for _name in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NVIDIA_API_KEY"):
    os.environ.pop(_name, None)
os.chdir(tempfile.mkdtemp(prefix="modelmix-tests-"))


# -- Redis (tests/_redis.py): one server per session, flushed before each test ------------


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


# -- PostgreSQL (tests/_postgres.py): one cluster per session, a schema per test ----------


@pytest.fixture(scope="session")
def pg_server_url() -> Iterator[str]:
    """URL of a PostgreSQL server to test against (``MODELMIX_TEST_PG_URL``, or a
    throwaway cluster started here from Debian's binaries)."""
    import os

    from _postgres import Cluster, pg_bindir, unavailable

    given = os.environ.get("MODELMIX_TEST_PG_URL")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg (pip install 'modelmix[postgres]')")
    if given:
        yield given
        return
    bindir = pg_bindir()
    if bindir is None:
        unavailable("initdb and pg_ctl (not found under /usr/lib/postgresql/*/bin or PATH)")
    assert bindir is not None
    cluster = Cluster(bindir)
    try:
        url = cluster.start()
    except Exception:
        cluster.stop()
        raise
    try:
        yield url
    finally:
        cluster.stop()


@contextmanager
def _pg_schema(server_url: str) -> Iterator[str]:
    """A URL of ``server_url`` whose search_path is a fresh schema, dropped on exit."""
    import uuid

    import sqlalchemy as sa

    from modelmix.store._sql import normalize_url

    schema = f"modelmix_test_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(normalize_url(server_url))
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    url = normalize_url(server_url).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture()
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A URL whose search_path is a fresh schema, dropped after the test."""
    with _pg_schema(pg_server_url) as url:
        yield url


@pytest.fixture(scope="module")
def pg_module_url(pg_server_url: str) -> Iterator[str]:
    """As ``pg_url``, one schema for a whole test module (processes started once per
    module, such as tests/test_replicas.py's gateways, keep one database)."""
    with _pg_schema(pg_server_url) as url:
        yield url
