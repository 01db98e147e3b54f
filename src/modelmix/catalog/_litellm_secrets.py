"""Credentials in a LiteLLM config: read from the environment, never copied (docs/litellm.md).

modelmix reads keys from the environment only (``api_key_env``, ``master_key_env``), and
``modelmix config import-litellm`` never writes one into the file it makes. So a key
written in the LiteLLM file is refused, and so is anything that carries one in disguise: a
credential-like header, a URL with ``user:password@`` or a ``?password=`` / ``?key=``
query. Refusals are :class:`~modelmix.errors.ConfigError` naming the path, never the value.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from modelmix.catalog._litellm_notes import Notes, env_name, env_var
from modelmix.errors import ConfigError

__all__ = ["credential_url", "headers_fields", "key_field", "refuse_credential_url"]

#: Header names that carry a credential (``Authorization``, ``api-key``, ``X-Auth-Token``).
_SECRET_NAME = re.compile(r"auth|key|token|secret|password|passwd|cookie|credential",
                          re.IGNORECASE)
#: Header values that look like a credential whatever the name.
_SECRET_VALUE = re.compile(
    r"^\s*(bearer|basic|token|apikey)\s+\S"
    r"|^\s*(sk|sk-ant|sk-proj|gsk|hf|xai|pk|rk|ghp|github_pat|glpat|AKIA)[-_][A-Za-z0-9]"
    r"|^\s*eyJ[A-Za-z0-9_-]+\.",
    re.IGNORECASE)
#: URL query parameters that carry a credential (``?password=``, ``?sslpassword=``, ``?key=``).
_SECRET_QUERY = re.compile(r"pass|secret|token|key|auth|signature|sig$", re.IGNORECASE)
_USE_ENV = ("export it, e.g. MY_API_KEY=..., and write api_key: os.environ/MY_API_KEY "
            "(modelmix sends it as Authorization: Bearer)")


def key_field(params: Mapping[str, Any], path: str) -> dict[str, Any]:
    """``api_key: os.environ/NAME`` -> ``api_key_env: NAME``.

    Raises:
        ConfigError: a key written in the file (its value is never shown).
    """
    if "api_key" not in params or params["api_key"] in (None, ""):
        return {}
    name = env_var(params["api_key"], f"{path}.api_key")
    if name is None:
        raise ConfigError(f"{path}.api_key: a key written in the config file is refused (it "
                          f"would be copied into logs and files); {_USE_ENV}")
    return {"api_key_env": name}


def headers_fields(params: Mapping[str, Any], path: str, notes: Notes) -> dict[str, Any]:
    """``extra_headers`` / ``headers`` -> ``headers``: plain strings only.

    modelmix headers are literal values in the config, so a header read from the
    environment is not copied (warned, or refused when its name says it is a credential),
    and a credential written in the file is refused.

    Raises:
        ConfigError: not a mapping of strings, a credential-like header written in the
            file, or one read from the environment (values never shown).
    """
    out: dict[str, str] = {}
    for key in ("headers", "extra_headers"):
        value = params.get(key)
        if value is None:
            continue
        if not isinstance(value, dict):
            raise ConfigError(f"{path}.{key}: expected a mapping of header names to values")
        for name, text in value.items():
            where = Notes.key(f"{path}.{key}", name)
            if not isinstance(name, str) or not isinstance(text, (str, int, float)) \
                    or isinstance(text, bool):
                raise ConfigError(f"{where}: expected a header name and a string value")
            if _header_value(str(name), text, where, notes) is not None:
                out[name] = str(text)
    return {"headers": out} if out else {}


def _header_value(name: str, text: str | float, where: str, notes: Notes) -> str | None:
    """The value to copy, or None (warned) for one read from the environment."""
    secret = bool(_SECRET_NAME.search(name))
    if env_name(text) is not None:
        if secret:
            raise ConfigError(f"{where}: modelmix cannot read a header from the "
                              "environment, and a credential header written in its "
                              f"config would be copied into files; for a Bearer key, "
                              f"write api_key: os.environ/NAME instead of the header")
        notes.ignored(where, "modelmix headers are literal and an environment value may "
                      "be a secret", "set it at the upstream or write the value")
        return None
    if secret or _SECRET_VALUE.search(str(text)):
        raise ConfigError(f"{where}: a credential written in the config file is refused "
                          f"(it would be copied into logs and files); {_USE_ENV}")
    return str(text)


def credential_url(url: str, *, user_is_secret: bool = False) -> bool:
    """Whether ``url`` carries a credential: ``user:password@`` (any ``user@`` when
    ``user_is_secret``: an HTTP API has no user name, so it is a token), or a
    credential-like query parameter (``?password=``, ``?sslpassword=``, ``?key=``)."""
    try:
        parts = urlsplit(url)
        query = parse_qsl(parts.query, keep_blank_values=True)
    except ValueError:
        return False
    userinfo, at, _ = parts.netloc.rpartition("@")
    if at and (user_is_secret or ":" in userinfo):
        return True
    return any(_SECRET_QUERY.search(name) for name, _ in query)


def refuse_credential_url(url: str, path: str) -> None:
    """Raise when the API URL ``url`` carries a credential (``user@`` of any kind, or a
    credential-like query parameter).

    Raises:
        ConfigError: naming ``path``, never the URL.
    """
    if credential_url(url, user_is_secret=True):
        raise ConfigError(f"{path}: a URL holding a credential (user:token@ or a "
                          "?key=/?token=/?password= parameter) is refused (it would be "
                          "copied into logs and files); write the URL without it, and the "
                          "key as api_key: os.environ/NAME (sent as Authorization: Bearer)")
