"""Reading and parsing a request body: a size limit and a deadline while it arrives, then
a JSON object no deeper than :data:`MAX_JSON_DEPTH` (shared by every endpoint)."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson
from starlette.requests import ClientDisconnect, Request

from modelmix.errors import ClientDisconnected, InvalidRequest, PayloadTooLarge, RequestTimeout
from modelmix.server._bodies import SMALL_BODY

__all__ = ["MAX_JSON_DEPTH", "content_length", "load_json_object", "read_body"]

#: Deepest nesting of JSON arrays and objects a request body may have. Real chat bodies
#: nest under 10 levels and deep tool schemas under 30; orjson (and so every upstream
#: adapter) cannot re-serialise beyond 254, so deeper bodies are refused at parse time.
MAX_JSON_DEPTH = 64

_BOM = b"\xef\xbb\xbf"


def load_json_object(body: bytes | bytearray) -> dict[str, Any]:
    """Parse a JSON object body (a UTF-8 byte-order mark is ignored, RFC 8259 §8.1).
    Raises InvalidRequest (400), also for nesting deeper than :data:`MAX_JSON_DEPTH`."""
    if body.startswith(_BOM):
        body = memoryview(body)[len(_BOM):]  # type: ignore[assignment]  # not copied
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        if "utf-8" in str(exc).lower():
            raise InvalidRequest("request body is not valid UTF-8") from exc
        if "depth limit" in str(exc).lower():  # orjson's own limit (1,024 levels)
            raise _too_deep() from None
        raise InvalidRequest(f"request body is not valid JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise InvalidRequest("request body must be a JSON object")
    if _nesting_exceeds(data, MAX_JSON_DEPTH):
        raise _too_deep()
    return data


def _too_deep() -> InvalidRequest:
    return InvalidRequest(
        f"request body nests arrays and objects more than {MAX_JSON_DEPTH} levels deep "
        "(this gateway's limit)", code="json_too_deep")


def _nesting_exceeds(data: dict[str, Any], limit: int) -> bool:
    """Whether ``data`` has arrays / objects nested deeper than ``limit`` (the top-level
    object is level 1). Iterative, so any depth orjson accepts (up to 1,024) is safe."""
    stack: list[tuple[Any, int]] = [(data, 1)]
    while stack:
        value, depth = stack.pop()
        children = value.values() if isinstance(value, dict) else value
        for child in children:
            if isinstance(child, (dict, list)):
                if depth >= limit:
                    return True
                stack.append((child, depth + 1))
    return False




async def read_body(request: Request, limit: int, timeout_s: float = 30.0) -> bytes | bytearray:
    """The request body, refusing more than ``limit`` bytes (PayloadTooLarge, 413) or
    taking longer than ``timeout_s`` seconds (RequestTimeout, 408).

    Raises ClientDisconnected when the client leaves while sending it."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_limited(request, limit)
    except TimeoutError:
        raise RequestTimeout(f"request body not received within {timeout_s:g}s") from None
    except ClientDisconnect:
        raise ClientDisconnected("client disconnected while sending the body") from None


def content_length(request: Request) -> int | None:
    """The declared body size, None when absent or not a number (read_body refuses it)."""
    declared = request.headers.get("content-length")
    try:
        return None if declared is None else max(0, int(declared))
    except ValueError:
        return None


async def _read_limited(request: Request, limit: int) -> bytes | bytearray:
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise InvalidRequest("invalid Content-Length header") from None
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        if size > SMALL_BODY:  # one buffer of the declared size: no chunk list, no join
            return await _read_into(request, bytearray(size))
    parts: list[bytes] = []
    total = 0
    async for part in request.stream():
        total += len(part)
        if total > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        parts.append(part)
    return b"".join(parts)


async def _read_into(request: Request, buffer: bytearray) -> bytearray:
    view, filled = memoryview(buffer), 0
    async for part in request.stream():
        end = filled + len(part)
        if end > len(buffer):  # the server enforces Content-Length; never trust it twice
            raise InvalidRequest("request body longer than its Content-Length")
        view[filled:end] = part
        filled = end
    view.release()
    if filled != len(buffer):
        raise ClientDisconnected("client disconnected while sending the body")
    return buffer
