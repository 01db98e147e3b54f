"""The modelmix config: catalog of deployments plus groups and settings, loaded from YAML."""

from __future__ import annotations

import io
import logging
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails

from modelmix.catalog._litellm_import import convert_litellm, is_litellm_config
from modelmix.catalog._models import (
    BALANCE_STRATEGIES,
    BUILTIN_GROUPS,
    CacheSettings,
    Deployment,
    LearnedRouterSettings,
    MediaSettings,
    ReliabilitySettings,
    ServerSettings,
    StateSettings,
    StoreSettings,
)
from modelmix.catalog._yaml import safe_load_bounded
from modelmix.errors import ConfigError

__all__ = ["CONFIG_ENV", "Availability", "Config", "config_from_dict", "config_from_env",
           "load_config"]

_log = logging.getLogger("modelmix.catalog")

#: What a system's name may be (it appears in model names, headers and metric labels).
SYSTEM_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")

#: Friendlier wording for pydantic's type errors, by error type: YAML speaks of lists
#: and mappings, not tuples and dictionaries.
_MESSAGES = {
    "tuple_type": "Input should be a list",
    "list_type": "Input should be a list",
    "dict_type": "Input should be a mapping",
    "model_type": "Input should be a mapping",
    "model_attributes_type": "Input should be a mapping",
}


class Availability(BaseModel):
    """Whether a deployment can be called now and, if not, why."""

    model_config = ConfigDict(frozen=True)

    available: bool
    reason: str = ""


class Config(BaseModel):
    """A whole modelmix config.

    ``groups`` maps a model alias (what clients send as ``model``) to an ordered list of
    deployment names; the first available one serves and the others are fallbacks.
    ``auto`` (the learned router), ``open`` and ``proprietary`` exist without being defined.
    ``fallbacks`` maps a deployment name to the deployments tried when it fails, or a
    group's name to those tried after all its members.
    ``router`` names the strategy of ``auto``: a key of
    :data:`modelmix.routing.STRATEGIES` (``learned``, ``rules``, ``cheapest``, ``random``,
    ``ordered``); ``learned_router`` holds the learned router's settings. Only registered
    strategies pass, so a config never names one that would fail at request time; a new
    strategy becomes valid by registering itself in ``STRATEGIES`` when
    :mod:`modelmix.routing` is imported (as the learned router does).

    Example::

        cfg = Config.model_validate({"deployments": [
            {"name": "local", "provider": "openai-compatible",
             "base_url": "http://127.0.0.1:8000/v1", "model": "llama"}]})
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    deployments: tuple[Deployment, ...] = Field(min_length=1)
    groups: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    #: Load-balancing strategy of a group (one of BALANCE_STRATEGIES; ``ordered`` when
    #: absent). Written in YAML as ``groups: {chat: {strategy: least-busy, members:
    #: [a, b]}}``; the list form ``groups: {chat: [a, b]}`` is ``ordered``.
    group_strategies: dict[str, str] = Field(default_factory=dict)
    fallbacks: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    router: str = "learned"
    learned_router: LearnedRouterSettings = LearnedRouterSettings()
    reliability: ReliabilitySettings = ReliabilitySettings()
    server: ServerSettings = ServerSettings()
    store: StoreSettings = StoreSettings()
    media: MediaSettings = MediaSettings()
    state: StateSettings = StateSettings()
    cache: CacheSettings = CacheSettings()
    log_prompts: bool = False
    #: Data policy (docs/guard.md): a ready policy's name (``healthcare``, ``finance``,
    #: ``eu-residency``), a policy file's path or an inline mapping; ``MODELMIX_POLICY``
    #: overrides it. None: no guard, every request may go to every deployment.
    policy: str | dict[str, Any] | None = None
    #: How the guard finds names when a policy is set: ``none`` (gazetteers and cues, about
    #: 1 ms per 1,000 characters) or ``presidio`` (adds Presidio's spaCy NER: better on
    #: lower-case and unfamiliar names, ~35 ms per 1,000 characters; needs the ``guard``
    #: extra). benchmarks/guard/RESULTS.md compares them.
    guard_ner: Literal["none", "presidio"] = "none"
    #: Systems of models by name (docs/systems.md), called as ``model: "system/<name>"``;
    #: shapes only here: the engine builds and checks them (modelmix.systems).
    systems: dict[str, dict[str, Any]] = Field(default_factory=dict)
    #: YAML files or directories of them holding more ``systems:``, relative to this
    #: catalog's file; ``builtin`` names the blueprints shipped with modelmix.
    include_systems: tuple[str, ...] = ()
    _source: str = PrivateAttr(default="<config>")

    @property
    def source(self) -> str:
        """Where this catalog came from (its file, or ``<config>``), for error messages."""
        return self._source

    def updated(self, source: str | None = None, **fields: Any) -> Config:
        """A copy with ``fields`` replaced (not re-validated: pass valid values), said to
        come from ``source`` when given (e.g. ``"cat.yaml (--policy)"``)."""
        copy = self.model_copy(update=fields)
        copy._source = source if source is not None else self._source
        return copy

    @model_validator(mode="before")
    @classmethod
    def _group_mappings(cls, data: Any) -> Any:
        """``groups: {g: {strategy: s, members: [...]}}`` -> ``groups`` +
        ``group_strategies``."""
        if not isinstance(data, dict) or not isinstance(data.get("groups"), dict):
            return data
        groups, strategies = {}, dict(data.get("group_strategies") or {})
        for name, value in data["groups"].items():
            if isinstance(value, dict):
                extra = sorted(set(value) - {"strategy", "members"})
                if extra:
                    raise ValueError(f"groups.{name}: unknown fields {extra}; a group is a "
                                     "list of deployments or {strategy, members}")
                if "strategy" in value:
                    strategies[name] = value["strategy"]
                value = value.get("members")
            groups[name] = value
        return {**data, "groups": groups, "group_strategies": strategies}

    @model_validator(mode="after")
    def _references_exist(self) -> Config:
        names = [d.name for d in self.deployments]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate deployment names: {dupes}")
        known = set(names)
        judge = self.learned_router.judge
        if judge is not None and judge not in known:
            raise ValueError(f"learned_router.judge names unknown deployment {judge!r}")
        for where, table in (("groups", self.groups), ("fallbacks", self.fallbacks)):
            for key, members in table.items():
                missing = [m for m in members if m not in known]
                if missing:
                    raise ValueError(f"{where}.{key} names unknown deployments {missing}")
        bad = sorted(n for n in self.systems if not SYSTEM_NAME.match(n))
        if bad:
            raise ValueError(f"system names are letters, digits and ._- (not {bad})")
        _check_modes(self)
        for key, members in self.groups.items():
            if key in known:
                raise ValueError(f"group {key!r} has the same name as a deployment")
            if not members:
                raise ValueError(f"group {key!r} is empty; list at least one deployment")
        for key, strategy in self.group_strategies.items():
            if key not in self.groups:
                raise ValueError(f"group_strategies names unknown group {key!r}")
            if strategy not in BALANCE_STRATEGIES:
                raise ValueError(f"group {key!r}: unknown strategy {strategy!r}; expected "
                                 f"one of {list(BALANCE_STRATEGIES)}")
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


def _check_modes(config: Config) -> None:
    """A group, or a deployment and its fallbacks, serve one kind of request: chat or
    embeddings (vectors of different models are not comparable, and a chat request must
    never reach an embedding model). Raises ValueError naming the mix."""
    modes = {d.name: d.mode for d in config.deployments}
    tables = (("groups", config.groups),
              ("fallbacks", {k: (k, *v) for k, v in config.fallbacks.items()}))
    for where, table in tables:
        for key, members in table.items():
            found = sorted({modes[m] for m in members if m in modes})
            if len(found) > 1:
                kinds = ", ".join(f"{m} ({modes[m]})" for m in members if m in modes)
                raise ValueError(f"{where}.{key} mixes chat and embedding deployments: "
                                 f"{kinds}")


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
        config = Config.model_validate(raw)
    except ValidationError as exc:
        lines = [f"{source}: {_describe_location(raw, err['loc'])}: "
                 f"{_MESSAGES.get(err['type'], err['msg'])}" for err in _relevant(exc.errors())]
        raise ConfigError("invalid config\n  " + "\n  ".join(lines)) from exc
    config._source = source
    return config


def _relevant(errors: list[ErrorDetails]) -> list[ErrorDetails]:
    """Drop "deployments: too short" when it only follows from item errors listed too."""
    item_errors = any(len(e["loc"]) > 1 and e["loc"][0] == "deployments" for e in errors)
    return [e for e in errors if not (item_errors and tuple(e["loc"]) == ("deployments",)
                                      and e["type"] == "too_short")]


def load_config(path: str | os.PathLike[str] | None = None) -> Config:
    """Load and validate a YAML config; with no path, the embedded default catalog.

    A LiteLLM proxy config (top-level ``model_list``) is converted first (docs/litellm.md),
    each setting it does not map logged at WARNING on the ``modelmix.catalog`` logger.

    Raises:
        ConfigError: the file is missing, is not UTF-8 YAML, is nested too deeply, or fails
            validation; the message names the file, the deployment and the field. A
            LiteLLM config is refused when it writes a key in the file.
    """
    if path is None:
        from modelmix.catalog._default import default_config

        return default_config()
    file = Path(path)
    raw = read_yaml_file(file)
    if is_litellm_config(raw):
        return _from_litellm(raw, str(file))
    return config_from_dict(raw, source=str(file))


def _from_litellm(raw: dict[str, Any], source: str) -> Config:
    """A LiteLLM proxy config converted (docs/litellm.md); each setting it does not map
    is logged once at WARNING on the ``modelmix.catalog`` logger."""
    try:
        native, warnings = convert_litellm(raw)
    except ConfigError as exc:
        raise ConfigError(f"{source}: LiteLLM config: {exc.message}") from exc
    for line in warnings:
        _log.warning("%s: LiteLLM config: %s", source, line)
    return config_from_dict(native, source=f"{source} (LiteLLM config)")


#: Environment variable naming the catalog YAML used when no path is given.
CONFIG_ENV = "MODELMIX_CONFIG"


def config_from_env(path: str | os.PathLike[str] | None = None,
                    env: Mapping[str, str] | None = None) -> Config:
    """The catalog every entry point uses: ``path`` when given, else the file named by
    ``$MODELMIX_CONFIG``, else the embedded default (:func:`load_config`).

    Raises:
        ConfigError: as :func:`load_config`.
    """
    env = os.environ if env is None else env
    return load_config(path if path is not None else (env.get(CONFIG_ENV) or None))


def read_yaml_file(file: Path, what: str = "config") -> Any:
    """Parse a UTF-8 YAML file (a ``what``: config, policy); every failure is a ConfigError
    naming the file, including a document whose aliases expand past
    ``catalog._yaml.MAX_NODES`` values (an alias bomb)."""
    try:
        text = file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(f"{file}: cannot read {what}: {exc.strerror}") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{file}: not valid UTF-8: byte 0x{exc.object[exc.start]:02x} at "
                          f"offset {exc.start}") from exc
    stream = io.StringIO(text)
    stream.name = str(file)  # PyYAML's error marks quote the stream's name
    try:
        return safe_load_bounded(stream)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    except ValueError as exc:  # a number too long to read (int's digit limit)
        raise ConfigError(f"{file}: not valid YAML: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{file}: not valid YAML: nested too deeply") from exc
