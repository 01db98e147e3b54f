"""Stripped-down ASGI apps that split the gateway's cost into layers.

Each factory builds an app that does a part of what modelmix does, so the benchmark can
measure the server alone, the server plus Starlette, and the server plus an upstream call
with aiohttp or httpx. Run one through the harness, e.g.::

    .venv/bin/python benchmarks/overhead/run.py --targets modelmix \\
        --variant uvicorn-httptools-uvloop --app layers:starlette_aiohttp \\
        --out benchmarks/.work/layer-starlette-aiohttp.json

The upstream URL comes from ``BENCH_UPSTREAM`` (set by the harness).
"""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["modelmix_tuned", "raw_aiohttp", "raw_fixed", "starlette_aiohttp",
           "starlette_fixed", "starlette_httpx"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGI = Callable[[Scope, Receive, Send], Awaitable[None]]

_BODY = json.dumps({
    "id": "chatcmpl-layers", "object": "chat.completion", "created": 1767225600,
    "model": "gpt-4o-mini",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "Hello!"},
                 "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 24, "completion_tokens": 9, "total_tokens": 33},
}).encode()
_HEADERS = [(b"content-type", b"application/json")]


def _url() -> str:
    return os.environ["BENCH_UPSTREAM"].rstrip("/") + "/chat/completions"


async def _read(receive: Receive) -> bytes:
    parts = []
    while True:
        msg = await receive()
        parts.append(msg.get("body", b""))
        if not msg.get("more_body"):
            return b"".join(parts)


async def _answer(send: Send, body: bytes) -> None:
    await send({"type": "http.response.start", "status": 200,
                "headers": [*_HEADERS, (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send,
                    close: Callable[[], Awaitable[None]] | None = None) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif msg["type"] == "lifespan.shutdown":
            if close is not None:
                await close()
            await send({"type": "lifespan.shutdown.complete"})
            return


def raw_fixed() -> ASGI:
    """The server alone: read the body, answer fixed bytes."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        await _read(receive)
        await _answer(send, _BODY)

    return app


def raw_aiohttp() -> ASGI:
    """The server plus one aiohttp upstream call, bytes in, bytes out."""
    import aiohttp

    state: dict[str, aiohttp.ClientSession] = {}

    async def close() -> None:
        if "s" in state:
            await state["s"].close()

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send, close)
            return
        body = await _read(receive)
        if "s" not in state:
            state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with state["s"].post(_url(), data=body, headers=dict(
                [("Content-Type", "application/json")])) as resp:
            answer = await resp.read()
        await _answer(send, answer)

    return app


def _starlette(handler: Callable[[Request], Awaitable[Response]],
               close: Callable[[], Awaitable[None]] | None = None) -> Starlette:
    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        if close is not None:
            await close()

    async def health(request: Request) -> Response:
        return Response(b'{"status":"ok"}', media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", handler, methods=["POST"]),
                             Route("/health", health)], lifespan=lifespan)


def starlette_fixed() -> Starlette:
    """Server plus Starlette routing: read the body, answer fixed bytes."""

    async def handler(request: Request) -> Response:
        await request.body()
        return Response(_BODY, media_type="application/json")

    return _starlette(handler)


def starlette_aiohttp() -> Starlette:
    """Server, Starlette and one aiohttp upstream call (modelmix's client)."""
    import aiohttp

    state: dict[str, aiohttp.ClientSession] = {}

    async def handler(request: Request) -> Response:
        body = await request.body()
        if "s" not in state:
            state["s"] = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
        async with state["s"].post(_url(), data=body,
                                   headers={"Content-Type": "application/json"}) as resp:
            answer = await resp.read()
        return Response(answer, media_type="application/json")

    async def close() -> None:
        if "s" in state:
            await state["s"].close()

    return _starlette(handler, close)


def starlette_httpx() -> Starlette:
    """Server, Starlette and one httpx upstream call (the alternative client)."""
    import httpx

    client = httpx.AsyncClient(limits=httpx.Limits(max_connections=None,
                                                   max_keepalive_connections=256),
                               timeout=None)

    async def handler(request: Request) -> Response:
        body = await request.body()
        resp = await client.post(_url(), content=body,
                                 headers={"Content-Type": "application/json"})
        return Response(resp.content, media_type="application/json")

    return _starlette(handler, client.aclose)


def modelmix_tuned() -> ASGI:
    """modelmix's app with interpreter tuning from ``BENCH_TUNE`` (comma-separated):
    ``switch=<s>`` (``sys.setswitchinterval``), ``freeze`` (``gc.freeze()`` after the app
    is built), ``gc0=<n>`` (generation-0 threshold), ``fastdict`` (usage records to dicts
    without ``dataclasses.asdict``), ``rawinsert`` (usage rows inserted as tuples with
    ``exec_driver_sql``), ``fastid`` (request ids without ``os.urandom``), ``oldwatch`` (the
    two-task disconnect watch). The last four patch modelmix to measure what a change
    there would give; they are experiments, not settings."""
    import gc
    import sys

    from modelmix.server.app import create_app

    opts = dict(o.partition("=")[::2] for o in os.environ.get("BENCH_TUNE", "").split(",")
                if o)
    _patch_store(opts)
    if "switch" in opts:
        sys.setswitchinterval(float(opts["switch"]))
    if "gc0" in opts:
        gc.set_threshold(int(opts["gc0"]), *gc.get_threshold()[1:])
    app = create_app()
    if "freeze" in opts:
        gc.collect()
        gc.freeze()
    return app


def _patch_store(opts: dict[str, str]) -> None:
    import dataclasses
    import operator

    from modelmix.store import UsageRecord, _sql

    names = tuple(f.name for f in dataclasses.fields(UsageRecord))
    if "fastdict" in opts:
        def to_dict(self: UsageRecord) -> dict[str, Any]:
            return {name: getattr(self, name) for name in names}

        UsageRecord.to_dict = to_dict  # type: ignore[method-assign]
    if "fastid" in opts:  # request ids from random.getrandbits instead of os.urandom
        import random
        import types

        from modelmix import _service

        def uuid4() -> types.SimpleNamespace:
            return types.SimpleNamespace(hex=f"{random.getrandbits(128):032x}")

        setattr(_service, "uuid", types.SimpleNamespace(uuid4=uuid4))  # noqa: B010
    if "oldwatch" in opts:  # the disconnect watch as it was: two tasks and asyncio.wait
        from modelmix.server import _gateway

        _gateway._unless_disconnected = _two_task_watch
    if "rawinsert" in opts:
        cols = _sql._RECORD_FIELDS
        row = operator.attrgetter(*cols)
        sql = (f"INSERT INTO usage ({', '.join(cols)}) "
               f"VALUES ({', '.join('?' * len(cols))})")

        def insert_many(self: _sql.UsageStore, records: Any) -> int:
            if not records:
                return 0
            with self.engine.begin() as conn:
                conn.exec_driver_sql(sql, [row(r) for r in records])
            return len(records)

        _sql.UsageStore.insert_many = insert_many  # type: ignore[method-assign]


async def _two_task_watch(request: Any, work: Awaitable[Any]) -> Any:
    """modelmix's disconnect watch before the benchmark: work and watch as two tasks."""
    import asyncio

    from modelmix.errors import ClientDisconnected
    from modelmix.server._gateway import _wait_disconnect

    task = asyncio.ensure_future(work)
    watch = asyncio.ensure_future(_wait_disconnect(request))
    try:
        await asyncio.wait((task, watch), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watch.cancel()
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    if task.cancelled():
        raise ClientDisconnected("client disconnected")
    return task.result()
