"""Outcome tables that used to be misread quietly: a preference table with a few cells
just outside 0-1 (min-max scaled, reference lost), a model column holding only ``1e999``
(dropped), an all-empty column (dropped unnamed), and a table too small to train on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from _tables import write_csv
from modelmix.cli import app
from modelmix.routing.learned import RouterDataError, read_outcome_tables
from modelmix.routing.learned._shape import NEAR_RANGE_SHARE, describe_table
from modelmix.routing.learned._tables import MIN_TRAIN_ROWS, check_trainable


def _preference(n: int, broken: dict[int, float]) -> list[dict[str, object]]:
    return [{"prompt": f"question number {i}", "a": broken.get(i, (i % 7) / 7),
             "b": (i % 5) / 5, "ref": 0.5} for i in range(n)]


def test_a_few_cells_out_of_range_in_a_preference_table_are_named(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "p.csv", _preference(40, {2: 1.0001, 30: -0.2}))
    with pytest.raises(RouterDataError) as info:
        read_outcome_tables([path])
    message = info.value.message
    assert "row 3 column 'a' = 1.0001" in message and "row 31 column 'a' = -0.2" in message
    assert "2 cell(s) lie outside 0-1" in message and "\n" not in message


def test_clean_preference_and_grade_tables_still_read(tmp_path: Path) -> None:
    table = read_outcome_tables([write_csv(tmp_path / "ok.csv", _preference(40, {}))])
    assert table.reference == "ref" and not table.scaled
    # a 1-10 grade file with a constant column: most cells beyond 1, so grades, scaled
    grades = [{"prompt": f"q{i}", "a": 1 + i % 10, "b": 10 - i % 10, "ref": 0.5}
              for i in range(40)]
    graded = read_outcome_tables([write_csv(tmp_path / "g.csv", grades)])
    assert graded.scaled and graded.reference is None
    # more broken cells than NEAR_RANGE_SHARE of them: grades too, not refused
    many = {i: 2.0 for i in range(int(80 * NEAR_RANGE_SHARE) + 1)}
    assert read_outcome_tables([write_csv(tmp_path / "m.csv", _preference(40, many))]).scaled


def test_a_model_column_of_only_infinite_numbers_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    path.write_text("".join(json.dumps({"prompt": f"q{i}", "a": i % 2 == 0}).replace(
        "}", ', "b": 1e999}') + "\n" for i in range(12)))
    with pytest.raises(RouterDataError, match=r"row 1, column 'b': inf is not a finite number"):
        read_outcome_tables([path])
    text = tmp_path / "t.csv"  # a text column is still left out quietly
    write_csv(text, [{"prompt": f"q{i}", "a": i % 2 == 0, "b": True, "note": "inf or not"}
                     for i in range(12)])
    assert read_outcome_tables([text]).model_names == ("a", "b")


def test_an_empty_column_is_named_in_the_summary(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "t.csv", [{"prompt": f"q{i}", "a": i % 2 == 0, "b": True,
                                           "c": "nan"} for i in range(12)])
    table = read_outcome_tables([path])
    assert table.model_names == ("a", "b") and table.ignored == ("c",)
    assert "ignored column(s) ['c'] (no outcome in any row)" in describe_table(table)


def test_tables_below_the_minimum_are_refused_for_training(tmp_path: Path) -> None:
    rows = [{"prompt": f"question {i}", "weak": i % 2 == 0, "strong": True}
            for i in range(MIN_TRAIN_ROWS)]
    check_trainable(read_outcome_tables([write_csv(tmp_path / "ok.csv", rows)]))
    small = write_csv(tmp_path / "small.csv", rows[:MIN_TRAIN_ROWS - 1])
    with pytest.raises(RouterDataError, match=f"only {MIN_TRAIN_ROWS - 1} row"):
        check_trainable(read_outcome_tables([small]))
    result = CliRunner().invoke(app, ["router", "train", "--data", str(small), "--out",
                                      str(tmp_path / "r")])
    assert result.exit_code == 2, result.output
    assert f"training needs at least {MIN_TRAIN_ROWS}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "r" / "manifest.json").exists()
