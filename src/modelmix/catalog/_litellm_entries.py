"""One LiteLLM ``model_list`` entry as a modelmix deployment (docs/litellm.md).

An entry's ``litellm_params.model`` names the provider by a prefix (``anthropic/...``);
a bare name is OpenAI's, as LiteLLM infers (``claude-*``: Anthropic). ``api_base``,
``os.environ/NAME`` keys, limits, timeouts, headers and ``model_info`` become the
deployment's fields; anything without a modelmix meaning becomes a warning naming its
path. A key written in the file itself is refused (:class:`~modelmix.errors.ConfigError`):
modelmix reads keys from the environment only, and never copies one into another file.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from modelmix.errors import ConfigError

__all__ = ["ENV_PREFIX", "Notes", "entry_deployment", "env_name"]

#: How LiteLLM writes "read this value from the environment".
ENV_PREFIX = "os.environ/"


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


@dataclass
class Notes:
    """Warnings collected while converting, one line each: where, why, what to do."""

    lines: list[str] = field(default_factory=list)

    def warn(self, path: str, why: str, todo: str = "") -> None:
        self.lines.append(f"{path}: {why}" + (f"; {todo}" if todo else ""))

    def ignored(self, path: str, why: str, todo: str = "") -> None:
        self.warn(path, f"not mapped ({why})", todo)


def env_name(value: Any) -> str | None:
    """``NAME`` for a LiteLLM ``os.environ/NAME`` value, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):].strip() or None
    return None


def _resolved(value: Any, path: str, env: Mapping[str, str], notes: Notes) -> Any:
    """A non-secret value, read from the environment now when written ``os.environ/X``.

    Raises:
        ConfigError: the variable is unset.
    """
    name = env_name(value)
    if name is None:
        return value
    if name not in env:
        raise ConfigError(f"{path}: {value} is unset; export {name} or write the value")
    notes.warn(path, f"read from ${name} when the config was loaded (modelmix keeps only "
                     "keys in the environment)")
    return env[name]


def _number(value: Any, path: str, kind: type[int] | type[float]) -> Any:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{path}: expected a number, got {type(value).__name__}")
    try:
        return kind(value)
    except ValueError:
        raise ConfigError(f"{path}: expected a number, got {value!r}") from None


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


def _private_host(url: str) -> bool:
    """Whether ``url``'s host is this machine or a private network (not a cloud API)."""
    from urllib.parse import urlsplit

    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost" or "." not in host or host.endswith(
            (".local", ".internal", ".lan", ".svc", ".cluster.local")):
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    return address.is_private or address.is_loopback or address.is_link_local


def _bare_target(model: str, base: str | None) -> _Target:
    """What LiteLLM infers for a bare name or ``openai/`` with ``api_base``: Anthropic for
    a bare ``claude-*``, else OpenAI (an ``api_base`` elsewhere: that OpenAI-compatible
    server, as LiteLLM's docs use ``openai/`` for any)."""
    if model.startswith("claude") and not base:
        return PREFIXES["anthropic"]
    if base and "api.openai.com" not in base:
        return _Target("openai-compatible")
    return PREFIXES["openai"]


def _provider_fields(params: Mapping[str, Any], path: str, env: Mapping[str, str],
                     notes: Notes) -> dict[str, Any] | None:
    """provider, model, base_url, tier, hosting; None (with a warning) when unsupported."""
    prefix, model = _split_model(params, path)
    base = params.get("api_base")
    base = _resolved(base, f"{path}.api_base", env, notes) if base is not None else None
    if prefix is None or (prefix == "openai" and base):
        target = _bare_target(model, base)
    elif prefix in PREFIXES:
        target = PREFIXES[prefix]
    else:
        notes.warn(f"{path}.model", f"LiteLLM provider {prefix!r} is not supported, entry "
                   "skipped", "serve it through an OpenAI-compatible endpoint (openai/ with "
                   "api_base) or a provider in docs/configuration.md#providers")
        return None
    if target.needs_base and not base:
        notes.warn(f"{path}.api_base", f"{prefix}/ needs api_base, entry skipped",
                   "set api_base to the server's URL")
        return None
    out: dict[str, Any] = {"provider": target.provider, "model": model}
    if prefix == "azure":
        out["base_url"] = _azure_base(str(base), params, path, notes)
    elif prefix in ("ollama", "ollama_chat") and base:
        out["base_url"] = str(base).rstrip("/").removesuffix("/v1") + "/v1"
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
    """Tier and hosting: the target's, else cloud for an OpenAI-compatible server that is
    not on this machine or a private network (the data guard trusts ``self-hosted``)."""
    if target.tier:
        out["tier"] = target.tier
    if target.hosting:
        out["hosting"] = target.hosting
    elif out["provider"] in ("openai-compatible", "vllm") and not _private_host(
            out.get("base_url") or ""):
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


def _key_field(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``api_key: os.environ/NAME`` -> ``api_key_env: NAME``.

    Raises:
        ConfigError: a key written in the file (its value is never shown).
    """
    if "api_key" not in params or params["api_key"] in (None, ""):
        return {}
    name = env_name(params["api_key"])
    if name is None:
        raise ConfigError(f"{path}.api_key: a key written in the config file is refused (it "
                          "would be copied into logs and files); export it, e.g. "
                          "MY_API_KEY=..., and write api_key: os.environ/MY_API_KEY")
    return {"api_key_env": name}


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
    if params.get("region_name"):
        out["region"] = str(params["region_name"])
    return out


def _headers(params: Mapping[str, Any], path: str, notes: Notes) -> dict[str, Any]:
    """``extra_headers`` / ``headers`` -> ``headers`` (values read from the environment
    are not copied: a header often carries a credential)."""
    out: dict[str, str] = {}
    for key in ("headers", "extra_headers"):
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}.{key}: expected a mapping of header names to values")
        for name, text in value.items():
            if env_name(text) is not None:
                notes.ignored(f"{path}.{key}.{name}", "modelmix headers are literal and an "
                              "environment value may be a secret", "set it at the upstream "
                              "or use api_key: os.environ/NAME for a Bearer key")
                continue
            out[str(name)] = str(text)
    return {"headers": out} if out else {}


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
    if mode in ("chat", "completion", "responses"):
        return "chat"
    if mode == "embedding":
        return "embedding"
    notes.warn(f"{path}.model_info.mode", f"mode {mode!r} is not served by modelmix, entry "
               "skipped", "modelmix serves chat and embedding deployments")
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
    for part in (_key_field(params, where), _limits(params, entry, where, notes),
                 _headers(params, where, notes), _model_info(info, params, path)):
        fields.update(part)
    if mode != "chat":
        fields["mode"] = mode
    for key in sorted(set(params) - _PARAMS_READ):
        notes.ignored(f"{where}.{key}", "modelmix sends the client's parameters as they "
                      "are and has no per-deployment default for this", "remove it, or "
                      "have clients send it")
    for key in sorted(set(info) - _INFO_READ):
        notes.ignored(f"{path}.model_info.{key}", "no modelmix field")
    for key in sorted(set(entry) - {"model_name", "litellm_params", "model_info", "rpm",
                                   "tpm"}):
        notes.ignored(f"{path}.{key}", "unknown entry field")
    return fields
