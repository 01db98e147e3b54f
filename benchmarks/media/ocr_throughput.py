"""Reading throughput of the local media readers (src/modelmix/media/_readers.py).

Measures, on documents rendered here (tests/_media_docs.py; nothing downloaded):

- model load times (OCR: rapidocr PP-OCRv4 ONNX; speech: Whisper tiny.en int8);
- OCR of an A4 form page at 150 dpi (1240 x 1754 px, 11 pt type): ms per page one at a
  time, and pages/s through a ``MediaReader`` with its default pool;
- text-PDF extraction (20 A4 pages from fpdf2) and scanned-PDF reading (3 pages of the
  150 dpi form saved as images: render + OCR), ms per page;
- speech recognition's real-time factor (transcription time / audio duration) on a
  ~10 s espeak-ng note, WAV;
- with ``--spacing``: word-spacing errors of the OCR on 540 rendered lines (15 lines x
  6 fonts x 3 sizes, clean and blurred/noisy JPEG): as recognised, with gaps from the
  recogniser's character boxes, and from the pixels (what the reader does).

Usage::

    .venv/bin/python benchmarks/media/ocr_throughput.py              # ~1 min
    .venv/bin/python benchmarks/media/ocr_throughput.py --spacing --write

``--write`` replaces the "Reading throughput" section of RESULTS.md next to this file.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import io
import os
import platform
import statistics
import subprocess
import sys
import time
import unicodedata
from collections.abc import Callable
from importlib.metadata import version
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from _media_docs import FORM, NOTE, a4_form, spoken_wav  # noqa: E402
from modelmix.catalog import MediaSettings  # noqa: E402
from modelmix.media import MediaKind, MediaPart  # noqa: E402
from modelmix.media import _readers as readers  # noqa: E402
from modelmix.media._reader import MediaReader  # noqa: E402

START, END = "<!-- reading-throughput:start -->", "<!-- reading-throughput:end -->"


def _ms(fn: Callable[[], Any], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def _png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _pdf_of_images(images: list[Image.Image], dpi: int) -> bytes:
    buf = io.BytesIO()
    images[0].save(buf, "PDF", resolution=float(dpi), save_all=True, append_images=images[1:])
    return buf.getvalue()


def _text_pdf(pages: int) -> bytes:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=11)
    for _ in range(pages):
        pdf.add_page()
        for n in range(40):
            pdf.cell(0, 6, FORM[n % len(FORM)], new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def measure(repeat: int) -> dict[str, Any]:
    workers = min(2, readers_cpus())
    engines = readers.Engines(threads=max(1, readers_cpus() // workers))
    res: dict[str, Any] = {"threads_per_model": engines.threads, "workers": workers}
    res["ocr_load_ms"] = _ms(engines.ocr, 1)[0]
    page = _png(a4_form(FORM, dpi=150))
    readers.read_image(page, where="page", engines=engines)  # warm-up
    ocr = _ms(lambda: readers.read_image(page, where="page", engines=engines), repeat)
    res["ocr_page_ms"] = statistics.median(ocr)
    res["ocr_pages_per_s_pool"] = _pool_rate(page, count=4 * workers)
    every = readers.Engines(threads=readers_cpus())  # one page using every CPU: latency
    readers.read_image(page, where="page", engines=every)
    res["ocr_page_ms_all_cpus"] = statistics.median(
        _ms(lambda: readers.read_image(page, where="page", engines=every), repeat))
    text = _text_pdf(20)
    pdf = _ms(lambda: readers.read_pdf(text, max_pages=50, where="pdf", engines=engines), repeat)
    res["text_pdf_page_ms"] = statistics.median(pdf) / 20
    scan = _pdf_of_images([a4_form(FORM, dpi=150) for _ in range(3)], dpi=150)
    scanned = _ms(lambda: readers.read_pdf(scan, max_pages=50, where="pdf", engines=engines), 1)
    res["scanned_pdf_page_ms"] = scanned[0] / 3
    note = spoken_wav(NOTE + " " + NOTE[:60], speed=150)
    res["asr_load_ms"] = _ms(engines.asr, 1)[0]
    seconds = 0.0

    def transcribe() -> None:
        nonlocal seconds
        res["transcript"], seconds = readers.read_audio(note, mime="audio/wav", max_s=600,
                                                        where="note", engines=engines)

    asr = _ms(transcribe, repeat)
    res["audio_s"] = seconds
    res["asr_ms"] = statistics.median(asr)
    res["asr_rtf"] = res["asr_ms"] / 1000 / seconds
    return res


def readers_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _pool_rate(page: bytes, count: int) -> float:
    """Pages/s through a MediaReader (default pool), distinct pages (no cache hits)."""
    async def run() -> float:
        reader = MediaReader(MediaSettings())
        parts = [MediaPart.of(f"p{n}", 0, n, MediaKind.IMAGE, "image/png", page + bytes(n))
                 for n in range(count)]  # trailing bytes: other hashes, same image
        started = time.perf_counter()
        await asyncio.gather(*(reader.read(p) for p in parts))
        elapsed = time.perf_counter() - started
        await reader.aclose()
        return count / elapsed

    return asyncio.run(run())


# --- word spacing -------------------------------------------------------------------

_LINES = ["Patient: Jane Doe", "SSN: 123-45-6789", "Date of birth: 03/14/1975",
          "Diagnosis: type 2 diabetes", "Insurance ID: XK-2290-11", "Phone: (555) 014-2231",
          "Email: jane.doe@example.com", "Address: 42 Willow Lane, Springfield",
          "Attending physician: Dr. Omar Little", "Medication: metformin 500 mg twice daily",
          "Allergies: penicillin, latex", "The quick brown fox jumps over the lazy dog",
          "Will fill in the illicit little list", "Card: 4111 1111 1111 1111", "Springfield"]
_FONTS = ["DejaVuSans", "DejaVuSansMono", "DejaVuSerif", "DejaVuSansCondensed",
          "DejaVuSans-Bold", None]  # None: Pillow's built-in font


def _lines_image(font_name: str | None, size: int, degrade: bool) -> Image.Image:
    path = f"/usr/share/fonts/truetype/dejavu/{font_name}.ttf"
    font = (ImageFont.truetype(path, size) if font_name and Path(path).exists()
            else ImageFont.load_default(size=size))
    image = Image.new("RGB", (size * 28, 60 + len(_LINES) * size * 2), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(_LINES):
        draw.text((40, 30 + n * size * 2), line, fill="black", font=font)
    if degrade:
        image = image.filter(ImageFilter.GaussianBlur(0.7))
        noise = np.random.default_rng(0).normal(0, 12, (image.height, image.width, 1))
        image = Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8))
        buf = io.BytesIO()
        image.save(buf, "JPEG", quality=70)
        image = Image.open(buf).convert("RGB")
    return image


def _cuts(text: str) -> set[int]:
    """Where the spaces fall, counted in non-space characters before each."""
    out, n = set(), 0
    for char in text:
        if char == " ":
            out.add(n)
        else:
            n += 1
    return out


def _char_box_spaces(gray: Any, points: Any, text: str, chars: list[str], boxes: Any) -> str:
    """Spaces from the recogniser's character boxes alone: a gap wider than 3/4 of the
    median box width (the readers' first version), only in lines with no space."""
    if " " in text.strip() or not boxes or len(boxes) != len(chars):
        return text
    spans = [(min(p[0] for p in b), max(p[0] for p in b)) for b in boxes]
    gap = statistics.median(x1 - x0 for x0, x1 in spans) * 0.75
    out = [chars[0]]
    for prev, cur, char in zip(spans, spans[1:], chars[1:], strict=False):
        if char.strip() and out[-1] != " " and cur[0] - prev[1] > gap:
            out.append(" ")
        out.append(char)
    return "".join(out)


def spacing() -> dict[str, Any]:
    engines = readers.Engines(threads=readers_cpus())
    modes: dict[str, Callable[..., str]] = {
        "as recognised": lambda gray, points, text, chars, boxes: text,
        "character boxes": _char_box_spaces, "pixels (reader)": readers._respace}
    errors = dict.fromkeys(modes, 0)
    exact = dict.fromkeys(modes, 0)
    for degrade in (False, True):
        for font in _FONTS:
            for size in (14, 20, 28):
                image = _lines_image(font, size, degrade)
                found, _ = engines.ocr()(image, return_word_box=True)
                gray = np.asarray(image.convert("L"))
                for mode, respace in modes.items():
                    lines = [unicodedata.normalize("NFKC", respace(gray, f[0], f[1],
                                                                   list(f[4]), f[3]))
                             for f in sorted(found, key=lambda f: f[0][0][1])]
                    for got, want in zip(lines, _LINES, strict=False):
                        exact[mode] += got == want
                        if len(got.replace(" ", "")) == len(want.replace(" ", "")):
                            errors[mode] += len(_cuts(got) ^ _cuts(want))
    return {"lines": 2 * len(_FONTS) * 3 * len(_LINES), "errors": errors, "exact": exact}


# --- report -------------------------------------------------------------------------


def machine() -> str:
    lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
    model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                  if line.startswith("Model name")), platform.processor())
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    libs = ", ".join(f"{p} {version(p)}" for p in (
        "rapidocr-onnxruntime", "onnxruntime", "faster-whisper", "ctranslate2", "pypdfium2",
        "av", "pillow"))
    return (f"{model}, {readers_cpus()} CPUs, Python {platform.python_version()}; {libs}. "
            f"Load average at the start: {load:.1f} (the machine is shared).")


def report(res: dict[str, Any], space: dict[str, Any] | None) -> str:
    now = dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat()
    rows = [
        ("OCR model load (rapidocr PP-OCRv4)", f"{res['ocr_load_ms']:.0f} ms"),
        ("Whisper tiny.en load (int8)", f"{res['asr_load_ms']:.0f} ms"),
        (f"OCR, A4 form at 150 dpi (1240x1754, 11 pt), one at a time, "
         f"{res['threads_per_model']} thread(s) (the reader's setting)",
         f"**{res['ocr_page_ms']:.0f} ms/page** ({1000 / res['ocr_page_ms']:.2f} pages/s)"),
        (f"OCR, the same page, one model call on all {readers_cpus()} CPUs",
         f"{res['ocr_page_ms_all_cpus']:.0f} ms/page"),
        (f"OCR through a MediaReader ({res['workers']} workers x {res['threads_per_model']} "
         "thread)", f"**{res['ocr_pages_per_s_pool']:.2f} pages/s**"),
        ("Text PDF, text layer (20 A4 pages)", f"**{res['text_pdf_page_ms']:.1f} ms/page**"),
        ("Scanned PDF (3 A4 pages at 150 dpi): render at 2x + OCR",
         f"**{res['scanned_pdf_page_ms']:.0f} ms/page**"),
        (f"Speech, {res['audio_s']:.1f} s espeak-ng note (WAV), beam 5",
         f"{res['asr_ms']:.0f} ms: **real-time factor {res['asr_rtf']:.2f}**"),
    ]
    out = [START, f"Run {now}, `.venv/bin/python benchmarks/media/ocr_throughput.py"
           f"{' --spacing' if space else ''} --write`. Machine: {machine()}", "",
           "| what | result |", "| --- | --- |", *(f"| {a} | {b} |" for a, b in rows), "",
           f"Transcript: \"{res['transcript']}\"", ""]
    if space:
        out += [f"Word spacing, {space['lines']} rendered lines (spacing errors: spaces "
                "missing or extra, on lines read with the right characters; exact: lines "
                "read exactly):", "", "| spaces from | spacing errors | exact lines |",
                "| --- | ---: | ---: |",
                *(f"| {m} | {space['errors'][m]} | {space['exact'][m]} |"
                  for m in space["errors"]), ""]
    out.append(END)
    return "\n".join(out)


def write(section: str) -> None:
    path = HERE / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Media benchmarks\n"
    if START in text:
        before, rest = text.split(START, 1)
        text = before + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n## Reading throughput\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--spacing", action="store_true", help="word-spacing errors too")
    parser.add_argument("--write", action="store_true", help="update RESULTS.md")
    args = parser.parse_args()
    res = measure(args.repeat)
    space = spacing() if args.spacing else None
    section = report(res, space)
    print(section)
    if args.write:
        write(section)


if __name__ == "__main__":
    main()
