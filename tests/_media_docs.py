"""Documents the media tests render themselves (never downloaded): a form image drawn
with Pillow, a text PDF written with fpdf2, a scanned PDF (an image saved as PDF), a
spoken note from Debian's espeak-ng (installed by .ci/run) and its MP3 made with PyAV,
and broken inputs (a corrupt image, a truncated PDF, garbage audio, a decompression
bomb's header)."""

from __future__ import annotations

import io
import shutil
import struct
import subprocess
import tempfile
import zlib
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

__all__ = ["FORM", "NOTE", "a4_form", "bomb_png", "corrupt_png", "encrypted_pdf",
           "form_image", "form_jpeg", "form_png", "garbage_audio", "pdf_with_picture",
           "scanned_pdf",
           "spoken_mp3", "spoken_wav", "text_pdf", "truncated_pdf"]

#: The intake form the tests read back.
FORM = ["Patient: Jane Doe", "SSN: 123-45-6789", "Date of birth: 03/14/1975",
        "Diagnosis: type 2 diabetes"]
#: The spoken note (espeak-ng's voice, which Whisper tiny.en hears well enough for the
#: words the tests look for: patient, diabetes, blood pressure).
NOTE = ("The patient has type two diabetes. Her blood pressure is normal today. "
        "Please schedule a follow up visit next month.")

_FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    if _FONT.exists():
        return ImageFont.truetype(str(_FONT), size)
    return ImageFont.load_default(size=size)


def form_image(lines: list[str], size: int = 32, width: int = 1100) -> Image.Image:
    """``lines`` printed black on white, one per line, ``size`` px type."""
    step = int(size * 1.9)
    image = Image.new("RGB", (width, 60 + step * len(lines)), "white")
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((40, 30 + n * step), line, fill="black", font=_font(size))
    return image


def _encode(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **options)
    return out.getvalue()


def form_png(lines: list[str], size: int = 32) -> bytes:
    """A form: one printed line per entry, black on white, as PNG bytes."""
    return _encode(form_image(lines, size), "PNG")


def form_jpeg(lines: list[str], size: int = 24) -> bytes:
    """The form as a JPEG (quality 80, smaller type): compression noise in the gaps."""
    return _encode(form_image(lines, size), "JPEG", quality=80)


def a4_form(lines: list[str], dpi: int = 150) -> Image.Image:
    """An A4 page (210 x 297 mm) at ``dpi`` with ``lines`` in 11 pt type, 1 in margins,
    repeated down the page like a filled-in form."""
    width, height = round(8.27 * dpi), round(11.69 * dpi)
    size = round(11 / 72 * dpi)  # 11 pt
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    y, n = dpi, 0
    while y < height - dpi:
        draw.text((dpi, y), lines[n % len(lines)], fill="black", font=_font(size))
        y, n = y + int(size * 1.8), n + 1
    return image


def scanned_pdf(lines: list[str], pages: int = 1) -> bytes:
    """A PDF holding only images of ``lines`` (no text layer), like a scan."""
    image = form_image(lines)
    more = [form_image(lines) for _ in range(pages - 1)]
    return _encode(image, "PDF", resolution=100.0, save_all=True, append_images=more)


def text_pdf(lines: list[str], pages: int = 1) -> bytes:
    """A PDF with ``lines`` in the text layer of each of its ``pages``."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for _ in range(pages):
        pdf.add_page()
        for line in lines:
            pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def pdf_with_picture(text: str, picture: list[str]) -> bytes:
    """A PDF page with ``text`` in its text layer and a picture of ``picture``'s lines
    (a pasted scan): the text layer alone does not say what the picture does."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    pdf.cell(0, 10, text, new_x="LMARGIN", new_y="NEXT")
    pdf.image(io.BytesIO(form_png(picture)), x=10, y=30, w=150)
    return bytes(pdf.output())


def encrypted_pdf(lines: list[str]) -> bytes:
    """A text PDF that needs a user password to open."""
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_encryption(owner_password="owner", user_password="user")
    pdf.add_page()
    pdf.set_font("Helvetica", size=12)
    for line in lines:
        pdf.cell(0, 10, line, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def truncated_pdf(lines: list[str]) -> bytes:
    """The first half of a text PDF (no cross-reference table, no trailer)."""
    data = text_pdf(lines)
    return data[: len(data) // 2]


def corrupt_png() -> bytes:
    """A PNG signature and header, then garbage where the image data should be."""
    good = form_png(["x"])
    return good[:40] + bytes(range(256)) * 4


def bomb_png(width: int, height: int) -> bytes:
    """A PNG header declaring ``width`` x ``height`` pixels and almost no data: what a
    decompression bomb looks like before it is decoded."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return (struct.pack(">I", len(body)) + kind + body
                + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def garbage_audio() -> bytes:
    """Bytes no audio demuxer takes."""
    return b"RIFF\x00\x00\x00\x00WAVEnot really audio" + bytes(range(256)) * 8


def spoken_wav(text: str, speed: int = 140) -> bytes:
    """``text`` spoken by espeak-ng, as WAV bytes (22.05 kHz mono)."""
    exe = shutil.which("espeak-ng")
    if exe is None:
        raise RuntimeError("espeak-ng is not installed (apt-get install espeak-ng)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "note.wav"
        subprocess.run([exe, "-v", "en-us", "-s", str(speed), "-w", str(path), text],
                       check=True, capture_output=True, timeout=60)
        return path.read_bytes()


def spoken_mp3(text: str) -> bytes:
    """``text`` spoken by espeak-ng, encoded as MP3 (64 kb/s) by PyAV's bundled LAME."""
    import av

    out = io.BytesIO()
    with av.open(io.BytesIO(spoken_wav(text))) as src, av.open(out, "w", format="mp3") as dst:
        stream = dst.add_stream("libmp3lame", rate=22050)
        stream.bit_rate = 64_000
        resampler = av.AudioResampler(format="s16p", layout="mono", rate=22050)
        for frame in [*src.decode(audio=0), None]:
            for chunk in resampler.resample(frame):
                chunk.pts = None
                dst.mux(stream.encode(chunk))
        dst.mux(stream.encode(None))
    return out.getvalue()
