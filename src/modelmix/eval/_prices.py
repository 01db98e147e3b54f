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
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from modelmix.errors import ConfigError
from modelmix.eval._table import CHARS_PER_TOKEN

__all__ = ["ModelPrice", "PriceTable", "load_prices"]

_FIELDS = {"input_usd_per_mtok", "output_usd_per_mtok", "provider", "answer_chars", "source"}


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


def _number(where: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(
            value) or value < 0 or (positive and value == 0):
        need = "a positive number" if positive else "a number >= 0"
        raise ConfigError(f"{where}: must be {need}, got {value!r}")
    return float(value)


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
        input_usd_per_mtok=_number(f"{where}.input_usd_per_mtok", entry["input_usd_per_mtok"]),
        output_usd_per_mtok=_number(f"{where}.output_usd_per_mtok",
                                    entry["output_usd_per_mtok"]),
        provider=str(entry.get("provider") or ""),
        answer_chars=None if chars is None else _number(f"{where}.answer_chars", chars,
                                                        positive=True),
    )


def load_prices(path: str | Path) -> PriceTable:
    """Read a price table (YAML, layout in the module doc).

    Raises:
        ConfigError: unreadable file, not YAML, no ``models`` mapping, or a bad entry
            (one line naming the file and field).

    Example::

        prices = load_prices("benchmarks/router/chat_prices.yaml")
        prices.prices["gpt-3.5-turbo-1106"].usd(100, 200)   # USD of one request
    """
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read price table {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" (line {mark.line + 1})" if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML{at}") from None
    models = doc.get("models") if isinstance(doc, dict) else None
    if not isinstance(models, dict) or not models:
        raise ConfigError(f"{path}: needs a 'models' mapping of model column -> "
                          "{input_usd_per_mtok, output_usd_per_mtok}")
    prices = {str(m): _price(path, str(m), e) for m, e in models.items()}
    return PriceTable(prices=prices, date=str(doc.get("date") or ""),
                      source=str(doc.get("source") or ""), path=str(path))
