"""Find and decode a request's media parts, once, checking each against what it claims.

A part is refused with a 400 naming it (``messages.0.content.1``) when its data URL or
base64 is malformed, its bytes are not a supported type (images: PNG, JPEG, GIF, WebP;
files: PDF; audio: WAV, MP3), or they contradict the declared type (a JPEG sent as
``data:image/png``, MP3 bytes with ``format: "wav"``); with a 413 when larger than
``media.max_part_bytes``. Types come from the bytes' signatures ("magic numbers": PNG,
ISO/IEC 15948 §5.2; JPEG SOI marker; GIF87a/89a; RIFF WEBP/WAVE; ``%PDF-``, ISO 32000-1
§7.5.2; MP3 ID3v2 tag or MPEG frame sync), never from the declared type alone.
"""

from __future__ import annotations

import binascii
import io
import warnings
import wave
from dataclasses import dataclass

from modelmix.catalog import MediaSettings
from modelmix.errors import InvalidMedia, MediaTooLarge, has_module
from modelmix.media._base import MediaKind, MediaPart
from modelmix.protocol import ChatRequest, ContentPart

__all__ = ["RemoteImage", "decode_base64", "find_media", "sniff"]

#: Characters of base64 decoded per slice: slicing a large data URL in pieces keeps one
#: transient copy of a slice, not of the whole payload, in memory.
_SLICE = 1 << 20  # multiple of 4
#: How far into a data URL its comma may be (the header: ``data:<type>;base64,``).
_HEADER_MAX = 256

_IMAGE_TYPES = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF",
                "image/webp": "WebP"}
_AUDIO_FORMATS = {"wav": "audio/wav", "mp3": "audio/mpeg"}
_NAMES = {**_IMAGE_TYPES, "application/pdf": "PDF", "audio/wav": "WAV", "audio/mpeg": "MP3"}
#: Declared types read as another name of the same type.
_ALIASES = {"image/jpg": "image/jpeg", "image/pjpeg": "image/jpeg", "audio/x-wav": "audio/wav",
            "audio/wave": "audio/wav", "audio/vnd.wave": "audio/wav", "audio/mp3": "audio/mpeg",
            "application/x-pdf": "application/pdf"}


@dataclass(frozen=True, slots=True)
class RemoteImage:
    """An ``image_url`` part holding an ``http(s)`` URL, not fetched yet."""

    where: str
    message: int
    index: int
    url: str


def sniff(head: bytes) -> str | None:
    """The media type the first bytes of a payload show (``image/png``...), None when
    they are of no supported type. 16 bytes are enough; PDF's ``%PDF-`` may follow up to
    1,024 bytes of leading junk, as readers accept (ISO 32000-1 note to §7.5.2)."""
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/wav"
    if b"%PDF-" in head[:1024 + 5]:
        return "application/pdf"
    if head.startswith(b"ID3") or (len(head) > 1 and head[0] == 0xFF
                                   and head[1] & 0xE0 == 0xE0):
        return "audio/mpeg"
    return None


def decode_base64(data: str, *, where: str, what: str, limit: int, start: int = 0) -> bytes:
    """Strictly decode the base64 in ``data[start:]`` (RFC 4648 §4: no characters outside
    the alphabet, correct padding), refusing output over ``limit`` bytes before decoding
    anything. Decoded in slices into one buffer of the final size: the payload is never
    copied whole (a data URL's header is skipped by offset, not sliced off).

    Raises:
        InvalidMedia: not valid base64 (param ``where``).
        MediaTooLarge: would decode to more than ``limit`` bytes.
    """
    chars = len(data) - start
    size = chars // 4 * 3
    if size > limit:
        raise MediaTooLarge(f"{where}: the {what} is about {_mb(size)} decoded, over the "
                            f"limit of {_mb(limit)} (media.max_part_bytes)", param=where)
    if chars <= 0 or chars % 4:
        raise InvalidMedia(f"{where}: the {what} is not valid base64 (empty, or its length "
                           "is not a multiple of 4)", param=where)
    size -= data.count("=", len(data) - 2)
    out = bytearray(size)
    pos = 0
    try:
        for first in range(start, len(data), _SLICE):
            piece = binascii.a2b_base64(data[first:first + _SLICE], strict_mode=True)
            out[pos:pos + len(piece)] = piece
            pos += len(piece)
    except (binascii.Error, ValueError) as exc:
        raise InvalidMedia(f"{where}: the {what} is not valid base64 ({exc})",
                           param=where) from None
    if pos != size:  # padding inside the payload ("=" before its end)
        raise InvalidMedia(f"{where}: the {what} is not valid base64 (padding before its "
                           "end)", param=where)
    return out  # type: ignore[return-value]  # a bytearray: bytes-like, not copied again


def _mb(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def _data_url(url: str, *, where: str, what: str) -> tuple[str, int]:
    """(declared type, where the base64 payload starts) of a
    ``data:<type>;base64,<payload>`` URL."""
    comma = url.find(",", 0, _HEADER_MAX)
    header = url[5:comma].lower() if comma > 0 else ""
    if comma < 0 or not header.endswith(";base64"):
        raise InvalidMedia(f"{where}: the {what} must be a base64 data URL "
                           "(data:<type>;base64,<data>)", param=where)
    declared = header.removesuffix(";base64").split(";", 1)[0].strip()
    return _ALIASES.get(declared, declared), comma + 1


#: Declared values an error may quote: types and formats callers commonly send. Anything
#: else is a caller's text, which must not reach errors, logs and usage rows unscreened.
_KNOWN_VALUES = frozenset({
    *_NAMES, *_ALIASES, "image/bmp", "image/tiff", "image/heic", "image/heif", "image/avif",
    "image/svg+xml", "application/octet-stream", "text/plain", "application/msword",
    "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
    "audio/ogg", "audio/flac", "audio/aac", "audio/mp4", "audio/webm", "audio/opus",
    "wav", "mp3", "ogg", "flac", "aac", "m4a", "opus", "webm", "pcm16", "g711_ulaw",
    "g711_alaw"})


def _shown(value: str) -> str:
    """``value`` quoted for an error message when it is a known type or format name,
    else a stand-in."""
    return repr(value) if value in _KNOWN_VALUES else "an unrecognised value"


def _checked(where: str, what: str, declared: str | None, data: bytes,
             allowed: set[str]) -> str:
    """The sniffed type of ``data``, refusing unsupported or mislabelled payloads."""
    found = sniff(data[:1100])
    supported = ", ".join(sorted({_NAMES[t] for t in allowed}))
    if found is None or found not in allowed:
        seen = f"its data is {_NAMES[found]}" if found else "its data is of no known type"
        raise InvalidMedia(f"{where}: unsupported {what}: {seen}; supported: {supported}",
                           param=where)
    if declared and declared != found:
        raise InvalidMedia(f"{where}: the {what} is declared {_shown(declared)} "
                           f"but its data is {_NAMES[found]}", param=where)
    return found


def _image(part: ContentPart, where: str, m: int, i: int,
           settings: MediaSettings) -> MediaPart | RemoteImage:
    assert part.image_url is not None
    url = part.image_url.url
    scheme = url[:8].lower()
    if scheme.startswith(("http://", "https://")):
        return RemoteImage(where, m, i, url)
    if not scheme.startswith("data:"):
        raise InvalidMedia(f"{where}: image_url must be a base64 data URL or an http(s) URL",
                           param=where)
    declared, start = _data_url(url, where=where, what="image")
    if declared and not declared.startswith("image/"):
        raise InvalidMedia(f"{where}: an image_url part must hold an image; it is declared "
                           f"{_shown(declared)}", param=where)
    data = decode_base64(url, where=where, what="image", limit=settings.max_part_bytes,
                         start=start)
    mime = _checked(where, "image", declared or None, data, set(_IMAGE_TYPES))
    _image_intact(data, where)
    return MediaPart.of(where, m, i, MediaKind.IMAGE, mime, data)


def _audio(part: ContentPart, where: str, m: int, i: int,
           settings: MediaSettings) -> MediaPart:
    assert part.input_audio is not None
    fmt = part.input_audio.format.lower()
    if fmt not in _AUDIO_FORMATS:
        raise InvalidMedia(f"{where}: unsupported audio format "
                           f"{_shown(fmt)}; supported: wav, mp3", param=where)
    data = decode_base64(part.input_audio.data, where=where, what="audio",
                         limit=settings.max_part_bytes)
    mime = _checked(where, "audio", _AUDIO_FORMATS[fmt], data, set(_AUDIO_FORMATS.values()))
    if mime == "audio/wav":
        _wav_intact(data, where)
    return MediaPart.of(where, m, i, MediaKind.AUDIO, mime, data)


def _file(part: ContentPart, where: str, m: int, i: int, settings: MediaSettings) -> MediaPart:
    assert part.file is not None
    if part.file.file_data is None:
        why = ("file_id refers to an uploaded file, which this gateway cannot read; send "
               "the file inline as file_data" if part.file.file_id else "it has no file_data")
        raise InvalidMedia(f"{where}: {why}", param=where)
    declared, start = _data_url(part.file.file_data, where=where, what="file")
    data = bytes(decode_base64(part.file.file_data, where=where, what="file",  # PDFium
                               limit=settings.max_part_bytes, start=start))  # wants bytes
    mime = _checked(where, "file", declared or None, data, {"application/pdf"})
    if b"%%EOF" not in data[-2048:]:  # ISO 32000-1 §7.5.5: a PDF ends with %%EOF
        raise InvalidMedia(f"{where}: the PDF is truncated (no %%EOF at its end)",
                           param=where)
    return MediaPart.of(where, m, i, MediaKind.PDF, mime, data, part.file.filename)


#: Most pixels an image may have (PIL's decompression-bomb error threshold is twice its
#: 89.5-megapixel warning; 50 MP is above any camera or scanner page at 600 dpi A4, 35 MP).
MAX_PIXELS = 50_000_000


def _image_intact(data: bytes, where: str) -> None:
    """Open the image's header (and, for PNG, check its chunks' CRCs) with Pillow when it
    is installed: a corrupt image or a decompression bomb is refused here, whether or not
    it is read later. Pixels are not decoded."""
    if not has_module("PIL"):
        return
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():  # the size check below says it better
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        with img:
            width, height = img.size
            if width * height > MAX_PIXELS:
                raise InvalidMedia(f"{where}: the image is {width}x{height} pixels, over "
                                   f"{MAX_PIXELS // 1_000_000} megapixels", param=where)
            img.verify()
    except InvalidMedia:
        raise
    except UnidentifiedImageError:
        raise InvalidMedia(f"{where}: the image is corrupt (it cannot be opened)",
                           param=where) from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidMedia(f"{where}: the image is corrupt or truncated (it cannot be "
                           "decoded)", param=where) from None


def _wav_intact(data: bytes, where: str) -> None:
    try:
        with wave.open(io.BytesIO(data)) as w:
            if w.getnframes() == 0:
                raise InvalidMedia(f"{where}: the WAV audio holds no samples", param=where)
    except (wave.Error, EOFError) as exc:
        raise InvalidMedia(f"{where}: the WAV audio is corrupt ({exc})", param=where) from None


def find_media(request: ChatRequest, settings: MediaSettings) -> list[MediaPart | RemoteImage]:
    """Decode and check every media part of ``request``, in order (each decoded once).

    Returns:
        One :class:`MediaPart` per image, PDF and audio part, or a :class:`RemoteImage`
        for an ``http(s)`` image URL (fetched, or not, by the caller).

    Raises:
        InvalidMedia: a malformed, unsupported or mislabelled part, or more than
            ``settings.max_parts`` of them (400, ``param`` names the part).
        MediaTooLarge: a part over ``settings.max_part_bytes`` decoded (413).
    """
    found = request.media_parts()
    if len(found) > settings.max_parts:
        where = f"messages.{found[settings.max_parts][0]}.content.{found[settings.max_parts][1]}"
        raise InvalidMedia(f"{where}: a request may carry at most {settings.max_parts} media "
                           "parts (media.max_parts)", param=where)
    out: list[MediaPart | RemoteImage] = []
    for m, i, part in found:
        where = f"messages.{m}.content.{i}"
        if part.type == "image_url":
            out.append(_image(part, where, m, i, settings))
        elif part.type == "input_audio":
            out.append(_audio(part, where, m, i, settings))
        else:
            out.append(_file(part, where, m, i, settings))
    return out
