"""A LiteLLM proxy ``config.yaml`` as a native modelmix config (docs/litellm.md).

:func:`convert_litellm` turns the parsed file into the dict modelmix validates, plus one
warning per setting it does not map (its path, why, what to do). ``load_config`` does
this for any file with a top-level ``model_list``; ``modelmix config import-litellm``
writes the result as YAML.

Entries sharing a ``model_name`` become a group of that name, balanced by
``router_settings.routing_strategy`` (:func:`~modelmix.catalog.litellm_strategy`); a
``model_name`` with one entry becomes a deployment of that name, so clients send the same
``model`` as before. ``fallbacks`` keep their names (a group's fallbacks are tried after
all its members). Keys (``api_key``, ``master_key``) must be ``os.environ/NAME``: a key
written in the file is refused, never copied.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from typing import Any

from modelmix.catalog._litellm import litellm_strategy
from modelmix.catalog._litellm_entries import entry_deployment
from modelmix.catalog._litellm_notes import Notes
from modelmix.catalog._litellm_settings import settings_fields
from modelmix.catalog._models import BUILTIN_GROUPS
from modelmix.errors import ConfigError

__all__ = ["convert_litellm", "is_litellm_config"]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]*$")
_TOP_LEVEL = {"model_list", "router_settings", "litellm_settings", "general_settings",
              "environment_variables"}


def is_litellm_config(raw: Any) -> bool:
    """Whether a parsed YAML document is a LiteLLM proxy config (top-level ``model_list``)."""
    return isinstance(raw, dict) and "model_list" in raw


def convert_litellm(raw: Mapping[str, Any], *, env: Mapping[str, str] | None = None
                    ) -> tuple[dict[str, Any], list[str]]:
    """(native config dict, warnings) for a parsed LiteLLM config.

    ``env`` (default ``os.environ``) resolves ``os.environ/NAME`` values that are not keys
    (``api_base``); keys stay names (``api_key_env``, ``server.master_key_env``).

    Raises:
        ConfigError: no usable ``model_list``, a malformed entry, a key written in the
            file, an unknown ``routing_strategy``; the message names the path.

    Example::

        >>> native, warnings = convert_litellm({"model_list": [{"model_name": "gpt-4o",
        ...     "litellm_params": {"model": "openai/gpt-4o",
        ...                        "api_key": "os.environ/OPENAI_API_KEY"}}]})
        >>> native["deployments"][0]["api_key_env"]
        'OPENAI_API_KEY'
    """
    env = os.environ if env is None else env
    notes = Notes()
    by_name = _entries(raw.get("model_list"), env, notes)
    if not by_name:
        raise ConfigError("model_list: no entry could be served by modelmix\n  "
                          + "\n  ".join(notes.lines or ["model_list is empty"]))
    router = _section(raw, "router_settings")
    native: dict[str, Any] = {}
    deployments, members = _named(by_name)
    native["deployments"] = deployments
    strategy = _strategy(router.get("routing_strategy"))
    groups: dict[str, Any] = {name: {"strategy": strategy, "members": names}
                              for name, names in members.items() if name in _grouped(by_name)}
    taken = {d["name"] for d in deployments}
    groups.update(_aliases(router.get("model_group_alias"), members, groups, taken, notes))
    if groups:
        native["groups"] = groups
    litellm = _section(raw, "litellm_settings")
    fallbacks = _fallbacks(router.get("fallbacks", litellm.get("fallbacks")), members, notes)
    if fallbacks:
        native["fallbacks"] = fallbacks
    native.update(settings_fields(router, litellm, _section(raw, "general_settings"), notes))
    _environment(raw.get("environment_variables"), notes)
    for key in sorted(set(raw) - _TOP_LEVEL, key=str):
        notes.ignored(Notes.key("", key), "not a LiteLLM proxy setting modelmix knows")
    return native, notes.lines


def _section(raw: Mapping[str, Any], key: str) -> dict[str, Any]:
    value = raw.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(f"{key}: expected a mapping")
    return value


def _strategy(name: Any) -> str:
    if name is not None and not isinstance(name, str):
        raise ConfigError("router_settings.routing_strategy: expected a name")
    return litellm_strategy(name)


def _entries(model_list: Any, env: Mapping[str, str],
             notes: Notes) -> dict[str, list[dict[str, Any]]]:
    """The servable entries by ``model_name``, in file order (``model_info.id`` kept
    under ``_id`` for naming)."""
    if not isinstance(model_list, list):
        raise ConfigError("model_list: expected a list of {model_name, litellm_params}")
    by_name: dict[str, list[dict[str, Any]]] = {}
    for index, entry in enumerate(model_list):
        path = f"model_list[{index}]"
        fields = entry_deployment(entry, path, env, notes)
        if fields is None:
            continue
        name = entry.get("model_name")
        if not isinstance(name, str) or not _NAME.match(name) or name in BUILTIN_GROUPS:
            why = ("is reserved by modelmix" if name in BUILTIN_GROUPS else
                   "is not a name modelmix serves (letters, digits and ._:/-; wildcards "
                   "are not supported)")
            notes.warn(f"{path}.model_name", f"{Notes.shown(name)} {why}, entry skipped",
                       "give the entry a name clients send as model")
            continue
        info = entry.get("model_info") or {}
        by_name.setdefault(name, []).append({**fields, "_id": info.get("id")})
    return by_name


def _grouped(by_name: Mapping[str, list[dict[str, Any]]]) -> set[str]:
    return {name for name, entries in by_name.items() if len(entries) > 1}


def _named(by_name: Mapping[str, list[dict[str, Any]]]
           ) -> tuple[list[dict[str, Any]], dict[str, list[str]]]:
    """(deployments with names, model_name -> its deployments' names). One entry: the
    ``model_name`` itself; several: each entry's ``model_info.id`` when it is a free valid
    name, else ``<model_name>-<n>``."""
    taken = set(by_name) | set(BUILTIN_GROUPS)
    deployments: list[dict[str, Any]] = []
    members: dict[str, list[str]] = {}
    for name, entries in by_name.items():
        names = members.setdefault(name, [])
        for number, entry in enumerate(entries, start=1):
            fields = {k: v for k, v in entry.items() if k != "_id"}
            chosen = name if len(entries) == 1 else _member_name(entry["_id"], name,
                                                                 number, taken)
            taken.add(chosen)
            names.append(chosen)
            deployments.append({"name": chosen, **fields})
    return deployments, members


def _member_name(wanted: Any, group: str, number: int, taken: set[str]) -> str:
    if isinstance(wanted, str) and _NAME.match(wanted) and wanted not in taken:
        return wanted
    candidate, extra = f"{group}-{number}", 1
    while candidate in taken:
        extra += 1
        candidate = f"{group}-{number}-{extra}"
    return candidate


def _aliases(table: Any, members: Mapping[str, list[str]], groups: Mapping[str, Any],
             taken: set[str], notes: Notes) -> dict[str, Any]:
    """``router_settings.model_group_alias`` -> groups (ordered) of the aliased names;
    an alias that is already a model or deployment name (``taken``) is skipped, warned.

    Raises:
        ConfigError: not a mapping, or a target that is not a name.
    """
    if not table:
        return {}
    if not isinstance(table, dict):
        raise ConfigError("router_settings.model_group_alias: expected a mapping")
    out: dict[str, Any] = {}
    for alias, target in table.items():
        path = Notes.key("router_settings.model_group_alias", alias)
        if isinstance(target, dict):
            if target.get("hidden"):
                notes.ignored(f"{path}.hidden", "modelmix lists every group in /v1/models")
            target = target.get("model")
        if not isinstance(target, str):
            raise ConfigError(f"{path}: expected a model_name (or {{model: NAME}}), got "
                              f"{Notes.shown(target)}")
        if target not in members:
            notes.warn(path, f"names no model_name {Notes.shown(target)}, alias skipped")
        elif (alias in members or alias in groups or alias in taken
              or not _NAME.match(str(alias))):
            notes.warn(path, f"alias {Notes.shown(alias)} is already a model or deployment "
                             "name, or not a valid one; skipped")
        else:
            out[str(alias)] = {"strategy": groups[target]["strategy"],
                               "members": list(members[target])} if target in groups \
                else list(members[target])
    return out


def _fallbacks(table: Any, members: Mapping[str, list[str]],
               notes: Notes) -> dict[str, list[str]]:
    """``[{"gpt-4o": ["claude"]}]`` -> ``{"gpt-4o": [<claude's deployments>]}``.

    Raises:
        ConfigError: not a list of mappings, or a target that is not a name.
    """
    if not table:
        return {}
    if not isinstance(table, list) or not all(isinstance(x, dict) for x in table):
        raise ConfigError('router_settings.fallbacks: expected a list of {"model": '
                          '["fallback", ...]}')
    out: dict[str, list[str]] = {}
    for index, item in enumerate(table):
        for source, targets in item.items():
            path = Notes.key(f"router_settings.fallbacks[{index}]", source)
            if source not in members:
                notes.warn(path, f"names no model_name {Notes.shown(source)}, skipped")
                continue
            chain = out.setdefault(str(source), [])
            for target in targets if isinstance(targets, list) else [targets]:
                if not isinstance(target, str):
                    raise ConfigError(f"{path}: expected model names, got "
                                      f"{Notes.shown(target)}")
                if target not in members:
                    notes.warn(path, f"fallback {Notes.shown(target)} names no model_name, "
                               "skipped")
                    continue
                chain.extend(n for n in members[target]
                             if n not in chain and n not in members[source])
    return {k: v for k, v in out.items() if v}


def _environment(table: Any, notes: Notes) -> None:
    """``environment_variables``: LiteLLM sets them at start; modelmix reads the real
    environment only (values never echoed: they are often keys)."""
    if not table:
        return
    names = sorted(str(k) for k in table) if isinstance(table, dict) else []
    notes.ignored("environment_variables", "modelmix does not set environment variables "
                  "from its config", f"export {', '.join(names) or 'them'} before starting")
