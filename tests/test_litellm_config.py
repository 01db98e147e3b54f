"""LiteLLM proxy configs: conversion, loading, the import command, and a real gateway.

Unit tests convert small LiteLLM configs (shapes from LiteLLM's proxy docs) and check each
mapping and each warning; the end-to-end test runs ``modelmix serve --config`` on a
LiteLLM file whose shared ``model_name`` points at two loopback upstreams, and calls it
with the OpenAI SDK.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path
from typing import Any

import openai
import pytest
import yaml
from typer.testing import CliRunner

from _replicas import launch, wait_http
from _servers import free_port
from faulty_upstream import Fault, FaultyUpstream
from modelmix.catalog import config_from_dict, convert_litellm, load_config
from modelmix.cli import app
from modelmix.errors import ConfigError

ENV = {"K1": "sk-upstream", "AZURE_BASE": "https://my-res.openai.azure.com"}


def entry(name: str, **params: Any) -> dict[str, Any]:
    info = params.pop("model_info", None)
    out: dict[str, Any] = {"model_name": name, "litellm_params": params}
    if info is not None:
        out["model_info"] = info
    return out


def convert(*entries: dict[str, Any], **sections: Any) -> tuple[dict[str, Any], list[str]]:
    return convert_litellm({"model_list": list(entries), **sections}, env=ENV)


def one(params: dict[str, Any], **sections: Any) -> tuple[dict[str, Any], list[str]]:
    native, warnings = convert(entry("m", **params), **sections)
    config_from_dict(native)  # every converted config is a valid native one
    return native["deployments"][0], warnings


def warned(warnings: list[str], path: str) -> str:
    hits = [w for w in warnings if w.startswith(path + ":")]
    assert hits, f"no warning for {path}: {warnings}"
    return hits[0]


# -- providers ------------------------------------------------------------------------------


@pytest.mark.parametrize(("model", "provider", "model_id", "base_url"), [
    ("openai/gpt-4o", "openai", "gpt-4o", "https://api.openai.com/v1"),
    ("gpt-4o-mini", "openai", "gpt-4o-mini", "https://api.openai.com/v1"),
    ("anthropic/claude-3-5-sonnet-20241022", "anthropic", "claude-3-5-sonnet-20241022", None),
    ("claude-3-haiku-20240307", "anthropic", "claude-3-haiku-20240307", None),
    ("gemini/gemini-1.5-pro", "gemini", "gemini-1.5-pro", None),
    ("nvidia_nim/meta/llama-3.1-8b-instruct", "nim", "meta/llama-3.1-8b-instruct",
     "https://integrate.api.nvidia.com/v1"),
    ("openrouter/qwen/qwen-2.5-72b", "openrouter", "qwen/qwen-2.5-72b",
     "https://openrouter.ai/api/v1"),
    ("together_ai/meta-llama/Llama-3-70b", "together", "meta-llama/Llama-3-70b",
     "https://api.together.xyz/v1"),
    ("groq/llama3-8b-8192", "openai-compatible", "llama3-8b-8192",
     "https://api.groq.com/openai/v1"),
    ("mistral/mistral-large-latest", "openai-compatible", "mistral-large-latest",
     "https://api.mistral.ai/v1"),
    ("deepseek/deepseek-chat", "openai-compatible", "deepseek-chat",
     "https://api.deepseek.com/v1"),
    ("ollama/llama3", "ollama", "llama3", "http://127.0.0.1:11434/v1"),
])
def test_provider_prefixes(model: str, provider: str, model_id: str,
                           base_url: str | None) -> None:
    native, warnings = convert(entry("m", model=model))
    dep = config_from_dict(native).deployments[0]
    assert (dep.provider, dep.model, dep.base_url) == (provider, model_id, base_url)
    assert warnings == []


def test_hosted_apis_are_cloud_and_self_hosted_servers_are_not() -> None:
    groq, _ = one({"model": "groq/llama3-8b-8192"})
    assert (groq["tier"], groq["hosting"]) == ("open", "cloud")
    vllm, warnings = one({"model": "hosted_vllm/meta-llama/Llama-3.1-8B",
                          "api_base": "http://10.0.0.5:8000/v1"})
    assert vllm["provider"] == "vllm" and "hosting" not in vllm and warnings == []
    public, warnings = one({"model": "openai/my-model", "api_base": "https://llm.example.com/v1"})
    assert (public["provider"], public["hosting"]) == ("openai-compatible", "cloud")
    assert "hosting: cloud" in warned(warnings, "model_list[0].litellm_params.api_base")
    ollama, _ = one({"model": "ollama_chat/llama3", "api_base": "http://gpu-box:11434"})
    assert ollama["base_url"] == "http://gpu-box:11434/v1"


def test_openai_prefix_with_api_base_is_an_openai_compatible_server() -> None:
    dep, warnings = one({"model": "openai/llama", "api_base": "http://127.0.0.1:8000/v1"})
    assert (dep["provider"], dep["base_url"]) == ("openai-compatible", "http://127.0.0.1:8000/v1")
    assert warnings == []


def test_azure_goes_through_the_v1_api_as_proprietary_cloud() -> None:
    dep, warnings = one({"model": "azure/gpt-4o-eu", "api_base": "os.environ/AZURE_BASE",
                         "api_version": "2024-06-01", "api_key": "os.environ/AZURE_KEY"})
    assert dep["base_url"] == "https://my-res.openai.azure.com/openai/v1"
    assert (dep["provider"], dep["model"], dep["api_key_env"]) == (
        "openai-compatible", "gpt-4o-eu", "AZURE_KEY")
    assert (dep["tier"], dep["hosting"]) == ("proprietary", "cloud")
    assert "v1 API" in warned(warnings, "model_list[0].litellm_params.model")
    assert "read from $AZURE_BASE" in warned(warnings, "model_list[0].litellm_params.api_base")
    warned(warnings, "model_list[0].litellm_params.api_version")


@pytest.mark.parametrize("params", [
    {"model": "vertex_ai/gemini-pro"}, {"model": "bedrock/anthropic.claude-v2"},
    {"model": "hosted_vllm/llama"},  # needs api_base
])
def test_unsupported_entries_are_skipped_with_a_warning(params: dict[str, Any]) -> None:
    native, warnings = convert(entry("x", **params), entry("ok", model="gpt-4o"))
    assert [d["name"] for d in native["deployments"]] == ["ok"]
    assert [w for w in warnings if w.startswith("model_list[0].litellm_params.")
            and "entry skipped" in w]


def test_nothing_servable_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"(?s)no entry could be served.*vertex_ai"):
        convert(entry("x", model="vertex_ai/gemini-pro"))


# -- keys and limits ------------------------------------------------------------------------


def test_env_keys_become_names_and_literal_keys_are_refused() -> None:
    dep, _ = one({"model": "gpt-4o", "api_key": "os.environ/OPENAI_API_KEY"})
    assert dep["api_key_env"] == "OPENAI_API_KEY"
    with pytest.raises(ConfigError) as err:
        one({"model": "gpt-4o", "api_key": "sk-live-secret-123"})
    assert "model_list[0].litellm_params.api_key" in err.value.message
    assert "os.environ/" in err.value.message and "sk-live" not in err.value.message


def test_an_unset_env_value_that_is_not_a_key_is_an_error() -> None:
    with pytest.raises(ConfigError, match=r"os\.environ/NOPE is unset or empty"):
        one({"model": "openai/x", "api_base": "os.environ/NOPE"})


def test_limits_timeouts_headers_and_region() -> None:
    dep, warnings = one({"model": "gpt-4o", "rpm": 600, "tpm": "90000", "weight": 2,
                         "max_parallel_requests": 8, "timeout": 30, "stream_timeout": 10,
                         "extra_headers": {"X-Team": "search", "X-Tenant": "os.environ/TEN"},
                         "region_name": "eu-west-1"})
    assert (dep["rpm"], dep["tpm"], dep["weight"], dep["max_concurrency"]) == (600, 90000, 2, 8)
    assert (dep["timeout_s"], dep["headers"], dep["region"]) == (
        30.0, {"X-Team": "search"}, "eu-west-1")
    warned(warnings, "model_list[0].litellm_params.stream_timeout")
    warned(warnings, "model_list[0].litellm_params.extra_headers.X-Tenant")
    only_stream, _ = one({"model": "gpt-4o", "stream_timeout": 12})
    assert only_stream["timeout_s"] == 12.0
    entry_level, _ = convert({**entry("m", model="gpt-4o"), "rpm": 5})
    assert entry_level["deployments"][0]["rpm"] == 5
    with pytest.raises(ConfigError, match="rpm: expected a number"):
        one({"model": "gpt-4o", "rpm": "lots"})


def test_model_info_prices_context_and_capabilities() -> None:
    dep, warnings = one({"model": "gpt-4o", "model_info": {
        "input_cost_per_token": 2.5e-6, "output_cost_per_token": 1e-5,
        "max_input_tokens": 128000, "max_output_tokens": 16384,
        "supports_function_calling": True, "supports_vision": True,
        "supports_response_schema": True, "base_model": "gpt-4o"}})
    assert (dep["input_cost_per_mtok"], dep["output_cost_per_mtok"]) == (2.5, 10.0)
    assert (dep["context_window"], dep["max_output_tokens"]) == (128000, 16384)
    assert dep["supports_tools"] and dep["supports_json_mode"]
    assert dep["input_modalities"] == ["text", "image"]
    warned(warnings, "model_list[0].model_info.base_model")


def test_modes() -> None:
    emb, _ = one({"model": "openai/text-embedding-3-small",
                  "model_info": {"mode": "embedding"}})
    assert emb["mode"] == "embedding"
    inferred, _ = one({"model": "text-embedding-3-large"})
    assert inferred["mode"] == "embedding"
    native, warnings = convert(entry("img", model="dall-e-3", model_info={"mode":
                                                                          "image_generation"}),
                               entry("ok", model="gpt-4o"))
    assert len(native["deployments"]) == 1
    assert "entry skipped" in warned(warnings, "model_list[0].model_info.mode")


def test_params_modelmix_does_not_default_are_warned() -> None:
    _, warnings = one({"model": "gpt-4o", "temperature": 0.2, "max_tokens": 512,
                       "organization": "org-1"})
    for key in ("temperature", "max_tokens", "organization"):
        warned(warnings, f"model_list[0].litellm_params.{key}")


# -- groups, names, fallbacks ---------------------------------------------------------------


def test_shared_model_name_is_a_balanced_group_with_unique_member_names() -> None:
    native, _ = convert(
        entry("gpt-4o", model="azure/gpt-4o-eu", api_base="https://eu.example.com",
              model_info={"id": "gpt-4o-azure-eu"}),
        entry("gpt-4o", model="gpt-4o"),
        entry("gpt-4o", model="gpt-4o", model_info={"id": "has space"}),
        entry("gpt-4o-2", model="gpt-4o-mini"),  # takes the name a member would get
        router_settings={"routing_strategy": "latency-based-routing"})
    names = [d["name"] for d in native["deployments"]]
    assert names == ["gpt-4o-azure-eu", "gpt-4o-2-2", "gpt-4o-3", "gpt-4o-2"]
    assert native["groups"] == {"gpt-4o": {"strategy": "latency",
                                           "members": ["gpt-4o-azure-eu", "gpt-4o-2-2",
                                                       "gpt-4o-3"]}}
    cfg = config_from_dict(native)
    assert cfg.group_strategies == {"gpt-4o": "latency"} and "gpt-4o" in cfg.model_names()


def test_bad_model_names_are_skipped_and_a_bad_strategy_is_an_error() -> None:
    native, warnings = convert(entry("*", model="openai/*"), entry("auto", model="gpt-4o"),
                               entry("ok", model="gpt-4o"))
    assert [d["name"] for d in native["deployments"]] == ["ok"]
    assert "wildcards" in warned(warnings, "model_list[0].model_name")
    assert "reserved" in warned(warnings, "model_list[1].model_name")
    with pytest.raises(ConfigError, match="routing_strategy"):
        convert(entry("ok", model="gpt-4o"),
                router_settings={"routing_strategy": "provider-budget-routing"})


def test_fallbacks_and_aliases() -> None:
    native, warnings = convert(
        entry("gpt-4o", model="gpt-4o"), entry("gpt-4o", model="openai/gpt-4o",
                                               api_base="http://127.0.0.1:9/v1"),
        entry("claude", model="claude-3-5-sonnet-latest"),
        entry("mini", model="gpt-4o-mini"),
        router_settings={"fallbacks": [{"gpt-4o": ["claude", "nope"]}, {"mini": ["gpt-4o"]},
                                       {"ghost": ["mini"]}],
                         "model_group_alias": {"gpt-4": "gpt-4o",
                                               "fast": {"model": "mini", "hidden": True}},
                         "context_window_fallbacks": [{"mini": ["gpt-4o"]}]})
    assert native["fallbacks"] == {"gpt-4o": ["claude"], "mini": ["gpt-4o-1", "gpt-4o-2"]}
    assert native["groups"]["gpt-4"] == {"strategy": "weighted",
                                         "members": ["gpt-4o-1", "gpt-4o-2"]}
    assert native["groups"]["fast"] == ["mini"]
    warned(warnings, "router_settings.fallbacks[0].gpt-4o")
    warned(warnings, "router_settings.fallbacks[2].ghost")
    warned(warnings, "router_settings.model_group_alias.fast.hidden")
    warned(warnings, "router_settings.context_window_fallbacks")
    config_from_dict(native)


# -- settings -------------------------------------------------------------------------------


def test_router_and_litellm_settings() -> None:
    native, warnings = convert(
        entry("m", model="gpt-4o"),
        router_settings={"num_retries": 3, "timeout": 900, "allowed_fails": 2,
                         "cooldown_time": 45, "redis_host": "localhost",
                         "enable_pre_call_checks": True},
        litellm_settings={"drop_params": True, "success_callback": ["langfuse"],
                          "cache": True, "set_verbose": False, "request_timeout": 5})
    assert native["reliability"] == {"num_retries": 3, "attempt_timeout_s": 900.0,
                                     "timeout_s": 900.0, "circuit_breaker": {
                                         "failure_threshold": 3, "cooldown_s": 45.0}}
    assert "in a minute" in warned(warnings, "router_settings.allowed_fails")
    for path in ("router_settings.redis_host", "router_settings.enable_pre_call_checks",
                 "litellm_settings.drop_params", "litellm_settings.success_callback",
                 "litellm_settings.cache", "litellm_settings.set_verbose"):
        warned(warnings, path)
    assert not [w for w in warnings if w.startswith("litellm_settings.request_timeout")]
    only_litellm, _ = convert(entry("m", model="gpt-4o"),
                              litellm_settings={"num_retries": 40, "request_timeout": 20})
    assert only_litellm["reliability"]["num_retries"] == 10
    assert only_litellm["reliability"]["attempt_timeout_s"] == 20.0


def test_general_settings() -> None:
    native, warnings = convert(
        entry("m", model="gpt-4o"),
        general_settings={"master_key": "os.environ/LITELLM_MASTER_KEY",
                          "database_url": "os.environ/DATABASE_URL", "alerting": ["slack"]},
        environment_variables={"REDIS_HOST": "x", "SECRET": "hunter2"}, include=["x.yaml"])
    assert native["server"] == {"master_key_env": "LITELLM_MASTER_KEY"}
    assert "MODELMIX_DB_URL" in warned(warnings, "general_settings.database_url")
    warned(warnings, "general_settings.alerting")
    env_line = warned(warnings, "environment_variables")
    assert "REDIS_HOST, SECRET" in env_line and "hunter2" not in env_line
    warned(warnings, "include")
    plain, _ = convert(entry("m", model="gpt-4o"),
                       general_settings={"database_url": "postgresql://db.internal/llm"})
    assert plain["store"] == {"url": "postgresql+psycopg://db.internal/llm"}
    secret, warnings = convert(entry("m", model="gpt-4o"), general_settings={
        "database_url": "postgresql://u:pw123@db/llm"})
    assert "store" not in secret and not any("pw123" in w for w in warnings)
    with pytest.raises(ConfigError) as err:
        convert(entry("m", model="gpt-4o"), general_settings={"master_key": "sk-1234"})
    assert "master_key" in err.value.message and "sk-1234" not in err.value.message


# -- loading and the command ----------------------------------------------------------------

LITELLM_YAML = """\
model_list:
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {a}
      api_key: os.environ/LL_UPSTREAM_KEY
      rpm: 600
  - model_name: gpt-4o
    litellm_params:
      model: openai/gpt-4o
      api_base: {b}
      api_key: os.environ/LL_UPSTREAM_KEY
  - model_name: claude
    litellm_params:
      model: openai/claude-sonnet
      api_base: {c}
      api_key: os.environ/LL_UPSTREAM_KEY
    model_info:
      input_cost_per_token: 0.000003
      output_cost_per_token: 0.000015
router_settings:
  routing_strategy: simple-shuffle
  fallbacks: [{{"gpt-4o": ["claude"]}}]
  num_retries: 0
  allowed_fails: 50
litellm_settings:
  drop_params: true
general_settings:
  master_key: os.environ/LL_MASTER_KEY
"""


def _write(tmp_path: Path, urls: tuple[str, str, str]) -> Path:
    path = tmp_path / "litellm.yaml"
    path.write_text(LITELLM_YAML.format(a=urls[0], b=urls[1], c=urls[2]))
    return path


def test_load_config_converts_and_logs_each_warning_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = _write(tmp_path, ("http://127.0.0.1:1/v1",) * 3)
    with caplog.at_level(logging.WARNING, logger="modelmix.catalog"):
        cfg = load_config(path)
    lines = [r.getMessage() for r in caplog.records if r.name == "modelmix.catalog"]
    assert all(r.levelno == logging.WARNING for r in caplog.records)
    assert sorted(lines) == [
        f"{path}: LiteLLM config: litellm_settings.drop_params: not mapped (modelmix does "
        "not drop parameters: one an upstream rejects comes back to the client as the "
        "upstream's error); remove it",
        f"{path}: LiteLLM config: router_settings.allowed_fails: mapped to circuit_breaker."
        "failure_threshold 51: modelmix opens a deployment's circuit after that many "
        "consecutive failures, LiteLLM after that many in a minute"]
    assert cfg.groups["gpt-4o"] == ("gpt-4o-1", "gpt-4o-2")
    assert cfg.fallbacks == {"gpt-4o": ("claude",)}
    assert cfg.server.master_key_env == "LL_MASTER_KEY" and "LiteLLM" in cfg.source


def test_a_literal_key_stops_loading_with_the_file_named(tmp_path: Path) -> None:
    path = tmp_path / "l.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params: "
                    "{model: gpt-4o, api_key: sk-abc}\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert err.value.message.startswith(f"{path}: LiteLLM config: model_list[0]")
    assert "sk-abc" not in err.value.message


def test_import_command_round_trip(tmp_path: Path) -> None:
    source = _write(tmp_path, ("http://127.0.0.1:1/v1", "http://127.0.0.1:2/v1",
                               "http://10.1.2.3:8000/v1"))
    out = tmp_path / "native.yaml"
    runner = CliRunner()
    result = runner.invoke(app, ["config", "import-litellm", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert "wrote" in result.stdout and "drop_params" in result.stderr
    text = out.read_text()
    assert text.startswith(f"# modelmix config converted from the LiteLLM proxy config "
                           f"{source}")
    assert "#   - litellm_settings.drop_params: not mapped" in text
    assert "model_list" not in yaml.safe_load(text)
    native, imported = load_config(out), load_config(source)
    assert native.model_dump() == imported.model_dump()
    again = runner.invoke(app, ["config", "import-litellm", str(source), str(out)])
    assert again.exit_code == 2 and "--force" in again.stderr
    forced = runner.invoke(app, ["config", "import-litellm", str(source), str(out), "--force"])
    assert forced.exit_code == 0
    checked = runner.invoke(app, ["config", "validate", str(out)])
    assert checked.exit_code == 0 and "3 deployment(s)" in checked.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: x, "
                   "api_key: sk-zzz}\n")
    refused = runner.invoke(app, ["config", "import-litellm", str(bad), str(tmp_path / "o")])
    assert refused.exit_code == 2 and "sk-zzz" not in refused.output
    assert not (tmp_path / "o").exists()


# -- a real gateway -------------------------------------------------------------------------

MASTER = "sk-litellm-master-0123456789"


def test_serve_a_litellm_config_end_to_end(tmp_path: Path) -> None:
    ups = [FaultyUpstream(n).start() for n in ("a", "b", "c")]
    port = free_port()
    config = _write(tmp_path, (ups[0].url, ups[1].url, ups[2].url))
    env = {"LL_UPSTREAM_KEY": "sk-up", "LL_MASTER_KEY": MASTER,
           "MODELMIX_DB_URL": f"sqlite:///{tmp_path / 'usage.db'}"}
    gateway = launch("gateway", [sys.executable, "-m", "modelmix", "serve", "--config",
                                 str(config), "--port", str(port), "--log-level", "warning"],
                     tmp_path / "gateway.log", env)
    try:
        wait_http([(gateway, f"http://127.0.0.1:{port}/health")], timeout=60)
        base = f"http://127.0.0.1:{port}/v1"
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=base, api_key="sk-wrong", max_retries=0).chat.completions \
                .create(model="gpt-4o", messages=[{"role": "user", "content": "hi"}])
        client = openai.OpenAI(base_url=base, api_key=MASTER, max_retries=0)
        answers = [client.chat.completions.create(
            model="gpt-4o", messages=[{"role": "user", "content": f"hi {i}"}]
        ).choices[0].message.content for i in range(16)]
        assert set(answers) == {"hello from a", "hello from b"}  # both members serve
        assert ups[0].count > 0 and ups[1].count > 0 and ups[2].count == 0
        ups[0].default = ups[1].default = Fault.error(500)
        raw = client.chat.completions.with_raw_response.create(
            model="gpt-4o", messages=[{"role": "user", "content": "still there?"}])
        assert raw.parse().choices[0].message.content == "hello from c"  # the fallback
        assert raw.headers["x-modelmix-deployment"] == "claude"
        assert ups[2].count == 1
        models = {m.id for m in client.models.list()}
        assert {"gpt-4o", "claude", "gpt-4o-1", "gpt-4o-2"} <= models
    finally:
        gateway.stop()
        for up in ups:
            up.stop()
    log = (tmp_path / "gateway.log").read_text()
    assert f"warning: {config}: LiteLLM config: litellm_settings.drop_params" in log
    assert log.count("litellm_settings.drop_params") == 1


def test_serve_refuses_a_literal_master_key_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "l.yaml"
    path.write_text("model_list:\n  - model_name: m\n    litellm_params: {model: gpt-4o}\n"
                    "general_settings: {master_key: sk-1234}\n")
    started = time.monotonic()
    result = CliRunner().invoke(app, ["serve", "--config", str(path)])
    assert result.exit_code == 2 and time.monotonic() - started < 30
    assert result.stderr.startswith(f"error: {path}: LiteLLM config: "
                                    "general_settings.master_key")
    assert "sk-1234" not in result.output


# -- a group's fallbacks in the router ------------------------------------------------------


def test_group_fallbacks_follow_all_members_and_need_their_own_permission() -> None:
    from modelmix.protocol import RequestNeeds
    from modelmix.routing import Router
    from modelmix.routing._exclusion import Exclusion, ExclusionKind

    native, _ = convert(entry("g", model="openai/x", api_base="http://127.0.0.1:1/v1"),
                        entry("g", model="openai/x", api_base="http://127.0.0.1:2/v1"),
                        entry("spare", model="openai/y", api_base="http://127.0.0.1:3/v1"),
                        router_settings={"fallbacks": [{"g": ["spare"]}]})
    cfg = config_from_dict(native)
    down: set[str] = set()
    router = Router(cfg, health=lambda d: Exclusion(ExclusionKind.UNHEALTHY, "open", 1.0)
                    if d.name in down else None)
    needs = RequestNeeds(prompt_tokens_estimate=5)
    decision = router.route("g", needs)
    assert {decision.deployment.name, decision.fallbacks[0].name} == {"g-1", "g-2"}
    assert decision.fallbacks[-1].name == "spare"  # after every member, never balanced
    down.update({"g-1", "g-2"})
    decision = router.route("g", needs)
    assert decision.deployment.name == "spare" and decision.reason.startswith("fallback:")
    down.clear()
    only_group = router.route("g", needs, allowed_models=frozenset({"g"}))
    assert "spare" not in {d.name for d in only_group.candidates}
