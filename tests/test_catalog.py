"""Catalog loading and validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelmix.catalog import Hosting, Tier, config_from_dict, default_config, load_config
from modelmix.errors import ConfigError


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
    ],
)
def test_invalid_configs(raw: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        config_from_dict(raw, source="t.yaml")


def test_not_yaml_and_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "x.yaml"
    path.write_text("deployments: [unclosed")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")


def test_unset_api_key_makes_deployment_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    cfg = default_config()
    avail = cfg.availability(cfg.deployment("gpt-4.1"))
    assert not avail.available and "OPENAI_API_KEY" in avail.reason
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
    assert cfg.availability(cfg.deployment("gpt-4.1")).available


def test_cost_uses_usd_per_million_tokens() -> None:
    dep = default_config().deployment("gpt-4.1")
    assert dep.cost_usd(1_000_000, 0) == pytest.approx(2.0)
    assert dep.cost_usd(500, 250) == pytest.approx((500 * 2 + 250 * 8) / 1e6)
