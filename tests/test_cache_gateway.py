"""The response cache through a real gateway on loopback (OpenAI SDK and httpx):
``x-modelmix-cache`` on every chat response, request and key options, usage rows."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import sqlalchemy as sa

from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.server.keys import KeyStore
from modelmix.store import UsageStore, UsageWriter
from modelmix.testing import FakeProvider

MASTER = "sk-master-cache-0123456789"
CONFIG = {
    "deployments": [{"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
                     "model": "m-a", "input_cost_per_mtok": 2, "output_cost_per_mtok": 6}],
    "router": "rules", "cache": {"mode": "exact"},
}
MESSAGES = [{"role": "user", "content": "hello cache"}]


@dataclass
class Gateway:
    url: str
    fake: FakeProvider
    db: str

    def client(self, key: str = MASTER) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key=key, max_retries=0)


@pytest.fixture()
def gateway(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    monkeypatch.setenv("MODELMIX_DB_URL", db)
    monkeypatch.setenv("MODELMIX_MASTER_KEY", MASTER)
    cfg = config_from_dict(CONFIG)
    fake = FakeProvider(cfg.deployments[0], reply="cached words")
    sink = UsageWriter(UsageStore(db))
    service = ChatService(cfg, providers={"open-a": fake}, usage=sink)
    with serve_app(create_app(service=service)) as url:
        yield Gateway(url, fake, db)
    sink.close()


def test_header_on_every_chat_response(gateway: Gateway) -> None:
    client = gateway.client()
    first = client.chat.completions.with_raw_response.create(model="open-a",
                                                             messages=MESSAGES)
    second = client.chat.completions.with_raw_response.create(model="open-a",
                                                              messages=MESSAGES)
    assert first.headers["x-modelmix-cache"] == "miss"
    assert second.headers["x-modelmix-cache"] == "hit"
    assert float(second.headers["x-modelmix-cost-usd"]) == 0
    assert float(first.headers["x-modelmix-cost-usd"]) > 0
    assert second.parse().choices[0].message.content == "cached words"
    assert len(gateway.fake.calls) == 1
    off = client.chat.completions.with_raw_response.create(
        model="open-a", messages=MESSAGES, extra_body={"cache": {"mode": "off"}})
    assert off.headers["x-modelmix-cache"] == "bypass"
    assert "cache" not in gateway.fake.calls[-1].model_extra  # never forwarded upstream
    no_store = client.chat.completions.with_raw_response.create(
        model="open-a", messages=MESSAGES, extra_headers={"cache-control": "no-store"})
    assert no_store.headers["x-modelmix-cache"] == "bypass"
    refresh = client.chat.completions.with_raw_response.create(
        model="open-a", messages=MESSAGES, extra_headers={"cache-control": "no-cache"})
    assert refresh.headers["x-modelmix-cache"] == "miss"
    assert len(gateway.fake.calls) == 4
    auth = {"authorization": f"Bearer {MASTER}"}
    bad = httpx.post(gateway.url + "/v1/chat/completions", content=b"{nope", headers=auth)
    assert bad.status_code == 400 and bad.headers["x-modelmix-cache"] == "bypass"
    unknown = httpx.post(gateway.url + "/v1/chat/completions", headers=auth,
                         json={"model": "nope", "messages": MESSAGES})
    assert unknown.status_code == 404 and unknown.headers["x-modelmix-cache"] == "bypass"
    invalid = httpx.post(gateway.url + "/v1/chat/completions", headers=auth,
                         json={"model": "open-a", "messages": MESSAGES,
                               "cache": {"mode": "always"}})
    assert invalid.status_code == 400 and "cache.mode" in invalid.text


def test_streams_replay_from_the_cache(gateway: Gateway) -> None:
    body = {"model": "open-a", "messages": MESSAGES, "stream": True}
    auth = {"authorization": f"Bearer {MASTER}"}
    first = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    again = httpx.post(gateway.url + "/v1/chat/completions", json=body, headers=auth)
    assert first.headers["x-modelmix-cache"] == "miss"
    assert again.headers["x-modelmix-cache"] == "hit"
    assert again.text.endswith("data: [DONE]\n\n") and '"usage"' not in again.text
    chunks = list(gateway.client().chat.completions.create(
        model="open-a", messages=MESSAGES, stream=True,
        stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == \
        "cached words"
    assert chunks[-1].usage is not None and chunks[-1].choices == []
    assert len(gateway.fake.calls) == 1


def test_keys_have_their_own_namespace_and_setting(gateway: Gateway) -> None:
    admin = {"authorization": f"Bearer {MASTER}"}

    def new_key(**body: object) -> str:
        resp = httpx.post(gateway.url + "/key/generate", json=body, headers=admin)
        assert resp.status_code == 200, resp.text
        return str(resp.json()["key"])

    a, b, off = new_key(), new_key(), new_key(cache="off")
    listed = httpx.get(gateway.url + "/key/list", headers=admin).json()["keys"]
    assert sorted(str(k["cache"]) for k in listed) == ["None", "None", "off"]

    def status(key: str, **kw: object) -> str:
        raw = gateway.client(key).chat.completions.with_raw_response.create(
            model="open-a", messages=MESSAGES, **kw)  # type: ignore[call-overload]
        return str(raw.headers["x-modelmix-cache"])

    assert [status(a), status(a), status(b), status(b)] == ["miss", "hit", "miss", "hit"]
    assert [status(off), status(off)] == ["bypass", "bypass"]
    assert status(off, extra_body={"cache": {"mode": "exact"}}) == "bypass"  # a ceiling
    bad = httpx.post(gateway.url + "/key/generate", json={"cache": "sometimes"},
                     headers=admin)
    assert bad.status_code == 400


def test_usage_rows_record_the_hit_at_cost_zero(gateway: Gateway) -> None:
    client = gateway.client()
    for _ in range(2):
        client.chat.completions.create(model="open-a", messages=MESSAGES)
    engine = sa.create_engine(gateway.db)
    for _ in range(200):  # the writer thread batches rows
        with engine.connect() as conn:
            rows = conn.execute(sa.text(
                "SELECT cache, cost_usd, saved_usd, prompt_tokens, completion_tokens, "
                "deployment FROM usage ORDER BY id")).all()
        if len(rows) == 2:
            break
        import time

        time.sleep(0.05)
    miss, hit = rows
    assert miss[0] == "miss" and miss[1] > 0 and miss[2] is None
    assert hit[0] == "hit" and hit[1] == 0 and hit[2] == pytest.approx(miss[1])
    assert (hit[3], hit[4], hit[5]) == (0, 0, "open-a")


def test_key_table_gains_the_cache_column_in_place(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = sa.create_engine(url)
    with engine.begin() as conn:  # virtual_keys as created before the cache column
        conn.exec_driver_sql(
            "CREATE TABLE virtual_keys (id VARCHAR(32) PRIMARY KEY, alias VARCHAR(200), "
            "key_hash VARCHAR(64) NOT NULL UNIQUE, key_prefix VARCHAR(32) NOT NULL, "
            "allowed_models TEXT, budget_usd FLOAT, spent_usd FLOAT NOT NULL, rpm INTEGER, "
            "tpm INTEGER, created_at FLOAT NOT NULL, revoked_at FLOAT)")
        conn.exec_driver_sql(
            "INSERT INTO virtual_keys VALUES ('k1', NULL, 'h1', 'sk-mm-AbCd', NULL, NULL, "
            "0.0, NULL, NULL, 1.0, NULL)")
    store = KeyStore(url)
    [old] = store.list_keys()
    assert old.id == "k1" and old.cache is None
    _, new = store.create(alias="n", cache="semantic")
    assert store.get(new.id) is not None and store.get(new.id).cache == "semantic"  # type: ignore[union-attr]
    columns = {c["name"] for c in sa.inspect(engine).get_columns("virtual_keys")}
    assert "cache" in columns
    with pytest.raises(ValueError, match="cache"):
        store.create(cache="sometimes")
    store.close()
