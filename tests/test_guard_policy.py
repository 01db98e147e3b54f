"""Data policies: file format and validation, rule combination, and their enforcement in
the chat service (block, route-local, pseudonymise, fallbacks, audit, error scrubbing),
the gateway (tags, OpenAI error bodies) and ``modelmix audit``."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from typer.testing import CliRunner

from _guard_fakes import BrokenDetector, EchoProvider, RegexDetector, sent_text
from _servers import serve_app
from modelmix.catalog import Config, config_from_dict
from modelmix.cli import app as cli_app
from modelmix.engine import CallContext, ChatService
from modelmix.errors import ConfigError, InvalidRequest, PolicyDenied, UpstreamUnavailable
from modelmix.guard import (
    READY_POLICIES,
    Action,
    DataClass,
    Guard,
    Policy,
    guard_from_config,
    load_policy,
    policy_from_dict,
    request_tags,
    request_texts,
)
from modelmix.protocol import ChatRequest
from modelmix.server import create_app
from modelmix.store import AuditRecord, AuditStore, UsageRecord, UsageStore
from modelmix.testing import FakeProvider, ListSink

SSN = "123-45-6789"
EMAIL = "jane.doe@example.org"
KEY = "sk-abcdefghijklmnop"
CARD = "4111 1111 1111 1111"




def _config(**extra: Any) -> Config:
    def dep(name: str, provider: str, **kw: Any) -> dict[str, Any]:
        base = {"name": name, "provider": provider, "model": f"m-{name}"}
        if provider == "vllm":
            base["base_url"] = "http://127.0.0.1:9/v1"
        return {**base, **kw}

    return config_from_dict({
        "deployments": [
            dep("cloud-us", "openai", region="us-east-1"),
            dep("cloud-eu", "openai", region="eu-west-1"),
            dep("onprem-a", "vllm", region="eu-central-1"),
            dep("onprem-b", "vllm"),
        ],
        "groups": {"all": ["cloud-us", "cloud-eu", "onprem-a", "onprem-b"],
                   "clouds": ["cloud-us", "cloud-eu"]},
        "router": "ordered",
        "reliability": {"num_retries": 1, "backoff_base_s": 0.0, "backoff_max_s": 0.0},
        **extra,
    })


def _service(policy: str | dict[str, Any], *, detector: Any = None,
             providers: dict[str, Any] | None = None, **cfg: Any
             ) -> tuple[ChatService, dict[str, Any], ListSink]:
    config = _config(**cfg)
    fakes = providers or {d.name: EchoProvider(d) for d in config.deployments}
    sink = ListSink()
    pol = load_policy(policy)
    guard = Guard(pol, detector or RegexDetector(), in_thread=False)
    return ChatService(config, providers=fakes, usage=sink, guard=guard), fakes, sink


def _chat(text: str, model: str = "all", **body: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **body})


def _received(fakes: dict[str, Any]) -> dict[str, str]:
    return {name: " ".join(sent_text(r) for r in fake.calls)
            for name, fake in fakes.items() if fake.calls}


# -- policy files -----------------------------------------------------------------------


@pytest.mark.parametrize("name", READY_POLICIES)
def test_ready_policies_load(name: str) -> None:
    policy = load_policy(name)
    assert policy.name == name
    assert set(policy.classes) == set(DataClass)


def test_ready_policy_verdicts() -> None:
    health = load_policy("healthcare").evaluate(DataClass.REGULATED, {"MEDICAL_RECORD_NUMBER": 1})
    assert health.action is Action.ROUTE_LOCAL and health.rule == "classes.regulated"
    finance = load_policy("finance")
    card = finance.evaluate(finance.classify(DataClass.PUBLIC, ["CREDIT_CARD"]),
                            {"CREDIT_CARD": 1})
    assert card.action is Action.PSEUDONYMISE and card.pseudonymises("CREDIT_CARD")
    creds = finance.evaluate(DataClass.CONFIDENTIAL, {"API_KEY": 1, "CREDIT_CARD": 1})
    assert creds.action is Action.BLOCK and creds.rule == "entities.API_KEY"
    eu = load_policy("eu-residency").evaluate(DataClass.CONFIDENTIAL, {"EMAIL_ADDRESS": 1})
    assert eu.action is Action.ALLOW and eu.constrained


@pytest.mark.parametrize(("raw", "expected"), [
    ({"name": "p", "classes": {"regulated": {"action": "route-local", "hosting": ["cloud"]}}},
     'rule "classes.regulated": Value error, route-local allows only local'),
    ({"name": "p", "classes": {"regulated": {"action": "erase"}}},
     'rule "classes.regulated", field "action"'),
    ({"name": "p", "classes": {"secret": {"action": "allow"}}}, 'rule "classes.secret"'),
    ({"name": "p", "entities": {"api-key": {"action": "block"}}}, "upper snake case"),
    ({"name": "p", "keys": {"k1": {"classes": {"public": {"hosting": ["moon"]}}}}},
     'rule "keys.k1.classes.public", field "hosting.0"'),
    ({"name": "p", "tenants": {"a": {"keys": ["k"]}, "b": {"keys": ["k"]}}},
     "a key may belong to one tenant"),
    ({"name": "p", "classes": {"public": {"action": "allow", "reason": "x"}}},
     "'reason' applies only to action block"),
    ({"name": "p", "colour": "red"}, 'field "colour"'),
    ({"classes": {}}, 'field "name"'),
])
def test_policy_errors_name_rule_and_field(raw: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        policy_from_dict(raw, source="my.yaml")
    assert "my.yaml" in err.value.message and expected in err.value.message


def test_policy_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown ready policy 'hipaa'"):
        load_policy("hipaa")
    bad = tmp_path / "p.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_policy(bad)
    with pytest.raises(ConfigError, match="cannot read policy"):
        load_policy(tmp_path / "missing.yaml")
    good = tmp_path / "mine.yaml"
    good.write_text("name: mine\nclasses:\n  regulated: {action: block}\n")
    assert load_policy(str(good)).classes[DataClass.REGULATED].action is Action.BLOCK


def test_config_policy_section_is_validated() -> None:
    cfg = _config(policy="finance")
    assert cfg.policy == "finance"
    bad = _config(policy={"name": "x", "classes": {"regulated": {"action": "nope"}}})
    with pytest.raises(ConfigError) as err:  # checked (and parsed, once) by the service
        ChatService(bad)
    assert 'field "policy"' in err.value.message
    assert 'rule "classes.regulated", field "action"' in err.value.message


def test_policy_env_overrides_and_none_disables() -> None:
    cfg = _config(policy="finance")
    det = RegexDetector()
    assert guard_from_config(_config(), env={}, detector=det) is None
    assert guard_from_config(cfg, env={}, detector=det).policy.name == "finance"  # type: ignore[union-attr]
    env_guard = guard_from_config(cfg, env={"MODELMIX_POLICY": "healthcare"}, detector=det)
    assert env_guard is not None and env_guard.policy.name == "healthcare"
    assert guard_from_config(cfg, env={"MODELMIX_POLICY": "none"}, detector=det) is None


# -- rule combination ------------------------------------------------------------------------

_LAYERED: dict[str, Any] = {
    "name": "layered",
    "classes": {"confidential": {"action": "allow", "regions": ["eu-*"]},
                "regulated": {"action": "route-local"}},
    "entities": {"API_KEY": {"action": "block", "reason": "no keys"},
                 "CREDIT_CARD": {"action": "pseudonymise", "entities": ["CREDIT_CARD"]}},
    "tags": {"secret": {"action": "route-local", "hosting": ["local"]},
             "loose": {"action": "allow"}},
    "keys": {"trusted": {"classes": {"regulated": {"action": "allow", "tiers": ["open"]}}}},
    "tenants": {"acme": {"keys": ["k-acme"],
                         "entities": {"API_KEY": {"action": "route-local"}}}},
}


def test_strictest_action_wins_and_scopes_intersect() -> None:
    policy = policy_from_dict(_LAYERED)
    v = policy.evaluate(DataClass.CONFIDENTIAL, {"CREDIT_CARD": 1}, tags=["secret"])
    assert v.action is Action.ROUTE_LOCAL and v.rule == "tags.secret"
    assert v.rules == ("classes.confidential", "entities.CREDIT_CARD", "tags.secret")
    assert v.pseudonymising and v.pseudonymise == frozenset({"CREDIT_CARD"})
    blocked = policy.evaluate(DataClass.CONFIDENTIAL, {"API_KEY": 1})
    assert blocked.action is Action.BLOCK and blocked.reason == "no keys"


def test_tags_only_tighten() -> None:
    policy = policy_from_dict(_LAYERED)
    v = policy.evaluate(DataClass.REGULATED, {}, tags=["loose"])
    assert v.action is Action.ROUTE_LOCAL and v.constrained


def test_key_and_tenant_overrides() -> None:
    policy = policy_from_dict(_LAYERED)
    trusted = policy.evaluate(DataClass.REGULATED, {}, key_id="trusted")
    assert trusted.action is Action.ALLOW and trusted.rule == "keys.trusted.classes.regulated"
    acme = policy.evaluate(DataClass.PUBLIC, {"API_KEY": 1}, key_id="k-acme")
    assert acme.action is Action.ROUTE_LOCAL
    assert acme.rule == "tenants.acme.entities.API_KEY"
    assert policy.evaluate(DataClass.PUBLIC, {}).rule == "default"


def test_scope_refusals_name_the_limit() -> None:
    cfg = _config()
    v = load_policy("eu-residency").evaluate(DataClass.REGULATED, {"US_SSN": 1})
    refusals = {d.name: v.refuses(d) for d in cfg.deployments}
    assert refusals["cloud-eu"] is None and refusals["onprem-a"] is None
    assert "region us-east-1 not in" in str(refusals["cloud-us"])
    assert "no region set" in str(refusals["onprem-b"])
    assert all("not allowed" in str(r) for r in refusals.values() if r)


# -- tags and request texts ------------------------------------------------------------------


def test_request_tags() -> None:
    assert request_tags(["a", "b"], "c, d") == frozenset("abcd")
    assert request_tags(None, None) == frozenset()
    for body in ("a", [1], ["bad tag!"], [f"t{i}" for i in range(17)]):
        with pytest.raises(InvalidRequest):
            request_tags(body)


def test_every_text_is_scanned() -> None:
    req = ChatRequest.model_validate({
        "model": "m", "user": "u@example.org", "metadata": {"note": "n1"},
        "messages": [
            {"role": "system", "content": "sys", "name": "who"},
            {"role": "user", "content": [{"type": "text", "text": "part"},
                                         {"type": "image_url",
                                          "image_url": {"url": "data:x"}}]},
            {"role": "assistant", "tool_calls": [
                {"id": "c1", "type": "function",
                 "function": {"name": "lookup", "arguments": "{\"ssn\": \"x\"}"}}]},
            {"role": "tool", "tool_call_id": "c1", "content": "result"},
        ]})
    texts = request_texts(req)
    wanted = ["sys", "who", "part", "c1", "lookup", "{\"ssn\": \"x\"}", "result", "c1",
              "u@example.org", "note", "n1"]  # message names, call ids and dict keys too
    found = iter(texts)
    assert all(any(t == w for t in found) for w in wanted), texts  # in this order
    assert "data:x" not in texts and "system" not in texts and "image_url" not in texts


async def test_json_keys_are_cues_for_their_values() -> None:
    from modelmix.guard import load_detector

    service, fakes, sink = _service("finance", detector=load_detector())
    done = await service.complete(ChatRequest.model_validate({
        "model": "clouds", "messages": [{"role": "user", "content": "summarise the claim"}],
        "metadata": {"patient": "Eleanor Whitcombe", "ssn": SSN, "note": "Blue Cross"}}))
    sent = sent_text(fakes[done.deployment.name].calls[0])
    assert "Eleanor Whitcombe" not in sent and SSN not in sent and "<PERSON_1>" in sent
    assert "Blue Cross" in sent  # "note" is no cue
    audit = sink.records[0].audit
    assert audit is not None and audit.entities == {"PERSON": 1, "US_SSN": 1}


async def test_names_ids_and_keys_are_screened() -> None:
    service, fakes, _sink = _service("finance")
    for body in ({"messages": [{"role": "user", "name": KEY, "content": "hello"}]},
                 {"metadata": {KEY: "x"}},
                 {"foo": {"bar": {KEY: 1}}},
                 {"messages": [
                     {"role": "user", "content": "hi"},
                     {"role": "assistant", "tool_calls": [{"id": KEY, "type": "function",
                                                           "function": {"name": "f",
                                                                        "arguments": "{}"}}]},
                     {"role": "tool", "tool_call_id": KEY, "content": "ok"}]}):
        request = ChatRequest.model_validate(
            {"model": "clouds", "messages": [{"role": "user", "content": "hi"}], **body})
        with pytest.raises(PolicyDenied, match="API_KEY"):
            await service.complete(request)  # finance blocks credentials wherever they are
    assert not _received(fakes)
    done = await service.complete(ChatRequest.model_validate({
        "model": "clouds", "messages": [{"role": "user", "content": "hi"}],
        "metadata": {f"card {CARD}": "x"}}))
    sent = fakes[done.deployment.name].calls[0]
    assert CARD not in sent_text(sent) and "card <CREDIT_CARD_1>" in sent_text(sent)


async def test_tools_schemas_stop_and_tool_choice_are_screened() -> None:
    tool = {"type": "function", "function": {
        "name": "lookup", "description": f"use key {KEY}",
        "parameters": {"type": "object", "properties": {
            "id": {"type": "string", "description": f"patient ssn {SSN}"}}}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "out", "schema": {
        "type": "object", "description": f"mail {EMAIL}"}}}
    req = _chat("hello", tools=[tool], response_format=fmt, stop=[f"card {CARD}"],
                tool_choice={"type": "function", "function": {"name": "lookup"}})
    assert {f"use key {KEY}", f"patient ssn {SSN}", f"mail {EMAIL}",
            f"card {CARD}"} <= set(request_texts(req))
    service, fakes, _sink = _service("finance")
    with pytest.raises(PolicyDenied, match="API_KEY"):
        await service.complete(req)  # the finance policy blocks credentials wherever they are
    assert not _received(fakes)
    done = await service.complete(_chat("hello", stop=[f"card {CARD}"], model="clouds"))
    sent = fakes[done.deployment.name].calls[0]
    assert sent.stop == ["card <CREDIT_CARD_1>"]


# -- enforcement in the service ---------------------------------------------------------------


async def test_block_never_calls_upstream_and_never_echoes_values() -> None:
    service, fakes, sink = _service("finance")
    with pytest.raises(PolicyDenied) as err:
        await service.complete(_chat(f"use key {KEY} for card {CARD}"))
    exc = err.value
    assert exc.status_code == 403 and exc.code == "data_policy_blocked"
    assert "entities.API_KEY" in exc.message and "API_KEY x1" in exc.message
    assert KEY not in exc.message and CARD not in exc.message
    assert not _received(fakes)
    (rec,) = sink.records
    assert rec.status_code == 403 and rec.audit is not None
    assert (rec.audit.action, rec.audit.rule) == ("block", "entities.API_KEY")
    assert rec.audit.entities == {"API_KEY": 1, "CREDIT_CARD": 1}
    assert KEY not in json.dumps(rec.to_dict())


async def test_route_local_keeps_regulated_data_on_premises_across_fallbacks() -> None:
    config = _config()
    fakes: dict[str, Any] = {d.name: EchoProvider(d) for d in config.deployments}
    fakes["onprem-a"] = FakeProvider(config.deployment("onprem-a"), fail_times=9,
                                     error=UpstreamUnavailable("down", deployment="onprem-a"))
    service, _, sink = _service("healthcare", providers=fakes)
    done = await service.complete(_chat(f"patient ssn {SSN}"))
    assert done.deployment.name == "onprem-b"
    assert [a.deployment for a in done.attempts] == ["onprem-a", "onprem-a", "onprem-b"]
    assert set(_received(fakes)) == {"onprem-a", "onprem-b"}
    assert done.decision.excluded.keys() == {"cloud-us", "cloud-eu"}
    audit = sink.records[0].audit
    assert audit is not None and audit.forbidden == ["cloud-us", "cloud-eu"]
    assert (audit.data_class, audit.action) == ("regulated", "route-local")


async def test_route_local_with_only_clouds_is_policy_denied() -> None:
    service, fakes, sink = _service("healthcare")
    with pytest.raises(PolicyDenied) as err:
        await service.complete(_chat(f"ssn {SSN}", model="clouds"))
    assert err.value.status_code == 403 and SSN not in err.value.message
    assert "hosting cloud not in" in err.value.message
    assert not _received(fakes)
    assert sink.records[0].status_code == 403


async def test_public_data_is_not_restricted() -> None:
    service, _fakes, sink = _service("healthcare")
    done = await service.complete(_chat("what is 2 + 2?"))
    assert done.deployment.name == "cloud-us"
    audit = sink.records[0].audit
    assert audit is not None and (audit.data_class, audit.action) == ("public", "allow")
    assert audit.entities == {} and audit.rule == "classes.public"


async def test_pseudonymise_sends_placeholders_and_restores_answer() -> None:
    service, fakes, sink = _service("finance")
    text = f"card {CARD} again {CARD}, mail {EMAIL}"
    done = await service.complete(_chat(text))
    assert done.deployment.name == "cloud-us"
    sent = fakes["cloud-us"].calls[0].messages[0].content
    assert sent == "card <CREDIT_CARD_1> again <CREDIT_CARD_1>, mail <EMAIL_ADDRESS_1>"
    assert done.response.text == text  # the echo, restored
    audit = sink.records[0].audit
    assert audit is not None and audit.pseudonymised == 2


async def test_pseudonymise_stream_restores_answer() -> None:
    service, fakes, _ = _service("finance")
    text = f"card {CARD} and ssn {SSN}"
    started = await service.stream(_chat(text, stream=True))
    parts = [c.text async for c in started.chunks]
    await started.aclose()
    assert "".join(parts) == text
    assert CARD not in _received(fakes)["cloud-us"]


async def test_card_split_across_messages_is_pseudonymised_in_both() -> None:
    from modelmix.guard import load_detector

    service, fakes, sink = _service("finance", detector=load_detector())
    first, second = "my card number is 4111 1111", "1111 1111 - what is its network?"
    request = ChatRequest.model_validate({"model": "clouds", "messages": [
        {"role": "user", "content": first}, {"role": "user", "content": second}]})
    done = await service.complete(request)
    sent = [m.content for m in fakes[done.deployment.name].calls[0].messages]
    assert sent == ["my card number is <CREDIT_CARD_1>",
                    "<CREDIT_CARD_2> - what is its network?"]
    assert done.response.text == second  # the echo of the last message, restored
    audit = sink.records[0].audit
    assert audit is not None and audit.entities == {"CREDIT_CARD": 2}


async def test_send_raw_to_keeps_raw_values_for_local_deployments() -> None:
    policy = {"name": "p", "classes": {"regulated": {
        "action": "pseudonymise", "send_raw_to": {"hosting": ["self-hosted"]}}}}
    service, fakes, _ = _service(policy)
    await service.complete(_chat(f"ssn {SSN}", model="onprem-a"))
    await service.complete(_chat(f"ssn {SSN}", model="cloud-eu"))
    got = _received(fakes)
    assert SSN in got["onprem-a"] and SSN not in got["cloud-eu"]


async def test_upstream_error_echoing_prompt_is_scrubbed() -> None:
    config = _config()
    dep = config.deployment("onprem-a")
    echo_error = UpstreamUnavailable(f"onprem-a: bad input 'ssn {SSN}'", deployment="onprem-a")
    fakes: dict[str, Any] = {d.name: FakeProvider(d, fail_times=9, error=echo_error)
                             for d in config.deployments}
    fakes["onprem-a"] = FakeProvider(dep, fail_times=9, error=echo_error)
    service, _, sink = _service("healthcare", providers=fakes)
    with pytest.raises(UpstreamUnavailable) as err:
        await service.complete(_chat(f"ssn {SSN}", model="onprem-a"))
    assert SSN not in err.value.message and "<US_SSN_1>" in err.value.message
    rec = sink.records[0]
    assert rec.error is not None and SSN not in rec.error


async def test_kept_prompt_and_response_are_scrubbed() -> None:
    service, _, sink = _service("finance", store={"keep_prompts": True,
                                                  "keep_responses": True, "enabled": False})
    await service.complete(_chat(f"ssn {SSN}"))
    rec = sink.records[0]
    assert rec.prompt == "ssn <US_SSN_1>" and rec.response == "ssn <US_SSN_1>"


async def test_detection_failure_fails_closed() -> None:
    service, fakes, sink = _service("healthcare", detector=BrokenDetector())
    with pytest.raises(PolicyDenied) as err:
        await service.complete(_chat("hello"))
    assert err.value.code == "data_detection_failed" and "RuntimeError" in err.value.message
    assert not _received(fakes)
    audit = sink.records[0].audit
    assert audit is not None and audit.rule == "detection-error"


async def test_tags_from_context_tighten() -> None:
    service, _fakes, sink = _service("eu-residency")
    done = await service.complete(_chat("nothing personal"),
                                  CallContext(tags=frozenset({"eu-personal-data"})))
    assert done.deployment.name == "cloud-eu"
    audit = sink.records[0].audit
    assert audit is not None and audit.tags == ["eu-personal-data"]


def test_no_policy_means_no_guard() -> None:
    service = ChatService(_config(), providers={})
    assert service.guard is None


# -- audit storage ---------------------------------------------------------------------------


def _audited(request_id: str, **audit: Any) -> UsageRecord:
    fields = {"policy": "p", "data_class": "regulated", "action": "block", "rule": "r",
              "entities": {"US_SSN": 2}, **audit}
    return UsageRecord(request_id=request_id, created_at=time.time(), status_code=403,
                       audit=AuditRecord(**fields))


@pytest.fixture(params=["sqlite", "postgres"])
def audit_db(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A usage database URL: SQLite, and PostgreSQL as the store tests get it."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'u.db'}"
    return str(request.getfixturevalue("pg_url"))


def test_audit_rows_stored_with_usage(audit_db: str) -> None:
    url = audit_db
    store = UsageStore(url)
    store.create_all()
    plain = UsageRecord(request_id="r0", created_at=time.time())
    allowed = _audited("r2", action="allow", data_class="public", entities={})
    allowed.status_code = 200
    local = _audited("r3", action="route-local")  # 403: no local deployment could take it
    blocked = _audited("r1")
    store.insert_many([plain, blocked, allowed, local])
    with AuditStore(url) as audit:
        rows = {r.request_id: r for r in audit.rows()}
        assert sorted(rows) == ["r1", "r2", "r3"]  # r0 was not screened: no audit row
        assert rows["r1"].entities == {"US_SSN": 2} and rows["r1"].status_code == 403
        assert [r.request_id for r in audit.rows(action="block")] == ["r1"]
        summary = {tuple(s.group.values()): (s.requests, s.blocked, s.entities)
                   for s in audit.summary()}
        assert summary == {("regulated", "block"): (1, 1, 2), ("public", "allow"): (1, 0, 0),
                           ("regulated", "route-local"): (1, 1, 2)}
    store.close()


def test_audit_survives_the_spill_file() -> None:
    rec = _audited("r1", forbidden=["a"])
    back = UsageRecord(**json.loads(json.dumps(rec.to_dict())))
    assert back.audit == rec.audit


def test_audit_cli(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'u.db'}"
    store = UsageStore(url)
    store.create_all()
    store.insert_many([_audited("req-blocked"), _audited("req-ok", action="allow")])
    store.close()
    runner = CliRunner()
    out = runner.invoke(cli_app, ["audit", "--db", url, "--action", "block", "--json"])
    assert out.exit_code == 0, out.output
    rows = json.loads(out.output)
    assert [r["request_id"] for r in rows] == ["req-blocked"]
    table = runner.invoke(cli_app, ["audit", "--db", url, "--summary"])
    assert table.exit_code == 0 and "regulated" in table.output
    missing = runner.invoke(cli_app, ["audit", "--db", f"sqlite:///{tmp_path / 'no.db'}"])
    assert missing.exit_code == 2 and "no usage database" in missing.output


# -- the gateway -----------------------------------------------------------------------------


def test_gateway_block_tags_and_audit(tmp_path: Path) -> None:
    service, fakes, sink = _service("eu-residency")
    with serve_app(create_app(service=service)) as url, httpx.Client(base_url=url) as http:
        blocked = http.post("/v1/chat/completions", json={
            "model": "all", "messages": [{"role": "user", "content": f"key {KEY}"}]})
        tagged = http.post("/v1/chat/completions", json={
            "model": "all", "tags": ["eu-personal-data"],
            "messages": [{"role": "user", "content": "hi"}]})
        header = http.post("/v1/chat/completions", headers={"x-modelmix-tags": "eu-personal-data"},
                           json={"model": "all", "messages": [{"role": "user", "content": "x"}]})
        bad = http.post("/v1/chat/completions", json={
            "model": "all", "tags": "nope", "messages": [{"role": "user", "content": "x"}]})
    assert blocked.status_code == 403
    err = blocked.json()["error"]
    assert err["type"] == "policy_error" and err["code"] == "data_policy_blocked"
    assert KEY not in blocked.text
    assert tagged.status_code == 200 and tagged.headers["x-modelmix-deployment"] == "cloud-eu"
    assert header.headers["x-modelmix-deployment"] == "cloud-eu"
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "tags"
    assert all("tags" not in (c.model_extra or {}) for f in fakes.values() for c in f.calls)
    audits = [r.audit for r in sink.records if r.audit is not None]
    assert [a.action for a in audits] == ["block", "allow", "allow"]


def test_policy_type_is_exported() -> None:
    assert isinstance(load_policy("finance"), Policy)


async def test_long_requests_are_scanned_in_a_thread() -> None:
    config = _config()
    fakes = {d.name: EchoProvider(d) for d in config.deployments}
    guard = Guard(load_policy("healthcare"), RegexDetector())  # in_thread by default
    service = ChatService(config, providers=fakes, guard=guard)
    done = await service.complete(_chat("filler " * 600 + f"ssn {SSN}"))
    assert done.deployment.name == "onprem-a"
    assert not fakes["cloud-us"].calls


def test_guard_policy_cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MODELMIX_POLICY", raising=False)
    catalog = tmp_path / "catalog.yaml"
    catalog.write_text("deployments:\n"
                       "  - {name: gpt, provider: openai, model: g, region: us-east-1}\n"
                       "  - {name: onprem, provider: vllm, base_url: 'http://10.0.0.5/v1',"
                       " model: m}\n")
    runner = CliRunner()
    shown = runner.invoke(cli_app, ["guard", "policy", "finance"])
    assert shown.exit_code == 0 and json.loads(shown.output)["name"] == "finance"
    decided = runner.invoke(cli_app, ["guard", "policy", "healthcare", "-c", str(catalog),
                                      "--text", "patient MRN: 12345678"])
    assert decided.exit_code == 0, decided.output
    assert "action route-local" in decided.output and "12345678" not in decided.output
    assert "hosting cloud" in decided.output and "[local" in decided.output  # not markup
    none = runner.invoke(cli_app, ["guard", "policy", "-c", str(catalog)])
    assert none.exit_code == 2 and "no policy" in none.output


def test_guard_ner_setting_builds_the_presidio_detector() -> None:
    from modelmix.guard import guard_from_config

    guard = guard_from_config(_config(policy="healthcare", guard_ner="presidio"), env={})
    assert guard is not None and guard.detector.config.ner == "presidio"  # type: ignore[attr-defined]
    plain = guard_from_config(_config(policy="healthcare"), env={})
    assert plain is not None and plain.detector.config.ner == "none"  # type: ignore[attr-defined]
