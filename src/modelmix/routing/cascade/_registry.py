"""The verifier registry: names to classes, and building one from a spec."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from modelmix.errors import ConfigError
from modelmix.routing.cascade._arithmetic import ArithmeticVerifier
from modelmix.routing.cascade._base import Verifier
from modelmix.routing.cascade._json import JsonSchemaVerifier
from modelmix.routing.cascade._learned import LearnedVerifier

__all__ = ["VERIFIERS", "verifier_from_spec"]

#: The offline verifiers by name.
VERIFIERS: dict[str, type[Verifier]] = {
    cls.name: cls for cls in (ArithmeticVerifier, JsonSchemaVerifier, LearnedVerifier)}


def verifier_from_spec(name: str, options: Mapping[str, Any] | None = None) -> Verifier:
    """Build the verifier ``name`` from its options.

    Example::

        verifier_from_spec("json-schema", {"schema": {"type": "object"}})

    Raises:
        ConfigError: an unknown name (the message lists the known ones) or a bad option.
    """
    cls = VERIFIERS.get(name)
    if cls is None:
        raise ConfigError(f"unknown verifier {name!r}; known verifiers: "
                          f"{', '.join(sorted(VERIFIERS))}")
    return cls.from_options(options if options is not None else {})
