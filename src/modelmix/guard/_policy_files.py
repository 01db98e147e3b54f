"""Loading data policies: ready policies by name, YAML files, parsed mappings, and the
``$MODELMIX_POLICY`` override. Errors name the file, the rule and the field."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from modelmix.catalog._config import read_yaml_file
from modelmix.errors import ConfigError
from modelmix.guard._policy import POLICY_ENV, READY_POLICIES, Policy

__all__ = [
    "PolicyRef",
    "load_policy",
    "policy_from_dict",
    "ready_policy_path",
    "resolve_policy_ref",
]

PolicyRef = str | Mapping[str, Any]


def resolve_policy_ref(configured: PolicyRef | None,
                       env: Mapping[str, str] | None = None) -> PolicyRef | None:
    """The policy to use: ``$MODELMIX_POLICY`` when set (``none`` turns the guard off),
    else the config's ``policy``; None means no policy (every request allowed)."""
    env = os.environ if env is None else env
    override = (env.get(POLICY_ENV) or "").strip()
    if override:
        return None if override.lower() in ("none", "off") else override
    return configured


def ready_policy_path(name: str) -> Path:
    """The file of a ready policy. Raises ConfigError for an unknown name."""
    if name not in READY_POLICIES:
        raise ConfigError(f"unknown ready policy {name!r}; expected one of "
                          f"{', '.join(READY_POLICIES)} or a path to a policy file")
    return Path(str(resources.files("modelmix.guard").joinpath("policies", f"{name}.yaml")))


def load_policy(ref: str | os.PathLike[str] | Mapping[str, Any]) -> Policy:
    """A policy from a ready policy's name, a YAML file path, or a parsed mapping.

    Raises:
        ConfigError: unreadable file, bad YAML, or a validation failure; the message
            names the file, the rule and the field.
    """
    if isinstance(ref, Mapping):
        return policy_from_dict(ref, source="policy")
    text = os.fspath(ref)
    if text in READY_POLICIES:
        path = ready_policy_path(text)
    else:
        path = Path(text).expanduser()
        if not path.exists() and "/" not in text and not text.endswith((".yaml", ".yml")):
            ready_policy_path(text)  # raises: neither a ready policy nor a file
    return policy_from_dict(read_yaml_file(path, "policy"), source=str(path))


def policy_from_dict(raw: Any, *, source: str = "policy") -> Policy:
    """Validate a parsed policy. Raises ConfigError naming ``source``, rule and field."""
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: expected a mapping at the top level")
    try:
        return Policy.model_validate(dict(raw))
    except ValidationError as exc:
        name = raw.get("name")
        lines = [f"{source}: {_where(err['loc'], name)}: {err['msg']}" for err in exc.errors()]
        raise ConfigError("invalid policy\n  " + "\n  ".join(lines)) from exc


_RULE_TABLES = {"classes", "entities", "tags", "entity_classes"}


def _where(loc: Sequence[int | str], policy: object = None) -> str:
    """'rule "keys.k1.classes.regulated", field "hosting"' from a pydantic location;
    'policy "ours", pattern "PART_NUMBER", field "regex"' for a pattern."""
    parts = [str(p) for p in loc if not str(p).startswith("function-")]
    if parts[:1] == ["patterns"]:
        return _pattern_where(parts[1:], policy)
    depth = 0
    if len(parts) >= 3 and parts[0] in ("keys", "tenants") and parts[2] in _RULE_TABLES:
        depth = 4
    elif parts and parts[0] in _RULE_TABLES:
        depth = 2
    if depth and len(parts) >= depth:
        rule, rest = ".".join(parts[:depth]), ".".join(parts[depth:])
        return f'rule "{rule}", field "{rest}"' if rest else f'rule "{rule}"'
    return f'field "{".".join(parts)}"' if parts else "top level"


def _pattern_where(parts: Sequence[str], policy: object) -> str:
    """Where in ``patterns`` an error is: the policy, the pattern (``[1]`` for the second
    of a list) and the field."""
    where = [f'policy "{policy}"'] if isinstance(policy, str) and policy else []
    if not parts:
        return ", ".join([*where, 'field "patterns"'])
    name, rest = parts[0], list(parts[1:])
    if rest and rest[0].isdigit():
        index = rest.pop(0)
        name += f"[{index}]" if index != "0" else ""
    where.append(f'pattern "{name}"')
    if rest:
        where.append(f'field "{".".join(rest)}"')
    return ", ".join(where)
