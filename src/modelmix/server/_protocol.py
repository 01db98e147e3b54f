"""uvicorn's HTTP protocol, with OpenAI-format JSON for requests it cannot parse.

A request that is not valid HTTP/1.1 (a bad request line, a malformed header, an
invalid chunked body) never reaches the app: uvicorn's protocol answers it itself with
a plain-text ``400 Invalid HTTP request received.`` and logs a warning. OpenAI clients
expect ``{"error": {...}}`` from every status, so :func:`http_protocol` returns uvicorn's
protocol class (httptools when installed, as uvicorn's ``http="auto"`` picks, else h11)
with that one reply replaced: same status, same logging, same connection close, a JSON
body. ``modelmix serve`` runs with it; pass it to ``uvicorn.Config(http=...)`` elsewhere.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

from modelmix.errors import InvalidRequest

__all__ = ["http_protocol", "invalid_http_reply"]


def invalid_http_reply(message: str, default_headers: list[tuple[bytes, bytes]]) -> bytes:
    """The complete ``400`` response (status line, headers, JSON body) for ``message``;
    ``default_headers`` are the server's (``server``, ``date``), as uvicorn sends them."""
    body = json.dumps(InvalidRequest(message, code="invalid_http_request").to_openai()).encode()
    head = [b"HTTP/1.1 400 Bad Request"]
    head += [name + b": " + value for name, value in default_headers]
    head += [b"content-type: application/json", b"content-length: " + str(len(body)).encode(),
             b"connection: close"]
    return b"\r\n".join(head) + b"\r\n\r\n" + body


def http_protocol() -> type[asyncio.Protocol]:
    """uvicorn's HTTP/1.1 protocol class whose parse-error 400 has an OpenAI error body."""
    base: Any
    try:
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as base
    except ImportError:  # httptools is optional in uvicorn; h11 always ships
        from uvicorn.protocols.http.h11_impl import H11Protocol as base

    class OpenAIErrorHTTPProtocol(base):  # type: ignore[misc]
        def send_400_response(self, msg: str) -> None:
            self.transport.write(invalid_http_reply(msg, self.server_state.default_headers))
            self.transport.close()

    return OpenAIErrorHTTPProtocol
