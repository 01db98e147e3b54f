"""Many-model routing frontier (``router eval --frontier``): the arithmetic on hand-made
tables with known answers, the price table reader, and the CLI end to end."""

from __future__ import annotations

import csv
import itertools
import json
from pathlib import Path

import numpy as np
import pytest

from modelmix.errors import ConfigError
from modelmix.eval._frontier import (
    Point,
    budget_score,
    cost_at_quality,
    cost_weight_grid,
    gaps,
    mixing_hull,
    pair_curve,
    pareto,
    quality_at_cost,
    route_by_utility,
    route_to_target,
    single_points,
    sweep,
    sweep_utility,
)
from modelmix.eval._frontier_eval import cost_matrix, frontier_report
from modelmix.eval._prices import ModelPrice, load_prices

ROOT = Path(__file__).resolve().parents[1]
PRICES = ROOT / "benchmarks" / "router" / "chat_prices.yaml"
CHAT = ROOT.parent / "shared" / "data" / "alpacaeval" / "chat.csv"
MODELS = ("small", "medium", "large")
# three prompts, three models costing 1, 2 and 4 USD per request
PRED = np.array([[0.9, 0.9, 0.9], [0.2, 0.7, 0.9], [0.1, 0.3, 0.6]])
QUAL = np.array([[1.0, 1.0, 1.0], [0.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
COST = np.tile([1.0, 2.0, 4.0], (3, 1))


def test_cheapest_model_meeting_the_target_is_chosen_per_prompt() -> None:
    choice, fallback = route_to_target(PRED, COST, 0.5)
    assert choice.tolist() == [0, 1, 2] and not fallback.any()
    choice, _ = route_to_target(PRED, COST, 0.0)
    assert choice.tolist() == [0, 0, 0]
    # nobody reaches 0.95: the best predicted model, the cheaper one on a tie (prompt 0)
    choice, fallback = route_to_target(PRED, COST, 0.95)
    assert choice.tolist() == [0, 2, 2] and fallback.all()


def test_equal_cost_goes_to_the_higher_prediction() -> None:
    choice, _ = route_to_target(np.array([[0.6, 0.8]]), np.array([[1.0, 1.0]]), 0.5)
    assert choice.tolist() == [1]


def test_utility_rule_weighs_predicted_gain_against_cost() -> None:
    # lambda is quality per USD per 1k requests; the models cost $1000, $2000, $4000 per 1k
    assert route_by_utility(PRED, COST, 0.0).tolist() == [0, 2, 2]  # best predicted
    # at 1.2e-4: prompt 1's medium (0.7 - 0.24) beats large (0.9 - 0.48); prompt 2's
    # large (0.6 - 0.48) beats medium (0.3 - 0.24)
    assert route_by_utility(PRED, COST, 1.2e-4).tolist() == [0, 1, 2]
    assert route_by_utility(PRED, COST, 1.0).tolist() == [0, 0, 0]  # cheapest
    # equal utility goes to the cheaper model, whatever the column order
    assert route_by_utility(np.array([[0.5, 0.5]]), np.array([[2e-4, 1e-4]]), 0.0
                            ).tolist() == [1]


def test_utility_sweep_costs_fall_with_the_weight_and_the_grid_spans_both_ends() -> None:
    rng = np.random.default_rng(3)
    pred, qual = rng.random((200, 5)), rng.random((200, 5))
    cost = np.outer(rng.integers(10, 500, 200), rng.random(5) + 0.1) / 1e6
    grid = cost_weight_grid(pred, cost, points=50)
    assert grid[0] == 0.0 and grid == sorted(set(grid))
    points = sweep_utility(pred, qual, cost, grid)
    costs = [p.usd_per_1k for p in points]
    assert costs == sorted(costs, reverse=True)  # a larger weight never picks dearer
    rows = np.arange(200)
    assert points[0].usd_per_1k == pytest.approx(
        cost[rows, np.argmax(pred, axis=1)].mean() * 1000)
    assert points[-1].usd_per_1k == pytest.approx(cost.min(axis=1).mean() * 1000)
    assert points[5].cost_weight == grid[5] and points[5].label.startswith("lambda=")


def test_gaps_compare_best_quality_within_each_budget() -> None:
    mine = [Point(1.0, 0.2), Point(3.0, 0.6)]
    ref = [Point(1.0, 0.2), Point(3.0, 0.4)]
    mixed = gaps(mine, ref, 1.0, 3.0)
    assert mixed["min"] == pytest.approx(0.0) and mixed["min_at_usd_per_1k"] == 1.0
    assert mixed["share_at_least"] == 1.0 and 0 < mixed["mean"] < 0.2
    # read as single points, the reference stays at 0.2 until $3: the gap peaks before
    single = gaps(ref, mine, 1.0, 3.0, mix_reference=False)
    assert single["min"] == pytest.approx(-0.2) and single["share_at_least"] < 1.0
    # unaffordable below $2, where the reference has mixed its way up to almost 0.3
    worse = gaps([Point(2.0, 0.5)], ref, 1.0, 3.0)
    assert worse["min"] == pytest.approx(-0.3, abs=0.002)
    assert 1.99 < worse["min_at_usd_per_1k"] < 2.0


def test_sweep_points_are_the_realised_means() -> None:
    low, mid, high = sweep(PRED, QUAL, COST, [0.0, 0.5, 0.95], MODELS)
    assert (low.usd_per_1k, low.quality) == (1000.0, pytest.approx(1 / 3))
    assert (mid.usd_per_1k, mid.quality) == (pytest.approx(7000 / 3), 1.0)
    assert mid.shares == pytest.approx({"small": 1 / 3, "medium": 1 / 3, "large": 1 / 3},
                                       abs=1e-4)
    assert high.fallback_share == 1.0 and high.usd_per_1k == pytest.approx(3000.0)


def test_single_model_points_are_exact() -> None:
    points = single_points(QUAL, COST, MODELS)
    assert [(p.label, p.usd_per_1k) for p in points] == [
        ("small", 1000.0), ("medium", 2000.0), ("large", 4000.0)]
    assert [p.quality for p in points] == pytest.approx([1 / 3, 2 / 3, 1.0])


def test_pair_curve_sends_the_largest_predicted_gain_first() -> None:
    # gain of large over small: [0.0, 0.7, 0.5] -> prompt 1, then 2, then 0
    curve = pair_curve(PRED, QUAL, COST, 0, 2, MODELS, shares=(0, 1 / 3, 2 / 3, 1))
    assert [p.quality for p in curve] == pytest.approx([1 / 3, 2 / 3, 1.0, 1.0])
    assert [p.usd_per_1k for p in curve] == pytest.approx([1000, 2000, 3000, 4000])


def test_cost_rises_with_the_target_and_the_frontier_is_monotone() -> None:
    rng = np.random.default_rng(7)
    n, m = 300, 6
    pred, qual = rng.random((n, m)), rng.random((n, m))
    cost = np.outer(rng.integers(10, 500, n), rng.random(m) + 0.1) / 1e6
    points = sweep(pred, qual, cost, np.linspace(0, 1.01, 60))
    costs = [p.usd_per_1k for p in points]
    assert costs == sorted(costs)  # raising the target never makes a prompt cheaper
    front = pareto(points)
    assert all(a.usd_per_1k < b.usd_per_1k and a.quality < b.quality
               for a, b in itertools.pairwise(front))
    assert all(not (q.usd_per_1k <= p.usd_per_1k and q.quality > p.quality)
               for p in front for q in points)


def test_reading_curves_mixes_adjacent_points() -> None:
    pts = [Point(1.0, 0.2), Point(3.0, 0.6), Point(2.0, 0.1), Point(5.0, 0.6)]
    assert [(p.usd_per_1k, p.quality) for p in pareto(pts)] == [(1.0, 0.2), (3.0, 0.6)]
    assert quality_at_cost(pts, 2.0) == pytest.approx(0.4)
    assert quality_at_cost(pts, 0.5) is None and quality_at_cost(pts, 9.0) == 0.6
    assert cost_at_quality(pts, 0.5) == pytest.approx(2.5)
    assert cost_at_quality(pts, 0.1) == 1.0 and cost_at_quality(pts, 0.7) is None
    hull = mixing_hull([Point(1, 0.1), Point(2, 0.15), Point(3, 0.5), Point(4, 0.55)])
    assert [p.usd_per_1k for p in hull] == [1, 3, 4]   # (2, 0.15) lies under 1 -> 3


def _log_mean(segments: list[tuple[float, float, float, float]], lo: float, hi: float) -> float:
    """Closed form: mean over u = ln(cost) in [ln lo, ln hi] of a piecewise linear-in-cost
    quality, segments (c0, q0, c1, q1)."""
    total = 0.0
    for c0, q0, c1, q1 in segments:
        slope = (q1 - q0) / (c1 - c0)
        span = np.log(c1 / c0)
        total += q0 * span + slope * ((c1 - c0) - c0 * span)
    return float(total / np.log(hi / lo))


def test_budget_score_mixes_points_and_counts_unaffordable_budgets_as_zero() -> None:
    assert budget_score([Point(1.0, 0.5)], 1.0, 100.0) == pytest.approx(0.5)
    assert budget_score([Point(10.0, 0.5)], 1.0, 100.0) == pytest.approx(0.25, abs=0.005)
    rising = [Point(1.0, 0.0), Point(100.0, 1.0)]
    assert budget_score(rising, 1.0, 100.0) == pytest.approx(
        _log_mean([(1.0, 0.0, 100.0, 1.0)], 1.0, 100.0), abs=0.002)


def test_report_picks_the_best_pair_and_headlines() -> None:
    report = frontier_report(PRED, QUAL, COST, MODELS, dataset="toy")
    # small -> medium: 1/3 at $1000, 2/3 from $1333 (one prompt of three to medium);
    # small -> large: 1/3 at $1000, 2/3 at $2000, 1.0 from $3000; budgets $1000-$4000
    third, two_thirds = 1 / 3, 2 / 3
    medium = _log_mean([(1000, third, 4000 / 3, two_thirds),
                        (4000 / 3, two_thirds, 4000, two_thirds)], 1000, 4000)
    large = _log_mean([(1000, third, 2000, two_thirds), (2000, two_thirds, 3000, 1.0),
                       (3000, 1.0, 4000, 1.0)], 1000, 4000)
    assert report.pair_scores["small -> medium"] == pytest.approx(medium, abs=0.002)
    assert report.pair_scores["small -> large"] == pytest.approx(large, abs=0.002)
    assert large > medium and report.best_pair == ("small", "large")
    threshold, utility = report.sweeps["threshold"], report.sweeps["utility"]
    assert report.rule == "utility" and report.routing is utility
    assert threshold[0].quality == pytest.approx(1 / 3)
    at_medium = report.headlines["per_model"]["medium"]["routing"]
    # threshold routing reaches medium's quality (2/3) by mixing tau=0 ($1000, 1/3) and
    # the all-correct point ($2333, 1.0): halfway in cost
    assert at_medium["threshold"]["usd_per_1k_at_its_quality"] == pytest.approx(1000 + 4000 / 6)
    # the utility rule has a point there: a weight in (2e-4, 5e-4) sends prompt 1 to
    # medium (gain 0.5 for $1000 more) and prompt 2 to small (0.2 for $1000: too little)
    assert at_medium["utility"]["usd_per_1k_at_its_quality"] == pytest.approx(4000 / 3)
    assert max(p.quality for p in utility) == 1.0
    assert report.headlines["gaps"]["utility"]["best_single_model"]["min"] >= 0
    assert report.rule_scores["utility"] >= report.hull_score
    other = frontier_report(PRED, QUAL, COST, MODELS, rule="threshold")
    assert other.routing is other.sweeps["threshold"]
    assert list(other.sweeps) == ["threshold", "utility"]
    with pytest.raises(ValueError, match="unknown routing rule"):
        frontier_report(PRED, QUAL, COST, MODELS, rule="nearest")
    assert report.headlines["best_single"] == "large"
    doc = json.loads(json.dumps(report.to_dict()))
    assert doc["single_models"][2] == {"usd_per_1k": 4000.0, "quality": 1.0, "label": "large"}


def test_cost_matrix_prices_chars_over_four() -> None:
    prices = [ModelPrice("a", 1.0, 2.0), ModelPrice("b", 10.0, 30.0, answer_chars=400)]
    cost = cost_matrix(["x" * 40, "y" * 8], prices)
    # a: 10 prompt tokens, 256 completion tokens (default); b: 100 completion tokens
    assert cost[0].tolist() == pytest.approx([(10 + 512) / 1e6, (100 + 3000) / 1e6])
    assert cost[1, 1] == pytest.approx((20 + 3000) / 1e6)
    assert cost_matrix(["x" * 40], prices, completion_tokens=1)[0, 0] == pytest.approx(
        12 / 1e6)


# -- price tables -------------------------------------------------------------------------


def test_committed_price_table_reads(tmp_path: Path) -> None:
    table = load_prices(PRICES)
    assert len(table.prices) == 11 and table.date
    gpt4 = table.prices["gpt4_1106_preview"]
    assert (gpt4.input_usd_per_mtok, gpt4.output_usd_per_mtok) == (10.0, 30.0)
    assert gpt4.completion_tokens(1) == pytest.approx(2049 / 4)


@pytest.mark.skipif(not CHAT.is_file(), reason=f"{CHAT} not present (shared AlpacaEval data)")
def test_committed_price_table_covers_the_chat_table() -> None:
    with CHAT.open(newline="", encoding="utf-8") as fh:
        header = next(csv.reader(fh))
    models = [c for c in header if c not in ("id", "prompt", "dataset")]
    assert len(load_prices(PRICES).for_models(models)) == 11


@pytest.mark.parametrize(("text", "message"), [
    ("models: [", "not valid YAML"),
    ("date: x\n", "needs a 'models' mapping"),
    ("models:\n  a: {input_usd_per_mtok: 1}\n", "missing output_usd_per_mtok"),
    ("models:\n  a: {input_usd_per_mtok: -1, output_usd_per_mtok: 1}\n", "a number >= 0"),
    ("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1, cost: 2}\n",
     "unknown field(s) cost"),
])
def test_bad_price_tables_fail_in_one_line(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as info:
        load_prices(path)
    assert message in info.value.message and "\n" not in info.value.message


def test_missing_model_in_price_table(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("models:\n  a: {input_usd_per_mtok: 1, output_usd_per_mtok: 1}\n")
    with pytest.raises(ConfigError, match="no price for model column"):
        load_prices(path).for_models(["a", "b"])


# -- the CLI --------------------------------------------------------------------------------


def _toy_table(tmp_path: Path) -> Path:
    """Math prompts are answered well only by the big model, chit-chat by all three."""
    path = tmp_path / "toy.csv"
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["prompt", "tiny", "mid", "big"])
        for i in range(24):
            out.writerow([f"Solve the equation {i}x + 3 = {2 * i + 5} for x, step by step.",
                          0.0, 0.2, 1.0])
            out.writerow([f"Say hello to my friend number {i} in a cheerful tone.",
                          0.9, 0.9, 0.9])
    return path


def _prices(tmp_path: Path, models: tuple[str, ...]) -> Path:
    path = tmp_path / "prices.yaml"
    rows = "".join(f"  {m}: {{input_usd_per_mtok: {p}, output_usd_per_mtok: {p}}}\n"
                   for m, p in zip(models, (0.1, 1.0, 10.0), strict=False))
    path.write_text(f"date: '2026-12-04'\nmodels:\n{rows}")
    return path


def test_cli_frontier_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    monkeypatch.delenv("MODELMIX_CONFIG", raising=False)
    table = _toy_table(tmp_path)
    result = CliRunner().invoke(app, [
        "router", "eval", "--frontier", "--data", str(table), "--folds", "2",
        "--prices", str(_prices(tmp_path, ("tiny", "mid", "big"))),
        "--completion-tokens", "100", "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    doc = json.loads((tmp_path / "out" / "results.json").read_text())["frontier"]
    singles = {p["label"]: p for p in doc["single_models"]}
    prompt_tokens = np.mean([len(r[0]) for r in csv.reader(table.open())][1:]) / 4
    assert singles["big"]["quality"] == pytest.approx(0.95)
    assert singles["big"]["usd_per_1k"] == pytest.approx(
        (prompt_tokens + 100) * 10.0 / 1000, rel=0.02)  # ceil per prompt: within 2%
    # the router learns the split: both rules reach big's quality for less
    assert doc["rule"] == "utility" and set(doc["routing_sweeps"]) == {"utility", "threshold"}
    for rule in ("utility", "threshold"):
        big = doc["headlines"]["per_model"]["big"]["routing"][rule]
        assert big["cost_share_at_its_quality"] < 0.8
        assert doc["budget_scores"]["routing"][rule] > doc["budget_scores"]["random_mixing"]
    assert (tmp_path / "out" / "plot.png").stat().st_size > 10_000


def test_cli_frontier_errors_are_one_line(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    table = _toy_table(tmp_path)
    runner = CliRunner()
    short = _prices(tmp_path, ("tiny", "mid"))
    cases = [
        (["--frontier", "--prices", str(short)], "no price for model column(s) big"),
        (["--frontier"], "--frontier needs a price table"),
        (["--prices", str(short)], "add --frontier"),
        (["--frontier", "--prices", str(short), "--router", "default"], "does not take"),
    ]
    for extra, message in cases:
        result = runner.invoke(app, ["router", "eval", "--data", str(table), "--out",
                                     str(tmp_path / "o"), *extra])
        assert result.exit_code != 0 and message in result.output, result.output
        assert "Traceback" not in result.output
