"""The modelmix config: catalog of deployments plus groups and settings, loaded from YAML."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelmix.catalog._models import (
    Deployment,
    ReliabilitySettings,
    ServerSettings,
    StoreSettings,
)
from modelmix.errors import ConfigError

__all__ = ["Availability", "Config", "load_config"]

#: Group names modelmix gives a meaning to even when the config does not define them.
BUILTIN_GROUPS = ("auto", "open", "proprietary")


class Availability(BaseModel):
    """Whether a deployment can be called now and, if not, why."""

    model_config = ConfigDict(frozen=True)

    available: bool
    reason: str = ""


class Config(BaseModel):
    """A whole modelmix config.

    ``groups`` maps a model alias (what clients send as ``model``) to an ordered list of
    deployment names; the first available one serves and the others are fallbacks.
    ``auto`` (the rule router), ``open`` and ``proprietary`` exist without being defined.
    ``fallbacks`` maps a deployment name to the deployments tried when it fails.

    Example::

        cfg = Config.model_validate({"deployments": [
            {"name": "local", "provider": "openai-compatible",
             "base_url": "http://127.0.0.1:8000/v1", "model": "llama"}]})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: tuple[Deployment, ...] = Field(min_length=1)
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    router: str = "rules"
    reliability: ReliabilitySettings = ReliabilitySettings()
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    log_prompts: bool = False

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment names: {dupes}")
        known = set(names)
        for where, table in (("groups", self.groups), ("fallbacks", self.fallbacks)):
            for key, members in table.items():
                missing = [m for m in members if m not in known]
                if missing:
                    raise ValueError(f"{where}.{key} names unknown deployments {missing}")
                if where == "groups" and key in known:
                    raise ValueError(f"group {key!r} has the same name as a deployment")
        return self

    def deployment(self, name: str) -> Deployment:
        """The deployment called ``name``. Raises KeyError when there is none."""
        for dep in self.deployments:
            if dep.name == name:
                return dep
        raise KeyError(name)

    def model_names(self) -> list[str]:
        """Every name a client may send as ``model``: deployments, then groups."""
        groups = [g for g in BUILTIN_GROUPS if g not in self.groups] + list(self.groups)
        return [d.name for d in self.deployments] + groups

    def availability(self, dep: Deployment) -> Availability:
        """A deployment whose API key variable is unset is unavailable (not an error)."""
        if dep.api_key_env and not dep.api_key():
            return Availability(available=False, reason=f"{dep.api_key_env} is not set")
        if dep.provider == "local":
            from modelmix.providers.local import local_model_status

            ok, why = local_model_status(dep)
            return Availability(available=ok, reason=why)
        return Availability(available=True)


def _describe_location(raw: dict[str, Any], loc: Iterable[int | str]) -> str:
    """Turn a pydantic error location into 'deployment "x", field "y"'."""
    parts = list(loc)
    if len(parts) >= 2 and parts[0] == "deployments" and isinstance(parts[1], int):
        deps = raw.get("deployments") or []
        idx = parts[1]
        name = None
        if isinstance(deps, list) and idx < len(deps) and isinstance(deps[idx], dict):
            name = deps[idx].get("name")
        label = f'deployment "{name}"' if name else f"deployment #{idx + 1}"
        rest = [str(p) for p in parts[2:] if not str(p).startswith("function-")]
        return f"{label}, field \"{'.'.join(rest)}\"" if rest else label
    return f"field \"{'.'.join(str(p) for p in parts)}\"" if parts else "top level"


def config_from_dict(raw: Any, *, source: str = "<config>") -> Config:
    """Validate a parsed config. Raises ConfigError naming source, deployment and field."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Config.model_validate(raw)
    except ValidationError as exc:
        errors = exc.errors()
        item_errors = any(len(e["loc"]) > 1 and e["loc"][0] == "deployments" for e in errors)
        lines = []
        for err in errors:
            if item_errors and tuple(err["loc"]) == ("deployments",) and err["type"] == "too_short":
                continue  # a consequence of the item errors already listed
            where = _describe_location(raw, err["loc"])
            lines.append(f"{source}: {where}: {err['msg']}")
        raise ConfigError("invalid config\n  " + "\n  ".join(lines)) from exc


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a YAML config; with no path, the embedded default catalog.

    Raises:
        ConfigError: the file is missing, is not YAML, or fails validation; the message
            names the file, the deployment and the field.
    """
    if path is None:
        from modelmix.catalog._default import default_config

        return default_config()
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read config: {exc.strerror}") from exc
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    return config_from_dict(raw, source=str(file))
