"""Learned router: training, artifacts, `modelmix router train/score/calibrate` (reading
outcome tables: test_router_tables.py)."""

from __future__ import annotations

import csv
import json
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import Result
from typer.testing import CliRunner

from _tables import write_csv, write_jsonl
from modelmix.cli import app
from modelmix.errors import ConfigError
from modelmix.routing.learned import (
    FORMAT_VERSION,
    FitOptions,
    LearnedPredictor,
    QualityPredictor,
    StaticEmbedder,
    artifact_size,
    default_artifact_dir,
    load_embedder,
    load_predictor,
    read_outcome_tables,
    train_router,
)

WEAK, STRONG = "small-model", "big-model"
MAX_ARTIFACT_BYTES = 20 * 1024 * 1024


def _arithmetic(rng: random.Random) -> tuple[str, int]:
    """A multi-step word problem; difficulty = number of steps (1-5)."""
    steps = rng.randint(1, 5)
    parts = [f"Tom has {rng.randint(2, 90)} apples."]
    for _ in range(steps):
        parts.append(rng.choice([
            f"He buys {rng.randint(2, 40)} more at ${rng.randint(1, 9)} each.",
            f"He gives away {rng.randint(1, 30)} percent of them.",
            f"Then he splits them into {rng.randint(2, 7)} equal baskets.",
        ]))
    parts.append("How many apples are in each basket?")
    return " ".join(parts), steps


def _trivia(rng: random.Random) -> str:
    city = rng.choice(["Paris", "Rome", "Lima", "Oslo", "Cairo", "Quito", "Hanoi"])
    return rng.choice([f"Which country is {city} the capital of?",
                       f"What language do most people speak in {city}?",
                       f"Name a famous museum in {city}."])


def make_rows(n: int, seed: int = 0) -> list[dict[str, object]]:
    """Synthetic outcomes: the weak model fails multi-step arithmetic, both know trivia."""
    rng = random.Random(seed)
    rows: list[dict[str, object]] = []
    for i in range(n):
        if i % 2:
            prompt, steps = _arithmetic(rng)
            weak_ok = rng.random() > 0.18 * steps
            strong_ok = rng.random() > 0.05
            domain = "math"
        else:
            prompt, weak_ok, strong_ok, domain = _trivia(rng), rng.random() > 0.1, True, "trivia"
        rows.append({"subject": domain, "prompt": f"{prompt} (#{i})", WEAK: weak_ok,
                     STRONG: strong_ok})
    return rows


@pytest.fixture(scope="module")
def embedder() -> StaticEmbedder:
    return load_embedder("default")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory,
            embedder: StaticEmbedder) -> LearnedPredictor:
    tmp = tmp_path_factory.mktemp("router")
    rows = make_rows(400)
    data = [write_csv(tmp / "part1.csv", rows[:250]), write_jsonl(tmp / "part2.jsonl", rows[250:])]
    return train_router(data, tmp / "artifact", embedder_from=embedder,
                        options=FitOptions(c=1.0, inner_folds=3))


def _ok(result: Result) -> Result:
    assert result.exit_code == 0, result.output
    return result


def _clean_error(result: Result) -> str:
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and result.stdout == ""
    return result.stderr


# -- training and artifacts -------------------------------------------------------------------


def test_trained_router_learns_who_needs_the_strong_model(trained: LearnedPredictor) -> None:
    predictor: QualityPredictor = trained
    assert predictor.model_names == (WEAK, STRONG)
    assert (trained.weak_model, trained.strong_model) == (WEAK, STRONG)
    rng = random.Random(99)  # unseen prompts
    hard = [_arithmetic(rng)[0] for _ in range(30)]
    easy = [_trivia(rng) for _ in range(30)]
    scores = trained.strong_score(hard + easy)
    assert all(0.0 <= s <= 1.0 for s in scores)
    assert np.mean(scores[:30]) > np.mean(scores[30:]) + 0.05
    probs = np.asarray(trained.predict(hard + easy))
    assert probs.shape == (60, 2)
    assert probs[:30, 0].mean() < probs[30:, 0].mean()  # weak model worse on arithmetic


def test_artifact_round_trip_manifest_and_size(trained: LearnedPredictor) -> None:
    directory = trained.artifact_dir
    assert directory is not None
    loaded = load_predictor(directory)
    prompts = ["What is 17 * 23?", "Who wrote Hamlet?", ""]
    np.testing.assert_allclose(loaded.predict(prompts), trained.predict(prompts), atol=1e-6)
    manifest = json.loads((directory / "manifest.json").read_text())
    assert manifest["format"] == "modelmix-router"
    assert manifest["format_version"] == FORMAT_VERSION
    assert manifest["modelmix_version"]
    assert manifest["model_names"] == [WEAK, STRONG]
    assert manifest["learner"]["name"] == "logreg"
    assert len(manifest["training_data"]["sha256"]) == 64
    assert [f["rows"] for f in manifest["training_data"]["files"]] == [250, 150]
    assert manifest["features"]["domains"] == ["part1/math", "part1/trivia", "part2/math",
                                               "part2/trivia"]
    assert manifest["features"]["sources"] == ["part1", "part2"]
    assert artifact_size(directory) <= MAX_ARTIFACT_BYTES


def test_other_format_version_is_refused(trained: LearnedPredictor, tmp_path: Path) -> None:
    import shutil

    assert trained.artifact_dir is not None
    copy = Path(shutil.copytree(trained.artifact_dir, tmp_path / "old"))
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["format_version"] = FORMAT_VERSION + 1
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="format version"):
        load_predictor(copy)
    with pytest.raises(ConfigError, match="no router artifact"):
        load_predictor(tmp_path / "nowhere")


@pytest.mark.parametrize("learner", ["mf", "knn"])
def test_other_learners_train_and_load(learner: str, embedder: StaticEmbedder,
                                       tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", make_rows(200, seed=1))
    options = FitOptions(learner=learner, inner_folds=3, mf_epochs=50, knn_k=10)  # type: ignore[arg-type]
    router = train_router([data], tmp_path / learner, embedder_from=embedder, options=options)
    again = load_predictor(tmp_path / learner)
    prompts = ["Tom has 4 apples. He buys 3 more. How many?", "Capital of Peru?"]
    np.testing.assert_allclose(again.strong_score(prompts), router.strong_score(prompts),
                               atol=1e-6)


def test_token_and_structure_features_train_load_and_score(embedder: StaticEmbedder,
                                                           tmp_path: Path) -> None:
    data = write_csv(tmp_path / "t.csv", make_rows(200, seed=2))
    options = FitOptions(tokens=True, structure=True, token_buckets=1 << 12, inner_folds=3)
    router = train_router([data], tmp_path / "tok", embedder_from=embedder, options=options,
                          cv_folds=2)
    manifest = json.loads((tmp_path / "tok" / "manifest.json").read_text())
    assert manifest["learner"]["tokens"]["buckets"] == 1 << 12
    assert manifest["features"]["structure"]
    again = load_predictor(tmp_path / "tok")
    assert again.model.uses_tokens and again.model.structure
    prompts = ["Tom has 4 apples. He buys 3 more. How many?",
               "Statement 1 | A group is a ring. Statement 2 | 2 is prime.\nA. True, True\n"
               "B. False, False\nC. True, False\nD. False, True\nAnswer:", ""]
    batch = again.strong_score(prompts)
    np.testing.assert_allclose(batch, router.strong_score(prompts), atol=1e-9)
    np.testing.assert_allclose(batch, [again.strong_score([p])[0] for p in prompts], atol=1e-9)
    assert all(0.0 <= v <= 1.0 for v in batch)
    oof = router.cv_scores  # out-of-fold: every prompt scored by a router that never saw it
    assert oof is not None and oof.shape == (200,) and np.isfinite(oof).all()
    table = read_outcome_tables([data])
    in_sample = np.asarray(router.strong_score(list(table.prompts)))
    assert not np.allclose(oof, in_sample)
    assert train_router([data], embedder_from=embedder, options=options).cv_scores is None


def test_three_models_and_numeric_scores(embedder: StaticEmbedder, tmp_path: Path) -> None:
    rng = random.Random(3)
    rows = [{"prompt": f"{_trivia(rng)} {i}", "a": rng.randint(1, 10), "b": rng.randint(1, 10),
             "c": rng.randint(1, 10)} for i in range(120)]
    data = write_jsonl(tmp_path / "mt.jsonl", rows)
    router = train_router([data], None, embedder_from=embedder,
                          options=FitOptions(inner_folds=3))
    assert router.model_names == ("a", "b", "c") and router.weak_model is None
    assert np.asarray(router.predict(["hello"])).shape == (1, 3)
    with pytest.raises(ConfigError, match="no weak/strong"):
        router.strong_score(["hello"])
    paired = train_router([data], None, embedder_from=embedder, weak="a", strong="c",
                          options=FitOptions(inner_folds=3))
    assert len(paired.strong_score(["x", "y"])) == 2


# -- command line -----------------------------------------------------------------------------


def test_cli_train_then_score_unseen_prompts_in_order(tmp_path: Path) -> None:
    runner = CliRunner()
    rows = make_rows(240, seed=5)
    a = write_csv(tmp_path / "a.csv", rows[:120])
    b = write_jsonl(tmp_path / "b.jsonl", rows[120:])
    out = tmp_path / "router"
    result = _ok(runner.invoke(app, ["router", "train", "--data", str(a), str(b),
                                     "--out", str(out), "--cv", "3"]))
    assert "trained logreg on 240 prompts" in result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    table = read_outcome_tables([a, b])
    differ = int((table.outcomes[:, 0] != table.outcomes[:, 1]).sum())
    assert manifest["training_data"]["disagreements"] == differ > 0
    assert set(manifest["cv_metrics"]["datasets"]) == {"a", "b"}

    rng = random.Random(1234)
    unseen = [_arithmetic(rng)[0] if i % 3 else _trivia(rng) for i in range(25)]
    expected = load_predictor(out).strong_score(unseen)
    for name, writer in (("q.csv", write_csv), ("q.jsonl", write_jsonl)):
        file = writer(tmp_path / name, [{"id": i, "text": p} for i, p in enumerate(unseen)])
        result = _ok(runner.invoke(app, ["router", "score", "--router", str(out), "--input",
                                         str(file), "--prompt-column", "text"]))
        lines = result.stdout.splitlines()
        assert len(lines) == len(unseen)
        np.testing.assert_allclose([float(x) for x in lines], expected, atol=1e-9)


def test_cli_score_model_column_and_info(trained: LearnedPredictor, tmp_path: Path) -> None:
    runner = CliRunner()
    file = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "Who painted the Mona Lisa?"}])
    result = _ok(runner.invoke(app, ["router", "score", "--router", str(trained.artifact_dir),
                                     "--input", str(file), "--model", WEAK]))
    expected = trained.predict(["Who painted the Mona Lisa?"])[0][0]
    assert float(result.stdout) == pytest.approx(expected)
    info = json.loads(_ok(runner.invoke(app, ["router", "info", "--router",
                                              str(trained.artifact_dir)])).stdout)
    assert info["model_names"] == [WEAK, STRONG]


def test_cli_score_bad_inputs(trained: LearnedPredictor, tmp_path: Path) -> None:
    runner = CliRunner()
    router = str(trained.artifact_dir)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    wrong = write_csv(tmp_path / "wrong.csv", [{"question": "hi"}])

    def score(*args: str) -> str:
        return _clean_error(runner.invoke(app, ["router", "score", "--router", router, *args]))

    assert "no such file" in score("--input", str(tmp_path / "missing.jsonl"))
    assert "no rows" in score("--input", str(empty))
    assert "no column 'prompt'" in score("--input", str(wrong))
    assert "no model 'nope'" in score("--input", str(wrong), "--prompt-column", "question",
                                      "--model", "nope")
    assert "no router artifact" in _clean_error(runner.invoke(
        app, ["router", "score", "--router", str(tmp_path), "--input", str(wrong)]))


def test_cli_train_bad_inputs(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = tmp_path / "bad.csv"
    bad.write_text("prompt,m1\nhi,True\nho,False\nhello,perhaps\n")
    result = runner.invoke(app, ["router", "train", "--data", str(bad), "--out",
                                 str(tmp_path / "o")])
    assert "'perhaps' is not True/False" in _clean_error(result)
    result = runner.invoke(app, ["router", "train", "--data", str(tmp_path / "none.csv"),
                                 "--out", str(tmp_path / "o")])
    assert "no such file" in _clean_error(result)

    good = write_csv(tmp_path / "good.csv", make_rows(12, seed=3))
    a_file = tmp_path / "a-file"
    a_file.write_text("")

    def train(*args: str) -> str:
        return _clean_error(runner.invoke(app, ["router", "train", "--data", str(good), *args]))

    # checked before any training: no traceback, nothing half-written
    assert "exists and is not a directory" in train("--out", str(a_file))
    assert "cannot create the directory" in train("--out", str(a_file / "sub"))
    assert "at least 2 folds" in train("--out", str(tmp_path / "o1"), "--cv", "1")
    assert "cannot cross-validate" in train("--out", str(tmp_path / "o2"), "--cv", "13")
    three = write_csv(tmp_path / "three.csv", [{"prompt": f"q{i}", "a": i % 2, "b": 1, "c": 0}
                                               for i in range(12)])
    result = runner.invoke(app, ["router", "train", "--data", str(three), "--out",
                                 str(tmp_path / "o3"), "--cv", "2"])
    assert "--cv needs a weak/strong pair" in _clean_error(result)
    same = train("--out", str(tmp_path / "o4"), "--weak", WEAK, "--strong", WEAK)
    assert f"both {WEAK!r}" in same
    assert not (tmp_path / "o2" / "manifest.json").exists()


def test_cli_train_cv_without_a_quality_gap_writes_null_not_nan(tmp_path: Path) -> None:
    rows = [{"prompt": f"question {i}", "weak": True, "strong": True} for i in range(12)]
    out = tmp_path / "router"
    result = _ok(CliRunner().invoke(app, ["router", "train", "--data",
                                          str(write_csv(tmp_path / "same.csv", rows)),
                                          "--out", str(out), "--cv", "3"]))
    assert "APGR n/a, CPT(50%) n/a" in result.stderr
    assert "differ on only 0 training prompts" in result.stderr
    text = (out / "manifest.json").read_text()
    assert "NaN" not in text  # strict JSON parsers reject it
    assert json.loads(text)["cv_metrics"]["datasets"]["same"]["apgr"]["mean"] is None


def test_cli_score_reports_an_unwritable_stdout(trained: LearnedPredictor,
                                                tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "q.jsonl", [{"prompt": "hi"}])
    with open("/dev/full", "w") as full:  # every write fails with ENOSPC
        proc = subprocess.run([sys.executable, "-m", "modelmix", "router", "score", "--router",
                               str(trained.artifact_dir), "--input", str(file)],
                              stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 1
    assert "cannot write the scores" in proc.stderr and "Traceback" not in proc.stderr


# -- the shipped default ----------------------------------------------------------------------


def test_default_artifact_loads_fast_and_scores() -> None:
    directory = default_artifact_dir()
    assert artifact_size(directory) <= MAX_ARTIFACT_BYTES
    start = time.perf_counter()
    router = load_predictor("default")
    assert time.perf_counter() - start < 2.0  # benchmark target <= 1 s; slack for busy CI
    assert router.weak_model == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    assert router.strong_model == "gpt-4-1106-preview"
    manifest = router.manifest
    assert manifest["format_version"] == FORMAT_VERSION
    assert {"mmlu", "gsm8k"} <= set(manifest["cv_metrics"]["datasets"])
    scores = router.strong_score([
        "What is the capital of France?",
        "Janet has 3 boxes with 12 pens each. She sells 40% of them at $2 each and buys "
        "notebooks for $1.50 each with the money. How many notebooks does she buy?",
        "", "¿Cuál es la capital de Perú?", "x" * 20000])
    assert len(scores) == 5 and all(0.0 <= s <= 1.0 for s in scores)


def test_cli_calibrate_on_out_of_fold_scores(trained: LearnedPredictor, tmp_path: Path) -> None:
    from modelmix.routing import load_calibration

    assert trained.artifact_dir is not None
    data = trained.artifact_dir.parent / "part1.csv"
    base = ["router", "calibrate", "--router", str(trained.artifact_dir), "--data", str(data),
            "--target", "min-pgr=0.8", "--name", "q"]
    (tmp_path / "in").mkdir()
    (tmp_path / "oof").mkdir()
    in_run = _ok(CliRunner().invoke(app, [*base, "--out", str(tmp_path / "in")]))
    assert "part1.csv is in this router's training data" in " ".join(in_run.stderr.split())
    oof_run = _ok(CliRunner().invoke(app, [*base, "--out", str(tmp_path / "oof"), "--cv", "3"]))
    assert "training data" not in oof_run.stderr
    in_sample = load_calibration(tmp_path / "in").targets["q"]
    oof = load_calibration(tmp_path / "oof").targets["q"]
    # scores of prompts the router never saw are less confident: the same quality target
    # takes at least as many strong calls (a threshold set in-sample would promise too much)
    assert oof.strong_share >= in_sample.strong_share and oof.threshold != in_sample.threshold
    output = _clean_error(CliRunner().invoke(app, [*base, "--cv", "1"]))
    assert "at least 2 folds" in output

    # rows without both outcomes (sparse feedback exports) are left out of the scores too
    rows = list(csv.DictReader(data.open()))
    for row in rows[::7]:
        row[STRONG] = ""
    sparse = write_csv(tmp_path / "sparse.csv", rows)
    result = _ok(CliRunner().invoke(app, [*base[:5], str(sparse), *base[6:], "--out",
                                          str(tmp_path / "oof"), "--cv", "3"]))
    assert "out-of-fold" in result.stdout

    # the same table with its prompt column named otherwise: the same threshold
    renamed = write_csv(tmp_path / "renamed.csv", [
        {("question" if k == "prompt" else k): v for k, v in row.items()}
        for row in csv.DictReader(data.open())])
    (tmp_path / "renamed").mkdir()
    _ok(CliRunner().invoke(app, [*base[:5], str(renamed), *base[6:], "--out",
                                 str(tmp_path / "renamed"), "--cv", "3",
                                 "--prompt-column", "question"]))
    assert load_calibration(tmp_path / "renamed").targets["q"].threshold == oof.threshold
