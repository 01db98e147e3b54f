"""The gateway over fake providers, on a real loopback server."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import openai
import pytest

from _pixels import TINY_PNG
from _servers import serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.testing import FakeProvider

CONFIG = {
    "deployments": [
        {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-open", "context_window": 2048},
        {"name": "prop-b", "provider": "openai-compatible", "base_url": "http://127.0.0.1:9/v1",
         "model": "m-prop", "tier": "proprietary", "hosting": "cloud",
         "input_modalities": ["text", "image"], "context_window": 100000,
         "supports_tools": True, "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
    ],
    "server": {"max_body_bytes": 4096},
    "router": "rules",  # gateway basics; the learned default: tests/test_router_gateway.py
}


@pytest.fixture()
def base_url() -> Iterator[str]:
    cfg = config_from_dict(CONFIG)
    fakes = {d.name: FakeProvider(d, reply=f"hello from {d.name}") for d in cfg.deployments}
    with serve_app(create_app(service=ChatService(cfg, providers=fakes))) as url:
        yield url


def test_auto_routes_open_by_default(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}])
    assert raw.headers["x-modelmix-deployment"] == "open-a"
    assert raw.parse().choices[0].message.content == "hello from open-a"


def test_auto_routes_images_to_proprietary(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(
        model="auto",
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is this?"},
            {"type": "image_url", "image_url": {"url": TINY_PNG}}]}])
    assert raw.headers["x-modelmix-deployment"] == "prop-b"
    assert "no image input" in raw.headers["x-modelmix-route-reason"]


def test_stream_matches_openai_sse(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x")
    chunks = list(client.chat.completions.create(
        model="open-a", messages=[{"role": "user", "content": "hi"}], stream=True,
        stream_options={"include_usage": True}))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "hello from open-a"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3
    raw = httpx.post(base_url + "/v1/chat/completions", json={
        "model": "open-a", "stream": True, "messages": [{"role": "user", "content": "x"}]})
    assert raw.text.endswith("data: [DONE]\n\n")
    assert '"usage"' not in raw.text  # not asked for


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b'{"model": "auto"}', 400, "messages"),
        (b'{"model": 5, "messages": [{"role": "user", "content": "x"}]}', 400, "model"),
        (b'{"model": "auto", "messages": [{"role": "robot", "content": "x"}]}', 400, "role"),
        (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "nope"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "\xff\xfe"}]}', 400,
         "UTF-8"),
        (b'{"model": "auto", "max_tokens": 1e30, "messages": [{"role": "user", "content": "x"}]}',
         400, "max_tokens"),
        (b'{"model": "auto", "max_tokens": -3, "messages": [{"role": "user", "content": "x"}]}',
         400, "max_tokens"),
        (b'{"model": "auto", "max_tokens": 500000, "messages": [{"role": "user", "content": "x"}]}',
         400, "context"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": "' + b"a" * 5000 + b'"}]}',
         413, "exceeds"),
        (b'{"model": "auto", "stream": "yes", "messages": [{"role": "user", "content": "x"}]}',
         400, "stream"),
        (b'{"model": "auto", "max_tokens": "5", "messages": [{"role": "user", "content": "x"}]}',
         400, "max_tokens"),
        (b'{"model": "auto", "response_format": {"type": "xml"}, '
         b'"messages": [{"role": "user", "content": "x"}]}', 400, "response_format"),
        (b'{"model": "auto", "tool_choice": {"foo": 1}, '
         b'"messages": [{"role": "user", "content": "x"}]}', 400, "tool_choice"),
        (b'{"model": "auto", "tools": [{"type": "function"}], '
         b'"messages": [{"role": "user", "content": "x"}]}', 400, "tools"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": null}]}', 400, "content"),
        (b'{"model": "auto", "messages": [{"role": "tool", "content": "r"}]}', 400,
         "tool_call_id"),
        (b'{"model": "auto", "messages": [{"role": "user", "content": 5}]}', 400,
         "messages.0.content"),
    ],
)
def test_bad_input_gets_openai_error(base_url: str, body: bytes, status: int, needle: str) -> None:
    resp = httpx.post(base_url + "/v1/chat/completions", content=body,
                      headers={"content-type": "application/json"})
    assert resp.status_code == status, resp.text
    err = resp.json()["error"]
    assert needle.lower() in err["message"].lower()
    assert set(err) == {"message", "type", "param", "code"}


def test_byte_order_mark_is_ignored_and_request_ids_are_sanitised(base_url: str) -> None:
    body = b"\xef\xbb\xbf" + b'{"model": "auto", "messages": [{"role": "user", "content": "x"}]}'
    resp = httpx.post(base_url + "/v1/chat/completions", content=body,
                      headers={"x-request-id": "abc-123"})
    assert resp.status_code == 200 and resp.headers["x-request-id"] == "abc-123"
    resp = httpx.post(base_url + "/v1/chat/completions", content=body,
                      headers={"x-request-id": "x" * 500})
    assert resp.status_code == 200 and len(resp.headers["x-request-id"]) == 32


def test_unknown_path_is_openai_404_without_param(base_url: str) -> None:
    resp = httpx.get(base_url + "/v2/nothing")
    assert resp.status_code == 404
    assert resp.json()["error"]["param"] is None


def test_slow_body_gets_408() -> None:
    import socket

    cfg = config_from_dict({**CONFIG, "server": {"body_timeout_s": 0.5}})
    fakes = {d.name: FakeProvider(d) for d in cfg.deployments}
    with serve_app(create_app(service=ChatService(cfg, providers=fakes))) as url:
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as sock:
            sock.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\n"
                         b"Content-Length: 100\r\nContent-Type: application/json\r\n\r\n{")
            reply = sock.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 408")
    assert "request_timeout" in reply


@pytest.mark.parametrize("raw", [
    b"GET /v1/models HTTP/1.1\r\nHost x\r\n\r\n",  # header without a colon
    b"NOT A REQUEST LINE\r\n\r\n",
    b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"zz\r\n",  # chunk size is not hex
])
def test_unparseable_http_gets_openai_json_400(base_url: str, raw: bytes) -> None:
    import socket

    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(raw)
        reply = b""
        while chunk := sock.recv(4096):  # the server closes the connection after it
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), reply
    assert b"content-type: application/json" in head.lower()
    error = json.loads(body)["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error" and error["code"] == "invalid_http_request"
    assert "invalid http request" in error["message"].lower()


def test_websocket_upgrade_is_answered_as_plain_http_json(base_url: str) -> None:
    resp = httpx.get(base_url + "/v1/models", headers={
        "connection": "upgrade", "upgrade": "websocket", "sec-websocket-version": "13",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ=="})
    assert resp.status_code == 200 and resp.json()["object"] == "list"


def test_models_lists_groups_and_availability(base_url: str) -> None:
    data = httpx.get(base_url + "/v1/models").json()["data"]
    ids = [m["id"] for m in data]
    assert ids[:2] == ["open-a", "prop-b"] and "auto" in ids
    assert data[0]["modelmix"]["available"] is True


def test_answers_carry_their_cost(base_url: str) -> None:
    client = openai.OpenAI(base_url=base_url + "/v1", api_key="x")
    raw = client.chat.completions.with_raw_response.create(
        model="prop-b", messages=[{"role": "user", "content": "hi"}])
    # FakeProvider: 10 prompt + 3 completion tokens ("hello from prop-b") at 2 / 8 USD per 1M
    assert float(raw.headers["x-modelmix-cost-usd"]) == pytest.approx((10 * 2 + 3 * 8) / 1e6)
