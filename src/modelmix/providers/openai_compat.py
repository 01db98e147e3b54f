"""Adapter for OpenAI and every server that speaks its Chat Completions protocol
(vLLM, NVIDIA NIM, Ollama, llama.cpp server, OpenRouter, Together...).

The gateway already speaks this protocol, so the adapter forwards the request body and
reads the response with aiohttp and orjson instead of the openai SDK: the SDK's
per-response model construction measurably cut gateway throughput (see
docs/decisions/0002-openai-compatible-transport.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from modelmix.catalog import Deployment
from modelmix.errors import ProviderError, ProviderTimeout, UpstreamUnavailable
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest, Usage
from modelmix.providers._body import upstream_body
from modelmix.providers._embed_wire import read_embeddings
from modelmix.providers.base import (
    EmbeddingResult,
    Provider,
    error_from_status,
    parse_retry_after,
)

__all__ = ["OpenAICompatProvider"]


class OpenAICompatProvider(Provider):
    """Calls ``{base_url}/chat/completions`` with the deployment's model id.

    The API key, when the deployment names ``api_key_env``, is read at each call so a
    rotated key takes effect without a restart.
    """

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        base = (deployment.base_url or "").rstrip("/")
        self._url = f"{base}/chat/completions"
        self._embeddings_url = f"{base}/embeddings"
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit=0, ttl_dns_cache=300)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                json_serialize=lambda o: orjson.dumps(o).decode(),
            )
        return self._session

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json", **self.deployment.headers}
        key = self.deployment.api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        return headers

    def _body(self, body: dict[str, Any]) -> tuple[Any, dict[str, str]]:
        """The body to post (bytes, or large media payloads streamed: providers/_body.py)
        and its headers."""
        built = upstream_body(body)
        headers = self._headers()
        if isinstance(built, bytes):
            return built, headers
        return (built.chunks(self.deployment.name),
                {**headers, "Content-Length": str(built.length)})

    async def _raise_for(self, resp: aiohttp.ClientResponse) -> None:
        body = await resp.read()
        message = _error_message(body) or resp.reason or ""
        raise error_from_status(
            resp.status,
            message,
            deployment=self.deployment.name,
            retry_after=parse_retry_after(resp.headers.get("Retry-After")),
        )

    async def complete(self, request: ChatRequest) -> ChatResponse:
        body = request.to_upstream(self.deployment.model)
        body["stream"] = False
        body.pop("stream_options", None)
        data, headers = self._body(body)
        with _translate(self.deployment.name):
            async with self._client().post(self._url, data=data, headers=headers) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                raw = await resp.read()
        try:
            return ChatResponse.model_validate(orjson.loads(raw))
        except ValueError as exc:
            raise UpstreamUnavailable(
                f"{self.deployment.name}: upstream sent an invalid completion: {exc}"[:500],
                deployment=self.deployment.name,
            ) from exc

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        body = request.to_upstream(self.deployment.model)
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
        data, headers = self._body(body)
        with _translate(self.deployment.name):
            async with self._client().post(self._url, data=data, headers=headers) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                done = False
                tally = _StreamTally(request.needs().prompt_tokens_estimate)
                async for data in _sse_data(resp.content):
                    if data == b"[DONE]":
                        done = True
                        break
                    yield tally.see(_parse_chunk(data, self.deployment.name))
                if not done:
                    raise UpstreamUnavailable(
                        f"{self.deployment.name}: stream ended before [DONE]",
                        deployment=self.deployment.name,
                    )
        missing = tally.usage_chunk()
        if missing is not None:
            yield missing

    async def embed(self, texts: list[str], request: EmbeddingRequest) -> EmbeddingResult:
        """``POST {base_url}/embeddings`` for ``texts``, asking for floats (the gateway
        encodes base64 itself) with the request's ``dimensions``, ``user`` and
        ``input_type``. Raises ProviderError subclasses; UpstreamUnavailable for an
        answer that is not one vector per input."""
        body = orjson.dumps(request.to_upstream(self.deployment.model, texts))
        with _translate(self.deployment.name):
            async with self._client().post(self._embeddings_url, data=body,
                                           headers=self._headers()) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                raw = await resp.read()
        return read_embeddings(raw, texts, self.deployment.name)

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()


@dataclass(slots=True)
class _StreamTally:
    """What a stream carried, to estimate usage when the upstream sends none (the
    llama.cpp Python server ignores ``stream_options.include_usage``): one completion
    token per content chunk, prompt tokens from the ~4 characters per token rule."""

    prompt_estimate: int
    last: ChatChunk | None = None
    content_chunks: int = 0
    usage_seen: bool = False

    def see(self, chunk: ChatChunk) -> ChatChunk:
        self.last = chunk
        self.usage_seen = self.usage_seen or chunk.usage is not None
        if any(c.delta.content or c.delta.tool_calls for c in chunk.choices):
            self.content_chunks += 1
        return chunk

    def usage_chunk(self) -> ChatChunk | None:
        """A final usage chunk (empty ``choices``), or None when the upstream sent one."""
        if self.usage_seen or self.last is None:
            return None
        usage = Usage(prompt_tokens=self.prompt_estimate, completion_tokens=self.content_chunks,
                      total_tokens=self.prompt_estimate + self.content_chunks)
        return ChatChunk(id=self.last.id, created=self.last.created, model=self.last.model,
                         choices=[], usage=usage)


async def _sse_data(content: aiohttp.StreamReader) -> AsyncIterator[bytes]:
    """Yield the ``data:`` payloads of a server-sent event stream (WHATWG SSE spec)."""
    buf: list[bytes] = []
    async for raw_line in content:
        line = raw_line.rstrip(b"\r\n")
        if not line:
            if buf:
                yield b"\n".join(buf)
                buf = []
            continue
        if line.startswith(b"data:"):
            buf.append(line[5:].lstrip(b" "))
        elif line.startswith(b"{") and not buf:  # some servers omit the blank line
            buf.append(line)
    if buf:
        yield b"\n".join(buf)


def _parse_chunk(data: bytes, deployment: str) -> ChatChunk:
    try:
        payload = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise UpstreamUnavailable(
            f"{deployment}: invalid stream event", deployment=deployment
        ) from exc
    if isinstance(payload, dict) and "error" in payload:
        err = payload["error"]
        msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
        raise UpstreamUnavailable(f"{deployment}: error mid-stream: {msg}", deployment=deployment)
    try:
        return ChatChunk.model_validate(payload)
    except ValueError as exc:
        raise UpstreamUnavailable(
            f"{deployment}: malformed stream chunk", deployment=deployment
        ) from exc


def _error_message(body: bytes) -> str:
    try:
        payload: Any = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body[:500].decode("utf-8", "replace")
    if isinstance(payload, dict):
        err = payload.get("error", payload)
        if isinstance(err, dict):
            return str(err.get("message") or err)
        return str(err)
    return str(payload)[:500]


class _translate:
    """Translate aiohttp / OS failures into the modelmix taxonomy (one place)."""

    def __init__(self, deployment: str):
        self.deployment = deployment

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: object) -> None:
        if exc is None or isinstance(exc, ProviderError):
            return None
        if isinstance(exc, TimeoutError | aiohttp.ServerTimeoutError):
            raise ProviderTimeout(f"{self.deployment}: upstream timed out",
                                  deployment=self.deployment) from exc
        if isinstance(exc, aiohttp.ClientError | ConnectionError | OSError):
            raise UpstreamUnavailable(
                f"{self.deployment}: connection failed: {type(exc).__name__}: {exc}"[:500],
                deployment=self.deployment,
            ) from exc
        return None
