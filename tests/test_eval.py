"""Router evaluation: RouteLLM metrics on hand-computed examples, baselines' stated
properties, cross-validation protocol (no leakage), cost, outputs."""

from __future__ import annotations

import csv
import json
import math
import random
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.console import Console

from modelmix.catalog import Deployment
from modelmix.eval import (
    CURVE_GRID,
    CurvePoint,
    EvalOptions,
    Fit,
    PairTable,
    Scorer,
    apgr,
    cost_model,
    cpt,
    cross_validate,
    decile_thresholds,
    evaluate_holdout,
    evaluate_scores,
    interpolate_curve,
    load_outcome_table,
    oracle_curve,
    oracle_metrics,
    pgr,
    quality_curve,
    random_metrics,
    render_table,
    run_eval,
    stratified_folds,
    write_results,
)
from modelmix.routing.learned import RouterDataError

_ROOT = Path(__file__).resolve().parents[1]
DATA = next((d for d in (_ROOT / "data" / "routellm",
                         _ROOT.parent / "shared" / "data" / "routellm")
             if (d / "gsm8k.csv").is_file()), _ROOT / "data" / "routellm")


def _points(curve: Sequence[CurvePoint]) -> list[tuple[float, float]]:
    return [(round(p.strong_fraction, 9), round(p.quality, 9)) for p in curve]


# --- metrics on hand-computed examples ---------------------------------------------------


def test_decile_edges_are_linear_quantiles() -> None:
    # pandas 2 takes np.percentile at linspace(0, 1, 11) * 100: 0.3 * 100 is
    # 30.000000000000004, so the 30% edge of 0..10 lies one ulp above 3.
    edges = decile_thresholds(list(range(11)))
    assert edges == pytest.approx([float(i) for i in range(11)], abs=1e-12)
    assert edges[3] == 3.0000000000000004
    # n=4: position 0.3*k between sorted values (pandas/NumPy "linear").
    edges = decile_thresholds([0.4, 0.1, 0.3, 0.2])
    assert edges == pytest.approx([0.1, 0.13, 0.16, 0.19, 0.22, 0.25, 0.28, 0.31, 0.34, 0.37,
                                   0.4])


def test_decile_edges_match_pandas_2_on_ties() -> None:
    # Edges and routed counts recorded from pandas 2.2.3 qcut (duplicates kept) on a tied
    # table where pandas 3's rounded-up levels would route differently at the 70% edge.
    x = [0.666667, 1.333333, 0.0, 0.0, 0.666667, 1.333333, 0.666667, 1.666667, 1.666667,
         0.666667, 0.666667, 1.0, 1.0, 0.666667, 1.0, 1.666667, 1.333333, 0.333333,
         0.666667, 0.666667, 0.0]
    edges = decile_thresholds(x)
    assert edges == [0.0, 0.0, 0.666667, 0.666667, 0.666667, 0.666667, 1.0, 1.0, 1.333333,
                     1.666667, 1.666667]
    curve = quality_curve(x, [0.0] * 21, [1.0] * 21)
    counts = [round(p.strong_fraction * 21) for p in curve]
    assert counts == [0, 3, 6, 9, 17, 21]   # from [21,21,17,17,17,17,9,9,6,3,0]


def test_quality_curve_apgr_cpt_by_hand() -> None:
    scores = [0.1, 0.2, 0.3, 0.4]
    weak = [1, 0, 1, 0]
    strong = [1, 1, 0, 1]
    curve = quality_curve(scores, weak, strong)
    # 0%: all weak = .5; 25%: 0.4 -> strong = .75; 50%: .5; 75%: .75; 100%: all strong .75
    assert _points(curve) == [(0.0, 0.5), (0.25, 0.75), (0.5, 0.5), (0.75, 0.75), (1.0, 0.75)]
    assert curve[0].threshold == 0.4 and curve[-1].threshold == 0.1
    m = evaluate_scores(scores, weak, strong)
    assert (m.q_weak, m.q_strong) == (0.5, 0.75)
    assert m.auc == pytest.approx(0.25 * (0.625 * 3 + 0.75))        # 0.65625
    assert m.apgr == pytest.approx((0.65625 - 0.5) / 0.25)          # 0.625
    # targets .55 / .625 / .7 are crossed on the first segment (.5 -> .75 over 0 -> .25)
    assert m.cpt[0.2] == pytest.approx(0.05)
    assert m.cpt[0.5] == pytest.approx(0.125)
    assert m.cpt[0.8] == pytest.approx(0.2)


def test_pgr_and_degenerate_gap() -> None:
    assert pgr(0.7, 0.6, 0.8) == pytest.approx(0.5)
    assert math.isnan(pgr(0.7, 0.7, 0.7))
    m = evaluate_scores([0.1, 0.9], [1, 0], [0, 1])   # q_weak == q_strong
    assert math.isnan(m.apgr) and all(math.isnan(v) for v in m.cpt.values())


def test_cpt_first_crossing_on_non_monotone_and_flat_curves() -> None:
    dip = [CurvePoint(0.0, 0.5), CurvePoint(0.2, 0.9), CurvePoint(0.6, 0.6),
           CurvePoint(1.0, 1.0)]
    assert cpt(dip, 0.5, 0.5, 1.0) == pytest.approx(0.2 * 0.25 / 0.4)
    flat = [CurvePoint(0.0, 0.5), CurvePoint(0.3, 0.75), CurvePoint(0.6, 0.75),
            CurvePoint(1.0, 1.0)]
    assert cpt(flat, 0.5, 0.5, 1.0) == pytest.approx(0.3)   # np.interp would say 0.6
    assert cpt(flat, 0.0, 0.5, 1.0) == 0.0
    assert cpt(flat, 1.0, 0.5, 1.0) == 1.0


def test_apgr_of_straight_line_is_half_and_of_step_is_one() -> None:
    line = [CurvePoint(0.0, 0.6), CurvePoint(1.0, 0.8)]
    assert apgr(line, 0.6, 0.8) == pytest.approx(0.5)
    step = [CurvePoint(0.0, 0.6), CurvePoint(1e-9, 0.8), CurvePoint(1.0, 0.8)]
    assert apgr(step, 0.6, 0.8) == pytest.approx(1.0, abs=1e-6)


def test_curve_has_both_ends_even_with_constant_scores() -> None:
    curve = quality_curve([0.5] * 6, [1, 0, 1, 0, 1, 0], [1, 1, 1, 1, 1, 0])
    assert _points(curve) == [(0.0, 0.5), (1.0, round(5 / 6, 9))]


def test_input_validation() -> None:
    with pytest.raises(ValueError, match="length mismatch"):
        quality_curve([0.1, 0.2], [1], [1, 0])
    with pytest.raises(ValueError, match="NaN"):
        evaluate_scores([0.1, math.nan], [1, 0], [1, 1])
    with pytest.raises(ValueError, match="non-empty"):
        decile_thresholds([])


# --- baselines ---------------------------------------------------------------------------


def _synthetic(n: int, seed: int = 100) -> tuple[np.ndarray, np.ndarray]:
    # Seeds >= 100: the random baseline draws its scores from default_rng(0..9), and the
    # same stream here would correlate them with the outcomes.
    rng = np.random.default_rng(seed)
    weak = (rng.random(n) < 0.65).astype(float)
    strong = np.where(weak == 1, rng.random(n) < 0.9, rng.random(n) < 0.6).astype(float)
    return weak, strong


def test_random_baseline_apgr_half_cpt50_half() -> None:
    weak, strong = _synthetic(4000)
    m = random_metrics(weak, strong)
    assert m.apgr == pytest.approx(0.5, abs=0.03)
    assert m.cpt[0.5] == pytest.approx(0.5, abs=0.04)
    assert m.cpt[0.2] == pytest.approx(0.2, abs=0.05)
    assert m.cpt[0.8] == pytest.approx(0.8, abs=0.05)
    assert [p.strong_fraction for p in m.curve] == pytest.approx(np.linspace(0, 1, 11))


def test_random_baseline_is_the_mean_of_ten_seeds() -> None:
    weak, strong = _synthetic(500, seed=103)
    runs = [evaluate_scores(np.random.default_rng(s).random(500), weak, strong)
            for s in range(10)]
    m = random_metrics(weak, strong)
    assert m.apgr == pytest.approx(float(np.mean([r.apgr for r in runs])))
    assert m.cpt[0.5] == pytest.approx(float(np.mean([r.cpt[0.5] for r in runs])))


def test_oracle_by_hand() -> None:
    weak, strong = [1, 0, 0, 0], [1, 1, 1, 0]   # gains where weak wrong, strong right: 2
    assert _points(oracle_curve(weak, strong)) == [(0.0, 0.25), (0.5, 0.75), (1.0, 0.75)]
    m = oracle_metrics(weak, strong)
    assert m.auc == pytest.approx(0.625)
    assert m.apgr == pytest.approx((0.625 - 0.25) / 0.5)
    assert m.cpt[0.5] == pytest.approx(0.25)
    # RouteLLM get_optimal_accuracy: (weak_correct + min(f * n, #gain)) / n
    for f in (0.0, 0.1, 0.3, 0.5, 0.8, 1.0):
        want = (1 + min(f * 4, 2)) / 4
        assert interpolate_curve(m.curve, [f])[0] == pytest.approx(want)


def test_oracle_numeric_scores_and_beats_strong() -> None:
    assert _points(oracle_curve([5, 3], [4, 9])) == [(0.0, 4.0), (0.5, 7.0), (1.0, 7.0)]
    weak, strong = _synthetic(1000)
    m = oracle_metrics(weak, strong)
    assert m.curve[-1].quality >= m.q_strong
    assert m.apgr > 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(0, 1)), min_size=2,
                max_size=60))
def test_oracle_bounds_every_router(rows: list[tuple[bool, bool, float]]) -> None:
    weak = [float(w) for w, _, _ in rows]
    strong = [float(s) for _, s, _ in rows]
    scores = [x for _, _, x in rows]
    oracle = oracle_curve(weak, strong)
    for point in quality_curve(scores, weak, strong):
        bound = interpolate_curve(oracle, [point.strong_fraction])[0]
        assert point.quality <= bound + 1e-12


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.booleans(), st.floats(-5, 5)), min_size=1,
                max_size=80))
def test_curve_invariants(rows: list[tuple[bool, bool, float]]) -> None:
    weak = [float(w) for w, _, _ in rows]
    strong = [float(s) for _, s, _ in rows]
    curve = quality_curve([x for _, _, x in rows], weak, strong)
    fractions = [p.strong_fraction for p in curve]
    assert fractions[0] == 0.0 and fractions[-1] == 1.0
    assert fractions == sorted(set(fractions))
    assert curve[0].quality == pytest.approx(np.mean(weak))
    assert curve[-1].quality == pytest.approx(np.mean(strong))
    assert len(curve) <= 11


# --- cross-validation --------------------------------------------------------------------


def _table(n: int = 600, seed: int = 0, subjects: int = 6) -> PairTable:
    """Synthetic table: prompts needing the strong model are longer (a learnable signal);
    a few prompts occur twice."""
    rng = random.Random(seed)
    prompts: list[str] = []
    weak: list[float] = []
    strong: list[float] = []
    subj: list[str] = []
    for i in range(n):
        hard = rng.random() < 0.35
        w = 0.0 if hard and rng.random() < 0.8 else float(rng.random() < 0.85)
        s = float(rng.random() < (0.8 if hard else 0.9))
        words = rng.randint(40, 80) if hard else rng.randint(5, 45)
        text = f"q{i} " + " ".join("word" for _ in range(words))
        if i % 50 == 49:
            text = prompts[i - 1]   # a duplicated prompt, in another subject row
        prompts.append(text)
        weak.append(w)
        strong.append(s)
        subj.append(f"subject_{i % subjects}")
    return PairTable(name="synthetic", prompts=tuple(prompts), weak=tuple(weak),
                     strong=tuple(strong), weak_model="small", strong_model="big",
                     subjects=tuple(subj))


def test_folds_partition_group_by_prompt_and_stratify() -> None:
    table = _table()
    folds = stratified_folds(table, 5, seed=1)
    flat = sorted(i for f in folds for i in f)
    assert flat == list(range(len(table)))
    fold_of = {i: k for k, f in enumerate(folds) for i in f}
    by_prompt: dict[str, set[int]] = {}
    for i, p in enumerate(table.prompts):
        by_prompt.setdefault(p, set()).add(fold_of[i])
    assert all(len(v) == 1 for v in by_prompt.values())   # a prompt never spans folds
    assert table.subjects is not None
    for subject in set(table.subjects):
        per_fold = Counter(fold_of[i] for i, s in enumerate(table.subjects) if s == subject)
        assert max(per_fold.values()) - min(per_fold.values()) <= 3   # dup rows may add
        assert len(per_fold) == 5
    groups = [len({table.prompts[i] for i in f}) for f in folds]
    assert max(groups) - min(groups) <= 1
    assert stratified_folds(table, 5, seed=1) == folds
    assert stratified_folds(table, 5, seed=2) != folds
    with pytest.raises(ValueError, match="folds"):
        stratified_folds(table, 1)


def _length_fit(train: Sequence[PairTable]) -> Scorer:
    return lambda prompts: [float(len(p)) for p in prompts]


def test_cross_validate_length_router_beats_random() -> None:
    report = cross_validate(_table(), _length_fit, folds=5, router="length")
    router, rnd, oracle = (report.methods[m] for m in ("router", "random", "oracle"))
    assert report.protocol == "cv" and report.folds == 5
    assert len(router.folds) == 5 and router.apgr.std is not None
    assert router.apgr.mean > rnd.apgr.mean + 0.1
    assert oracle.apgr.mean > router.apgr.mean
    assert router.cpt[0.5].mean < rnd.cpt[0.5].mean
    assert len(router.quality_mean) == len(CURVE_GRID)
    assert report.q_weak.mean == pytest.approx(router.quality_mean[0])
    again = cross_validate(_table(), _length_fit, folds=5)
    assert again.methods["router"].apgr == router.apgr


def _memorizer(seen: list[set[str]]) -> Fit:
    """A 'router' that memorises training outcomes: the oracle's gain on prompts it trained
    on, a constant elsewhere. Scored on its own training data it looks near-perfect."""
    def fit(parts: Sequence[PairTable]) -> Scorer:
        gain = {p: s - w for t in parts
                for p, w, s in zip(t.prompts, t.weak, t.strong, strict=True)}
        seen.append(set(gain))

        def score(prompts: Sequence[str]) -> list[float]:
            return [gain.get(p, 0.0) for p in prompts]
        return score
    return fit


def test_cv_never_scores_a_training_prompt_so_leakage_would_show() -> None:
    table = _table()
    seen: list[set[str]] = []
    fit = _memorizer(seen)
    cv = cross_validate(table, fit, folds=5)
    folds = stratified_folds(table, 5)
    for trained, test_rows in zip(seen, folds, strict=True):
        assert not trained & {table.prompts[i] for i in test_rows}
    # Honest protocol: memorising is worth nothing on unseen prompts (~random)...
    assert cv.methods["router"].apgr.mean < 0.6
    # ...while scoring the training prompts (the leak CV prevents) looks like the oracle.
    leaked = evaluate_holdout(table, fit([table]))
    assert leaked.methods["router"].apgr.mean > 1.0
    assert leaked.protocol == "holdout" and leaked.methods["router"].apgr.std is None


def test_scorer_must_score_every_prompt() -> None:
    with pytest.raises(ValueError, match="scores for"):
        cross_validate(_table(100), lambda t: (lambda ps: [0.0]), folds=2)


# --- tables, cost, outputs ---------------------------------------------------------------


def _write_csv(path: Path, header: list[str], rows: list[list[str]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_load_outcome_table(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "gsm.csv",
                      ["prompt", "big", "small", "big_response", "small_response"],
                      [["What is 2+2?", "True", "False", "x" * 40, "y" * 8],
                       ["Name a colour.", "True", "True", "z" * 4, "w" * 12]])
    table = load_outcome_table(path)
    assert (table.weak_model, table.strong_model) == ("small", "big")   # lower accuracy
    assert table.weak == (0.0, 1.0) and table.strong == (1.0, 1.0)
    assert table.strong_completion_tokens == (10, 1)
    assert table.weak_completion_tokens == (2, 3)
    assert table.subjects is None and table.name == "gsm"
    explicit = load_outcome_table(path, weak="big", strong="small")
    assert explicit.weak_model == "big"


def test_load_outcome_table_errors(tmp_path: Path) -> None:
    bad = _write_csv(tmp_path / "bad.csv", ["prompt", "a", "b"],
                     [["p", "True", "maybe"], ["q", "False", "True"]])
    with pytest.raises(RouterDataError, match="not True/False or a finite number"):
        load_outcome_table(bad)
    three = _write_csv(tmp_path / "three.csv", ["prompt", "a", "b", "c"], [["p", "1", "0", "1"]])
    with pytest.raises(RouterDataError, match="name the pair with --weak and --strong"):
        load_outcome_table(three)
    assert load_outcome_table(three, weak="b", strong="c").strong_model == "c"
    with pytest.raises(RouterDataError, match="no 'prompt' column"):
        load_outcome_table(_write_csv(tmp_path / "np.csv", ["q", "a", "b"], [["p", "1", "0"]]))
    with pytest.raises(RouterDataError, match="no such file"):
        load_outcome_table(tmp_path / "missing.csv")


def test_cost_model_from_catalog_prices() -> None:
    weak = Deployment(name="cheap", provider="openai-compatible", model="m",
                      base_url="http://127.0.0.1:1/v1", input_cost_per_mtok=1.0,
                      output_cost_per_mtok=2.0)
    strong = Deployment(name="dear", provider="openai", model="g", input_cost_per_mtok=10.0,
                        output_cost_per_mtok=30.0)
    table = PairTable(name="t", prompts=("a" * 400, "b" * 800), weak=(0.0, 1.0),
                      strong=(1.0, 1.0), weak_model="w", strong_model="s")
    cm = cost_model(table, weak, strong, completion_tokens=50)
    assert cm.prompt_tokens == 150 and not cm.completion_measured
    assert cm.weak_usd == pytest.approx((150 * 1.0 + 50 * 2.0) / 1e6)
    assert cm.strong_usd == pytest.approx((150 * 10.0 + 50 * 30.0) / 1e6)
    assert cm.usd_per_request(0.0) == pytest.approx(cm.weak_usd)
    assert cm.usd_per_request(0.25) == pytest.approx(0.75 * cm.weak_usd + 0.25 * cm.strong_usd)
    assert cm.relative_to_strong(1.0) == pytest.approx(1.0)
    measured = PairTable(name="t", prompts=("a" * 4,), weak=(1.0,), strong=(1.0,),
                         weak_model="w", strong_model="s", weak_completion_tokens=(10,),
                         strong_completion_tokens=(20,))
    cm2 = cost_model(measured, weak, strong)
    assert cm2.completion_measured and cm2.strong_usd == pytest.approx((10 + 600) / 1e6)


def test_table_and_files(tmp_path: Path) -> None:
    table = _table(300)
    weak = Deployment(name="cheap", provider="openai-compatible", model="m",
                      base_url="http://127.0.0.1:1/v1", input_cost_per_mtok=0.5)
    strong = Deployment(name="dear", provider="openai", model="g", input_cost_per_mtok=5.0)
    report = cross_validate(table, _length_fit, folds=3, cost=cost_model(table, weak, strong))
    console = Console(record=True, width=200)
    console.print(render_table(report))
    text = console.export_text()
    for needle in ("APGR", "CPT(20%)", "CPT(50%)", "CPT(80%)", "random (10 seeds)", "oracle",
                   "of strong", "3-fold CV"):
        assert needle in text
    results, plot = write_results([report, report], tmp_path / "out")
    doc = json.loads(results.read_text())
    data = doc["datasets"][0]
    assert data["folds"] == 3 and set(data["methods"]) == {"router", "random", "oracle"}
    assert len(data["methods"]["router"]["folds"]) == 3
    assert data["cost_at_cpt"]["router"]["50%"]["share_of_all_strong"] < 1.0
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.skipif(not (DATA / "gsm8k.csv").is_file(), reason="shared data not present")
def test_real_gsm8k_table_loads_and_baselines_hold() -> None:
    table = load_outcome_table(DATA / "gsm8k.csv")
    assert table.weak_model.startswith("mistralai/") and table.strong_model.startswith("gpt-4")
    assert np.mean(table.weak) == pytest.approx(0.639, abs=0.001)
    assert np.mean(table.strong) == pytest.approx(0.862, abs=0.001)
    assert table.strong_completion_tokens is not None
    m = random_metrics(table.weak, table.strong)
    assert m.apgr == pytest.approx(0.5, abs=0.05)


def test_run_eval_cv_and_holdout() -> None:
    table = _table(200)
    dear = Deployment(name="dear", provider="openai", model="g", input_cost_per_mtok=5.0)
    opts = EvalOptions(folds=2, weak_deployment=dear, strong_deployment=dear)
    calls: list[tuple[int, int]] = []
    cv = run_eval([table], options=opts, fit=_length_fit,
                  on_fold=lambda i, k: calls.append((i, k)))
    assert calls == [(0, 2), (1, 2)]
    assert cv[0].folds == 2 and cv[0].cost is not None
    held = run_eval([table], options=EvalOptions(), scorer=_length_fit([table]), router="x")
    assert held[0].protocol == "holdout" and held[0].cost is None and held[0].router == "x"
    with pytest.raises(ValueError, match="exactly one"):
        run_eval([table], options=opts)


# --- `modelmix router eval` ----------------------------------------------------------------


def _small_gsm8k(tmp_path: Path, rows: int = 120) -> Path:
    """The first rows of the shared GSM8K table (prompts, outcomes, responses)."""
    src = DATA / "gsm8k.csv"
    with src.open(newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = next(reader)
        body = [row for _, row in zip(range(rows), reader, strict=False)]
    return _write_csv(tmp_path / "gsm8k_small.csv", header, body)


@pytest.mark.skipif(not (DATA / "gsm8k.csv").is_file(), reason="shared data not present")
def test_cli_eval_held_out_with_shipped_router(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    monkeypatch.delenv("MODELMIX_CONFIG", raising=False)
    table = _small_gsm8k(tmp_path)
    result = CliRunner().invoke(app, [
        "router", "eval", "--router", "default", "--data", str(table), "--out",
        str(tmp_path / "out"), "--weak-deployment", "nim-llama-3.3-70b",
        "--strong-deployment", "gpt-4.1"])
    assert result.exit_code == 0, result.output
    assert "held-out table" in result.output and "CPT(50%)" in result.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())
    assert doc["options"]["router"] == "default"
    data = doc["datasets"][0]
    assert data["protocol"] == "holdout" and data["n_prompts"] == 120
    assert data["cost_model"]["weak_deployment"] == "nim-llama-3.3-70b"
    assert (tmp_path / "out" / "plot.png").is_file()


@pytest.mark.skipif(not (DATA / "gsm8k.csv").is_file(), reason="shared data not present")
def test_cli_eval_shows_numeric_grades_as_scores_not_percentages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    monkeypatch.delenv("MODELMIX_CONFIG", raising=False)
    rng = random.Random(0)
    rows = [[f"question {i} about topic {i % 7}", str(rng.randint(1, 8)),
             str(rng.randint(3, 10))] for i in range(40)]
    table = _write_csv(tmp_path / "grades.csv", ["prompt", "small", "big"], rows)
    result = CliRunner().invoke(app, ["router", "eval", "--data", str(table), "--folds", "2",
                                      "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    caption = " ".join(result.output.split())
    weak = sum(int(r[1]) for r in rows) / len(rows)
    assert f"mean score weak {weak:.2f}" in caption and "quality" not in caption
    renamed = _write_csv(tmp_path / "q.csv", ["question", "small", "big"], rows)
    again = CliRunner().invoke(app, ["router", "eval", "--data", str(renamed), "--folds", "2",
                                     "--out", str(tmp_path / "ev2"), "--prompt-column",
                                     "question"])
    assert again.exit_code == 0, again.output
    first, second = (json.loads((tmp_path / d / "results.json").read_text())["datasets"][0]
                     for d in ("ev", "ev2"))
    assert first["methods"]["router"]["apgr"] == second["methods"]["router"]["apgr"]


def test_cli_eval_cross_validates_the_learned_trainer(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    monkeypatch.delenv("MODELMIX_CONFIG", raising=False)
    table = _small_gsm8k(tmp_path)
    runner = CliRunner()
    result = runner.invoke(app, ["router", "eval", "--data", str(table), "--folds", "2",
                                 "--out", str(tmp_path / "cv")])
    assert result.exit_code == 0, result.output
    assert "2-fold CV" in result.output
    data = json.loads((tmp_path / "cv" / "results.json").read_text())["datasets"][0]
    assert data["protocol"] == "cv" and len(data["methods"]["router"]["folds"]) == 2
    # default pricing: the cheapest open and proprietary deployments of the catalog
    assert data["cost_model"]["weak_deployment"] == "smollm2-local"
    both = runner.invoke(app, ["router", "eval", "--data", str(table), "--router", "default",
                               "--cv"])
    assert both.exit_code == 2
    bad = runner.invoke(app, ["router", "eval", "--data", str(tmp_path / "nope.csv")])
    assert bad.exit_code == 2 and "no such file" in bad.output


def test_load_outcome_table_jsonl_with_missing_outcomes(tmp_path: Path) -> None:
    rows = [{"prompt": "a", "small": True, "big": True},
            {"prompt": "b", "small": None, "big": 1.0},
            {"prompt": "c", "small": "false", "big": "correct"},
            {"prompt": {"x": 1}, "small": 0, "big": None}]
    path = tmp_path / "feedback.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    table = load_outcome_table(path)
    assert table.prompts == ("a", "c") and table.skipped_rows == 2
    assert (table.weak_model, table.weak, table.strong) == ("small", (1.0, 0.0), (1.0, 1.0))
    report = evaluate_holdout(table, lambda ps: [0.0] * len(ps))
    assert report.skipped_rows == 2
    (tmp_path / "bad.jsonl").write_text("{not json\n", encoding="utf-8")
    with pytest.raises(RouterDataError, match="not valid JSON"):
        load_outcome_table(tmp_path / "bad.jsonl")
