"""Price tables: what each model column of an outcome table costs, for many-model
evaluation (``modelmix router eval --frontier --prices FILE``).

A price table is YAML (``benchmarks/router/chat_prices.yaml`` is the committed one)::

    date: "2026-12-04"                  # when the prices were recorded
    source: "providers' list prices"    # where they come from
    models:
      gpt-3.5-turbo-1106:               # a model column of the outcome table
        input_usd_per_mtok: 1.00        # USD per 1M input tokens
        output_usd_per_mtok: 2.00       # USD per 1M output tokens
        provider: OpenAI                # optional
        answer_chars: 796               # optional: mean answer length, characters

Completion tokens of a request on a model are ``answer_chars / CHARS_PER_TOKEN`` when the
table gives ``answer_chars``, else the evaluation's fixed ``completion_tokens``.

Bounds (a table is data, often someone else's): the file is UTF-8 YAML read with the
catalog's alias-bounded loader (:func:`~modelmix.catalog._yaml.safe_load_bounded`);
``date``, ``source`` and ``provider`` are plain strings of at most 200 characters; prices
are numbers in ``[0, 1e6]`` USD per 1M tokens (the dearest list price in 2026 is below
USD 200) and ``answer_chars`` in ``(0, 1e7]``; a model listed twice is refused. Exponent
numbers need a dot in YAML 1.1 (``1.5e+3``); ``1e3`` reads as a string and is refused
with that hint.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelmix.catalog._yaml import safe_load_bounded
from modelmix.errors import ConfigError
from modelmix.eval._table import CHARS_PER_TOKEN

__all__ = ["ModelPrice", "PriceTable", "load_prices"]

_FIELDS = {"input_usd_per_mtok", "output_usd_per_mtok", "provider", "answer_chars", "source"}
#: Highest price accepted, USD per 1M tokens, and longest mean answer, characters.
MAX_USD_PER_MTOK, MAX_ANSWER_CHARS = 1e6, 1e7
#: Longest ``date`` / ``source`` / ``provider`` string, characters.
MAX_TEXT_CHARS = 200


@dataclass(frozen=True, slots=True)
class ModelPrice:
    """One model's list price.

    Attributes:
        model: the outcome table's column name.
        input_usd_per_mtok / output_usd_per_mtok: USD per 1M prompt / completion tokens.
        provider: who sells it at that price (free text).
        answer_chars: mean answer length in characters, or None.
    """

    model: str
    input_usd_per_mtok: float
    output_usd_per_mtok: float
    provider: str = ""
    answer_chars: float | None = None

    def completion_tokens(self, default: float) -> float:
        """Completion tokens per request: ``answer_chars / 4``, else ``default``."""
        return default if self.answer_chars is None else self.answer_chars / CHARS_PER_TOKEN

    def usd(self, prompt_tokens: float, completion_tokens: float) -> float:
        """USD of one request (prices are per 1M tokens)."""
        return (prompt_tokens * self.input_usd_per_mtok
                + completion_tokens * self.output_usd_per_mtok) / 1_000_000


@dataclass(frozen=True, slots=True)
class PriceTable:
    """Prices by model column, with the table's date and source."""

    prices: dict[str, ModelPrice]
    date: str = ""
    source: str = ""
    path: str = ""

    def for_models(self, models: tuple[str, ...] | list[str]) -> list[ModelPrice]:
        """The prices of ``models`` in that order.

        Raises:
            ConfigError: a model has no price (one line, naming the missing columns).
        """
        missing = [m for m in models if m not in self.prices]
        if missing:
            raise ConfigError(f"{self.path or 'price table'}: no price for model column(s) "
                              f"{', '.join(missing)}")
        return [self.prices[m] for m in models]

    def describe(self) -> dict[str, Any]:
        """The table as recorded in ``results.json``."""
        return {"path": self.path, "date": self.date, "source": self.source,
                "models": {m: {"input_usd_per_mtok": p.input_usd_per_mtok,
                               "output_usd_per_mtok": p.output_usd_per_mtok,
                               "provider": p.provider, "answer_chars": p.answer_chars}
                           for m, p in self.prices.items()}}


def _number(where: str, value: Any, *, high: float, positive: bool = False) -> float:
    """``value`` as a float in ``[0, high]`` (``(0, high]`` when ``positive``).

    Raises:
        ConfigError: anything else, with a hint for ``1e3`` (a string in YAML 1.1).
    """
    if isinstance(value, str) and _looks_numeric(value):
        raise ConfigError(f"{where}: {value!r} is text, not a number (quoted? YAML 1.1 "
                          "also reads an exponent without a dot, 1e3, as text: write 1.0e+3)")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value < 0 or value > high or (positive and value == 0):
        low = "> 0" if positive else ">= 0"
        raise ConfigError(f"{where}: must be a number {low} and <= {high:g}, got {value!r}")
    return float(value)


def _looks_numeric(value: str) -> bool:
    try:
        float(value)
    except ValueError:
        return False
    return True


def _text(where: str, value: Any) -> str:
    """``value`` as a plain string of at most :data:`MAX_TEXT_CHARS` (None reads as "").

    Raises:
        ConfigError: a list, mapping, number or over-long string.
    """
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > MAX_TEXT_CHARS:
        got = f"{len(value)} characters" if isinstance(value, str) else type(value).__name__
        raise ConfigError(f"{where}: must be a string of at most {MAX_TEXT_CHARS} "
                          f"characters, got {got}")
    return value


def _price(path: Path, model: str, entry: Any) -> ModelPrice:
    where = f"{path}: models.{model}"
    if not isinstance(entry, dict):
        raise ConfigError(f"{where}: must be a mapping with input_usd_per_mtok and "
                          "output_usd_per_mtok")
    unknown = sorted(set(entry) - _FIELDS)
    if unknown:
        raise ConfigError(f"{where}: unknown field(s) {', '.join(map(str, unknown))}")
    for key in ("input_usd_per_mtok", "output_usd_per_mtok"):
        if key not in entry:
            raise ConfigError(f"{where}: missing {key}")
    chars = entry.get("answer_chars")
    return ModelPrice(
        model=model,
        input_usd_per_mtok=_number(f"{where}.input_usd_per_mtok", entry["input_usd_per_mtok"],
                                   high=MAX_USD_PER_MTOK),
        output_usd_per_mtok=_number(f"{where}.output_usd_per_mtok",
                                    entry["output_usd_per_mtok"], high=MAX_USD_PER_MTOK),
        provider=_text(f"{where}.provider", entry.get("provider")),
        answer_chars=None if chars is None else _number(
            f"{where}.answer_chars", chars, high=MAX_ANSWER_CHARS, positive=True),
    )


def _read(path: Path) -> Any:
    """The YAML document of ``path``, aliases bounded, duplicate keys refused.

    Raises:
        ConfigError: unreadable, not UTF-8, not YAML, an alias bomb, a key twice.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read price table {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start})") from None
    try:
        _no_duplicate_keys(path, yaml.compose(text, Loader=yaml.SafeLoader))
        return safe_load_bounded(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        detail = f": {exc}" if not at else ""
        raise ConfigError(f"{path}: not valid YAML{at}{detail}") from None


def _no_duplicate_keys(path: Path, root: yaml.Node | None) -> None:
    """Refuse a key given twice at the top level or under ``models`` (YAML keeps the
    last silently)."""
    if not isinstance(root, yaml.MappingNode):
        return
    mappings = [("", root)] + [("models.", v) for k, v in root.value
                               if isinstance(v, yaml.MappingNode) and k.value == "models"]
    for prefix, node in mappings:
        seen: set[str] = set()
        for key, _ in node.value:
            if isinstance(key, yaml.ScalarNode):
                if key.value in seen:
                    raise ConfigError(f"{path}: {prefix}{key.value} is given twice "
                                      f"(line {key.start_mark.line + 1})")
                seen.add(key.value)


def load_prices(path: str | Path) -> PriceTable:
    """Read a price table (YAML, layout in the module doc).

    Raises:
        ConfigError: unreadable or non-UTF-8 file, not YAML, an alias bomb, a key given
            twice, no ``models`` mapping, or a bad entry (out-of-range price, non-string
            text field...): one line naming the file and field.

    Example::

        prices = load_prices("benchmarks/router/chat_prices.yaml")
        prices.prices["gpt-3.5-turbo-1106"].usd(100, 200)   # USD of one request
    """
    path = Path(path)
    doc = _read(path)
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: needs a 'models' mapping of model column -> "
                          "{input_usd_per_mtok, output_usd_per_mtok}")
    odd = [m for m in models if isinstance(m, bool) or not isinstance(m, str | int)]
    if odd:
        raise ConfigError(f"{path}: models: keys must be model column names, got {odd[0]!r}")
    prices = {str(m): _price(path, str(m), e) for m, e in models.items()}
    date = doc.get("date")
    if isinstance(date, datetime.date):  # an unquoted 2026-12-04 reads as a date
        date = date.isoformat()
    return PriceTable(prices=prices, date=_text(f"{path}: date", date),
                      source=_text(f"{path}: source", doc.get("source")), path=str(path))
