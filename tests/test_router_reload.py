"""Hot-swapping the learned router of a running gateway (issue 15, must-have 5):
``POST /router/reload`` / ``GET /router/info`` on a real loopback gateway with the real
``openai`` SDK for traffic, the audit rows, and ``modelmix router reload`` / ``events``.

Two tiny routers are trained here on tables written here: with ``weak-wins`` the cheap
model always answers well and the expensive one never does (p(strong needed) ~ 0, so
``auto`` picks the cheap deployment), with ``strong-wins`` the reverse. Which deployment
answers therefore says which router decided."""

from __future__ import annotations

import csv
import json
import random
import shutil
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import serve_app
from modelmix.catalog import Config, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import AuthenticationFailed
from modelmix.server import create_app
from modelmix.server._auth import KeyInfo, MasterKeyAuth
from modelmix.store._router_events import RouterEventStore
from modelmix.testing import FakeProvider

pytest.importorskip("numpy")
openai = pytest.importorskip("openai")

MASTER = "sk-master-test"
DEPLOYMENTS = [
    {"name": "cheap", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m1",
     "quality_profile": "small"},
    {"name": "pricey", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
     "model": "m2", "tier": "proprietary", "quality_profile": "big",
     "input_cost_per_mtok": 10.0, "output_cost_per_mtok": 30.0},
]


def _write_table(path: Path, small: int, big: int) -> Path:
    rng = random.Random(0)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(["prompt", "small", "big"])
        for i in range(60):
            out.writerow([f"Request {i}: notes on subject {rng.randint(0, 999)}", small, big])
    return path


@pytest.fixture(scope="module")
def routers(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """``weak-wins`` and ``strong-wins`` artifacts (public trainer API, own tables)."""
    from modelmix.routing.learned import FitOptions, load_embedder, train_router

    tmp = tmp_path_factory.mktemp("routers")
    embedder = load_embedder("default")
    out = {}
    for name, small, big in (("weak-wins", 1, 0), ("strong-wins", 0, 1)):
        table = _write_table(tmp / f"{name}.csv", small, big)
        train_router([table], tmp / name, embedder_from=embedder, weak="small", strong="big",
                     options=FitOptions(inner_folds=3))
        out[name] = tmp / name
    return out


class TokenAuth:
    """``Bearer sk-master-test`` is the master key, ``Bearer user`` a virtual key."""

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        token = (authorization or "").removeprefix("Bearer ")
        if token == MASTER:
            return KeyInfo(key_id="master", is_admin=True)
        if token == "user":
            return KeyInfo(key_id="user")
        raise AuthenticationFailed("invalid API key")


def _config(artifact: Path, db: str) -> Config:
    return config_from_dict({"deployments": DEPLOYMENTS, "router": "learned",
                             "learned_router": {"artifact": str(artifact)},
                             "store": {"url": db}})


@dataclass
class Gateway:
    url: str
    db: str

    def admin(self, method: str, path: str, body: Any = None,
              key: str | None = MASTER) -> httpx.Response:
        headers = {"authorization": f"Bearer {key}"} if key else {}
        return httpx.request(method, self.url + path, json=body, headers=headers, timeout=60)

    def served_by(self, client: Any, text: str = "Summarise this paragraph for me.") -> str:
        reply = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": text}])
        return str(reply.choices[0].message.content)

    def fingerprint(self) -> str:
        resp = self.admin("GET", "/router/info")
        assert resp.status_code == 200, resp.text
        return str(resp.json()["router"]["fingerprint"])


def _service(config: Config) -> ChatService:
    fakes = {d.name: FakeProvider(d, reply=d.name) for d in config.deployments}
    return ChatService(config, providers=fakes)


@pytest.fixture()
def gw(routers: dict[str, Path], tmp_path: Path,
       monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.delenv("MODELMIX_DB_URL", raising=False)
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    app = create_app(service=_service(_config(routers["weak-wins"], db)), auth=TokenAuth())
    with serve_app(app) as url:
        yield Gateway(url, db)


@pytest.fixture()
def client(gw: Gateway) -> Any:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="user", max_retries=0)


# -- (a) a reload changes the next decision, without a restart -------------------------------


def test_reload_to_another_artifact_changes_routing_at_once(
        gw: Gateway, client: Any, routers: dict[str, Path]) -> None:
    assert gw.served_by(client) == "cheap"
    before = gw.fingerprint()
    resp = gw.admin("POST", "/router/reload", {"artifact": str(routers["strong-wins"])})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["previous_fingerprint"] == before
    assert body["router"]["artifact"] == str(routers["strong-wins"])
    assert body["router"]["fingerprint"] not in (None, before)
    assert gw.served_by(client) == "pricey"
    assert gw.fingerprint() == body["router"]["fingerprint"]
    # No body: the configured router again (what SIGHUP does too).
    again = gw.admin("POST", "/router/reload")
    assert again.status_code == 200, again.text
    assert again.json()["router"]["fingerprint"] == before
    assert gw.served_by(client) == "cheap"


def test_info_shows_the_active_router(gw: Gateway, routers: dict[str, Path]) -> None:
    resp = gw.admin("GET", "/router/info")
    assert resp.status_code == 200, resp.text
    info = resp.json()["router"]
    assert info["artifact"] == str(routers["weak-wins"])
    assert info["models"] == ["small", "big"]
    assert (info["weak_model"], info["strong_model"]) == ("small", "big")
    assert info["loaded_at"] > 0 and len(info["fingerprint"]) == 16
    assert info["calibration"]["targets"] == {}


# -- (b) the master key only, failing closed ----------------------------------------------------


def test_reload_and_info_need_the_master_key(gw: Gateway) -> None:
    for key, status, code in ((None, 401, None), ("wrong", 401, None),
                              ("user", 403, "admin_key_required")):
        for method, path in (("POST", "/router/reload"), ("GET", "/router/info")):
            resp = gw.admin(method, path, key=key)
            assert resp.status_code == status, (key, path, resp.text)
            error = resp.json()["error"]
            assert error["message"] and error["type"]
            if code:
                assert error["code"] == code


def test_without_a_master_key_router_admin_is_refused(routers: dict[str, Path],
                                                      tmp_path: Path) -> None:
    config = _config(routers["weak-wins"], f"sqlite:///{tmp_path / 'u.db'}")
    app = create_app(service=_service(config), auth=MasterKeyAuth(None))  # open mode
    with serve_app(app) as url:
        resp = httpx.post(url + "/router/reload", json={"artifact": "default"})
    assert resp.status_code == 403
    assert resp.json()["error"]["code"] == "master_key_not_configured"


# -- (c) a broken router never serves ---------------------------------------------------------


def _broken(tmp_path: Path, routers: dict[str, Path]) -> dict[str, dict[str, Any]]:
    garbage = tmp_path / "garbage"
    shutil.copytree(routers["strong-wins"], garbage)
    (garbage / "manifest.json").write_text("{not json")
    stale = tmp_path / "stale-calibration"
    shutil.copytree(routers["strong-wins"], stale)
    (stale / "calibration.json").write_text(json.dumps({
        "version": 1, "default": None, "router_fingerprint": "0123456789abcdef",
        "targets": {}}))
    return {"missing": {"artifact": str(tmp_path / "nowhere")},
            "garbage": {"artifact": str(garbage)},
            "stale-calibration": {"artifact": str(stale)},
            "no-such-calibration-file": {"calibration": str(tmp_path / "none.json")},
            "uncalibrated-target": {"target": "cheap-80"}}


def test_broken_artifacts_are_refused_and_the_old_router_keeps_serving(
        gw: Gateway, client: Any, routers: dict[str, Path], tmp_path: Path) -> None:
    before = gw.fingerprint()
    for case, body in _broken(tmp_path, routers).items():
        resp = gw.admin("POST", "/router/reload", body)
        assert resp.status_code == 422, (case, resp.text)
        error = resp.json()["error"]
        assert error["code"] == "router_reload_failed", case
        assert "Traceback" not in error["message"]
        assert gw.fingerprint() == before, case
        assert gw.served_by(client) == "cheap", case


def test_bad_bodies_are_400(gw: Gateway) -> None:
    for raw in (b"[1]", b'{"artifact": 3}', b'{"unknown": 1}', b"{"):
        resp = httpx.post(gw.url + "/router/reload", content=raw,
                          headers={"authorization": f"Bearer {MASTER}"})
        assert resp.status_code == 400, (raw, resp.text)
        assert resp.json()["error"]["type"] == "invalid_request_error"


# -- (d) traffic during reloads ----------------------------------------------------------------


def test_concurrent_traffic_during_reloads_has_no_errors(
        gw: Gateway, routers: dict[str, Path]) -> None:
    served: list[str] = []
    errors: list[BaseException] = []

    def traffic(n: int) -> None:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="user", max_retries=0)
        for _ in range(n):
            try:
                served.append(gw.served_by(client))
            except Exception as exc:  # collected: the assertion below shows them
                errors.append(exc)

    threads = [threading.Thread(target=traffic, args=(25,)) for _ in range(8)]
    for thread in threads:
        thread.start()
    for i in range(5):
        name = "strong-wins" if i % 2 == 0 else "weak-wins"
        resp = gw.admin("POST", "/router/reload", {"artifact": str(routers[name])})
        assert resp.status_code == 200, resp.text
    for thread in threads:
        thread.join(timeout=120)
    assert errors == [] and len(served) == 200
    assert set(served) <= {"cheap", "pricey"}
    assert gw.fingerprint() == gw.admin("POST", "/router/reload", {
        "artifact": str(routers["strong-wins"])}).json()["router"]["fingerprint"]


# -- (f) every attempt is audited -------------------------------------------------------------


def test_reloads_are_audited_success_and_failure(gw: Gateway, routers: dict[str, Path],
                                                 tmp_path: Path) -> None:
    before = gw.fingerprint()
    ok = gw.admin("POST", "/router/reload", {"artifact": str(routers["strong-wins"])})
    bad = gw.admin("POST", "/router/reload", {"artifact": str(tmp_path / "nowhere")})
    assert (ok.status_code, bad.status_code) == (200, 422)
    with RouterEventStore(gw.db) as store:
        failed, succeeded = store.rows()
    assert (succeeded.result, succeeded.actor, succeeded.trigger) == ("ok", "master",
                                                                      "endpoint")
    assert succeeded.old_fingerprint == before
    assert succeeded.new_fingerprint == ok.json()["router"]["fingerprint"]
    assert succeeded.artifact == str(routers["strong-wins"])
    assert (failed.result, failed.actor) == ("failed", "master")
    assert failed.old_fingerprint == succeeded.new_fingerprint and failed.new_fingerprint is None
    assert "nowhere" in failed.artifact and failed.reason == bad.json()["error"]["message"]


# -- the CLI helpers against the running gateway ---------------------------------------------


def test_router_reload_cli_swaps_checks_cv_and_lists_events(
        gw: Gateway, client: Any, routers: dict[str, Path], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    runner = CliRunner()
    monkeypatch.delenv("MODELMIX_MASTER_KEY", raising=False)
    nokey = runner.invoke(app, ["router", "reload", "--url", gw.url])
    assert nokey.exit_code == 2 and "MODELMIX_MASTER_KEY" in nokey.output
    monkeypatch.setenv("MODELMIX_MASTER_KEY", MASTER)
    # The tiny routers were trained without --cv: the check refuses, nothing changes.
    checked = runner.invoke(app, ["router", "reload", "--url", gw.url, "--artifact",
                                  str(routers["strong-wins"]), "--check-cv-margin", "0.01"])
    assert checked.exit_code == 1 and "no CV metrics" in checked.output
    assert gw.served_by(client) == "cheap"
    # "default" names the shipped router for the check too, as it does for the endpoint
    shipped = runner.invoke(app, ["router", "reload", "--url", gw.url, "--artifact",
                                  "default", "--check-cv-margin", "0.02"])
    assert shipped.exit_code == 1 and "cannot read" not in shipped.output
    assert "live router has no CV metrics" in shipped.output
    assert gw.served_by(client) == "cheap"
    swapped = runner.invoke(app, ["router", "reload", "--url", gw.url, "--artifact",
                                  str(routers["strong-wins"])])
    assert swapped.exit_code == 0, swapped.output
    assert json.loads(swapped.stdout)["router"]["artifact"] == str(routers["strong-wins"])
    assert gw.served_by(client) == "pricey"
    refused = runner.invoke(app, ["router", "reload", "--url", gw.url, "--artifact",
                                  str(tmp_path / "nowhere")])
    assert refused.exit_code == 1 and "422" in refused.output
    events = runner.invoke(app, ["router", "events", "--db", gw.db, "--json"])
    assert events.exit_code == 0, events.output
    rows = [json.loads(line) for line in events.stdout.splitlines()]
    assert [r["result"] for r in rows] == ["failed", "ok"]


def test_cv_regressions_compare_apgr_per_common_dataset() -> None:
    from modelmix.cli._router_reload import cv_regressions

    def metrics(**apgr: float) -> dict[str, Any]:
        return {"datasets": {k: {"apgr": {"mean": v}} for k, v in apgr.items()}}

    assert cv_regressions(metrics(chat=0.60, mmlu=0.70), metrics(chat=0.605), 0.01) == []
    worse = cv_regressions(metrics(chat=0.58), metrics(chat=0.60, mmlu=0.7), 0.01)
    assert len(worse) == 1 and worse[0].startswith("chat: APGR 0.58")
    with pytest.raises(ValueError, match="no dataset in common"):
        cv_regressions(metrics(chat=0.6), metrics(mmlu=0.6), 0.01)
    with pytest.raises(ValueError, match="live router has no CV metrics"):
        cv_regressions(metrics(chat=0.6), None, 0.01)
