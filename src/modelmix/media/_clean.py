"""Images as the guard read them, and nothing more.

An image file carries more than the pixels OCR reads: later frames of an animated GIF,
WebP or PNG, pixels under a transparent alpha channel, text chunks (PNG ``tEXt`` /
``iTXt``), EXIF and comments (JPEG), bytes after the image's end. Under a data policy an
image sent as it is must carry only what was read, so it is re-encoded: its first frame,
composited on white (as OCR saw it), without metadata or trailing bytes.
"""

from __future__ import annotations

import io
import warnings

__all__ = ["clean_image"]


def clean_image(data: bytes, mime: str) -> tuple[bytes, str]:
    """``(bytes, type)``: the first frame of the image in ``data``, composited on white,
    re-encoded without metadata: JPEG stays JPEG (quality 95), any other type becomes
    PNG. Raises OSError / ValueError when the image cannot be decoded (the caller has
    read it already, so this does not happen for a read part)."""
    from PIL import Image

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(io.BytesIO(data)) as img:
            img.seek(0)
            frame = img.convert("RGBA")
    page = Image.new("RGB", frame.size, "white")
    page.paste(frame, mask=frame.getchannel("A"))
    out = io.BytesIO()
    if mime == "image/jpeg":
        page.save(out, "JPEG", quality=95)
        return out.getvalue(), "image/jpeg"
    page.save(out, "PNG", compress_level=1)
    return out.getvalue(), "image/png"
