"""A decoded view of a text: encodings undone and spelled-out digits written as digits, with a
map back to the original offsets.

Values written to slip past patterns still reach a model that can read them: an SSN in base64,
a card number percent-encoded in a URL, as HTML entities or JSON ``\\u`` escapes, in number words
("five three six ..."), in odd groupings ("53.62.28.761", "4111_1111/1111|1111"), with letters
between the digits, or backwards after "reversed". :func:`decode` rewrites each such run in a
copy of the text; the detector scans that copy too and reports what it finds on the span of the
*original* run, so pseudonymising or blocking covers the encoded form.

Decoding is conservative, so harmless text stays harmless:

* base64 / base64url runs (12+ characters, mixed case) are decoded only when the bytes are
  UTF-8 and read as text (95% printable, a third letters or digits): images, hashes, random
  tokens and JWT signatures stay as they are; the decoded text replaces the whole run.
* percent-encoding, HTML entities (``&#53;``, ``&amp;``) and ``\\uXXXX`` / ``\\xXX`` escapes are
  replaced one by one.
* number words need a run of three or more, seven digits or more ("two cups flour, three eggs"
  is left alone); English, German, French, Spanish, Italian and Portuguese words.
* digit groups split by separators are joined only when 9-19 digits long and not shaped like an
  IPv4 address, a date or a version string.

Each finder costs a single regular-expression scan and a prefilter; ASCII prose without
encodings returns ``None`` (no second scan) in a few microseconds per 1,000 characters.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import functools
import html
import itertools
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass

from modelmix.guard._patterns import has_digit, windows

__all__ = ["DecodedView", "decode"]

#: Nested encodings undone at most this many times (base64 of a percent-encoded value...).
MAX_DEPTH = 2


@dataclass(frozen=True, slots=True)
class DecodedView:
    """A decoded copy of a text; ``starts[i]``/``ends[i]`` are the original span of ``text[i]``."""

    text: str
    starts: list[int]
    ends: list[int]
    #: Original ``(start, end)`` of every decoded run.
    changed: tuple[tuple[int, int], ...] = ()

    def span(self, start: int, end: int) -> tuple[int, int]:
        """Original ``(start, end)`` of the decoded span ``[start, end)``."""
        if start >= end:
            origin = self.starts[start] if start < len(self.starts) else self.ends[-1]
            return origin, origin
        return min(self.starts[start:end]), max(self.ends[start:end])

    def then(self, inner: DecodedView) -> DecodedView:
        """The view ``inner`` (decoded from this view's text) mapped to the original text.

        Each inner character takes the start of the first and the end of the last character
        it came from (runs of an outer view are in order, except reversed digits, which an
        inner view never decodes again)."""
        starts = _pick(self.starts, inner.starts)
        ends = _pick(self.ends, [end - 1 for end in inner.ends])
        changed = self.changed + tuple(self.span(s, e) for s, e in inner.changed)
        return DecodedView(inner.text, starts, ends, changed)

    def windows(self, pad: int) -> list[tuple[int, int]]:
        """Ranges of :attr:`text` within ``pad`` original characters of a decoded run, widened
        to whitespace: only there can the decoded copy hold something the original does not."""
        near: list[list[int]] = []
        for start, end in sorted(self.changed):
            if near and start - pad <= near[-1][1]:
                near[-1][1] = max(near[-1][1], end + pad)
            else:
                near.append([start - pad, end + pad])
        reach = list(itertools.accumulate(self.starts, max))  # monotone, for bisect
        ranges: list[tuple[int, int]] = []
        for low, high in near:
            start, end = bisect.bisect_left(reach, low), bisect.bisect_left(reach, high)
            if start >= end:
                continue
            if ranges and start <= ranges[-1][1]:
                ranges[-1] = (ranges[-1][0], max(end, ranges[-1][1]))
            else:
                ranges.append((start, end))
        return [(_widen_left(self.text, s), _widen_right(self.text, e)) for s, e in ranges]


def _pick(values: list[int], indices: list[int]) -> list[int]:
    if len(indices) == 1:
        return [values[indices[0]]]
    return list(operator.itemgetter(*indices)(values)) if indices else []


_SPACE = re.compile(r"\s")
#: How far a window is widened to reach whitespace (a cut inside a word could make a
#: fragment of a longer number look like an identifier).
_WIDEN = 200


def _widen_left(text: str, start: int) -> int:
    floor = max(0, start - _WIDEN)
    space = max(text.rfind(" ", floor, start), text.rfind("\n", floor, start))
    return space + 1 if space >= 0 else floor


def _widen_right(text: str, end: int) -> int:
    ceiling = min(len(text), end + _WIDEN)
    space = _SPACE.search(text, end, ceiling)
    return space.start() if space else ceiling


@dataclass(frozen=True, slots=True)
class _Sub:
    """Replace ``text[start:end]`` by ``out``; ``sources`` gives each output character's
    original span (default: the whole run)."""

    start: int
    end: int
    out: str
    sources: tuple[tuple[int, int], ...] | None = None
    #: The output may itself be encoded (base64 of a percent-encoded value...).
    nested: bool = False


def decode(text: str, depth: int = MAX_DEPTH) -> DecodedView | None:
    """The decoded view of ``text``, or ``None`` when nothing in it is encoded.

    >>> view = decode("ssn=536%2D22%2D8761")
    >>> view.text, view.span(4, 15)
    ('ssn=536-22-8761', (4, 19))
    >>> decode("five three six, two two, eight seven six one").text
    '536-22-8761'
    >>> decode("two cups flour, three eggs") is None
    True
    """
    return _decode(text, depth, reverse=True)


def _decode(text: str, depth: int, *, reverse: bool) -> DecodedView | None:
    """Escapes first (they may hide base64: ``\\/`` in JSON), then the rest on their result,
    then, when something decoded may itself be encoded, all of it again."""
    escapes = list(_escapes(text))
    view = _apply(text, escapes) if escapes else None
    current = view.text if view else text
    found = [*_base64_runs(current), *_hex_runs(current), *_number_words(current),
             *_split_digits(current), *_lookalike_digits(current), *_cjk_numerals(current),
             *_concatenated(current), *_scattered_ssn(current)]
    subs = _choose([*_reversed(current), *found] if reverse else found)
    if subs:
        view = view.then(_apply(current, subs)) if view else _apply(current, subs)
    if view is None:
        return None
    if depth > 1 and any(sub.nested for sub in (*escapes, *subs)):
        inner = _decode(view.text, depth - 1, reverse=False)  # never un-reverse twice
        if inner is not None:
            return view.then(inner)
    return view


def _choose(subs: list[_Sub]) -> list[_Sub]:
    """Non-overlapping substitutions, left to right; the longer run wins a tie."""
    chosen: list[_Sub] = []
    for sub in sorted(subs, key=lambda s: (s.start, s.start - s.end)):
        if chosen and sub.start < chosen[-1].end:
            continue
        chosen.append(sub)
    return chosen


def _apply(text: str, subs: list[_Sub]) -> DecodedView:
    parts: list[str] = []
    starts: list[int] = []
    ends: list[int] = []
    pos = 0
    for sub in subs:
        parts.append(text[pos:sub.start])
        starts.extend(range(pos, sub.start))
        ends.extend(range(pos + 1, sub.start + 1))
        parts.append(sub.out)
        sources = sub.sources or ((sub.start, sub.end),) * len(sub.out)
        starts.extend(s for s, _ in sources)
        ends.extend(e for _, e in sources)
        pos = sub.end
    parts.append(text[pos:])
    starts.extend(range(pos, len(text)))
    ends.extend(range(pos + 1, len(text) + 1))
    return DecodedView("".join(parts), starts, ends, tuple((s.start, s.end) for s in subs))


# --- percent-encoding, HTML entities, JSON / JavaScript escapes --------------------------------

# Percent-encoding, quoted-printable ("=XX", once three in a row show the text uses it), HTML
# entities, JSON / JavaScript escapes (``\\u0035``, ``\\x35``, ``\\/``).
# Each alternative starts with a literal, so the scan skips ahead to "%", "&", "\\" or "=".
_ESCAPES = (r"%[0-9A-Fa-f]{2}(?:%[0-9A-Fa-f]{2})*"
            r"|&(?:#\d{1,7}|#[xX][0-9A-Fa-f]{1,6}|[A-Za-z][A-Za-z0-9]{1,31});"
            r"|\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|/)(?:\\(?:u[0-9A-Fa-f]{4}|x[0-9A-Fa-f]{2}|/))*")
_ESCAPE = re.compile(_ESCAPES)
_ESCAPE_QP = re.compile(_ESCAPES + r"|=[0-9A-F]{2}(?:=[0-9A-F]{2})*")
_QUOTED_PRINTABLE = re.compile(r"=[0-9A-F]{2}=[0-9A-F]{2}=[0-9A-F]{2}")


def _escapes(text: str) -> Iterator[_Sub]:
    if "%" not in text and "&" not in text and "\\" not in text and "=" not in text:
        return
    pattern = _ESCAPE_QP if "=" in text and _QUOTED_PRINTABLE.search(text) else _ESCAPE
    for match in pattern.finditer(text):
        run = match.group()
        if run[0] == "&":
            found: Iterator[_Sub] = iter([_Sub(match.start(), match.end(), html.unescape(run),
                                               nested=True)])
        elif run[0] in "%=":
            found = _percent(run, match.start())
        else:
            found = _backslash(run, match.start())
        decoded = list(found)
        if _informative(text, match.start(), match.end(), "".join(s.out for s in decoded)):
            yield from decoded


def _informative(text: str, start: int, end: int, out: str) -> bool:
    """Whether decoding a run can change what is found: it yields letters or digits, or
    punctuation between digits ("536%2D22") or inside a base64 run (JSON's ``\\/``).
    "Tom &amp; Jerry" and "hello%20world" are left as they are (no second scan)."""
    if any(c.isalnum() for c in out):
        return True
    before, after = text[start - 1:start], text[end:end + 1]
    return before.isdigit() or after.isdigit() or (out == "/" and before.isalnum()
                                                   and after.isalnum())


def _percent(run: str, offset: int) -> Iterator[_Sub]:
    """``%XX`` (or quoted-printable ``=XX``) bytes."""
    raw = bytes(int(run[i + 1:i + 3], 16) for i in range(0, len(run), 3))
    if raw.isascii():  # one character per %XX: spans stay exact
        for index, byte in enumerate(raw):
            start = offset + 3 * index
            yield _Sub(start, start + 3, chr(byte), nested=True)
        return
    try:
        yield _Sub(offset, offset + len(run), raw.decode("utf-8"), nested=True)
    except UnicodeDecodeError:
        return


def _backslash(run: str, offset: int) -> Iterator[_Sub]:
    pieces = re.findall(r"\\u[0-9A-Fa-f]{4}|\\x[0-9A-Fa-f]{2}|\\/", run)
    if all(p == "\\/" or (len(p) == 6 and not 0xD800 <= int(p[2:], 16) < 0xE000)
           for p in pieces):
        position = offset
        for piece in pieces:
            out = "/" if piece == "\\/" else chr(int(piece[2:], 16))
            yield _Sub(position, position + len(piece), out, nested=True)
            position += len(piece)
        return
    try:  # surrogate pairs or \x bytes: decode the run as a whole
        out = run.replace("\\/", "/").encode("ascii").decode("unicode_escape").encode(
            "utf-16", "surrogatepass").decode("utf-16")
    except (UnicodeDecodeError, UnicodeEncodeError):
        return
    yield _Sub(offset, offset + len(run), out, nested=True)


# --- base64 ------------------------------------------------------------------------------------

# Greedy and without look-arounds, so a run is read once (linear time on any input).
_B64 = re.compile(r"[A-Za-z0-9+/_\-]{12,}={0,2}")
_URLSAFE = str.maketrans("-_", "+/")


def _base64_runs(text: str) -> Iterator[_Sub]:
    for match in _B64.finditer(text):
        run = match.group()
        if text[match.end():match.end() + 1] == "=":
            continue  # "key=value" or padding gone wrong, not one base64 run
        if run.isdigit() or (run.isalpha() and (run.islower() or run.isupper())):
            continue  # a number or a plain word; never base64 worth decoding
        if run.startswith("eyJ") and "." in text[match.start() - 1:match.end() + 1]:
            continue  # a JWT segment: the whole token is a credential already
        decoded = _b64_text(run)
        if decoded is not None:
            yield _Sub(match.start(), match.end(), decoded, nested=True)
            continue
        if "/" in run:  # a URL path: try its segments
            position = match.start()
            for segment in run.split("/"):
                if len(segment) >= 12 and (decoded := _b64_text(segment)) is not None:
                    yield _Sub(position, position + len(segment), decoded, nested=True)
                position += len(segment) + 1


# Hex-encoded text ("3533362d32322d38373631"), bytes maybe separated by spaces or colons.
_HEX = re.compile(r"[0-9A-Fa-f](?:(?<=0x.)|(?<![0-9A-Za-z].))[0-9A-Fa-f]"
                  r"(?:[ :]?[0-9A-Fa-f]{2}){8,}(?![0-9A-Za-z])")


def _hex_runs(text: str) -> Iterator[_Sub]:
    for match in _HEX.finditer(text):
        run = match.group()
        body = run.replace(" ", "").replace(":", "")
        if len(body) % 2 or (" " in run and ":" in run):
            continue
        try:
            decoded = bytes.fromhex(body).decode("utf-8")
        except (ValueError, UnicodeDecodeError):
            continue
        if _texty(decoded) and decoded.isascii():
            start = match.start()
            if text[start - 2:start] in ("0x", "0X"):  # the prefix goes with the run
                start, decoded = start - 2, " " + decoded
            yield _Sub(start, match.end(), decoded, nested=True)


def _b64_text(run: str) -> str | None:
    """The text ``run`` encodes in base64 or base64url, or ``None`` if it is not text."""
    body = run.rstrip("=").translate(_URLSAFE)
    if len(body) % 4 == 1:
        return None
    try:
        raw = base64.b64decode(body + "=" * (-len(body) % 4), validate=True)
        # UTF-16 (PowerShell's -EncodedCommand, .NET) has a zero byte after each ASCII letter
        decoded = raw.decode("utf-16-le" if raw[1::2].count(0) * 2 > len(raw) // 2 else "utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    return decoded if _texty(decoded) else None


def _texty(value: str) -> bool:
    """Whether decoded bytes read as text rather than binary or noise."""
    if len(value) < 6:
        return False
    printable = sum(1 for c in value if c.isprintable() or c in "\n\r\t")
    words = sum(1 for c in value if c.isalnum())
    return printable >= 0.95 * len(value) and words >= len(value) / 3


# --- number words -----------------------------------------------------------------------------

# Digits in English, German, French, Spanish, Italian, Portuguese and Dutch.
_UNITS: dict[str, int] = {word: digit for digit, words in enumerate((
    "zero oh o nought null zéro cero nul", "one eins un uno um een",
    "two zwei zwo deux dos due dois twee", "three drei trois tres tre três drie",
    "four vier quatre cuatro quattro quatro", "five fünf fuenf cinq cinco cinque vijf",
    "six sechs seis sei zes", "seven sieben sept siete sette sete zeven",
    "eight acht huit ocho otto oito", "nine neun neuf nueve nove negen",
)) for word in words.split()}
_TEENS = {"ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13, "fourteen": 14, "fifteen": 15,
          "sixteen": 16, "seventeen": 17, "eighteen": 18, "nineteen": 19}
_TENS = {"twenty": 2, "thirty": 3, "forty": 4, "fifty": 5, "sixty": 6, "seventy": 7,
         "eighty": 8, "ninety": 9}
_REPEAT = {"double": 2, "triple": 3}
_NUMBER_WORDS = frozenset((*_UNITS, *_TEENS, *_TENS, *_REPEAT, "hundred"))
_SEPARATOR_WORDS = ("dash", "hyphen", "tiret", "strich", "guion", "and")
# Words that suggest a spelled number ("and" and "o" are too common to count here).
_HINT_WORDS = (_NUMBER_WORDS | frozenset(_SEPARATOR_WORDS)) - {"and", "o"}
_WORD_OR_DIGITS = re.compile(r"[^\W\d_]+|\d{1,4}")
# Between two number words of a run: spaces, one separator, or a spelled separator.
_NUMBER_GAP = re.compile(rf"\s*(?:[,.;:|\-/]\s*|(?:{'|'.join(_SEPARATOR_WORDS)})\s+)?")


def _number_words(text: str) -> Iterator[_Sub]:
    lower = text.lower()
    words = lower.replace(",", " ").replace(".", " ").replace("-", " ").split()
    present = _HINT_WORDS.intersection(words)
    if not present or sum(1 for word in words if word in present) < 2:
        return  # the common case, decided quickly
    if len(lower) != len(text):  # a few characters lower-case to two: keep offsets aligned
        lower = "".join(c.lower() if len(c.lower()) == 1 else c for c in text)
    # Tokenise only near the number words the text holds (a long text may have two far apart).
    for start, end in windows(lower, _words_regex(frozenset(present)), 40, 40):
        run: list[re.Match[str]] = []
        for match in _WORD_OR_DIGITS.finditer(lower, start, end):
            word = match.group()
            if word not in _NUMBER_WORDS and not word.isdigit():
                continue
            if run and _NUMBER_GAP.fullmatch(lower, run[-1].end(), match.start()) is None:
                yield from _number_run(lower, run)
                run = []
            run.append(match)
        yield from _number_run(lower, run)


@functools.lru_cache(maxsize=256)
def _words_regex(words: frozenset[str]) -> re.Pattern[str]:
    return re.compile(rf"\b(?:{'|'.join(sorted(words, key=len, reverse=True))})\b")


def _number_run(lower: str, run: list[re.Match[str]]) -> Iterator[_Sub]:
    """The digits a run of number words spells, if it is long enough to be an identifier."""
    words = sum(1 for m in run if not m.group().isdigit())
    spelled_gaps = sum(1 for a, b in itertools.pairwise(run)
                       if lower[a.end():b.start()].strip(" \t,.;:|-/"))
    if words < 3 and (words + spelled_gaps < 2 or len(run) < 3):
        return
    out: list[str] = []
    sources: list[tuple[int, int]] = []
    index, previous_end = 0, run[0].start()
    while index < len(run):
        start = run[index].start()
        if lower[previous_end:start].strip():  # a comma, dash or "dash": one separator
            out.append("-")
            sources.append((previous_end, start))
        digits, index = _spelled(lower, run, index)
        previous_end = run[index - 1].end()
        out.append(digits)
        sources.extend([(start, previous_end)] * len(digits))
    if sum(len(part) for part in out if part != "-") < 7:
        return
    start = run[0].start()
    lead = _LINE_BREAK_BEFORE.search(lower, max(0, start - 8), start)
    if lead:  # "SSN:\nfive\nthree...": keep it on the cue's line
        out.insert(0, " ")
        sources.insert(0, (lead.start(), start))
        start = lead.start()
    yield _Sub(start, run[-1].end(), "".join(out), tuple(sources))


def _spelled(lower: str, run: list[re.Match[str]], index: int) -> tuple[str, int]:
    """Digits of the token at ``index`` (with the unit after "twenty" or "double"), and the
    index after it."""
    word = run[index].group()
    following = run[index + 1].group() if index + 1 < len(run) else ""
    joined = following in _UNITS and lower[run[index].end():run[index + 1].start()] in " -"
    if word in _TENS and joined:
        return f"{_TENS[word]}{_UNITS[following]}", index + 2
    if word in _UNITS and following == "hundred":  # "five hundred (and) thirty-six"
        after = index + 2
        if after < len(run) and run[after].group() in _BELOW_HUNDRED and (
                lower[run[after - 1].end():run[after].start()] in (" ", " and ")):
            rest, after = _spelled(lower, run, after)
            return f"{_UNITS[word]}{int(rest):02d}", after
        return f"{_UNITS[word]}00", after
    if word in _REPEAT:
        return (str(_UNITS[following]) * _REPEAT[word] if joined else ""), index + 1 + joined
    if word in _TENS:
        return f"{_TENS[word]}0", index + 1
    if word in _TEENS:
        return str(_TEENS[word]), index + 1
    if word == "hundred":
        return "00", index + 1
    return (str(_UNITS[word]) if word in _UNITS else word), index + 1


_BELOW_HUNDRED = frozenset((*_UNITS, *_TEENS, *_TENS))


# --- digits split or interleaved --------------------------------------------------------------

# Digit groups joined by one or two punctuation separators ("53.62.28.761", "4111_11/11|...").
_SPLIT = re.compile(r"\d(?<![\w.\-/]\d)\d{0,5}(?:(?:[._/|*~+\-]{1,2}|[ ]?[|/*_~][ ]?)\d{1,6}){2,}"
                    r"(?![\w]|[._/|*~+\-]\d)")
# Single digits one per line, or between one or two letters, "#" or "*" (one scan for both).
_VERTICAL_OR_INTERLEAVED = re.compile(r"\d(?<![\w.]\d)(?:(?:[ \t]*\r?\n[ \t]*\d(?![\w.]))+"
                                      r"|(?:[A-Za-z#*]{1,2}\d){8,18}(?!\w))")
# Digit groups of uneven sizes split by single spaces ("55 4 6447 952 233 3 13").
_SPACED_GROUPS = re.compile(r"\d(?<![\w.,\-/]\d)\d{0,4}(?: \d{1,5}){2,8}(?![\w]|[.,\-]\d)")
_NUMBER_CUE = re.compile(
    r"(?:card|visa|master|amex|ssn|social|security|phone|tel|call|cell|mobile|number|account"
    r"|acct|numéro|número|numero|nummer|karte|carte|tarjeta|carta|cart[ãa]o|no\.?|#)"
    r"[^\n\d]{0,30}$", re.IGNORECASE)
_IPV4 = re.compile(r"^\d{1,3}(?:\.\d{1,3}){3}$")
_DATE = re.compile(r"^(\d{1,4})([./\-])(\d{1,2})\2(\d{2}|\d{4})(?:[ T:.]\d{1,2})*$")


def _dateish(value: str) -> bool:
    """A date (``2024-01-15``, ``15.01.2024``, ``01/15/24``), maybe with a time after it."""
    match = _DATE.match(value)
    if match is None:
        return False
    first, second, last = int(match[1]), int(match[3]), int(match[4])
    if len(match[1]) == 4:
        return 1900 <= first <= 2099 and 1 <= second <= 12 and 1 <= last <= 31
    return 1 <= min(first, second) <= 12 and max(first, second) <= 31 and (
        len(match[4]) == 2 or 1900 <= last <= 2099)


def _ip(value: str) -> bool:
    return _IPV4.match(value) is not None and all(int(p) <= 255 for p in value.split("."))


# Groupings the patterns already read (SSN 3-2-4, NANP phones, cards 4-4-4-4 / 4-6-5, CPF),
# and ISBN-13s: no second scan for them.
_REGULAR = frozenset({(3, 2, 4), (3, 3, 4), (1, 3, 3, 4), (2, 3, 3, 4), (3, 3, 3, 4),
                      (4, 6, 4), (4, 6, 5), (3, 3, 3, 2)})
_GROUPS = re.compile(r"\d+")


def _regular(value: str) -> bool:
    if not all(c.isdigit() or c in " -." for c in value):
        return False
    groups = _GROUPS.findall(value)
    sizes = tuple(len(group) for group in groups)
    isbn = groups[0] in ("978", "979") and sum(sizes) == 13
    return sizes in _REGULAR or sizes[:3] == (4, 4, 4) or isbn


def _split_digits(text: str) -> Iterator[_Sub]:
    if not has_digit(text):
        return  # each pattern starts with a digit
    for pattern in (_SPLIT, _SPACED_GROUPS, _VERTICAL_OR_INTERLEAVED):
        for match in pattern.finditer(text):
            value = match.group()
            if not 9 <= len(_NOT_DIGITS.sub("", value)) <= 19:
                continue
            digits = [(i, c) for i, c in enumerate(value) if c.isdigit()]
            if pattern in (_SPLIT, _SPACED_GROUPS) and (_regular(value) or _ip(value)
                                                        or _dateish(value)):
                continue
            if pattern is _SPACED_GROUPS and (
                    text[max(0, match.start() - 2):match.start()].strip()[-1:] == "+"
                    or value.count(" ") == len(digits) - 1 or not _NUMBER_CUE.search(
                        text, max(0, match.start() - 50), match.start())):
                continue  # "+48 22 597 39 00" and "5 3 6 ..." are read already; uneven
                # spaced groups are a table row unless named as a number
            start = match.start()
            sources = tuple((start + i, start + i + 1) for i, _ in digits)
            out = "".join(c for _, c in digits)
            lead = _LINE_BREAK_BEFORE.search(text, max(0, start - 8), start)
            if "\n" in value and lead:  # "SSN:\n5\n3...": keep it on the cue's line
                out, sources = " " + out, ((lead.start(), start), *sources)
                start = lead.start()
            yield _Sub(start, match.end(), out, sources)


_NOT_DIGITS = re.compile(r"\D")
_LINE_BREAK_BEFORE = re.compile(r"[ \t]*\r?\n[ \t]*$")


# Letters written for digits inside digit groups ("508O 3144 O282", a Cyrillic Ze for 3).
# Latin, Cyrillic and Greek O -> 0; l, I and the Cyrillic palochka -> 1; Cyrillic Ze -> 3.
_LOOKALIKE_DIGITS = "Oo\u041e\u043e\u039f\u03bflI\u04c0\u0417\u0437"
_AS_DIGITS = str.maketrans(_LOOKALIKE_DIGITS, "00000011133")
_LOOKALIKE_HINT = re.compile(rf"\d(?:(?<=[{_LOOKALIKE_DIGITS}]\d)|[{_LOOKALIKE_DIGITS}])")
_DIGITISH = re.compile(rf"(?<![^\W\d_])\(?[0-9{_LOOKALIKE_DIGITS}]{{1,6}}"
                       rf"(?:(?:[ \-.]|\) ?)[0-9{_LOOKALIKE_DIGITS}]{{1,6}}){{0,6}}(?![^\W\d_])")


def _lookalike_digits(text: str) -> Iterator[_Sub]:
    if not has_digit(text):
        return  # the hint is a digit next to a look-alike
    for start, end in windows(text, _LOOKALIKE_HINT, 60, 60):
        yield from _lookalike_run(text, start, end)


def _lookalike_run(text: str, start: int, end: int) -> Iterator[_Sub]:
    for match in _DIGITISH.finditer(text, start, end):
        value = match.group()
        swapped = sum(1 for c in value if c in _LOOKALIKE_DIGITS)
        digits = sum(1 for c in value if c.isdigit())
        groups = re.split(r"[ \-.()]+", value.strip("("))
        if 1 <= swapped <= 3 and digits >= 6 and 9 <= digits + swapped <= 19 and all(
                any(c.isdigit() for c in group) for group in groups):
            start = match.start()
            yield _Sub(start, match.end(), value.translate(_AS_DIGITS),
                       tuple((start + i, start + i + 1) for i in range(len(value))))


# Chinese / Japanese numerals written digit by digit ("五三六-二二-八七六一").
_CJK_DIGITS = "〇零一二三四五六七八九"
_CJK_AS_DIGITS = str.maketrans(_CJK_DIGITS, "00123456789")
_CJK_RUN = re.compile(rf"[{_CJK_DIGITS}](?:[ \-\uff0d\u30fc\u3001\u30fb]?[{_CJK_DIGITS}]){{6,}}")


def _cjk_numerals(text: str) -> Iterator[_Sub]:
    if text.isascii():
        return
    for match in _CJK_RUN.finditer(text):
        value = match.group()
        out = "".join(c if c in _CJK_DIGITS else "-" for c in value).translate(_CJK_AS_DIGITS)
        start = match.start()
        yield _Sub(start, match.end(), out,
                   tuple((start + i, start + i + 1) for i in range(len(value))))


# Code that builds a value from pieces: "5" + "36-22" + '-8761' (the joins are dropped).
_JOIN = re.compile(r"([\"'])\s*\+\s*\1")


def _concatenated(text: str) -> Iterator[_Sub]:
    if "+" not in text:
        return
    for match in _JOIN.finditer(text):
        yield _Sub(match.start(), match.end(), "")


# An SSN told in parts: "the first three digits are 536, the next two 22 and the last four
# 8761" (the parts are put together in place of the sentence).
_SSN_PARTS = re.compile(
    r"first (?:three|3)\b[^\d\n]{0,40}?(\d{3})\b[^\d\n]{0,60}?(?:next|middle|then|following)"
    r" (?:two|2)\b[^\d\n]{0,40}?(\d{2})\b[^\d\n]{0,60}?(?:last|final) (?:four|4)\b"
    r"[^\d\n]{0,40}?(\d{4})\b", re.IGNORECASE)


def _scattered_ssn(text: str) -> Iterator[_Sub]:
    if ("irst" not in text and "IRST" not in text) or not has_digit(text):
        return
    for match in _SSN_PARTS.finditer(text):
        yield _Sub(match.start(1), match.end(3), f"{match[1]}-{match[2]}-{match[3]}")


_REVERSE_WORDS = ("revers", "backward", "rückwärts", "l'envers", "al rev", "al contrario",
                  "invertid", "ao contrário", "right to left", "invers")
_REVERSE_CUE = re.compile("|".join(map(re.escape, _REVERSE_WORDS)))
_DIGIT_RUN = re.compile(r"(?<![\w])\d[\d \-.]{7,30}\d(?![\w])")


# Right-to-left overrides and isolates: what follows is stored backwards but shown forwards.
_BIDI = re.compile("[\u202e\u2067]([^\u202c\u2069\n]*)")


def _reversed(text: str) -> Iterator[_Sub]:
    """Digit runs written backwards, when the text says so ("my SSN reversed is ..."), and
    text after a right-to-left override."""
    if "\u202e" in text or "\u2067" in text:
        for match in _BIDI.finditer(text):
            start, value = match.start(1), match.group(1)
            yield _Sub(match.start(), match.end(), value[::-1],
                       tuple((start + i, start + i + 1) for i in reversed(range(len(value)))))
    lower = text.lower()
    if len(lower) != len(text) or not any(word in lower for word in _REVERSE_WORDS) or (
            not has_digit(text)):
        return
    for cue in _REVERSE_CUE.finditer(lower):
        for match in _DIGIT_RUN.finditer(text, cue.start(), min(len(text), cue.end() + 120)):
            value = match.group().strip()
            if 9 <= sum(c.isdigit() for c in value) <= 19:
                start = match.start()
                yield _Sub(start, start + len(value), value[::-1],
                           tuple((start + i, start + i + 1) for i in reversed(range(len(value)))))
