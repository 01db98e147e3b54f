"""Stacked data policies (issue 11): a system of models that declares its own policy
(``policy: healthcare``) runs its model calls under the gateway's policy AND its own,
never less than either. One detection per request, every policy decides, the strictest
verdict wins; screening, routing, pseudonymisation, restore and audit work unchanged.

Detection is the built-in detector on realistic texts; providers are echo fakes, so the
tests read exactly what each deployment received.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from _guard_fakes import EchoProvider, sent_text
from _pixels import TINY_PNG
from modelmix.catalog import Config, config_from_dict
from modelmix.engine import CallContext, ChatService
from modelmix.errors import ConfigError, PolicyDenied
from modelmix.guard import (
    Action,
    DataClass,
    Entity,
    Guard,
    GuardDetector,
    Policy,
    Scope,
    Verdict,
    load_detector,
    load_policy,
    policy_from_dict,
    stack_policy,
    stack_verdicts,
)
from modelmix.guard._media import has_media, unread_media_verdict
from modelmix.protocol import ChatRequest
from modelmix.store import AuditStore, UsageRecord, UsageStore
from modelmix.testing import ListSink

CARD = "4111 1111 1111 1111"
SSN = "536-22-8761"
#: A billing note holding PHI (a diagnosis, an SSN) and a card number.
BILLING = (f"Patient John Smith (SSN {SSN}) was diagnosed with type 2 diabetes. Please "
           f"charge the copay to his card {CARD} and write him a short note.")
API_KEY = "sk-proj-4fG7hJ2kL9mN3pQ8rS1tV6wX"
#: Stands in for a scanned form (unread: media.read is off where it is sent).
PNG = TINY_PNG

#: Realistic texts for comparing verdicts (public, medical, financial, contact, secret).
TEXTS = (
    "Summarise the plot of Hamlet in three sentences.",
    "What foods should be avoided while taking warfarin?",
    "My mother takes warfarin; what foods should she avoid?",
    f"My card {CARD} was charged twice for order 55812, can you draft a dispute letter?",
    "Please wire the refund to IBAN DE89 3704 0044 0532 0130 00 by Friday.",
    "Hi, I am Maria Garcia, you can reach me at maria.garcia@example.com about the invoice.",
    "Call me on +44 20 7946 0958 tomorrow.",
    f"My deploy fails, here is the config: OPENAI_API_KEY={API_KEY} and it says 401.",
    BILLING,
)

#: finance, but raw card numbers may go to local deployments (laptops, not servers).
FINANCE_RAW_LOCAL: dict[str, Any] = {
    "name": "finance-local",
    "entity_classes": {"CREDIT_CARD": "regulated", "US_SSN": "regulated"},
    "classes": {"regulated": {"action": "pseudonymise", "send_raw_to": {"hosting": ["local"]}}},
    "entities": {"CREDIT_CARD": {"action": "pseudonymise", "entities": ["CREDIT_CARD"],
                                 "send_raw_to": {"hosting": ["local"]}}},
}
#: A system's own policy: card numbers may not be sent to any model at all.
NO_CARDS: dict[str, Any] = {
    "name": "no-cards",
    "entities": {"CREDIT_CARD": {"action": "block",
                                 "reason": "this system never handles card numbers"}},
}


class CountingDetector:
    """The built-in detector, counting its calls (every method, every text)."""

    def __init__(self, inner: GuardDetector) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def detect(self, text: str) -> list[Entity]:
        self.calls["detect"] += 1
        return self.inner.detect(text)

    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        self.calls["detect_many"] += 1
        return self.inner.detect_many(texts)

    def classify(self, entities: Sequence[Entity]) -> DataClass:
        self.calls["classify"] += 1
        return self.inner.classify(entities)


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return load_detector()


def _config() -> Config:
    def dep(name: str, provider: str, region: str, **kw: Any) -> dict[str, Any]:
        extra = {"base_url": "http://127.0.0.1:9/v1"} if provider == "vllm" else {}
        return {"name": name, "provider": provider, "model": f"m-{name}", "region": region,
                "input_modalities": ["text", "image"], **extra, **kw}

    deps = [dep("cloud-us", "openai", "us-east-1"), dep("cloud-eu", "openai", "eu-west-1"),
            dep("onprem-us", "vllm", "us-east-1"), dep("onprem-eu", "vllm", "eu-central-1"),
            dep("laptop", "vllm", "eu-west-1", hosting="local")]
    return config_from_dict({"deployments": deps,
                             "groups": {"all": [d["name"] for d in deps]},
                             "router": "ordered", "reliability": {"num_retries": 0},
                             "media": {"read": False}})


def _policy(ref: str | dict[str, Any]) -> Policy:
    return load_policy(ref)


def _guard(detector: Any, *refs: str | dict[str, Any]) -> Guard:
    """The first policy's guard, stacked with the others."""
    first, *rest = (_policy(r) for r in refs)
    return Guard(first, detector, in_thread=False).stacked(*rest)


def _service(guard: Guard) -> tuple[ChatService, dict[str, EchoProvider], ListSink]:
    config = _config()
    fakes = {d.name: EchoProvider(d) for d in config.deployments}
    sink = ListSink()
    return ChatService(config, providers=fakes, usage=sink, guard=guard), fakes, sink


def _chat(text: str, model: str = "all", *, image: bool = False, **body: Any) -> ChatRequest:
    content: Any = text
    if image:
        content = [{"type": "text", "text": text},
                   {"type": "image_url", "image_url": {"url": PNG}}]
    return ChatRequest.model_validate(
        {"model": model, "messages": [{"role": "user", "content": content}], **body})


def _received(fakes: dict[str, EchoProvider]) -> dict[str, str]:
    return {name: " ".join(sent_text(r) for r in fake.calls)
            for name, fake in fakes.items() if fake.calls}


async def _verdict(guard: Guard, text: str, *, key_id: str | None = None,
                   tags: tuple[str, ...] = (), image: bool = False) -> Verdict:
    return (await guard.screen(_chat(text, image=image), key_id=key_id, tags=tags)).verdict


def _allowed(verdict: Verdict) -> list[str]:
    return [d.name for d in _config().deployments if verdict.refuses(d) is None]


# -- finance + healthcare -------------------------------------------------------------------


async def test_phi_with_a_card_stays_on_premises_and_the_card_is_pseudonymised(
        detector: GuardDetector) -> None:
    service, fakes, sink = _service(_guard(detector, "finance", "healthcare"))
    done = await service.complete(_chat(BILLING))
    assert done.deployment.name == "onprem-us"  # the first on-premises deployment
    received = _received(fakes)
    assert set(received) == {"onprem-us"}  # no cloud deployment was called
    assert CARD not in received["onprem-us"] and SSN not in received["onprem-us"]
    assert "<CREDIT_CARD_1>" in received["onprem-us"]
    assert done.response.text == BILLING  # the echo, restored
    audit = sink.records[0].audit
    assert audit is not None
    assert (audit.policy, audit.data_class, audit.action, audit.rule) == (
        "finance+healthcare", "regulated", "route-local", "healthcare:classes.regulated")
    assert {"finance:classes.regulated", "finance:entities.CREDIT_CARD",
            "healthcare:classes.regulated"} <= set(audit.rules)
    assert all(r.startswith(("finance:", "healthcare:")) for r in audit.rules)
    assert audit.entities == {"CREDIT_CARD": 1, "MEDICAL_CONDITION": 1, "PERSON": 1,
                              "US_SSN": 1}
    assert audit.pseudonymised == 4  # finance's regulated class pseudonymises every value
    assert set(audit.forbidden) == {"cloud-us", "cloud-eu"}
    assert "data policy finance+healthcare: regulated (healthcare:classes.regulated)" in (
        sink.records[0].route_reason or "")


async def test_the_stored_audit_row_names_both_policies(detector: GuardDetector,
                                                        tmp_path: Path) -> None:
    service, _, sink = _service(_guard(detector, "finance", "healthcare"))
    await service.complete(_chat(BILLING))
    url = f"sqlite:///{tmp_path / 'usage.db'}"
    store = UsageStore(url)
    store.create_all()
    store.insert_many(sink.records)
    with AuditStore(url) as audit:
        (row,) = audit.rows()
        assert (row.policy, row.rule) == ("finance+healthcare", "healthcare:classes.regulated")
        kept = sink.records[0].audit
        assert kept is not None and list(row.rules) == kept.rules
        assert "finance:entities.CREDIT_CARD" in row.rules
        assert [tuple(s.group.values()) for s in audit.summary(group_by=("policy", "rule"))] == [
            ("finance+healthcare", "healthcare:classes.regulated")]
    store.close()


async def test_stacked_stream_is_restored(detector: GuardDetector) -> None:
    service, fakes, _ = _service(_guard(detector, "finance", "healthcare"))
    started = await service.stream(_chat(BILLING, stream=True))
    parts = [c.text async for c in started.chunks]
    await started.aclose()
    assert "".join(parts) == BILLING
    assert started.deployment.name == "onprem-us"
    assert CARD not in _received(fakes)["onprem-us"]


async def test_raw_values_go_only_where_every_pseudonymising_policy_allows(
        detector: GuardDetector) -> None:
    text = f"I was diagnosed with asthma last year; my card {CARD} paid for the inhaler."
    guard = _guard(detector, FINANCE_RAW_LOCAL, "healthcare")
    service, fakes, _ = _service(guard)
    for model in ("laptop", "onprem-eu"):
        done = await service.complete(_chat(text, model))
        assert done.response.text == text
    received = _received(fakes)
    assert CARD in received["laptop"]  # local: finance-local sends raw values there
    assert CARD not in received["onprem-eu"] and "<CREDIT_CARD_1>" in received["onprem-eu"]
    # ready finance sends raw values nowhere: with it stacked too, the laptop gets placeholders
    service, fakes, _ = _service(guard.stacked(_policy("finance")))
    done = await service.complete(_chat(text, "laptop"))
    assert done.response.text == text
    assert CARD not in _received(fakes)["laptop"]


async def test_an_eu_cloud_gets_placeholders_under_finance_and_eu_residency(
        detector: GuardDetector) -> None:
    text = "Please wire the refund to IBAN DE89 3704 0044 0532 0130 00 by Friday."
    service, fakes, sink = _service(_guard(detector, "finance", "eu-residency"))
    done = await service.complete(_chat(text))
    assert done.deployment.name == "cloud-eu"  # eu-residency: EU only; finance: no raw IBAN
    assert "DE89" not in _received(fakes)["cloud-eu"] and done.response.text == text
    audit = sink.records[0].audit
    assert audit is not None and (audit.action, audit.rule) == (
        "pseudonymise", "finance:classes.regulated")
    assert audit.forbidden == ["cloud-us", "onprem-us"]  # the US ones


# -- blocks, clean requests ------------------------------------------------------------------


@pytest.mark.parametrize("order", [("healthcare", NO_CARDS), (NO_CARDS, "healthcare")],
                         ids=["system-blocks", "gateway-blocks"])
async def test_a_block_in_either_policy_blocks(detector: GuardDetector,
                                               order: tuple[Any, Any]) -> None:
    service, fakes, sink = _service(_guard(detector, *order))
    text = f"My card {CARD} was charged twice for order 55812, can you draft a dispute letter?"
    with pytest.raises(PolicyDenied) as err:
        await service.complete(_chat(text))
    message = err.value.message
    assert "rule no-cards:entities.CREDIT_CARD" in message
    assert "this system never handles card numbers" in message and CARD not in message
    assert err.value.code == "data_policy_blocked"
    assert not _received(fakes)
    audit = sink.records[0].audit
    assert audit is not None and (audit.action, audit.rule) == (
        "block", "no-cards:entities.CREDIT_CARD")


async def test_credentials_are_blocked_by_the_first_blocking_policy(
        detector: GuardDetector) -> None:
    verdict = await _verdict(_guard(detector, "finance", "healthcare"), TEXTS[7])
    assert verdict.action is Action.BLOCK and verdict.rule == "finance:entities.API_KEY"
    assert verdict.reason == ("credentials must never be sent to a model; remove the key "
                              "and retry")
    assert "healthcare:entities.API_KEY" in verdict.rules


async def test_a_request_clean_for_every_policy_goes_anywhere(detector: GuardDetector) -> None:
    guard = _guard(detector, "finance", "healthcare", "eu-residency")
    for text in TEXTS[:2]:
        screening = await guard.screen(_chat(text))
        verdict = screening.verdict
        assert (verdict.action, verdict.data_class) == (Action.ALLOW, DataClass.PUBLIC)
        assert verdict.policy == "finance+healthcare+eu-residency"
        assert screening.rules == () and not screening.active
        assert _allowed(verdict) == [d.name for d in _config().deployments]
        assert all(verdict.raw_allowed(d) for d in _config().deployments)
    service, _, _ = _service(guard)
    done = await service.complete(_chat(TEXTS[0]))
    assert done.deployment.name == "cloud-us" and done.response.text == TEXTS[0]


async def test_scopes_of_every_policy_apply(detector: GuardDetector) -> None:
    text = "Hi, I am Maria Garcia, you can reach me at maria.garcia@example.com."
    verdict = await _verdict(_guard(detector, "healthcare", "eu-residency"), text)
    # healthcare: confidential stays on premises; eu-residency: personal data in the EU
    assert verdict.action is Action.ROUTE_LOCAL
    assert _allowed(verdict) == ["onprem-eu", "laptop"]
    why = verdict.refuses(_config().deployment("onprem-us"))
    assert why is not None and "eu-residency:classes.confidential: region us-east-1" in why


# -- keys, tenants, tags ---------------------------------------------------------------------


HEALTH_RESEARCH: dict[str, Any] = {
    "name": "healthcare-research",
    "entity_classes": {"US_SSN": "regulated"},
    "classes": {"regulated": {"action": "route-local"}},
    "keys": {"k_research": {"classes": {"regulated": {"action": "allow"}}}},
}
FINANCE_VAULT: dict[str, Any] = {
    "name": "finance-vault",
    "entity_classes": {"CREDIT_CARD": "regulated"},
    "entities": {"CREDIT_CARD": {"action": "pseudonymise", "entities": ["CREDIT_CARD"]}},
    "tenants": {"vault": {"keys": ["k_vault"], "entities": {"CREDIT_CARD": {
        "action": "block", "reason": "the vault tenant may not send card numbers"}}}},
    "tags": {"pci": {"action": "route-local"}},
}


async def test_each_policys_key_and_tenant_overrides_apply(detector: GuardDetector) -> None:
    guard = _guard(detector, HEALTH_RESEARCH, FINANCE_VAULT)
    plain = await _verdict(guard, BILLING)
    assert plain.action is Action.ROUTE_LOCAL
    assert plain.rule == "healthcare-research:classes.regulated"
    # k_research may send PHI to the cloud under its policy; finance-vault still pseudonymises
    research = await _verdict(guard, BILLING, key_id="k_research")
    assert research.action is Action.PSEUDONYMISE
    assert research.rule == "finance-vault:entities.CREDIT_CARD"
    assert "healthcare-research:keys.k_research.classes.regulated" in research.rules
    assert research.pseudonymise == frozenset({"CREDIT_CARD"})
    assert _allowed(research) == [d.name for d in _config().deployments]
    # the vault tenant's key is blocked by finance-vault whatever healthcare-research says
    vault = await _verdict(guard, BILLING, key_id="k_vault")
    assert vault.action is Action.BLOCK
    assert vault.rule == "finance-vault:tenants.vault.entities.CREDIT_CARD"
    assert vault.reason == "the vault tenant may not send card numbers"


async def test_tags_and_key_overrides_together(detector: GuardDetector) -> None:
    guard = _guard(detector, HEALTH_RESEARCH, FINANCE_VAULT)
    tagged = await _verdict(guard, BILLING, key_id="k_research", tags=("pci",))
    assert tagged.action is Action.ROUTE_LOCAL and tagged.rule == "finance-vault:tags.pci"
    assert _allowed(tagged) == ["onprem-us", "onprem-eu", "laptop"]


# -- unread media ----------------------------------------------------------------------------


async def test_unread_media_takes_the_strictest_policy(detector: GuardDetector) -> None:
    guard = _guard(detector, "eu-residency", "healthcare")
    verdict = await _verdict(guard, "Please file this intake form.", image=True)
    assert (verdict.action, verdict.data_class) == (Action.ROUTE_LOCAL, DataClass.REGULATED)
    assert verdict.rule == "healthcare:media-unread"
    assert {"eu-residency:media-unread", "healthcare:media-unread"} <= set(verdict.rules)
    assert _allowed(verdict) == ["onprem-eu", "laptop"]  # on premises AND in the EU
    service, fakes, sink = _service(guard)
    done = await service.complete(_chat("Please file this intake form.", image=True))
    assert done.deployment.name == "onprem-eu" and set(_received(fakes)) == {"onprem-eu"}
    audit = sink.records[0].audit
    assert audit is not None and audit.rule == "healthcare:media-unread"


async def test_unread_media_under_finance_stays_local_when_stacked(
        detector: GuardDetector) -> None:
    # eu-residency alone would send the form to any EU deployment, the cloud included
    alone = await _verdict(_guard(detector, "eu-residency"), "file this", image=True)
    assert "cloud-eu" in _allowed(alone)
    verdict = await _verdict(_guard(detector, "eu-residency", "finance"), "file this",
                             image=True)
    assert verdict.action is Action.ROUTE_LOCAL and verdict.rule == "finance:media-unread"
    assert _allowed(verdict) == ["onprem-eu", "laptop"]


# -- one policy: nothing changes -------------------------------------------------------------


def _old_verdict(policy: Policy, counting: CountingDetector, text: str,
                 key_id: str | None, tags: tuple[str, ...], image: bool) -> Verdict:
    """The verdict as the guard computed it before policies could be stacked."""
    entities = counting.inner.detect(text)
    counts = Counter(e.type for e in entities)
    data_class = policy.classify(counting.inner.classify(entities), counts, key_id)
    verdict = policy.evaluate(data_class, counts, key_id=key_id, tags=tags)
    if has_media(_chat(text, image=image)):
        verdict = unread_media_verdict(policy, verdict, counts, key_id, tags)
    return verdict


@pytest.mark.parametrize("ref", ["healthcare", "finance", "eu-residency", HEALTH_RESEARCH,
                                 FINANCE_VAULT],
                         ids=["healthcare", "finance", "eu-residency", "keys", "tenants"])
async def test_one_policy_stacked_is_the_plain_guard(detector: GuardDetector,
                                                     ref: str | dict[str, Any]) -> None:
    policy = _policy(ref)
    counting = CountingDetector(detector)
    plain = Guard(policy, counting, in_thread=False)
    built = stack_policy(None, ref, where="test", detector=counting)
    assert built is not None and built.policies == (policy,)
    assert plain.stacked(policy) is plain and plain.stacked() is plain
    cases = [(t, k, tags, image) for t in TEXTS for k in (None, "k_research", "k_vault")
             for tags in ((), ("pci", "phi", "eu-personal-data")) for image in (False, True)]
    for text, key_id, tags, image in cases:
        old = _old_verdict(policy, counting, text, key_id, tags, image)
        for guard in (plain, built):
            assert await _verdict(guard, text, key_id=key_id, tags=tags, image=image) == old


def test_stacking_one_verdict_returns_it() -> None:
    verdict = load_policy("finance").evaluate(DataClass.REGULATED, {"CREDIT_CARD": 1})
    assert stack_verdicts([verdict]) is verdict
    with pytest.raises(ValueError, match="at least one"):
        stack_verdicts([])


def test_stacked_pseudonymisation_is_the_union() -> None:
    card = Verdict("a", DataClass.REGULATED, Action.PSEUDONYMISE, "entities.CREDIT_CARD",
                   pseudonymising=True, pseudonymise=frozenset({"CREDIT_CARD"}),
                   raw_scopes=(Scope(hosting=("local",)),))
    iban = Verdict("b", DataClass.CONFIDENTIAL, Action.ALLOW, "classes.confidential",
                   pseudonymising=True, pseudonymise=frozenset({"IBAN_CODE"}),
                   raw_scopes=(Scope(regions=("eu-*",)),))
    every = Verdict("c", DataClass.PUBLIC, Action.PSEUDONYMISE, "classes.public",
                    pseudonymising=True)
    allow = Verdict("d", DataClass.PUBLIC, Action.ALLOW, "default")
    both = stack_verdicts([allow, card, iban])
    assert both.policy == "d+a+b" and both.rule == "a:entities.CREDIT_CARD"
    assert both.data_class is DataClass.REGULATED and both.pseudonymising
    assert both.pseudonymise == frozenset({"CREDIT_CARD", "IBAN_CODE"})
    deps = {d.name: d for d in _config().deployments}
    assert [n for n, d in deps.items() if both.raw_allowed(d)] == ["laptop"]  # local AND eu
    assert stack_verdicts([card, every]).pseudonymise is None  # one of them replaces all
    assert not stack_verdicts([card, every]).raw_allowed(deps["laptop"])  # c: raw nowhere
    nothing = stack_verdicts([allow, allow])
    assert not nothing.pseudonymising and nothing.raw_allowed(deps["cloud-us"])


# -- one detection, shared detector and records ----------------------------------------------


async def test_detection_runs_once_per_request(detector: GuardDetector) -> None:
    request = ChatRequest.model_validate({"model": "all", "messages": [
        {"role": "system", "content": "You help a clinic's billing desk."},
        {"role": "user", "content": "my card number is 4111 1111"},
        {"role": "user", "content": f"1111 1111. {BILLING}"}]})
    plain_det, stacked_det = CountingDetector(detector), CountingDetector(detector)
    plain = Guard(_policy("finance"), plain_det, in_thread=False)
    stacked = Guard(_policy("finance"), stacked_det, in_thread=False).stacked(
        _policy("healthcare"), _policy("eu-residency"), _policy(FINANCE_VAULT))
    assert len(stacked.policies) == 4
    await plain.screen(request)
    screening = await stacked.screen(request)
    assert stacked_det.calls["detect_many"] == 1
    assert stacked_det.calls == plain_det.calls  # no more detector work than one policy
    assert screening.audit.entities["CREDIT_CARD"] == 3  # the split one and the whole one


def test_a_stacked_guard_shares_the_lazy_detector(detector: GuardDetector) -> None:
    built: list[GuardDetector] = []

    def factory() -> GuardDetector:
        built.append(detector)
        return detector

    base = Guard(_policy("finance"), factory)
    stacked = base.stacked(_policy("healthcare"))
    assert not built  # nothing loads before it is needed
    assert stacked.detector is detector and base.detector is detector
    assert len(built) == 1
    assert repr(stacked) == "Guard(policy='finance+healthcare')"
    assert stacked.name == "finance+healthcare" and stacked.policy.name == "finance"


async def test_the_services_guard_scrubs_records_the_stacked_guard_screened(
        detector: GuardDetector) -> None:
    base = Guard(_policy("finance"), detector, in_thread=False)
    stacked = base.stacked(_policy("healthcare"))
    rec = UsageRecord(request_id="r1", created_at=0.0, prompt=BILLING)
    screening = await stacked.screen(_chat(BILLING), rec, key_id=None)
    assert rec.audit is screening.audit and SSN not in (rec.prompt or "")
    rec.response, rec.error = f"charged {CARD}", f"upstream echoed {SSN}"
    base.finished(rec, [])  # the service's guard is its registered observer
    assert CARD not in rec.response and SSN not in rec.error


async def test_a_failing_detector_blocks_under_the_stacked_name() -> None:
    class Broken(CountingDetector):
        def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
            raise RuntimeError("model file missing")

    guard = _guard(Broken(load_detector()), "finance", "healthcare")
    screening = await guard.screen(_chat("hello"))
    with pytest.raises(PolicyDenied, match="data policy 'finance\\+healthcare'") as err:
        screening.enforce()
    assert err.value.code == "data_detection_failed"
    assert screening.audit.policy == "finance+healthcare"


# -- building a system's guard from its policy reference -------------------------------------


def test_stack_policy_reads_names_files_and_mappings(detector: GuardDetector,
                                                     tmp_path: Path) -> None:
    base = Guard(_policy("finance"), detector)
    assert stack_policy(base, None, where="x") is base
    assert stack_policy(None, None, where="x") is None
    path = tmp_path / "triage.yaml"
    path.write_text("name: triage\nclasses:\n  regulated: {action: route-local}\n")
    for ref, name in (("healthcare", "finance+healthcare"), (str(path), "finance+triage"),
                      (NO_CARDS, "finance+no-cards")):
        guard = stack_policy(base, ref, where="x")
        assert guard is not None and guard.name == name
        assert guard.detector is detector
    assert stack_policy(base, "finance", where="x") is base  # already enforced
    alone = stack_policy(None, "healthcare", where="x", detector=detector)
    assert alone is not None and alone.name == "healthcare"


@pytest.mark.parametrize(("ref", "expected"), [
    ("hipaa", "unknown ready policy 'hipaa'"),
    ({"name": "triage", "classes": {"regulated": {"action": "erase"}}},
     'rule "classes.regulated", field "action"'),
    ("./missing/triage.yaml", "triage.yaml"),
])
def test_stack_policy_errors_name_where_the_reference_came_from(
        detector: GuardDetector, ref: Any, expected: str) -> None:
    where = 'cat.yaml: system "healthcare-triage", field "policy"'
    for base in (None, Guard(_policy("finance"), detector)):
        with pytest.raises(ConfigError) as err:
            stack_policy(base, ref, where=where, detector=detector)
        assert err.value.message.startswith(where + ": ")
        assert expected in err.value.message


def test_the_catalog_and_a_stacked_policy_parse_alike() -> None:
    raw = {"name": "triage", "classes": {"regulated": {"action": "route-local"}}}
    assert load_policy(raw) == policy_from_dict(raw)


async def test_with_a_key_context_the_service_screens_under_both(
        detector: GuardDetector) -> None:
    service, fakes, sink = _service(_guard(detector, HEALTH_RESEARCH, "finance"))
    done = await service.complete(_chat(BILLING), CallContext(key_id="k_research"))
    # PHI may go to the cloud for k_research, but finance still pseudonymises everything
    assert done.deployment.name == "cloud-us"
    assert CARD not in _received(fakes)["cloud-us"] and done.response.text == BILLING
    audit = sink.records[0].audit
    assert audit is not None and audit.action == "pseudonymise"
    assert audit.rule == "finance:classes.regulated"
