"""Virtual keys, budgets and rate limits: unit tests of the limiter and store, and the
gateway end to end on loopback (FakeProvider upstreams with prices)."""

from __future__ import annotations

import asyncio
import hashlib
import random
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix.catalog import Deployment, config_from_dict
from modelmix.cli import app as cli_app
from modelmix.engine import ChatService
from modelmix.errors import BudgetExceeded, KeyRateLimited
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.server import create_app
from modelmix.server.keys import (
    KeyLimiter,
    KeyLimits,
    KeyStore,
    VirtualKeyAuth,
    max_request_cost,
)
from modelmix.testing import FakeProvider

MASTER = "sk-master-test-0123456789"

CONFIG = {
    "deployments": [
        # USD per 1M tokens: 0.001 USD per prompt token, 0.002 per completion token.
        {"name": "cheap", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-cheap", "context_window": 4096,
         "input_cost_per_mtok": 1000, "output_cost_per_mtok": 2000},
        {"name": "dear", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-dear", "tier": "proprietary", "hosting": "cloud", "context_window": 8192,
         "max_output_tokens": 1000, "input_cost_per_mtok": 3000, "output_cost_per_mtok": 6000},
    ],
}

# 40 characters -> prompt estimate (40 + 3) // 4 + 4 = 14 tokens (routing); budget
# admission reserves the prompt's upper bound: 40 UTF-8 bytes + 8 per message + 48 = 96
# tokens. FakeProvider reports 10 prompt tokens and 1 completion token ("ok").
PROMPT = "x" * 40
MAX_TOKENS = 5
PROMPT_BOUND = 40 + 8 + 48
ESTIMATE_COST = (14 * 1000 + MAX_TOKENS * 2000) / 1e6         # 0.024 USD at the estimate
MAX_COST = (PROMPT_BOUND * 1000 + MAX_TOKENS * 2000) / 1e6    # 0.074 USD reserved
ACTUAL_COST = (10 * 1000 + 1 * 2000) / 1e6                    # 0.012 USD charged


def chat_body(model: str = "cheap", max_tokens: int | None = MAX_TOKENS,
              **extra: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": model,
                            "messages": [{"role": "user", "content": PROMPT}], **extra}
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    return body


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


@dataclass
class Gateway:
    url: str
    db: Path
    app: Any

    @property
    def auth(self) -> VirtualKeyAuth:
        auth = self.app.state.gateway.auth
        assert isinstance(auth, VirtualKeyAuth)
        return auth

    def new_key(self, **body: Any) -> tuple[str, str]:
        resp = httpx.post(self.url + "/key/generate", json=body, headers=bearer(MASTER))
        assert resp.status_code == 200, resp.text
        data = resp.json()
        return data["key"], data["key_id"]

    def key_info(self, key_id: str) -> dict[str, Any]:
        resp = httpx.get(self.url + "/key/list", headers=bearer(MASTER))
        assert resp.status_code == 200, resp.text
        return next(k for k in resp.json()["keys"] if k["key_id"] == key_id)


def _serve(db: Path, delay_s: float = 0.0) -> Any:
    cfg = config_from_dict(CONFIG)
    fakes = {d.name: FakeProvider(d, delay_s=delay_s) for d in cfg.deployments}
    return create_app(service=ChatService(cfg, providers=fakes))


@pytest.fixture()
def db(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "keys.db"
    monkeypatch.setenv("MODELMIX_DB_URL", f"sqlite:///{path}")
    monkeypatch.setenv("MODELMIX_MASTER_KEY", MASTER)
    return path


@pytest.fixture()
def gw(db: Path) -> Iterator[Gateway]:
    app = _serve(db)
    with serve_app(app) as url:
        yield Gateway(url, db, app)


@pytest.fixture()
def slow_gw(db: Path) -> Iterator[Gateway]:
    app = _serve(db, delay_s=0.3)
    with serve_app(app) as url:
        yield Gateway(url, db, app)


# --- limiter and store units ------------------------------------------------------------

def _dep(name: str, **kw: Any) -> Deployment:
    return Deployment(name=name, provider="vllm", base_url="http://127.0.0.1:9/v1",
                      model=name, **kw)


def _request(max_tokens: int | None = MAX_TOKENS) -> ChatRequest:
    return ChatRequest.model_validate(chat_body(max_tokens=max_tokens))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_max_cost_is_dearest_candidate_at_the_output_bound() -> None:
    a = _dep("a", input_cost_per_mtok=1000, output_cost_per_mtok=2000, context_window=100)
    b = _dep("b", input_cost_per_mtok=10, output_cost_per_mtok=20, max_output_tokens=50)
    needs = _request().needs()
    assert needs.prompt_tokens_estimate == 14
    assert max_request_cost([a, b], needs) == pytest.approx(ESTIMATE_COST)
    assert _request().prompt_token_bound() == PROMPT_BOUND
    assert max_request_cost([a, b], needs, PROMPT_BOUND) == pytest.approx(MAX_COST)
    unset = _request(max_tokens=None).needs()
    # no max_tokens: context window minus the prompt estimate (a), or max_output_tokens (b)
    assert max_request_cost([a], unset) == pytest.approx((14 * 1000 + 86 * 2000) / 1e6)
    assert max_request_cost([b], unset) == pytest.approx((14 * 10 + 50 * 20) / 1e6)


async def test_limiter_never_reserves_past_budget_under_concurrency() -> None:
    dep = _dep("a", input_cost_per_mtok=1000, output_cost_per_mtok=2000)
    decision = RouteDecision(deployment=dep, reason="test")
    budget = 0.5
    limiter = KeyLimiter("k", KeyLimits(budget_usd=budget))
    peak = 0.0
    outcomes: list[str] = []

    async def one(rng: random.Random) -> None:
        nonlocal peak
        try:
            reservation = await limiter.admit(decision, _request())
        except BudgetExceeded:
            outcomes.append("refused")
            return
        peak = max(peak, limiter.spent_usd + limiter.reserved_usd)
        await asyncio.sleep(rng.random() / 100)
        limiter.settle(reservation, rng.uniform(0, MAX_COST), 10)
        outcomes.append("ok")

    rng = random.Random(7)
    for _ in range(10):
        await asyncio.gather(*(one(rng) for _ in range(50)))
    assert peak <= budget + 1e-9
    assert limiter.spent_usd <= budget + 1e-9
    assert limiter.in_flight == 0 and limiter.reserved_usd == 0.0
    assert "refused" in outcomes and outcomes.count("ok") >= budget / MAX_COST


async def test_limiter_budget_counts_in_flight_reservations() -> None:
    decision = RouteDecision(deployment=_dep("a", input_cost_per_mtok=1000,
                                             output_cost_per_mtok=2000), reason="t")
    spent: list[float] = []
    limiter = KeyLimiter("k", KeyLimits(budget_usd=3 * MAX_COST),
                         on_spend=lambda _k, usd: spent.append(usd))
    held = [await limiter.admit(decision, _request()) for _ in range(3)]
    with pytest.raises(BudgetExceeded, match="3 in-flight"):
        await limiter.admit(decision, _request())
    limiter.settle(held[0], ACTUAL_COST, 11)
    limiter.settle(held[0], ACTUAL_COST, 11)  # a second settle is ignored
    assert limiter.spent_usd == pytest.approx(ACTUAL_COST) and spent == [ACTUAL_COST]
    with pytest.raises(BudgetExceeded):  # 0.012 spent + 0.148 reserved + 0.074 > 0.222
        await limiter.admit(decision, _request())
    limiter.settle(held[1], ACTUAL_COST, 11)
    await limiter.admit(decision, _request())  # 0.024 + 0.074 + 0.074 <= 0.222


async def test_limiter_admits_one_at_a_time_once_an_upstream_bills_past_the_bound() -> None:
    decision = RouteDecision(deployment=_dep("a", input_cost_per_mtok=1000,
                                             output_cost_per_mtok=2000), reason="t")
    limiter = KeyLimiter("k", KeyLimits(budget_usd=100 * MAX_COST))
    first = await limiter.admit(decision, _request())
    second = await limiter.admit(decision, _request())
    limiter.settle(first, 2 * MAX_COST, 11)  # billed twice what it reserved
    with pytest.raises(KeyRateLimited, match="one request at a time") as info:
        await limiter.admit(decision, _request())  # `second` is still in flight
    assert info.value.retry_after == 1.0
    limiter.settle(second, ACTUAL_COST, 11)
    third = await limiter.admit(decision, _request())  # nothing in flight: admitted
    with pytest.raises(KeyRateLimited):
        await limiter.admit(decision, _request())
    limiter.settle(third, ACTUAL_COST, 11)
    unlimited = KeyLimiter("u", KeyLimits())  # no budget: nothing to protect
    held = await unlimited.admit(decision, _request())
    unlimited.settle(held, 2 * MAX_COST, 11)
    await asyncio.gather(*(unlimited.admit(decision, _request()) for _ in range(3)))


async def test_limiter_rpm_and_tpm_slide_over_sixty_seconds() -> None:
    decision = RouteDecision(deployment=_dep("a"), reason="t")
    clock = FakeClock()
    limiter = KeyLimiter("k", KeyLimits(rpm=2, tpm=60), clock=clock)
    first = await limiter.admit(decision, _request(max_tokens=30))  # reserves 14 + 30
    limiter.settle(first, 0.0, 11)  # settles to the actual 11 tokens
    clock.now += 10
    await limiter.admit(decision, _request(max_tokens=30))  # 11 + 44 <= 60
    clock.now += 5
    with pytest.raises(KeyRateLimited, match="requests per minute") as rpm:
        await limiter.admit(decision, _request(max_tokens=1))
    assert rpm.value.retry_after == pytest.approx(45)
    clock.now += 46  # the first request left the window
    with pytest.raises(KeyRateLimited, match="tokens per minute") as tpm:
        await limiter.admit(decision, _request(max_tokens=30))  # 44 in flight + 44 > 60
    assert tpm.value.retry_after == pytest.approx(9)
    with pytest.raises(KeyRateLimited, match="lower max_tokens") as never:
        await limiter.admit(decision, _request(max_tokens=100))
    assert never.value.retry_after is None
    clock.now += 9
    await limiter.admit(decision, _request(max_tokens=30))


def test_keystore_stores_only_the_hash_and_creates_nothing_to_read(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    store = KeyStore(f"sqlite:///{path}")
    assert store.count() == 0 and store.list_keys() == [] and store.revoke("x") is None
    assert not path.exists()
    key, record = store.create(alias="a", models=["open", "cheap"], budget_usd=1.5, rpm=3)
    assert key.startswith("sk-mm-") and len(key) > 40
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    store.add_spend({record.id: 0.25})
    store.add_spend({record.id: 0.5})
    got = store.get_by_hash(record.key_hash)
    assert got is not None and got.spent_usd == pytest.approx(0.75)
    assert got.allowed_models == frozenset({"open", "cheap"}) and got.key_prefix == key[:10]
    store.close()
    assert key.encode() not in path.read_bytes()
    with sqlite3.connect(path) as conn:
        cols = [r[1] for r in conn.execute("PRAGMA table_info(virtual_keys)")]
    assert {"id", "alias", "key_hash", "allowed_models", "budget_usd", "spent_usd", "rpm",
            "tpm", "created_at", "revoked_at"} <= set(cols)


async def test_revocation_from_another_process_is_seen_within_refresh(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'k.db'}")
    key, record = store.create()
    clock = FakeClock()
    auth = VirtualKeyAuth(None, store, refresh_s=5.0, clock=clock)
    assert (await auth.authenticate(f"Bearer {key}")).key_id == record.id
    KeyStore(f"sqlite:///{tmp_path / 'k.db'}").revoke(record.id)  # e.g. the CLI
    assert (await auth.authenticate(f"Bearer {key}")).key_id == record.id  # cached
    clock.now += 5
    with pytest.raises(Exception, match="revoked"):
        await auth.authenticate(f"Bearer {key}")
    await auth.aclose()


# --- gateway end to end ------------------------------------------------------------------

def test_master_key_is_required_when_set(gw: Gateway) -> None:
    for headers in ({}, bearer("wrong"), bearer("sk-mm-unknown"), {"authorization": "Basic x"}):
        resp = httpx.post(gw.url + "/v1/chat/completions", json=chat_body(), headers=headers)
        assert resp.status_code == 401, resp.text
        err = resp.json()["error"]
        assert set(err) == {"message", "type", "param", "code"}
        assert err["type"] == "authentication_error" and err["code"] == "invalid_api_key"
    assert httpx.get(gw.url + "/v1/models").status_code == 401
    ok = httpx.post(gw.url + "/v1/chat/completions", json=chat_body(), headers=bearer(MASTER))
    assert ok.status_code == 200, ok.text


def test_open_mode_until_the_first_virtual_key(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMIX_MASTER_KEY")
    store = KeyStore(f"sqlite:///{db}")
    cfg = config_from_dict(CONFIG)
    service = ChatService(cfg, providers={d.name: FakeProvider(d) for d in cfg.deployments})
    app = create_app(service=service, auth=VirtualKeyAuth(None, store, refresh_s=0))
    with serve_app(app) as url:
        assert httpx.post(url + "/v1/chat/completions", json=chat_body()).status_code == 200
        assert not db.exists()  # nothing written just to find there are no keys
        key, _ = KeyStore(f"sqlite:///{db}").create(alias="first")  # as `modelmix keys`
        resp = httpx.post(url + "/v1/chat/completions", json=chat_body())
        assert resp.status_code == 401
        resp = httpx.post(url + "/v1/chat/completions", json=chat_body(), headers=bearer(key))
        assert resp.status_code == 200
        admin = httpx.get(url + "/key/list", headers=bearer(key))
        assert admin.status_code == 403
        assert admin.json()["error"]["code"] == "master_key_not_configured"


def test_admin_endpoints_refuse_everyone_without_a_master_key(
        db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One anonymous /key/generate must not lock every other client out."""
    monkeypatch.delenv("MODELMIX_MASTER_KEY")
    with serve_app(_serve(db)) as url:
        for headers in ({}, bearer("anything"), bearer(MASTER)):
            created = httpx.post(url + "/key/generate", json={"key_alias": "x"},
                                 headers=headers)
            assert created.status_code == 403, created.text
            err = created.json()["error"]
            assert set(err) == {"message", "type", "param", "code"}
            assert err["type"] == "permission_error"
            assert err["code"] == "master_key_not_configured"
            assert "MODELMIX_MASTER_KEY" in err["message"]
            assert "server.master_key_env" in err["message"]
            assert httpx.get(url + "/key/list", headers=headers).status_code == 403
            revoke = httpx.post(url + "/key/revoke", json={"key_id": "x"}, headers=headers)
            assert revoke.status_code == 403
        # open mode itself is unchanged: anyone may still chat and list models
        assert httpx.post(url + "/v1/chat/completions", json=chat_body()).status_code == 200
        assert httpx.get(url + "/v1/models").status_code == 200
    assert KeyStore(f"sqlite:///{db}").count() == 0


def test_admin_endpoints_generate_list_revoke(gw: Gateway) -> None:
    assert httpx.get(gw.url + "/key/list").status_code == 401
    key, key_id = gw.new_key(models=["cheap"], max_budget=2.5, rpm_limit=10, tpm_limit=1000,
                             key_alias="team-a")
    assert key.startswith("sk-mm-")
    assert httpx.get(gw.url + "/key/list", headers=bearer(key)).status_code == 403
    info = gw.key_info(key_id)
    assert info["key_alias"] == "team-a" and info["models"] == ["cheap"]
    assert info["max_budget"] == 2.5 and info["rpm_limit"] == 10 and info["tpm_limit"] == 1000
    assert info["key_prefix"] == key[:10] and "key" not in info
    assert key not in httpx.get(gw.url + "/key/list", headers=bearer(MASTER)).text
    with sqlite3.connect(gw.db) as conn:
        (stored,) = conn.execute("SELECT key_hash FROM virtual_keys WHERE id = ?",
                                 (key_id,)).fetchone()
    assert stored == hashlib.sha256(key.encode()).hexdigest()

    revoked = httpx.post(gw.url + "/key/revoke", json={"key_id": key_id}, headers=bearer(MASTER))
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    resp = httpx.post(gw.url + "/v1/chat/completions", json=chat_body(), headers=bearer(key))
    assert resp.status_code == 401 and resp.json()["error"]["code"] == "revoked_api_key"
    missing = httpx.post(gw.url + "/key/revoke", json={"key_id": "nope"}, headers=bearer(MASTER))
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "key_not_found"


@pytest.mark.parametrize(("body", "needle"), [
    ({"models": ["no-such-model"]}, "unknown models"),
    ({"max_budget": -1}, "max_budget"),
    ({"max_budget": 1e10}, "max_budget"),
    ({"rpm_limit": 0}, "rpm_limit"),
    ({"rpm_limit": 10**7}, "rpm_limit"),
    ({"tpm_limit": 10**10}, "tpm_limit"),
    ({"tpm_limit": 1.5}, "tpm_limit"),
    ({"duration": "30d"}, "duration"),
    (b'{"max_budget": 1e309}', "max_budget"),
    (b'{"max_budget": NaN}', "max_budget"),
    (b'{"max_budget": Infinity}', "max_budget"),
    (b'{"max_budget": -Infinity}', "max_budget"),
])
def test_generate_rejects_bad_bodies(gw: Gateway, body: dict[str, Any] | bytes,
                                     needle: str) -> None:
    raw = body if isinstance(body, bytes) else None
    resp = httpx.post(gw.url + "/key/generate", content=raw,
                      json=None if raw else body,
                      headers={**bearer(MASTER), "content-type": "application/json"})
    assert resp.status_code == 400, resp.text
    assert needle in resp.json()["error"]["message"]
    listed = httpx.get(gw.url + "/key/list", headers=bearer(MASTER))
    assert listed.status_code == 200 and listed.json() == {"keys": []}  # nothing created


def test_store_refuses_out_of_range_limits(tmp_path: Path) -> None:
    store = KeyStore(f"sqlite:///{tmp_path / 'k.db'}")
    for kw in ({"budget_usd": float("inf")}, {"budget_usd": float("nan")},
               {"budget_usd": -0.01}, {"budget_usd": 2e9}, {"rpm": 0}, {"tpm": 2**31}):
        with pytest.raises(ValueError, match="between"):
            store.create(**kw)
    assert store.count() == 0 and not (tmp_path / "k.db").exists()
    _, record = store.create(budget_usd=1e9, rpm=1_000_000, tpm=1_000_000_000)
    assert record.budget_usd == 1e9
    store.close()


def test_list_survives_a_stored_infinite_budget(gw: Gateway) -> None:
    _, key_id = gw.new_key(max_budget=1.0)
    with sqlite3.connect(gw.db) as conn:  # a row written before limits were validated
        conn.execute("UPDATE virtual_keys SET budget_usd = ? WHERE id = ?",
                     (float("inf"), key_id))
    assert gw.key_info(key_id)["max_budget"] is None


def test_allowed_models_are_enforced(gw: Gateway) -> None:
    key, _ = gw.new_key(models=["cheap"])
    url = gw.url + "/v1/chat/completions"
    ok = httpx.post(url, json=chat_body("cheap"), headers=bearer(key))
    assert ok.status_code == 200 and ok.headers["x-modelmix-deployment"] == "cheap"
    denied = httpx.post(url, json=chat_body("dear"), headers=bearer(key))
    assert denied.status_code == 403, denied.text
    err = denied.json()["error"]
    assert err["type"] == "permission_error" and err["code"] == "model_not_allowed"
    auto = httpx.post(url, json=chat_body("auto"), headers=bearer(key))
    assert auto.status_code == 200 and auto.headers["x-modelmix-deployment"] == "cheap"
    group_key, _ = gw.new_key(models=["proprietary"])
    assert httpx.post(url, json=chat_body("proprietary"),
                      headers=bearer(group_key)).status_code == 200
    assert httpx.post(url, json=chat_body("cheap"),
                      headers=bearer(group_key)).status_code == 403


async def test_budget_is_exact_under_concurrency(slow_gw: Gateway) -> None:
    budget = 5 * MAX_COST + 0.01  # room for 5 reservations of 0.074 USD, not 6
    key, key_id = slow_gw.new_key(max_budget=budget)
    limiter_peak = 0.0
    done = asyncio.Event()

    async def watch() -> None:  # sample the live limiter while requests are in flight
        nonlocal limiter_peak
        while not done.is_set():
            limiter = slow_gw.auth.limiter(key_id)
            if limiter is not None:
                limiter_peak = max(limiter_peak, limiter.spent_usd + limiter.reserved_usd)
            await asyncio.sleep(0.002)

    watcher = asyncio.create_task(watch())
    async with httpx.AsyncClient(base_url=slow_gw.url, headers=bearer(key),
                                 timeout=30) as client:
        wave = await asyncio.gather(*(client.post("/v1/chat/completions", json=chat_body())
                                      for _ in range(40)))
        statuses = [r.status_code for r in wave]
        ok = statuses.count(200)
        assert 5 <= ok < 40 and statuses.count(429) == 40 - ok
        for resp in wave:
            if resp.status_code == 429:
                err = resp.json()["error"]
                assert (err["code"], err["type"]) == ("budget_exceeded", "insufficient_quota")
                assert "retry-after" not in resp.headers
        while (await client.post("/v1/chat/completions", json=chat_body())).status_code == 200:
            ok += 1  # use up the rest of the budget one request at a time
    done.set()
    await watcher

    info = slow_gw.key_info(key_id)
    assert info["spend"] == pytest.approx(ok * ACTUAL_COST)
    # Never more than the budget: each in-flight request reserved its maximum cost.
    assert info["spend"] <= budget + 1e-9 and limiter_peak <= budget + 1e-9
    # ... and not much less: the last refusal came when one more reservation did not fit.
    assert budget - info["spend"] < MAX_COST
    assert info["in_flight"] == 0 and info["reserved"] == 0.0


def test_streaming_spend_is_settled(gw: Gateway) -> None:
    key, key_id = gw.new_key(max_budget=1.0)
    with httpx.stream("POST", gw.url + "/v1/chat/completions", headers=bearer(key),
                      json=chat_body(stream=True)) as resp:
        assert resp.status_code == 200
        assert "".join(resp.iter_text()).endswith("data: [DONE]\n\n")
    info = gw.key_info(key_id)
    assert info["spend"] == pytest.approx(ACTUAL_COST) and info["in_flight"] == 0


def test_rpm_limit_answers_429_with_retry_after(gw: Gateway) -> None:
    key, _ = gw.new_key(rpm_limit=3)
    url = gw.url + "/v1/chat/completions"
    for _ in range(3):
        assert httpx.post(url, json=chat_body(), headers=bearer(key)).status_code == 200
    resp = httpx.post(url, json=chat_body(), headers=bearer(key))
    assert resp.status_code == 429
    err = resp.json()["error"]
    assert (err["type"], err["code"]) == ("rate_limit_error", "rate_limit_exceeded")
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    other, _ = gw.new_key(rpm_limit=3)  # limits are per key
    assert httpx.post(url, json=chat_body(), headers=bearer(other)).status_code == 200


def test_tpm_limit_reserves_the_estimate_and_settles_to_actual(gw: Gateway) -> None:
    key, _ = gw.new_key(tpm_limit=60)
    url = gw.url + "/v1/chat/completions"
    # each request reserves 14 + 30 = 44 tokens and settles to 11 actual tokens
    for _ in range(2):
        assert httpx.post(url, json=chat_body(max_tokens=30),
                          headers=bearer(key)).status_code == 200
    resp = httpx.post(url, json=chat_body(max_tokens=30), headers=bearer(key))
    assert resp.status_code == 429 and "tokens per minute" in resp.json()["error"]["message"]
    assert 1 <= int(resp.headers["retry-after"]) <= 60
    small = httpx.post(url, json=chat_body(max_tokens=10), headers=bearer(key))  # 22 + 24
    assert small.status_code == 200


def test_keys_and_spend_survive_a_restart(db: Path) -> None:
    budget = 2 * ACTUAL_COST + MAX_COST + 0.001  # 0.099: spend is 0.012 per request
    with serve_app(_serve(db)) as url:
        gw = Gateway(url, db, None)
        key, key_id = gw.new_key(max_budget=budget, key_alias="persist")
        for _ in range(2):
            resp = httpx.post(url + "/v1/chat/completions", json=chat_body(),
                              headers=bearer(key))
            assert resp.status_code == 200
    with sqlite3.connect(db) as conn:
        (spent,) = conn.execute("SELECT spent_usd FROM virtual_keys WHERE id = ?",
                                (key_id,)).fetchone()
    assert spent == pytest.approx(2 * ACTUAL_COST)
    with serve_app(_serve(db)) as url:
        gw = Gateway(url, db, None)
        info = gw.key_info(key_id)
        assert info["key_alias"] == "persist" and info["spend"] == pytest.approx(spent)
        statuses = [httpx.post(url + "/v1/chat/completions", json=chat_body(),
                               headers=bearer(key)).status_code for _ in range(3)]
        # 0.024 + 0.074 <= 0.099 admits one more; then 0.036 + 0.074 > 0.099
        assert statuses == [200, 429, 429]


def test_cli_create_list_revoke(db: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    runner = CliRunner()
    created = runner.invoke(cli_app, ["keys", "create", "--alias", "ci", "--models",
                                      "auto,open", "--budget", "5", "--rpm", "60"])
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert key.startswith("sk-mm-") and "\n" not in key
    store = KeyStore(f"sqlite:///{db}")
    (record,) = store.list_keys()
    assert record.key_hash == hashlib.sha256(key.encode()).hexdigest()
    assert record.allowed_models == frozenset({"auto", "open"}) and record.budget_usd == 5
    assert record.id in created.output and "not shown again" in created.output

    listed = runner.invoke(cli_app, ["keys", "list"])
    assert listed.exit_code == 0, listed.output
    assert record.id in listed.stdout and "ci" in listed.stdout and key not in listed.stdout
    assert "active" in listed.stdout

    revoked = runner.invoke(cli_app, ["keys", "revoke", record.id])
    assert revoked.exit_code == 0 and "revoked" in revoked.stdout
    assert "revoked" in runner.invoke(cli_app, ["keys", "list"]).stdout
    assert runner.invoke(cli_app, ["keys", "revoke", "nope"]).exit_code == 1
    bad = runner.invoke(cli_app, ["keys", "create", "--models", "no-such-model"])
    assert bad.exit_code == 2
    store.close()


@pytest.mark.parametrize("args", [
    ["--budget", "inf"], ["--budget", "1e309"], ["--budget", "nan"], ["--budget", "1e10"],
    ["--budget", "-1"], ["--rpm", "0"], ["--rpm", "10000000"], ["--tpm", "10000000000"],
])
def test_cli_create_rejects_out_of_range_limits(db: Path, args: list[str]) -> None:
    result = CliRunner().invoke(cli_app, ["keys", "create", *args])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and not result.stdout.startswith("sk-mm-")
    assert KeyStore(f"sqlite:///{db}").count() == 0


def _utf8_prompt_tokens(body: dict[str, Any]) -> int:
    """What a byte-level tokenizer bills at worst: a token per UTF-8 byte, plus 3 per
    message (far more than the chars / 4 estimate for CJK text)."""
    return sum(len(str(m["content"]).encode()) + 3 for m in body["messages"])


async def test_budget_holds_when_the_upstream_bills_more_than_the_estimate(db: Path) -> None:
    """Issue 9: a $0.01-style budget was overspent (130%) when the prompt estimate was
    lower than what the upstream then billed. The reservation is now an upper bound."""
    with FaultyUpstream("u", prompt_tokens=_utf8_prompt_tokens) as up:
        cfg = config_from_dict({"deployments": [{
            "name": "cjk", "provider": "openai-compatible", "base_url": up.url,
            "model": "m", "input_cost_per_mtok": 1000, "output_cost_per_mtok": 2000}]})
        prompt = "数据" * 100  # 200 characters: estimated 54 tokens, billed 603
        body = {"model": "cjk", "max_tokens": MAX_TOKENS,
                "messages": [{"role": "user", "content": prompt}]}
        actual = (603 * 1000 + 3 * 2000) / 1e6  # "hello from u": 3 completion tokens
        budget = 6.0  # 9 requests fit (5.48 USD), 10 do not
        with serve_app(create_app(cfg)) as url:
            gw = Gateway(url, db, None)
            key, key_id = gw.new_key(max_budget=budget)
            async with httpx.AsyncClient(base_url=url, headers=bearer(key),
                                         timeout=30) as client:
                wave = await asyncio.gather(*(client.post("/v1/chat/completions", json=body)
                                              for _ in range(40)))
                ok = sum(r.status_code == 200 for r in wave)
                while (await client.post("/v1/chat/completions",
                                         json=body)).status_code == 200:
                    ok += 1
            info = gw.key_info(key_id)
    assert 1 <= ok <= 9
    assert info["spend"] == pytest.approx(ok * actual)
    assert info["spend"] <= budget


def test_refusals_and_part_extras_count_in_the_bound() -> None:
    """Found by attack: a refusal part's text counted 0 tokens, so 100 concurrent requests
    carrying 4.8 KB refusals spent 485% of a budget."""
    refusal = "r" * 4800
    req = ChatRequest.model_validate({"model": "m", "messages": [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": refusal}]}]})
    assert req.prompt_token_bound() >= 4800 + 2


def test_both_token_limits_reserve_and_check_the_larger(gw: Gateway) -> None:
    """Found by attack: max_completion_tokens=1 with max_tokens=100000 reserved 1 token
    and passed the gateway's limit, while an upstream reading max_tokens produced more."""
    req = ChatRequest.model_validate(chat_body(max_tokens=100_000, max_completion_tokens=1))
    assert req.completion_limit == 100_000
    resp = httpx.post(gw.url + "/v1/chat/completions", headers=bearer(MASTER),
                      json=chat_body(max_tokens=100_000, max_completion_tokens=1))
    assert resp.status_code == 400 and "100014 tokens needed" in resp.json()["error"]["message"]


async def test_a_call_cut_off_upstream_is_charged_its_reservation() -> None:
    decision = RouteDecision(deployment=_dep("a", input_cost_per_mtok=1000,
                                             output_cost_per_mtok=2000), reason="t")
    limiter = KeyLimiter("k", KeyLimits(budget_usd=1.0))
    held = await limiter.admit(decision, _request())
    limiter.settle(held, 0.0, 0, unknown=True)  # timed out / client left: no usage
    assert limiter.spent_usd == pytest.approx(MAX_COST)
    released = await limiter.admit(decision, _request())
    limiter.settle(released, 0.0, 0)  # nothing reached an upstream: nothing spent
    assert limiter.spent_usd == pytest.approx(MAX_COST)


async def test_timed_out_requests_spend_the_budget(db: Path) -> None:
    """Found by attack: a request cut off by its own ``timeout`` (or the client leaving)
    settled at $0 while the upstream worked on it, so the budget never ran out."""
    from faulty_upstream import Fault

    with FaultyUpstream("slow") as up:
        up.default = Fault.hang(2.0)
        cfg = config_from_dict({"deployments": [{
            "name": "slow", "provider": "openai-compatible", "base_url": up.url,
            "model": "m", "input_cost_per_mtok": 1000, "output_cost_per_mtok": 2000}],
            "reliability": {"num_retries": 0}})
        with serve_app(create_app(cfg)) as url:
            gw = Gateway(url, db, None)
            key, key_id = gw.new_key(max_budget=3 * MAX_COST)
            statuses = [httpx.post(url + "/v1/chat/completions", headers=bearer(key),
                                   json=chat_body("slow", timeout=0.2), timeout=30).status_code
                        for _ in range(4)]
            info = gw.key_info(key_id)
    assert statuses == [504, 504, 504, 429]
    assert info["spend"] == pytest.approx(3 * MAX_COST)
