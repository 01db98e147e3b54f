"""The data guard refuses a request with more texts than it scans (MAX_TEXTS): a 400
OpenAI error naming the field, before any detection and before any upstream is called;
at the limit the request goes through."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from _guard_fakes import EchoProvider, RegexDetector
from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import Guard, load_policy
from modelmix.guard._texts import MAX_TEXTS
from modelmix.server import create_app
from modelmix.testing import ListSink


class _Counting(RegexDetector):
    def __init__(self) -> None:
        super().__init__()
        self.texts = 0

    def detect_many(self, texts: Any) -> Any:
        self.texts += len(texts)
        return super().detect_many(texts)


def _gateway() -> tuple[Any, _Counting, dict[str, EchoProvider]]:
    config = config_from_dict({
        "deployments": [{"name": "cloud", "provider": "openai", "model": "m-cloud",
                         "context_window": 1_000_000}],
        "router": "ordered"})
    fakes = {d.name: EchoProvider(d) for d in config.deployments}
    detector = _Counting()
    guard = Guard(load_policy("healthcare"), detector, in_thread=False)
    service = ChatService(config, providers=fakes, usage=ListSink(), guard=guard)
    return create_app(service=service), detector, fakes


def _parts(n: int) -> list[dict[str, str]]:
    return [{"type": "text", "text": f"hi {i}"} for i in range(n)]


def test_too_many_content_parts_is_a_400_naming_the_content() -> None:
    app, detector, fakes = _gateway()
    with serve_app(app) as url:
        client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as info:
            client.chat.completions.create(
                model="cloud", messages=[{"role": "user", "content": _parts(MAX_TEXTS + 1)}])  # type: ignore[misc, list-item]
    err = info.value.body
    assert isinstance(err, dict)
    assert err["param"] == "messages.0.content"
    assert err["code"] == "array_above_max_length"
    assert f"{MAX_TEXTS:,}" in err["message"]
    assert detector.texts == 0 and not fakes["cloud"].calls


def test_too_many_messages_and_metadata_name_their_field() -> None:
    app, detector, fakes = _gateway()
    many = [{"role": "user", "content": f"hi {i}"} for i in range(MAX_TEXTS + 1)]
    keys = {f"k{i}": "v" for i in range(MAX_TEXTS)}
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        messages = http.post("/v1/chat/completions", json={"model": "cloud", "messages": many})
        metadata = http.post("/v1/chat/completions", json={
            "model": "cloud", "messages": [{"role": "user", "content": "hi"}],
            "extra_field": keys})
    assert messages.status_code == 400, messages.text
    assert messages.json()["error"]["param"] == "messages"
    assert metadata.status_code == 400, metadata.text
    assert metadata.json()["error"]["param"] == "extra_field"
    assert detector.texts == 0 and not fakes["cloud"].calls


def test_at_the_limit_the_request_is_screened_and_sent() -> None:
    app, detector, fakes = _gateway()
    parts = _parts(MAX_TEXTS)
    with serve_app(app) as url, httpx.Client(base_url=url, timeout=60) as http:
        ok = http.post("/v1/chat/completions", json={
            "model": "cloud", "messages": [{"role": "user", "content": parts}]})
    assert ok.status_code == 200, ok.text
    assert detector.texts == MAX_TEXTS and len(fakes["cloud"].calls) == 1
