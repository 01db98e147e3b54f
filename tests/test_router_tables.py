"""Reading outcome tables and prompt files: one reader for train, eval and calibrate."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from _tables import write_csv, write_jsonl
from modelmix.routing.learned import RouterDataError, read_outcome_tables, read_prompts


def test_reads_csv_and_jsonl_with_bool_and_numeric_columns(tmp_path: Path) -> None:
    csv_file = write_csv(tmp_path / "a.csv", [
        {"prompt": "p1", "m1": "True", "m2": "false", "note": "text"},
        {"prompt": "p2", "m1": "False", "m2": "", "note": "more text"}])
    jsonl = write_jsonl(tmp_path / "b.jsonl", [{"prompt": "p3", "m1": 1, "m3": 0.5}])
    table = read_outcome_tables([csv_file, jsonl])
    assert table.model_names == ("m1", "m2", "m3")
    assert table.prompts == ("p1", "p2", "p3")
    np.testing.assert_array_equal(table.outcomes[:, 0], [1.0, 0.0, 1.0])
    assert np.isnan(table.outcomes[1, 1]) and np.isnan(table.outcomes[2, 1])
    assert table.domains == ("a", "a", "b")


def test_text_columns_are_not_models_and_eval_reads_tables_the_same_way(
        tmp_path: Path) -> None:
    from modelmix.eval import load_outcome_table

    f = tmp_path / "t.csv"
    f.write_text("prompt,answer,weak,strong\na,B,False,True\nb,C,nan,1\nc,D,yes,no\n")
    table = read_outcome_tables([f])
    assert table.model_names == ("weak", "strong")
    assert np.isnan(table.outcomes[1, 0]) and table.outcomes[2].tolist() == [1.0, 0.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,weak,strong\na,True,-inf\nb,False,True\n")
    for read in (lambda: read_outcome_tables([bad]),
                 lambda: load_outcome_table(bad, weak="weak", strong="strong")):
        with pytest.raises(RouterDataError, match="row 1, column 'strong': '-inf' is not"):
            read()


def test_index_and_id_columns_are_skipped_and_ambiguous_numbers_refused(
        tmp_path: Path) -> None:
    from modelmix.eval import load_outcome_table

    pandas_csv = tmp_path / "p.csv"  # DataFrame.to_csv(): an unnamed index column first
    pandas_csv.write_text(",prompt,request_id,weak,strong,answer\n"
                          "0,a,1001,False,True,D\n1,b,1002,True,True,F\n2,c,1003,N/A,False,A\n")
    table = read_outcome_tables([pandas_csv])
    assert table.model_names == ("weak", "strong")
    assert np.isnan(table.outcomes[2, 0])
    assert load_outcome_table(pandas_csv).prompts == ("a", "b")  # row c: no weak outcome
    numbers = tmp_path / "n.csv"  # a numeric answer column next to True/False models
    numbers.write_text("prompt,weak,strong,answer\na,False,True,540\nb,True,True,72\n")
    for read in (lambda: read_outcome_tables([numbers]), lambda: load_outcome_table(numbers)):
        with pytest.raises(RouterDataError, match=r"\['answer'\] hold numbers beyond 0-1"):
            read()
    assert read_outcome_tables([numbers], models=["weak", "strong"]).model_names == (
        "weak", "strong")


def test_jsonl_rows_may_omit_keys_and_prompts_read_like_the_gateway(tmp_path: Path) -> None:
    from modelmix.eval import load_outcome_table

    f = write_jsonl(tmp_path / "sparse.jsonl", [
        {"prompt": "a", "weak": True},
        {"prompt": [{"role": "user", "content": "b"}], "weak": False, "strong": True,
         "subject": "s"},
        {"prompt": "c", "strong": False, "weak": True, "subject": "t"}])
    table = read_outcome_tables([f])
    assert table.model_names == ("weak", "strong") and table.prompts == ("a", "b", "c")
    assert table.domains == ("sparse", "s", "t")
    assert load_outcome_table(f).prompts == ("b", "c")
    null = write_jsonl(tmp_path / "null.jsonl", [{"prompt": None, "weak": True,
                                                  "strong": False}])
    for read in (lambda: read_outcome_tables([null]), lambda: load_outcome_table(null)):
        with pytest.raises(RouterDataError, match="row 1: 'prompt' is empty"):
            read()


def test_booleans_and_grades_in_one_training_set_keep_their_scales(tmp_path: Path) -> None:
    flags = write_csv(tmp_path / "flags.csv", [{"prompt": "a", "w": True, "s": False}])
    grades = write_csv(tmp_path / "grades.csv", [{"prompt": "b", "w": 1, "s": 10},
                                                 {"prompt": "c", "w": 4, "s": 7}])
    table = read_outcome_tables([flags, grades])
    np.testing.assert_allclose(table.outcomes, [[1.0, 0.0], [0.0, 1.0], [1 / 3, 2 / 3]])


def test_numeric_scores_outside_unit_range_are_scaled(tmp_path: Path) -> None:
    f = write_jsonl(tmp_path / "mt.jsonl", [{"prompt": "a", "x": 1, "y": 10},
                                            {"prompt": "b", "x": 4, "y": 7}])
    table = read_outcome_tables([f])
    np.testing.assert_allclose(table.outcomes, [[0.0, 1.0], [1 / 3, 2 / 3]])


@pytest.mark.parametrize(("content", "message"), [
    ("", "no rows"),
    ("prompt,m1\na,True\nb,0\nc,maybe\n", "row 3, column 'm1': 'maybe' is not True/False"),
    ("prompt,note\nhello,text\n", "no model outcome columns"),
    ("text,m1\nhello,True\n", "no column 'prompt'"),
    ("prompt,m1,m2\na,inf,True\nb,0,False\n", "row 1, column 'm1': 'inf' is not True/False or a"),
    # mostly not outcomes, but one is: a typo'd model column is reported, not dropped
    ("prompt,m1,m2\na,maybe,True\nb,maybe,False\nc,True,True\n", "row 1, column 'm1'"),
    ("prompt,m,m\na,True,False\n", r"column name\(s\) \['m'\] appear more than once"),
    ("prompt,m1\na,True,extra\n", "row 1 has more cells than the header"),
])
def test_bad_outcome_tables(tmp_path: Path, content: str, message: str) -> None:
    f = tmp_path / "t.csv"
    f.write_text(content)
    with pytest.raises(RouterDataError, match=message):
        read_outcome_tables([f])


def test_read_prompts_formats(tmp_path: Path) -> None:
    jsonl = write_jsonl(tmp_path / "p.jsonl", [
        {"prompt": "one"}, {"prompt": [{"role": "system", "content": "s"},
                                       {"role": "user", "content": "two"}]}])
    assert read_prompts(jsonl) == ["one", "two"]
    (tmp_path / "p.txt").write_text("first\nsecond\n")
    assert read_prompts(tmp_path / "p.txt") == ["first", "second"]
    (tmp_path / "bad.jsonl").write_text('{"prompt": "x"}\nnot json\n')
    with pytest.raises(RouterDataError, match=r"bad\.jsonl:2: not valid JSON"):
        read_prompts(tmp_path / "bad.jsonl")
    with pytest.raises(RouterDataError, match="no such file"):
        read_prompts(tmp_path / "missing.csv")


