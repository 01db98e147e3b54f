"""LiteLLM config import under hostile input (issue 14 attack review).

The data guard trusts ``hosting``, so a converted deployment is never guessed
``self-hosted``: public hosts in any spelling, Ollama on a cloud host and proprietary
models behind a relay are ``cloud``. Credentials never reach the file
``import-litellm`` writes; keys in warnings cannot add YAML to it or forge log lines; an
alias bomb and malformed settings are one-line errors, never a hang or a traceback.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from modelmix.catalog import config_from_dict, load_config
from modelmix.catalog._litellm_hosts import private_host
from modelmix.catalog._litellm_import import convert_litellm
from modelmix.cli import app
from modelmix.cli._config_cmd import native_yaml
from modelmix.errors import ConfigError

BOMB = "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}' if i else 'x'] * 10)}]\n" for i in range(9)
) + """model_list:
  - model_name: m
    litellm_params:
      model: openai/gpt-4o
      extra_headers: {X-Bomb: *a8}
"""


def _convert(params: dict[str, Any], env: dict[str, str] | None = None,
             **top: Any) -> tuple[dict[str, Any], list[str]]:
    return convert_litellm({"model_list": [{"model_name": "m", "litellm_params": params}],
                            **top}, env=env or {})


def _deployment(params: dict[str, Any], **top: Any) -> Any:
    native, _ = _convert(params, **top)
    return config_from_dict(native).deployments[0]


# -- hosting is never guessed self-hosted ---------------------------------------------------


@pytest.mark.parametrize("params", [
    {"model": "ollama/llama3.1", "api_base": "https://ollama.some-cloud.com"},
    {"model": "ollama_chat/llama3", "api_base": "https://1.2.3.4:11434"},
    {"model": "llama3", "custom_llm_provider": "ollama", "api_base": "https://x.example.com"},
    {"model": "hosted_vllm/meta-llama/Llama-3.1-8B-Instruct",
     "api_base": "https://vllm.cloud.example/v1"},
    {"model": "llamafile/x", "api_base": "https://cloud.example.com/v1"},
])
def test_litellm_ollama_on_public_host_is_not_self_hosted(params: dict[str, Any]) -> None:
    assert _deployment(params).hosting.value == "cloud"


@pytest.mark.parametrize("base", ["http://[2606:4700:4700::1111]/v1", "http://134744072/v1",
                                  "http://0x8080808/v1", "http://[::ffff:8.8.8.8]/v1",
                                  "http://4294967296/v1", "http://08/v1",
                                  "http://api.together.xyz./v1"])
def test_litellm_public_ip_literals_are_not_private(base: str) -> None:
    assert _deployment({"model": "openai/llama", "api_base": base}).hosting.value == "cloud"


@pytest.mark.parametrize(("url", "private"), [
    ("http://127.0.0.1:8000/v1", True), ("http://127.1/v1", True),
    ("http://2130706433/v1", True), ("http://[::1]:8000", True),
    ("http://[fd00::5]/v1", True), ("http://[fe80::1%25eth0]/v1", True),
    ("http://10.0.0.5:8000/v1", True), ("http://192.168.1.2/v1", True),
    ("http://gpu-box:8000/v1", True), ("http://vllm.ns.svc/v1", True),
    ("http://localhost/v1", True), ("http://[::ffff:10.0.0.1]/v1", True),
    ("http://8.8.8.8/v1", False), ("http://100.64.0.1/v1", False),
    ("http://[2606:4700:4700::1111]/v1", False), ("http://134744072/v1", False),
    ("http://[::1/v1", False), ("", False),
])
def test_private_host_table(url: str, private: bool) -> None:
    assert private_host(url) is private


def test_litellm_hosting_on_private_hosts_stays_self_hosted() -> None:
    dep = _deployment({"model": "ollama/llama3.1", "api_base": "http://10.0.0.5:11434"})
    assert dep.hosting.value == "self-hosted"
    dep = _deployment({"model": "openai/meta-llama/Llama-3.1-8B-Instruct",
                       "api_base": "http://gpu-box:8000/v1"})
    assert (dep.tier.value, dep.hosting.value) == ("open", "self-hosted")


def test_litellm_openai_host_is_matched_exactly() -> None:
    native, _ = _convert({"model": "openai/gpt-4o",
                          "api_base": "https://api.openai.com.evil.io/v1"})
    assert native["deployments"][0]["provider"] == "openai-compatible"
    native, _ = _convert({"model": "openai/gpt-4o", "api_base": "https://api.openai.com/v1"})
    assert native["deployments"][0]["provider"] == "openai"


def test_litellm_proprietary_model_behind_private_relay_is_not_self_hosted() -> None:
    dep = _deployment({"model": "openai/gpt-4o", "api_base": "http://litellm-proxy:4000"})
    assert (dep.tier.value, dep.hosting.value) == ("proprietary", "cloud")


# -- values read from the environment --------------------------------------------------------


@pytest.mark.parametrize("value", ["", "   "])
def test_litellm_empty_env_api_base_does_not_become_api_openai_com(value: str) -> None:
    raw = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/meta-llama/Llama-3.1-8B-Instruct", "api_base": "os.environ/VLLM_BASE"}}]}
    with pytest.raises(ConfigError, match="VLLM_BASE is unset or empty"):
        convert_litellm(raw, env={"VLLM_BASE": value})


@pytest.mark.parametrize("base", ["", 8000, ["http://x"], "http://[::1", "http://h:99999/v1"])
def test_litellm_api_base_must_be_a_non_empty_url(base: Any) -> None:
    with pytest.raises(ConfigError, match=r"litellm_params\.api_base"):
        _convert({"model": "openai/x", "api_base": base})


def test_litellm_env_names_must_be_variable_names() -> None:
    with pytest.raises(ConfigError, match="does not name an environment variable"):
        _convert({"model": "openai/gpt-4o", "api_key": "os.environ/FOO\nbar: baz"})


# -- warnings quote the file safely ----------------------------------------------------------

INJECTED = "temperature\nserver: {host: 0.0.0.0}\nstore: {url: 'postgresql://evil/loot'}\n#"


def test_litellm_warning_cannot_inject_yaml_into_out() -> None:
    raw = {"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/gpt-4o", INJECTED: 1}}]}
    native, warnings = convert_litellm(raw, env={})
    loaded = yaml.safe_load(native_yaml(native, warnings, "in.yaml"))
    assert "server" not in loaded and "store" not in loaded
    assert all("\n" not in w for w in warnings)
    assert any("litellm_params[\"temperature\\nserver" in w for w in warnings)


def test_litellm_source_name_cannot_inject_yaml_into_out() -> None:
    native, warnings = _convert({"model": "openai/gpt-4o"})
    text = native_yaml(native, warnings, "in.yaml\nserver: {host: 0.0.0.0}")
    assert "server" not in yaml.safe_load(text)


@pytest.mark.parametrize("key", [INJECTED, "t\x1b]0;PWNED\x07\x1b[2J", "a\u2028server: 1",
                                 "b\x85c"])
def test_litellm_import_command_with_hostile_keys(tmp_path: Path, key: str) -> None:
    source, out = tmp_path / "litellm.yaml", tmp_path / "out.yaml"
    source.write_text(yaml.safe_dump({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/gpt-4o", "api_key": "os.environ/K", key: 0.2}}]}), encoding="utf-8")
    result = CliRunner().invoke(app, ["config", "import-litellm", str(source), str(out)])
    assert result.exit_code == 0, result.output
    assert "\x1b" not in result.output and "\x1b" not in out.read_text(encoding="utf-8")
    loaded = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert set(loaded) == {"deployments"}
    assert load_config(out).deployments[0].name == "m"


def test_litellm_log_lines_cannot_be_forged(tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    source = tmp_path / "litellm.yaml"
    source.write_text(yaml.safe_dump({"model_list": [{"model_name": "m", "litellm_params": {
        "model": "openai/gpt-4o", "x\nCRITICAL forged line": 1}}]}), encoding="utf-8")
    with caplog.at_level(logging.WARNING, logger="modelmix.catalog"):
        load_config(source)
    messages = [r.getMessage() for r in caplog.records if r.name == "modelmix.catalog"]
    assert messages and all("\n" not in m for m in messages)


# -- credentials are never copied -------------------------------------------------------------


@pytest.mark.parametrize("headers", [
    {"Authorization": "Bearer sk-HEADERSECRET"}, {"api-key": "HEADERSECRET"},
    {"x-api-key": "HEADERSECRET"}, {"X-Auth-Token": "HEADERSECRET"},
    {"X-Custom": "Bearer HEADERSECRET"}, {"X-Custom": "sk-HEADERSECRET"},
])
def test_litellm_literal_header_secret_not_copied(headers: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        _convert({"model": "openai/gpt-4o", "extra_headers": headers})
    assert "os.environ/" in err.value.message and "HEADERSECRET" not in err.value.message


def test_litellm_env_credential_header_is_refused_and_plain_headers_pass() -> None:
    with pytest.raises(ConfigError, match="cannot read a header from the environment"):
        _convert({"model": "openai/gpt-4o", "headers": {"Authorization": "os.environ/TOK"}},
                 env={"TOK": "Bearer sk-x"})
    native, _ = _convert({"model": "openai/gpt-4o", "headers": {"X-Team": "search"}})
    assert native["deployments"][0]["headers"] == {"X-Team": "search"}
    with pytest.raises(ConfigError, match="expected a header name and a string value"):
        _convert({"model": "openai/gpt-4o", "headers": {"X-Team": ["a"]}})


@pytest.mark.parametrize("url", ["postgresql://u@h/db?password=DBSECRET",
                                 "postgresql://u@h/db?sslmode=require&sslpassword=DBSECRET",
                                 "postgresql://u:DBSECRET@h/db"])
def test_litellm_database_url_query_password_not_copied(url: str) -> None:
    native, warnings = _convert({"model": "openai/gpt-4o"},
                                general_settings={"database_url": url})
    assert "DBSECRET" not in yaml.safe_dump(native) + "".join(warnings)
    assert "store" not in native


def test_litellm_database_url_without_password_is_used() -> None:
    native, _ = _convert({"model": "openai/gpt-4o"},
                         general_settings={"database_url": "postgresql://u@h/db"})
    assert native["store"] == {"url": "postgresql+psycopg://u@h/db"}


@pytest.mark.parametrize(("base", "env"), [
    ("https://user:TOKENSECRET@h.example.com/v1", {}),
    ("https://TOKENSECRET@h.example.com/v1", {}),
    ("https://h.example.com/v1?api-key=TOKENSECRET", {}),
    ("os.environ/BASE", {"BASE": "https://user:TOKENSECRET@h.example.com/v1"}),
])
def test_litellm_api_base_with_credentials_is_refused(base: str, env: dict[str, str]) -> None:
    with pytest.raises(ConfigError) as err:
        _convert({"model": "openai/x", "api_base": base}, env=env)
    assert "TOKENSECRET" not in err.value.message


# -- malformed input is one error line --------------------------------------------------------


def test_litellm_alias_bomb_is_refused_fast(tmp_path: Path) -> None:
    source = tmp_path / "bomb.yaml"
    source.write_text(BOMB, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="expands to more than") as err:
        load_config(source)
    assert time.perf_counter() - started < 1.0
    assert "\n" not in err.value.message
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["config", "import-litellm", str(source),
                                      str(tmp_path / "out.yaml")])
    assert time.perf_counter() - started < 1.0
    assert result.exit_code != 0 and "expands to more than" in result.output


def test_anchors_and_merge_keys_still_load(tmp_path: Path) -> None:
    source = tmp_path / "litellm.yaml"
    source.write_text("""
defaults: &defaults {api_key: os.environ/K, rpm: 60}
model_list:
  - model_name: a
    litellm_params: {<<: *defaults, model: openai/gpt-4o}
  - model_name: b
    litellm_params: {<<: *defaults, model: openai/gpt-4o-mini}
""", encoding="utf-8")
    cfg = load_config(source)
    assert [(d.name, d.rpm, d.api_key_env) for d in cfg.deployments] == [
        ("a", 60, "K"), ("b", 60, "K")]


def test_a_self_referencing_alias_is_refused(tmp_path: Path) -> None:
    source = tmp_path / "loop.yaml"
    source.write_text("a: &a [*a]\nmodel_list: []\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="contains itself"):
        load_config(source)


@pytest.mark.parametrize("mode", [["chat"], {"a": 1}])
def test_litellm_mode_must_be_a_name(mode: Any) -> None:
    with pytest.raises(ConfigError, match=r"model_info\.mode: expected a name"):
        convert_litellm({"model_list": [{"model_name": "m", "model_info": {"mode": mode},
                                         "litellm_params": {"model": "openai/gpt-4o"}}]},
                        env={})


@pytest.mark.parametrize("router", [{"fallbacks": [{"m": [["x"]]}]},
                                    {"model_group_alias": {"z": ["m"]}},
                                    {"model_group_alias": {"z": {"model": ["m"]}}},
                                    {"timeout": "nan"}, {"num_retries": "nan"},
                                    {"allowed_fails": "1e400"}, {"allowed_fails": "inf"},
                                    {"cooldown_time": "-inf"}])
def test_litellm_bad_settings_are_config_errors(router: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        _convert({"model": "openai/gpt-4o"}, router_settings=router)


@pytest.mark.parametrize("params", [{"rpm": "nan"}, {"rpm": float("inf")}, {"weight": "inf"},
                                    {"timeout": "nan"}, {"tpm": "1e400"}])
def test_litellm_non_finite_entry_numbers_are_config_errors(params: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        _convert({"model": "openai/gpt-4o", **params})


def test_litellm_alias_equal_to_a_member_name_is_skipped_with_a_warning() -> None:
    group = [{"model_name": "g", "litellm_params": {"model": "openai/gpt-4o"},
              "model_info": {"id": "gpt-4o-dep"}},
             {"model_name": "g", "litellm_params": {"model": "openai/gpt-4o"}},
             {"model_name": "m", "litellm_params": {"model": "openai/gpt-4o-mini"}}]
    for alias in ("gpt-4o-dep", "g-2"):
        native, warnings = convert_litellm({"model_list": group, "router_settings": {
            "model_group_alias": {alias: "m"}}}, env={})
        cfg = config_from_dict(native)
        assert alias not in native["groups"] and cfg.deployment(alias).model == "gpt-4o"
        assert any(w.startswith(f"router_settings.model_group_alias.{alias}:")
                   and "skipped" in w for w in warnings)


def test_mixed_type_keys_do_not_crash_sorting() -> None:
    native, warnings = _convert({"model": "openai/gpt-4o", 1: "a", "b": 2}, **{"7": 1})
    assert native["deployments"] and len(warnings) == 3
