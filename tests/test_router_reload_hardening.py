"""The router hot swap under attack (issue 15, the attack review of the hot swap): a
flipped ``current`` symlink, truncated or inconsistent arrays, an array "bomb", a
tokenizer that panics, refused admin calls, hostile audit values, and storms of SIGHUPs
or broadcasts. Real gateways on loopback, real artifacts trained here (the two tiny
routers of tests/test_router_reload.py), real ``modelmix router events``."""

from __future__ import annotations

import asyncio
import json
import logging
import shutil
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from _servers import serve_app
from modelmix.errors import ConfigError
from modelmix.routing import LearnedStrategy, Router, router_fingerprint
from modelmix.routing._router_swap import RouterReloadFailed, load_router
from modelmix.server import create_app
from modelmix.server._router_admin import ReloadRequest, RouterAdmin
from modelmix.store._router_events import RouterEvent, RouterEventStore
from test_router_reload import (  # noqa: F401
    MASTER,
    Gateway,
    TokenAuth,
    _config,
    _service,
    gw,
    routers,
)

np = pytest.importorskip("numpy")
openai = pytest.importorskip("openai")


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    (dst / "calibration.json").unlink(missing_ok=True)
    return dst


def _rewrite_npz(file: Path, **changes: Any) -> None:
    arrays = dict(np.load(file))
    arrays.update(changes)
    np.savez_compressed(file, **arrays)


def _write_header_only_npz(file: Path, name: str, shape: tuple[int, ...],
                           dtype: str = "<f2") -> None:
    """An ``.npz`` whose member ``name`` claims ``shape`` in its header but holds no data:
    what a zip "bomb" looks like before it is decompressed."""
    with zipfile.ZipFile(file, "w") as archive, archive.open(f"{name}.npy", "w") as fp:
        np.lib.format.write_array_header_1_0(fp, {"descr": dtype, "fortran_order": False,
                                                  "shape": shape})


# -- a flipped `current` symlink: the fingerprint is the loaded files' ----------------------


@pytest.fixture()
def linked(routers: dict[str, Path], tmp_path: Path,  # noqa: F811
           monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Gateway, Path]]:
    monkeypatch.delenv("MODELMIX_DB_URL", raising=False)
    current = tmp_path / "current"
    current.symlink_to(routers["weak-wins"])
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    app = create_app(service=_service(_config(current, db)), auth=TokenAuth())
    with serve_app(app) as url:  # start-up warms the router: weak-wins is loaded here
        yield Gateway(url, db), current


def test_flipping_current_does_not_change_the_running_routers_fingerprint(
        linked: tuple[Gateway, Path], routers: dict[str, Path]) -> None:  # noqa: F811
    gateway, current = linked
    weak_fp = router_fingerprint(routers["weak-wins"])
    strong_fp = router_fingerprint(routers["strong-wins"])
    current.unlink()
    current.symlink_to(routers["strong-wins"])  # the documented rollout, step 1
    client = openai.OpenAI(base_url=gateway.url + "/v1", api_key="user", max_retries=0)
    assert gateway.served_by(client) == "cheap"  # still the weak-wins router
    info = gateway.admin("GET", "/router/info").json()["router"]
    assert (info["fingerprint"], info["directory"]) == (weak_fp, str(
        routers["weak-wins"].resolve()))
    assert info["artifact"] == str(current)  # what a reload without a body re-reads
    resp = gateway.admin("POST", "/router/reload")  # step 2: reload the configured one
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert (body["previous_fingerprint"], body["router"]["fingerprint"]) == (weak_fp,
                                                                             strong_fp)
    assert gateway.served_by(client) == "pricey"
    with RouterEventStore(gateway.db) as store:
        (event,) = store.rows()
    assert (event.old_fingerprint, event.new_fingerprint, event.reason) == (
        weak_fp, strong_fp, "new router")


# -- arrays that do not fit: refused at load, with the inconsistency named -------------------


def test_a_truncated_token_table_is_refused_at_load_and_reload(
        gw: Gateway, routers: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from modelmix.routing.learned import load_predictor

    short = _copy(routers["strong-wins"], tmp_path / "short")
    table = np.load(short / "embeddings.npz")["table"]
    probe = load_predictor(short).embedder.token_ids(
        ["Summarise the plot of a short story in two sentences."])[0]
    rows = int(probe.max()) + 1  # enough for the reload's test prompt, not for others
    assert rows < table.shape[0]
    _rewrite_npz(short / "embeddings.npz", table=table[:rows])
    with pytest.raises(ConfigError, match=f"token table has {rows:,} rows for a tokenizer "
                                          f"of {table.shape[0]:,} tokens"):
        load_predictor(short)
    before = gw.fingerprint()
    resp = gw.admin("POST", "/router/reload", {"artifact": str(short)})
    assert resp.status_code == 422 and "truncated" in resp.json()["error"]["message"]
    assert gw.fingerprint() == before


@pytest.mark.parametrize(("case", "match"), [
    ("mean", r"'mean' is \(\d+,\), expected"),
    ("domain_means", r"'domain_means' is \(58, 3\), expected \(58, 2\)"),
    ("learner_intercept", r"'intercept' is \(\d+, 3\), expected \(\*, 2\)"),
    ("learner_coef", r"'coef' is .*expected"),
    ("manifest_domains", r"domains, the manifest lists"),
    ("tok_vocab", r"tok_vocab"),
])
def test_model_arrays_that_disagree_are_refused_by_name(
        routers: dict[str, Path], tmp_path: Path, case: str, match: str) -> None:  # noqa: F811
    from modelmix.routing.learned import default_artifact_dir, load_predictor

    # the tiny routers have no domains; the shipped one (copied, not changed) has 58
    source = default_artifact_dir() if case == "domain_means" else routers["strong-wins"]
    art = _copy(source, tmp_path / case)
    model = dict(np.load(art / "model.npz"))
    if case == "manifest_domains":
        manifest = json.loads((art / "manifest.json").read_text())
        manifest["features"]["domains"] = [*manifest["features"].get("domains", []), "extra"]
        (art / "manifest.json").write_text(json.dumps(manifest))
    elif case in ("domain_means", "learner_intercept"):
        _rewrite_npz(art / "model.npz", **{case: np.zeros((model[case].shape[0], 3))})
    elif case == "tok_vocab":
        if "learner_tok_vocab" not in model:
            pytest.skip("this router has no token heads")
        _rewrite_npz(art / "model.npz", learner_tok_vocab=model["learner_tok_vocab"] - 1)
    else:
        arr = model[case]
        _rewrite_npz(art / "model.npz", **{case: arr[..., :-1]})
    with pytest.raises(ConfigError, match=match) as caught:
        load_predictor(art)
    assert str(art) in caught.value.message


# -- an array "bomb": refused from the .npy headers, nothing decompressed ---------------------


def test_arrays_beyond_the_bounds_are_refused_from_their_headers(
        routers: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from modelmix.routing.learned import load_predictor

    bomb = _copy(routers["weak-wins"], tmp_path / "bomb")
    _write_header_only_npz(bomb / "embeddings.npz", "table", (4_000_000, 256))
    with pytest.raises(ConfigError, match=r"4,000,000 x 256; at most 1,000,000 rows"):
        load_predictor(bomb)
    wide = _copy(routers["weak-wins"], tmp_path / "wide")
    _write_header_only_npz(wide / "embeddings.npz", "table", (30_522, 65_536))
    with pytest.raises(ConfigError, match=r"x 65,536; at most .* x 4,096 wide"):
        load_predictor(wide)
    heavy = _copy(routers["weak-wins"], tmp_path / "heavy")  # each dim legal, bytes not
    _write_header_only_npz(heavy / "model.npz", "learner_coef", (2, 2, 200_000_000), "<f8")
    with pytest.raises(ConfigError, match=r"[\d,]+ MiB decompressed; at most 512 MiB"):
        load_predictor(heavy)
    pickled = _copy(routers["weak-wins"], tmp_path / "pickled")
    _rewrite_npz(pickled / "model.npz", learner_evil=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ConfigError, match="holds Python objects"):
        load_predictor(pickled)


# -- a tokenizer panic (a BaseException) cannot kill a request or a reload -------------------


class PanicException(BaseException):
    """What ``tokenizers`` (PyO3) raises when its Rust code panics."""


class PanickingTokenizer:
    def encode(self, *args: Any, **kwargs: Any) -> Any:
        raise PanicException("called `Result::unwrap()` on an `Err` value: onig retry limit")

    encode_batch = encode


def test_a_tokenizer_panic_fails_the_reload_and_routes_by_rules(
        routers: dict[str, Path], tmp_path: Path) -> None:  # noqa: F811
    from modelmix.routing.learned import load_predictor

    predictor = load_predictor(routers["strong-wins"])
    predictor.embedder._tokenizer = PanickingTokenizer()  # type: ignore[assignment]
    with pytest.raises(RouterReloadFailed, match="PanicException"):
        load_router(str(routers["strong-wins"]), lambda _: predictor)

    def panics(_: str) -> Any:
        raise PanicException("panic while loading")

    with pytest.raises(RouterReloadFailed, match="PanicException: panic while loading"):
        load_router("default", panics)
    config = _config(routers["strong-wins"], f"sqlite:///{tmp_path / 'u.db'}")
    strategy = LearnedStrategy(predictor, settings=config.learned_router)
    router = Router(config, health=lambda dep: None, strategies={"learned": strategy})
    from modelmix.protocol import ChatRequest

    needs = ChatRequest.model_validate({"model": "auto", "messages": [
        {"role": "user", "content": "Summarise this."}]}).needs()
    decision = router.route("auto", needs, prompt="Summarise this.")
    assert decision.reason.startswith("learned router failed (PanicException)")
    assert strategy.strong_score("Summarise this.") is None
    unloadable = LearnedStrategy(loader=panics, settings=config.learned_router)
    assert unloadable.active() is None and "PanicException" in str(unloadable.unavailable)

    def interrupted(_: str) -> Any:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # stopping the process still stops it
        LearnedStrategy(loader=interrupted).warm()


# -- refused admin calls leave a trace ----------------------------------------------------------


def test_refused_admin_calls_are_logged_and_virtual_key_reloads_stored(
        gw: Gateway, caplog: pytest.LogCaptureFixture) -> None:  # noqa: F811
    from modelmix.server._router_admin import REFUSALS_LOGGED_PER_MINUTE

    caplog.set_level(logging.WARNING, logger="modelmix.router.admin")
    for key in (None, "sk-not-the-master-secret", "user"):
        for method, path in (("POST", "/router/reload"), ("GET", "/router/info")):
            assert gw.admin(method, path, key=key).status_code in (401, 403)
    lines = [r.getMessage() for r in caplog.records if "refused" in r.getMessage()]
    assert len(lines) == 6
    assert sum("refused (401)" in line for line in lines) == 4
    assert all("from 127.0.0.1" in line for line in lines)
    assert not any("sk-not-the-master-secret" in line for line in lines)
    assert sum("by key sha256:" in line for line in lines) == 2
    assert sum("by key user" in line and "admin_key_required" in line for line in lines) == 2
    with RouterEventStore(gw.db) as store:
        (row,) = store.rows()  # the reload asked with a virtual key; info is no reload
    assert (row.result, row.actor, row.trigger) == ("refused", "user", "endpoint")
    assert row.reason.startswith("admin_key_required") and row.new_fingerprint is None
    for _ in range(REFUSALS_LOGGED_PER_MINUTE + 5):  # a flood: the log and table stay small
        gw.admin("POST", "/router/reload", key="user")
    flood = [r for r in caplog.records if "refused" in r.getMessage()]
    assert len(flood) == REFUSALS_LOGGED_PER_MINUTE
    with RouterEventStore(gw.db) as store:
        assert len(store.rows(limit=None)) == REFUSALS_LOGGED_PER_MINUTE - 5


def test_the_refusal_allowance_refills_each_minute_and_counts_the_rest() -> None:
    from modelmix.server._router_admin import _Allowance

    allowance = _Allowance(2)
    assert [allowance.take() for _ in range(5)] == [True, True, False, False, False]
    assert allowance.dropped == 3
    allowance._start -= 61
    assert allowance.take()


# -- hostile values in audit rows ---------------------------------------------------------------


def test_events_are_printed_escaped_and_stored_capped(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    db = f"sqlite:///{tmp_path / 'e.db'}"
    forged = "x\n2026-01-01 00:00:00  ok      endpoint   master  a -> b  /evil  new router"
    with RouterEventStore(db) as store:
        store.add(RouterEvent(actor="A" * 100_000, trigger="broadcast", result="failed",
                              artifact="/srv/\x1b[2J\x1b[31mred\u202e", reason=forged))
        (stored,) = store.rows()
    assert len(stored.actor) < 1_000 and stored.actor.endswith("chars]")  # capped
    out = CliRunner().invoke(app, ["router", "events", "--db", db])
    assert out.exit_code == 0, out.output
    assert len(out.stdout.splitlines()) == 1  # the newline did not forge a second row
    assert "\x1b" not in out.stdout and "\u202e" not in out.stdout
    assert "\\x1b[2J" in out.stdout and "\\u202e" in out.stdout and "x\\n2026" in out.stdout


def _admin(routers: dict[str, Path], tmp_path: Path) -> RouterAdmin:  # noqa: F811
    service = _service(_config(routers["weak-wins"], f"sqlite:///{tmp_path / 'a.db'}"))
    return RouterAdmin(service, TokenAuth(), RouterEventStore(  # type: ignore[arg-type]
        f"sqlite:///{tmp_path / 'a.db'}"), replica="here")


def test_oversized_broadcasts_are_ignored(routers: dict[str, Path], tmp_path: Path,  # noqa: F811
                                          caplog: pytest.LogCaptureFixture) -> None:
    admin = _admin(routers, tmp_path)
    asked: list[tuple[ReloadRequest, str]] = []
    admin.reload_soon = lambda body, *, actor, trigger: asked.append((body, actor))  # type: ignore[method-assign]
    admin._on_broadcast(json.dumps({"origin": "o", "actor": "A" * 1_000_000,
                                    "artifact": "/x"}))
    admin._on_broadcast(json.dumps({"origin": "o", "actor": "A" * 600, "artifact": "/x"}))
    admin._on_broadcast(json.dumps({"origin": "o\n\x1b[2J", "actor": "a\nb",
                                    "artifact": 3}))
    assert asked == []
    text = caplog.text
    big = len(json.dumps({"origin": "o", "actor": "A" * 1_000_000, "artifact": "/x"}))
    assert f"{big} characters" in text and "\x1b" not in text
    admin._on_broadcast(json.dumps({"origin": "o", "actor": "ops", "artifact": "/x"}))
    assert [actor for _, actor in asked] == ["ops@o"]


# -- storms: reloads are coalesced per trigger --------------------------------------------------


def test_signal_and_broadcast_storms_are_coalesced(routers: dict[str, Path],  # noqa: F811
                                                   tmp_path: Path) -> None:
    admin = _admin(routers, tmp_path)
    strategy = admin.strategy()
    strategy.warm()
    loads: list[str] = []
    real = strategy._loader

    def counting(name: str) -> Any:
        loads.append(name)
        time.sleep(0.05)
        return real(name)

    strategy._loader = counting

    async def storm() -> None:
        # one SIGHUP starts a reload; 29 more while it runs wait as one follow-up
        admin.reload_soon(ReloadRequest(broadcast=False), actor="signal", trigger="signal")
        await asyncio.sleep(0.01)  # the reload is running (its load takes >= 50 ms)
        for _ in range(29):
            admin.reload_soon(ReloadRequest(broadcast=False), actor="signal", trigger="signal")
        await _drained(admin)
        # 100 broadcasts likewise: the last one waiting is the one that runs
        for i in range(100):
            name = "strong-wins" if i == 99 else "weak-wins"
            admin.reload_soon(ReloadRequest(artifact=str(routers[name]), broadcast=False),
                              actor=f"ops{i}@a", trigger="broadcast")
            if i == 0:
                await asyncio.sleep(0.01)
        await _drained(admin)

    asyncio.run(storm())
    weak, strong = (str(routers[n].resolve()) for n in ("weak-wins", "strong-wins"))
    assert loads == [weak, weak, weak, strong]  # 2 for 30 SIGHUPs, 2 for 100 broadcasts
    active = strategy.active()
    assert active is not None and active.artifact == str(routers["strong-wins"])
    with RouterEventStore(f"sqlite:///{tmp_path / 'a.db'}") as store:
        rows = store.rows(limit=None)
    assert [r.actor for r in rows] == ["ops99@a", "ops0@a", "signal", "signal"]
    assert all(r.result == "ok" for r in rows)


async def _drained(admin: RouterAdmin) -> None:
    """Wait for every background reload the admin started."""
    while others := [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
        await asyncio.wait_for(asyncio.gather(*others), timeout=120)
