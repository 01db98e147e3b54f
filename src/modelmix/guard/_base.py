"""The contract between sensitive-data detection and its users (policy, actions,
audit, the scan command). Implementations live beside this module."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

__all__ = ["DataClass", "Detector", "Entity"]


class DataClass(StrEnum):
    """How sensitive a request is, lowest to highest."""

    PUBLIC = "public"
    INTERNAL = "internal"
    CONFIDENTIAL = "confidential"
    REGULATED = "regulated"

    @property
    def rank(self) -> int:
        return list(DataClass).index(self)


@dataclass(frozen=True, slots=True)
class Entity:
    """One detected sensitive span.

    Attributes:
        type: entity type, upper snake case (``EMAIL_ADDRESS``, ``PHONE_NUMBER``, ``US_SSN``,
            ``CREDIT_CARD``, ``IBAN_CODE``, ``PERSON``, ``LOCATION``, ``MEDICAL_RECORD_NUMBER``,
            ``API_KEY``...; the detector documents its full list).
        start / end: character offsets into the scanned text (end exclusive).
        score: detector confidence in [0, 1].
    """

    type: str
    start: int
    end: int
    score: float = 1.0


class Detector(Protocol):
    """Finds sensitive entities in text. Scans the whole text, never a prefix."""

    def detect(self, text: str) -> list[Entity]:
        """Entities in ``text``, sorted by start offset, non-overlapping."""
        ...

    def detect_many(self, texts: Sequence[str]) -> list[list[Entity]]:
        """``detect`` for each text, in order."""
        ...

    def classify(self, entities: Sequence[Entity]) -> DataClass:
        """The data class a text with these entities falls in."""
        ...
