"""Documents the media tests render themselves (never downloaded): a form image drawn
with Pillow, a text PDF written with fpdf2, a scanned PDF (an image saved as PDF), and a
spoken note from Debian's espeak-ng (installed by .ci/run)."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["form_png", "scanned_pdf", "spoken_wav", "text_pdf"]

_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _FONT.exists():
        return ImageFont.truetype(str(_FONT), size)
    return ImageFont.load_default(size=size)


def _page(lines: list[str], size: int = 32) -> Image.Image:
    height = 60 + int(size * 1.9) * len(lines)
    image = Image.new("RGB", (1100, height), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((40, 30 + n * int(size * 1.9)), line, fill="black", font=_font(size))
    return image


def form_png(lines: list[str]) -> bytes:
    """A form: one printed line per entry, black on white, as PNG bytes."""
    out = io.BytesIO()
    _page(lines).save(out, "PNG")
    return out.getvalue()


def scanned_pdf(lines: list[str]) -> bytes:
    """A one-page PDF holding only an image of ``lines`` (no text layer), like a scan."""
    out = io.BytesIO()
    _page(lines).save(out, "PDF", resolution=100.0)
    return out.getvalue()


def text_pdf(lines: list[str]) -> bytes:
    """A one-page PDF with ``lines`` in its text layer."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def spoken_wav(text: str) -> bytes:
    """``text`` spoken by espeak-ng, as WAV bytes (22.05 kHz mono)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "note.wav"
        subprocess.run([exe, "-v", "en-us", "-s", "140", "-w", str(path), text], check=True,
                       capture_output=True, timeout=60)
        return path.read_bytes()
