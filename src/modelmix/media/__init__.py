"""Media: read images, scanned and text PDFs and audio locally (OCR, PDF text, speech
recognition) so the data guard sees their text and text-only models can serve them
(docs/multimodal.md). Nothing here leaves the machine; models load from installed
packages, never from a hub."""

from modelmix.media._base import MediaKind, MediaPart, ReaderUnavailable, Reading, ReadMethod

__all__ = ["MediaKind", "MediaPart", "ReadMethod", "ReaderUnavailable", "Reading"]
