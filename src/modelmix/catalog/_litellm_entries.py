"""One LiteLLM ``model_list`` entry as a modelmix deployment (docs/litellm.md).

An entry's ``litellm_params.model`` names the provider by a prefix (``anthropic/...``);
a bare name is OpenAI's, as LiteLLM infers (``claude-*``: Anthropic). ``api_base``,
``os.environ/NAME`` keys, limits, timeouts, headers and ``model_info`` become the
deployment's fields; anything without a modelmix meaning becomes a warning naming its
path. A key written in the file itself is refused (:class:`~modelmix.errors.ConfigError`):
modelmix reads keys from the environment only, and never copies one into another file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from modelmix.catalog._litellm_hosts import private_host
from modelmix.catalog._litellm_notes import ENV_PREFIX, Notes, env_name, env_var
from modelmix.catalog._litellm_secrets import headers_fields, key_field, refuse_credential_url
from modelmix.catalog._models import _CLOUD_PROVIDERS
from modelmix.errors import ConfigError

__all__ = ["ENV_PREFIX", "Notes", "entry_deployment", "env_name"]


@dataclass(frozen=True, slots=True)
class _Target:
    """Where a LiteLLM provider prefix goes: modelmix provider, default base URL (None:
    the provider's own), tier and hosting (None: the provider's defaults)."""

    provider: str
    base_url: str | None = None
    tier: str | None = None
    hosting: str | None = None
    needs_base: bool = False




def _hosted(base_url: str, tier: str) -> _Target:
    """An OpenAI-compatible hosted API (a cloud service) of open or proprietary models."""
    return _Target("openai-compatible", base_url, tier=tier, hosting="cloud")


#: LiteLLM provider prefix -> modelmix provider (OpenAI-compatible hosted APIs get their
#: documented base URL).
PREFIXES: dict[str, _Target] = {
    "openai": _Target("openai"),
    "text-completion-openai": _Target("openai"),
    "anthropic": _Target("anthropic"),
    "gemini": _Target("gemini"),
    "hosted_vllm": _Target("vllm", needs_base=True),
    "vllm": _Target("vllm", needs_base=True),
    "openai_like": _Target("openai-compatible", needs_base=True),
    "custom_openai": _Target("openai-compatible", needs_base=True),
    "ollama": _Target("ollama"),
    "ollama_chat": _Target("ollama"),
    "lm_studio": _Target("openai-compatible", "http://127.0.0.1:1234/v1"),
    "llamafile": _Target("openai-compatible", "http://127.0.0.1:8080/v1"),
    "nvidia_nim": _Target("nim"),
    "openrouter": _Target("openrouter"),
    "together_ai": _Target("together"),
    "groq": _hosted("https://api.groq.com/openai/v1", "open"),
    "mistral": _hosted("https://api.mistral.ai/v1", "proprietary"),
    "deepseek": _hosted("https://api.deepseek.com/v1", "open"),
    "fireworks_ai": _hosted("https://api.fireworks.ai/inference/v1", "open"),
    "deepinfra": _hosted("https://api.deepinfra.com/v1/openai", "open"),
    "cerebras": _hosted("https://api.cerebras.ai/v1", "open"),
    "xai": _hosted("https://api.x.ai/v1", "proprietary"),
    "perplexity": _hosted("https://api.perplexity.ai", "proprietary"),
    "azure": _Target("openai-compatible", tier="proprietary", hosting="cloud",
                     needs_base=True),
}

#: ``model_info.supports_*`` -> what it sets on the deployment.
_SUPPORTS = {
    "supports_function_calling": ("supports_tools", None),
    "supports_tool_choice": ("supports_tools", None),
    "supports_response_schema": ("supports_json_mode", None),
    "supports_vision": ("input_modalities", "image"),
    "supports_pdf_input": ("input_modalities", "file"),
    "supports_audio_input": ("input_modalities", "audio"),
}

#: ``litellm_params`` keys read by :func:`entry_deployment` itself.
_PARAMS_READ = frozenset({
    "model", "api_base", "api_key", "api_version", "custom_llm_provider", "rpm", "tpm",
    "weight", "timeout", "stream_timeout", "max_parallel_requests", "extra_headers",
    "headers", "input_cost_per_token", "output_cost_per_token", "region_name",
})


def _api_base(params: Mapping[str, Any], path: str, env: Mapping[str, str],
              notes: Notes) -> str | None:
    """``api_base``, read from the environment now when written ``os.environ/NAME``.

    Raises:
        ConfigError: not a string, empty, its variable unset or empty (an empty base
            would silently mean api.openai.com), not a URL, or a URL holding a credential.
    """
    value = params.get("api_base")
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{path}: expected a URL, got {type(value).__name__}")
    name = env_var(value, path)
    if name is not None:
        if not env.get(name, "").strip():
            raise ConfigError(f"{path}: {ENV_PREFIX}{name} is unset or empty; export {name} "
                              "or write the URL")
        notes.warn(path, f"read from ${name} when the config was loaded (modelmix keeps "
                         "only keys in the environment)")
        value = env[name]
    if not value.strip():
        raise ConfigError(f"{path}: empty; remove it or write the server's URL")
    try:
        _ = urlsplit(value).port  # raises ValueError for a malformed host or port
    except ValueError:
        raise ConfigError(f"{path}: not a URL (malformed host or port)") from None
    refuse_credential_url(value, path)
    return value.strip()


def _number(value: Any, path: str, kind: type[int] | type[float]) -> Any:
    """``value`` as a finite ``kind``.

    Raises:
        ConfigError: not a number, or NaN / infinite.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{path}: expected a number, got {type(value).__name__}")
    try:
        number = float(value) if kind is float or isinstance(value, float) else int(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{path}: expected a number, got {Notes.shown(value)}") from None
    if isinstance(number, float) and not math.isfinite(number):
        raise ConfigError(f"{path}: expected a finite number, got {Notes.shown(value)}")
    return kind(number)


def _split_model(params: Mapping[str, Any], path: str) -> tuple[str | None, str]:
    """(LiteLLM provider or None for a bare name, model id)."""
    model = params.get("model")
    if not isinstance(model, str) or not model.strip():
        raise ConfigError(f"{path}.model: required, e.g. openai/gpt-4o")
    custom = params.get("custom_llm_provider")
    if isinstance(custom, str) and custom:
        return custom, model.removeprefix(custom + "/")
    prefix, slash, rest = model.partition("/")
    if slash and rest:
        return prefix, rest
    return None, model


def _bare_target(model: str, base: str | None) -> _Target:
    """What LiteLLM infers for a bare name or ``openai/`` with ``api_base``: Anthropic for
    a bare ``claude-*``, else OpenAI (an ``api_base`` elsewhere: that OpenAI-compatible
    server, as LiteLLM's docs use ``openai/`` for any)."""
    if model.startswith("claude") and not base:
        return PREFIXES["anthropic"]
    if base and urlsplit(base).hostname != "api.openai.com":
        return _Target("openai-compatible")
    return PREFIXES["openai"]


def _provider_fields(params: Mapping[str, Any], path: str, env: Mapping[str, str],
                     notes: Notes) -> dict[str, Any] | None:
    """provider, model, base_url, tier, hosting; None (with a warning) when unsupported."""
    prefix, model = _split_model(params, path)
    base = _api_base(params, f"{path}.api_base", env, notes)
    if prefix is None or (prefix == "openai" and base):
        target = _bare_target(model, base)
    elif prefix in PREFIXES:
        target = PREFIXES[prefix]
    else:
        notes.warn(f"{path}.model", f"LiteLLM provider {Notes.shown(prefix)} is not "
                   "supported, entry skipped", "serve it through an OpenAI-compatible "
                   "endpoint (openai/ with api_base) or a provider in "
                   "docs/configuration.md#providers")
        return None
    if target.needs_base and not base:
        notes.warn(f"{path}.api_base", f"{prefix}/ needs api_base, entry skipped",
                   "set api_base to the server's URL")
        return None
    out: dict[str, Any] = {"provider": target.provider, "model": model}
    if prefix == "azure":
        out["base_url"] = _azure_base(str(base), params, path, notes)
    elif prefix in ("ollama", "ollama_chat") and base:
        out["base_url"] = base.rstrip("/").removesuffix("/v1") + "/v1"
    elif base or target.base_url:
        out["base_url"] = base or target.base_url
    if prefix != "azure" and "api_version" in params:
        notes.ignored(f"{path}.api_version", "only Azure has API versions")
    if prefix == "text-completion-openai":
        notes.warn(f"{path}.model", "text-completion-openai/ is served through chat "
                   "completions", "check the model accepts /v1/chat/completions")
    _tier_hosting(out, target, notes, path)
    return out


def _tier_hosting(out: dict[str, Any], target: _Target, notes: Notes, path: str) -> None:
    """Tier and hosting: the target's, else cloud for any server (``openai/``, ``vllm/``,
    ``ollama/``, ...) whose URL is not on this machine or a private network: the data
    guard trusts ``self-hosted``, so it is never guessed (lib ``_litellm_hosts``)."""
    if target.tier:
        out["tier"] = target.tier
    if target.hosting:
        out["hosting"] = target.hosting
    elif out["provider"] not in _CLOUD_PROVIDERS and out.get("base_url") and not \
            private_host(out["base_url"]):
        out["hosting"] = "cloud"
        notes.warn(f"{path}.api_base", "a public host, so hosting: cloud (the data guard "
                   "treats it as a cloud service)", "set hosting: self-hosted in the "
                   "native config if you run it")


def _azure_base(base: str, params: Mapping[str, Any], path: str, notes: Notes) -> str:
    """Azure OpenAI through its v1 API (``<resource>/openai/v1``, the deployment name as
    model, key as Bearer): no ``api-version`` and no per-deployment URL."""
    notes.warn(f"{path}.model", "azure/ is called through Azure OpenAI's v1 API "
               f"({base.rstrip('/')}/openai/v1; the deployment name is the model)",
               "the resource must offer the v1 API")
    if "api_version" in params:
        notes.ignored(f"{path}.api_version", "the v1 API takes no api-version")
    root = base.rstrip("/")
    for suffix in ("/openai/v1", "/openai"):
        root = root.removesuffix(suffix)
    return root + "/openai/v1"


def _limits(params: Mapping[str, Any], entry: Mapping[str, Any], path: str,
            notes: Notes) -> dict[str, Any]:
    """rpm, tpm, weight, max_parallel_requests, timeouts and region."""
    out: dict[str, Any] = {}
    for key, target, kind in (("rpm", "rpm", int), ("tpm", "tpm", int),
                              ("weight", "weight", float),
                              ("max_parallel_requests", "max_concurrency", int)):
        value = params.get(key, entry.get(key))
        if value is not None:
            out[target] = _number(value, f"{path}.{key}", kind)
    timeout, stream = params.get("timeout"), params.get("stream_timeout")
    if timeout is not None:
        out["timeout_s"] = _number(timeout, f"{path}.timeout", float)
    if stream is not None:
        if timeout is None:
            out["timeout_s"] = _number(stream, f"{path}.stream_timeout", float)
        notes.warn(f"{path}.stream_timeout", "modelmix has one attempt timeout for streamed "
                   "and whole answers (a stream: to the first chunk, then between chunks)"
                   + ("; timeout used" if timeout is not None else "; used for both"))
    region = params.get("region_name")
    if region:
        if not isinstance(region, str):
            raise ConfigError(f"{path}.region_name: expected a name")
        out["region"] = region
    return out


def _model_info(info: Mapping[str, Any], params: Mapping[str, Any],
                path: str) -> dict[str, Any]:
    """Mode, prices (USD per token x 1e6 = per 1M tokens), context, capabilities."""
    out: dict[str, Any] = {}
    for key, target in (("input_cost_per_token", "input_cost_per_mtok"),
                        ("output_cost_per_token", "output_cost_per_mtok")):
        value = info.get(key, params.get(key))
        if value is not None:
            out[target] = round(_number(value, f"{path}.{key}", float) * 1_000_000, 9)
    window = info.get("max_input_tokens")
    output = info.get("max_output_tokens", info.get("max_tokens"))
    if output is not None:
        out["max_output_tokens"] = _number(output, f"{path}.model_info.max_output_tokens", int)
    if window is not None:
        window = _number(window, f"{path}.model_info.max_input_tokens", int)
        out["context_window"] = max(window, out.get("max_output_tokens", 0))
    elif "max_output_tokens" in out:
        out["context_window"] = max(8192, out["max_output_tokens"])
    for key, (target, modality) in _SUPPORTS.items():
        if info.get(key) is True:
            if modality is None:
                out[target] = True
            else:
                out["input_modalities"] = [*out.get("input_modalities", ["text"]), modality]
    return out


_INFO_READ = frozenset({"mode", "id", "input_cost_per_token", "output_cost_per_token",
                        "max_input_tokens", "max_output_tokens", "max_tokens", *_SUPPORTS})


def _mode(info: Mapping[str, Any], model: str, path: str, notes: Notes) -> str | None:
    """``chat`` or ``embedding``; None (warned) for a mode modelmix does not serve."""
    mode = info.get("mode")
    if mode is None:
        return "embedding" if "embed" in model.lower() else "chat"
    if not isinstance(mode, str):
        raise ConfigError(f"{path}.model_info.mode: expected a name such as chat, got "
                          f"{Notes.shown(mode)}")
    if mode in ("chat", "completion", "responses"):
        return "chat"
    if mode == "embedding":
        return "embedding"
    notes.warn(f"{path}.model_info.mode", f"mode {Notes.shown(mode)} is not served by "
               "modelmix, entry skipped", "modelmix serves chat and embedding deployments")
    return None


def entry_deployment(entry: Any, path: str, env: Mapping[str, str],
                     notes: Notes) -> dict[str, Any] | None:
    """A deployment's fields (no ``name``) for one ``model_list`` entry at ``path``
    (``model_list[3]``); None when the entry cannot be served (the reason is in
    ``notes``). ``env`` resolves ``os.environ/`` values that are not keys.

    Raises:
        ConfigError: a malformed entry, or an API key written in the file.
    """
    if not isinstance(entry, dict) or not isinstance(entry.get("litellm_params"), dict):
        raise ConfigError(f"{path}: expected a mapping with model_name and litellm_params")
    params, info = entry["litellm_params"], entry.get("model_info") or {}
    if not isinstance(info, dict):
        raise ConfigError(f"{path}.model_info: expected a mapping")
    where = f"{path}.litellm_params"
    fields = _provider_fields(params, where, env, notes)
    mode = _mode(info, str(params.get("model")), path, notes) if fields else None
    if fields is None or mode is None:
        return None
    for part in (key_field(params, where), _limits(params, entry, where, notes),
                 headers_fields(params, where, notes), _model_info(info, params, path)):
        fields.update(part)
    if mode != "chat":
        fields["mode"] = mode
    for key in sorted(set(params) - _PARAMS_READ, key=str):
        notes.ignored(Notes.key(where, key), "modelmix sends the client's parameters as they "
                      "are and has no per-deployment default for this", "remove it, or "
                      "have clients send it")
    for key in sorted(set(info) - _INFO_READ, key=str):
        notes.ignored(Notes.key(f"{path}.model_info", key), "no modelmix field")
    for key in sorted(set(entry) - {"model_name", "litellm_params", "model_info", "rpm",
                                   "tpm"}, key=str):
        notes.ignored(Notes.key(path, key), "unknown entry field")
    return fields
