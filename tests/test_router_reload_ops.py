"""Operating the router hot swap: SIGHUP on a real ``modelmix serve`` process, the
scheduled retraining script (deploy/retrain-router.sh, as docs/routing-in-gateway.md runs
it) against a real gateway with stored feedback, and the broadcast to a second replica
through a real redis-server."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from _servers import free_port, serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.routing import router_fingerprint
from modelmix.server import create_app
from modelmix.state import shared_redis
from modelmix.store import FeedbackRecord, FeedbackStore, UsageRecord, UsageStore
from modelmix.store._router_events import RouterEventStore
from modelmix.testing import FakeProvider
from test_router_reload import DEPLOYMENTS, MASTER, TokenAuth, routers  # noqa: F401

pytest.importorskip("numpy")
openai = pytest.importorskip("openai")

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


def _wait(check: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def _info(url: str) -> dict[str, Any]:
    resp = httpx.get(url + "/router/info", headers={"authorization": f"Bearer {MASTER}"},
                     timeout=30)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _fingerprint(url: str) -> str | None:
    router = _info(url)["router"]
    return None if router is None else str(router["fingerprint"])


def _upstream() -> Any:
    """An OpenAI-compatible upstream answering with the model it was asked for."""
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0,
                             "model": body["model"], "choices": [{
                                 "index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": body["model"]}}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@pytest.fixture()
def gateway_process(tmp_path: Path, routers: dict[str, Path]  # noqa: F811
                    ) -> Iterator[tuple[str, subprocess.Popen[bytes], Path]]:
    """``modelmix serve`` in a subprocess, ``learned_router.artifact`` a ``current``
    symlink to the weak-wins router, deployments on a loopback upstream."""
    current = tmp_path / "current"
    current.symlink_to(routers["weak-wins"])
    with serve_app(_upstream()) as upstream:
        deployments = [{**d, "base_url": upstream + "/v1", "provider": "openai-compatible"}
                       for d in DEPLOYMENTS]
        cfg = tmp_path / "gateway.yaml"
        cfg.write_text(json.dumps({"deployments": deployments, "router": "learned",
                                   "learned_router": {"artifact": str(current)}}))
        port = free_port()
        env = {**os.environ, "MODELMIX_MASTER_KEY": MASTER,
               "MODELMIX_DB_URL": f"sqlite:///{tmp_path / 'usage.db'}"}
        proc = subprocess.Popen([str(BIN / "modelmix"), "serve", "-c", str(cfg), "--port",
                                 str(port), "--log-level", "warning"], env=env, cwd=tmp_path,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = f"http://127.0.0.1:{port}"
        try:
            _wait(lambda: _up(url, proc), 60, "modelmix serve")
            yield url, proc, tmp_path
        finally:
            proc.terminate()
            proc.wait(timeout=20)


def _up(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"modelmix serve exited: {proc.stderr.read().decode()[-2000:]}"
                             if proc.stderr else "modelmix serve exited")
    try:
        return httpx.get(url + "/health", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


# -- (e) SIGHUP ------------------------------------------------------------------------------


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this platform")
def test_sighup_reloads_the_configured_router_in_a_running_gateway(
        gateway_process: tuple[str, subprocess.Popen[bytes], Path],
        routers: dict[str, Path]) -> None:  # noqa: F811
    url, proc, tmp = gateway_process
    client = openai.OpenAI(base_url=url + "/v1", api_key=MASTER, max_retries=0)

    def served() -> str:
        reply = client.chat.completions.create(
            model="auto", messages=[{"role": "user", "content": "Summarise this for me."}])
        return str(reply.choices[0].message.content)

    weak_fp = _fingerprint(url)
    assert served() == "m1"  # the cheap deployment's model
    current = tmp / "current"
    current.unlink()
    current.symlink_to(routers["strong-wins"])
    proc.send_signal(signal.SIGHUP)
    _wait(lambda: _fingerprint(url) != weak_fp, 30, "the SIGHUP reload")
    assert proc.poll() is None  # reloaded, not terminated
    assert served() == "m2"
    # A broken router on SIGHUP: refused, audited, the process keeps serving the old one.
    current.unlink()
    current.symlink_to(tmp / "nowhere")
    proc.send_signal(signal.SIGHUP)
    with RouterEventStore(f"sqlite:///{tmp / 'usage.db'}") as store:
        _wait(lambda: len(store.rows()) == 2, 30, "the failed reload's audit row")
        failed, ok = store.rows()
    assert (ok.actor, ok.trigger, ok.result) == ("signal", "signal", "ok")
    assert ok.old_fingerprint == weak_fp and ok.new_fingerprint == _fingerprint(url)
    assert (failed.trigger, failed.result) == ("signal", "failed")
    assert proc.poll() is None and served() == "m2"


# -- the scheduled retraining script, as documented -----------------------------------------


def _feedback_db(db: str) -> None:
    """Stored prompts with feedback: the cheap deployment fails proofs, passes the rest."""
    usage = UsageStore(db)
    usage.create_all()
    now = time.time()
    rows = [(f"easy question number {i}?", "cheap", 1.0) for i in range(20)]
    rows += [(f"prove theorem {i} rigorously", "cheap", 0.0) for i in range(20)]
    rows += [(f"prove theorem {i} rigorously", "pricey", 1.0) for i in range(20)]
    rows += [(f"easy question number {i}?", "pricey", 1.0) for i in range(20)]
    usage.insert_many([UsageRecord(request_id=f"r{i}", created_at=now + i, deployment=dep,
                                   prompt=text) for i, (text, dep, _) in enumerate(rows)])
    FeedbackStore(db).add_many(FeedbackRecord(request_id=f"r{i}", score=score)
                               for i, (_, _, score) in enumerate(rows))


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.slow  # about 60 s: four CLI runs that train or calibrate a router
def test_retrain_script_trains_checks_calibrates_swaps_and_keeps_versions(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    _feedback_db(db)
    root = tmp_path / "router"
    raw = {"deployments": DEPLOYMENTS, "router": "learned",
           "learned_router": {"artifact": str(root / "current")},
           "store": {"url": db, "keep_prompts": True}}
    (tmp_path / "gateway.yaml").write_text(json.dumps(raw))
    config = config_from_dict(raw)
    fakes = {d.name: FakeProvider(d, reply=d.name) for d in config.deployments}
    app = create_app(service=ChatService(config, providers=fakes), auth=TokenAuth())
    monkeypatch.delenv("MODELMIX_DB_URL", raising=False)
    with serve_app(app) as url:
        assert _info(url)["router"] is None  # nothing at current yet: rules route
        env = {**os.environ, "MODELMIX_CONFIG": str(tmp_path / "gateway.yaml"),
               "MODELMIX_MASTER_KEY": MASTER, "MODELMIX_URL": url, "ROUTER_DIR": str(root),
               "CV_FOLDS": "2", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}

        def run(**extra: str) -> Path:
            done = subprocess.run(["bash", str(ROOT / "deploy" / "retrain-router.sh")],
                                  env={**env, **extra}, capture_output=True, text=True,
                                  timeout=300)
            assert done.returncode == 0, done.stderr[-3000:]
            return Path(done.stdout.strip().splitlines()[-1])

        first = run(CV_MARGIN="none")  # first run: no live router to compare with
        assert _fingerprint(url) is not None
        assert (root / "current").resolve() == first.resolve()
        assert json.loads((first / "calibration.json").read_text())["default"] == "balanced"
        time.sleep(1.1)  # versions are named by the second
        second = run(CV_MARGIN="0.05")  # same data, same folds: not worse
        assert (root / "current").resolve() == second.resolve() and first.is_dir()
        info = _info(url)["router"]
        assert info["directory"] == str(second) and info["calibration"]["default"] == "balanced"
        # Rolling back is pointing current at the previous version and reloading it.
        (root / "current").unlink()
        (root / "current").symlink_to(first)
        back = subprocess.run(["modelmix", "router", "reload", "--url", url], env=env,
                              capture_output=True, text=True, timeout=120)
        assert back.returncode == 0, back.stderr
        assert json.loads(back.stdout)["router"]["fingerprint"] == router_fingerprint(first)
        assert _fingerprint(url) == router_fingerprint(first) != router_fingerprint(second)
    with RouterEventStore(db) as store:
        assert [e.result for e in store.rows()] == ["ok", "ok", "ok"]


# -- two replicas: a reload on one reaches the other through Redis --------------------------


def test_reload_is_broadcast_to_the_other_replica(redis_url: str, tmp_path: Path,
                                                  routers: dict[str, Path]) -> None:  # noqa: F811
    def replica(name: str) -> Any:
        raw = {"deployments": DEPLOYMENTS, "router": "learned",
               "learned_router": {"artifact": str(routers["weak-wins"])},
               "store": {"url": f"sqlite:///{tmp_path / name}.db"},
               "state": {"redis_url": redis_url, "timeout_s": 1.0}}
        config = config_from_dict(raw)
        fakes = {d.name: FakeProvider(d, reply=d.name) for d in config.deployments}
        return create_app(service=ChatService(config, providers=fakes,
                                              shared=shared_redis(config, {})),
                          auth=TokenAuth())

    with serve_app(replica("a")) as a, serve_app(replica("b")) as b:
        before = _fingerprint(b)
        assert before == _fingerprint(a)
        resp = httpx.post(a + "/router/reload", json={"artifact": str(routers["strong-wins"])},
                          headers={"authorization": f"Bearer {MASTER}"}, timeout=60)
        assert resp.status_code == 200 and resp.json()["broadcast"] is True, resp.text
        new = resp.json()["router"]["fingerprint"]
        _wait(lambda: _fingerprint(b) == new, 20, "replica b to reload")
        # A canary: --no-broadcast reloads one replica only.
        canary = httpx.post(a + "/router/reload", json={"artifact": str(routers["weak-wins"]),
                                                        "broadcast": False},
                            headers={"authorization": f"Bearer {MASTER}"}, timeout=60)
        assert canary.status_code == 200 and canary.json()["broadcast"] is False
        time.sleep(0.5)
        assert _fingerprint(a) == before and _fingerprint(b) == new
    with RouterEventStore(f"sqlite:///{tmp_path / 'b'}.db") as store:
        (event,) = store.rows()
    assert event.trigger == "broadcast" and event.actor.startswith("master@")
    assert event.new_fingerprint == new
