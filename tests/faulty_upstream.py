"""A small, real, misbehaving OpenAI-compatible upstream for reliability tests.

:class:`FaultyUpstream` is an HTTP/1.1 server on loopback (raw ``asyncio`` streams, in a
background thread with its own event loop) that speaks ``POST /v1/chat/completions``,
plain JSON and SSE streams (role chunk, one chunk per word, finish chunk, a usage chunk
when ``stream_options.include_usage`` is set, then ``data: [DONE]``). Each request
takes the next :class:`Fault` from a script queue (``default`` once the queue is empty):

- ``Fault.ok()``: answer normally;
- ``Fault.error(500)`` / ``Fault.error(429, retry_after="1")``: an OpenAI error body;
- ``Fault.hang(seconds)``: wait, then answer (watching for the client to hang up);
- ``Fault.reset()``: read the request, answer nothing and reset the TCP connection
  (``SO_LINGER`` 0, so the kernel sends RST);
- ``Fault.cut(after)``: send ``after`` stream chunks (or half the JSON body), pause, and
  close the socket without ``[DONE]`` or the chunked-encoding terminator;
- ``Fault.stall(after, seconds)``: send ``after`` stream chunks, then go quiet;
- ``Fault.garbage()``: answer 200 with a body that is not a completion;
- ``Fault.error_event(after)``: send ``after`` stream chunks, then an SSE
  ``data: {"error": ...}`` event and ``[DONE]``, as OpenAI does when it fails mid-stream.

Every request is logged as a :class:`Received` (arrival time, body, fault, whether the
client went away before the answer was complete). Example::

    with FaultyUpstream("a") as up:
        up.script(Fault.error(500), Fault.ok())
        ...  # point an OpenAI-compatible client at up.url
        assert up.count == 2
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

__all__ = ["Fault", "FaultyUpstream", "Received"]

FaultKind = Literal["ok", "error", "hang", "reset", "cut", "stall", "garbage", "error_event"]

_REASONS = {200: "OK", 400: "Bad Request", 404: "Not Found", 429: "Too Many Requests",
            500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable"}


@dataclass(frozen=True, slots=True)
class Fault:
    """What the upstream does with one request. ``seconds`` are wall-clock seconds."""

    kind: FaultKind = "ok"
    status: int = 200
    retry_after: str | None = None
    seconds: float = 0.0
    after: int = 0

    @classmethod
    def ok(cls) -> Fault:
        return cls()

    @classmethod
    def error(cls, status: int, *, retry_after: str | None = None) -> Fault:
        return cls("error", status=status, retry_after=retry_after)

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        return cls("hang", seconds=seconds)

    @classmethod
    def reset(cls) -> Fault:
        return cls("reset")

    @classmethod
    def cut(cls, after: int = 2, pause: float = 0.05) -> Fault:
        """``pause`` (s) before closing lets the client read what was sent: a client
        that sees the close first may drop the bytes it had not read yet."""
        return cls("cut", after=after, seconds=pause)

    @classmethod
    def stall(cls, after: int = 1, seconds: float = 5.0) -> Fault:
        return cls("stall", after=after, seconds=seconds)

    @classmethod
    def garbage(cls) -> Fault:
        return cls("garbage")

    @classmethod
    def error_event(cls, after: int = 2) -> Fault:
        return cls("error_event", after=after)


@dataclass(slots=True)
class Received:
    """One chat request as the upstream saw it (``at``: ``time.monotonic()`` seconds;
    ``raw``: every byte of the body as it arrived)."""

    at: float
    body: dict[str, Any]
    fault: Fault
    cancelled: bool = False
    raw: bytes = b""

    @property
    def stream(self) -> bool:
        return bool(self.body.get("stream"))


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


class _ClientGone(Exception):
    """The client closed the connection while the upstream was still working."""


@dataclass(slots=True)
class _Log:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queue: deque[Fault] = field(default_factory=deque)
    received: list[Received] = field(default_factory=list)


class FaultyUpstream:
    """An OpenAI-compatible server on 127.0.0.1 whose faults are scripted per request.

    Args:
        name: used in replies (``"hello from <name>"``) and the served model id.
        prompt_tokens: the prompt token count it reports in ``usage``, or a function of
            the request body giving it (e.g. the UTF-8 bytes of the messages, as a
            byte-level tokenizer's worst case would bill).
    """

    def __init__(self, name: str = "upstream", *,
                 prompt_tokens: int | Callable[[dict[str, Any]], int] = 7):
        self.name = name
        self.reply = f"hello from {name}"
        self.prompt_tokens = prompt_tokens
        self.default = Fault.ok()
        self._log = _Log()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        self._thread: threading.Thread | None = None
        self.port = 0

    # -- control (any thread) ---------------------------------------------------------

    @property
    def url(self) -> str:
        """The OpenAI base URL (``http://127.0.0.1:PORT/v1``)."""
        return f"http://127.0.0.1:{self.port}/v1"

    def script(self, *faults: Fault) -> None:
        """Queue faults for the next requests, in order."""
        with self._log.lock:
            self._log.queue.extend(faults)

    def clear(self) -> None:
        """Forget the script, the log and the default fault."""
        with self._log.lock:
            self._log.queue.clear()
            self._log.received.clear()
        self.default = Fault.ok()

    @property
    def received(self) -> list[Received]:
        with self._log.lock:
            return list(self._log.received)

    @property
    def count(self) -> int:
        """Chat requests received so far."""
        return len(self.received)

    @property
    def cancelled(self) -> int:
        """Requests whose client hung up before the answer was complete."""
        return sum(r.cancelled for r in self.received)

    def wait_until(self, check: Callable[[FaultyUpstream], bool], timeout: float = 5.0) -> bool:
        """Poll ``check(self)`` until it holds or ``timeout`` seconds pass."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if check(self):
                return True
            time.sleep(0.01)
        return check(self)

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> FaultyUpstream:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), daemon=True,
                                        name=f"faulty-upstream-{self.name}")
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("faulty upstream did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is not None and thread is not None:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=5)

    def __enter__(self) -> FaultyUpstream:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, ready: threading.Event) -> None:
        loop = self._loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0))
        self.port = int(self._server.sockets[0].getsockname()[1])
        ready.set()
        try:
            loop.run_forever()
        finally:
            self._server.close()
            for task in asyncio.all_tasks(loop):
                task.cancel()
            loop.run_until_complete(asyncio.sleep(0))
            loop.close()

    # -- HTTP -----------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        keep = True
        try:
            while keep:
                request = await _read_request(reader)
                if request is None:
                    break
                keep = await self._dispatch(request, reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, _ClientGone):
            keep = False
        except asyncio.CancelledError:  # the server is stopping
            keep = False
        finally:
            if not writer.transport.is_closing():
                writer.close()

    async def _dispatch(self, request: _Request, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        if request.method == "GET" and request.path == "/v1/models":
            body = {"object": "list", "data": [{"id": self.name, "object": "model"}]}
            await _send_json(writer, 200, body)
            return True
        if request.method != "POST" or request.path != "/v1/chat/completions":
            await _send_json(writer, 404, _error_body("not found", "not_found"))
            return True
        return await self._chat(request, reader, writer)

    def _take(self, body: dict[str, Any], raw: bytes = b"") -> Received:
        with self._log.lock:
            fault = self._log.queue.popleft() if self._log.queue else self.default
            rec = Received(at=time.monotonic(), body=body, fault=fault, raw=raw)
            self._log.received.append(rec)
        return rec

    async def _chat(self, request: _Request, reader: asyncio.StreamReader,
                    writer: asyncio.StreamWriter) -> bool:
        rec = self._take(json.loads(request.body or b"{}"), request.body)
        fault = rec.fault
        try:
            if fault.kind == "error":
                await _send_error(writer, fault)
                return True
            if fault.kind == "reset":
                _reset(writer)
                return False
            if fault.kind == "hang":
                await _wait_or_gone(reader, fault.seconds)
            if rec.stream:
                return await self._stream(rec, reader, writer)
            return await self._complete(rec, writer)
        except (_ClientGone, ConnectionError):
            rec.cancelled = True
            raise _ClientGone from None

    async def _complete(self, rec: Received, writer: asyncio.StreamWriter) -> bool:
        data = json.dumps(self._completion(rec.body)).encode()
        if rec.fault.kind == "garbage":
            data = b"<html>502 upstream proxy says hello</html>"
        if rec.fault.kind == "cut":
            head = _head(200, "application/json", {"Content-Length": str(len(data))})
            writer.write(head + data[: len(data) // 2])
            await writer.drain()
            writer.close()
            return False
        await _send(writer, 200, "application/json", data)
        return True

    async def _stream(self, rec: Received, reader: asyncio.StreamReader,
                      writer: asyncio.StreamWriter) -> bool:
        writer.write(_head(200, "text/event-stream", {"Transfer-Encoding": "chunked",
                                                      "Cache-Control": "no-cache"}))
        fault = rec.fault
        events = self._events(rec.body)
        if fault.kind == "error_event":
            failure = _error_body("the model crashed mid-stream", "server_error")
            events[fault.after:] = [json.dumps(failure).encode(), b"[DONE]"]
        for i, event in enumerate(events):
            if fault.kind in ("cut", "stall") and i == fault.after:
                await writer.drain()
                if fault.kind == "cut":
                    await asyncio.sleep(fault.seconds)
                    writer.close()
                    return False
                await _wait_or_gone(reader, fault.seconds)
            writer.write(_chunk(b"data: " + event + b"\n\n"))
            await writer.drain()
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return True

    # -- OpenAI bodies -------------------------------------------------------------------

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        done = len(self.reply.split())
        prompt = self.prompt_tokens(body) if callable(self.prompt_tokens) else self.prompt_tokens
        return {"prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        return {
            "id": "chatcmpl-faulty", "object": "chat.completion", "created": int(time.time()),
            "model": body.get("model", self.name),
            "choices": [{"index": 0, "finish_reason": "stop",
                         "message": {"role": "assistant", "content": self.reply}}],
            "usage": self._usage(body),
        }

    def _events(self, body: dict[str, Any]) -> list[bytes]:
        base = {"id": "chatcmpl-faulty", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", self.name)}

        def choice(delta: dict[str, Any], finish: str | None = None) -> bytes:
            item = {"index": 0, "delta": delta, "finish_reason": finish}
            return json.dumps({**base, "choices": [item]}).encode()

        words = self.reply.split(" ")
        events = [choice({"role": "assistant", "content": ""})]
        events += [choice({"content": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        events.append(choice({}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(json.dumps({**base, "choices": [], "usage": self._usage(body)}).encode())
        events.append(b"[DONE]")
        return events


# -- wire helpers ---------------------------------------------------------------------------


async def _read_request(reader: asyncio.StreamReader) -> _Request | None:
    """One HTTP/1.1 request with a Content-Length body; None at a clean EOF."""
    line = await reader.readline()
    if not line:
        return None
    method, path, _ = line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (raw := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = raw.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    size = int(headers.get("content-length", "0"))
    body = await reader.readexactly(size) if size else b""
    return _Request(method, path, headers, body)


async def _wait_or_gone(reader: asyncio.StreamReader, seconds: float) -> None:
    """Sleep ``seconds``; raise _ClientGone as soon as the client closes the connection."""
    try:
        data = await asyncio.wait_for(reader.read(1), timeout=seconds)
    except TimeoutError:
        return
    if not data:
        raise _ClientGone
    # A client never sends more while waiting for an answer (no pipelining here).
    raise ConnectionError("unexpected bytes from client while answering")


def _reset(writer: asyncio.StreamWriter) -> None:
    sock = writer.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()


def _head(status: int, content_type: str, extra: dict[str, str]) -> bytes:
    lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
             f"Content-Type: {content_type}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in extra.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _send(writer: asyncio.StreamWriter, status: int, content_type: str, data: bytes,
                extra: dict[str, str] | None = None) -> None:
    headers = {"Content-Length": str(len(data)), **(extra or {})}
    writer.write(_head(status, content_type, headers) + data)
    await writer.drain()


async def _send_json(writer: asyncio.StreamWriter, status: int, body: Any) -> None:
    await _send(writer, status, "application/json", json.dumps(body).encode())


async def _send_error(writer: asyncio.StreamWriter, fault: Fault) -> None:
    extra = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    body = _error_body(f"scripted failure: HTTP {fault.status}", f"http_{fault.status}")
    await _send(writer, fault.status, "application/json", json.dumps(body).encode(), extra)


def _error_body(message: str, code: str) -> dict[str, Any]:
    return {"error": {"message": message, "type": "server_error", "param": None, "code": code}}

