"""A policy's own entity patterns: ad-hoc recognizers declared in the policy file.

The built-in detector knows personal, financial, health and credential types
(:data:`~modelmix.guard.ENTITY_TYPES`); a trade's own secrets (part numbers, supplier
prices, internal host names) it cannot know, and adding them to it would change every
policy. So a policy may declare patterns under ``patterns:``, like Presidio's ad-hoc
recognizers; each name becomes an entity type that the policy's rules can name like a
built-in one:

.. code-block:: yaml

    patterns:
      PART_NUMBER:
        regex: '\\b[A-Z]{2,4}-\\d{3,6}(?:-[A-Z0-9]{1,4})?\\b'
        context: [part, "p/n", sku]   # optional: counts only with one of these words near
        score: 0.8                    # optional (default 0.7)
      INTERNAL_HOST:                  # a list: several patterns for one type
        - regex: '(?i)\\b[a-z0-9-]+(?:\\.[a-z0-9-]+)*\\.(?:internal|corp|lan)\\b'
        - regex: '\\b[a-z]+(?:-[a-z0-9]+){1,4}\\b'
          context: [host, server, ssh]

:class:`PatternSpec` validates and compiles one pattern when the policy loads;
:class:`PolicyPatterns` runs the patterns of one or several (stacked) policies over a
text; :class:`PatternDetector` adds them to any :class:`~modelmix.guard.Detector`, so the
guard's screening (texts, straddling, key context, overlaps, placeholders, audit) treats
their entities like the detector's own.

Example::

    patterns = PolicyPatterns([load_policy("manufacturing").patterns])
    [e.type for e in patterns.find("P/N HX-4410-B from Acme at $41.20 per unit")]
    # ['PART_NUMBER', 'SUPPLIER_PRICE']
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, StringConstraints, field_validator

from modelmix.guard._base import DataClass, Detector, Entity
from modelmix.guard._detect import ENTITY_TYPES, resolve_overlaps
from modelmix.guard._normalize import normalize
from modelmix.guard._regex_check import nested_repeat

__all__ = [
    "CONTEXT_CHARS",
    "DEFAULT_PATTERN_SCORE",
    "ContextWords",
    "PatternDetector",
    "PatternSpec",
    "PolicyPatterns",
    "check_pattern_names",
]

#: Characters either side of a match within which one of its context words must start or end.
CONTEXT_CHARS = 40
#: Score of a policy pattern's entities unless it sets ``score``.
DEFAULT_PATTERN_SCORE = 0.7
#: Endings a context word may take (``quote`` finds ``quoted``, ``part`` finds ``parts``).
_INFLECTIONS = "(?:s|es|d|ed|ing)?"
_NAME = re.compile(r"^[A-Z][A-Z0-9_]{0,39}$")

_ContextWord = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1,
                                                max_length=40)]


class PatternSpec(BaseModel):
    """One entity pattern of a policy, compiled when the policy loads.

    Attributes:
        regex: a Python regular expression; the whole match is the entity. Refused when
            it does not compile, matches the empty string or nests unbounded repeats
            (:func:`~modelmix.guard._regex_check.nested_repeat`).
        context: words of which one must occur within :data:`CONTEXT_CHARS` characters
            of a match (case-insensitive, whole words with an -s/-es/-d/-ed/-ing ending
            allowed; the match itself counts); None: every match counts.
        score: the entities' confidence; overlaps with the detector's entities are
            resolved as the detector resolves its own (higher score, then longer span).
        extends_builtin: the pattern's name is a built-in type on purpose (its matches
            add to that type); without it a built-in name is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    regex: str = Field(min_length=1, max_length=1000)
    context: tuple[_ContextWord, ...] | None = Field(default=None, min_length=1,
                                                      max_length=50)
    score: float = Field(default=DEFAULT_PATTERN_SCORE, gt=0, le=1)
    extends_builtin: bool = False
    _regex: re.Pattern[str] = PrivateAttr()
    _context: ContextWords | None = PrivateAttr(default=None)

    @field_validator("regex")
    @classmethod
    def _safe_regex(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        risk = nested_repeat(value)
        if risk is not None:
            raise ValueError(risk)
        if compiled.fullmatch("") is not None:
            raise ValueError("the regular expression matches the empty string")
        return value

    def model_post_init(self, context: Any) -> None:
        self._regex = re.compile(self.regex)
        self._context = ContextWords.of(self.context) if self.context else None

    @property
    def compiled(self) -> re.Pattern[str]:
        """The compiled ``regex``."""
        return self._regex

    @property
    def context_words(self) -> ContextWords | None:
        """The compiled ``context`` (None: every match counts)."""
        return self._context


@dataclass(frozen=True, slots=True)
class ContextWords:
    """A pattern's context words, looked up in lower-cased text.

    Case-insensitive regexes with look-arounds are slow in Python's ``re`` (hundreds of
    microseconds per 1,000 characters for twenty words), so the words are found with a
    plain alternation over a lower-cased copy of the text, near each match only, and
    their word boundaries are checked here. A text holding none of the words' first
    pieces as a substring skips the pattern altogether (:meth:`anywhere`).

    Attributes:
        regex: the lower-case words (spaces: any run of white space), longest first,
            each with an optional -s/-es/-d/-ed/-ing ending.
        pieces: each word's first piece: a substring of every text holding the word.
        reach: how far either side of a match a counting word may begin or end.
    """

    regex: re.Pattern[str]
    pieces: tuple[str, ...]
    reach: int

    @classmethod
    def of(cls, words: Iterable[str]) -> ContextWords:
        unique = sorted({w.lower() for w in words}, key=len, reverse=True)
        body = "|".join(r"\s+".join(map(re.escape, w.split())) for w in unique)
        return cls(re.compile(f"(?:{body}){_INFLECTIONS}"),
                   tuple(sorted({w.split()[0] for w in unique})),
                   CONTEXT_CHARS + len(unique[0]) + len("ing") + 1)

    def anywhere(self, lower: str) -> bool:
        """Whether ``lower`` may hold a word at all (a quick substring test)."""
        return any(piece in lower for piece in self.pieces)

    def near(self, lower: str, start: int, end: int) -> bool:
        """Whether a whole word lies within :data:`CONTEXT_CHARS` of ``[start, end)``
        (the span itself included); ``lower`` is the lower-cased text."""
        stop = min(len(lower), end + self.reach)  # past any counting word's last letter
        for cue in self.regex.finditer(lower, max(0, start - self.reach), stop):
            if (cue.end() >= start - CONTEXT_CHARS and cue.start() <= end + CONTEXT_CHARS
                    and _whole_word(lower, cue.start(), cue.end())):
                return True
        return False


def _whole_word(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is not part of a longer word (a word that begins or
    ends with punctuation, ``/unit``, needs no boundary on that side)."""
    if text[start].isalnum() and start > 0 and text[start - 1].isalnum():
        return False
    return not (text[end - 1].isalnum() and end < len(text) and text[end].isalnum())


def check_pattern_names(patterns: Mapping[str, Sequence[PatternSpec]]) -> None:
    """Refuse names that are not upper snake case (at most 40 characters), empty lists,
    and names that shadow a built-in entity type without ``extends_builtin``.

    Raises:
        ValueError: naming the pattern and the problem.
    """
    for name, specs in patterns.items():
        if not _NAME.match(name):
            raise ValueError(f'pattern "{name}": the name must be upper snake case of at '
                             "most 40 characters, e.g. PART_NUMBER")
        if not specs:
            raise ValueError(f'pattern "{name}": needs a regex (or a list of patterns)')
        builtin = name in ENTITY_TYPES
        for spec in specs:
            if builtin and not spec.extends_builtin:
                raise ValueError(f'pattern "{name}": shadows the built-in entity type {name}; '
                                 "choose another name, or set extends_builtin: true to add "
                                 "its matches to the built-in type")
            if spec.extends_builtin and not builtin:
                raise ValueError(f'pattern "{name}": extends_builtin is set but {name} is not '
                                 "a built-in entity type")


@dataclass(frozen=True, slots=True)
class _Compiled:
    type: str
    regex: re.Pattern[str]
    context: ContextWords | None
    score: float


class PolicyPatterns:
    """The entity patterns of one or more policies, ready to run on request texts.

    Args:
        tables: each policy's ``patterns`` (a stacked guard passes every policy's);
            a pattern two policies declare alike runs once.

    Attributes:
        types: the entity types only these patterns report (built-in types that a
            pattern extends are not among them).
    """

    def __init__(self, tables: Iterable[Mapping[str, Sequence[PatternSpec]]]) -> None:
        seen: set[tuple[str, PatternSpec]] = set()
        compiled: list[_Compiled] = []
        for table in tables:
            for name, specs in table.items():
                for spec in specs:
                    if (name, spec) not in seen:
                        seen.add((name, spec))
                        compiled.append(_Compiled(name, spec.compiled, spec.context_words,
                                                  spec.score))
        self._patterns = tuple(compiled)
        self.types = frozenset(p.type for p in compiled if p.type not in ENTITY_TYPES)

    def __repr__(self) -> str:
        return f"PolicyPatterns({sorted({p.type for p in self._patterns})})"

    def __len__(self) -> int:
        return len(self._patterns)

    def find(self, text: str) -> list[Entity]:
        """Every pattern's entities in ``text`` (read normalised, as the detector reads
        it, when it holds anything but ASCII), offsets into ``text``; any order, overlaps
        allowed."""
        if not self._patterns or not text:
            return []
        normalized = None if text.isascii() else normalize(text)
        scan = text if normalized is None else normalized.text
        lower = _lower(scan)
        found = []
        for pattern in self._patterns:
            context = pattern.context
            if context is not None and not context.anywhere(lower):
                continue
            for match in pattern.regex.finditer(scan):
                start, end = match.span()
                if start == end or (context is not None and not context.near(lower, start, end)):
                    continue
                if normalized is not None:
                    start, end = normalized.span(start, end)
                found.append(Entity(pattern.type, start, end, pattern.score))
        return found


def _lower(text: str) -> str:
    """``text`` lower-cased, keeping its length (a character whose lower case is longer,
    as "İ", stays as it is)."""
    lower = text.lower()
    if len(lower) == len(text):
        return lower
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


class PatternDetector:
    """A :class:`~modelmix.guard.Detector` that adds policy patterns to another one.

    The inner detector runs exactly as before (once per text); the patterns' entities
    are merged into its result the way the built-in detector resolves overlaps. Only
    the inner detector classifies, and only the types it knows: a pattern's own type
    raises a request's class through the policy's ``entity_classes``.
    """

    def __init__(self, inner: Detector, patterns: PolicyPatterns) -> None:
        self.inner = inner
        self.patterns = patterns

    def __repr__(self) -> str:
        return f"PatternDetector({self.inner!r}, {self.patterns!r})"

    def detect(self, text: str) -> list[Entity]:
        return self._merge(text, self.inner.detect(text))

    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        found = self.inner.detect_many(texts)
        return [self._merge(text, ents) for text, ents in zip(texts, found, strict=True)]

    def classify(self, entities: Sequence[Entity]) -> DataClass:
        own = self.patterns.types
        return self.inner.classify([e for e in entities if e.type not in own])

    def _merge(self, text: str, detected: list[Entity]) -> list[Entity]:
        extra = self.patterns.find(text)
        return resolve_overlaps([*detected, *extra]) if extra else detected
