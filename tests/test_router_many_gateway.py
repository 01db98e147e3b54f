"""Many-model routing in the gateway (issue 15, must-have 3): ``model: auto`` with a
learned router over four model columns sends each request to the cheapest deployment
whose predicted quality meets the target (``learned_router.min_quality``, or the
request's ``router.min_quality``), else to the best predicted one; with
``learned_router.quality_rule: utility``, to the highest predicted quality minus
``cost_weight`` times the request's estimated USD per 1k requests.

A real gateway on loopback, four real recording upstreams (one per deployment, mapped to
the router's columns by ``quality_profile``), the real ``openai`` SDK, and a small router
trained here (public trainer API) on a table written here: greetings are answered well
by every model, summaries from ``small`` up, code from ``medium`` up (``large`` best),
proofs only by ``large``. Which upstream received a prompt says what the router decided."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import ConfigError
from modelmix.server import create_app

pytest.importorskip("numpy")
pytest.importorskip("sklearn")
openai = pytest.importorskip("openai")

#: column -> (USD per 1M tokens, quality on greeting / summary / code / proof)
MODELS = {"tiny": (0.1, (0.95, 0.02, 0.0, 0.0)), "small": (0.5, (0.95, 0.95, 0.02, 0.0)),
          "medium": (2.0, (0.95, 0.95, 0.8, 0.02)), "large": (10.0, (0.95, 0.95, 0.98, 0.95))}
TOPICS = ["rivers", "bees", "trains", "volcanoes", "tea", "chess", "owls", "glaciers",
          "bridges", "comets", "tulips", "whales", "deserts", "violins", "maps"]


def _prompts(topic: str, i: int) -> tuple[str, str, str, str]:
    return (f"Say a warm hello to my friend {i} who likes {topic}.",
            f"Summarise this short paragraph about {topic} in two sentences: {topic} "
            f"matter to people in many places, story {i}.",
            f"Write a Python function that sorts a list of {topic} records by field {i} "
            "and add unit tests.",
            f"Prove rigorously that the square root of {i + 2} times a prime is irrational, "
            f"using a lemma about {topic}.")


def _table(path: Path) -> Path:
    with path.open("w", newline="", encoding="utf-8") as fh:
        out = csv.writer(fh)
        out.writerow(["prompt", *MODELS])
        for t, topic in enumerate(TOPICS[:12]):
            for i in (t, t + 20):
                for kind, prompt in enumerate(_prompts(topic, i)):
                    out.writerow([prompt, *(q[kind] for _, q in MODELS.values())])
    return path


@pytest.fixture(scope="module")
def router_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from modelmix.routing.learned import FitOptions, train_router

    tmp = tmp_path_factory.mktemp("many")
    predictor = train_router([_table(tmp / "four.csv")], tmp / "router",
                             options=FitOptions(inner_folds=3))
    assert predictor.weak_model is None  # four columns, no pair: quality mode
    return tmp / "router"


@contextmanager
def _gateway(router_dir: Path, **learned: Any
             ) -> Iterator[tuple[str, dict[str, FaultyUpstream]]]:
    with FaultyUpstream("tiny") as a, FaultyUpstream("small") as b, \
            FaultyUpstream("medium") as c, FaultyUpstream("large") as d:
        ups = {"tiny": a, "small": b, "medium": c, "large": d}
        deployments = [
            {"name": f"dep-{col}", "provider": "openai-compatible", "base_url": up.url,
             "model": f"m-{col}", "quality_profile": col,
             "tier": "open" if col in ("tiny", "small") else "proprietary",
             "input_cost_per_mtok": MODELS[col][0], "output_cost_per_mtok": MODELS[col][0]}
            for col, up in ups.items()]
        config = config_from_dict({
            "deployments": deployments, "router": "learned",
            "learned_router": {"artifact": str(router_dir), **learned}})
        with serve_app(create_app(service=ChatService(config), policy_env=False)) as url:
            yield url, ups


@pytest.fixture()
def gateway(router_dir: Path) -> Iterator[tuple[str, dict[str, FaultyUpstream]]]:
    with _gateway(router_dir, min_quality=0.6) as served:
        yield served


def _served(url: str, ups: dict[str, FaultyUpstream], text: str, *, reason: str = "",
            **extra: Any) -> str:
    """The column whose upstream received ``text`` (exactly one must have); ``reason``
    must be in the route reason header."""
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": text}], **extra)
    assert raw.parse().choices[0].message.content
    got = [col for col, up in ups.items()
           if any(text in str(r.body.get("messages")) for r in up.received)]
    assert len(got) == 1, got
    assert raw.headers["x-modelmix-deployment"] == f"dep-{got[0]}"
    assert reason in raw.headers["x-modelmix-route-reason"], raw.headers
    return got[0]


def test_each_request_goes_to_the_cheapest_model_predicted_good_enough(
        gateway: tuple[str, dict[str, FaultyUpstream]]) -> None:
    url, ups = gateway
    for topic, i in (("kites", 7), ("lanterns", 11)):   # prompts the router never saw
        greeting, summary, code, proof = _prompts(topic, i)
        assert _served(url, ups, greeting) == "tiny"
        assert _served(url, ups, summary,
                   reason="cheapest with predicted quality >= 0.60: dep-small") == "small"
        assert _served(url, ups, code) == "medium"
        assert _served(url, ups, proof) == "large"


def test_the_request_target_overrides_the_configured_one(
        gateway: tuple[str, dict[str, FaultyUpstream]]) -> None:
    url, ups = gateway
    _greeting, summary, code, proof = _prompts("harbours", 5)
    # a bar every column meets: the cheapest of all, even for a proof
    assert _served(url, ups, proof, extra_body={"router": {"min_quality": 0.0}},
                   reason="cheapest with predicted quality >= 0.00") == "tiny"
    # a bar no column meets: the best predicted (large for code, not the cheapest)
    assert _served(url, ups, code, extra_body={"router": {"min_quality": 1.0}},
                   reason="no candidate reaches predicted quality 1.00") == "large"
    # the configured 0.6 decides when the request names none
    assert _served(url, ups, summary) == "small"


def test_utility_rule_weighs_predicted_gain_against_the_request_cost(
        router_dir: Path) -> None:
    """``quality_rule: utility``: highest predicted quality - 0.02 x USD per 1k requests.
    At 100 completion tokens a code prompt's answer costs about $0.25 per 1k on medium and
    $1.25 on large: large's higher predicted quality (about 0.93 vs 0.75 here) is worth
    the $1 more, where the threshold rule stops at medium; at 4,000 tokens ($8 vs $40 per
    1k) it is not."""
    with _gateway(router_dir, min_quality=0.6, quality_rule="utility",
                  cost_weight=0.02) as (url, ups):
        _greeting, summary, code, proof = _prompts("lighthouses", 9)
        assert _served(url, ups, code, max_tokens=100,
                       reason="highest predicted quality - 0.02 x USD/1k: dep-large") == "large"
        assert _served(url, ups, code + " ", max_tokens=4000,
                       reason="highest predicted quality - 0.02 x USD/1k: dep-medium"
                       ) == "medium"
        assert _served(url, ups, proof, max_tokens=1000) == "large"   # only large can
        assert _served(url, ups, summary, max_tokens=4000) == "small"
        # a request's own quality bar asks for the threshold rule
        assert _served(url, ups, code + "  ", max_tokens=100,
                       extra_body={"router": {"min_quality": 0.6}},
                       reason="cheapest with predicted quality >= 0.60: dep-medium") == "medium"


def test_unknown_quality_rule_is_a_config_error(router_dir: Path) -> None:
    with pytest.raises(ConfigError, match="quality_rule"):
        config_from_dict({"deployments": [], "learned_router": {"quality_rule": "nearest"}})
    with pytest.raises(ConfigError, match="cost_weight"):
        config_from_dict({"deployments": [], "learned_router": {"cost_weight": -1}})
