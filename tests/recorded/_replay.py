"""A loopback HTTP server that replays recorded provider exchanges and captures requests.

Recorded exchanges live next to this file: ``<provider>/<name>.json`` holds
``{"status", "headers", "body"}`` for a JSON answer, ``<provider>/<name>.sse`` the raw
body of a ``text/event-stream`` answer (status 200). Bodies are shaped as the providers'
public API references show them. Each request the SDK sends is captured (method, path,
query, headers, body) so tests can assert the translation.
"""

from __future__ import annotations

import asyncio
import json
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

__all__ = ["RECORDED", "Captured", "Exchange", "ReplayServer"]

RECORDED = Path(__file__).parent


@dataclass
class Exchange:
    """One scripted answer. ``delay_s`` holds the answer back (seconds)."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    media_type: str = "application/json"
    delay_s: float = 0.0

    @classmethod
    def load(cls, name: str, *, delay_s: float = 0.0) -> Exchange:
        """Load ``tests/recorded/<name>`` (``.json`` or ``.sse``)."""
        path = RECORDED / name
        if path.suffix == ".sse":
            return cls(body=path.read_bytes(), media_type="text/event-stream", delay_s=delay_s)
        data = json.loads(path.read_text())
        return cls(status=data.get("status", 200), headers=data.get("headers", {}),
                   body=json.dumps(data["body"]).encode(), delay_s=delay_s)


@dataclass
class Captured:
    """A request the server received."""

    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body)


class ReplayServer:
    """Answers every request with the next scripted :class:`Exchange` (500 when none)."""

    def __init__(self) -> None:
        self.script: deque[Exchange] = deque()
        self.captured: list[Captured] = []

    def reset(self) -> None:
        self.script.clear()
        self.captured.clear()

    def add(self, *exchanges: Exchange | str) -> None:
        """Script answers, in order; a string names a recorded file."""
        for ex in exchanges:
            self.script.append(Exchange.load(ex) if isinstance(ex, str) else ex)

    @property
    def last(self) -> Captured:
        return self.captured[-1]

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/{path:path}", self._handle, methods=["GET", "POST"])])

    async def _handle(self, request: Request) -> Response:
        self.captured.append(Captured(request.method, request.url.path, request.url.query,
                                      dict(request.headers), await request.body()))
        if not self.script:
            return Response(b'{"error": "no exchange scripted"}', status_code=500,
                            media_type="application/json")
        ex = self.script.popleft()
        if ex.delay_s:
            await asyncio.sleep(ex.delay_s)
        if ex.media_type == "text/event-stream":
            return StreamingResponse(_events(ex.body), status_code=ex.status,
                                     headers=ex.headers, media_type=ex.media_type)
        return Response(ex.body, status_code=ex.status, headers=ex.headers,
                        media_type=ex.media_type)


async def _events(body: bytes) -> AsyncIterator[bytes]:
    """Send a recorded event stream one event per write, as a live upstream does."""
    sep = b"\r\n\r\n" if b"\r\n\r\n" in body else b"\n\n"
    for event in body.split(sep):
        if event.strip():
            yield event.strip(b"\r\n") + sep
            await asyncio.sleep(0)
