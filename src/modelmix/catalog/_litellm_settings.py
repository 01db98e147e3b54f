"""LiteLLM's ``router_settings``, ``litellm_settings`` and ``general_settings`` as
modelmix's ``reliability``, ``server`` and ``store`` (docs/litellm.md).

Retries, timeouts and cooldowns map where they mean the same; the master key and the
database URL map when read from the environment. Every other setting is a warning that
says why it has no modelmix meaning and where the equivalent lives, if anywhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from modelmix.catalog._litellm_notes import Notes, env_var
from modelmix.catalog._litellm_secrets import credential_url
from modelmix.errors import ConfigError

__all__ = ["settings_fields"]

#: Why a LiteLLM setting is not mapped, and what to do instead (any section).
_REASONS: dict[str, tuple[str, str]] = {
    "drop_params": ("modelmix does not drop parameters: one an upstream rejects comes "
                    "back to the client as the upstream's error", "remove it"),
    "success_callback": ("LiteLLM callbacks do not exist in modelmix",
                         "use OpenTelemetry traces and /metrics (docs/observability.md)"),
    "failure_callback": ("LiteLLM callbacks do not exist in modelmix",
                         "use OpenTelemetry traces and /metrics (docs/observability.md)"),
    "callbacks": ("LiteLLM callbacks do not exist in modelmix",
                  "use OpenTelemetry traces and /metrics (docs/observability.md)"),
    "cache": ("modelmix has its own response cache", "set cache.mode (docs/cache.md)"),
    "cache_params": ("modelmix has its own response cache", "set cache (docs/cache.md)"),
    "cache_responses": ("modelmix has its own response cache", "set cache.mode "
                        "(docs/cache.md)"),
    "set_verbose": ("logging is set on the command line", "use --log-level"),
    "json_logs": ("logging is set on the command line", "use --log-format json"),
    "context_window_fallbacks": ("modelmix removes deployments whose context_window is too "
                                 "small before routing, so a group's larger members serve",
                                 "put the larger models in the same group or fallbacks"),
    "content_policy_fallbacks": ("modelmix does not detect upstream content-policy "
                                 "refusals", "list the model in fallbacks to retry it on "
                                 "any failure"),
    "default_fallbacks": ("modelmix fallbacks are per model name",
                          "list them under fallbacks for each model"),
    "redis_host": ("shared state is one URL", "set state.redis_url or MODELMIX_REDIS_URL "
                   "(docs/deploy.md)"),
    "redis_port": ("shared state is one URL", "set state.redis_url or MODELMIX_REDIS_URL"),
    "redis_password": ("shared state is one URL", "put it in MODELMIX_REDIS_URL"),
    "redis_url": ("a Redis URL may hold a password", "set MODELMIX_REDIS_URL"),
    "enable_pre_call_checks": ("modelmix always checks context windows and capabilities "
                               "before calling", "remove it"),
    "stream_timeout": ("one attempt timeout covers streams (to the first chunk, then "
                       "between chunks)", "set reliability.attempt_timeout_s"),
    "retry_after": ("modelmix backs off with full jitter and honours Retry-After",
                    "set reliability.backoff_base_s"),
}
_DEFAULT_REASON = ("no modelmix equivalent", "remove it, or see docs/litellm.md")

#: Keys of each section read by :func:`settings_fields` or convert_litellm.
_ROUTER_READ = {"routing_strategy", "fallbacks", "model_group_alias", "num_retries",
                "timeout", "allowed_fails", "cooldown_time"}
_LITELLM_READ = {"num_retries", "request_timeout", "fallbacks"}
_GENERAL_READ = {"master_key", "database_url"}


def settings_fields(router: Mapping[str, Any], litellm: Mapping[str, Any],
                    general: Mapping[str, Any], notes: Notes) -> dict[str, Any]:
    """``reliability`` / ``server`` / ``store`` sections (only those with something set).

    Raises:
        ConfigError: a master key written in the file, or a non-numeric setting.
    """
    out: dict[str, Any] = {}
    reliability = _reliability(router, litellm, notes)
    if reliability:
        out["reliability"] = reliability
    server = _master_key(general.get("master_key"))
    if server:
        out["server"] = server
    store = _store(general.get("database_url"), notes)
    if store:
        out["store"] = store
    if "fallbacks" in router and "fallbacks" in litellm:
        notes.ignored("litellm_settings.fallbacks", "router_settings.fallbacks wins")
    for section, table, read in (("router_settings", router, _ROUTER_READ),
                                 ("litellm_settings", litellm, _LITELLM_READ),
                                 ("general_settings", general, _GENERAL_READ)):
        for key in sorted(set(table) - read, key=str):
            why, todo = _REASONS.get(str(key), _DEFAULT_REASON)
            notes.ignored(Notes.key(section, key), why, todo)
    return out


def _number(value: Any, path: str) -> float:
    """``value`` as a finite float.

    Raises:
        ConfigError: not a number, or NaN / infinite (``"nan"``, ``"1e400"``).
    """
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigError(f"{path}: expected a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{path}: expected a number, got {Notes.shown(value)}") from None
    if not math.isfinite(number):
        raise ConfigError(f"{path}: expected a finite number, got {Notes.shown(value)}")
    return number


def _setting(router: Mapping[str, Any], litellm: Mapping[str, Any], key: str,
             litellm_key: str) -> tuple[str, float] | None:
    """(path, value) from router_settings, else litellm_settings."""
    if router.get(key) is not None:
        return f"router_settings.{key}", _number(router[key], f"router_settings.{key}")
    if litellm.get(litellm_key) is not None:
        path = f"litellm_settings.{litellm_key}"
        return path, _number(litellm[litellm_key], path)
    return None


def _reliability(router: Mapping[str, Any], litellm: Mapping[str, Any],
                 notes: Notes) -> dict[str, Any]:
    """Retries, attempt timeout, circuit breaker."""
    out: dict[str, Any] = {}
    retries = _setting(router, litellm, "num_retries", "num_retries")
    if retries is not None:
        out["num_retries"] = min(10, max(0, int(retries[1])))
        if retries[1] > 10:
            notes.warn(retries[0], "modelmix retries a deployment at most 10 times; 10 used")
    timeout = _setting(router, litellm, "timeout", "request_timeout")
    if timeout is not None and timeout[1] > 0:
        out["attempt_timeout_s"] = timeout[1]
        out["timeout_s"] = max(600.0, timeout[1])
    breaker: dict[str, Any] = {}
    if router.get("allowed_fails") is not None:
        fails = int(_number(router["allowed_fails"], "router_settings.allowed_fails"))
        breaker["failure_threshold"] = max(1, fails + 1)
        notes.warn("router_settings.allowed_fails", f"mapped to circuit_breaker."
                   f"failure_threshold {fails + 1}: modelmix opens a deployment's circuit "
                   "after that many consecutive failures, LiteLLM after that many in a "
                   "minute")
    if router.get("cooldown_time") is not None:
        cooldown = _number(router["cooldown_time"], "router_settings.cooldown_time")
        if cooldown > 0:
            breaker["cooldown_s"] = cooldown
    if breaker:
        out["circuit_breaker"] = breaker
    return out


def _master_key(value: Any) -> dict[str, Any]:
    """``os.environ/NAME`` -> ``{master_key_env: NAME}``.

    Raises:
        ConfigError: a key written in the file (never shown).
    """
    if value in (None, ""):
        return {}
    name = env_var(value, "general_settings.master_key")
    if name is None:
        raise ConfigError("general_settings.master_key: a master key written in the config "
                          "file is refused (it would be copied into logs and files); export "
                          "it, e.g. LITELLM_MASTER_KEY=sk-..., and write master_key: "
                          "os.environ/LITELLM_MASTER_KEY")
    return {"master_key_env": name}


def _store(value: Any, notes: Notes) -> dict[str, Any]:
    """``database_url`` -> ``store.url`` when written without a password (in the user
    part or the query: ``?password=``, ``?sslpassword=``)."""
    if value in (None, ""):
        return {}
    if not isinstance(value, str):
        raise ConfigError("general_settings.database_url: expected a URL")
    path = "general_settings.database_url"
    tables = "modelmix keeps its own tables there; LiteLLM's keys and spend are not read"
    name = env_var(value, path)
    if name is not None:
        notes.ignored(path, f"read from ${name}; {tables}",
                      f"export MODELMIX_DB_URL=\"${name}\" (as postgresql+psycopg://...)")
        return {}
    text = value
    if credential_url(text):
        notes.ignored(path, "the URL holds a password, which modelmix does not copy",
                      "export MODELMIX_DB_URL=postgresql+psycopg://... instead")
        return {}
    try:
        parts = urlsplit(text)
    except ValueError:
        raise ConfigError(f"{path}: not a URL") from None
    if parts.scheme in ("postgresql", "postgres"):
        text = "postgresql+psycopg" + text[len(parts.scheme):]
    notes.warn(path, f"used as store.url; {tables}")
    return {"url": text}
