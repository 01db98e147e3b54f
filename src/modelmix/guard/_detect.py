"""The guard's detector: normalise, run every recognizer over the whole text, resolve overlaps,
map spans back to the original text.

Layers (all read the full text, however long; nothing is truncated):

1. :mod:`._normalize` folds full-width digits, look-alike letters, odd spaces and dashes and
   zero-width characters, keeping a map back to original offsets. :mod:`._decode` undoes
   base64, percent-encoding, HTML entities, ``\\u`` escapes, number words and split digits
   into a second copy, scanned around each decoded run; what it holds is reported on the
   original run.
2. Pattern recognizers with validation (:mod:`._recognizers`, :mod:`._phone`,
   :mod:`._secrets`): Luhn, IBAN mod 97, SSN rules, ``phonenumbers``, cues.
3. Names, addresses and health terms without a neural model (:mod:`._names`,
   :mod:`._address`, :mod:`._medical`): gazetteers, street grammars, cues.
4. Optionally (``ner="presidio"``) Presidio's spaCy NER for person names (:mod:`._presidio`).
   It costs ~40 ms per 1,000 characters on a 2-core CPU, so the gateway default is off.

Overlaps are resolved greedily: higher score first, then longer span.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from modelmix.guard import (
    _address,
    _id_numbers,
    _medical,
    _names,
    _phone,
    _recognizers,
    _secrets,
)
from modelmix.guard._base import DataClass, Entity
from modelmix.guard._classify import DEFAULT_RULES, ClassificationRules, classify
from modelmix.guard._decode import decode
from modelmix.guard._normalize import normalize
from modelmix.guard._patterns import RECOGNIZERS

__all__ = ["ENTITY_TYPES", "DetectorConfig", "GuardDetector", "load_detector", "resolve_overlaps"]

# Importing the recognizer modules registers them; keep the names referenced.
_MODULES = (_address, _id_numbers, _medical, _names, _phone, _recognizers, _secrets)

#: Every entity type the detector can report.
ENTITY_TYPES: tuple[str, ...] = tuple(sorted({t for cls in RECOGNIZERS.values()
                                              for t in cls.types}))

NerMode = Literal["none", "presidio"]


class _Finder(Protocol):
    def find(self, text: str) -> Iterable[Entity]: ...


@dataclass(frozen=True, slots=True, kw_only=True)
class DetectorConfig:
    """How the detector is built.

    Attributes:
        recognizers: names from :data:`~modelmix.guard._patterns.RECOGNIZERS` to run
            (default: all).
        ner: ``"presidio"`` adds Presidio + spaCy person names (slow: tens of ms per 1,000
            characters); ``"none"`` (default) keeps the guard within a few ms.
        min_score: entities scoring below this are dropped.
        rules: data-class rules for :meth:`GuardDetector.classify`.
    """

    recognizers: tuple[str, ...] | None = None
    ner: NerMode = "none"
    min_score: float = 0.5
    rules: ClassificationRules = field(default=DEFAULT_RULES)


class GuardDetector:
    """Finds sensitive entities; implements :class:`~modelmix.guard.Detector`.

    >>> detector = GuardDetector()
    >>> [e.type for e in detector.detect("Mail jane.doe@example.com, SSN 123-45-6780")]
    ['EMAIL_ADDRESS', 'US_SSN']
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        names = self.config.recognizers or tuple(RECOGNIZERS)
        unknown = sorted(set(names) - set(RECOGNIZERS))
        if unknown:
            raise ValueError(f"unknown recognizers {unknown}; known: {sorted(RECOGNIZERS)}")
        self._finders: list[_Finder] = [RECOGNIZERS[name]() for name in names]
        if self.config.ner == "presidio":
            from modelmix.guard._presidio import PresidioNer

            self._finders.append(PresidioNer())
        self.detect(_WARM_UP)  # imports phonenumbers and fills caches before the first request

    def __repr__(self) -> str:
        return f"GuardDetector(ner={self.config.ner!r}, min_score={self.config.min_score})"

    def detect(self, text: str) -> list[Entity]:
        """Entities in ``text``, sorted by start, non-overlapping, offsets into ``text``."""
        if not text:
            return []
        found = self._scan(text)
        view = decode(text)
        if view is not None:  # what an encoded run holds is reported on the whole run
            for start, end in view.windows(_DECODED_CONTEXT):
                found += [Entity(e.type, *view.span(start + e.start, start + e.end), e.score)
                          for e in self._scan(view.text[start:end])]
        return resolve_overlaps(_tie_names(_tie_health(found, self.config.rules)))

    def _scan(self, text: str) -> list[Entity]:
        """Every finder's entities in ``text`` (normalised), offsets into ``text``."""
        normalized = normalize(text)
        found = [entity for finder in self._finders for entity in finder.find(normalized.text)
                 if entity.score >= self.config.min_score or entity.type in _HEALTH]
        if normalized.source is None:
            return found
        return [Entity(e.type, *normalized.span(e.start, e.end), e.score) for e in found]

    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """:meth:`detect` for each text, in order."""
        return [self.detect(text) for text in texts]

    def classify(self, entities: Sequence[Entity]) -> DataClass:
        """The data class of a text with ``entities`` (see :mod:`._classify`)."""
        return classify(entities, self.config.rules)


_HEALTH = frozenset({"MEDICAL_CONDITION", "MEDICATION"})
#: Characters of context around a decoded run that the second scan reads (cues such as
#: "SSN" before an encoded value; the recognizers look at most 60 characters back).
_DECODED_CONTEXT = 120
_WARM_UP = "Call Dr. Jane Roe on +1 415 555 0132 or 020 7946 0958 about MRN 1234567."


def _tie_health(found: list[Entity], rules: ClassificationRules) -> list[Entity]:
    """Keep health terms near a personal cue, or all of them when someone is identified."""
    if not any(e.type in _HEALTH for e in found):
        return found
    identified = any(e.type in rules.identifying_types for e in found)
    return [e for e in found if e.type not in _HEALTH or identified
            or e.score >= _medical.TIED_SCORE]


def _tie_names(found: list[Entity]) -> list[Entity]:
    """Drop gazetteer-only names unless the text also holds other personal data."""
    if any(e.type != "PERSON" for e in found):
        return found
    return [e for e in found if e.type != "PERSON" or e.score > _names.UNCUED_SCORE]


def resolve_overlaps(found: list[Entity]) -> list[Entity]:
    """Greedy non-overlapping selection: higher score first, then longer span; sorted by
    start. Policy patterns (:mod:`._policy_patterns`) are merged with the detector's
    entities the same way."""
    starts: list[int] = []
    kept: list[Entity] = []
    for entity in sorted(found, key=lambda e: (-e.score, e.start - e.end, e.start)):
        if entity.end <= entity.start:
            continue
        index = bisect.bisect_left(starts, entity.start)
        if index > 0 and kept[index - 1].end > entity.start:
            continue
        if index < len(kept) and kept[index].start < entity.end:
            continue
        starts.insert(index, entity.start)
        kept.insert(index, entity)
    return kept


def load_detector(*, ner: NerMode = "none", rules: ClassificationRules | None = None,
                  recognizers: tuple[str, ...] | None = None) -> GuardDetector:
    """The guard's detector, ready to use.

    Args:
        ner: ``"presidio"`` adds Presidio's spaCy NER (needs the ``guard`` extra; slow).
        rules: data-class rules (default :data:`~modelmix.guard.DEFAULT_RULES`).
        recognizers: subset of recognizer names to run (default: all).

    >>> detector = load_detector()
    >>> entities = detector.detect("Card 4111 1111 1111 1111")
    >>> detector.classify(entities)
    <DataClass.REGULATED: 'regulated'>
    """
    return GuardDetector(DetectorConfig(recognizers=recognizers, ner=ner,
                                        rules=rules or DEFAULT_RULES))
