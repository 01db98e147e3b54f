"""The recognizer contract and the helpers the pattern recognizers share.

A recognizer reads the *normalised* text (see :mod:`._normalize`) and yields spans in its
coordinates; the detector maps them back to the original text. One abstract method, ``find``,
and a registry, as for every extension point in modelmix.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from typing import ClassVar

from modelmix.guard._base import Entity

__all__ = [
    "RECOGNIZERS",
    "Anchored",
    "Recognizer",
    "anchors_of",
    "cue_regex",
    "digits_of",
    "gated",
    "has_digit",
    "preceded_by_word",
    "register",
    "ungated",
    "windows",
    "word_index",
]


class Recognizer(ABC):
    """Finds one family of entities in normalised text."""

    name: ClassVar[str] = ""
    #: Entity types this recognizer may return.
    types: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def find(self, text: str) -> Iterator[Entity]:
        """Entities in ``text`` (normalised), any order, overlaps allowed."""


RECOGNIZERS: dict[str, type[Recognizer]] = {}


def register(cls: type[Recognizer]) -> type[Recognizer]:
    """Class decorator: add ``cls`` to :data:`RECOGNIZERS` under ``cls.name``."""
    RECOGNIZERS[cls.name] = cls
    return cls


_NON_DIGIT = re.compile(r"\D")


def digits_of(value: str) -> str:
    """``value`` with everything but ASCII digits removed."""
    return _NON_DIGIT.sub("", value)


_DIGIT = re.compile(r"\d")
#: Off inside :func:`ungated`: every gate then says "run" (tests compare both paths).
_GATED: ContextVar[bool] = ContextVar("modelmix_guard_gated", default=True)


def gated() -> bool:
    """Whether gates may skip scans: ``False`` inside :func:`ungated`. A recognizer with its
    own precondition (a literal the pattern needs) writes ``if not gated() or ...``."""
    return _GATED.get()


def has_digit(text: str) -> bool:
    """Whether ``text`` holds a character ``\\d`` matches (an ASCII or other Unicode decimal
    digit): the gate of every pattern that needs one. Always ``True`` inside :func:`ungated`.

    A gate only skips a scan that could match nothing, so it never changes what is found;
    ``re`` scanning for ``\\d`` tests every character's Unicode category (~18 µs per 400
    characters, as much as a whole pattern), ten substring searches take ~1 µs.
    """
    return not _GATED.get() or _has_digit(text)


@lru_cache(maxsize=4)
def _has_digit(text: str) -> bool:
    """Memoised so that the recognizers gating on one text share one answer."""
    if any(digit in text for digit in "0123456789"):
        return True
    return not text.isascii() and _DIGIT.search(text) is not None


@contextmanager
def ungated() -> Iterator[None]:
    """Within this block, every gate (:func:`has_digit`) lets its scan run."""
    token = _GATED.set(False)
    try:
        yield
    finally:
        _GATED.reset(token)


def preceded_by_word(text: str, start: int, extra: str = "") -> bool:
    """Whether ``text[start - 1]`` is a word character or one of ``extra``.

    Patterns check their left boundary here instead of with a leading look-behind, which would
    stop ``re`` from skipping quickly to positions where the first character can match.
    """
    if start == 0:
        return False
    before = text[start - 1]
    return before.isalnum() or before == "_" or before in extra


def windows(text: str, hint: re.Pattern[str], before: int, after: int) -> Iterator[tuple[int, int]]:
    """Merged ``(start, end)`` windows of ``text`` around each match of a cheap ``hint``."""
    current: tuple[int, int] | None = None
    for match in hint.finditer(text):
        start, end = max(0, match.start() - before), min(len(text), match.end() + after)
        if current and start <= current[1]:
            current = (current[0], end)
            continue
        if current:
            yield current
        current = (start, end)
    if current:
        yield current


def _split_top(alternation: str) -> list[str]:
    """Split a regex alternation at its top-level ``|``."""
    parts, depth, current, escaped, in_class = [], 0, [], False, False
    for char in alternation:
        if escaped:
            current.append(char)
            escaped = False
            continue
        if char == "\\":
            escaped = True
        elif char == "[":
            in_class = True
        elif char == "]":
            in_class = False
        elif char == "(" and not in_class:
            depth += 1
        elif char == ")" and not in_class:
            depth -= 1
        elif char == "|" and depth == 0 and not in_class:
            parts.append("".join(current))
            current = []
            continue
        current.append(char)
    parts.append("".join(current))
    return parts


_LITERAL = re.compile(r"(?:[^\W_]|[ '/#\-]|\\[.#/-])+")


def anchors_of(alternation: str) -> tuple[str, ...]:
    r"""The lower-case literal prefix of each alternative of ``alternation``.

    >>> anchors_of(r"mrn|medical record|pt\.? id")
    ('medical record', 'mrn', 'pt')
    """
    anchors = set()
    for alternative in _split_top(alternation):
        alternative = alternative.removeprefix("\\b")
        match = _LITERAL.match(alternative)
        prefix = match.group().replace("\\", "") if match else ""
        rest = alternative[match.end():] if match else alternative
        if rest[:1] in ("?", "*", "{"):
            prefix = prefix[:-1]
        if len(prefix.strip()) < 2:
            raise ValueError(f"cue alternative {alternative!r} has no literal prefix to anchor on")
        anchors.add(prefix.lower())
    return tuple(sorted(anchors))


_WORDS = re.compile(r"[^\W_]+")


@lru_cache(maxsize=2)
def word_index(lower: str) -> tuple[dict[str, list[int]], dict[str, list[str]]]:
    """Start offsets of each word of ``lower``, and the words by their first four characters.

    Memoised so that the recognizers scanning one text share one index.
    """
    index: dict[str, list[int]] = {}
    for match in _WORDS.finditer(lower):
        index.setdefault(match.group(), []).append(match.start())
    by_prefix: dict[str, list[str]] = {}
    for word in index:
        if len(word) >= 4:
            by_prefix.setdefault(word[:4], []).append(word)
    return index, by_prefix


class Anchored:
    """A case-insensitive regex tried only where one of its literal anchors starts a word.

    Python's ``re`` tries every alternative of a long cue list at every position of the text;
    looking the anchors up in a word index and matching only there is 10-50x faster on long
    texts. The regex must start with the alternation the anchors come from. An anchor of four
    or more characters matches words it begins (``licen`` finds ``license``); a shorter one
    matches whole words only.
    """

    def __init__(self, pattern: str, anchors: tuple[str, ...]) -> None:
        self.regex = re.compile(pattern, re.IGNORECASE)
        self.keys = tuple(sorted({_WORDS.match(a).group() for a in anchors  # type: ignore[union-attr]
                                  if _WORDS.match(a)}))
        self._exact = tuple(k for k in self.keys if len(k) < 4)
        self._prefixes = tuple(k for k in self.keys if len(k) >= 4)
        self._exact_set = frozenset(self._exact)
        self._by_head: dict[str, tuple[str, ...]] = {}
        for key in self._prefixes:
            self._by_head[key[:4]] = (*self._by_head.get(key[:4], ()), key)

    def _positions(self, lower: str) -> list[int]:
        """Start offsets of the words an anchor matches: exact anchors by set
        intersection, prefix anchors only under the four-character heads the text and
        the anchors share (dictionary-key intersections run in C)."""
        index, by_prefix = word_index(lower)
        positions = [p for key in self._exact_set & index.keys() for p in index[key]]
        by_head = self._by_head
        for head in by_prefix.keys() & by_head.keys():
            keys = by_head[head]
            for word in by_prefix[head]:
                if any(word.startswith(k) for k in keys):
                    positions.extend(index[word])
        return sorted(set(positions))

    def finditer(self, text: str) -> Iterator[re.Match[str]]:
        """Non-overlapping matches, left to right."""
        lower = text.lower()
        if len(lower) != len(text):  # a few characters lower-case to two; scan plainly
            yield from self.regex.finditer(text)
            return
        end = -1
        for position in self._positions(lower):
            if position < end:
                continue
            match = self.regex.match(text, position)
            if match:
                end = match.end()
                yield match


def cue_regex(cues: str, value: str, *, gap: int = 24) -> Anchored:
    """``cues`` then, within ``gap`` characters of filler (no newline run), a ``value`` group.

    The filler is lazy and may hold short linking words (``"MRN for this patient is"``), so the
    value is the first thing after the cue that fits ``value``.
    """
    return Anchored(
        rf"(?:{cues})(?![a-z])[^\n\d]{{0,{gap}}}?(?<![A-Za-z0-9])(?P<value>{value})(?![A-Za-z0-9])",
        anchors_of(cues),
    )
