"""Rewrite a request's media parts: read ones become delimited text, fetched URLs become
the data URL of the bytes read, and raw parts go back where text stood.

The text of a converted part is wrapped so a model can tell it from the caller's words::

    <media part="messages.0.content.1" kind="image" read="ocr">
    Patient: Jane Doe
    </media>

Read text cannot close the wrapper early: ``<media`` and ``</media`` inside it are
neutralised (``<\u200bmedia``); what a document says is still untrusted input
(prompt injection through OCR'd text is possible, as through any text a caller sends).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Mapping

from modelmix.media._base import MediaPart, Reading
from modelmix.protocol import ChatRequest, ContentPart

__all__ = ["as_text", "inline_fetched", "inline_images", "text_part"]

_TAG = re.compile(r"<(/?)(media)", re.IGNORECASE)
_ATTR = re.compile(r'["<>&\r\n]')

Position = tuple[int, int]


def as_text(part: MediaPart, reading: Reading) -> str:
    """The text that stands for ``part`` in a converted request."""
    methods = ",".join(reading.methods)
    name = f' name="{_ATTR.sub("_", part.filename)[:200]}"' if part.filename else ""
    body = _TAG.sub(lambda m: f"<{m.group(1)}\u200b{m.group(2)}", reading.text).strip()
    return (f'<media part="{part.where}" kind="{part.kind.value}" read="{methods}"{name}>\n'
            f"{body or '(no text found)'}\n</media>")


def text_part(text: str) -> ContentPart:
    return ContentPart(type="text", text=text)


def inline_fetched(request: ChatRequest, fetched: Mapping[Position, MediaPart]) -> ChatRequest:
    """``request`` with each fetched image URL replaced by a data URL of the bytes that
    were fetched (and read): an upstream must see what the guard saw, not fetch the URL
    again and maybe get something else."""
    return inline_images(request, {pos: (bytes(media.data), media.mime)
                                   for pos, media in fetched.items()})


def inline_images(request: ChatRequest, images: Mapping[Position, tuple[bytes, str]]
                  ) -> ChatRequest:
    """``request`` with the image part at each position holding ``(bytes, type)`` as a
    base64 data URL (its ``detail`` kept)."""
    parts: dict[Position, ContentPart] = {}
    for (m, i), (data, mime) in images.items():
        old = request.part(m, i)
        assert old.image_url is not None
        url = f"data:{mime};base64,{base64.b64encode(data).decode('ascii')}"
        parts[(m, i)] = old.model_copy(update={
            "image_url": old.image_url.model_copy(update={"url": url})})
    return request.with_parts(parts)
