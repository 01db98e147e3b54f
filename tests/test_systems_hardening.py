"""Regression tests for what an attack on systems of models found: values in records,
hidden dependencies, verifiers resending the caller's original, control characters in
headers, orphaned samples, stuck tool threads, key scope, deadlines and names."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from _servers import serve_app
from modelmix.catalog import config_from_dict, load_config
from modelmix.engine import CallContext, ChatService
from modelmix.errors import ConfigError, PolicyDenied, ProviderBadRequest, StepFailed
from modelmix.protocol import ChatRequest
from modelmix.server import create_app
from modelmix.testing import FakeProvider, ListSink
from test_systems import CLOUD, LOCAL, _ask, _config, _service

PHI = "Patient Jane Roe, MRN 48213377, DOB 02/03/1961, has type 2 diabetes. Advice?"


async def test_the_envelope_keeps_no_raw_prompt_and_records_no_raw_values() -> None:
    cfg = config_from_dict({"deployments": [LOCAL, CLOUD], "store": {"keep_prompts": True},
                            "systems": {"s": {"policy": "finance", "steps": {
                                "a": {"kind": "model", "model": "local"},
                                "check": {"kind": "verify", "answer": "a", "verifier": {
                                    "name": "arithmetic"}}}, "output": "a"}}})
    sink = ListSink()
    card = "4111 1111 1111 1111"
    service = _service(cfg, sink, local=FakeProvider(cfg.deployment("local"),
                                                     reply=f"#### {card.replace(' ', '')}"))
    ctx = CallContext()
    await service.complete(_ask(f"Which card is {card}? Reply with it."), ctx)
    for rec in sink.records:
        for text in (rec.prompt, rec.route_reason, rec.error, rec.response):
            assert "4111" not in (text or ""), (rec.step, text)
    envelope = next(r for r in sink.records if r.request_id == ctx.request_id)
    assert envelope.prompt is not None and "<CREDIT_CARD_1>" in envelope.prompt
    assert envelope.audit is not None and envelope.audit.entities == {"CREDIT_CARD": 1}


async def test_unknown_system_names_are_not_recorded_as_systems() -> None:
    sink = ListSink()
    service = _service(_config({"s": {"steps": {"a": {"kind": "model", "model": "local"}}}}),
                       sink)
    with pytest.raises(Exception, match="no system named"):
        await service.complete(_ask("x", model="system/" + "junk" * 100))
    assert sink.records[-1].system is None and sink.records[-1].status_code == 404


def test_names_read_by_classify_labels_and_rules_checks_are_dependencies() -> None:
    for steps in (
        {"c": {"kind": "classify", "by": "rules", "labels": {"x": "ghsot.ok"}, "default": "y"},
         "a": {"kind": "model", "model": "local"}},
        {"a": {"kind": "model", "model": "local"},
         "v": {"kind": "verify", "answer": "a", "verifier": {
             "name": "rules", "checks": {"c": "ghsot.ok and answer"}}}},
    ):
        with pytest.raises(ConfigError, match="reads 'ghsot'"):
            ChatService(_config({"s": {"steps": steps}}))
    service = ChatService(_config({"s": {"steps": {
        "slow": {"kind": "tool", "call": "_system_tools:slow_async", "args": {"seconds": 0.2}},
        "c": {"kind": "classify", "by": "rules", "labels": {"done": "slow.text == 'done'"},
              "default": "early"},
        "a": {"kind": "model", "model": "local", "messages": [
            {"role": "user", "content": "{{ c.label }}"}]}}}}))
    assert service.systems.systems["s"].nodes["c"].deps == {"slow"}


async def test_verifiers_see_what_the_step_sent_not_the_callers_original() -> None:
    secret = "Project NIGHTJAR launches on May 3"
    cfg = _config({"s": {"steps": {
        "redact": {"kind": "transform", "template": "Summarise a product launch."},
        "draft": {"kind": "model", "model": "cloud", "input": "redact"},
        "grade": {"kind": "verify", "answer": "draft", "verifier": {
            "name": "judge", "model": "cloud"}},
        "vote": {"kind": "verify", "answer": "draft", "verifier": {
            "name": "self-consistency", "model": "cloud", "k": 2}}},
        "output": "draft"}})
    cloud = FakeProvider(cfg.deployment("cloud"), reply="7")
    await _service(cfg, cloud=cloud).complete(_ask(secret))
    assert len(cloud.calls) == 4  # the draft, the judge, two samples
    for sent in cloud.calls:
        assert "NIGHTJAR" not in " ".join(m.text() for m in sent.messages)


def test_control_characters_never_reach_headers() -> None:
    schema = {"type": "object", "additionalProperties": {"type": "integer"}}
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "v": {"kind": "verify", "answer": "a", "verifier": {"name": "json-schema",
                                                           "schema": schema}}},
        "output": "a"}})
    local = FakeProvider(cfg.deployment("local"), reply='{"bad\\r\\nkey\\u0000": "x"}')
    with serve_app(create_app(service=_service(cfg, local=local), auth=None,
                              policy_env=False)) as url:
        resp = httpx.post(f"{url}/v1/chat/completions", json={
            "model": "system/s", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 200
    reason = resp.headers["x-modelmix-route-reason"]
    assert "v: escalate" in reason and "\r" not in reason and "\n" not in reason


async def test_a_failing_sample_cancels_the_other_samples() -> None:
    cfg = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "vote": {"kind": "verify", "answer": "a", "verifier": {
            "name": "self-consistency", "model": "cloud", "k": 4}}}, "output": "a"}})
    calls = {"n": 0}

    def reply(_: ChatRequest) -> str:
        calls["n"] += 1
        return "#### 1"

    slow = FakeProvider(cfg.deployment("cloud"), reply=reply, fail_times=1,
                        error=ProviderBadRequest("no", deployment="cloud"))
    fast_fail = ChatService(cfg, providers={
        "local": FakeProvider(cfg.deployment("local")), "cloud": slow})
    started = time.perf_counter()

    async def delayed(request: ChatRequest) -> Any:
        if slow.fail_times == 0:  # the first sample fails at once, the others take 0.5 s
            await asyncio.sleep(0.5)
        return await FakeProvider.complete(slow, request)

    slow.complete = delayed  # type: ignore[method-assign]
    with pytest.raises(ProviderBadRequest):
        await fast_fail.complete(_ask("q"))
    await asyncio.sleep(0.7)
    assert time.perf_counter() - started < 2
    assert calls["n"] == 0  # the three other samples were cancelled, never answered


async def test_stuck_sync_tools_fail_fast_and_keep_their_own_threads() -> None:
    cfg = _config({"s": {"steps": {
        "stuck": {"kind": "tool", "call": "_system_tools:block", "timeout_s": 0.05,
                  "max_workers": 2},
        "a": {"kind": "model", "model": "local", "after": ["stuck"]}}}})
    service = _service(cfg)
    import _system_tools

    _system_tools.RELEASE.clear()
    try:
        for _ in range(2):
            with pytest.raises(StepFailed, match="did not finish"):
                await service.complete(_ask("x"))
        with pytest.raises(StepFailed, match="all 2 tool workers are busy"):
            await service.complete(_ask("x"))
        started = time.perf_counter()
        await asyncio.to_thread(time.sleep, 0)  # the default executor is free
        assert time.perf_counter() - started < 0.5
    finally:
        _system_tools.RELEASE.set()


async def test_caller_hints_do_not_steer_steps_and_deadlines_bound_the_system() -> None:
    cfg = _config({"s": {"steps": {"a": {"kind": "model", "model": "auto"}}}},
                  router="cheapest")
    service = _service(cfg)
    ctx = CallContext(allowed_models=frozenset({"system/s"}))
    from modelmix.routing import RoutingHints

    ctx.hints = RoutingHints(min_quality=1.0)
    done = await service.complete(_ask("x"), ctx)
    assert done.deployment.name == "local"  # cheapest, whatever the caller's hints
    slow = _config({"s": {"steps": {
        "a": {"kind": "model", "model": "local"},
        "b": {"kind": "model", "model": "local", "after": ["a"]},
        "c": {"kind": "model", "model": "local", "after": ["b"]}}}})
    service = _service(slow, local=FakeProvider(slow.deployment("local"), delay_s=0.4))
    started = time.perf_counter()
    with pytest.raises(Exception, match="no answer within"):
        await service.complete(_ask("x", timeout=0.6))
    assert time.perf_counter() - started < 1.0


def test_included_names_and_jinja_globals_are_refused(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({"systems": {
        "bad name!": {"steps": {"a": {"kind": "model", "model": "local"}}}}}))
    cat = tmp_path / "cat.yaml"
    cat.write_text(yaml.safe_dump({"deployments": [LOCAL], "include_systems": ["s.yaml"]}))
    with pytest.raises(ConfigError, match="system name 'bad name!'"):
        ChatService(load_config(cat))
    for name in ("range", "self", "lipsum"):
        with pytest.raises(ConfigError, match="step names are lower-case identifiers"):
            ChatService(_config({"s": {"steps": {name: {"kind": "model", "model": "local"}}}}))


def test_systems_call_models_and_inputs_name_transforms() -> None:
    with pytest.raises(ConfigError, match="a system needs at least one model or cascade"):
        ChatService(_config({"s": {"steps": {"t": {"kind": "transform", "template": "x"}}}}))
    with pytest.raises(ConfigError, match="step 'a' is a model step; input names a transform"):
        ChatService(_config({"s": {"steps": {
            "a": {"kind": "model", "model": "local"},
            "b": {"kind": "model", "model": "local", "input": "a"}}}}))


async def test_the_system_requests_screening_binds_steps_that_rewrite_the_input() -> None:
    cfg = _config({"s": {"policy": "healthcare", "steps": {
        "a": {"kind": "model", "model": "cloud", "messages": [
            {"role": "user", "content": "{{ input.text | wordwrap(6) }}"}]}}}})
    service = _service(cfg)
    with pytest.raises(PolicyDenied):
        await service.complete(_ask(PHI))
    assert not service.providers["cloud"].calls  # type: ignore[attr-defined]


async def test_a_later_sample_failing_first_is_raised_and_recorded() -> None:
    cfg = _config({"s": {"steps": {
        "draft": {"kind": "model", "model": "local"},
        "vote": {"kind": "verify", "answer": "draft", "verifier": {
            "name": "self-consistency", "model": "cloud", "k": 3}}}, "output": "draft"}})
    calls = {"n": 0}
    cloud = FakeProvider(cfg.deployment("cloud"), reply="#### 1")

    async def second_fails(request: ChatRequest) -> Any:
        calls["n"] += 1
        if calls["n"] == 2:
            raise ProviderBadRequest("sample refused", deployment="cloud")
        await asyncio.sleep(0.5)
        return await FakeProvider.complete(cloud, request)

    cloud.complete = second_fails  # type: ignore[method-assign]
    sink = ListSink()
    ctx = CallContext()
    with pytest.raises(ProviderBadRequest, match="sample refused"):
        await _service(cfg, sink, cloud=cloud).complete(_ask("q"), ctx)
    envelope = next(r for r in sink.records if r.request_id == ctx.request_id)
    assert envelope.status_code == 400


async def test_long_texts_are_redacted_before_they_are_cut() -> None:
    cfg = _config({"s": {"steps": {
        "ip": {"kind": "tool", "call": "ipaddress:ip_address",
               "args": {"address": "{{ input.text }}"}},
        "a": {"kind": "model", "model": "local", "after": ["ip"]}}}}, policy="finance")
    sink = ListSink()
    ctx = CallContext()
    with pytest.raises(StepFailed):
        await _service(cfg, sink).complete(
            _ask("x" * 940 + " card 4111111111111111 was charged twice"), ctx)
    envelope = next(r for r in sink.records if r.request_id == ctx.request_id)
    assert envelope.error is not None and len(envelope.error) <= 1000
    assert "4111" not in envelope.error
