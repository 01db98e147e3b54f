"""Price tables are bounded: alias bombs, huge or non-finite prices, non-string text
fields, non-UTF-8 files, model keys given twice and ``1e3`` (text in YAML 1.1) are refused
in one line naming the file and field."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelmix.cli import app
from modelmix.errors import ConfigError
from modelmix.eval._prices import MAX_TEXT_CHARS, MAX_USD_PER_MTOK, load_prices

_OK = "  b: {input_usd_per_mtok: 1, output_usd_per_mtok: 2}\n"


def _bomb(levels: int = 9) -> str:
    lines = ["l0: &l0 [x, x, x, x, x, x, x, x, x]"]
    lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]" for i in range(1, levels)]
    return "\n".join(lines) + f"\nsource: *l{levels - 1}\nmodels:\n" + _OK


@pytest.mark.parametrize(("text", "message"), [
    (_bomb(), "alias bomb"),
    ("models:\n  a: {input_usd_per_mtok: 1.0e+308, output_usd_per_mtok: 1}\n" + _OK,
     f"<= {MAX_USD_PER_MTOK:g}, got 1e+308"),
    ("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: .inf}\n" + _OK, "got inf"),
    ("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1, answer_chars: 1.0e+300}\n"
     + _OK, "answer_chars: must be a number > 0"),
    ("models:\n  a: {input_usd_per_mtok: 1e3, output_usd_per_mtok: 1}\n" + _OK,
     "'1e3' is text, not a number"),
    ("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n" + _OK
     + "  a: {input_usd_per_mtok: 2, output_usd_per_mtok: 2}\n", "models.a is given twice"),
    ("source: [x, y]\nmodels:\n" + _OK, "source: must be a string"),
    (f"date: {'9' * (MAX_TEXT_CHARS + 1)}x\nmodels:\n" + _OK, "date: must be a string of at most"),
    ("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1, provider: {x: 1}}\n"
     + _OK, "models.a.provider: must be a string"),
])
def test_unbounded_price_tables_are_refused_in_one_line(tmp_path: Path, text: str,
                                                        message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_prices(path)
    assert message in info.value.message, info.value.message
    assert str(path) in info.value.message and "\n" not in info.value.message


def test_non_utf8_file_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1, "
                     "provider: \"caf\xe9\"}\n".encode("latin-1"))
    with pytest.raises(ConfigError, match=r"latin1\.yaml: not UTF-8 text \(byte \d+\)"):
        load_prices(path)


def test_bounds_keep_ordinary_tables(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("date: 2026-12-04\nsource: &s list prices\nmodels:\n"
                    "  a: {input_usd_per_mtok: 1.5e+2, output_usd_per_mtok: 1000000, "
                    "provider: *s, answer_chars: 800}\n" + _OK, encoding="utf-8")
    table = load_prices(path)
    assert (table.date, table.source) == ("2026-12-04", "list prices")
    a = table.prices["a"]
    assert (a.input_usd_per_mtok, a.output_usd_per_mtok, a.provider) == (
        150.0, MAX_USD_PER_MTOK, "list prices")


def test_cli_refuses_an_alias_bomb_before_evaluating(tmp_path: Path) -> None:
    table = tmp_path / "t.csv"
    with table.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["prompt", "a", "b"])
        out.writerows([f"prompt number {i}", i % 2, 1] for i in range(20))
    prices = tmp_path / "bomb.yaml"
    prices.write_text(_bomb().replace("  b:", "  a: {input_usd_per_mtok: 1, "
                                      "output_usd_per_mtok: 1}\n  b:"), encoding="utf-8")
    result = CliRunner().invoke(app, [
        "router", "eval", "--data", str(table), "--frontier", "--prices", str(prices),
        "--folds", "2", "--out", str(tmp_path / "out")])
    assert result.exit_code != 0 and "alias bomb" in result.output, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "out" / "results.json").exists()
