"""A normalised copy of a text for pattern matching, with a map back to the original offsets.

Obfuscated identifiers defeat plain regular expressions: full-width digits (U+FF10-FF19),
Cyrillic or Greek look-alike letters (a Cyrillic "a" in "passport"), zero-width characters
inside a number, other scripts' digits (Devanagari, Arabic-Indic), combining marks or
variation selectors after a digit (strike-through, keycaps), non-breaking or ideographic
spaces, Unicode dashes, digits typed one by one with spaces between. :func:`normalize` folds
all of these to ASCII so one set of patterns covers them, and keeps, for every character of
the normalised text, the index of the original character it came from. Spans found in the
normalised text are mapped back with :meth:`Normalized.span`.

ASCII text (the common case) is returned as is, with no map: normalising costs nothing then.
Sources: Unicode NFKC (UAX #15); look-alikes from Unicode's confusables.txt (UTS #39), the
Cyrillic and Greek letters that render like Latin ones.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from functools import lru_cache

__all__ = ["Normalized", "normalize"]

# Cyrillic, Greek and Armenian letters that render like Latin ones, Unicode dashes, and
# full-width or ideographic "@" and "." (UTS #39 confusables), each mapped to its ASCII twin.
_LOOKALIKE_FROM = (
    "\u0410\u0412\u0415\u041a\u041c\u041d\u041e\u0420\u0421\u0422\u0425\u0423\u0405\u0406"
    "\u0408\u051a\u051c\u0430\u0435\u043e\u0440\u0441\u0443\u0445\u0455\u0456\u0458\u0501"
    "\u04bb\u04cf\u051b\u051d\u0578\u057d\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c"
    "\u039d\u039f\u03a1\u03a4\u03a5\u03a7\u03bf\u03bd\u03c1\u03b1\u03b9\u03ba\u03c4\u03c5"
    "\u03c7\u2010\u2011\u2012\u2013\u2014\u2015\u2212\u2043\uff20\ufe6b\u3002\uff0e\uff61"
    "\u00b7\u2022\u2219"
)
_LOOKALIKE_TO = (
    "ABEKMHOPCTXYSIJQWaeopcyxsijdhlqwnuABEZHIKMNOPTYXovpaiktux---"
    "-----@@......"
)
_LOOKALIKES = str.maketrans(_LOOKALIKE_FROM, _LOOKALIKE_TO)
_NON_ASCII = re.compile(r"[^\x00-\x7f]+")
# Combining marks and variation selectors (strike-through, underline, keycap, emoji style):
# dropped after a digit, where they only disguise it.
_MARK = re.compile(r"^[\u0300-\u036f\u0483-\u0489\u1ab0-\u1aff\u1dc0-\u1dff\u20d0-\u20ff"
                   r"\ufe00-\ufe0f\ufe20-\ufe2f\U000e0100-\U000e01ef]+$")
# Digits typed one by one with spaces between ("4 1 1 1 1 1 1 1", "5 3 1 - 4 4 - 2 9 8 7"): the
# spaces are dropped so the digit patterns see "41111111" and "531-44-2987".
_SPACED_DIGITS = re.compile(r"(?<![\w.,])(?:\( )?\d(?:(?: ?[\-.()] ?| )\d){5,}(?![\w]|[.,]\d)")
_ESCAPED_BREAK = re.compile(r"\\[nrt]")
_INNER_SPACE = re.compile(r"(?<=[\d\-.()]) (?=[\d\-.()])")


@lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    """ASCII-friendly replacement for one non-ASCII character ('' drops it)."""
    category = unicodedata.category(char)
    if category == "Cf":  # zero-width space/joiners, BOM, soft hyphen: invisible, dropped
        return ""
    if category == "Zs":
        return " "
    if category == "Nd":  # any script's decimal digit (Devanagari, Arabic-Indic, Thai...)
        return str(unicodedata.decimal(char))
    folded = unicodedata.normalize("NFKC", char).translate(_LOOKALIKES)
    return folded


@dataclass(frozen=True, slots=True)
class Normalized:
    """A normalised text and, unless it equals the original, each character's source index."""

    text: str
    source: list[int] | None = None
    original_length: int = 0

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of the normalised span ``[start, end)`` (end exclusive)."""
        if self.source is None:
            return start, end
        if start >= end:
            origin = self.source[start] if start < len(self.source) else self.original_length
            return origin, origin
        return self.source[start], self.source[end - 1] + 1


def normalize(text: str) -> Normalized:
    """Fold full-width forms, look-alike letters, odd spaces/dashes and zero-width characters.

    >>> n = normalize("card \uff14\uff11\uff11\uff11\u200b1111")
    >>> n.text
    'card 41111111'
    >>> n.span(5, 13)
    (5, 14)
    """
    if "\\" in text:  # escaped line breaks of JSON or code become real ones; same length
        text = _ESCAPED_BREAK.sub(" \n", text)
    spaced = _SPACED_DIGITS.search(text) if " " in text else None
    if text.isascii() and spaced is None:
        return Normalized(text, None, len(text))
    parts: list[str] = []
    source: list[int] = []
    pos = 0
    for match in _NON_ASCII.finditer(text):
        start, end = match.span()
        parts.append(text[pos:start])
        source.extend(range(pos, start))
        for index in range(start, end):
            folded = _fold(text[index])
            if folded and not (_MARK.match(folded) and parts and parts[-1][-1:].isdigit()):
                parts.append(folded)
                source.extend([index] * len(folded))
        pos = end
    parts.append(text[pos:])
    source.extend(range(pos, len(text)))
    folded = "".join(parts)
    if spaced is not None or _SPACED_DIGITS.search(folded):
        folded, source = _collapse_spaced_digits(folded, source)
    return Normalized(folded, source, len(text))


def _collapse_spaced_digits(text: str, source: list[int]) -> tuple[str, list[int]]:
    """Drop the spaces inside runs of single spaced digits, keeping the source map aligned."""
    keep = [True] * len(text)
    for run in _SPACED_DIGITS.finditer(text):
        if all(len(group) == 1 for group in re.split(r"[ \-.()]+", run.group().strip("( "))):
            for space in _INNER_SPACE.finditer(text, run.start(), run.end()):
                keep[space.start()] = False
    if all(keep):
        return text, source
    chars = [c for c, k in zip(text, keep, strict=True) if k]
    return "".join(chars), [i for i, k in zip(source, keep, strict=True) if k]
