"""Loading a catalog's systems: its ``systems:`` section and the files its
``include_systems`` names (YAML files, or directories of them, each holding a
``systems:`` mapping; ``builtin`` names the blueprints shipped with modelmix)."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelmix.catalog import Config
from modelmix.catalog._config import SYSTEM_NAME, read_yaml_file
from modelmix.errors import ConfigError
from modelmix.systems._system import GuardFactory, System, build_system

if TYPE_CHECKING:
    from modelmix.guard import Guard

__all__ = ["BUILTIN", "blueprint_dir", "load_systems"]

#: The ``include_systems`` entry naming the shipped blueprints.
BUILTIN = "builtin"


def blueprint_dir() -> Path:
    """The directory of the shipped blueprints (healthcare-triage, finance-analyst,
    manufacturing-maintenance, document-intake)."""
    return Path(str(resources.files("modelmix.systems") / "blueprints"))


def load_systems(config: Config, *, guard: Guard | None = None,
                 make_guard: GuardFactory | None = None) -> dict[str, System]:
    """Every system of ``config``, built and checked, by name.

    Args:
        guard: the service's guard (the gateway's policy), stacked under each system's.
        make_guard: builds a guard for a policy reference on top of a base guard
            (given by the engine; systems with a ``policy`` need it).

    Raises:
        ConfigError: a bad spec, naming the file, system, step and field; a name defined
            twice; an include that cannot be read.
    """
    found: dict[str, tuple[str, Any]] = {}
    for name, raw in config.systems.items():
        found[name] = (config.source, raw)
    for file in _included(config):
        for name, raw in _file_systems(file).items():
            if not isinstance(name, str) or not SYSTEM_NAME.match(name):
                raise ConfigError(f"{file}: system name {name!r}: use letters, digits and "
                                  "._- (at most 100 characters)")
            if name in found:
                raise ConfigError(f'{file}: system "{name}" is already defined in '
                                  f"{found[name][0]}")
            found[name] = (str(file), raw)
    return {name: build_system(name, raw, config, source=source, base_guard=guard,
                               make_guard=make_guard)
            for name, (source, raw) in found.items()}


def _included(config: Config) -> list[Path]:
    base = Path(config.source).parent if Path(config.source).is_file() else Path.cwd()
    files: list[Path] = []
    for entry in config.include_systems:
        path = blueprint_dir() if entry == BUILTIN else base / entry
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir()
                                if p.suffix in (".yaml", ".yml") and p.is_file()))
        elif path.is_file():
            files.append(path)
        else:
            raise ConfigError(f'{config.source}: field "include_systems": {entry!r}: no '
                              f"such file or directory ({path})")
    return files


def _file_systems(file: Path) -> dict[str, Any]:
    raw = read_yaml_file(file, "systems file")
    systems = raw.get("systems") if isinstance(raw, dict) else None
    if not isinstance(systems, dict) or set(raw) - {"systems"}:
        raise ConfigError(f"{file}: expected a mapping with one key, systems "
                          "(name -> system)")
    return systems
