"""The document-intake blueprint and what it is built from: the ``read`` step kind, a model
step's ``response_format``, the json-schema verifier's ``schema: asked`` and the
``fromjson`` filter.

End to end through a real gateway on loopback (the OpenAI SDK) and through the library,
on documents rendered here (a form image, a text PDF, a scanned PDF, a spoken note), read
by the real readers; model calls go to recording upstreams that answer JSON to calls
asking for it and prose otherwise, and once to the real embedded model."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import jsonschema
import openai
import pytest
import yaml

from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix import Client
from modelmix.catalog import Config, config_from_dict, default_config
from modelmix.engine import ChatService
from modelmix.errors import ConfigError, InvalidRequest
from modelmix.protocol import ChatRequest
from modelmix.server import create_app
from modelmix.systems import blueprint_dir
from modelmix.systems._expr import Template
from modelmix.testing import FakeProvider, ListSink
from test_client import needs_local

BLUEPRINT = yaml.safe_load((blueprint_dir() / "document-intake.yaml").read_text())
INTAKE_SCHEMA = BLUEPRINT["systems"]["document-intake"]["steps"]["fields"][
    "response_format"][1]["json_schema"]["schema"]

FORM = ["PATIENT INTAKE FORM", "Name: Maria Lopez", "Date of birth: 04/11/1958",
        "SSN: 123-45-6789", "Address: 12 Oak Street, Springfield",
        "Reason for visit: dizziness since Monday"]
FIELDS = {"document_type": "patient intake form", "name": "Maria Lopez",
          "date_of_birth": "04/11/1958", "id_number": "123-45-6789",
          "address": "12 Oak Street, Springfield", "key_facts": ["dizziness since Monday"]}
SUMMARY = "A patient intake form for Maria Lopez, who reports dizziness since Monday."
CLAIM_SCHEMA = {"type": "object", "additionalProperties": False,
                "required": ["invoice_number", "total"],
                "properties": {"invoice_number": {"type": "string"},
                               "total": {"type": "number"}}}
CLAIM = {"invoice_number": "2041", "total": 120.0}

def _needs_readers() -> None:
    """The readers are an extra: the media tests skip without them."""
    pytest.importorskip("rapidocr_onnxruntime")


# -- documents, rendered once ------------------------------------------------------------


@pytest.fixture(scope="module")
def docs() -> dict[str, dict[str, Any]]:
    """Content parts: a form image, a text PDF, a scanned PDF and a spoken note."""
    _needs_readers()
    from _media_docs import form_png, scanned_pdf, spoken_wav, text_pdf

    def b64(data: bytes) -> str:
        return base64.b64encode(data).decode()

    return {
        "image": {"type": "image_url", "image_url": {
            "url": "data:image/png;base64," + b64(form_png(FORM))}},
        "pdf": {"type": "file", "file": {"filename": "invoice.pdf", "file_data":
                "data:application/pdf;base64," + b64(text_pdf(
                    ["Invoice 2041", "Total due: 120.00 EUR"]))}},
        "scanned": {"type": "file", "file": {"filename": "scan.pdf", "file_data":
                    "data:application/pdf;base64," + b64(scanned_pdf(FORM[:3]))}},
        "audio": {"type": "input_audio", "input_audio": {
            "data": b64(spoken_wav("My name is Maria Lopez and my appointment moved to "
                                   "Tuesday.")), "format": "wav"}},
    }


def _message(part: dict[str, Any], text: str = "New intake, please process.") -> list[Any]:
    return [{"role": "user", "content": [{"type": "text", "text": text}, part]}]


# -- recording upstreams -----------------------------------------------------------------


class IntakeUpstream(FaultyUpstream):
    """A recording upstream answering JSON (``fields``, in turn; the last one repeats) to
    calls that ask for JSON -- the fields step and its repair -- and ``summary`` to the
    others."""

    def __init__(self, name: str):
        super().__init__(name)
        self.fields: list[str] = [json.dumps(FIELDS)]
        self.summary = SUMMARY

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        out = super()._completion(body)
        if body.get("response_format"):
            text = self.fields.pop(0) if len(self.fields) > 1 else self.fields[0]
        else:
            text = self.summary
        out["choices"][0]["message"]["content"] = text
        return out

    def json_calls(self) -> list[dict[str, Any]]:
        return [r.body for r in self.received if r.body.get("response_format")]

    def sent(self) -> str:
        return "\n".join(str(m.get("content")) for r in self.received
                         for m in r.body["messages"])


def _catalog(onprem: FaultyUpstream, cloud: FaultyUpstream) -> Config:
    """``open`` lists a cloud deployment first (the ordered router would pick it), then an
    on-premises one: only the policy keeps a regulated document off the cloud."""
    common = {"provider": "openai-compatible", "supports_json_mode": True, "region": "us"}
    return config_from_dict({
        "deployments": [
            {"name": "cloud", "base_url": cloud.url, "model": "frontier", "tier": "open",
             "hosting": "cloud", "input_cost_per_mtok": 2.0, "output_cost_per_mtok": 8.0,
             **common},
            {"name": "onprem", "base_url": onprem.url, "model": "llama", "tier": "open",
             "hosting": "local", **common},
        ],
        "groups": {"open": ["cloud", "onprem"], "proprietary": ["cloud"]},
        "router": "ordered",
        "reliability": {"num_retries": 0},
        "include_systems": ["builtin"],
    })


@dataclass
class Gateway:
    client: openai.OpenAI
    onprem: IntakeUpstream
    cloud: IntakeUpstream
    sink: ListSink

    def intake(self, part: dict[str, Any], **kw: Any) -> tuple[dict[str, Any], dict[str, str]]:
        raw = self.client.chat.completions.with_raw_response.create(
            model="system/document-intake", messages=_message(part), **kw)
        return json.loads(raw.parse().choices[0].message.content or ""), dict(raw.headers)

    def rows(self, count: int) -> list[Any]:
        return self.sink.wait_for(count)


@pytest.fixture(scope="module")
def _gateway() -> Iterator[Gateway]:
    with IntakeUpstream("onprem") as onprem, IntakeUpstream("cloud") as cloud:
        sink = ListSink()
        service = ChatService(_catalog(onprem, cloud), usage=sink)
        app = create_app(service=service, auth=None, policy_env=False)
        with serve_app(app) as url:
            client = openai.OpenAI(base_url=f"{url}/v1", api_key="none", max_retries=0,
                                   timeout=120)
            yield Gateway(client, onprem, cloud, sink)


@pytest.fixture
def gw(_gateway: Gateway) -> Gateway:
    for up in (_gateway.onprem, _gateway.cloud):
        up.clear()
        up.fields, up.summary = [json.dumps(FIELDS)], SUMMARY
    _gateway.sink.records.clear()
    return _gateway


# -- through the gateway -----------------------------------------------------------------


def test_a_form_image_becomes_schema_valid_fields_and_a_summary(
        gw: Gateway, docs: dict[str, Any]) -> None:
    out, headers = gw.intake(docs["image"])
    jsonschema.validate(out["fields"], INTAKE_SCHEMA)
    assert out == {"fields": FIELDS, "valid": True, "error": None, "summary": SUMMARY,
                   "read": "ocr"}
    steps = headers["x-modelmix-steps"].split(",")
    assert steps[0] == "read:-" and steps[-1] == "result:-"
    assert sorted(steps[1:-1]) == ["check:-", "fields:onprem", "summary:onprem"]
    assert headers["x-modelmix-system"] == "document-intake"
    assert "read: 1 part (ocr)" in headers["x-modelmix-route-reason"]
    # the fields call asked for the intake schema and carried the OCR'd form as text
    (asked,) = gw.onprem.json_calls()
    assert asked["response_format"]["json_schema"]["schema"] == INTAKE_SCHEMA
    prompt = asked["messages"][-1]["content"]
    assert '<media part="messages.0.content.1" kind="image" read="ocr">' in prompt
    assert "123-45-6789" in prompt and "New intake, please process." in prompt
    summary_call = next(r.body for r in gw.onprem.received if not r.body.get(
        "response_format"))
    assert "Summarise the document" in summary_call["messages"][-1]["content"]
    # one row per step that ran (read, fields, check's verdict, summary) and the envelope
    rows = gw.rows(5)
    by_step = {r.step: r for r in rows}
    assert set(by_step) == {None, "read", "fields", "check", "summary"}
    read = by_step["read"]
    assert read.deployment is None and read.conversions == "ocr" and read.status_code == 200
    assert read.latency_ms > 0 and read.parent_id == by_step[None].request_id
    assert by_step["check"].verdict == "accept"
    assert by_step[None].media and "image/png" in by_step[None].media


def test_a_regulated_form_never_reaches_the_cloud(gw: Gateway, docs: dict[str, Any]) -> None:
    gw.intake(docs["image"])
    assert gw.cloud.count == 0  # the ordered router's first choice, refused by the policy
    assert "123-45-6789" in gw.onprem.sent() and "Maria Lopez" in gw.onprem.sent()


def test_a_document_without_personal_data_may_use_the_cloud(
        gw: Gateway, docs: dict[str, Any]) -> None:
    gw.cloud.fields = [json.dumps(CLAIM)]
    out, headers = gw.intake(docs["pdf"], response_format={
        "type": "json_schema", "json_schema": {"name": "claim", "schema": CLAIM_SCHEMA}})
    assert "fields:cloud" in headers["x-modelmix-steps"]  # the policy let it through
    assert out["fields"] == CLAIM and out["read"] == "pdf"


def test_the_request_schema_replaces_the_intake_schema(
        gw: Gateway, docs: dict[str, Any]) -> None:
    gw.onprem.fields = gw.cloud.fields = [json.dumps(CLAIM)]
    fmt = {"type": "json_schema", "json_schema": {"name": "claim", "schema": CLAIM_SCHEMA}}
    out, _ = gw.intake(docs["scanned"], response_format=fmt)
    jsonschema.validate(out["fields"], CLAIM_SCHEMA)
    assert out["valid"] is True and out["read"] == "ocr,pdf"  # a PDF of a scanned page
    ups = gw.onprem.received + gw.cloud.received
    asked = [r.body["response_format"] for r in ups if r.body.get("response_format")]
    assert asked == [fmt]  # the fields call asked for the caller's schema...
    assert len(ups) == 2  # ...and the summary for plain text, whatever the caller asked


def test_a_bad_first_answer_gets_exactly_one_repair(gw: Gateway, docs: dict[str, Any]) -> None:
    bad = {**FIELDS, "key_facts": "dizziness"}  # a string where the schema wants a list
    gw.onprem.fields = [json.dumps(bad), json.dumps(FIELDS)]
    out, headers = gw.intake(docs["image"])
    assert out["valid"] is True and out["fields"] == FIELDS
    first, repair = gw.onprem.json_calls()
    assert repair["messages"][-2] == {"role": "assistant", "content": json.dumps(bad)}
    fix = repair["messages"][-1]["content"]
    assert "invalid JSON at $.key_facts" in fix and '"maxItems": 5' in fix  # with the schema
    assert repair["response_format"] == first["response_format"]
    assert "check:onprem" in headers["x-modelmix-steps"].split(",")
    assert "check: accept" in headers["x-modelmix-route-reason"]


def test_a_second_bad_answer_is_reported_not_retried(gw: Gateway, docs: dict[str, Any]) -> None:
    gw.onprem.fields = ["not JSON at all"]
    out, _ = gw.intake(docs["image"])
    assert len(gw.onprem.json_calls()) == 2  # the answer and one repair, no more
    assert out["valid"] is False and out["fields"] is None
    assert out["error"] == "no JSON found in the answer" and out["summary"] == SUMMARY
    verdicts = [r.verdict for r in gw.rows(6) if r.verdict]
    assert verdicts == ["escalate"]


def test_a_corrupt_image_is_a_400_naming_the_part(gw: Gateway) -> None:
    png = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64).decode()
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{png}"}}
    with pytest.raises(openai.BadRequestError) as err:
        gw.intake(part)
    assert "messages.0.content.1" in str(err.value)
    assert gw.onprem.count == gw.cloud.count == 0


def test_an_invalid_request_schema_is_a_400_before_any_model_call(
        gw: Gateway, docs: dict[str, Any]) -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "nope"}}}
    with pytest.raises(openai.BadRequestError) as err:
        gw.intake(docs["pdf"], response_format=fmt)
    assert "step fields" in str(err.value) and "not a valid JSON Schema" in str(err.value)
    assert gw.onprem.json_calls() == [] and gw.cloud.json_calls() == []


def test_the_blueprint_ships_in_the_embedded_default() -> None:
    service = ChatService(default_config())
    assert "system/document-intake" in service.systems.model_names()


# -- through the library -----------------------------------------------------------------


def _library(onprem: FakeProvider | None = None) -> tuple[Client, FakeProvider, ListSink]:
    cfg = config_from_dict({
        "deployments": [{"name": "onprem", "provider": "openai-compatible",
                         "base_url": "http://127.0.0.1:9/v1", "model": "m", "tier": "open",
                         "hosting": "local", "supports_json_mode": True}],
        "groups": {"open": ["onprem"], "proprietary": ["onprem"]},
        "include_systems": ["builtin"]})

    def reply(req: ChatRequest) -> str:
        return json.dumps(FIELDS) if req.response_format else SUMMARY

    fake = onprem or FakeProvider(cfg.deployment("onprem"), reply=reply)
    sink = ListSink()
    return Client(cfg, providers={"onprem": fake}, usage=sink), fake, sink


@pytest.mark.parametrize(("kind", "read", "said"), [
    ("pdf", "pdf", "Total due: 120.00 EUR"),
    ("scanned", "ocr,pdf", "Maria Lopez"),
    ("audio", "asr", "Tuesday"),
])
def test_each_kind_of_document_through_the_library(
        docs: dict[str, Any], kind: str, read: str, said: str) -> None:
    client, fake, sink = _library()
    with client:
        reply = client.chat(model="system/document-intake", messages=_message(docs[kind]))
    out = json.loads(reply.text)
    assert out["read"] == read and out["valid"] is True and out["summary"] == SUMMARY
    assert reply.route.system == "document-intake"
    assert reply.route.steps[0] == ("read", "-")
    fields_call = next(c for c in fake.calls if c.response_format)
    assert re.search(said, fields_call.messages[-1].text(), re.IGNORECASE)
    read_row = next(r for r in sink.records if r.step == "read")
    assert read_row.conversions == read


# -- the read step -----------------------------------------------------------------------


def _system(steps: dict[str, Any]) -> ChatService:
    cfg = config_from_dict({
        "deployments": [{"name": "local", "provider": "openai-compatible",
                         "base_url": "http://127.0.0.1:9/v1", "model": "m",
                         "hosting": "local", "supports_json_mode": True}],
        "systems": {"s": {"steps": steps}}}, source="cat.yaml")
    fake = FakeProvider(cfg.deployment("local"),
                        reply=lambda r: json.dumps({"rf": r.response_format}))
    return ChatService(cfg, providers={"local": fake})


READ_THEN_ANSWER = {
    "read": {"kind": "read", "required": True},
    "reply": {"kind": "model", "model": "local",
               "messages": [{"role": "user", "content": "{{ read.text }}"}]}}


async def test_a_required_read_refuses_a_request_without_media() -> None:
    service = _system(READ_THEN_ANSWER)
    request = ChatRequest(model="system/s", messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(InvalidRequest, match="system s, step read: the request carries no "
                       "image, PDF or audio part to read"):
        await service.complete(request)


async def test_a_read_without_media_reads_nothing() -> None:
    steps = {**READ_THEN_ANSWER, "read": {"kind": "read"}}
    service = _system({**steps, "out": {
        "kind": "transform", "template": "[{{ read.text }}|{{ read.conversions }}|"
        "{{ read.parts | length }}]"}})
    done = await service.complete(
        ChatRequest(model="system/s", messages=[{"role": "user", "content": "hi"}]))
    assert done.response.text == "[||0]"
    assert "read: no media" in done.decision.reason


# -- a model step's response_format -------------------------------------------------------


async def _format_of(step: dict[str, Any], request_format: dict[str, Any] | None) -> Any:
    """The response format a model step with ``step``'s options sent."""
    service = _system({"a": {"kind": "model", "model": "local", **step}})
    request = ChatRequest(model="system/s", messages=[{"role": "user", "content": "hi"}],
                          response_format=request_format)
    done = await service.complete(request)
    return json.loads(done.response.text)["rf"]


OWN = {"type": "json_schema", "json_schema": {"name": "own", "schema": {"type": "object"}}}
CALLERS = {"type": "json_schema", "json_schema": {"name": "c", "schema": CLAIM_SCHEMA}}


@pytest.mark.parametrize(("option", "caller", "sent"), [
    ({}, CALLERS, CALLERS),  # caller: as sent (the default)
    ({}, None, None),
    ({"response_format": "text"}, CALLERS, None),
    ({"response_format": OWN}, CALLERS, OWN),
    ({"response_format": ["caller_schema", OWN]}, CALLERS, CALLERS),
    ({"response_format": ["caller_schema", OWN]}, {"type": "json_object"}, OWN),
    ({"response_format": ["caller_schema", OWN]}, None, OWN),
    ({"response_format": "caller_schema"}, {"type": "json_object"}, None),
    ({"response_format": "caller_schema"}, {"type": "json_schema"}, None),  # no schema
    ({"response_format": ["caller", OWN]}, {"type": "json_object"}, {"type": "json_object"}),
])
async def test_a_model_step_chooses_its_response_format(
        option: dict[str, Any], caller: dict[str, Any] | None, sent: Any) -> None:
    assert await _format_of(option, caller) == sent


@pytest.mark.parametrize(("option", "error"), [
    ("json", "field \"response_format\": 'json': use caller, caller_schema, text"),
    ({"type": "xml"}, 'field "response_format": type: Input should be'),
    (["caller_schema", {"type": "json_schema", "json_schema": {"schema": {"type": 5}}}],
     'field "response_format.1": the JSON Schema is not a valid JSON Schema'),
])
def test_a_bad_response_format_fails_at_load(option: Any, error: str) -> None:
    with pytest.raises(ConfigError) as err:
        _system({"a": {"kind": "model", "model": "local", "response_format": option}})
    assert error in err.value.message


@pytest.mark.parametrize("schema", [{"type": "nope"}, ["not", "a", "schema"]])
async def test_a_callers_bad_schema_is_a_400_naming_the_step(schema: Any) -> None:
    with pytest.raises(InvalidRequest, match="system s, step a: the JSON Schema") as err:
        await _format_of({"response_format": ["caller_schema", OWN]}, {
            "type": "json_schema", "json_schema": {"name": "x", "schema": schema}})
    assert err.value.param == "response_format"


# -- the json-schema verifier's schema: asked ----------------------------------------------


async def _checked(answer_format: Any, verifier: dict[str, Any], reply: str
                   ) -> dict[str, Any]:
    """The verify step's ``ok`` and ``reason`` for ``reply`` to a call asking for
    ``answer_format``."""
    cfg = config_from_dict({
        "deployments": [{"name": "local", "provider": "openai-compatible",
                         "base_url": "http://127.0.0.1:9/v1", "model": "m",
                         "hosting": "local", "supports_json_mode": True}],
        "systems": {"s": {"steps": {
            "a": {"kind": "model", "model": "local", "response_format": answer_format},
            "v": {"kind": "verify", "answer": "a", "verifier": verifier},
            "out": {"kind": "transform", "template": "{{ {'ok': v.ok, 'reason': v.reason}"
                    " | tojson }}"}}}}})
    service = ChatService(cfg, providers={"local": FakeProvider(cfg.deployment("local"),
                                                                reply=reply)})
    done = await service.complete(
        ChatRequest(model="system/s", messages=[{"role": "user", "content": "hi"}]))
    result: dict[str, Any] = json.loads(done.response.text)
    return result


ASKED = {"name": "json-schema", "schema": "asked"}


async def test_schema_asked_validates_against_what_the_call_asked_for() -> None:
    assert (await _checked(CALLERS, ASKED, json.dumps(CLAIM)))["ok"] is True
    bad = await _checked(CALLERS, ASKED, '{"invoice_number": 2041, "total": 1}')
    assert bad == {"ok": False, "reason": "invalid JSON at $.invoice_number: 2041 is not of "
                   "type 'string'"}
    assert (await _checked({"type": "json_object"}, ASKED, "[1]"))["ok"] is False
    assert (await _checked("text", ASKED, "{}"))["reason"].startswith(
        "the answer's call asked for no JSON")


async def test_schema_asked_takes_the_json_schema_verifiers_options() -> None:
    with pytest.raises(ConfigError, match='field "verifier"'):
        await _checked("text", {**ASKED, "stirct": True}, "{}")
    strict = {**ASKED, "strict": True}
    assert (await _checked(CALLERS, strict, "Here: " + json.dumps(CLAIM)))["ok"] is False
    fenced = "```json\n" + json.dumps(CLAIM) + "\n```"
    assert (await _checked(CALLERS, strict, fenced))["ok"] is True


def test_fromjson_reads_json_as_the_verifier_finds_it() -> None:
    template = Template('{{ {"v": a.text | fromjson} | tojson }}')
    assert template.render({"a": {"text": 'Sure: {"x": [1, 2]} done'}}) == '{"v": {"x": [1, 2]}}'
    assert template.render({"a": {"text": "no json"}}) == '{"v": null}'


# -- the real embedded model ---------------------------------------------------------------


@needs_local
@pytest.mark.local_model
def test_the_embedded_model_fills_the_intake_schema_from_a_form_image(
        docs: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("OPENAI_API_KEY", "ANTHROPIC_API_KEY", "GEMINI_API_KEY", "NVIDIA_API_KEY"):
        monkeypatch.delenv(var, raising=False)
    sink = ListSink()
    with Client(usage=sink) as client:
        reply = client.chat(model="system/document-intake", messages=_message(docs["image"]))
    out = json.loads(reply.text)
    jsonschema.validate(out["fields"], INTAKE_SCHEMA)  # the grammar kept it schema-valid
    assert out["valid"] is True and out["read"] == "ocr" and out["summary"]
    assert "123-45-6789" in json.dumps(out["fields"])  # copied from the OCR'd form
    assert [s for s, _ in reply.route.steps] == ["read", "fields", "check", "summary",
                                                 "result"]
    assert {d for _, d in reply.route.steps} == {"-", "smollm2-local"}
