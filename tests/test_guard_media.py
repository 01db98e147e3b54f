"""Media the guard could not read fail closed (issue 9, item 8), and unservable models.

Media that are not read (here: ``media.read: false``; also a reader not installed or an
image URL not fetched) count as the policy's strictest class: a scanned intake form must
not reach a cloud vision model under the healthcare or finance policy, however harmless
the text beside it. (tests/test_media_guard.py covers media that are read.) Runs a real
gateway over real OpenAI-compatible upstreams on loopback and checks what each upstream
actually received.
"""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest

from _pixels import TINY_PNG
from _servers import serve_app
from faulty_upstream import FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import Guard, load_detector, load_policy
from modelmix.server import create_app
from modelmix.testing import ListSink

# Stands in for a scanned intake form; these tests turn reading off (media.read: false)
# to check that media the guard could not read fail closed.
PNG = TINY_PNG


def _silence() -> bytes:
    """A real 0.1 s WAV of silence (a part must decode to pass the media checks)."""
    out = io.BytesIO()
    with wave.open(out, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(16000)
        w.writeframes(b"\x00\x00" * 1600)
    return out.getvalue()
WAV = base64.b64encode(_silence()).decode()


@pytest.fixture(scope="module")
def upstreams() -> Iterator[dict[str, FaultyUpstream]]:
    ups = {name: FaultyUpstream(name).start() for name in ("cloud-v", "local-v")}
    yield ups
    for up in ups.values():
        up.stop()


def _config(ups: dict[str, FaultyUpstream], names: tuple[str, ...]) -> dict[str, Any]:
    deps = [{"name": name, "provider": "openai-compatible", "base_url": ups[name].url,
             "model": f"model-{name}", "input_modalities": ["text", "image", "audio", "file"],
             "hosting": "cloud" if name.startswith("cloud") else "local",
             "tier": "proprietary" if name.startswith("cloud") else "open",
             "region": "us-east-1" if name.startswith("cloud") else None}
            for name in names]
    return {"deployments": deps, "groups": {"vision": list(names)},
            "reliability": {"num_retries": 0}, "media": {"read": False}}


def _serve(ups: dict[str, FaultyUpstream], policy: str,
           names: tuple[str, ...] = ("cloud-v", "local-v")) -> tuple[Any, ListSink]:
    for up in ups.values():
        up.clear()
    cfg = config_from_dict(_config(ups, names))
    sink = ListSink()
    guard = Guard(load_policy(policy), load_detector())
    return create_app(service=ChatService(cfg, usage=sink, guard=guard)), sink


def _form(text: str = "Please file this intake form.") -> list[dict[str, Any]]:
    return [{"role": "user", "content": [{"type": "text", "text": text},
                                         {"type": "image_url", "image_url": {"url": PNG}}]}]


@pytest.mark.parametrize("policy", ["healthcare", "finance"])
@pytest.mark.parametrize("stream", [False, True])
def test_unread_image_stays_local(upstreams: dict[str, FaultyUpstream], policy: str,
                                  stream: bool) -> None:
    app, sink = _serve(upstreams, policy)
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        raw = client.chat.completions.with_raw_response.create(
            model="vision", messages=_form(), stream=stream)  # type: ignore[call-overload]
        assert raw.headers["x-modelmix-deployment"] == "local-v"
        assert "media-unread" in raw.headers["x-modelmix-route-reason"]
        if stream:
            assert "".join(c.choices[0].delta.content or "" for c in raw.parse()
                           if c.choices)
    assert upstreams["cloud-v"].count == 0 and upstreams["local-v"].count == 1
    (rec,) = sink.wait_for(1)
    assert rec.audit is not None and rec.audit.rule == "media-unread"
    assert rec.audit.data_class == "regulated"


def test_text_alone_may_still_go_to_the_cloud(upstreams: dict[str, FaultyUpstream]) -> None:
    app, _ = _serve(upstreams, "healthcare")
    with serve_app(app) as url:
        resp = httpx.post(url + "/v1/chat/completions", json={
            "model": "vision", "messages": [{"role": "user", "content": "Please file it."}]})
    assert resp.status_code == 200 and resp.headers["x-modelmix-deployment"] == "cloud-v"


@pytest.mark.parametrize("part", [
    {"type": "input_audio", "input_audio": {"data": WAV, "format": "wav"}},
    {"type": "file", "file": {"file_data": "data:application/pdf;base64,"
                              + base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode(),
                              "filename": "form.pdf"}},
], ids=["audio", "pdf"])
def test_unread_media_with_only_cloud_deployments_is_refused(
        upstreams: dict[str, FaultyUpstream], part: dict[str, Any]) -> None:
    app, sink = _serve(upstreams, "healthcare", names=("cloud-v",))
    with serve_app(app) as url:
        resp = httpx.post(url + "/v1/chat/completions", json={
            "model": "vision",
            "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}, part]}]})
    assert resp.status_code == 403, resp.text
    error = resp.json()["error"]
    assert error["code"] == "policy_denied" and "media-unread" in error["message"]
    assert upstreams["cloud-v"].count == 0
    assert sink.wait_for(1)[0].status_code == 403


def test_eu_residency_keeps_unread_media_in_the_eu(upstreams: dict[str, FaultyUpstream]
                                                   ) -> None:
    app, _ = _serve(upstreams, "eu-residency")
    with serve_app(app) as url:
        resp = httpx.post(url + "/v1/chat/completions",
                          json={"model": "vision", "messages": _form()})
    # neither deployment is in an EU region: the image goes nowhere
    assert resp.status_code == 403 and "media-unread" in resp.json()["error"]["message"]
    assert upstreams["cloud-v"].count == 0 and upstreams["local-v"].count == 0


def test_deployment_without_its_api_key_is_404_not_a_retried_503(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MM_TEST_UNSET_KEY", raising=False)
    cfg = config_from_dict({"deployments": [
        {"name": "gpt", "provider": "openai", "model": "g", "api_key_env": "MM_TEST_UNSET_KEY"}]})
    with serve_app(create_app(service=ChatService(cfg))) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x")  # default: 2 retries
        with pytest.raises(openai.NotFoundError) as info:
            client.chat.completions.create(model="gpt",
                                           messages=[{"role": "user", "content": "hi"}])
        assert "MM_TEST_UNSET_KEY is not set" in str(info.value)
        resp = httpx.post(url + "/v1/chat/completions", json={
            "model": "gpt", "messages": [{"role": "user", "content": "hi"}]})
    assert resp.status_code == 404 and "retry-after" not in resp.headers
    assert resp.json()["error"]["code"] == "model_not_available"


@pytest.mark.parametrize("message", [
    {"role": "user", "content": [{"type": "text", "text": "hi", "image_url": {"url": PNG}}]},
    {"role": "user", "content": [{"type": "text", "text": "hi", "file": {"file_data": "x"}}]},
    {"role": "user", "content": [{"type": "image_url", "image_url": {"url": PNG},
                                  "text": "SSN 536-22-8761"}]},
    {"role": "assistant", "content": [{"type": "refusal", "refusal": "no",
                                       "input_audio": {"data": WAV, "format": "wav"}}]},
    {"role": "user", "content": "hi", "file": {"file_data": "SSN 536-22-8761"}},
], ids=["text+image", "text+file", "image+text", "refusal+audio", "message-file"])
def test_payloads_hidden_under_another_parts_key_are_refused(
        upstreams: dict[str, FaultyUpstream], message: dict[str, Any]) -> None:
    """Found by attack: the guard reads a part by its type, so an image or text put under
    another type's key went to the cloud unread. Such parts are refused (400)."""
    app, _ = _serve(upstreams, "healthcare")
    with serve_app(app) as url:
        resp = httpx.post(url + "/v1/chat/completions",
                          json={"model": "vision", "messages": [message]})
    assert resp.status_code == 400, resp.text
    assert resp.json()["error"]["code"] == "invalid_value"
    assert upstreams["cloud-v"].count == 0 and upstreams["local-v"].count == 0


async def test_budget_covers_the_pseudonymised_request() -> None:
    """Found by attack: placeholders (<EMAIL_ADDRESS_12>) are longer than the short values
    they replace, so the request sent was 2.4x the one the budget reserved for."""
    from modelmix.engine import CallContext
    from modelmix.protocol import ChatRequest
    from modelmix.testing import FakeProvider

    seen: list[ChatRequest] = []

    class Recorder:  # the Admission protocol: records what the engine asks it to cover
        async def admit(self, decision: Any, request: ChatRequest) -> object:
            seen.append(request)
            return object()

        def settle(self, reservation: object, cost_usd: float, tokens: int, *,
                   unknown: bool = False) -> None:
            return None

    cfg = config_from_dict({"deployments": [{"name": "c", "provider": "openai-compatible",
                                      "base_url": "http://127.0.0.1:9/v1", "model": "m",
                                      "hosting": "cloud", "tier": "proprietary"}]})
    service = ChatService(cfg, providers={"c": FakeProvider(cfg.deployment("c"))},
                          guard=Guard(load_policy("finance"), load_detector()))
    emails = " ".join(f"a{i}@b.io" for i in range(200))
    body = {"model": "c", "messages": [{"role": "user", "content":
                                        f"card 4111 1111 1111 1111, mail {emails}"}]}
    request = ChatRequest.model_validate(body)
    await service.complete(request, CallContext(admission=Recorder()))
    assert seen[0].prompt_token_bound() > request.prompt_token_bound()
