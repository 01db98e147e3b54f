"""``modelmix cascade train|score|eval``: outputs, files, exit codes and one-line errors,
and the cascade evaluation's curves (their ends are weak-only and strong-only)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from _tables import write_csv, write_jsonl
from modelmix.cli import app
from modelmix.eval._cascade import (
    Price,
    cascade_cost,
    fixed_scores,
    load_cascade_table,
    run_cascade_eval,
)
from modelmix.routing.cascade import ArithmeticVerifier
from modelmix.routing.learned import RouterDataError

_ROOT = Path(__file__).resolve().parents[1]
GSM8K = _ROOT / "data" / "routellm" / "gsm8k.csv"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG = "gpt-4-1106-preview"


@pytest.fixture(scope="module")
def gsm8k_slice(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 150 rows of gsm8k.csv."""
    with GSM8K.open(newline="", encoding="utf-8") as fh:
        rows = [row for _, row in zip(range(150), csv.DictReader(fh), strict=False)]
    return write_csv(tmp_path_factory.mktemp("cascade") / "gsm8k.csv",
                     [dict(r) for r in rows])


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _error(result: Result) -> str:
    """A bad input: exit 2, one ``error: ...`` line on stderr, nothing on stdout."""
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_train_prints_cv_metrics_and_where_it_saved(gsm8k_slice: Path, tmp_path: Path) -> None:
    out = tmp_path / "verifier"
    result = _ok(CliRunner().invoke(app, [
        "cascade", "train", "--data", str(gsm8k_slice), "--response-column",
        f"{WEAK}_response", "--out", str(out), "--cv", "3"]))
    assert "trained a learned verifier on 150 answers" in result.stderr
    assert "CV (3-fold by prompt): AUC 0." in result.stderr and "accuracy" in result.stderr
    assert f"wrote {out}" in result.stderr
    assert {p.name for p in out.iterdir()} == {"manifest.json", "model.npz"}
    scored = _ok(CliRunner().invoke(app, [
        "cascade", "score", "--input", str(gsm8k_slice), "--response-column",
        f"{WEAK}_response", "--verifier", "learned", "--artifact", str(out)]))
    values = [float(v) for v in scored.stdout.split()]
    assert len(values) == 150 and all(0.0 <= v <= 1.0 for v in values)


def test_train_errors_are_one_line(gsm8k_slice: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["cascade", "train", "--data", str(gsm8k_slice), "--out", str(tmp_path / "v")]
    assert "no column 'answers'" in _error(runner.invoke(
        app, [*base, "--response-column", "answers", "--label-column", WEAK]))
    assert "name the label column" in _error(runner.invoke(app, [*base, "--response-column",
                                                                 "prompt"]))
    assert "no such file" in _error(runner.invoke(app, [
        "cascade", "train", "--data", str(tmp_path / "none.csv"), "--out", str(tmp_path / "v"),
        "--response-column", f"{WEAK}_response"]))


def test_score_prints_one_escalation_score_per_row(tmp_path: Path) -> None:
    rows = [{"prompt": "3 sprints of 60 m, 3 times a week?",
             "answer": "3 x 60 = 180\n180 x 3 = 540\n#### 540"},
            {"prompt": "3 sprints of 60 m, 3 times a week?",
             "answer": "3 x 60 = 190\n190 x 3 = 570\n#### 570"},
            {"prompt": "Order a pen", "answer": "no idea"}]
    data = write_jsonl(tmp_path / "answers.jsonl", rows)
    runner = CliRunner()
    result = _ok(runner.invoke(app, ["cascade", "score", "--input", str(data),
                                     "--response-column", "answer"]))
    assert [float(v) for v in result.stdout.split()] == [0.0, pytest.approx(1 / 3), 1.0]
    reasons = _ok(runner.invoke(app, ["cascade", "score", "--input", str(data),
                                      "--response-column", "answer", "--reasons"]))
    first = reasons.stdout.splitlines()[1].split("\t")
    assert first[1] == "false" and first[2].startswith("step 1: 3 x 60 = 190")
    schema = json.dumps({"schema": {"type": "object"}})
    jsonv = _ok(runner.invoke(app, ["cascade", "score", "--input", str(data),
                                    "--response-column", "answer", "--verifier",
                                    "json-schema", "--options", schema]))
    assert jsonv.stdout.split() == ["1.0", "1.0", "1.0"]


def test_score_errors_are_one_line_exit_2(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "a.jsonl", [{"prompt": "p", "answer": "1"}])
    runner = CliRunner()

    def run(*args: str) -> str:
        return _error(runner.invoke(app, ["cascade", "score", "--input", str(data), *args]))

    assert "no column 'reply'" in run("--response-column", "reply")
    assert "no column 'question'" in run("--response-column", "answer", "--prompt-column",
                                         "question")
    assert "unknown verifier 'magic'; known verifiers: arithmetic, json-schema, learned" in run(
        "--response-column", "answer", "--verifier", "magic")
    assert "--artifact is for --verifier learned" in run("--response-column", "answer",
                                                         "--artifact", "default")
    assert "option 'schema' is required" in run("--response-column", "answer", "--verifier",
                                                "json-schema")
    assert "not JSON or YAML" in run("--response-column", "answer", "--options", "{oops: [")
    assert "no verifier artifact" in run("--response-column", "answer", "--verifier",
                                         "learned", "--artifact", str(tmp_path / "nowhere"))
    assert "no such file" in _error(runner.invoke(app, [
        "cascade", "score", "--input", str(tmp_path / "gone.csv"), "--response-column", "a"]))


def test_eval_writes_table_json_and_plot(gsm8k_slice: Path, tmp_path: Path) -> None:
    out = tmp_path / "eval"
    result = _ok(CliRunner().invoke(app, [
        "cascade", "eval", "--data", str(gsm8k_slice), "--cv", "3", "--out", str(out)]))
    assert "cascade (learned" in result.stdout and "APGR" in result.stdout
    assert {p.name for p in out.iterdir()} == {"cascade.json", "cascade.md", "cascade.png"}
    doc = json.loads((out / "cascade.json").read_text())
    report = doc["datasets"][0]
    assert list(report["methods"]) == ["cascade", "router", "random", "oracle"]
    assert report["n_prompts"] == 150 and report["folds"] == 3
    assert report["verifier"] == "learned verifier retrained per fold (C=0.1)"
    cost = report["cost_model"]
    cascade50 = report["methods"]["cascade"]["cpt"]["50%"]["mean"]
    assert report["methods"]["cascade"]["usd_per_1k_at_cpt"]["50%"] == pytest.approx(
        1000 * (cost["weak_usd"] + cascade50 * cost["strong_usd"]))
    markdown = (out / "cascade.md").read_text()
    assert markdown.startswith("| method | APGR | CPT(50%) | CPT(80%) |")
    assert "A cascade pays the weak call on every prompt" in markdown


def test_cascade_curves_end_at_weak_only_and_strong_only(gsm8k_slice: Path) -> None:
    table = load_cascade_table(gsm8k_slice)
    assert (table.pair.weak_model, table.pair.strong_model) == (WEAK, STRONG)
    report = run_cascade_eval(table, fixed_scores(ArithmeticVerifier()), verifier="arithmetic",
                              folds=3)
    assert "router" not in report.methods and report.router is None
    for fold in report.methods["cascade"].folds:
        first, last = fold.curve[0], fold.curve[-1]
        assert (first.strong_fraction, first.quality) == (0.0, pytest.approx(fold.q_weak))
        assert (last.strong_fraction, last.quality) == (1.0, pytest.approx(fold.q_strong))
    weak = np.mean(table.pair.weak)
    assert report.q_weak.mean == pytest.approx(weak, abs=0.02)  # folds differ by one row
    mean = report.methods["cascade"].quality_mean
    assert mean[0] == pytest.approx(report.q_weak.mean)
    assert mean[-1] == pytest.approx(report.q_strong.mean)


def test_cascade_cost_counts_the_weak_call_on_every_prompt(gsm8k_slice: Path) -> None:
    table = load_cascade_table(gsm8k_slice)
    cost = cascade_cost(table, Price.parse("1"), Price.parse("10/30"))
    assert cost.weak_usd == pytest.approx((cost.prompt_tokens + cost.weak_completion_tokens)
                                          / 1e6)
    assert cost.cascade_usd(0.0) == pytest.approx(cost.weak_usd)
    assert cost.cascade_usd(1.0) == pytest.approx(cost.weak_usd + cost.strong_usd)
    assert cost.routed_usd(1.0) == pytest.approx(cost.strong_usd)
    with pytest.raises(ValueError, match="is not a price"):
        Price.parse("ten")


def test_eval_errors_are_one_line(tmp_path: Path) -> None:
    no_answers = write_csv(tmp_path / "t.csv", [
        {"prompt": f"q{i}", "weak": i % 2 == 0, "strong": True} for i in range(10)])
    runner = CliRunner()
    message = _error(runner.invoke(app, ["cascade", "eval", "--data", str(no_answers),
                                         "--verifier", "arithmetic", "--no-router",
                                         "--out", str(tmp_path / "o")]))
    assert "no column 'weak_response' with the weak model's answers" in message
    assert "is not a price" in _error(runner.invoke(app, [
        "cascade", "eval", "--data", str(no_answers), "--weak-price", "cheap",
        "--out", str(tmp_path / "o")]))
    with pytest.raises(RouterDataError):
        load_cascade_table(no_answers)
