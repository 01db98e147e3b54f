"""Systems of models: spec errors, the DAG runner (concurrency, streaming, cancellation,
failures), policy inside systems, and the gateway speaking ``model: "system/<name>"``."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

from _servers import serve_app
from modelmix.catalog import Config, config_from_dict, load_config
from modelmix.engine import CallContext, ChatService
from modelmix.errors import (
    ConfigError,
    NoDeployment,
    PermissionDenied,
    PolicyDenied,
    ProviderBadRequest,
    StepFailed,
    StepTimeout,
)
from modelmix.protocol import ChatRequest
from modelmix.server import create_app
from modelmix.testing import FakeProvider, ListSink

LOCAL = {"name": "local", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m", "hosting": "local", "tier": "open"}
CLOUD = {"name": "cloud", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "c", "hosting": "cloud", "tier": "proprietary",
         "input_cost_per_mtok": 1.0, "output_cost_per_mtok": 2.0}
KEYLESS = {"name": "keyless", "provider": "openai", "model": "gpt-4.1",
           "api_key_env": "MODELMIX_TEST_NO_SUCH_KEY", "tier": "proprietary"}


def _config(systems: dict[str, Any], **extra: Any) -> Config:
    return config_from_dict({"deployments": [LOCAL, CLOUD, KEYLESS], "systems": systems,
                             **extra}, source="cat.yaml")


def _echo(name: str) -> Any:
    return lambda req: f"{name}: {req.messages[-1].text()}"


def _service(cfg: Config, sink: ListSink | None = None, **fakes: FakeProvider) -> ChatService:
    providers = {"local": FakeProvider(cfg.deployment("local"), reply=_echo("local")),
                 "cloud": FakeProvider(cfg.deployment("cloud"), reply=_echo("cloud")),
                 **fakes}
    return ChatService(cfg, providers=providers, usage=sink)


def _ask(text: str, model: str = "system/s", **kw: Any) -> ChatRequest:
    return ChatRequest(model=model, messages=[{"role": "user", "content": text}], **kw)


# -- spec errors -----------------------------------------------------------------------


@pytest.mark.parametrize(("steps", "expected"), [
    ({"a": {"kind": "model", "model": "nope"}},
     'cat.yaml: system "s", step "a", field "model": unknown deployment or group \'nope\''),
    ({"a": {"kind": "model", "model": "local", "messages": [
        {"role": "user", "content": "{{ b.text }}"}]},
      "b": {"kind": "model", "model": "local", "messages": [
          {"role": "user", "content": "{{ a.text }}"}]}},
     'cat.yaml: system "s": field "steps": cycle a -> b -> a'),
    ({"a": {"kind": "model", "model": "local", "when": "ghost.ok"}},
     'cat.yaml: system "s", step "a", field "when": reads \'ghost\', which is neither input '
     "nor a step of this system"),
    ({"a": {"kind": "teleport"}},
     'cat.yaml: system "s", step "a", field "kind": unknown kind \'teleport\'; known: '
     "cascade, classify, guard, model, read, tool, transform, verify"),
    ({"a": {"kind": "model", "model": "local", "temprature": 0.2}},
     'cat.yaml: system "s", step "a", field "temprature": Extra inputs are not permitted'),
    ({"a": {"kind": "model", "model": "local", "when": "a.ok and ("}},
     'cat.yaml: system "s", step "a", field "when": unexpected \'end of template\''),
    ({"a": {"kind": "verify", "answer": "b", "verifier": "rules"}},
     'cat.yaml: system "s", step "a", field "answer": unknown step \'b\''),
    ({"a": {"kind": "tool", "call": "os.path:no_such_function"}},
     'cat.yaml: system "s", step "a", field "call": \'os.path\' has no callable'),
    ({"a": {"kind": "guard"}},
     'cat.yaml: system "s", step "a", field "policy": a guard step needs a policy'),
    ({"input": {"kind": "model", "model": "local"}},
     'cat.yaml: system "s", step "input": step names are lower-case identifiers'),
])
def test_bad_specs_fail_at_load_naming_file_system_step_and_field(
        steps: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        ChatService(_config({"s": {"steps": steps}}))
    assert expected in err.value.message


def test_a_misread_step_names_the_field_that_reads_it() -> None:
    with pytest.raises(ConfigError, match='step "t", field "template": reads \'drat\''):
        ChatService(_config({"s": {"steps": {
            "a": {"kind": "model", "model": "local"},
            "t": {"kind": "transform", "template": "x {{ drat.text }}"}}}}))
    with pytest.raises(ConfigError, match=r"field \"messages\.0\.content\": reads 'drat'"):
        ChatService(_config({"s": {"steps": {"a": {"kind": "model", "model": "local",
            "messages": [{"role": "user", "content": "{{ drat.text }}"}]}}}}))


def test_an_output_step_must_produce_text_and_exist() -> None:
    steps = {"g": {"kind": "classify", "by": "rules", "labels": {"x": "true"},
                   "default": "y"}}
    with pytest.raises(ConfigError, match='field "output": step \'g\' is a classify step'):
        ChatService(_config({"s": {"steps": steps}}))
    with pytest.raises(ConfigError, match='field "output": unknown step \'zz\''):
        ChatService(_config({"s": {"steps": {"a": {"kind": "model", "model": "local"}},
                                   "output": "zz"}}))


def test_cli_exits_2_on_a_bad_spec(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    cat = tmp_path / "cat.yaml"
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "systems": {"s": {"steps": {
        "a": {"kind": "model", "model": "local", "after": ["a"]}}}}}))
    result = CliRunner().invoke(app, ["chat", "-m", "system/s", "hi", "--config", str(cat)])
    assert result.exit_code == 2
    assert f'{cat}: system "s", step "a", field "after": a step cannot depend on itself' \
        in result.output.replace("\n", " ")


def test_cli_lists_systems_and_refuses_bad_ones(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    result = CliRunner().invoke(app, ["systems"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "system/healthcare-triage" in result.output
    assert "safety (verify, after draft)" in result.output
    cat = tmp_path / "cat.yaml"
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "systems": {"s": {"steps": {
        "a": {"kind": "model", "model": "local", "when": "zz.ok"}}}}}))
    result = CliRunner().invoke(app, ["systems", "--config", str(cat)])
    assert result.exit_code == 2
    assert 'step "a", field "when": reads \'zz\'' in result.output.replace("\n", " ")


def test_systems_files_are_included_relative_to_the_catalog(tmp_path: Path) -> None:
    (tmp_path / "systems").mkdir()
    (tmp_path / "systems" / "one.yaml").write_text(yaml.safe_dump({"systems": {
        "one": {"steps": {"a": {"kind": "model", "model": "local"}}}}}))
    cat = tmp_path / "cat.yaml"
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "include_systems": ["systems"],
                                   "systems": {"one": {"steps": {}}}}))
    with pytest.raises(ConfigError, match="system \"one\" is already defined in"):
        ChatService(load_config(cat))
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "include_systems": ["systems"]}))
    assert ChatService(load_config(cat)).systems.model_names() == ["system/one"]
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "include_systems": ["nowhere"]}))
    with pytest.raises(ConfigError, match='field "include_systems": \'nowhere\': no such'):
        ChatService(load_config(cat))


def test_the_embedded_default_ships_the_blueprints() -> None:
    names = ChatService(load_config()).systems.model_names()
    assert "system/healthcare-triage" in names


# -- running ---------------------------------------------------------------------------


async def test_a_pipeline_records_every_step_and_answers_with_the_output() -> None:
    cfg = _config({"s": {"steps": {
        "draft": {"kind": "model", "model": "local"},
        "polish": {"kind": "model", "model": "cloud", "messages": [
            {"role": "user", "content": "improve: {{ draft.text }}"}]},
        "check": {"kind": "verify", "answer": "polish", "verifier": {
            "name": "rules", "checks": {"mentions_local": "'local' in answer"}}},
        "reply": {"kind": "transform", "template": "{{ polish.text }} [{{ check.verdict }}]"},
    }}})
    sink = ListSink()
    ctx = CallContext()
    done = await _service(cfg, sink).complete(_ask("hi"), ctx)
    assert done.response.text == "cloud: improve: local: hi [accept]"
    assert done.system is not None
    assert done.system.steps == "draft:local,polish:cloud,check:-,reply:-"
    assert done.deployment.name == "cloud" and done.response.model == "system/s"
    envelope = sink.records[-1]
    steps = {r.step: r for r in sink.records if r.parent_id == ctx.request_id}
    assert envelope.request_id == ctx.request_id and envelope.system == "s"
    assert envelope.step is None and envelope.cost_usd == 0 and envelope.deployment is None
    assert set(steps) == {"draft", "polish", "check"}
    assert steps["polish"].deployment == "cloud" and steps["polish"].cost_usd > 0
    assert steps["check"].verdict == "accept"
    assert done.cost_usd == pytest.approx(sum(r.cost_usd for r in sink.records))
    assert done.response.usage is not None
    assert done.response.usage.prompt_tokens == 20  # two calls of 10 prompt tokens


async def test_independent_steps_run_concurrently() -> None:
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "b": {"kind": "model", "model": "cloud"},
        "join": {"kind": "transform", "template": "{{ a.text }} + {{ b.text }}"}}}})
    service = _service(cfg, local=FakeProvider(cfg.deployment("local"), reply="A",
                                               delay_s=0.4),
                       cloud=FakeProvider(cfg.deployment("cloud"), reply="B", delay_s=0.4))
    started = time.perf_counter()
    done = await service.complete(_ask("x"))
    elapsed = time.perf_counter() - started
    assert done.response.text == "A + B"
    assert elapsed < 0.7, f"independent steps took {elapsed:.2f} s (sequential: 0.8 s)"


async def test_when_conditions_choose_a_branch_and_output_takes_the_first_that_ran() -> None:
    cfg = _config({"s": {"steps": {
        "topic": {"kind": "classify", "by": "keywords", "default": "general",
                  "labels": {"billing": ["invoice", "refund"], "outage": ["down", "error"]}},
        "billing": {"kind": "model", "model": "local", "when": "topic.label == 'billing'"},
        "other": {"kind": "model", "model": "cloud", "when": "topic.label != 'billing'"}},
        "output": ["billing", "other"]}})
    service = _service(cfg)
    done = await service.complete(_ask("I want a refund for this invoice"))
    assert done.response.text.startswith("local:")
    assert done.system is not None and "other" not in done.system.steps
    assert "topic: billing" in done.decision.reason and "other: skipped" in done.decision.reason
    done = await service.complete(_ask("the site is down"))
    assert done.response.text.startswith("cloud:")


async def test_the_last_step_streams() -> None:
    cfg = _config({"s": {"steps": {
        "plan": {"kind": "model", "model": "local"},
        "final": {"kind": "model", "model": "cloud", "messages": [
            {"role": "user", "content": "write up: {{ plan.text }}"}]}}}})
    sink = ListSink()
    service = _service(cfg, sink)
    started = await service.stream(_ask("go", stream=True))
    assert started.system is not None and started.system.steps == "plan:local,final:cloud"
    texts = [c.text async for c in started.chunks]
    await started.aclose()
    assert len([t for t in texts if t]) > 3  # word by word, not one block
    assert "".join(texts) == "cloud: write up: local: go"
    assert started.cost_usd is not None and started.cost_usd > 0
    envelope = [r for r in sink.records if r.step is None]
    assert len(envelope) == 1 and envelope[0].stream and envelope[0].status_code == 200


async def test_a_non_model_output_streams_as_one_block() -> None:
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "b": {"kind": "transform", "template": "<{{ a.text }}>"}}}})
    started = await _service(cfg).stream(_ask("go", stream=True,
                                              stream_options={"include_usage": True}))
    chunks = [c async for c in started.chunks]
    await started.aclose()
    assert "".join(c.text for c in chunks) == "<local: go>"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 10


async def test_a_failing_step_fails_the_request_cleanly_and_is_recorded() -> None:
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "b": {"kind": "model", "model": "cloud", "after": ["a"]}}}})
    sink = ListSink()
    broken = FakeProvider(cfg.deployment("cloud"), fail_times=5,
                          error=ProviderBadRequest("bad thing", deployment="cloud"))
    with pytest.raises(ProviderBadRequest) as err:
        await _service(cfg, sink, cloud=broken).complete(_ask("x"))
    assert err.value.message.startswith("system s, step b: ")
    envelope = next(r for r in sink.records if r.step is None)
    assert envelope.status_code == 400 and envelope.error_type == "ProviderBadRequest"
    failed = next(r for r in sink.records if r.step == "b")
    assert failed.status_code == 400 and failed.parent_id == envelope.request_id


async def test_cancelling_a_system_cancels_its_running_steps() -> None:
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "b": {"kind": "model", "model": "cloud"},
        "c": {"kind": "transform", "template": "{{ a.text }}{{ b.text }}"}}}})
    sink = ListSink()
    slow_a = FakeProvider(cfg.deployment("local"), delay_s=5)
    slow_b = FakeProvider(cfg.deployment("cloud"), delay_s=5)
    service = _service(cfg, sink, local=slow_a, cloud=slow_b)
    task = asyncio.create_task(service.complete(_ask("x")))
    await asyncio.sleep(0.2)
    task.cancel()
    started = time.perf_counter()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert time.perf_counter() - started < 1
    codes = sorted((r.step or "", r.status_code) for r in sink.records)
    assert codes == [("", 499), ("a", 499), ("b", 499)]


async def test_tools_sync_async_and_timeouts() -> None:
    cfg = _config({"s": {"steps": {
        "size": {"kind": "tool", "call": "_system_tools:word_count",
                 "args": {"text": "{{ input.text }}"}},
        "slow": {"kind": "tool", "call": "_system_tools:slow_async",
                 "args": {"seconds": 0.01}, "timeout_s": 1},
        "a": {"kind": "model", "model": "local", "messages": [
            {"role": "user", "content": "{{ size.result.words }} words, {{ slow.text }}"}]}}}})
    done = await _service(cfg).complete(_ask("one two three"))
    assert done.response.text == "local: 3 words, done"
    cfg = _config({"s": {"steps": {
        "slow": {"kind": "tool", "call": "_system_tools:slow_async",
                 "args": {"seconds": 5}, "timeout_s": 0.1},
        "a": {"kind": "model", "model": "local", "after": ["slow"]}}}})
    with pytest.raises(StepTimeout, match="system s, step slow: tool did not finish"):
        await _service(cfg).complete(_ask("x"))
    cfg = _config({"s": {"steps": {
        "boom": {"kind": "tool", "call": "_system_tools:explode"},
        "a": {"kind": "model", "model": "local", "after": ["boom"]}}}})
    with pytest.raises(StepFailed, match="step boom: tool raised ValueError: kaboom"):
        await _service(cfg).complete(_ask("x"))


async def test_templates_run_sandboxed() -> None:
    cfg = _config({"s": {"steps": {
        "t": {"kind": "transform", "template": "{{ input.__class__.__mro__ }}"},
        "a": {"kind": "model", "model": "local", "input": "t"}}}})
    with pytest.raises(StepFailed, match="access to attribute '__class__' of 'dict' object "
                       "is unsafe"):
        await _service(cfg).complete(_ask("x"))
    cfg = _config({"s": {"steps": {
        "t": {"kind": "transform", "template": "{{ input.text * 1000000 }}"},
        "a": {"kind": "model", "model": "local", "input": "t"}}}})
    with pytest.raises(StepFailed, match=r"step t: template .*repetition longer than"):
        await _service(cfg).complete(_ask("x" * 10))


# -- cascades --------------------------------------------------------------------------


def _cascade(tiers: list[str]) -> Config:
    return _config({"s": {"cascade": {"tiers": tiers, "verifier": {
        "name": "rules", "checks": {"has_number": "answer is search('\\\\d')"}}}}})


async def test_a_cascade_escalates_only_when_verification_fails() -> None:
    cfg = _cascade(["local", "cloud"])
    sink = ListSink()
    service = _service(cfg, sink, local=FakeProvider(cfg.deployment("local"), reply=_echo("l")))
    done = await service.complete(_ask("what is 2 + 2"))  # the echo holds a digit
    assert done.system is not None and done.system.steps == "cascade:local"
    done = await service.complete(_ask("what is two plus two"))
    assert done.system is not None and done.system.steps == "cascade:local,cascade:cloud"
    assert "tier 0 (local) failed verification (failed has_number)" in done.decision.reason
    assert "last tier, answer UNVERIFIED" in done.decision.reason
    verdicts = [r.verdict for r in sink.records if r.verdict]
    assert verdicts == ["accept", "escalate", "escalate"]  # last tier kept, not accepted
    assert done.cost_usd > 0


async def test_a_cascade_without_keys_says_it_would_have_escalated() -> None:
    cfg = _cascade(["local", "keyless"])
    done = await _service(cfg).complete(_ask("what is two plus two"))
    assert done.response.text == "local: what is two plus two"
    assert ("could not escalate to keyless (no deployment for 'keyless' can serve requests "
            "in this configuration: no API key set): answered by tier 0, UNVERIFIED") \
        in done.decision.reason


# -- policy, keys and the gateway ------------------------------------------------------


async def test_a_system_policy_applies_to_every_model_step() -> None:
    cfg = _config({"s": {"policy": "healthcare", "steps": {
        "a": {"kind": "model", "model": "cloud"}}},
        "t": {"policy": "healthcare", "steps": {
            "phi": {"kind": "guard"},
            "a": {"kind": "model", "model": ["cloud", "local"]}}}})
    sink = ListSink()
    service = _service(cfg, sink)
    phi = "Patient Jane Roe, MRN 48213377, DOB 02/03/1961, has type 2 diabetes."
    with pytest.raises(PolicyDenied):
        await service.complete(_ask(phi))
    assert not service.providers["cloud"].calls  # type: ignore[attr-defined]
    done = await service.complete(_ask(phi, model="system/t"))
    assert done.deployment.name == "local"
    assert "phi: regulated" in done.decision.reason
    assert "would have used cloud" in done.decision.reason
    assert not service.providers["cloud"].calls  # type: ignore[attr-defined]
    audited = [r for r in sink.records if r.audit is not None]
    assert audited and all("Jane" not in (r.route_reason or "") for r in sink.records)


async def test_the_gateway_policy_applies_inside_systems() -> None:
    cfg = _config({"s": {"steps": {"a": {"kind": "model", "model": "cloud"}}}},
                  policy="finance")
    service = _service(cfg)
    done = await service.complete(_ask("Refund card 4111 1111 1111 1111 please"))
    sent = service.providers["cloud"].calls[-1]  # type: ignore[attr-defined]
    assert "4111" not in sent.messages[-1].text()
    assert "4111 1111 1111 1111" in done.response.text  # restored in the answer


async def test_keys_name_systems_and_unknown_systems_are_404() -> None:
    cfg = _config({"s": {"steps": {"a": {"kind": "model", "model": "cloud"}}}})
    service = _service(cfg)
    with pytest.raises(PermissionDenied):
        await service.complete(_ask("x"), CallContext(allowed_models=frozenset({"local"})))
    done = await service.complete(_ask("x"), CallContext(
        allowed_models=frozenset({"system/s"})))
    assert done.deployment.name == "cloud"  # a key granted a system may use its steps
    with pytest.raises(NoDeployment, match="no system named 'zz'"):
        await service.complete(_ask("x", model="system/zz"))


def test_the_gateway_serves_systems_to_the_openai_sdk() -> None:
    cfg = _config({"s": {"description": "two steps", "steps": {
        "draft": {"kind": "model", "model": "local"},
        "final": {"kind": "model", "model": "cloud", "messages": [
            {"role": "user", "content": "improve {{ draft.text }}"}]}}}})
    app = create_app(service=_service(cfg), auth=None, policy_env=False)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none")
        raw = client.chat.completions.with_raw_response.create(
            model="system/s", messages=[{"role": "user", "content": "hi"}])
        assert raw.headers["x-modelmix-system"] == "s"
        assert raw.headers["x-modelmix-steps"] == "draft:local,final:cloud"
        assert raw.headers["x-modelmix-deployment"] == "cloud"
        assert raw.parse().choices[0].message.content == "cloud: improve local: hi"
        stream = client.chat.completions.create(
            model="system/s", stream=True, messages=[{"role": "user", "content": "hi"}])
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices) == \
            "cloud: improve local: hi"
        models = {m.id for m in client.models.list()}
        assert "system/s" in models
        bad = httpx.post(f"{url}/v1/chat/completions", json={
            "model": "system/zz", "messages": [{"role": "user", "content": "hi"}]})
        assert bad.status_code == 404
        assert bad.json()["error"]["code"] == "model_not_found"


async def test_a_judge_grades_answers_against_a_rubric() -> None:
    cfg = _config({"s": {"steps": {
        "draft": {"kind": "model", "model": "local"},
        "grade": {"kind": "verify", "answer": "draft", "verifier": {
            "name": "judge", "model": "cloud", "rubric": "Is it polite?", "min_grade": 7}}}}})
    for reply, ok in (("8", True), ("Grade: 3", False), ("excellent", False)):
        judge = FakeProvider(cfg.deployment("cloud"), reply=reply)
        done = await _service(cfg, cloud=judge).complete(_ask("hello"))
        assert done.system is not None and done.system.steps == "draft:local,grade:cloud"
        assert ("grade: accept" in done.decision.reason) is ok
        sent = judge.calls[-1]
        assert "Is it polite?" in sent.messages[-1].text() and sent.max_tokens == 8
        assert "local: hello" in sent.messages[-1].text()


async def test_self_consistency_samples_the_model_and_votes() -> None:
    cfg = _config({"s": {"steps": {
        "draft": {"kind": "model", "model": "local"},
        "vote": {"kind": "verify", "answer": "draft", "verifier": {
            "name": "self-consistency", "model": "local", "k": 4, "agreement": 0.75}}},
        "output": "vote"}})
    steady = FakeProvider(cfg.deployment("local"), reply="so #### 42")
    done = await _service(cfg, local=steady).complete(_ask("q"))
    assert "vote: accept (4 of 4 samples agree)" in done.decision.reason
    assert len(steady.calls) == 5 and steady.calls[-1].temperature == 0.7
    answers = iter(["#### 42", "#### 42", "#### 41", "#### 40", "#### 42"])
    shaky = FakeProvider(cfg.deployment("local"), reply=lambda _: next(answers))
    done = await _service(cfg, local=shaky).complete(_ask("q"))
    assert "vote: escalate (2 of 4 samples agree)" in done.decision.reason


async def test_json_schema_answers_get_one_repair_retry() -> None:
    schema = {"type": "object", "required": ["qty"], "properties": {"qty": {"type": "integer"}}}
    cfg = _config({"s": {"steps": {
        "draft": {"kind": "model", "model": "local"},
        "valid": {"kind": "verify", "answer": "draft", "repair": True,
                  "verifier": {"name": "json-schema", "schema": schema}}},
        "output": "valid"}})
    replies = iter(['{"qty": "three"}', '```json\n{"qty": 3}\n```'])
    local = FakeProvider(cfg.deployment("local"), reply=lambda _: next(replies))
    sink = ListSink()
    done = await _service(cfg, sink, local=local).complete(_ask("how many?"))
    assert done.response.text == '```json\n{"qty": 3}\n```'
    assert done.system is not None and done.system.steps == "draft:local,valid:local"
    repair = local.calls[-1].messages
    assert [m.role for m in repair] == ["user", "assistant", "user"]
    assert "qty" in repair[-1].text()  # the validation error goes back to the model
    assert [r.verdict for r in sink.records if r.verdict] == ["accept"]


def test_votes_compare_final_numbers_by_value() -> None:
    from modelmix.systems._verifiers import _final

    assert _final("so #### 100") != _final("the answer is 1")  # not "1" after stripping 0s
    assert _final("1,000.0 in total") == _final("#### 1000")
