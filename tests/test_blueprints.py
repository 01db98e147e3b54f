"""The shipped blueprints end to end: a real gateway on loopback, two recording upstreams
(one on-premises open model, one proprietary cloud model), the OpenAI SDK, and inputs
written here (made-up patients, cards, parts and hosts)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import openai
import pytest

from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.testing import ListSink
from test_client import needs_local


@dataclass
class Setup:
    client: openai.OpenAI
    onprem: FaultyUpstream
    cloud: FaultyUpstream
    sink: ListSink

    def ask(self, system: str, text: str) -> tuple[str, dict[str, str]]:
        raw = self.client.chat.completions.with_raw_response.create(
            model=f"system/{system}", messages=[{"role": "user", "content": text}])
        return raw.parse().choices[0].message.content or "", dict(raw.headers)


def _sent(upstream: FaultyUpstream) -> list[str]:
    """The text of every message each request to ``upstream`` carried."""
    return ["\n".join(str(m.get("content")) for m in r.body["messages"])
            for r in upstream.received]


@pytest.fixture
def setup() -> Iterator[Setup]:
    with FaultyUpstream("onprem") as onprem, FaultyUpstream("cloud") as cloud:
        cfg = config_from_dict({
            "deployments": [
                {"name": "onprem", "provider": "openai-compatible", "base_url": onprem.url,
                 "model": "llama", "tier": "open", "hosting": "local"},
                {"name": "cloud", "provider": "openai-compatible", "base_url": cloud.url,
                 "model": "frontier", "tier": "proprietary", "hosting": "cloud",
                 "input_cost_per_mtok": 2.0, "output_cost_per_mtok": 8.0},
            ],
            "include_systems": ["builtin"],
        })
        sink = ListSink()
        app = create_app(service=ChatService(cfg, usage=sink), auth=None, policy_env=False)
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0)
            yield Setup(client, onprem, cloud, sink)


PHI = ("Patient Maria Lopez, MRN 48213377, DOB 04/11/1958, takes metformin 500 mg twice a "
       "day and reports dizziness and chest pain since this morning. What should we do?")


def test_healthcare_triage_keeps_phi_on_premises_and_adds_safety_notes(setup: Setup) -> None:
    setup.onprem.reply = "Give 500 mg of paracetamol and recheck her glucose."
    answer, headers = setup.ask("healthcare-triage", PHI)
    assert setup.cloud.count == 0  # PHI never reaches the cloud deployment
    assert any("48213377" in text for text in _sent(setup.onprem))
    assert headers["x-modelmix-system"] == "healthcare-triage"
    assert "local:onprem" in headers["x-modelmix-steps"]
    assert "phi: regulated" in headers["x-modelmix-route-reason"]
    assert answer.startswith("Give 500 mg of paracetamol")
    assert "not medical advice" in answer and "emergency number" in answer
    verdicts = [r.verdict for r in setup.sink.records if r.verdict]
    assert verdicts == ["escalate"]  # the safety check failed, the reply step fixed it


def test_healthcare_triage_may_use_the_cloud_for_general_questions(setup: Setup) -> None:
    setup.cloud.reply = "Consult your doctor; adults usually rest at 60 to 100 beats a minute."
    setup.onprem.reply = setup.cloud.reply
    question = ("Compare the mechanisms, trade-offs and evidence base of beta blockers versus "
                "calcium channel blockers for rate control in atrial fibrillation.")
    answer, headers = setup.ask("healthcare-triage", question)
    reason = headers["x-modelmix-route-reason"]
    assert "phi: public" in reason or "phi: internal" in reason
    hard = "difficulty: hard" in reason
    assert ("frontier:cloud" in headers["x-modelmix-steps"]) is hard
    assert setup.cloud.count == (1 if hard else 0)
    assert "not medical advice" not in answer  # no dose, no disclaimer needed


def test_finance_analyst_checks_every_number_and_pseudonymises_cards(setup: Setup) -> None:
    question = ("Card 4111 1111 1111 1111 was charged 3 times $19.99 this month. "
                "What is the total?")
    setup.onprem.reply = "3 x 19.99 = 59.97\n#### 59.97"
    answer, headers = setup.ask("finance-analyst", question)
    reason = headers["x-modelmix-route-reason"]
    if "difficulty: easy" in reason:  # the cheap tier's numbers check out: no escalation
        assert headers["x-modelmix-steps"] == "difficulty:-,checked:onprem"
        assert setup.cloud.count == 0 and answer.endswith("59.97")
    setup.onprem.reply = "3 x 19.99 = 60.00\n#### 60"  # wrong: escalates when easy
    setup.cloud.reply = "The total is 59.97."
    answer, headers = setup.ask("finance-analyst", question)
    assert setup.cloud.count >= 1 and answer == "The total is 59.97."
    for text in _sent(setup.cloud) + _sent(setup.onprem):
        assert "4111" not in text and "<CREDIT_CARD_1>" in text  # finance: everywhere
    if "difficulty: easy" in headers["x-modelmix-route-reason"]:
        assert headers["x-modelmix-steps"] == "difficulty:-,checked:onprem,checked:cloud"
        assert "tier 0 (onprem) failed verification (step 1: 3 x 19.99 = 60.00, but 3 x " \
            "19.99 = 59.97" \
            in headers["x-modelmix-route-reason"]
    cost = float(headers["x-modelmix-cost-usd"])
    assert cost == pytest.approx(sum(r.cost_usd for r in setup.sink.records[-4:]))


REPORT = ("Press 4 on line 3 tripped on overtemperature twice this shift. Replaced hydraulic "
          "filter P/N HX-4410-B (supplier Acme quoted $41.20 per unit); logs on "
          "plc-line3-01.plant.internal show the oil at 71 C before each trip.")
RECORD = ('{"equipment": "press 4, line 3", "symptom": "overtemperature trips", '
          '"severity": "high", "parts": ["HX-4410-B"], "actions_taken": ["replaced filter"]}')


def test_manufacturing_maintenance_extracts_locally_and_pseudonymises_for_the_cloud(
        setup: Setup) -> None:
    setup.onprem.reply = RECORD
    setup.cloud.reply = "Likely root cause: a clogged cooler upstream of the filter."
    answer, headers = setup.ask("manufacturing-maintenance", REPORT)
    assert headers["x-modelmix-steps"] == "record:onprem,rca:cloud,report:-"
    assert "record: tier 0 (onprem) passed" in headers["x-modelmix-route-reason"]
    onprem_sent = "\n".join(_sent(setup.onprem))
    assert "HX-4410-B" in onprem_sent and "plc-line3-01.plant.internal" in onprem_sent
    cloud_sent = "\n".join(_sent(setup.cloud))
    for raw in ("HX-4410-B", "$41.20", "plc-line3-01"):
        assert raw not in cloud_sent, raw  # the report and the record, both pseudonymised
    assert "<PART_NUMBER_1>" in cloud_sent and "<INTERNAL_HOST_1>" in cloud_sent
    assert answer.startswith("Incident record:\n" + RECORD)
    assert answer.endswith("Likely root cause: a clogged cooler upstream of the filter.")


def test_manufacturing_record_escalates_only_when_the_json_is_invalid(setup: Setup) -> None:
    setup.onprem.reply = "The press overheated, probably the filter."  # not JSON
    setup.cloud.reply = RECORD
    answer, headers = setup.ask("manufacturing-maintenance", REPORT)
    assert headers["x-modelmix-steps"] == "record:onprem,record:cloud,rca:cloud,report:-"
    assert "record: tier 0 (onprem) failed verification" in headers["x-modelmix-route-reason"]
    assert "HX-4410-B" in answer  # the cloud's placeholders are restored in the answer
    verdicts = [r.verdict for r in setup.sink.records if r.verdict]
    assert verdicts == ["escalate", "accept"]


# -- the embedded default, no keys, the real local model ---------------------------------


@needs_local
def test_every_blueprint_answers_with_no_keys_on_the_embedded_model(
        monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NVIDIA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    app = create_app(usage=ListSink(), auth=None, policy_env=False)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0,
                               timeout=120)
        asks: dict[str, Any] = {
            "healthcare-triage": PHI,
            "finance-analyst": "What is 12% of $2,500? Show the calculation.",
            "manufacturing-maintenance": REPORT,
        }
        for system, text in asks.items():
            raw = client.chat.completions.with_raw_response.create(
                model=f"system/{system}", max_tokens=32, temperature=0,
                messages=[{"role": "user", "content": text}])
            assert raw.parse().choices[0].message.content
            steps = raw.headers["x-modelmix-steps"]
            assert re.search(r":smollm2-local\b", steps), steps
            assert "gpt-4.1" not in steps and "claude" not in steps
