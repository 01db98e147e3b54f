"""The learned strategy, calibration and per-request hints, in the router and through the
real gateway on loopback (FakeProvider deployments, a fake QualityPredictor)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from _pixels import TINY_PNG
from _servers import serve_app
from modelmix.catalog import Deployment, LearnedRouterSettings, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import ConfigError, InvalidRequest
from modelmix.protocol import ChatRequest
from modelmix.routing import (
    STRATEGIES,
    Calibration,
    CalibrationResult,
    LearnedStrategy,
    Router,
    RoutingHints,
    Target,
    calibrate,
    load_calibration,
    prompt_text,
    save_calibration,
)
from modelmix.server import create_app
from modelmix.testing import FakeProvider

# -- a fake predictor --------------------------------------------------------------------


class FakePredictor:
    """Two-model predictor: prompts containing "hard" need the strong model.

    P(weak acceptable) is 0.9 for easy prompts and 0.2 for hard ones; the strong model is
    0.95 on both; strong_score is 1 - P(weak acceptable).
    """

    model_names = ("weak-m", "strong-m")
    weak_model: str | None = "weak-m"
    strong_model: str | None = "strong-m"

    def __init__(self) -> None:
        self.seen: list[str] = []

    def _weak(self, prompt: str) -> float:
        return 0.2 if "hard" in prompt else 0.9

    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        self.seen.extend(prompts)
        return [[self._weak(p), 0.95] for p in prompts]

    def strong_score(self, prompts: Sequence[str]) -> list[float]:
        return [1.0 - self._weak(p) for p in prompts]


class TablePredictor:
    """N-model predictor without a weak/strong pair: fixed quality per column."""

    weak_model: str | None = None
    strong_model: str | None = None

    def __init__(self, quality: dict[str, float]):
        self.model_names = tuple(quality)
        self._row = list(quality.values())

    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        return [list(self._row) for _ in prompts]

    def strong_score(self, prompts: Sequence[str]) -> list[float]:
        raise AssertionError("not a two-model predictor")


class BrokenPredictor(FakePredictor):
    def predict(self, prompts: Sequence[str]) -> list[list[float]]:
        raise RuntimeError("model exploded")


def _dep(name: str, tier: str, price: float, **kw: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
            "model": f"m-{name}", "tier": tier, "input_cost_per_mtok": price,
            "output_cost_per_mtok": price, "context_window": 100000, **kw}


CONFIG = {
    "deployments": [
        _dep("open-big", "open", 0.9),
        _dep("open-small", "open", 0.2),
        _dep("prop-pricey", "proprietary", 30, input_modalities=["text", "image"]),
        _dep("prop-cheap", "proprietary", 5, input_modalities=["text", "image"]),
    ],
}
CFG = config_from_dict(CONFIG)
CAL = Calibration().with_target(
    "balanced", CalibrationResult(Target("strong-share", 0.3), threshold=0.5,
                                  strong_share=0.3, quality=0.8),
).with_target(
    "frugal", CalibrationResult(Target("strong-share", 0.05), threshold=0.95,
                                strong_share=0.05, quality=0.7),
)


def healthy(dep: Deployment) -> str | None:
    return None


def route(text: str, *, predictor: Any = None, hints: RoutingHints | None = None,
          cfg: Any = CFG, calibration: Calibration | None = CAL, **kw: Any) -> Any:
    strategy = LearnedStrategy(predictor or FakePredictor(), calibration=calibration)
    router = Router(cfg, health=healthy, strategies={"learned": strategy})
    req = ChatRequest.model_validate({"model": "auto",
                                      "messages": [{"role": "user", "content": text}], **kw})
    return router.route("auto", req.needs(), prompt=prompt_text(req), hints=hints)


def names(decision: Any) -> list[str]:
    return [d.name for d in decision.candidates]


# -- the strategy ------------------------------------------------------------------------


def test_learned_is_registered_and_the_default_for_auto() -> None:
    assert STRATEGIES["learned"] is LearnedStrategy
    assert CFG.router == "learned"


def test_easy_prompt_goes_to_cheapest_open_then_escalates() -> None:
    d = route("what is 2+2?")
    assert names(d) == ["open-small", "open-big", "prop-cheap", "prop-pricey"]
    assert d.reason == ("learned: p(strong needed)=0.10 < 0.50 "
                        "(target balanced: strong-share<=30%)")
    assert d.score == pytest.approx(0.1) and d.threshold == 0.5
    assert d.predicted_quality == {"open-big": 0.9, "open-small": 0.9,
                                   "prop-pricey": 0.95, "prop-cheap": 0.95}


def test_hard_prompt_goes_to_cheapest_proprietary_then_degrades() -> None:
    d = route("a hard proof")
    assert names(d) == ["prop-cheap", "prop-pricey", "open-small", "open-big"]
    assert ">= 0.50" in d.reason


def test_the_last_user_message_is_what_is_scored() -> None:
    predictor = FakePredictor()
    strategy = LearnedStrategy(predictor, calibration=CAL)
    router = Router(CFG, health=healthy, strategies={"learned": strategy})
    req = ChatRequest.model_validate({"model": "auto", "messages": [
        {"role": "system", "content": "hard rules"}, {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"}, {"role": "user", "content": "thanks"}]})
    router.route("auto", req.needs(), prompt=prompt_text(req))
    assert predictor.seen == ["thanks"]


def test_request_target_picks_its_threshold_and_unknown_target_is_400() -> None:
    d = route("a hard proof", hints=RoutingHints(target="frugal"))
    assert d.deployment.name == "open-small"
    assert "< 0.95 (target frugal: strong-share<=5%)" in d.reason
    with pytest.raises(InvalidRequest) as info:
        route("x", hints=RoutingHints(target="nope"))
    assert info.value.param == "router.target" and "balanced, frugal" in info.value.message


def test_without_calibration_the_threshold_is_one_half() -> None:
    d = route("a hard proof", calibration=Calibration())
    assert d.threshold == 0.5 and "(uncalibrated)" in d.reason


def test_configured_target_is_used_when_the_request_names_none() -> None:
    strategy = LearnedStrategy(FakePredictor(), calibration=CAL,
                               settings=LearnedRouterSettings(target="frugal"))
    router = Router(CFG, health=healthy, strategies={"learned": strategy})
    req = ChatRequest.model_validate({"model": "auto",
                                      "messages": [{"role": "user", "content": "hard"}]})
    assert router.route("auto", req.needs(), prompt="hard").threshold == 0.95


def test_min_quality_picks_the_cheapest_candidate_that_meets_it() -> None:
    quality = {"m-open-small": 0.55, "m-open-big": 0.8, "m-prop-cheap": 0.85,
               "m-prop-pricey": 0.97}
    pred = TablePredictor(quality)  # columns named like the deployments' models
    d = route("x", predictor=pred, hints=RoutingHints(min_quality=0.8))
    assert names(d) == ["open-big", "prop-cheap", "prop-pricey", "open-small"]
    assert d.reason == "learned: cheapest with predicted quality >= 0.80: open-big (0.80)"
    assert d.score == 0.8 and d.threshold == 0.8
    d = route("x", predictor=pred, hints=RoutingHints(min_quality=0.9))
    assert names(d)[:2] == ["prop-pricey", "prop-cheap"]
    d = route("x", predictor=pred, hints=RoutingHints(min_quality=0.99))
    assert d.deployment.name == "prop-pricey" and "no candidate reaches" in d.reason


def test_utility_rule_applies_to_a_weak_strong_router_when_configured() -> None:
    """quality_rule: utility is what the operator asked for, pair or not: a hard prompt
    (weak 0.2, strong 0.95) goes to the strong model when quality is worth its price,
    to the weak one when cost weighs more; the default keeps the threshold rule."""
    def decide(**settings: Any) -> Any:
        strategy = LearnedStrategy(FakePredictor(), calibration=CAL,
                                   settings=LearnedRouterSettings(**settings))
        router = Router(CFG, health=healthy, strategies={"learned": strategy})
        req = ChatRequest.model_validate({"model": "auto", "max_tokens": 100,
                                          "messages": [{"role": "user", "content": "hard"}]})
        return router.route("auto", req.needs(), prompt="hard")

    cheap_quality = decide(quality_rule="utility", cost_weight=0.0001)
    assert cheap_quality.deployment.tier.value == "proprietary"
    assert cheap_quality.reason.startswith("learned: highest predicted quality")
    dear_quality = decide(quality_rule="utility", cost_weight=1000.0)
    assert dear_quality.deployment.tier.value == "open"
    assert decide().reason.startswith("learned: p(strong needed)")


def test_n_model_predictor_uses_the_configured_min_quality() -> None:
    pred = TablePredictor({"m-open-small": 0.4, "m-open-big": 0.6, "m-prop-cheap": 0.9,
                           "m-prop-pricey": 0.9})
    assert route("x", predictor=pred).deployment.name == "open-big"  # default bar 0.5


def test_quality_profile_maps_a_deployment_to_a_column() -> None:
    cfg = config_from_dict({"deployments": [
        _dep("llama-70b", "open", 0.9, quality_profile="strong-m"),
        _dep("tiny", "open", 0.1),
        _dep("gpt", "proprietary", 10),
    ]})
    d = route("a hard proof", cfg=cfg)
    assert names(d) == ["llama-70b", "gpt", "tiny"]  # strong-class first, cheapest first
    assert d.predicted_quality["llama-70b"] == 0.95


def test_prefer_open_puts_open_first_whatever_the_score() -> None:
    d = route("a hard proof", hints=RoutingHints(prefer_open=True))
    assert names(d)[:2] == ["open-small", "open-big"]
    assert d.reason == "learned: prefer_open hint, open deployment first"


def test_max_cost_drops_expensive_deployments_or_fails_400() -> None:
    # ~5 prompt tokens + 100 completion tokens: prop-cheap ~$0.53/1k, prop-pricey ~$3.2/1k
    d = route("a hard proof", hints=RoutingHints(max_cost_per_1k=1.0), max_tokens=100)
    assert names(d) == ["prop-cheap", "open-small", "open-big"]
    assert "max_cost_per_1k $1" in d.excluded["prop-pricey"].why
    with pytest.raises(InvalidRequest) as info:
        route("x", hints=RoutingHints(max_cost_per_1k=0.0001), max_tokens=100)
    assert info.value.code == "max_cost_unsatisfiable"


def test_no_allowed_deployment_of_the_needed_kind_is_explained() -> None:
    strategy = LearnedStrategy(FakePredictor(), calibration=CAL)
    router = Router(CFG, health=healthy, strategies={"learned": strategy})
    req = ChatRequest.model_validate({"model": "auto", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "easy"},
        {"type": "image_url", "image_url": {"url": TINY_PNG}}]}]})
    d = router.route("auto", req.needs(), prompt=prompt_text(req))
    assert names(d) == ["prop-cheap", "prop-pricey"]
    assert "no weak-model deployment allowed (excluded: open-big: no image input" in d.reason


def test_unloadable_predictor_falls_back_to_rules_with_reason() -> None:
    def loader(name: str) -> Any:
        raise ImportError("No module named 'numpy'")

    strategy = LearnedStrategy(loader=loader, calibration=CAL)
    router = Router(CFG, health=healthy, strategies={"learned": strategy})
    d = router.route("auto", ChatRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": "hard"}]}).needs())
    assert d.deployment.name == "open-small"
    assert d.reason.startswith("learned router unavailable (ImportError: No module named")
    assert d.reason.endswith("rules: open model by default")


def test_failing_predictor_falls_back_to_rules() -> None:
    d = route("hard", predictor=BrokenPredictor())
    assert d.reason.startswith("learned router failed (RuntimeError); rules:")
    assert d.predicted_quality == {}


def test_nan_prediction_is_a_failure_not_a_decision() -> None:
    class NaNPredictor(FakePredictor):
        def strong_score(self, prompts: Sequence[str]) -> list[float]:
            return [math.nan for _ in prompts]

    assert route("x", predictor=NaNPredictor()).reason.startswith("learned router failed")


def test_calibration_is_read_from_the_artifact_dir(tmp_path: Path) -> None:
    save_calibration(CAL, tmp_path)
    strategy = LearnedStrategy(FakePredictor(),
                               settings=LearnedRouterSettings(artifact=str(tmp_path)))
    assert sorted(strategy.calibration.targets) == ["balanced", "frugal"]
    strategy = LearnedStrategy(FakePredictor(), settings=LearnedRouterSettings(
        calibration=str(tmp_path / "calibration.json")))
    assert strategy.calibration.default == "balanced"


@pytest.mark.parametrize(
    ("raw", "needle"),
    [
        ({"min_quality": 1.5}, "less than or equal to 1"),
        ({"min_quality": "0.8"}, "valid number"),
        ({"max_cost_per_1k": 0}, "greater than 0"),
        ({"prefer_open": "yes"}, "valid boolean"),
        ({"target": "a", "min_quality": 0.5}, "at most one of"),
        ({"temperature": 1}, "Extra inputs"),
    ],
)
def test_hints_are_validated(raw: dict[str, Any], needle: str) -> None:
    with pytest.raises(ValueError, match=needle):
        RoutingHints.model_validate(raw)


# -- calibration math ----------------------------------------------------------------------

# Ten prompts, scores 0.05 .. 0.95. The weak model is right on the five easiest; the strong
# model is right on all but the easiest (score 0.05).
SCORES = [0.05 + 0.1 * i for i in range(10)]
WEAK = [1.0] * 5 + [0.0] * 5
STRONG = [0.0] + [1.0] * 9


def test_strong_share_target_is_a_score_quantile() -> None:
    r = calibrate(Target.parse("strong-share=0.3"), SCORES, weak=WEAK, strong=STRONG)
    assert r.threshold == pytest.approx(0.75) and r.strong_share == pytest.approx(0.3)
    assert r.quality == pytest.approx(0.8)  # 5 weak-right + 3 strong-right out of 10
    assert r.pgr == pytest.approx((0.8 - 0.5) / (0.9 - 0.5))
    r0 = calibrate(Target("strong-share", 0.0), SCORES, weak=WEAK, strong=STRONG)
    assert r0.threshold > 1 and r0.strong_share == 0
    r1 = calibrate(Target("strong-share", 1.0), SCORES, weak=WEAK, strong=STRONG)
    assert r1.threshold == 0.0 and r1.strong_share == 1


def test_ties_never_push_the_share_over_the_target() -> None:
    r = calibrate(Target("strong-share", 0.5), [0.9, 0.5, 0.5, 0.5], weak=[0.0] * 4,
                  strong=[1.0] * 4)
    assert r.strong_share == 0.25 and r.threshold == 0.9


def test_cost_target_uses_per_request_costs() -> None:
    weak_cost, strong_cost = [0.0001] * 10, [0.002] * 10  # $0.10 vs $2 per 1k
    r = calibrate(Target.parse("cost-per-1k=$0.50"), SCORES, weak=WEAK, strong=STRONG,
                  weak_cost=weak_cost, strong_cost=strong_cost)
    # k strong calls cost (0.1 * (10 - k) + 2 * k) / 10 per 1k <= 0.5  ->  k = 2
    assert r.strong_share == pytest.approx(0.2) and r.threshold == pytest.approx(0.85)
    assert r.cost_per_1k == pytest.approx(0.48)
    with pytest.raises(ValueError, match="unreachable"):
        calibrate(Target("cost-per-1k", 0.05), SCORES, weak=WEAK, strong=STRONG,
                  weak_cost=weak_cost, strong_cost=strong_cost)
    with pytest.raises(ValueError, match="needs per-request costs"):
        calibrate(Target("cost-per-1k", 1), SCORES, weak=WEAK, strong=STRONG)


def test_min_pgr_target_takes_the_fewest_strong_calls() -> None:
    r = calibrate(Target.parse("min-pgr=0.5"), SCORES, weak=WEAK, strong=STRONG)
    # PGR = (q - 0.5) / 0.4 >= 0.5 needs q >= 0.7: the two hardest prompts go strong
    assert r.strong_share == pytest.approx(0.2) and r.pgr == pytest.approx(0.5)
    with pytest.raises(ValueError, match="strong model better"):
        calibrate(Target("min-pgr", 0.5), SCORES, weak=STRONG, strong=WEAK)


@pytest.mark.parametrize("text", ["strong-share=1.5", "min-pgr=0", "speed=3", "cost-per-1k=x",
                                  "strong-share"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        Target.parse(text)


def test_percent_targets_and_descriptions() -> None:
    assert Target.parse("strong-share=30%") == Target("strong-share", 0.3)
    assert Target.parse("cost-per-1k=0.5").describe() == "cost-per-1k<=$0.50"
    assert Target.parse("min-pgr=0.8").describe() == "pgr>=0.80"


def test_calibration_round_trips_and_keeps_the_default(tmp_path: Path) -> None:
    file = save_calibration(CAL, tmp_path)
    assert file.name == "calibration.json" and file.stat().st_mode & 0o777 == 0o644
    loaded = load_calibration(tmp_path)
    assert loaded == CAL and loaded.default == "balanced"
    assert load_calibration(tmp_path / "missing") == Calibration()
    (tmp_path / "calibration.json").write_text('{"version": 1, "targets": {}, "default": "x"}')
    with pytest.raises(Exception, match="default 'x' is not among"):
        load_calibration(tmp_path)


def test_read_only_artifact_dir_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="not a writable directory"):
        save_calibration(CAL, tmp_path / "nope")


# -- through the gateway -------------------------------------------------------------------


@pytest.fixture()
def gateway() -> Iterator[tuple[str, dict[str, FakeProvider]]]:
    fakes = {d.name: FakeProvider(d, reply=f"from {d.name}") for d in CFG.deployments}
    strategy = LearnedStrategy(FakePredictor(), calibration=CAL)
    service = ChatService(CFG, providers=fakes, strategies={"learned": strategy})
    with serve_app(create_app(service=service)) as url:
        yield url, fakes


def _chat(url: str, text: str, **extra: Any) -> Any:
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    return client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}],
        extra_body=extra or None)


def test_gateway_headers_name_deployment_quality_and_threshold(
        gateway: tuple[str, dict[str, FakeProvider]]) -> None:
    url, _ = gateway
    raw = _chat(url, "what is 2+2?")
    assert raw.headers["x-modelmix-deployment"] == "open-small"
    assert raw.headers["x-modelmix-predicted-quality"] == "0.9000"
    assert raw.headers["x-modelmix-route-score"] == "0.1000"
    assert raw.headers["x-modelmix-router-threshold"] == "0.5000"
    assert raw.headers["x-modelmix-route-reason"].startswith("learned: p(strong needed)=0.10")
    raw = _chat(url, "a hard proof")
    assert raw.headers["x-modelmix-deployment"] == "prop-cheap"
    assert raw.headers["x-modelmix-predicted-quality"] == "0.9500"
    assert raw.parse().choices[0].message.content == "from prop-cheap"


def test_gateway_hints_work_and_are_not_forwarded(
        gateway: tuple[str, dict[str, FakeProvider]]) -> None:
    url, fakes = gateway
    raw = _chat(url, "a hard proof", router={"prefer_open": True})
    assert raw.headers["x-modelmix-deployment"] == "open-small"
    sent = fakes["open-small"].calls[-1]
    assert "router" not in sent.model_dump() and "router" not in sent.to_upstream("m")
    raw = _chat(url, "a hard proof", router={"target": "frugal"})
    assert raw.headers["x-modelmix-deployment"] == "open-small"
    raw = _chat(url, "x", router={"min_quality": 0.93})
    assert raw.headers["x-modelmix-deployment"] == "prop-cheap"
    assert raw.headers["x-modelmix-router-threshold"] == "0.9300"


def test_gateway_hints_stream_too(gateway: tuple[str, dict[str, FakeProvider]]) -> None:
    url, _ = gateway
    resp = httpx.post(url + "/v1/chat/completions", json={
        "model": "auto", "stream": True, "router": {"prefer_open": True},
        "messages": [{"role": "user", "content": "a hard proof"}]})
    assert resp.headers["x-modelmix-deployment"] == "open-small"
    assert resp.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize(
    ("router", "param", "needle"),
    [
        ({"min_quality": 2}, "router.min_quality", "less than or equal to 1"),
        ("fast", "router", "must be an object"),
        ({"speed": 1}, "router.speed", "Extra inputs"),
        ({"target": "nope"}, "router.target", "unknown router target"),
        ({"max_cost_per_1k": 1e-9}, "router.max_cost_per_1k", "no deployment fits"),
        ({"prefer_open": True, "min_quality": 0.5}, "router", "at most one of"),
    ],
)
def test_gateway_bad_hints_are_openai_400(gateway: tuple[str, dict[str, FakeProvider]],
                                          router: Any, param: str, needle: str) -> None:
    url, _ = gateway
    resp = httpx.post(url + "/v1/chat/completions", json={
        "model": "auto", "router": router, "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["type"] == "invalid_request_error" and err["param"] == param
    assert needle in err["message"]


def test_gateway_counts_routing_latency(gateway: tuple[str, dict[str, FakeProvider]]) -> None:
    url, _ = gateway
    for text in ("a", "hard b", "c"):
        _chat(url, text)
    metrics = httpx.get(url + "/metrics").text
    line = next(x for x in metrics.splitlines()
                if x.startswith("modelmix_routing_latency_seconds_count"))
    assert float(line.split()[-1]) == 3


def test_gateway_without_a_predictor_still_routes() -> None:
    def loader(name: str) -> Any:
        raise FileNotFoundError("no artifact at /nowhere")

    fakes = {d.name: FakeProvider(d) for d in CFG.deployments}
    strategy = LearnedStrategy(loader=loader, calibration=Calibration())
    service = ChatService(CFG, providers=fakes, strategies={"learned": strategy})
    with serve_app(create_app(service=service)) as url:
        raw = _chat(url, "a hard proof")
    assert raw.headers["x-modelmix-deployment"] == "open-small"
    assert "learned router unavailable (FileNotFoundError" in raw.headers[
        "x-modelmix-route-reason"]
    assert "x-modelmix-predicted-quality" not in raw.headers


def test_named_deployments_ignore_hints(gateway: tuple[str, dict[str, FakeProvider]]) -> None:
    url, _ = gateway
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="prop-pricey", messages=[{"role": "user", "content": "x"}],
        extra_body={"router": {"prefer_open": True}})
    assert raw.headers["x-modelmix-deployment"] == "prop-pricey"
    assert "x-modelmix-predicted-quality" not in raw.headers


# -- the calibrate command -----------------------------------------------------------------


def _outcome_csv(path: Path) -> Path:
    rows = ["prompt,weak-m,strong-m,extra_response"]
    rows += [f"easy {i},True,True,x" for i in range(6)]
    rows += [f"hard {i},False,True,x" for i in range(3)] + ["hard 9,False,False,x"]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_run_calibration_stores_named_targets(tmp_path: Path) -> None:
    from modelmix.cli._router_calibrate import run_calibration

    data = [_outcome_csv(tmp_path / "t.csv")]
    common: dict[str, Any] = {"router": "fake", "data": data, "config": CFG, "out": tmp_path,
                              "loader": lambda name: FakePredictor()}
    run = run_calibration(target=Target.parse("min-pgr=0.9"), name="quality", **common)
    # hard prompts score 0.8, easy ones 0.1: all four hard ones go strong, PGR 1
    assert run.result.threshold == pytest.approx(0.8) and run.result.strong_share == 0.4
    assert run.result.pgr == 1.0 and run.default == "quality"
    assert run.weak_deployment == "open-small" and run.strong_deployment == "prop-cheap"
    run = run_calibration(target=Target.parse("cost-per-1k=0.001"), name="cheap", **common)
    assert run.result.strong_share == 0.0 and run.default == "quality"
    run = run_calibration(target=Target.parse("strong-share=1"), name="best",
                          make_default=True, **common)
    cal = load_calibration(tmp_path)
    assert sorted(cal.targets) == ["best", "cheap", "quality"] and cal.default == "best"


def test_run_calibration_on_given_out_of_fold_scores(tmp_path: Path) -> None:
    from modelmix.cli._router_calibrate import run_calibration

    data = [_outcome_csv(tmp_path / "t.csv")]
    common: dict[str, Any] = {"router": "fake", "data": data, "config": CFG, "out": tmp_path,
                              "loader": lambda name: FakePredictor()}
    # the given scores rank "easy 0" and "easy 1" highest: a 20% share takes exactly those
    scores = [0.9, 0.8] + [0.1] * 8
    run = run_calibration(target=Target.parse("strong-share=0.2"), name="s", scores=scores,
                          **common)
    assert run.result.threshold == pytest.approx(0.8) and run.result.strong_share == 0.2
    assert run.result.pgr == 0.0  # both were right on the weak model already
    with pytest.raises(ConfigError, match="3 scores for 10 prompts"):
        run_calibration(target=Target.parse("strong-share=0.2"), name="s",
                        scores=[0.5] * 3, **common)


def test_calibrate_command_reports_bad_input(tmp_path: Path) -> None:
    import typer
    from typer.testing import CliRunner

    from modelmix.cli._router_calibrate import register

    app = typer.Typer()
    register(app)
    args = ["calibrate", "--data", str(_outcome_csv(tmp_path / "t.csv")), "--name", "x"]
    result = CliRunner().invoke(app, [*args, "--target", "speed=3"])
    assert result.exit_code == 2 and "expected one of" in result.output
    result = CliRunner().invoke(app, [*args, "--target", "strong-share=0.3", "--router",
                                      str(tmp_path / "no-such-router")])
    assert result.exit_code != 0


def test_library_client_takes_hints_and_never_forwards_them() -> None:
    from modelmix import Client

    fakes = {d.name: FakeProvider(d) for d in CFG.deployments}
    with Client(CFG, providers=fakes) as client:
        client.chat(model="open-big", messages=[{"role": "user", "content": "x"}],
                    router={"prefer_open": True})
        assert "router" not in fakes["open-big"].calls[-1].to_upstream("m")
        with pytest.raises(InvalidRequest, match=r"router\.min_quality"):
            client.chat(model="auto", messages=[{"role": "user", "content": "x"}],
                        router={"min_quality": 3})


# -- the shipped router, end to end ---------------------------------------------------------


def test_auto_uses_the_shipped_learned_router_and_its_calibration() -> None:
    pytest.importorskip("numpy")
    pytest.importorskip("tokenizers")
    fakes = {d.name: FakeProvider(d) for d in CFG.deployments}
    service = ChatService(CFG, providers=fakes)  # default: learned, artifact "default"
    with serve_app(create_app(service=service)) as url:
        hard = _chat(url, "Let p = (1, 2, 5, 4)(2, 3) in S_5. Find the index of <p> in S_5.\n"
                          "A. 8\nB. 2\nC. 24\nD. 120\nAnswer:")
        frugal = _chat(url, "Compute 17 * 23 and explain each step.",
                       router={"target": "frugal"})
    reason = hard.headers["x-modelmix-route-reason"]
    assert reason.startswith("learned: p(strong needed)=")
    assert "(target balanced: strong-share<=30%)" in reason
    assert 0 <= float(hard.headers["x-modelmix-predicted-quality"]) <= 1
    threshold = float(hard.headers["x-modelmix-router-threshold"])
    score = float(hard.headers["x-modelmix-route-score"])
    expected = "prop-cheap" if score >= threshold else "open-small"
    assert hard.headers["x-modelmix-deployment"] == expected
    assert "(target frugal: strong-share<=10%)" in frugal.headers["x-modelmix-route-reason"]


def test_calibration_made_for_another_router_is_flagged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    from dataclasses import replace

    from modelmix.cli._router_calibrate import run_calibration
    from modelmix.routing import router_fingerprint

    (tmp_path / "model.npz").write_bytes(b"v1")
    save_calibration(replace(CAL, fingerprint="0123456789abcdef"), tmp_path)
    predictor = FakePredictor()
    predictor.artifact_dir = tmp_path  # type: ignore[attr-defined]
    with caplog.at_level("WARNING", logger="modelmix.routing"):
        assert LearnedStrategy(predictor).calibration.default == "balanced"
    assert "calibrated for another version of the router" in caplog.text

    run = run_calibration(router=str(tmp_path), data=[_outcome_csv(tmp_path / "t.csv")],
                          target=Target("strong-share", 0.5), name="new", config=CFG,
                          loader=lambda name: predictor)
    assert run.dropped == ("balanced", "frugal")
    cal = load_calibration(tmp_path)
    assert list(cal.targets) == ["new"] and cal.default == "new"
    assert cal.fingerprint == router_fingerprint(tmp_path) != "0123456789abcdef"


def test_route_reason_shows_enough_digits_to_compare() -> None:
    from modelmix.routing._learned_order import _distinct

    assert _distinct(0.10, 0.5) == ("0.10", "0.50")
    assert _distinct(0.5793, 0.58) == ("0.579", "0.580")  # not "0.58 < 0.58"
    assert _distinct(0.58, 0.58) == ("0.580000", "0.580000")  # equal: ">=" is right
