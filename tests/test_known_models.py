"""The known-models table (catalog/data/known_models.yaml) and how it fills deployments."""

from __future__ import annotations

import datetime
import fnmatch
import re
import tomllib
from pathlib import Path
from typing import Any

import openai
import pytest

from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix.catalog import Deployment, config_from_dict, known_table
from modelmix.catalog._known import KNOWN_FIELDS, KnownModel, _index, lookup
from modelmix.errors import ConfigError
from modelmix.server import create_app
from modelmix.store import UsageStore

TABLE = known_table()
ROOT = Path(__file__).resolve().parents[1]
TOOL = {"type": "function", "function": {
    "name": "get_weather", "parameters": {"type": "object", "properties": {}}}}


def _dep(provider: str, model: str, **fields: Any) -> Deployment:
    return Deployment(name="d", provider=provider, model=model,
                      base_url="http://127.0.0.1:9/v1", **fields)


def _serving(entry: KnownModel) -> list[tuple[str, str]]:
    """(provider, model id) for each provider that may serve ``entry``, in its own name."""
    pairs = []
    for provider in sorted(entry.providers):
        if provider == "ollama":
            pairs += [(provider, name) for name in entry.ollama[:1]]
        else:
            hosted = entry.hosted.get(provider)
            pairs.append((provider, hosted.model if hosted else entry.id))
    return pairs


# --- the table itself ---------------------------------------------------------------


def test_header_says_when_and_from_where_it_was_checked() -> None:
    checked = datetime.date.fromisoformat(TABLE.checked)
    assert datetime.date(2026, 1, 1) <= checked <= datetime.date.today()
    assert any("openai.com" in s for s in TABLE.sources)
    assert any("anthropic.com" in s for s in TABLE.sources)
    assert any("ai.google.dev" in s for s in TABLE.sources)


@pytest.mark.parametrize("entry", TABLE.models, ids=lambda e: e.id)
def test_every_entry_validates_as_a_deployment_under_each_of_its_providers(
        entry: KnownModel) -> None:
    for provider, model in _serving(entry):
        dep = _dep(provider, model)
        assert dep.context_window == entry.context_window
        assert dep.max_output_tokens == entry.max_output_tokens
        assert (dep.supports_tools, dep.supports_json_mode) == (entry.supports_tools,
                                                                entry.supports_json_mode)
        assert dep.mode == entry.mode and dep.tier.value == entry.tier
        assert [m.value for m in dep.input_modalities] == list(entry.input_modalities)
        price = entry.price_for(provider, model)
        assert (dep.input_cost_per_mtok, dep.output_cost_per_mtok) == (price or (0.0, 0.0))
        assert ("input_cost_per_mtok" in dep.known_fields) == (price is not None)


@pytest.mark.parametrize("entry", TABLE.models, ids=lambda e: e.id)
def test_limits_and_prices_are_plausible(entry: KnownModel) -> None:
    assert 4096 <= entry.context_window <= 2_000_000
    if entry.max_output_tokens is not None:
        assert 1024 <= entry.max_output_tokens <= entry.context_window
    prices = [p for p in (entry.price, *((h.input, h.output) for h in entry.hosted.values()))
              if p is not None]
    for inp, out in prices:
        assert 0 <= inp <= 100 and 0 <= out <= 200
        if entry.mode == "chat":  # every vendor listed prices output at least as input
            assert out >= inp > 0
        else:
            assert out == 0 < inp
    if entry.tier == "proprietary":
        assert entry.price is not None and not entry.hosted  # the vendor bills its list price
    else:
        assert entry.price is None  # an open model's price is the host's, if any


def test_ids_and_aliases_are_unique_and_a_clash_is_refused() -> None:
    ids = [e.id for e in TABLE.models]
    assert len(ids) == len(set(ids)) > 40
    names = [n for e in TABLE.models for n in (e.id, *e.aliases)]
    assert len(names) == len(set(names))
    ollama = [n for e in TABLE.models for n in e.ollama]
    assert len(ollama) == len(set(ollama))
    first = TABLE.models[0]
    clash = KnownModel(**{**{f: getattr(first, f) for f in first.__dataclass_fields__},
                          "id": "other", "aliases": (first.id,)})
    with pytest.raises(ValueError, match=f"names both {re.escape(first.id)} and other"):
        _index((first, clash))


def test_the_data_file_ships_in_the_wheel() -> None:
    data = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = data["tool"]["setuptools"]["package-data"]["modelmix"]
    assert any(fnmatch.fnmatch("catalog/data/known_models.yaml", p) for p in patterns)


# --- lookups --------------------------------------------------------------------------


@pytest.mark.parametrize(("provider", "model", "expected"), [
    ("openai", "gpt-4o-mini", "gpt-4o-mini"),
    ("openai", "GPT-4o-mini-2024-07-18", "gpt-4o-mini"),  # dated snapshot, any case
    ("openai", "gpt-4o-2024-08-06", "gpt-4o"),
    ("openrouter", "openai/gpt-4o", "gpt-4o"),
    ("openai-compatible", "text-embedding-3-large", "text-embedding-3-large"),
    ("anthropic", "claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
    ("anthropic", "claude-3-5-haiku-latest", "claude-3-5-haiku-20241022"),
    ("openrouter", "anthropic/claude-sonnet-4.5", "claude-sonnet-4-5"),
    ("gemini", "models/gemini-2.5-flash", "gemini-2.5-flash"),
    ("openrouter", "google/gemini-2.5-pro", "gemini-2.5-pro"),
    ("nim", "meta/llama-3.1-8b-instruct", "llama-3.1-8b-instruct"),
    ("vllm", "meta-llama/Llama-3.1-8B-Instruct", "llama-3.1-8b-instruct"),
    ("vllm", "meta-llama/Meta-Llama-3.1-70B-Instruct", "llama-3.1-70b-instruct"),
    ("together", "meta-llama/Llama-3.3-70B-Instruct-Turbo", "llama-3.3-70b-instruct"),
    ("nim", "mistralai/mixtral-8x7b-instruct-v0.1", "mixtral-8x7b-instruct-v0.1"),
    ("vllm", "Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b-instruct"),
    ("openrouter", "qwen/qwen-2.5-72b-instruct", "qwen2.5-72b-instruct"),
    ("together", "deepseek-ai/DeepSeek-R1", "deepseek-r1"),
    ("vllm", "openai/gpt-oss-120b", "gpt-oss-120b"),
    ("ollama", "llama3.1", "llama-3.1-8b-instruct"),
    ("ollama", "llama3.1:latest", "llama-3.1-8b-instruct"),
    ("ollama", "llama3.1:70b-instruct-q4_K_M", "llama-3.1-70b-instruct"),
    ("ollama", "qwen2.5:7b", "qwen2.5-7b-instruct"),
    ("ollama", "mixtral:8x7b-instruct-fp16", "mixtral-8x7b-instruct-v0.1"),
])
def test_lookup_through_prefixes_aliases_and_tags(provider: str, model: str,
                                                  expected: str) -> None:
    found = lookup(provider, model)
    assert found is not None and found.id == expected


@pytest.mark.parametrize(("provider", "model"), [
    ("openai", "gpt-4o-2024-05-13"),  # another price: not listed as an alias of gpt-4o
    ("openai", "gpt-4o-mini-custom"),  # no fuzzy matching
    ("openai", "ft:gpt-4o-mini-2024-07-18:acme::abc123"),  # a fine-tune is priced otherwise
    ("vllm", "gpt-4o-mini"),  # a self-hosted server cannot serve OpenAI's model
    ("anthropic", "gpt-4o"),
    ("openai", "meta/gpt-4o"),  # another family's prefix
    ("openrouter", "meta-llama/llama-3.3-70b-instruct:free"),  # priced otherwise
    ("vllm", "llama3.1:8b"),  # Ollama names only under provider ollama
    ("ollama", "deepseek-r1"),  # Ollama's default tag is a distilled 8B model
    ("ollama", "llama3.1:8b-text-q4_0"),  # the base model, not the instruct one
    ("local", "SmolLM2-135M-Instruct"),
])
def test_lookup_refuses_other_models(provider: str, model: str) -> None:
    assert lookup(provider, model) is None


# --- filling deployments ---------------------------------------------------------------


def test_a_known_model_needs_no_hand_entered_metadata() -> None:
    dep = _dep("openai", "gpt-4o-mini")
    assert (dep.input_cost_per_mtok, dep.output_cost_per_mtok) == (0.15, 0.60)
    assert dep.supports_tools and dep.supports_json_mode
    assert (dep.context_window, dep.max_output_tokens) == (128_000, 16_384)
    assert dep.cost_usd(1_000_000, 1_000_000) == pytest.approx(0.75)
    assert set(dep.known_fields) == set(KNOWN_FIELDS)


def test_explicit_values_win_even_zero_and_false() -> None:
    dep = _dep("openai", "gpt-4o-mini", input_cost_per_mtok=0, output_cost_per_mtok=0,
               supports_tools=False, context_window=4096, tier="open")
    assert (dep.input_cost_per_mtok, dep.output_cost_per_mtok) == (0, 0)
    assert not dep.supports_tools and dep.tier.value == "open"
    assert dep.context_window == 4096
    # the table's 16k output limit does not fit the smaller window: left unset
    assert dep.max_output_tokens is None
    assert _dep("openai", "gpt-4o-mini", context_window="4096").max_output_tokens is None
    assert "supports_json_mode" in dep.known_fields
    assert not {"input_cost_per_mtok", "output_cost_per_mtok", "supports_tools",
                "context_window", "max_output_tokens", "tier"} & set(dep.known_fields)


def test_a_proprietary_model_behind_a_private_relay_is_cloud() -> None:
    """The data guard trusts self-hosted; proprietary weights cannot be self-hosted, so a
    server on a private address serving one (a LiteLLM proxy) relays to the vendor."""
    relay = config_from_dict({"deployments": [{
        "name": "relay", "provider": "openai-compatible", "base_url": "http://litellm-proxy:4000/v1",
        "model": "gpt-4o"}]}).deployments[0]
    assert (relay.tier.value, relay.hosting.value) == ("proprietary", "cloud")
    assert "tier" in relay.known_fields
    written = _dep("openai-compatible", "my-model", tier="proprietary")  # on loopback
    assert written.hosting.value == "cloud"
    # an explicit hosting still wins, and open models on a private server stay self-hosted
    assert _dep("openai-compatible", "gpt-4o", hosting="self-hosted").hosting.value == \
        "self-hosted"
    assert _dep("vllm", "meta-llama/Llama-3.1-8B-Instruct").hosting.value == "self-hosted"


def test_an_unknown_model_keeps_the_plain_defaults() -> None:
    dep = _dep("openai", "my-finetune")
    defaults = {f: Deployment.model_fields[f].default for f in KNOWN_FIELDS if f != "tier"}
    assert {f: getattr(dep, f) for f in defaults} == defaults
    assert dep.known_fields == () and dep.tier.value == "proprietary"  # from the provider


def test_open_models_are_priced_only_by_the_host_that_publishes_a_price() -> None:
    hosted = _dep("together", "meta-llama/Meta-Llama-3.1-8B-Instruct-Turbo")
    assert (hosted.input_cost_per_mtok, hosted.output_cost_per_mtok) == (0.18, 0.18)
    for provider, model in [("vllm", "meta-llama/Llama-3.1-8B-Instruct"),
                            ("nim", "meta/llama-3.1-8b-instruct"), ("ollama", "llama3.1:8b"),
                            ("together", "meta-llama/Llama-3.1-8B-Instruct")]:
        dep = _dep(provider, model)
        assert dep.supports_tools and dep.context_window == 131_072 and dep.tier.value == "open"
        assert dep.input_cost_per_mtok == 0 and "input_cost_per_mtok" not in dep.known_fields


def test_embedding_models_get_their_mode_and_input_price() -> None:
    dep = _dep("openai", "text-embedding-3-small")
    assert dep.mode == "embedding" and not dep.supports_tools
    assert (dep.input_cost_per_mtok, dep.output_cost_per_mtok) == (0.02, 0)


def test_known_fields_is_not_a_config_field() -> None:
    with pytest.raises(ConfigError, match="known_fields is filled by modelmix"):
        config_from_dict({"deployments": [{"name": "d", "provider": "openai",
                                           "model": "gpt-4o", "known_fields": []}]})


# --- through the gateway ---------------------------------------------------------------


def test_a_gateway_bills_and_offers_tools_for_an_unannotated_gpt_4o_mini(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'usage.db'}"
    with FaultyUpstream("u") as up:  # 7 prompt tokens; "hello from u" is 3
        cfg = config_from_dict({
            "deployments": [
                {"name": "mini", "provider": "openai", "model": "gpt-4o-mini",
                 "base_url": up.url},
                {"name": "mini-unpriced", "provider": "openai", "model": "gpt-4o-mini",
                 "base_url": up.url, "supports_tools": False, "input_cost_per_mtok": 0,
                 "output_cost_per_mtok": 0}],
            "router": "rules", "store": {"url": db}})
        with serve_app(create_app(cfg)) as url:
            client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
            raw = client.chat.completions.with_raw_response.create(
                model="mini", tools=[TOOL],  # type: ignore[list-item]
                messages=[{"role": "user", "content": "weather?"}])
            with pytest.raises(openai.BadRequestError, match="no tool calling"):
                client.chat.completions.create(
                    model="mini-unpriced", tools=[TOOL],  # type: ignore[list-item]
                    messages=[{"role": "user", "content": "weather?"}])
            listed = {m.id: m.model_extra for m in client.models.list()}
        assert up.received[0].body["tools"] == [TOOL]
    cost = (7 * 0.15 + 3 * 0.60) / 1e6
    assert raw.headers["x-modelmix-deployment"] == "mini"
    assert float(raw.headers["x-modelmix-cost-usd"]) == pytest.approx(cost)
    with UsageStore(db) as store:
        rows = [r for r in store.records() if r.deployment == "mini"]
    assert len(rows) == 1 and rows[0].cost_usd == pytest.approx(cost)
    source = listed["mini"]["modelmix"]["metadata_source"]  # type: ignore[index]
    assert source["checked"] == TABLE.checked
    assert "input_cost_per_mtok" in source["fields"]
    unpriced = listed["mini-unpriced"]["modelmix"]  # type: ignore[index]
    assert unpriced["supports_tools"] is False and unpriced["input_cost_per_mtok"] == 0
    assert "supports_tools" not in unpriced["metadata_source"]["fields"]
