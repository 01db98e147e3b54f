"""Authentication fails closed: at start-up, when the key store is down, on deep JSON.

Attacks from issue 9: requests racing the gateway's first "are there any keys?" count,
requests while PostgreSQL is stopped, and bodies nested deeper than orjson can
re-serialise. Each is run against a real gateway on loopback.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _postgres import Cluster, pg_bindir, unavailable
from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import AuthenticationFailed, AuthUnavailable
from modelmix.server import create_app
from modelmix.server.keys import KeyStore, VirtualKeyAuth
from modelmix.testing import FakeProvider, ListSink

CONFIG = {"deployments": [{"name": "local-a", "provider": "vllm",
                           "base_url": "http://127.0.0.1:9/v1", "model": "m"}]}
BODY = {"model": "local-a", "messages": [{"role": "user", "content": "hi"}]}


class SlowCountStore(KeyStore):
    """A real SQLite key store whose count takes ``delay_s`` (a slow database)."""

    def __init__(self, url: str, delay_s: float):
        super().__init__(url)
        self.delay_s = delay_s
        self.counts = 0

    def count(self) -> int:
        self.counts += 1
        time.sleep(self.delay_s)
        return super().count()


class BrokenStore(KeyStore):
    """A key store whose database is unreachable (every read raises)."""

    def count(self) -> int:
        raise ConnectionRefusedError("database unreachable")

    def get_by_hash(self, key_hash: str) -> Any:
        raise ConnectionRefusedError("database unreachable")


def _gateway(auth: VirtualKeyAuth, sink: ListSink | None = None) -> Any:
    cfg = config_from_dict(CONFIG)
    fakes = {d.name: FakeProvider(d) for d in cfg.deployments}
    return create_app(service=ChatService(cfg, providers=fakes, usage=sink), auth=auth)


async def test_concurrent_first_requests_share_one_count(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    KeyStore(url).create(alias="someone")
    store = SlowCountStore(url, delay_s=0.2)
    auth = VirtualKeyAuth(None, store)
    results = await asyncio.gather(*(auth.authenticate(None) for _ in range(50)),
                                   return_exceptions=True)
    assert all(isinstance(r, AuthenticationFailed) for r in results), results
    assert store.counts == 1


async def test_failed_count_means_keys_exist_and_refuses(tmp_path: Path) -> None:
    auth = VirtualKeyAuth(None, BrokenStore(f"sqlite:///{tmp_path / 'keys.db'}"))
    for _ in range(3):  # not cached: every keyless request is refused while it fails
        with pytest.raises(AuthUnavailable):
            await auth.authenticate(None)
        with pytest.raises(AuthUnavailable):
            await auth.authenticate("Bearer sk-mm-guess")
        with pytest.raises(AuthenticationFailed):  # not a virtual key: no lookup needed
            await auth.authenticate("Bearer wrong")


def test_keyless_burst_at_start_up_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'keys.db'}"
    KeyStore(url).create(alias="someone")
    sink = ListSink()
    app = _gateway(VirtualKeyAuth(None, SlowCountStore(url, delay_s=0.1)), sink)
    statuses: list[int] = []
    lock = threading.Lock()
    with serve_app(app) as base:
        def one(i: int) -> None:
            headers = {"authorization": "Bearer sk-mm-wrong"} if i % 2 else {}
            resp = httpx.post(base + "/v1/chat/completions", json=BODY, headers=headers,
                              timeout=30)
            with lock:
                statuses.append(resp.status_code)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(set(statuses)) == [401], statuses
    records = sink.wait_for(50)
    assert all(r.status_code == 401 and r.deployment is None for r in records)


@pytest.fixture()
def pg_cluster() -> Iterator[tuple[Cluster, str]]:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        unavailable("psycopg (pip install 'modelmix[postgres]')")
    bindir = pg_bindir()
    if bindir is None:
        unavailable("initdb and pg_ctl")
    cluster = Cluster(bindir)
    try:
        url = cluster.start()
        yield cluster, url
    finally:
        cluster.stop()


def test_store_down_is_503_never_admission(pg_cluster: tuple[Cluster, str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, url = pg_cluster
    monkeypatch.delenv("MODELMIX_MASTER_KEY", raising=False)
    store = KeyStore(url)
    key, _ = store.create(alias="valid")
    store.close()
    sink = ListSink()
    auth = VirtualKeyAuth(None, KeyStore(url), refresh_s=0.0)
    with serve_app(_gateway(auth, sink)) as base:
        chat = base + "/v1/chat/completions"
        ok = httpx.post(chat, json=BODY, headers={"authorization": f"Bearer {key}"})
        assert ok.status_code == 200, ok.text
        cluster.stop()  # PostgreSQL goes away
        answers = [httpx.post(chat, json=BODY, timeout=30) for _ in range(6)]
        answers += [httpx.post(chat, json=BODY, headers={"authorization": h}, timeout=30)
                    for h in ("Bearer sk-mm-guessed-key-000", f"Bearer {key}") * 3]
        for resp in answers:
            assert resp.status_code in (401, 503), resp.text
            error = resp.json()["error"]
            assert error["type"] in ("service_unavailable_error", "authentication_error")
            if resp.status_code == 503:
                assert error["code"] == "auth_unavailable" and resp.headers["retry-after"]
        assert [r.status_code for r in answers[:6]] == [401] * 6
        # keyless requests: the cached "keys exist" answers 401; a key that cannot be
        # looked up: 503. None is served.
        assert [r.status_code for r in answers[6:]] == [503] * 6
    records = sink.wait_for(13)  # every refusal is recorded, with why
    assert sorted(r.status_code for r in records) == sorted(
        [200] + [a.status_code for a in answers])
    assert all(r.error for r in records if r.status_code != 200)


def test_store_down_at_start_refuses_keyless(pg_cluster: tuple[Cluster, str],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    cluster, url = pg_cluster
    monkeypatch.delenv("MODELMIX_MASTER_KEY", raising=False)
    store = KeyStore(url)
    store.create(alias="valid")
    store.close()
    cluster.stop()
    with serve_app(_gateway(VirtualKeyAuth(None, KeyStore(url)))) as base:
        answers = [httpx.post(base + "/v1/chat/completions", json=BODY, timeout=30)
                   for _ in range(12)]
    assert [r.status_code for r in answers] == [503] * 12
    assert answers[0].json()["error"]["code"] == "auth_unavailable"


# -- deeply nested JSON ----------------------------------------------------------------------

def _nested(depth: int) -> Any:
    value: Any = "x"
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize("depth", [100, 254, 600, 1020, 2000])
def test_deep_nesting_is_400_naming_the_limit(depth: int) -> None:
    cfg = config_from_dict(CONFIG)
    app = create_app(service=ChatService(
        cfg, providers={d.name: FakeProvider(d) for d in cfg.deployments}))
    body = '{"model": "local-a", "messages": [{"role": "user", "content": "hi"}], ' \
           f'"metadata": {{"deep": {"[" * depth}"x"{"]" * depth}}}}}'
    with serve_app(app) as base, httpx.Client(base_url=base) as client:
        resp = client.post("/v1/chat/completions", content=body,
                           headers={"content-type": "application/json"})
        assert resp.status_code == 400, resp.text
        error = resp.json()["error"]
        assert error["code"] == "json_too_deep" and "64 levels" in error["message"]
        # the keep-alive connection survives and serves the next request
        again = client.post("/v1/chat/completions", json={**BODY, "metadata": _nested(20)})
        assert again.status_code == 200, again.text


# -- a key store that lost its keys --------------------------------------------------------

def test_dropped_key_table_does_not_reopen_the_gateway(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by attack: with the virtual_keys table dropped (or renamed) after keys were
    used, the next start counted 0 keys and ran in open mode. Usage rows that name
    virtual keys now count as "keys exist"."""
    import sqlalchemy as sa

    from modelmix.store import build_usage_sink

    monkeypatch.delenv("MODELMIX_MASTER_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'gw.db'}"
    monkeypatch.setenv("MODELMIX_DB_URL", url)
    cfg = config_from_dict({**CONFIG, "store": {"url": url}})
    key, _ = KeyStore(url).create(alias="victim")

    def serve() -> Any:
        fakes = {d.name: FakeProvider(d) for d in cfg.deployments}
        return create_app(service=ChatService(cfg, providers=fakes,
                                              usage=build_usage_sink(cfg.store)))

    with serve_app(serve()) as base:  # the key is used: a usage row names it
        assert httpx.post(base + "/v1/chat/completions", json=BODY,
                          headers={"authorization": f"Bearer {key}"}).status_code == 200
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP TABLE virtual_keys"))
    engine.dispose()
    with serve_app(serve()) as base:
        keyless = httpx.post(base + "/v1/chat/completions", json=BODY)
        models = httpx.get(base + "/v1/models")
        lost = httpx.post(base + "/v1/chat/completions", json=BODY,
                          headers={"authorization": f"Bearer {key}"})
    assert (keyless.status_code, models.status_code, lost.status_code) == (401, 401, 401)


def test_reading_keys_never_creates_the_table(tmp_path: Path) -> None:
    import sqlalchemy as sa

    url = f"sqlite:///{tmp_path / 'other.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # a database that exists, without a key table
        conn.execute(sa.text("CREATE TABLE unrelated (x INTEGER)"))
    store = KeyStore(url)
    assert store.count() == 0 and store.list_keys() == [] and store.get("k") is None
    assert not sa.inspect(engine).has_table("virtual_keys")
    store.create(alias="first")
    assert sa.inspect(engine).has_table("virtual_keys") and store.count() == 1
    engine.dispose()
    store.close()
