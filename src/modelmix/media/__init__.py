"""Media: read images, scanned and text PDFs and audio locally (OCR, PDF text, speech
recognition) so the data guard sees their text and text-only models can serve them
(docs/multimodal.md). Nothing here leaves the machine; models load from installed
packages, never from a hub."""

import importlib
from typing import TYPE_CHECKING, Any

from modelmix.media._base import (
    MediaKind,
    MediaPart,
    ReaderUnavailable,
    Reading,
    ReadMethod,
    ReadTimedOut,
)

if TYPE_CHECKING:
    from modelmix.media._fetch import Fetched, fetch_image
    from modelmix.media._reader import MediaReader

#: Readers and the fetcher import their libraries (onnxruntime, PyAV, httpx) on first use.
_LAZY = {"MediaReader": "_reader", "Fetched": "_fetch", "fetch_image": "_fetch"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["Fetched", "MediaKind", "MediaPart", "MediaReader", "ReadMethod",
           "ReadTimedOut", "ReaderUnavailable", "Reading", "fetch_image"]
