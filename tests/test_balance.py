"""Load balancing among equivalent deployments: the group strategies (weighted,
least-busy, latency, cost), LoadStats as the executor keeps it, configuration, the
LiteLLM mapping, and the gateway end to end over real loopback upstreams."""

from __future__ import annotations

import asyncio
import random
import re
from collections import Counter
from collections.abc import Iterator
from typing import Any

import openai
import pytest

from _servers import serve_app
from faulty_upstream import Fault, FaultyUpstream
from modelmix.catalog import (
    BALANCE_STRATEGIES,
    LITELLM_STRATEGIES,
    Config,
    config_from_dict,
    litellm_strategy,
)
from modelmix.engine import CallContext, ChatService
from modelmix.errors import ConfigError, UpstreamUnavailable
from modelmix.protocol import ChatRequest, RequestNeeds
from modelmix.routing import (
    STRATEGIES,
    CostStrategy,
    ExclusionKind,
    LatencyStrategy,
    LeastBusyStrategy,
    LoadStats,
    OrderedStrategy,
    Router,
    WeightedStrategy,
)
from modelmix.routing._balance import member_weights
from modelmix.server import create_app
from modelmix.testing import FakeProvider

# chi-square critical values at p = 0.001 (a correct sampler fails 1 run in 1,000; the
# rng is seeded, so a run is reproducible)
CHI2_P001 = {1: 10.83, 2: 13.82, 3: 16.27}


def dep(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "provider": "openai-compatible", "base_url": "http://x/v1",
            "model": "m", **extra}


def config(strategy: str, *deps: dict[str, Any], **extra: Any) -> Config:
    return config_from_dict({
        "deployments": list(deps),
        "groups": {"chat": {"strategy": strategy, "members": [d["name"] for d in deps]}},
        "router": "rules", **extra})


def needs(text: str = "hi", **kw: Any) -> RequestNeeds:
    return ChatRequest.model_validate(
        {"model": "chat", "messages": [{"role": "user", "content": text}], **kw}).needs()


def healthy(_: object) -> None:
    return None


def chi2(observed: Counter[str], weights: dict[str, float]) -> float:
    n, total = sum(observed.values()), sum(weights.values())
    return sum((observed[k] - n * w / total) ** 2 / (n * w / total) for k, w in weights.items())


# -- weighted -------------------------------------------------------------------------------


def test_weighted_first_choice_follows_weights() -> None:
    cfg = config("weighted", dep("a", weight=1), dep("b", weight=2), dep("c", weight=7))
    router = Router(cfg, health=healthy,
                    strategies={"weighted": WeightedStrategy(rng=random.Random(7))})
    firsts: Counter[str] = Counter()
    seconds_after_c: Counter[str] = Counter()
    for _ in range(20_000):
        d = router.route("chat", needs())
        names = [x.name for x in d.candidates]
        assert sorted(names) == ["a", "b", "c"]  # every member, once
        firsts[names[0]] += 1
        if names[0] == "c":
            seconds_after_c[names[1]] += 1
    assert chi2(firsts, {"a": 1, "b": 2, "c": 7}) < CHI2_P001[2], firsts
    assert abs(firsts["c"] / 20_000 - 0.7) < 0.02
    # fallbacks are drawn by weight too, without replacement: after c, b twice as often as a
    assert chi2(seconds_after_c, {"a": 1, "b": 2}) < CHI2_P001[1], seconds_after_c


def test_weighted_reason_names_the_share() -> None:
    cfg = config("weighted", dep("a", weight=1), dep("b", weight=3))
    router = Router(cfg, health=healthy,
                    strategies={"weighted": WeightedStrategy(rng=random.Random(1))})
    reasons = {router.route("chat", needs()).reason for _ in range(50)}
    assert reasons == {"weighted: weight 1 of 4 (25% of traffic)",
                       "weighted: weight 3 of 4 (75% of traffic)"}


def test_weights_fall_back_to_rpm_then_tpm_like_litellm() -> None:
    cfg = config_from_dict({"deployments": [
        dep("w", weight=2), dep("plain"), dep("r1", rpm=600, tpm=10), dep("r2", rpm=300),
        dep("t1", tpm=1000), dep("t2", tpm=3000)]})
    d = {x.name: x for x in cfg.deployments}
    # any explicit weight: weights (unset = 1)
    assert member_weights([d["w"], d["plain"]]) == ("weight", [2.0, 1.0])
    assert member_weights([d["r1"], d["r2"]]) == ("rpm", [600.0, 300.0])
    assert member_weights([d["r1"], d["t1"]]) == ("tpm", [10.0, 1000.0])
    assert member_weights([d["t1"], d["t2"]]) == ("tpm", [1000.0, 3000.0])
    assert member_weights([d["r2"], d["plain"]]) == ("weight", [1.0, 1.0])  # equal


# -- least-busy -----------------------------------------------------------------------------


def test_least_busy_orders_by_in_flight_and_says_so() -> None:
    load = LoadStats()
    router = Router(config("least-busy", dep("a"), dep("b"), dep("c")), health=healthy,
                    load=load)
    for name, n in (("a", 2), ("b", 3), ("c", 1)):
        for _ in range(n):
            load.started(name)
    d = router.route("chat", needs())
    assert [x.name for x in d.candidates] == ["c", "a", "b"]
    assert d.reason == "least-busy: 1 in flight (fewest of 3)"
    load.finished("b", 5.0, True)
    load.finished("b", 5.0, True)
    load.finished("b", 5.0, True)
    d = router.route("chat", needs())
    assert d.deployment.name == "b" and d.reason == "least-busy: 0 in flight (fewest of 3)"


def test_least_busy_ties_are_drawn_at_random() -> None:
    router = Router(config("least-busy", dep("a"), dep("b")), health=healthy)
    firsts = Counter(router.route("chat", needs()).deployment.name for _ in range(400))
    assert firsts["a"] > 120 and firsts["b"] > 120  # idle members share the traffic
    assert router.route("chat", needs()).reason == (
        "least-busy: 0 in flight (fewest of 2; 2 tied, drawn at random)")


class GatedProvider(FakeProvider):
    """Holds every call until ``gate`` opens; ``entered`` counts calls that arrived."""

    def __init__(self, *args: Any, **kw: Any):
        super().__init__(*args, **kw)
        self.gate = asyncio.Event()

    async def _maybe_fail(self, request: ChatRequest) -> None:
        await super()._maybe_fail(request)
        await self.gate.wait()


def hi(model: str = "chat") -> ChatRequest:
    return ChatRequest.model_validate({"model": model,
                                       "messages": [{"role": "user", "content": "hi"}]})


async def test_least_busy_sends_concurrent_calls_to_the_idle_member() -> None:
    cfg = config("least-busy", dep("a"), dep("b"))
    fakes = {n: GatedProvider(cfg.deployment(n), reply=f"from {n}") for n in ("a", "b")}
    service = ChatService(cfg, providers=fakes)
    tasks = []
    for i in range(6):  # one at a time: each call is upstream before the next is routed
        tasks.append(asyncio.create_task(service.complete(hi())))
        while sum(len(f.calls) for f in fakes.values()) < i + 1:
            await asyncio.sleep(0.001)
    assert (len(fakes["a"].calls), len(fakes["b"].calls)) == (3, 3)
    assert service.load.in_flight("a") == service.load.in_flight("b") == 3
    for f in fakes.values():
        f.gate.set()
    done = await asyncio.gather(*tasks)
    assert Counter(c.deployment.name for c in done) == {"a": 3, "b": 3}
    assert all(c.decision.reason.startswith("least-busy: ") for c in done)
    assert service.load.in_flight("a") == service.load.in_flight("b") == 0
    # with ordered, the same calls would all have gone to a
    await service.aclose()


async def test_a_stream_is_in_flight_until_its_last_chunk() -> None:
    cfg = config("least-busy", dep("a"), dep("b"))
    fakes = {n: FakeProvider(cfg.deployment(n), reply="one two three") for n in ("a", "b")}
    service = ChatService(cfg, providers=fakes)
    stream = await service.stream(hi())
    busy = stream.deployment.name
    other = "b" if busy == "a" else "a"
    assert service.load.in_flight(busy) == 1
    first = await anext(stream.chunks)
    assert first.choices[0].delta.content == "one"
    for _ in range(3):  # while the stream runs, every call goes to the other member
        assert (await service.complete(hi())).deployment.name == other
    rest = [c async for c in stream.chunks]
    await stream.aclose()
    assert rest and service.load.in_flight(busy) == 0
    assert service.load.get(busy).samples == 1  # a whole stream is one latency sample
    # a stream the client leaves early stops counting too (as failed: no sample)
    early = await service.stream(hi())
    await anext(early.chunks)
    await early.aclose()
    assert service.load.in_flight(early.deployment.name) == 0
    await service.aclose()


# -- latency --------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_load_stats_ewma_and_failures() -> None:
    load = LoadStats(alpha=0.5)
    load.started("a")
    load.finished("a", 100.0, True)
    assert load.latency_ms("a") == 100.0  # the first sample is taken as is (RFC 6298)
    load.started("a")
    load.finished("a", 200.0, True)
    assert load.latency_ms("a") == 150.0
    load.started("a")
    load.finished("a", 5.0, False)  # a fast failure must not make it look fast
    assert load.latency_ms("a") == 150.0
    load.started("a")
    load.finished("a", 350.0, False)  # a slow failure (timeout): at least that slow
    assert load.latency_ms("a") == 250.0 and load.get("a").samples == 3
    load.finished("b", 1.0, False)  # unmatched finish: never negative
    assert load.in_flight("b") == 0 and load.latency_ms("b") is None
    with pytest.raises(ValueError, match="alpha"):
        LoadStats(alpha=0)


def test_latency_explores_then_prefers_lowest_average_and_remeasures_stale() -> None:
    clock = Clock()
    load = LoadStats(clock=clock)
    router = Router(config("latency", dep("slow"), dep("fast"), dep("mid")), health=healthy,
                    load=load)
    d = router.route("chat", needs())
    assert d.deployment.name == "slow"
    assert d.reason == "latency: measuring slow (no latency sample yet)"
    load.started("slow")  # while slow is being measured, the next call measures fast
    assert router.route("chat", needs()).deployment.name == "fast"
    load.finished("slow", 900.0, True)
    for name, ms in (("fast", 100.0), ("mid", 400.0)):
        load.started(name)
        load.finished(name, ms, True)
    d = router.route("chat", needs())
    assert [x.name for x in d.candidates] == ["fast", "mid", "slow"]
    assert d.reason == "latency: 100 ms average (lowest of 3 measured)"
    clock.now += 200  # fast keeps serving; slow and mid sit unused
    load.started("fast")
    load.finished("fast", 100.0, True)
    assert router.route("chat", needs()).deployment.name == "fast"
    clock.now += 150  # 350 s since slow's last call: measured again (listed order)
    d = router.route("chat", needs())
    assert d.deployment.name == "slow"
    assert d.reason == "latency: measuring slow (no call for 350 s)"


def test_latency_puts_members_tried_without_a_sample_after_measured_ones() -> None:
    load = LoadStats()
    router = Router(config("latency", dep("flaky"), dep("ok")), health=healthy, load=load)
    load.started("flaky")
    load.finished("flaky", 3.0, False)  # answered 401 at once: tried, not measured
    load.started("ok")
    load.finished("ok", 250.0, True)
    assert [x.name for x in router.route("chat", needs()).candidates] == ["ok", "flaky"]


# -- cost -----------------------------------------------------------------------------------


def test_cost_orders_by_this_requests_estimated_cost_ties_by_listed_order() -> None:
    cfg = config("cost",
                 dep("out-cheap", input_cost_per_mtok=10, output_cost_per_mtok=1),
                 dep("in-cheap", input_cost_per_mtok=1, output_cost_per_mtok=10),
                 dep("in-cheap-2", input_cost_per_mtok=1, output_cost_per_mtok=10))
    router = Router(cfg, health=healthy)
    long_prompt = router.route("chat", needs("word " * 4000, max_tokens=10))
    assert [x.name for x in long_prompt.candidates] == ["in-cheap", "in-cheap-2", "out-cheap"]
    assert re.fullmatch(r"cost: \$0\.\d{6} estimated for this request "
                        r"\(cheapest of 3; 2 tied, listed order\)", long_prompt.reason)
    long_answer = router.route("chat", needs("hi", max_tokens=4000))
    assert [x.name for x in long_answer.candidates] == ["out-cheap", "in-cheap", "in-cheap-2"]
    assert long_answer.reason.endswith("(cheapest of 3)")


# -- health, configuration ------------------------------------------------------------------


async def test_member_with_open_breaker_is_skipped() -> None:
    cfg = config("weighted", dep("a", weight=1000), dep("b", weight=1), reliability={
        "num_retries": 0, "circuit_breaker": {"failure_threshold": 2, "cooldown_s": 60}})
    down = UpstreamUnavailable("a is down", deployment="a")
    fakes = {"a": FakeProvider(cfg.deployment("a"), fail_times=1000, error=down),
             "b": FakeProvider(cfg.deployment("b"), reply="from b")}
    service = ChatService(cfg, providers=fakes,
                          strategies={"weighted": WeightedStrategy(rng=random.Random(3))})
    for _ in range(2):  # a is drawn first, fails, b answers as its fallback
        done = await service.complete(hi(), CallContext())
        assert done.decision.deployment.name == "a" and done.deployment.name == "b"
    for _ in range(5):  # a's circuit is open: the router leaves it out
        done = await service.complete(hi(), CallContext())
        assert [x.name for x in done.decision.candidates] == ["b"]
        assert done.decision.excluded["a"].kind is ExclusionKind.UNHEALTHY
        assert done.decision.reason == "weighted: weight 1 of 1 (100% of traffic)"
    assert len(fakes["a"].calls) == 2
    await service.aclose()


@pytest.mark.parametrize(("groups", "message"), [
    ({"chat": {"strategy": "fastest", "members": ["a"]}}, "unknown strategy 'fastest'"),
    ({"chat": {"strategy": "weighted", "members": ["a"], "weights": [1]}}, "unknown fields"),
    ({"chat": {"strategy": "weighted", "members": ["zz"]}}, "unknown deployments"),
])
def test_bad_group_configs_are_refused(groups: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        config_from_dict({"deployments": [dep("a")], "groups": groups})


@pytest.mark.parametrize("weight", [0, -1, float("nan"), float("inf"), "heavy"])
def test_bad_weights_are_refused(weight: object) -> None:
    with pytest.raises(ConfigError, match="weight"):
        config_from_dict({"deployments": [dep("a", weight=weight)]})


def test_every_group_strategy_is_registered_and_list_form_is_ordered() -> None:
    assert set(BALANCE_STRATEGIES) <= set(STRATEGIES)
    cfg = config_from_dict({"deployments": [dep("a"), dep("b")],
                            "groups": {"pair": ["a", "b"],
                                       "spread": {"strategy": "cost", "members": ["b", "a"]}}})
    router = Router(cfg, health=healthy)
    assert isinstance(router.candidates("pair")[1], OrderedStrategy)
    members, strategy = router.candidates("spread")
    assert [m.name for m in members] == ["b", "a"] and isinstance(strategy, CostStrategy)
    for name, cls in (("least-busy", LeastBusyStrategy), ("latency", LatencyStrategy)):
        built = Router(config(name, dep("a")), health=healthy).candidates("chat")[1]
        assert isinstance(built, cls)


def test_router_shares_its_load_stats_with_the_strategies() -> None:
    load = LoadStats()
    router = Router(config("least-busy", dep("a"), dep("b")), health=healthy, load=load)
    strategy = router.candidates("chat")[1]
    assert isinstance(strategy, LeastBusyStrategy) and strategy.load is load


def test_router_refuses_an_unregistered_group_strategy() -> None:
    cfg = config("weighted", dep("a"))
    bad = cfg.model_copy(update={"group_strategies": {"chat": "fastest"}})
    with pytest.raises(ConfigError, match="group 'chat': unknown routing strategy 'fastest'"):
        Router(bad, health=healthy)


# -- LiteLLM --------------------------------------------------------------------------------


def test_litellm_strategy_names() -> None:
    assert {name: litellm_strategy(name) for name in LITELLM_STRATEGIES} == {
        "simple-shuffle": "weighted", "least-busy": "least-busy",
        "latency-based-routing": "latency", "cost-based-routing": "cost",
        "usage-based-routing": "least-busy", "usage-based-routing-v2": "least-busy"}
    assert litellm_strategy(None) == "weighted"  # LiteLLM's default
    assert set(LITELLM_STRATEGIES.values()) <= set(BALANCE_STRATEGIES)
    with pytest.raises(ConfigError, match="provider-budget-routing"):
        litellm_strategy("provider-budget-routing")


def from_litellm(model_list: list[dict[str, Any]], router_settings: dict[str, Any]) -> Config:
    """What a LiteLLM config means in modelmix: entries sharing a ``model_name`` are one
    group, balanced by ``routing_strategy`` (the whole import is a later issue)."""
    deployments: list[dict[str, Any]] = []
    groups: dict[str, list[str]] = {}
    for i, entry in enumerate(model_list):
        params = entry["litellm_params"]
        name = f"{entry['model_name']}-{i}"
        limits = {k: params[k] for k in ("rpm", "tpm", "weight") if k in params}
        deployments.append(dep(name, model=params["model"], base_url=params["api_base"],
                               **limits))
        groups.setdefault(entry["model_name"], []).append(name)
    strategy = litellm_strategy(router_settings.get("routing_strategy"))
    return config_from_dict({"deployments": deployments, "router": "rules", "groups": {
        group: {"strategy": strategy, "members": members} for group, members in groups.items()
    }})


def test_litellm_model_list_with_a_shared_model_name_is_a_balanced_group() -> None:
    cfg = from_litellm([
        {"model_name": "gpt-4o", "litellm_params": {
            "model": "azure/gpt-4o-eu", "api_base": "http://eu/v1", "rpm": 900}},
        {"model_name": "gpt-4o", "litellm_params": {
            "model": "gpt-4o", "api_base": "http://us/v1", "rpm": 300}},
        {"model_name": "small", "litellm_params": {
            "model": "gpt-4o-mini", "api_base": "http://us/v1"}},
    ], {})  # no routing_strategy: simple-shuffle, weights from rpm
    assert cfg.groups == {"gpt-4o": ("gpt-4o-0", "gpt-4o-1"), "small": ("small-2",)}
    assert cfg.group_strategies == {"gpt-4o": "weighted", "small": "weighted"}
    router = Router(cfg, health=healthy,
                    strategies={"weighted": WeightedStrategy(rng=random.Random(11))})
    firsts = Counter(router.route("gpt-4o", needs()).deployment.name for _ in range(8_000))
    assert chi2(firsts, {"gpt-4o-0": 900, "gpt-4o-1": 300}) < CHI2_P001[1], firsts
    assert router.route("gpt-4o", needs()).reason.startswith("weighted: rpm ")
    latency = from_litellm([{"model_name": "m", "litellm_params": {
        "model": "x", "api_base": "http://a/v1"}}], {"routing_strategy": "latency-based-routing"})
    assert isinstance(Router(latency, health=healthy).candidates("m")[1], LatencyStrategy)


# -- through the gateway, over real upstreams -------------------------------------------------


@pytest.fixture()
def slow_and_fast() -> Iterator[tuple[FaultyUpstream, FaultyUpstream]]:
    with FaultyUpstream("slow") as slow, FaultyUpstream("fast") as fast:
        slow.default = Fault.hang(0.3)
        yield slow, fast


def test_gateway_latency_prefers_the_faster_upstream_after_warm_up(
        slow_and_fast: tuple[FaultyUpstream, FaultyUpstream]) -> None:
    slow, fast = slow_and_fast
    cfg = config_from_dict({
        "deployments": [
            {"name": "slow", "provider": "openai-compatible", "base_url": slow.url,
             "model": "m"},
            {"name": "fast", "provider": "openai-compatible", "base_url": fast.url,
             "model": "m"}],
        "groups": {"chat": {"strategy": "latency", "members": ["slow", "fast"]}},
        "router": "rules"})
    service = ChatService(cfg)
    with serve_app(create_app(service=service, policy_env=False)) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        served, reasons = [], []
        for _ in range(8):
            raw = client.chat.completions.with_raw_response.create(
                model="chat", messages=[{"role": "user", "content": "hi"}])
            served.append(raw.headers["x-modelmix-deployment"])
            reasons.append(raw.headers["x-modelmix-route-reason"])
            assert raw.parse().choices[0].message.content
        with client.chat.completions.create(  # streams are balanced and measured too
                model="chat", messages=[{"role": "user", "content": "hi"}],
                stream=True) as stream:
            assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert served[:2] == ["slow", "fast"]  # warm-up: each member measured once
    assert reasons[:2] == ["latency: measuring slow (no latency sample yet)",
                           "latency: measuring fast (no latency sample yet)"]
    assert served[2:] == ["fast"] * 6, served
    assert all(re.fullmatch(r"latency: \d+ ms average \(lowest of 2 measured\)", r)
               for r in reasons[2:]), reasons
    assert slow.count == 1 and fast.count == 8
    assert service.load.get("fast").samples == 8
    assert (service.load.latency_ms("fast") or 0) < 300 <= (service.load.latency_ms("slow") or 0)
    assert service.load.in_flight("fast") == service.load.in_flight("slow") == 0
