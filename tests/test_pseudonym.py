"""Pseudonymisation: consistent placeholders, restoration in answers and in streams split
at every chunk boundary, and isolation between concurrent requests."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from _guard_fakes import RegexDetector, sent_text
from modelmix.catalog import Deployment, config_from_dict
from modelmix.engine import ChatService
from modelmix.guard import ChunkRestorer, Entity, Guard, Pseudonymizer, StreamRestorer, load_policy
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatRequest,
    ChatResponse,
    ChunkChoice,
    Delta,
    ResponseMessage,
)
from modelmix.providers import Provider
from modelmix.testing import FakeProvider


def _mapped() -> Pseudonymizer:
    p = Pseudonymizer()
    p.placeholder("PERSON", "Ada Lovelace")
    p.placeholder("EMAIL_ADDRESS", "ada@example.org")
    for i in range(11):  # <US_SSN_1> .. <US_SSN_11>: one placeholder a prefix of another
        p.placeholder("US_SSN", f"000-00-{i:04d}")
    return p


# -- placeholders --------------------------------------------------------------------------


def test_same_value_same_placeholder() -> None:
    p = Pseudonymizer()
    text = "bob@x.org wrote to amy@y.org and bob@x.org"
    ents = [Entity("EMAIL_ADDRESS", 0, 9), Entity("EMAIL_ADDRESS", 19, 28),
            Entity("EMAIL_ADDRESS", 33, 42)]
    out = p.replace_spans(text, ents)
    assert out == "<EMAIL_ADDRESS_1> wrote to <EMAIL_ADDRESS_2> and <EMAIL_ADDRESS_1>"
    assert p.restore(out) == text
    assert "bob" not in repr(p)


def test_undetected_repeats_are_replaced_too() -> None:
    p = Pseudonymizer()
    p.learn("x 123-45-6789", [Entity("US_SSN", 2, 13)])
    assert p.replace_known("again 123-45-6789, and 9123-45-67890") == \
        "again <US_SSN_1>, and 9123-45-67890"


def test_type_filter_leaves_other_values_raw() -> None:
    p = Pseudonymizer()
    text = "card 4111 and mail a@b.org"
    ents = [Entity("CREDIT_CARD", 5, 9), Entity("EMAIL_ADDRESS", 19, 26)]
    p.learn(text, ents)
    assert p.replace_spans(text, ents, frozenset({"CREDIT_CARD"})) == \
        "card <CREDIT_CARD_1> and mail a@b.org"


def test_placeholders_already_in_the_text_are_skipped() -> None:
    p = Pseudonymizer(avoid="the template says <PERSON_1>")
    assert p.placeholder("PERSON", "Ada") == "<PERSON_2>"
    assert p.restore("<PERSON_1> and <PERSON_2>") == "<PERSON_1> and Ada"


def test_restore_leaves_unknown_placeholders() -> None:
    p = _mapped()
    assert p.restore("<PERSON_1> <PERSON_9> <nope> a < b") == "Ada Lovelace <PERSON_9> <nope> a < b"


def test_restore_response_content_and_tool_arguments() -> None:
    p = _mapped()
    resp = ChatResponse(id="x", created=0, model="m", choices=[ChatChoice(
        message=ResponseMessage(content="Hi <PERSON_1>", tool_calls=[
            {"id": "c", "type": "function",
             "function": {"name": "mail", "arguments": '{"to": "<EMAIL_ADDRESS_1>"}'}}]))])
    out = p.restore_response(resp)
    assert out.text == "Hi Ada Lovelace"
    assert out.choices[0].message.tool_calls is not None
    assert out.choices[0].message.tool_calls[0]["function"]["arguments"] == \
        '{"to": "ada@example.org"}'
    assert resp.text == "Hi <PERSON_1>"  # the original is untouched


# -- streaming -----------------------------------------------------------------------------

ANSWER = "Dear <PERSON_1>, your SSN <US_SSN_1> (not <US_SSN_11>) is on file; <x <EMAIL_ADDRESS_1>"


def _feed_all(p: Pseudonymizer, pieces: list[str]) -> str:
    r = StreamRestorer(p)
    return "".join(r.feed(piece) for piece in pieces) + r.flush()


@pytest.mark.parametrize("cut", range(1, len(ANSWER)))
def test_stream_split_at_every_boundary(cut: int) -> None:
    p = _mapped()
    assert _feed_all(p, [ANSWER[:cut], ANSWER[cut:]]) == p.restore(ANSWER)


def test_stream_character_by_character_and_all_pairs_of_cuts() -> None:
    p = _mapped()
    expected = p.restore(ANSWER)
    assert _feed_all(p, list(ANSWER)) == expected
    for a in range(1, len(ANSWER), 3):
        for b in range(a + 1, len(ANSWER)):
            assert _feed_all(p, [ANSWER[:a], ANSWER[a:b], ANSWER[b:]]) == expected


def test_stream_holds_back_only_possible_placeholders() -> None:
    r = StreamRestorer(_mapped())
    assert r.feed("a < b and <US_") == "a < b and "
    assert r.feed("SSN_1") == ""  # could still be <US_SSN_10>
    assert r.feed("> ok <zzz") == "000-00-0000 ok <zzz"


_PIECES = st.sampled_from(["<PERSON_1>", "<US_SSN_1>", "<US_SSN_10>", "<US_SSN_", "<", ">",
                           "<PERSON_7>", "_1>", "text ", "é", "<EMAIL_ADDRESS_1>", "1"])


@settings(max_examples=300, deadline=None)
@given(parts=st.lists(_PIECES, max_size=20), data=st.data())
def test_stream_restore_equals_whole_restore(parts: list[str], data: st.DataObject) -> None:
    p = _mapped()
    text = "".join(parts)
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(text) - 1)), max_size=8)))
    pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
    assert _feed_all(p, pieces) == p.restore(text)


def _chunk(content: str | None = None, finish: str | None = None,
           tool_args: str | None = None) -> ChatChunk:
    delta = Delta(content=content)
    if tool_args is not None:
        delta.tool_calls = [{"index": 0, "function": {"arguments": tool_args}}]
    return ChatChunk(id="c", created=0, model="m",
                     choices=[ChunkChoice(delta=delta, finish_reason=finish)])


def test_chunk_restorer_releases_held_text_at_finish() -> None:
    r = ChunkRestorer(_mapped())
    out = [r.feed(_chunk("Hi <PERS")), r.feed(_chunk("ON_1> <US_SSN_1")),
           r.feed(_chunk(None, "stop"))]
    # "<US_SSN_1" may still become <US_SSN_1> or <US_SSN_10>: held, then released as is
    assert [c.text for c in out] == ["Hi ", "Ada Lovelace ", "<US_SSN_1"]
    assert out[-1].choices[0].finish_reason == "stop"


def test_chunk_restorer_tool_arguments_split() -> None:
    r = ChunkRestorer(_mapped())
    out = [r.feed(_chunk(tool_args='{"to": "<EMAIL_')), r.feed(_chunk(tool_args='ADDRESS')),
           r.feed(_chunk(tool_args='_1>"}')), r.feed(_chunk(finish="tool_calls"))]
    args = "".join(call["function"]["arguments"] for c in out
                   for call in c.choices[0].delta.tool_calls or ())
    assert args == '{"to": "ada@example.org"}'


def test_chunk_restorer_leftover_without_finish() -> None:
    r = ChunkRestorer(_mapped())
    last = r.feed(_chunk("x <PERSON_"))
    tail = r.leftover(last)
    assert last.text == "x " and tail is not None and tail.text == "<PERSON_"


# -- through the service ---------------------------------------------------------------------


class SplitEcho(Provider):
    """Streams back the last message it received, ``size`` characters per chunk."""

    def __init__(self, deployment: Deployment, size: int = 1, delay_s: float = 0.0):
        super().__init__(deployment)
        self.size = size
        self.delay_s = delay_s
        self.received: list[ChatRequest] = []

    async def complete(self, request: ChatRequest) -> ChatResponse:
        self.received.append(request)
        await asyncio.sleep(self.delay_s * random.random())
        return ChatResponse(id="r", created=0, model="m", choices=[ChatChoice(
            message=ResponseMessage(content=request.messages[-1].text()))])

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        self.received.append(request)
        text = request.messages[-1].text()
        for i in range(0, len(text), self.size):
            await asyncio.sleep(self.delay_s * random.random())
            yield _chunk(text[i:i + self.size])
        yield _chunk(None, "stop")


def _service(provider_factory: Any) -> tuple[ChatService, Any]:
    config = config_from_dict({"deployments": [
        {"name": "cloud", "provider": "openai", "model": "gpt"}], "router": "ordered"})
    provider = provider_factory(config.deployment("cloud"))
    guard = Guard(load_policy("finance"), RegexDetector(), in_thread=False)
    return ChatService(config, providers={"cloud": provider}, guard=guard), provider


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 11, 64])
async def test_streamed_answer_restored_at_any_chunk_size(size: int) -> None:
    service, provider = _service(lambda d: SplitEcho(d, size))
    text = "cards 4111 1111 1111 1111 and 4222 2222 2222 2222, ssn 123-45-6789!"
    started = await service.stream(ChatRequest.model_validate(
        {"model": "cloud", "stream": True, "messages": [{"role": "user", "content": text}]}))
    got = "".join([c.text async for c in started.chunks])
    await started.aclose()
    assert got == text
    sent = sent_text(provider.received[0])
    assert "4111" not in sent and "123-45-6789" not in sent and "<CREDIT_CARD_2>" in sent


@pytest.mark.parametrize("stream", [False, True])
async def test_concurrent_requests_never_see_each_others_values(stream: bool) -> None:
    service, provider = _service(lambda d: SplitEcho(d, size=3, delay_s=0.01))
    ssns = [f"{100 + i:03d}-45-{1000 + i:04d}" for i in range(40)]

    async def one(ssn: str) -> str:
        body = {"model": "cloud", "stream": stream,
                "messages": [{"role": "user", "content": f"mine is {ssn}"}]}
        request = ChatRequest.model_validate(body)
        if not stream:
            return (await service.complete(request)).response.text
        started = await service.stream(request)
        try:
            return "".join([c.text async for c in started.chunks])
        finally:
            await started.aclose()

    answers = await asyncio.gather(*(one(s) for s in ssns))
    for ssn, answer in zip(ssns, answers, strict=True):
        assert answer == f"mine is {ssn}"
    for request in provider.received:
        assert sent_text(request).count("<US_SSN_1>") == 1
        assert not any(s in sent_text(request) for s in ssns)


async def test_fake_provider_echo_of_placeholder_from_elsewhere_is_not_restored() -> None:
    # A model answering with a placeholder the request never had gets no value for it.
    service, _ = _service(lambda d: FakeProvider(d, reply="<US_SSN_2> <US_SSN_1>"))
    done = await service.complete(ChatRequest.model_validate(
        {"model": "cloud", "messages": [{"role": "user", "content": "ssn 123-45-6789"}]}))
    assert done.response.text == "<US_SSN_2> 123-45-6789"
