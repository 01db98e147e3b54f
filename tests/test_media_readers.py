"""The local media readers on documents the tests render themselves (tests/_media_docs.py):
OCR keeps word spaces and lines, PDFs give their text layer or OCR of scanned pages,
speech is transcribed, broken inputs raise InvalidMedia naming the part, and the
MediaReader caches by content hash, shares concurrent reads, bounds its threads and never
blocks the event loop. Each model loads once for the module (one shared reader)."""

from __future__ import annotations

import asyncio
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import modelmix.media._reader as reader_mod
from _media_docs import (
    FORM,
    NOTE,
    bomb_png,
    corrupt_png,
    encrypted_pdf,
    form_image,
    form_jpeg,
    form_png,
    garbage_audio,
    pdf_with_picture,
    scanned_pdf,
    spoken_mp3,
    spoken_wav,
    text_pdf,
    truncated_pdf,
)
from modelmix.catalog import MediaSettings
from modelmix.errors import InvalidMedia
from modelmix.media import MediaKind, MediaPart, ReaderUnavailable, ReadMethod
from modelmix.media._reader import MediaReader
from modelmix.media._readers import Engines

MIME = {MediaKind.IMAGE: "image/png", MediaKind.PDF: "application/pdf",
        MediaKind.AUDIO: "audio/wav"}


def part(data: bytes, kind: MediaKind, *, index: int = 1, mime: str | None = None) -> MediaPart:
    return MediaPart.of(f"messages.0.content.{index}", 0, index, kind, mime or MIME[kind], data)


@pytest.fixture(scope="module")
def reader() -> Iterator[MediaReader]:
    """One reader for the module: the OCR and Whisper models load once."""
    got = MediaReader(MediaSettings(max_pdf_pages=3, max_audio_s=30), max_workers=2)
    yield got
    asyncio.run(got.aclose())


@pytest.fixture(scope="module")
def note_wav() -> bytes:
    return spoken_wav(NOTE)


class Counting:
    """Wraps a reader function, counting calls and the most that ran at once."""

    def __init__(self, inner: Callable[..., Any], delay: float = 0.0):
        self.inner, self.delay = inner, delay
        self.calls = self.running = self.most = 0
        self._lock = threading.Lock()

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            self.calls += 1
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            time.sleep(self.delay)
            return self.inner(*args, **kwargs)
        finally:
            with self._lock:
                self.running -= 1


def fake_text(n: int) -> Callable[..., str]:
    return lambda data, **_: "x" * n


# --- what is read -------------------------------------------------------------------


async def test_form_image_keeps_word_spaces_and_lines(reader: MediaReader) -> None:
    got = await reader.read(part(form_png(FORM), MediaKind.IMAGE))
    lines = got.text.split("\n")
    assert len(lines) == 4, got.text
    assert "Patient: Jane Doe" in lines[0]  # the guard's name detection needs the spaces
    assert "SSN: 123-45-6789" in lines[1]
    assert "Date of birth: 03/14/1975" in lines[2]
    assert "type 2 diabetes" in lines[3]
    assert got.methods == (ReadMethod.OCR,) and not got.cached and got.ms > 0


async def test_small_print_jpeg_keeps_spaces(reader: MediaReader) -> None:
    got = await reader.read(part(form_jpeg(FORM), MediaKind.IMAGE, mime="image/jpeg"))
    assert "Jane Doe" in got.text and "123-45-6789" in got.text
    assert "Date of birth" in got.text, got.text


async def test_transparent_png_is_read_on_white(reader: MediaReader) -> None:
    image = form_image(["Patient: Jane Doe"]).convert("L")
    rgba = image.convert("RGBA")
    rgba.putalpha(image.point(lambda v: 255 - v))  # text opaque, paper transparent
    import io

    out = io.BytesIO()
    rgba.save(out, "PNG")
    got = await reader.read(part(out.getvalue(), MediaKind.IMAGE))
    assert "Jane Doe" in got.text


async def test_huge_image_is_downscaled_and_read(reader: MediaReader) -> None:
    import io

    out = io.BytesIO()
    form_image(["Patient: Jane Doe"], size=160, width=6000).save(out, "PNG")
    got = await reader.read(part(out.getvalue(), MediaKind.IMAGE))
    assert "Jane Doe" in got.text


async def test_text_pdf_gives_its_text_layer(reader: MediaReader) -> None:
    got = await reader.read(part(text_pdf(FORM, pages=2), MediaKind.PDF))
    assert got.methods == (ReadMethod.PDF,) and got.pages == 2
    assert got.text == "\n".join(FORM) + "\n\n" + "\n".join(FORM)


async def test_pictures_on_a_text_page_are_ocrd_too(reader: MediaReader) -> None:
    """Found by review: a page with a text layer was not OCR'd, so an SSN in a pasted
    scan on it reached the guard unread."""
    got = await reader.read(part(pdf_with_picture("Quarterly maintenance report",
                                                  FORM[:2]), MediaKind.PDF))
    assert got.methods == (ReadMethod.PDF, ReadMethod.OCR)
    assert "Quarterly maintenance report" in got.text and "123-45-6789" in got.text


async def test_scanned_pdf_pages_are_ocrd(reader: MediaReader) -> None:
    got = await reader.read(part(scanned_pdf(FORM, pages=2), MediaKind.PDF))
    assert got.methods == (ReadMethod.PDF, ReadMethod.OCR) and got.pages == 2
    assert got.text.count("Patient: Jane Doe") == 2, got.text
    assert got.text.count("123-45-6789") == 2


@pytest.mark.parametrize("encode", [spoken_wav, spoken_mp3], ids=["wav", "mp3"])
async def test_spoken_note_is_transcribed(reader: MediaReader,
                                          encode: Callable[[str], bytes]) -> None:
    mime = "audio/wav" if encode is spoken_wav else "audio/mpeg"
    got = await reader.read(part(encode(NOTE), MediaKind.AUDIO, mime=mime))
    said = got.text.lower()
    # the words Whisper tiny.en hears in espeak-ng's voice ("two" may come out as "2")
    for word in ("patient", "diabetes", "blood pressure", "normal"):
        assert word in said, got.text
    assert got.methods == (ReadMethod.ASR,)
    assert got.seconds is not None and 5 < got.seconds < 15


# --- what is refused ----------------------------------------------------------------


@pytest.mark.parametrize(("make", "kind", "says"), [
    (corrupt_png, MediaKind.IMAGE, "the image could not be decoded"),
    (lambda: form_jpeg(FORM)[:3000], MediaKind.IMAGE, "the image could not be decoded"),
    (lambda: bomb_png(30_000, 30_000), MediaKind.IMAGE, "the image has too many pixels"),
    (lambda: truncated_pdf(FORM), MediaKind.PDF, "the PDF could not be opened (it is corrupt"),
    (lambda: encrypted_pdf(FORM), MediaKind.PDF, "the PDF could not be opened (it is encrypted"),
    (garbage_audio, MediaKind.AUDIO, "the audio could not be decoded"),
], ids=["corrupt-png", "truncated-jpeg", "bomb", "truncated-pdf", "encrypted-pdf", "garbage-audio"])
async def test_broken_input_is_invalid_media_naming_the_part(
        reader: MediaReader, make: Callable[[], bytes], kind: MediaKind, says: str) -> None:
    with pytest.raises(InvalidMedia) as err:
        await reader.read(part(make(), kind, index=3))
    assert err.value.param == "messages.0.content.3"
    assert str(err.value).startswith("messages.0.content.3: " + says), str(err.value)


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
async def test_image_over_pillows_pixel_limit_is_refused_before_decoding(
        reader: MediaReader) -> None:
    with pytest.raises(InvalidMedia, match="10000x10000 pixels"):
        await reader.read(part(bomb_png(10_000, 10_000), MediaKind.IMAGE))


async def test_pdf_over_the_page_limit(reader: MediaReader) -> None:
    with pytest.raises(InvalidMedia) as err:
        await reader.read(part(text_pdf(["page"], pages=4), MediaKind.PDF, index=2))
    assert err.value.param == "messages.0.content.2"
    assert "4 pages, more than the 3 read (media.max_pdf_pages)" in str(err.value)


async def test_audio_over_the_duration_limit(note_wav: bytes) -> None:
    short = MediaReader(MediaSettings(max_audio_s=3), max_workers=1)
    try:
        with pytest.raises(InvalidMedia) as err:
            await short.read(part(note_wav, MediaKind.AUDIO, index=4))
        assert "longer than 3 s (media.max_audio_s)" in str(err.value)
        assert err.value.param == "messages.0.content.4"
    finally:
        await short.aclose()


def test_missing_package_is_reader_unavailable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rapidocr_onnxruntime", None)  # import fails
    with pytest.raises(ReaderUnavailable, match=r"modelmix\[media\]"):
        Engines(threads=1).ocr()


def test_available_finds_the_packages_without_importing_them(reader: MediaReader) -> None:
    assert all(reader.available(kind) for kind in MediaKind)


# --- cache, single flight, pool -----------------------------------------------------


async def test_second_read_of_the_same_bytes_is_a_cache_hit(
        reader: MediaReader, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(reader_mod.read_image)
    monkeypatch.setattr(reader_mod, "read_image", counting)
    data = form_png(["Patient: John Roe"])
    first = await reader.read(part(data, MediaKind.IMAGE, index=1))
    again = await reader.read(part(data, MediaKind.IMAGE, index=7))  # same bytes elsewhere
    assert counting.calls == 1
    assert not first.cached and again.cached
    assert again.text == first.text and "John Roe" in again.text
    assert again.ms < first.ms


async def test_concurrent_reads_of_the_same_bytes_share_one_read(
        reader: MediaReader, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(fake_text(10), delay=0.3)
    monkeypatch.setattr(reader_mod, "read_image", counting)
    same = part(b"single flight", MediaKind.IMAGE)
    got = await asyncio.gather(*(reader.read(same) for _ in range(5)))
    assert counting.calls == 1
    assert sorted(r.cached for r in got) == [False, True, True, True, True]
    assert {r.text for r in got} == {"x" * 10}


async def test_a_failed_read_is_shared_but_not_cached(
        reader: MediaReader, monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(reader_mod.read_image, delay=0.2)
    monkeypatch.setattr(reader_mod, "read_image", counting)
    bad = part(corrupt_png(), MediaKind.IMAGE, index=5)
    got = await asyncio.gather(reader.read(bad), reader.read(bad), return_exceptions=True)
    assert counting.calls == 1 and all(isinstance(g, InvalidMedia) for g in got)
    with pytest.raises(InvalidMedia):
        await reader.read(bad)
    assert counting.calls == 2


async def test_cache_is_bounded_by_characters(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(fake_text(1000))
    monkeypatch.setattr(reader_mod, "read_image", counting)
    small = MediaReader(MediaSettings(), max_workers=1, cache_chars=2500)
    try:
        parts = [part(bytes([n]), MediaKind.IMAGE) for n in range(3)]
        for p in parts:
            await small.read(p)
        assert (await small.read(parts[2])).cached  # most recent kept
        assert not (await small.read(parts[0])).cached  # oldest evicted: read again
        assert counting.calls == 4
    finally:
        await small.aclose()


async def test_pool_bounds_reads_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    counting = Counting(fake_text(5), delay=0.1)
    monkeypatch.setattr(reader_mod, "read_image", counting)
    two = MediaReader(MediaSettings(), max_workers=2)
    try:
        await asyncio.gather(*(two.read(part(bytes([n]), MediaKind.IMAGE)) for n in range(6)))
        assert counting.calls == 6 and counting.most == 2
    finally:
        await two.aclose()


async def test_ocr_does_not_block_the_event_loop(reader: MediaReader) -> None:
    ticks = 0
    done = asyncio.Event()

    async def tick() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    started = time.perf_counter()
    await reader.read(part(form_png(["Blocking check: Mary Major"]), MediaKind.IMAGE))
    elapsed = time.perf_counter() - started
    done.set()
    await ticker
    assert elapsed > 0.05 and ticks >= elapsed / 0.01 / 4  # the loop kept running


async def test_read_after_close_is_refused() -> None:
    closed = MediaReader(MediaSettings(), max_workers=1)
    await closed.aclose()
    with pytest.raises(RuntimeError, match="closed"):
        await closed.read(part(b"x", MediaKind.IMAGE))


def test_warm_loads_the_installed_models(reader: MediaReader) -> None:
    assert reader.warm([MediaKind.IMAGE, MediaKind.PDF]) == (MediaKind.IMAGE, MediaKind.PDF)
    assert "ocr_loaded=True" in repr(reader.engines)
