"""Catalog loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelmix.catalog import Hosting, Tier, config_from_dict, default_config, load_config
from modelmix.errors import ConfigError
from modelmix.providers import availability


def test_minimal_openai_compatible_deployment(tmp_path: Path) -> None:
    path = tmp_path / "cat.yaml"
    path.write_text("deployments:\n  - name: v\n    provider: vllm\n"
                    "    base_url: http://127.0.0.1:8000/v1\n    model: llama\n")
    cfg = load_config(path)
    dep = cfg.deployment("v")
    assert (dep.tier, dep.hosting, dep.context_window) == (Tier.OPEN, Hosting.SELF_HOSTED, 8192)
    assert cfg.model_names() == ["v", "auto", "open", "proprietary"]


def test_bad_file_names_file_deployment_and_field(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("deployments:\n  - name: v\n    provider: vllm\n"
                    "    base_url: http://x/v1\n    model: m\n    context_window: -1\n"
                    "  - name: w\n    provider: nope\n    model: m\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    msg = info.value.message
    assert str(path) in msg
    assert 'deployment "v", field "context_window"' in msg
    assert 'deployment "w", field "provider"' in msg and "unknown provider" in msg


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"deployments": []}, "at least 1"),
        ({"deployments": [{"name": "a", "provider": "vllm", "model": "m"}]}, "base_url"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m", "prices": 1}]},
         "prices"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
          "groups": {"g": ["zzz"]}}, "unknown deployments"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"},
                          {"name": "a", "provider": "openai", "model": "n"}]}, "duplicate"),
        ("just a string", "mapping"),
        ({"deployments": [{"name": "a", "provider": "vllm", "model": "m",
                           "base_url": "not a url"}]}, "not an http"),
        ({"deployments": [{"name": "a", "provider": "vllm", "model": "m",
                           "base_url": "ftp://host/v1"}]}, "not an http"),
        ({"deployments": [{"name": "a", "provider": "vllm", "model": "m",
                           "base_url": "http:///v1"}]}, "not an http"),
        ({"deployments": [{"name": "a", "provider": "vllm", "model": "m",
                           "base_url": "http://host:99999/v1"}]}, "not an http"),
        ({"deployments": [{"name": "open", "provider": "openai", "model": "m"}]},
         "reserved"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
          "groups": {"g": []}}, "group 'g' is empty"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m",
                           "context_window": 100, "max_output_tokens": 200}]},
         r"max_output_tokens \(200\) is larger than context_window \(100\)"),
        ({"deployments": {"a": {"provider": "openai"}}},
         'field "deployments": Input should be a list$'),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
          "groups": {"g": {"a": 1}}}, r"groups\.g: unknown fields \['a'\]"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
          "groups": {"g": {"strategy": "fastest", "members": ["a"]}}},
         "group 'g': unknown strategy 'fastest'"),
        ({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
          "groups": {"g": {"members": "a"}}}, 'field "groups.g": Input should be a list$'),
        ({"deployments": ["a"]}, 'deployment #1: Input should be a mapping$'),
    ],
)
def test_invalid_configs(raw: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(raw, source="t.yaml")


def test_router_accepts_every_registered_strategy() -> None:
    from modelmix.routing import STRATEGIES

    dep = {"name": "a", "provider": "openai", "model": "m"}
    assert {"rules", "cheapest", "random", "ordered"} <= set(STRATEGIES)
    for name in STRATEGIES:
        assert config_from_dict({"deployments": [dep], "router": name}).router == name


def test_valid_base_urls_and_output_limit() -> None:
    for url in ("http://127.0.0.1:8000/v1", "https://api.example.com/v1", "http://[::1]:80"):
        dep = {"name": "a", "provider": "vllm", "model": "m", "base_url": url,
               "context_window": 100, "max_output_tokens": 100}
        assert config_from_dict({"deployments": [dep]}).deployment("a").base_url == url
    cfg = config_from_dict({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
                            "groups": {"open": ["a"], "auto": ["a"]}})
    assert cfg.groups["open"] == ("a",)  # the built-in groups may be narrowed, not taken


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("deployments: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML") as info:
        load_config(path)
    assert f'in "{path}", line 1' in info.value.message
    assert "<unicode string>" not in info.value.message
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_invalid_utf8_and_deep_nesting_are_config_errors(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes(b"deployments:\n  - name: caf\xe9\n")
    with pytest.raises(ConfigError, match="not valid UTF-8: byte 0xe9 at offset 26") as info:
        load_config(path)
    assert info.value.message.startswith(str(path))
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as info:
        load_config(deep)
    assert info.value.message.startswith(str(deep))


def test_unset_api_key_makes_deployment_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = default_config()
    avail = availability(cfg.deployment("gpt-4.1"))
    assert not avail.available and "OPENAI_API_KEY" in avail.reason
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert availability(cfg.deployment("gpt-4.1")).available


def test_cost_uses_usd_per_million_tokens() -> None:
    dep = default_config().deployment("gpt-4.1")
    assert dep.cost_usd(1_000_000, 0) == pytest.approx(2.0)
    assert dep.cost_usd(500, 250) == pytest.approx((500 * 2 + 250 * 8) / 1e6)


def test_unknown_strategy_is_refused_where_routing_is_assembled() -> None:
    """The catalog checks shapes only; the strategy name is checked by the router, when
    the service (app factory, Client) is built."""
    from modelmix.engine import ChatService

    cfg = config_from_dict({"deployments": [{"name": "a", "provider": "openai", "model": "m"}],
                            "router": "smartest"}, source="cat.yaml")
    with pytest.raises(ConfigError, match="unknown routing strategy 'smartest'") as info:
        ChatService(cfg)
    assert info.value.message.startswith('cat.yaml: field "router"')


def test_missing_extras_say_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelmix.errors import MissingExtra, require_extra
    from modelmix.providers import _availability

    with pytest.raises(MissingExtra, match=r"pip install 'modelmix\[eval\]'"):
        require_extra("modelmix_no_such_module", "eval", "evaluation plots")
    require_extra("numpy", "core", "anything")  # installed: no error
    monkeypatch.setitem(_availability._SDKS, "anthropic",
                        ("modelmix_no_such_sdk.sub", "anthropic"))
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-test")
    avail = availability(default_config().deployment("claude-sonnet-4-5"))
    assert not avail.available
    assert avail.reason == ("the anthropic SDK is not installed "
                            "(pip install 'modelmix[anthropic]')")
