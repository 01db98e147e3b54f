"""POST /v1/feedback on a real loopback gateway, the feedback store, kept prompts, and the
outcome table that ``router train --from-feedback`` builds from them."""

from __future__ import annotations

import asyncio
import json
import time
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
from modelmix.routing._from_feedback import Judge, build_feedback_table, parse_grade
from modelmix.server import create_app
from modelmix.server._auth import KeyInfo
from modelmix.store import (
    FeedbackRecord,
    FeedbackStore,
    StoredOutcome,
    UsageRecord,
    UsageStore,
    UsageWriter,
)
from modelmix.testing import FakeProvider

DEPLOYMENTS = [
    {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m1"},
    {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
     "model": "m2", "tier": "proprietary", "quality_profile": "gpt-4-1106-preview"},
]


class TokenAuth:
    """``Bearer k1`` / ``k2`` are virtual keys, ``admin`` the master key; else 401."""

    async def authenticate(self, authorization: str | None) -> KeyInfo:
        token = (authorization or "").removeprefix("Bearer ")
        if token == "admin":
            return KeyInfo(key_id="master", is_admin=True)
        if token in ("k1", "k2"):
            return KeyInfo(key_id=token)
        raise AuthenticationFailed("invalid API key")


@dataclass
class Gateway:
    url: str
    config: Config
    writer: UsageWriter
    db: str

    def chat(self, text: str, key: str = "k1", model: str = "open-a") -> str:
        resp = httpx.post(self.url + "/v1/chat/completions", headers=_auth(key), json={
            "model": model, "messages": [{"role": "user", "content": text}]})
        assert resp.status_code == 200, resp.text
        return resp.headers["x-request-id"]

    def feedback(self, body: Any, key: str | None = "k1") -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + "/v1/feedback", content=content,
                          headers=_auth(key) if key else {})


def _auth(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def _config(db: str, **store: Any) -> Config:
    return config_from_dict({"deployments": DEPLOYMENTS, "router": "rules",
                             "store": {"url": db, **store}})


@pytest.fixture()
def gw(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.delenv("MODELMIX_DB_URL", raising=False)
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    cfg = _config(db, keep_prompts=True, keep_responses=True)
    FeedbackStore(db).create_all()  # before the writer thread, which would race us
    writer = UsageWriter(UsageStore(db), flush_interval_s=0.01)
    fakes = {d.name: FakeProvider(d, reply=f"answer from {d.name}") for d in cfg.deployments}
    service = ChatService(cfg, providers=fakes, usage=writer)
    with serve_app(create_app(service=service, auth=TokenAuth())) as url:
        yield Gateway(url, cfg, writer, db)


def test_feedback_is_stored_for_the_callers_own_request(gw: Gateway) -> None:
    rid = gw.chat("what is 2+2?")
    resp = gw.feedback({"request_id": rid, "thumbs": "up", "comment": "nice"})
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["object"] == "feedback" and body["score"] == 1.0 and body["key_id"] == "k1"
    assert gw.feedback({"request_id": rid, "score": 0.25}).json()["score"] == 0.25
    stored = FeedbackStore(gw.db).feedback()
    assert [(f.request_id, f.score, f.thumbs, f.comment, f.source) for f in stored] == [
        (rid, 1.0, "up", "nice", "user"), (rid, 0.25, None, None, "user")]


def test_other_keys_cannot_rate_a_request_but_the_master_key_can(gw: Gateway) -> None:
    rid = gw.chat("hello", key="k1")
    resp = gw.feedback({"request_id": rid, "thumbs": "down"}, key="k2")
    assert resp.status_code == 404 and resp.json()["error"]["code"] == "request_not_found"
    assert gw.feedback({"request_id": rid, "thumbs": "down"}, key="admin").status_code == 200


def test_unknown_request_id_is_404_openai_format(gw: Gateway) -> None:
    resp = gw.feedback({"request_id": "no-such-request", "score": 1})
    assert resp.status_code == 404
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["param"] == "request_id" and "no-such-request" in err["message"]


def test_feedback_needs_a_valid_key(gw: Gateway) -> None:
    rid = gw.chat("hello")
    assert gw.feedback({"request_id": rid, "score": 1}, key=None).status_code == 401
    assert gw.feedback({"request_id": rid, "score": 1}, key="bogus").status_code == 401


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        (b"{nope", "not valid JSON"),
        (b"[1]", "JSON object"),
        ({"score": 1}, "request_id"),
        ({"request_id": "r1"}, "exactly one of score"),
        ({"request_id": "r1", "score": 1, "thumbs": "up"}, "exactly one of score"),
        ({"request_id": "r1", "score": 1.5}, "less than or equal to 1"),
        ({"request_id": "r1", "score": "0.5"}, "valid number"),
        ({"request_id": "r1", "thumbs": "meh"}, "thumbs"),
        ({"request_id": "r1", "score": 1, "comment": "x" * 2001}, "comment"),
        ({"request_id": "r1", "score": 1, "stars": 5}, "stars"),
        ({"request_id": "bad id!", "score": 1}, "request_id"),
    ],
)
def test_bad_bodies_are_400(gw: Gateway, body: Any, needle: str) -> None:
    resp = gw.feedback(body)
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["type"] == "invalid_request_error" and needle in err["message"]


def test_requests_from_before_a_restart_are_found_in_the_usage_table(gw: Gateway) -> None:
    UsageStore(gw.db).insert_many([UsageRecord(
        request_id="old-1", created_at=time.time(), key_id="k1", deployment="open-a")])
    assert gw.feedback({"request_id": "old-1", "score": 0.5}).status_code == 200
    assert gw.feedback({"request_id": "old-1", "score": 0.5}, key="k2").status_code == 404


def test_disabled_store_means_503(tmp_path: Path) -> None:
    cfg = config_from_dict({"deployments": DEPLOYMENTS, "store": {"enabled": False}})
    service = ChatService(cfg, providers={d.name: FakeProvider(d) for d in cfg.deployments})
    with serve_app(create_app(service=service, auth=TokenAuth())) as url:
        resp = httpx.post(url + "/v1/feedback", headers=_auth("k1"),
                          json={"request_id": "r1", "score": 1})
    assert resp.status_code == 503 and resp.json()["error"]["code"] == "feedback_disabled"


# -- kept prompts and the outcome table ----------------------------------------------------


def test_prompts_and_answers_are_kept_and_joined_with_feedback(gw: Gateway) -> None:
    easy = gw.chat("what is 2+2?", model="open-a")
    hard = gw.chat("prove Fermat", model="prop-b")
    unrated = gw.chat("say hi", model="open-a")
    gw.feedback({"request_id": easy, "thumbs": "up"})
    gw.feedback({"request_id": hard, "score": 0.5})
    gw.feedback({"request_id": hard, "score": 1.0})
    assert gw.writer.flush(5)
    outcomes = {o.request_id: o for o in FeedbackStore(gw.db).outcomes()}
    assert set(outcomes) == {easy, hard, unrated}
    assert outcomes[easy].prompt == "what is 2+2?"
    assert outcomes[easy].response == "answer from open-a"
    assert outcomes[hard].user_score == 0.75 and outcomes[unrated].user_score is None

    table = build_feedback_table(list(outcomes.values()), gw.config)
    assert table.columns == ("gpt-4-1106-preview", "open-a")  # quality_profile, else name
    rows = dict(zip(table.prompts, table.scores, strict=True))
    assert rows == {"what is 2+2?": (None, 1.0), "prove Fermat": (0.75, None)}
    assert table.user_cells == 2 and table.judge_cells == 0


def test_prompts_are_not_kept_by_default(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'u.db'}"
    cfg = _config(db)
    assert cfg.store.keep_prompts is False and cfg.store.keep_responses is False
    writer = UsageWriter(UsageStore(db), flush_interval_s=0.01)
    service = ChatService(cfg, providers={d.name: FakeProvider(d) for d in cfg.deployments},
                          usage=writer)
    with serve_app(create_app(service=service, auth=TokenAuth())) as url:
        httpx.post(url + "/v1/chat/completions", headers=_auth("k1"), json={
            "model": "open-a", "messages": [{"role": "user", "content": "secret"}]})
        assert writer.flush(5)
    store = UsageStore(db)
    assert store.count() == 1
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("select count(*) from request_texts").scalar() == 0


def test_streamed_answers_are_kept_too(gw: Gateway) -> None:
    resp = httpx.post(gw.url + "/v1/chat/completions", headers=_auth("k1"), json={
        "model": "open-a", "stream": True, "messages": [{"role": "user", "content": "q"}]})
    rid = resp.headers["x-request-id"]
    assert gw.writer.flush(5)
    (outcome,) = [o for o in FeedbackStore(gw.db).outcomes() if o.request_id == rid]
    assert outcome.response == "answer from open-a"


def _outcome(rid: str, prompt: str, dep: str, *, user: float | None = None,
             judge: float | None = None, response: str | None = "an answer") -> StoredOutcome:
    return StoredOutcome(request_id=rid, created_at=0.0, deployment=dep, prompt=prompt,
                         response=response, user_score=user, judge_score=judge)


def test_table_prefers_caller_scores_then_judge_and_averages_repeats() -> None:
    cfg = _config("sqlite://")
    table = build_feedback_table([
        _outcome("1", "p", "open-a", user=1.0, judge=0.0),
        _outcome("2", "p", "open-a", user=0.0),
        _outcome("3", "q", "prop-b", judge=0.8),
        _outcome("4", "r", "gone-deployment", user=1.0),
        _outcome("5", "s", "open-a"),
    ], cfg)
    rows = dict(zip(table.prompts, table.scores, strict=True))
    assert table.columns == ("gone-deployment", "gpt-4-1106-preview", "open-a")
    assert rows == {"p": (None, None, 0.5), "q": (None, 0.8, None), "r": (1.0, None, None)}
    assert (table.user_cells, table.judge_cells) == (3, 1)
    no_judge = build_feedback_table([_outcome("3", "q", "prop-b", judge=0.8)], cfg,
                                    use_judge=False)
    assert len(no_judge) == 0


def test_table_file_is_readable_by_the_router_trainer(tmp_path: Path) -> None:
    tables = pytest.importorskip("modelmix.routing.learned._tables")
    cfg = _config("sqlite://")
    table = build_feedback_table([_outcome("1", "p", "open-a", user=1.0),
                                  _outcome("2", "q", "prop-b", user=0.0)], cfg)
    path = table.write_jsonl(tmp_path / "fb.jsonl")
    read = tables.read_outcome_tables([path])
    assert read.prompts == ("p", "q")
    assert read.model_names == ("gpt-4-1106-preview", "open-a")
    assert read.outcomes[0][1] == 1.0 and read.outcomes[1][0] == 0.0


def test_judge_grades_only_unrated_answers() -> None:
    asked: list[str] = []

    async def chat(messages: list[dict[str, str]]) -> str:
        asked.append(messages[0]["content"])
        return "Grade: 7" if "good answer" in messages[0]["content"] else "no idea"

    judge = Judge(chat)
    grades = asyncio.run(judge.grade_all([
        _outcome("a", "q1", "open-a", response="good answer"),
        _outcome("b", "q2", "open-a", response="bad answer"),
        _outcome("c", "q3", "open-a", response="good", user=1.0),
        _outcome("d", "q4", "open-a", response="good", judge=0.3),
        _outcome("e", "q5", "open-a", response=None),
    ]))
    assert grades == {"a": pytest.approx(6 / 9)}
    assert len(asked) == 2 and "[Question]\nq1" in asked[0] and "good answer" in asked[0]


@pytest.mark.parametrize(("text", "score"), [("10", 1.0), ("1", 0.0), ("I'd say 8/10", 7 / 9),
                                             ("eleven", None), ("0", None)])
def test_parse_grade(text: str, score: float | None) -> None:
    assert parse_grade(text) == (None if score is None else pytest.approx(score))


def test_judge_scores_are_stored_as_feedback(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.add_many([FeedbackRecord(request_id="r", score=0.5, source="judge"),
                    FeedbackRecord(request_id="r", score=0.9, source="judge")])
    assert [f.source for f in store.feedback()] == ["judge", "judge"]
    assert store.find_request("r") is None  # no usage row
    store.close()


def test_reads_do_not_create_a_database(tmp_path: Path) -> None:
    store = FeedbackStore(f"sqlite:///{tmp_path / 'none.db'}")
    assert store.find_request("x") is None and store.outcomes() == []
    assert not (tmp_path / "none.db").exists()


# -- train --from-feedback data, with a judge on loopback ----------------------------------


def _judge_upstream() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import JSONResponse
    from starlette.routing import Route

    async def completions(request: Request) -> JSONResponse:
        body = await request.json()
        grade = "10" if "Paris" in body["messages"][0]["content"] else "2"
        return JSONResponse({"id": "c1", "object": "chat.completion", "created": 0,
                             "model": body["model"], "choices": [{
                                 "index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": grade}}]})

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


def test_feedback_training_data_uses_the_judge_for_unrated_answers(tmp_path: Path) -> None:
    from modelmix.cli._router_calibrate import feedback_training_data

    db = f"sqlite:///{tmp_path / 'u.db'}"
    now = time.time()
    usage = UsageStore(db)
    usage.create_all()
    usage.insert_many([
        UsageRecord(request_id="r1", created_at=now, deployment="open-a", prompt="capital?",
                    response="Paris"),
        UsageRecord(request_id="r2", created_at=now + 1, deployment="open-a", prompt="2+2?",
                    response="5"),
        UsageRecord(request_id="r3", created_at=now + 2, deployment="prop-b", prompt="2+2?",
                    response="4"),
    ])
    FeedbackStore(db).add(FeedbackRecord(request_id="r3", score=1.0))
    with serve_app(_judge_upstream()) as upstream:
        cfg = config_from_dict({
            "deployments": [*DEPLOYMENTS, {"name": "judge", "provider": "openai-compatible",
                                           "base_url": upstream + "/v1", "model": "j"}],
            "store": {"url": db, "keep_prompts": True, "keep_responses": True},
            "learned_router": {"judge": "judge"}})
        said: list[str] = []
        path, table = feedback_training_data(cfg, tmp_path, echo=said.append)
    assert "judge judge graded 2 stored answers" in said
    rows = dict(zip(table.prompts, table.scores, strict=True))
    assert rows == {"capital?": (None, 1.0), "2+2?": (1.0, pytest.approx(1 / 9))}
    assert (table.user_cells, table.judge_cells) == (1, 2)
    lines = [json.loads(x) for x in path.read_text().splitlines()]
    assert lines[0] == {"prompt": "capital?", "gpt-4-1106-preview": None, "open-a": 1.0}
    judged = [f for f in FeedbackStore(db).feedback() if f.source == "judge"]
    assert {f.request_id for f in judged} == {"r1", "r2"}


def test_feedback_training_data_without_feedback_says_what_to_do(tmp_path: Path) -> None:
    from modelmix.cli._router_calibrate import feedback_training_data
    from modelmix.errors import ConfigError

    cfg = _config(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(ConfigError, match=r"store\.keep_prompts: true"):
        feedback_training_data(cfg, tmp_path)


def test_router_train_from_feedback_end_to_end(tmp_path: Path) -> None:
    pytest.importorskip("modelmix.routing.learned")
    from typer.testing import CliRunner

    from modelmix.cli import app
    from modelmix.protocol import RequestNeeds
    from modelmix.routing import LearnedStrategy, Router

    db = f"sqlite:///{tmp_path / 'u.db'}"
    usage = UsageStore(db)
    usage.create_all()
    now = time.time()
    prompts = [(f"easy question number {i}?", "open-a", 1.0) for i in range(20)]
    prompts += [(f"prove theorem {i} rigorously", "open-a", 0.0) for i in range(20)]
    prompts += [(f"prove theorem {i} rigorously", "prop-b", 1.0) for i in range(20)]
    usage.insert_many([UsageRecord(request_id=f"r{i}", created_at=now + i, deployment=dep,
                                   prompt=text) for i, (text, dep, _) in enumerate(prompts)])
    FeedbackStore(db).add_many(FeedbackRecord(request_id=f"r{i}", score=score)
                               for i, (_, _, score) in enumerate(prompts))
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text(json.dumps({"deployments": DEPLOYMENTS,
                               "store": {"url": db, "keep_prompts": True}}))
    out = tmp_path / "router"
    result = CliRunner().invoke(app, ["router", "train", "--from-feedback", "-c", str(cfg),
                                      "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "40 prompts" in result.output and (out / "manifest.json").exists()
    assert not list(out.glob("*.jsonl"))  # users' prompts stay out of the artifact
    trained = config_from_dict({"deployments": DEPLOYMENTS,
                                "learned_router": {"artifact": str(out)}})
    router = Router(trained, health=lambda d: None,
                    strategies={"learned": LearnedStrategy.from_config(trained)})
    decision = router.route("auto", RequestNeeds(), prompt="prove theorem 3 rigorously")
    assert decision.reason.startswith("learned: p(strong needed)=")
    assert set(decision.predicted_quality) == {"open-a", "prop-b"}


def test_router_train_needs_data_or_feedback() -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    result = CliRunner().invoke(app, ["router", "train", "--out", "x"])
    assert result.exit_code == 2 and "--from-feedback" in result.output


def test_outcomes_leave_out_the_calls_systems_make_for_their_steps(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    usage = UsageStore(url)
    usage.create_all()
    now = time.time()
    rows = [UsageRecord(request_id="plain", created_at=now, deployment="open-a",
                        prompt="What is 2 + 2?"),
            UsageRecord(request_id="step", created_at=now, deployment="open-a",
                        prompt="improve: 4", parent_id="env", system="s", step="polish")]
    assert usage.insert_many(rows) == 2
    usage.close()
    store = FeedbackStore(url)
    assert [o.request_id for o in store.outcomes()] == ["plain"]
    store.close()
