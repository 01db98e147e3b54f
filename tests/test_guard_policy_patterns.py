"""Policy-defined entity patterns (issue 11 blueprints): a policy declares its own entity
types under ``patterns:`` (regular expressions, optional context words and score), the
guard runs them on every text it scans whenever the policy applies (stacked guards
included) and merges them with the detector's entities, so pseudonymisation, restore,
routing and audit treat them like built-in types. The ready ``manufacturing`` policy
pseudonymises part numbers, supplier prices and internal host names except on-premises.

Detection is the built-in detector; providers are echo fakes (``FakeProvider``), so the
tests read exactly what each deployment received.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from typing import Any

import pytest
import yaml

from _guard_fakes import EchoProvider, sent_text
from modelmix.catalog import Config, config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import ConfigError, PolicyDenied
from modelmix.guard import (
    ENTITY_TYPES,
    READY_POLICIES,
    DataClass,
    Guard,
    GuardDetector,
    Policy,
    load_detector,
    load_policy,
)
from modelmix.guard._policy_files import ready_policy_path
from modelmix.guard._policy_patterns import PatternDetector, PolicyPatterns
from modelmix.guard._regex_check import nested_repeat
from modelmix.protocol import ChatRequest
from modelmix.testing import ListSink
from test_guard_stacked import CountingDetector

PART, PRICE, HOST = "HX-4410-B", "$41.20", "plc-line3-01.plant.internal"
#: A maintenance report: a part number, a supplier's price, an internal host name.
REPORT = (f"Line 3 press P/N {PART} failed again; supplier Acme quoted {PRICE} per unit; "
          f"logs on {HOST} show overtemp")
#: Ordinary prices and hyphenated words with none of the patterns' context words near.
DECOYS = ("The canteen lunch was $12.50 and parking is 3 EUR a day. We passed the "
          "ISO-9001 audit; the well-known long-term fix for line-3 is in the follow-up.")
CARD = "4111 1111 1111 1111"

#: A system's own policy with a pattern of its own (trade ids), pseudonymised everywhere.
TRADES: dict[str, Any] = {
    "name": "trades",
    "patterns": {"TRADE_ID": r"\bTRD-\d{6}\b"},
    "entities": {"TRADE_ID": {"action": "pseudonymise", "entities": ["TRADE_ID"]}},
}


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return load_detector()


def _config() -> Config:
    deps = [
        {"name": "cloud", "provider": "openai", "model": "m-cloud"},
        {"name": "onprem", "provider": "vllm", "model": "m-onprem",
         "base_url": "http://127.0.0.1:9/v1"},
        {"name": "laptop", "provider": "vllm", "model": "m-laptop", "hosting": "local",
         "base_url": "http://127.0.0.1:9/v1"},
    ]
    return config_from_dict({"deployments": deps, "groups": {"all": [d["name"] for d in deps]},
                             "router": "ordered", "reliability": {"num_retries": 0}})


def _guard(detector: Any, *refs: str | dict[str, Any]) -> Guard:
    first, *rest = (load_policy(r) for r in refs)
    return Guard(first, detector, in_thread=False).stacked(*rest)


def _service(guard: Guard) -> tuple[ChatService, dict[str, EchoProvider], ListSink]:
    config = _config()
    fakes = {d.name: EchoProvider(d) for d in config.deployments}
    sink = ListSink()
    return ChatService(config, providers=fakes, usage=sink, guard=guard), fakes, sink


def _chat(text: str, model: str = "cloud", **body: Any) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": text}], **body})


def _received(fake: EchoProvider) -> str:
    return " ".join(sent_text(r) for r in fake.calls)


def _found(detector: Any, policy: str | dict[str, Any], text: str) -> list[tuple[str, str]]:
    patterns = PolicyPatterns([load_policy(policy).patterns])
    return [(e.type, text[e.start:e.end])
            for e in PatternDetector(detector, patterns).detect(text)]


# -- the policy file ------------------------------------------------------------------------


def test_manufacturing_is_a_ready_policy() -> None:
    assert "manufacturing" in READY_POLICIES
    policy = load_policy("manufacturing")
    assert policy.name == "manufacturing" and policy.description
    assert set(policy.patterns) == {"PART_NUMBER", "SUPPLIER_PRICE", "INTERNAL_HOST"}
    assert not set(policy.patterns) & set(ENTITY_TYPES)
    assert len(policy.patterns["INTERNAL_HOST"]) == 2  # a list: two patterns, one type


def _pattern_policy(patterns: Any) -> dict[str, Any]:
    return {"name": "plant", "patterns": patterns}


@pytest.mark.parametrize(("patterns", "expected"), [
    ({"PART_NUMBER": {"regex": "[A-Z"}},
     'pattern "PART_NUMBER", field "regex": Value error, invalid regular expression'),
    ({"SERIAL": {"regex": r"(\w+\s?)*$"}},
     "pattern \"SERIAL\", field \"regex\": Value error, nested quantifiers: a group "
     "repeated by '*'"),
    ({"SERIAL": {"regex": r"(?:[A-Z]+)+-\d"}}, "nested quantifiers: a group repeated by '+'"),
    ({"SERIAL": {"regex": r"\d*"}}, 'pattern "SERIAL", field "regex": Value error, the '
                                    "regular expression matches the empty string"),
    ({"SERIAL": {"regex": ""}}, 'pattern "SERIAL", field "regex": String should have at least'),
    ({"part_number": {"regex": r"\d{5}"}}, 'pattern "part_number": the name must be upper '
                                           "snake case"),
    ({"EMAIL_ADDRESS": {"regex": r"\w+@acme"}},
     'pattern "EMAIL_ADDRESS": shadows the built-in entity type EMAIL_ADDRESS'),
    ({"SERIAL": {"regex": r"\d{5}", "extends_builtin": True}},
     'pattern "SERIAL": extends_builtin is set but SERIAL is not a built-in entity type'),
    ({"SERIAL": {"regex": r"\d{5}", "score": 1.5}},
     'pattern "SERIAL", field "score": Input should be less than or equal to 1'),
    ({"SERIAL": {"regex": r"\d{5}", "context": []}},
     'pattern "SERIAL", field "context": Tuple should have at least 1 item'),
    ({"SERIAL": {"regex": r"\d{5}", "flags": "i"}},
     'pattern "SERIAL", field "flags": Extra inputs are not permitted'),
    ({"HOST": [{"regex": r"\b[a-z]+\.corp\b"}, {"regex": "(a+)+"}]},
     'pattern "HOST[1]", field "regex": Value error, nested quantifiers'),
    ({"HOST": []}, 'pattern "HOST": needs a regex'),
])
def test_pattern_errors_name_the_policy_the_pattern_and_the_problem(
        patterns: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_policy(_pattern_policy(patterns))
    assert 'policy: policy "plant", ' in err.value.message
    assert expected in err.value.message


def test_a_policy_file_error_names_the_file_and_the_policy(tmp_path: Any) -> None:
    path = tmp_path / "plant.yaml"
    path.write_text("name: plant\npatterns:\n  PART_NUMBER:\n    regex: '([A-Z]+-?)+\\d'\n")
    with pytest.raises(ConfigError) as err:
        load_policy(str(path))
    assert f'{path}: policy "plant", pattern "PART_NUMBER", field "regex"' in err.value.message
    assert "nested quantifiers" in err.value.message


@pytest.mark.parametrize("regex", [
    r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:internal|corp)\b",  # each round starts with "."
    r"(?:\s+\w+)*", r"(?:\w+,)*", r"\d{1,3}(?:,\d{3})+", r"(?:\w++\s?)*", r"(?>\w+\s?)*",
])
def test_repeats_with_a_separator_or_without_backtracking_are_accepted(regex: str) -> None:
    assert nested_repeat(regex) is None


def test_a_catastrophic_pattern_is_refused_before_it_can_run() -> None:
    started = time.perf_counter()
    with pytest.raises(ConfigError, match="nested quantifiers"):
        load_policy(_pattern_policy({"SLOW": r"^(\w+\s?)*$"}))
    assert time.perf_counter() - started < 1.0


def test_a_pattern_is_compiled_once_when_the_policy_loads() -> None:
    policy = load_policy(_pattern_policy({"TICKET": r"\bINC\d{6}\b"}))  # short form: a regex
    (spec,) = policy.patterns["TICKET"]
    assert isinstance(spec.compiled, re.Pattern) and spec.context_words is None
    assert spec.compiled is policy.patterns["TICKET"][0].compiled
    assert load_policy(_pattern_policy({"TICKET": r"\bINC\d{6}\b"})) == policy


# -- detection -------------------------------------------------------------------------------


def test_the_report_holds_the_three_types(detector: GuardDetector) -> None:
    assert _found(detector, "manufacturing", REPORT) == [
        ("PART_NUMBER", PART), ("SUPPLIER_PRICE", PRICE), ("INTERNAL_HOST", HOST)]
    assert detector.detect(REPORT) == []  # none of it is a built-in type


@pytest.mark.parametrize(("text", "expected"), [
    ("EUR 1,250.00 quote from the vendor", [("SUPPLIER_PRICE", "EUR 1,250.00")]),
    ("Unit price 1.250,00 € on PO 4500123", [("SUPPLIER_PRICE", "1.250,00 €")]),
    ("the bearing costs 980 USD", [("SUPPLIER_PRICE", "980 USD")]),
    ("replace spare KLM4410-R2 tonight", [("PART_NUMBER", "KLM4410-R2")]),
    ("ssh scada-02 and ping hmi-7", [("INTERNAL_HOST", "scada-02"), ("INTERNAL_HOST", "hmi-7")]),
    ("see build.corp and nas01.lan for logs",
     [("INTERNAL_HOST", "build.corp"), ("INTERNAL_HOST", "nas01.lan")]),
    ("a \uff28\uff38-4410-B spare part", [("PART_NUMBER", "\uff28\uff38-4410-B")]),  # full-width
])
def test_manufacturing_patterns(detector: GuardDetector, text: str,
                                expected: list[tuple[str, str]]) -> None:
    assert _found(detector, "manufacturing", text) == expected


@pytest.mark.parametrize("text", [
    DECOYS,
    "Order HX-4410-B from the catalogue",            # no part word within 40 characters
    "Tickets for the open day are $15 at the door.",  # a price, but no supplier word
    "A state-of-the-art line-3 retrofit, phase-2.",   # hyphens and digits, no host word
    "visit www.example.com or mail.example.org",      # public domains
])
def test_decoys_without_context_words_are_not_flagged(detector: GuardDetector,
                                                      text: str) -> None:
    assert _found(detector, "manufacturing", text) == []


def test_context_words_take_endings_and_count_inside_the_match(
        detector: GuardDetector) -> None:
    quoted = "Acme quoted 41.20 euros"  # "quote" + d, "euros" ends the amount
    assert _found(detector, "manufacturing", quoted) == [("SUPPLIER_PRICE", "41.20 euros")]
    assert _found(detector, "manufacturing", "plc-7 overheats") == [("INTERNAL_HOST", "plc-7")]
    far = "part " + "x" * 50 + " HX-4410-B"  # the word is 50 characters away
    assert _found(detector, "manufacturing", far) == []


def test_overlaps_are_resolved_as_the_detector_resolves_them(detector: GuardDetector) -> None:
    text = "contact ops-desk jane.doe@example.com now"
    weak = {"name": "p", "patterns": {"CONTACT": {"regex": r"ops-desk \S+", "score": 0.6}}}
    assert _found(detector, weak, text) == [("EMAIL_ADDRESS", "jane.doe@example.com")]
    strong = {"name": "p", "patterns": {"CONTACT": {"regex": r"ops-desk \S+", "score": 1.0}}}
    assert _found(detector, strong, text) == [("CONTACT", "ops-desk jane.doe@example.com")]


async def test_a_pattern_extending_a_builtin_type_is_blocked_like_it(
        detector: GuardDetector) -> None:
    policy = {"name": "acme", "patterns": {"API_KEY": {
        "regex": r"\bacme_[a-z0-9]{16}\b", "extends_builtin": True}},
        "entities": {"API_KEY": {"action": "block", "reason": "no keys"}}}
    service, fakes, _ = _service(_guard(detector, policy))
    with pytest.raises(PolicyDenied, match=r"rule entities.API_KEY\): no keys.*API_KEY x1"):
        await service.complete(_chat("deploy with acme_0123456789abcdef please"))
    assert not any(f.calls for f in fakes.values())


# -- the guard: placeholders out, raw values on premises, answers restored -------------------


async def test_cloud_gets_placeholders_and_local_deployments_raw_values(
        detector: GuardDetector) -> None:
    service, fakes, sink = _service(_guard(detector, "manufacturing"))
    for model in ("cloud", "onprem", "laptop"):
        done = await service.complete(_chat(REPORT, model))
        assert done.deployment.name == model
        assert done.response.text == REPORT  # the echo, restored
    cloud = _received(fakes["cloud"])
    assert not {PART, PRICE, HOST} & {v for v in (PART, PRICE, HOST) if v in cloud}
    assert {"<PART_NUMBER_1>", "<SUPPLIER_PRICE_1>", "<INTERNAL_HOST_1>"} <= set(
        re.findall(r"<[A-Z_]+_\d+>", cloud))
    for name in ("onprem", "laptop"):
        assert all(v in _received(fakes[name]) for v in (PART, PRICE, HOST))
        assert "<PART_NUMBER_1>" not in _received(fakes[name])
    audit = sink.records[0].audit
    assert audit is not None
    assert (audit.policy, audit.data_class, audit.action) == (
        "manufacturing", "confidential", "pseudonymise")
    assert audit.entities == {"INTERNAL_HOST": 1, "PART_NUMBER": 1, "SUPPLIER_PRICE": 1}
    assert audit.pseudonymised == 3
    assert {"classes.confidential", "entities.PART_NUMBER", "entities.SUPPLIER_PRICE",
            "entities.INTERNAL_HOST"} <= set(audit.rules)
    assert audit.forbidden == []  # pseudonymised, not kept away


async def test_the_stream_is_restored(detector: GuardDetector) -> None:
    service, fakes, _ = _service(_guard(detector, "manufacturing"))
    started = await service.stream(_chat(REPORT, stream=True))
    parts = [c.text async for c in started.chunks]
    await started.aclose()
    assert "".join(parts) == REPORT
    assert PART not in _received(fakes["cloud"]) and HOST not in _received(fakes["cloud"])


async def test_personal_data_is_pseudonymised_and_credentials_blocked(
        detector: GuardDetector) -> None:
    service, fakes, _ = _service(_guard(detector, "manufacturing"))
    text = "Ask Jane Miller (jane.miller@example.com, +44 20 7946 0958) about 10.0.3.17."
    done = await service.complete(_chat(text))
    assert done.response.text == text
    cloud = _received(fakes["cloud"])
    assert not any(v in cloud for v in ("Jane Miller", "jane.miller@", "7946", "10.0.3.17"))
    with pytest.raises(PolicyDenied, match=r"entities\.API_KEY"):
        await service.complete(_chat("ssh key: sk-proj-4fG7hJ2kL9mN3pQ8rS1tV6wX on scada-02"))


async def test_values_in_metadata_are_found_with_their_key_as_context(
        detector: GuardDetector) -> None:
    service, fakes, _ = _service(_guard(detector, "manufacturing"))
    await service.complete(_chat("Summarise the ticket.",
                                 metadata={"part": "HX-4410-B", "host": "scada-02"}))
    cloud = _received(fakes["cloud"])
    assert "HX-4410-B" not in cloud and "scada-02" not in cloud
    assert "<PART_NUMBER_1>" in cloud and "<INTERNAL_HOST_1>" in cloud


async def test_decoys_go_to_the_cloud_as_they_are(detector: GuardDetector) -> None:
    service, fakes, sink = _service(_guard(detector, "manufacturing"))
    await service.complete(_chat(DECOYS))
    assert DECOYS in _received(fakes["cloud"])
    audit = sink.records[0].audit
    assert audit is not None and audit.entities == {} and audit.action == "allow"


# -- stacked guards --------------------------------------------------------------------------


async def test_stacked_on_finance_the_patterns_run_and_detection_runs_once(
        detector: GuardDetector) -> None:
    counting = CountingDetector(detector)
    guard = _guard(counting, "finance", "manufacturing")
    service, fakes, sink = _service(guard)
    done = await service.complete(_chat(REPORT))
    assert done.response.text == REPORT
    assert counting.calls["detect_many"] == 1
    cloud = _received(fakes["cloud"])
    assert PART not in cloud and PRICE not in cloud and HOST not in cloud
    audit = sink.records[0].audit
    assert audit is not None and audit.policy == "finance+manufacturing"
    assert "manufacturing:entities.PART_NUMBER" in audit.rules
    # finance alone knows no part numbers: its own guard does not run the patterns
    service, fakes, _ = _service(_guard(detector, "finance"))
    await service.complete(_chat(REPORT))
    assert PART in _received(fakes["cloud"])


async def test_every_stacked_policy_s_patterns_run(detector: GuardDetector) -> None:
    text = f"{REPORT}; booked as TRD-123456"
    service, fakes, sink = _service(_guard(detector, "manufacturing", TRADES))
    done = await service.complete(_chat(text, "laptop"))
    assert done.response.text == text
    laptop = _received(fakes["laptop"])
    # trades sends raw values nowhere, so even the laptop gets placeholders now
    assert "<TRADE_ID_1>" in laptop and "<PART_NUMBER_1>" in laptop
    assert "TRD-123456" not in laptop and PART not in laptop
    audit = sink.records[0].audit
    assert audit is not None and audit.entities == {
        "INTERNAL_HOST": 1, "PART_NUMBER": 1, "SUPPLIER_PRICE": 1, "TRADE_ID": 1}


async def test_a_card_under_finance_and_manufacturing_goes_nowhere_raw(
        detector: GuardDetector) -> None:
    text = f"{REPORT}; paid with card {CARD}"
    service, fakes, _ = _service(_guard(detector, "finance", "manufacturing"))
    done = await service.complete(_chat(text, "onprem"))
    assert done.response.text == text
    onprem = _received(fakes["onprem"])
    assert CARD not in onprem and PART not in onprem  # finance: raw values nowhere


def test_a_policy_already_stacked_is_not_added_twice(detector: GuardDetector) -> None:
    guard = _guard(detector, "manufacturing")
    assert guard.stacked(load_policy("manufacturing")) is guard


# -- policies without patterns ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["finance", "healthcare", "eu-residency"])
async def test_a_policy_without_patterns_detects_exactly_as_before(
        detector: GuardDetector, name: str) -> None:
    policy: Policy = load_policy(name)
    assert policy.patterns == {}
    counting = CountingDetector(detector)
    guard = Guard(policy, counting, in_thread=False)
    text = f"{REPORT}; call Jane Miller on +44 20 7946 0958"
    screening = await guard.screen(_chat(text))
    expected = Counter(e.type for e in detector.detect(text))
    assert screening.audit.entities == dict(expected)
    assert dict(counting.calls) == {"detect_many": 1, "classify": 1}


async def test_pattern_types_work_in_key_overrides_and_entity_classes(
        detector: GuardDetector) -> None:
    raw = yaml.safe_load(ready_policy_path("manufacturing").read_text())
    raw["keys"] = {"k_lab": {"classes": {"confidential": {"action": "allow"}},
                             "entities": {"PART_NUMBER": {"action": "allow"}},
                             "entity_classes": {"SUPPLIER_PRICE": "regulated"}}}
    guard = Guard(load_policy(raw), detector, in_thread=False)
    cloud = _config().deployment("cloud")
    text = f"Spare part {PART} is out of stock"
    lab = await guard.screen(_chat(text), key_id="k_lab")
    assert lab.verdict.action.value == "allow" and lab.request_for(cloud) == (lab.original, False)
    other = await guard.screen(_chat(text))
    sent, pseudo = other.request_for(cloud)
    assert pseudo and PART not in sent.messages[0].text()
    priced = await guard.screen(_chat(f"{text}; supplier quote {PRICE} per unit"),
                                key_id="k_lab")
    assert priced.verdict.data_class is DataClass.REGULATED
