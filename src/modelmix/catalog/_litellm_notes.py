"""The warnings a LiteLLM import collects, and how input appears in them (docs/litellm.md).

Warnings are printed, logged and written as ``#`` comments into the file
``modelmix config import-litellm`` makes, and they quote keys and values from the
LiteLLM file. So every line is made safe here, in one place: a character that is not
printable (a newline, ``ESC``, a Unicode line separator) is written as its escape, and a
key that is not a plain name is shown quoted (``litellm_params['a\\nb']``). A warning can
then neither start a new YAML line nor forge a log line or drive a terminal.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from modelmix.errors import ConfigError

__all__ = ["ENV_PREFIX", "Notes", "env_name", "env_var"]

#: How LiteLLM writes "read this value from the environment".
ENV_PREFIX = "os.environ/"

_ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]{1,80}$")
_MAX_SHOWN = 80


def _escaped(text: str) -> str:
    """``text`` with every non-printable character as its escape (``\\n``, ``\\x1b``)."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii")
                   for ch in text)


@dataclass
class Notes:
    """Warnings collected while converting, one line each: where, why, what to do."""

    lines: list[str] = field(default_factory=list)

    def warn(self, path: str, why: str, todo: str = "") -> None:
        """Add one warning; non-printable characters anywhere in it are escaped."""
        self.lines.append(_escaped(f"{path}: {why}" + (f"; {todo}" if todo else "")))

    def ignored(self, path: str, why: str, todo: str = "") -> None:
        self.warn(path, f"not mapped ({why})", todo)

    @staticmethod
    def key(path: str, key: Any) -> str:
        """``path.key`` for a plain key, else ``path['odd key']`` (quoted and shortened);
        ``path`` may be empty (a top-level key)."""
        if isinstance(key, str) and _PLAIN_KEY.match(key):
            return f"{path}.{key}" if path else key
        return f"{path}[{Notes.shown(key)}]"

    @staticmethod
    def shown(value: Any) -> str:
        """A value from the file as a warning or error may quote it: strings, numbers,
        booleans and null by ``repr`` (at most 80 characters), anything else by its type
        (a list, a mapping: never expanded)."""
        if value is None or isinstance(value, (str, int, float, bool)):
            try:
                text = repr(value)
            except ValueError:  # an int too long to print
                return f"<{type(value).__name__}>"
            return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + "..."
        return f"<{type(value).__name__}>"


def env_name(value: Any) -> str | None:
    """``NAME`` for a LiteLLM ``os.environ/NAME`` value, else None."""
    if isinstance(value, str) and value.startswith(ENV_PREFIX):
        return value[len(ENV_PREFIX):].strip() or None
    return None


def env_var(value: Any, path: str) -> str | None:
    """``NAME`` for an ``os.environ/NAME`` value at ``path``, else None.

    Raises:
        ConfigError: ``NAME`` is not an environment variable name (letters, digits, ``_``).
    """
    name = env_name(value)
    if name is not None and not _ENV_VAR.match(name):
        raise ConfigError(f"{path}: {Notes.shown(value)} does not name an environment "
                          "variable (letters, digits and _)")
    return name
