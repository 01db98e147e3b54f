"""What the media layer passes around: a decoded media part and what was read from it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from enum import StrEnum

__all__ = ["MediaKind", "MediaPart", "ReadMethod", "ReaderUnavailable", "Reading"]


class MediaKind(StrEnum):
    """The kinds of media a request may carry, by what reads them."""

    IMAGE = "image"  # image_url parts: PNG, JPEG, GIF, WebP -> OCR
    PDF = "pdf"  # file parts: PDF -> text extraction, OCR of scanned pages
    AUDIO = "audio"  # input_audio parts: WAV, MP3 -> speech recognition


class ReadMethod(StrEnum):
    """How text was read from a part; the names ``x-modelmix-conversions`` lists."""

    OCR = "ocr"
    PDF = "pdf"
    ASR = "asr"


@dataclass(frozen=True, slots=True, eq=False)
class MediaPart:
    """One media part of a request, decoded once.

    Attributes:
        where: the part's path in the request, as errors name it
            (``messages.0.content.1``).
        message / index: the message's and the part's positions.
        kind: what it is, from its bytes (not from what the caller declared).
        mime: its type, from its bytes (``image/png``, ``application/pdf``, ``audio/wav``).
        data: the decoded bytes (never logged or stored; records keep ``sha256`` and
            ``size``).
        sha256: hex digest of ``data``: the reading cache's key.
        filename: the file name a ``file`` part gave, if any.
    """

    where: str
    message: int
    index: int
    kind: MediaKind
    mime: str
    data: bytes
    sha256: str
    filename: str | None = None

    @classmethod
    def of(cls, where: str, message: int, index: int, kind: MediaKind, mime: str,
           data: bytes, filename: str | None = None) -> MediaPart:
        """A part with its digest computed."""
        return cls(where, message, index, kind, mime, data,
                   hashlib.sha256(data).hexdigest(), filename)

    @property
    def size(self) -> int:
        """Size of the decoded bytes."""
        return len(self.data)


@dataclass(frozen=True, slots=True)
class Reading:
    """The text read from one media part.

    Attributes:
        text: what was read (OCR lines, PDF text, transcript), '' when nothing was.
        methods: how (``("ocr",)``, ``("pdf",)``, ``("pdf", "ocr")`` for a PDF with
            scanned pages, ``("asr",)``).
        ms: time spent reading, milliseconds (about 0 on a cache hit).
        cached: whether it came from the content-hash cache.
        pages: pages read (PDF), else None.
        seconds: duration (audio), else None.
    """

    text: str
    methods: tuple[ReadMethod, ...]
    ms: float
    cached: bool = False
    pages: int | None = None
    seconds: float | None = None


class ReaderUnavailable(RuntimeError):
    """No reader for this kind of media is installed (the ``media`` extra), so the part
    stays unread: a data policy treats it as its strictest class."""


class ReadTimedOut(ReaderUnavailable):
    """Reading a part took longer than ``media.read_timeout_s``: the part stays unread
    (fail closed) and the reading stops at its next page or frame."""
