"""Request bodies for OpenAI-compatible upstreams: large media payloads are streamed.

A chat request carrying a 9.5 MB image holds its base64 data URL (12.7 MB) as one string.
Serialising the body in one piece would hold two more copies while it is sent (the JSON
bytes, which orjson over-allocates about tenfold, and the HTTP client's join of headers
and body). Instead, each media payload over :data:`LARGE` characters is cut out of the
body, the rest is serialised, and the payload is sent between the pieces in
:data:`SLICE`-character slices, with an exact Content-Length: the bytes on the wire are
the same as ``orjson.dumps(body)`` (benchmarks/media/RESULTS.md measured peak RSS).
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson

from modelmix.errors import ProviderBadRequest

__all__ = ["LARGE", "SLICE", "StreamedBody", "upstream_body"]

#: Media payloads longer than this (characters) are streamed, not serialised.
LARGE = 256 * 1024
#: Characters of a streamed payload encoded and written at once.
SLICE = 1 << 20
#: Bytes JSON carries unescaped in a string: printable ASCII but '"' and '\'.
_JSON_SAFE = bytes(range(0x20, 0x7F)).replace(b'"', b"").replace(b"\\", b"")
#: Where media payloads sit in a content part: (part field, payload field).
_MEDIA_FIELDS = (("image_url", "url"), ("input_audio", "data"), ("file", "file_data"))


@dataclass(slots=True)
class StreamedBody:
    """A JSON body as pieces: serialised JSON (bytes) and payload strings between them,
    written in slices. ``length`` is the body's size in bytes (payloads are ASCII)."""

    pieces: list[bytes | str]
    length: int

    async def chunks(self, deployment: str = "") -> AsyncIterator[bytes]:
        """The body's bytes. Raises ProviderBadRequest when a payload holds a character
        JSON would have to escape (it then never was a base64 data URL; the engine
        checks media payloads before any call, so this is a last line)."""
        for piece in self.pieces:
            if isinstance(piece, bytes):
                yield piece
                continue
            for start in range(0, len(piece), SLICE):
                chunk = piece[start:start + SLICE].encode("ascii")
                if chunk.translate(None, _JSON_SAFE):
                    raise ProviderBadRequest(f"{deployment}: a media payload holds "
                                             "characters JSON must escape",
                                             deployment=deployment)
                yield chunk


def upstream_body(body: dict[str, Any]) -> bytes | StreamedBody:
    """``orjson.dumps(body)``, or a :class:`StreamedBody` of the same bytes when ``body``
    (an OpenAI chat body: ``messages[].content[]`` parts) carries media payloads longer
    than :data:`LARGE`. ``body``'s parts are modified (callers pass a fresh dump)."""
    large: list[str] = []
    token = ""  # a marker no caller text can predict, made when first needed
    for msg in body.get("messages") or ():
        content = msg.get("content") if isinstance(msg, dict) else None
        for part in content if isinstance(content, list) else ():
            for outer, inner in _MEDIA_FIELDS:
                holder = part.get(outer) if isinstance(part, dict) else None
                value = holder.get(inner) if isinstance(holder, dict) else None
                if (isinstance(value, str) and len(value) > LARGE and value.isascii()
                        and '"' not in value and "\\" not in value):
                    token = token or secrets.token_hex(8)
                    holder[inner] = f"@@modelmix-{token}-{len(large)}@@"  # type: ignore[index]
                    large.append(value)
    data = orjson.dumps(body)
    if not large:
        return data
    pieces: list[bytes | str] = []
    rest = data
    for n, value in enumerate(large):
        before, found, rest = rest.partition(f'"@@modelmix-{token}-{n}@@"'.encode())
        if not found:  # cannot happen: every marker was put in a string
            raise AssertionError("media payload marker lost")
        pieces += [before + b'"', value, b'"']
    pieces.append(rest)
    return StreamedBody(pieces, sum(len(p) for p in pieces))
