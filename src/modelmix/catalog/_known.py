"""Known models: context windows, capabilities and list prices of common model ids.

A deployment names a model (``{provider: openai, model: gpt-4o-mini}``); the fields its
config leaves out (or sets to null) are filled from ``data/known_models.yaml``, so such a
deployment is priced and can take tools without hand-entered numbers. Explicit values
always win, even ``0`` or ``false``. What was filled is recorded in
``Deployment.known_fields`` (docs/configuration.md, "Known models").

A model is found by its id or one of its listed aliases (dated snapshots, ``-latest``
names, other hosts' spellings), case-insensitively, with or without its family's prefix
(``openai/``, ``meta/``, ``meta-llama/``...), and only under a provider its family lists;
Ollama names are matched only for ``provider: ollama``. Nothing else is guessed: a name
not in the table gets modelmix's plain defaults.

Example::

    >>> lookup("nim", "meta/llama-3.1-8b-instruct").id
    'llama-3.1-8b-instruct'
    >>> lookup("openai", "gpt-4o-mini-2024-07-18").price
    (0.15, 0.6)
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any

import yaml

__all__ = ["KNOWN_FIELDS", "HostedPrice", "KnownModel", "KnownTable", "fill_known",
           "known_source", "known_table", "lookup"]

#: The deployment fields the table may fill.
KNOWN_FIELDS = ("mode", "tier", "context_window", "max_output_tokens", "supports_tools",
                "supports_json_mode", "input_modalities", "output_modalities",
                "input_cost_per_mtok", "output_cost_per_mtok")

_DATA = "known_models.yaml"
#: An Ollama tag's size, then optionally "-instruct" and a quantisation: "8b-instruct-q4_K_M".
_OLLAMA_TAG = re.compile(r"(\d+(?:\.\d+)?b|\d+x\d+b)(?:-instruct)?(?:-(?:q\d\w*|fp16|bf16|fp8))?")


@dataclass(frozen=True, slots=True)
class HostedPrice:
    """A hosted API's list price (USD per 1M tokens) for its own id of an open model."""

    model: str
    input: float
    output: float


@dataclass(frozen=True, slots=True)
class KnownModel:
    """One table entry: a model's limits (tokens), capabilities and prices (USD per 1M).

    ``price`` is a proprietary model's (input, output) list price, billed whichever
    listed provider relays it; ``hosted`` maps a provider to its price for its own id of
    an open model (self-hosted servers have none).
    """

    id: str
    family: str
    tier: str
    mode: str
    context_window: int
    max_output_tokens: int | None
    supports_tools: bool
    supports_json_mode: bool
    input_modalities: tuple[str, ...]
    output_modalities: tuple[str, ...]
    providers: frozenset[str]
    prefixes: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()
    ollama: tuple[str, ...] = ()
    price: tuple[float, float] | None = None
    hosted: Mapping[str, HostedPrice] = field(default_factory=dict)

    def price_for(self, provider: str, model: str) -> tuple[float, float] | None:
        """(input, output) USD per 1M tokens for this deployment, or None when unknown."""
        if self.price is not None:
            return self.price
        hosted = self.hosted.get(provider)
        if hosted is not None and hosted.model.lower() == model.lower():
            return hosted.input, hosted.output
        return None

    def fields(self, provider: str, model: str) -> dict[str, Any]:
        """The deployment fields this entry gives for ``model`` served by ``provider``."""
        values: dict[str, Any] = {
            "mode": self.mode, "tier": self.tier, "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "supports_tools": self.supports_tools,
            "supports_json_mode": self.supports_json_mode,
            "input_modalities": list(self.input_modalities),
            "output_modalities": list(self.output_modalities),
        }
        if self.max_output_tokens is None:
            del values["max_output_tokens"]
        price = self.price_for(provider, model)
        if price is not None:
            values["input_cost_per_mtok"], values["output_cost_per_mtok"] = price
        return values

    def names(self) -> Iterator[str]:
        """Every lower-case name this entry answers to (not its Ollama names)."""
        for name in (self.id, *self.aliases):
            yield name.lower()
            for prefix in self.prefixes:
                yield f"{prefix}{name}".lower()


@dataclass(frozen=True)
class KnownTable:
    """The loaded table: when it was checked, from which pages, and its models."""

    checked: str
    sources: tuple[str, ...]
    models: tuple[KnownModel, ...]
    _names: Mapping[str, tuple[KnownModel, ...]]
    _ollama: Mapping[str, KnownModel]

    def lookup(self, provider: str, model: str) -> KnownModel | None:
        """The entry for ``model`` served by ``provider``, or None (no guessing)."""
        if provider == "ollama":
            found = self._ollama.get(_ollama_name(model))
            return found if found is not None and provider in found.providers else None
        for entry in self._names.get(model.lower(), ()):
            if provider in entry.providers:
                return entry
        return None


def _ollama_name(model: str) -> str:
    """``llama3.1:latest`` -> ``llama3.1``; ``llama3.1:8b-instruct-q4_K_M`` -> ``llama3.1:8b``."""
    name = model.lower().removesuffix(":latest")
    base, _, tag = name.partition(":")
    match = _OLLAMA_TAG.fullmatch(tag) if tag else None
    return f"{base}:{match.group(1)}" if match else name


def _entry(raw: Mapping[str, Any], families: Mapping[str, Any]) -> KnownModel:
    family = families[raw["family"]]
    spec = {"mode": "chat", "supports_tools": False, "supports_json_mode": False,
            "input_modalities": ["text"], "output_modalities": ["text"],
            "max_output_tokens": None, **family.get("defaults", {}), **raw}
    hosted = {provider: HostedPrice(h["model"], *map(float, h["price"]))
              for provider, h in (spec.get("hosted") or {}).items()}
    price = spec.get("price")
    return KnownModel(
        id=str(spec["id"]), family=str(spec["family"]), tier=spec.get("tier", family["tier"]),
        mode=spec["mode"], context_window=int(spec["context_window"]),
        max_output_tokens=spec["max_output_tokens"],
        supports_tools=bool(spec["supports_tools"]),
        supports_json_mode=bool(spec["supports_json_mode"]),
        input_modalities=tuple(spec["input_modalities"]),
        output_modalities=tuple(spec["output_modalities"]),
        providers=frozenset(family["providers"]), prefixes=tuple(family.get("prefixes", ())),
        aliases=tuple(map(str, spec.get("aliases", ()))),
        ollama=tuple(str(n).lower() for n in spec.get("ollama", ())),
        price=None if price is None else (float(price[0]), float(price[1])),
        hosted=MappingProxyType(hosted))


def _index(models: tuple[KnownModel, ...]) -> tuple[dict[str, tuple[KnownModel, ...]],
                                                    dict[str, KnownModel]]:
    """Name -> entries (two only where their providers differ) and Ollama name -> entry;
    a name given twice under a shared provider is a table error."""
    names: dict[str, tuple[KnownModel, ...]] = {}
    ollama: dict[str, KnownModel] = {}
    for entry in models:
        for name in set(entry.names()):
            clash = [o for o in names.get(name, ()) if o.providers & entry.providers]
            if clash:
                raise ValueError(f"{_DATA}: {name!r} names both {clash[0].id} and {entry.id}")
            names[name] = (*names.get(name, ()), entry)
        for name in entry.ollama:
            if name in ollama:
                raise ValueError(f"{_DATA}: Ollama name {name!r} names both "
                                 f"{ollama[name].id} and {entry.id}")
            ollama[name] = entry
    return names, ollama


@cache
def known_table() -> KnownTable:
    """The table shipped in the package, read once per process.

    Raises:
        ValueError: the shipped file is malformed (a packaging bug; tests catch it).
    """
    text = resources.files("modelmix.catalog").joinpath("data", _DATA).read_text("utf-8")
    raw = yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    models = tuple(_entry(m, raw["families"]) for m in raw["models"])
    names, ollama = _index(models)
    return KnownTable(checked=str(raw["checked"]), sources=tuple(map(str, raw["sources"])),
                      models=models, _names=MappingProxyType(names),
                      _ollama=MappingProxyType(ollama))


def lookup(provider: str, model: str) -> KnownModel | None:
    """The known-models entry for ``model`` served by ``provider``, or None."""
    return known_table().lookup(provider, model)


def fill_known(data: dict[str, Any]) -> dict[str, Any]:
    """A deployment's raw fields with those it leaves out (or null) taken from the table,
    and ``known_fields`` naming them; ``data`` itself is not changed.

    ``max_output_tokens`` is not filled when it would exceed the deployment's context
    window (an explicit smaller ``context_window``).

    Raises:
        ValueError: ``data`` sets ``known_fields`` (modelmix fills it).
    """
    if "known_fields" in data:
        raise ValueError("known_fields is filled by modelmix (the fields taken from the "
                         "known-models table); leave it out of the config")
    provider, model = data.get("provider"), data.get("model")
    if not isinstance(provider, str) or not isinstance(model, str):
        return data
    known = lookup(provider, model)
    if known is None:
        return data
    out = dict(data)
    filled = []
    for name, value in known.fields(provider, model).items():
        if out.get(name) is None:
            out[name] = value
            filled.append(name)
    if "max_output_tokens" in filled and out["max_output_tokens"] > _tokens(out):
        out["max_output_tokens"] = None
        filled.remove("max_output_tokens")
    out["known_fields"] = tuple(n for n in KNOWN_FIELDS if n in filled)
    return out


def _tokens(data: Mapping[str, Any]) -> float:
    """The context window ``data`` sets, as a number (``"4096"`` too), or infinity when it
    is not one (validation then says why)."""
    try:
        return float(data["context_window"])
    except (TypeError, ValueError):
        return float("inf")


def known_source(fields: tuple[str, ...]) -> dict[str, Any] | None:
    """What ``GET /v1/models`` shows of a deployment's ``known_fields``: which fields came
    from the table and when it was checked; None when none did."""
    if not fields:
        return None
    return {"table": f"modelmix/catalog/data/{_DATA}", "checked": known_table().checked,
            "fields": list(fields)}
