"""Chat preference tables (AlpacaEval shape) for `modelmix router train`: reading the
reference column, the defaults picked for such tables, pooled targets, and training on
the real chat table (read in place from ../shared; never copied: CC BY-NC 4.0)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from _tables import write_csv
from modelmix.cli import app
from modelmix.routing.learned import FitOptions, read_outcome_tables
from modelmix.routing.learned._pool import pooled_targets
from modelmix.routing.learned._shape import describe_table
from modelmix.routing.learned._train import PREFERENCE_DEFAULTS, options_for_table

CHAT = Path(__file__).resolve().parents[2] / "shared" / "data" / "alpacaeval" / "chat.csv"
PAIR = ("Mixtral-8x7B-Instruct-v0.1", "gpt4_1106_preview")


def _preference_rows(n: int = 12) -> list[dict[str, object]]:
    """A preference table made here: P(judge preferred the model over ``ref``)."""
    rng = np.random.default_rng(3)
    return [{"id": f"r{i:03d}", "prompt": f"Write a note about topic {i}.",
             "dataset": ("alpha", "beta")[i % 2],
             "small": round(float(rng.random()), 4), "mid": float(i % 3 == 0),
             "ref": 0.5} for i in range(n)]


def test_preference_table_reads_reference_unscaled_and_no_text_columns(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "pref.csv", _preference_rows())
    table = read_outcome_tables([path])
    assert table.model_names == ("small", "mid", "ref")  # id and dataset are not models
    assert table.reference == "ref"
    assert np.all(table.outcomes[:, 2] == 0.5)
    assert not table.scaled and table.domain_column is None
    assert set(table.domains) == {"pref"}
    line = describe_table(table)
    assert "reference 'ref'" in line and "12 prompts" in line and "\n" not in line

    by_dataset = read_outcome_tables([path], domain_column="dataset")
    assert by_dataset.domain_column == "dataset"
    assert by_dataset.domains[:2] == ("alpha", "beta")
    assert "domain column 'dataset' (2 values)" in describe_table(by_dataset)


def test_grades_scaled_over_the_file_and_constant_non_half_column_is_no_reference(
        tmp_path: Path) -> None:
    rows = [{"prompt": f"q{i}", "a": 1 + i % 10, "b": 10 - i % 10, "c": 7} for i in range(20)]
    table = read_outcome_tables([write_csv(tmp_path / "mt.csv", rows)])
    assert table.scaled and table.reference is None
    assert table.outcomes[:, 0].min() == 0.0 and table.outcomes[:, 0].max() == 1.0
    assert np.allclose(table.outcomes[:, 2], (7 - 1) / 9)  # same scale for every column
    assert "grades min-max scaled" in describe_table(table)


def test_preference_defaults_only_for_preference_tables(tmp_path: Path) -> None:
    pref = read_outcome_tables([write_csv(tmp_path / "pref.csv", _preference_rows())])
    exam = read_outcome_tables([write_csv(tmp_path / "exam.csv", [
        {"prompt": f"q{i}", "w": i % 2 == 0, "s": i % 3 != 0} for i in range(12)])])
    auto = options_for_table(pref)
    assert (auto.tokens, auto.c) == (PREFERENCE_DEFAULTS["tokens"], PREFERENCE_DEFAULTS["c"])
    assert options_for_table(exam) == FitOptions()
    chosen = options_for_table(pref, FitOptions(c=0.01, tokens=False), given={"c"})
    assert chosen.c == 0.01 and chosen.tokens is False
    explicit = FitOptions(c=0.01)
    assert options_for_table(pref, explicit) is explicit  # no `given`: used as it is
    assert options_for_table(pref, FitOptions(learner="knn"), given=()).learner == "knn"


def test_pooled_targets_blend_with_other_informative_models() -> None:
    y = np.array([[1.0, 0.0, 0.0, 0.5],
                  [0.0, 1.0, np.nan, 0.5],
                  [1.0, 1.0, 1.0, 0.5]])
    assert pooled_targets(y, 0.0) is y
    out = pooled_targets(y, 0.5)
    assert np.allclose(out[0, :3], [0.5 * 1 + 0.5 * 0.0, 0.5 * 0 + 0.5 * 0.5, 0.5 * 0.5])
    assert np.allclose(out[1, :2], [0.5, 0.5]) and np.isnan(out[1, 2])
    assert np.allclose(out[2, :3], 1.0)
    assert np.all(out[:, 3] == 0.5)  # the constant reference column is left alone
    with pytest.raises(ValueError, match="pool"):
        FitOptions(pool=1.5)
    assert "pool" not in FitOptions().describe()  # manifests of existing options unchanged
    pooled = FitOptions(pool=0.5, tokens=False)
    assert FitOptions.from_description(pooled.describe()) == pooled


@pytest.mark.parametrize(("rows", "args", "message"), [
    ([{"prompt": "a", "ref": 0.5, "x": "maybe"}, {"prompt": "b", "ref": 0.5, "x": 0.2}], [],
     "'maybe' is not True/False or a finite number"),
    ([{"prompt": "a", "ref": 0.5}, {"prompt": "b", "ref": 0.5}], ["--cv", "2"],
     "--cv needs a weak/strong pair"),
    ([{"prompt": "a", "dataset": "x"}, {"prompt": "b", "dataset": "y"}], [],
     "no model outcome columns"),
])
def test_bad_preference_tables_get_one_line_errors(tmp_path: Path, rows: list[dict[str, object]],
                                                   args: list[str], message: str) -> None:
    data = write_csv(tmp_path / "bad.csv", rows)
    result = CliRunner().invoke(app, ["router", "train", "--data", str(data), "--out",
                                      str(tmp_path / "r"), *args])
    assert result.exit_code == 2, result.output
    assert message in result.stderr
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(not CHAT.is_file(), reason=f"the AlpacaEval chat table is not at {CHAT}")
def test_train_on_chat_table_with_cv_beats_random(tmp_path: Path) -> None:
    out = tmp_path / "chat-router"  # in tmp only: nothing trained on chat.csv is kept
    result = CliRunner().invoke(app, ["router", "train", "--data", str(CHAT), "--out", str(out),
                                      "--weak", PAIR[0], "--strong", PAIR[1], "--cv", "3"])
    assert result.exit_code == 0, result.output
    assert "reference 'gpt4_1106_preview'" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["learner"]["c"] == PREFERENCE_DEFAULTS["c"]
    assert "tokens" not in manifest["learner"]
    assert manifest["training_data"]["reference"] == PAIR[1]
    folds = manifest["cv_metrics"]["datasets"]["chat"]["apgr"]["per_fold"]
    assert min(folds) > 0.52, folds  # random is 0.50 on average
