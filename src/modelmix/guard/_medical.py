"""Diagnoses and medications, reported only when tied to a person.

A lexicon hit (``data/conditions.txt``, ``data/medications.txt``) is tied to a person when a
personal cue stands in the same stretch of text (about one sentence either side: "I", "my",
"she", "patient", "diagnosed", "prescribed", "taking", "Rx"...). Such hits score
:data:`TIED_SCORE`; other hits score :data:`UNTIED_SCORE` and the detector keeps them only when
the text also identifies someone (a name, an MRN, an SSN...). "Metformin treats type 2 diabetes"
alone is general knowledge, not PHI (HIPAA: health information is PHI when it identifies, or
can identify, the individual).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelmix.guard._base import Entity
from modelmix.guard._lexicon import load_words
from modelmix.guard._patterns import Recognizer, register

__all__ = ["TIED_SCORE", "UNTIED_SCORE", "MedicalRecognizer"]

TIED_SCORE = 0.8
UNTIED_SCORE = 0.45
_WINDOW = 120  # characters either side searched for a personal cue
_PERSONAL = re.compile(
    r"\b(?:i|i'm|i've|i'd|my|mine|he|she|his|her|him|they|their|patient|pt|client|member|"
    r"son|daughter|wife|husband|mother|father|mom|dad|diagnosed|diagnosis|prescribed|prescription|"
    r"taking|takes|took|started on|dose|suffers?|suffering|history of|hx|dx|rx|mg|mcg|"
    r"ich|mein|meine|meiner|je|mon|ma|mes|yo|mi|mis|io|paziente|paciente|patiente|patientin|"
    r"er|sie|il|elle|él|ella|lui|lei|admitted|admission|discharged?|"
    r"\d{1,3}\s?(?:[mf]|yo|y/o))\b",
    re.IGNORECASE,
)
# "JOHN DOE, 45, HIV POSITIVE": an age in apposition.
_AGE = re.compile(r"[^\W\d_],\s*\d{1,3}\s*,")
# "ahmed hassan has hypertension", "Adebayo Ogunlesi was admitted with malaria": someone
# (one to three words that are not a generic subject) has the condition. Matched on the
# text just before a lexicon hit.
_SUBJECT_HAS = re.compile(
    r"\b(?P<subject>[^\W\d_][\w'\-]*(?:\s+[^\W\d_][\w'\-]*){0,2})\s+"
    r"(?:has|had|has had|got|developed|contracted|caught|was diagnosed with|"
    r"is diagnosed with|(?:was|is|got) admitted (?:with|for)|tem|tiene|hat)\s+"
    r"(?:(?:a|an|acute|chronic|severe|mild|early|late|advanced|stage \w+)\s+){0,2}$",
    re.IGNORECASE,
)
_GENERIC_SUBJECT = frozenset(
    "the a an this that these those it which what who whoever everyone everybody anyone "
    "anybody someone somebody nobody no one each every any some many most few people "
    "patients adults children men women population nobody if whether when who's".split())


_WORD = re.compile(r"[a-z\u00e0-\u00ff][a-z\u00e0-\u00ff'\-]*")


# Conditions and drugs outside the lexicon, recognised by the phrase that introduces them.
_DIAGNOSIS = re.compile(
    r"\b(?:diagnosed with|diagnosis of|suffers from|suffering from|treated for|history of|"
    r"presents with|presented with|complains of|reports|"
    r"(?:takes?|taking|on) \w+ for (?:my|his|her)|"
    r"diagnosticad[oa] con|diagnostiqu[ée]e? avec|diagnostiziert mit|erkrankt an|affett[oa] da|"
    r"diagnosticat[oa] con|gediagnosticeerd met|dx:?)\s+(?:an?\s+|the\s+|de\s+|una?\s+)?"
    r"(?P<value>[^\W\d_][\w'\-]*(?:\s+[^\W\d_][\w'\-]*){0,3}?)"
    r"(?=\s*[.,;:!?)\n]|\s+(?:and|last|since|in|at|on|but|which|who|two|three|years?|months?|"
    r"y|et|und|e|en)\b|$)",
    re.IGNORECASE,
)
# "... his ankylosing spondylitis diagnosis"
_BEFORE_DIAGNOSIS = re.compile(
    r"\b(?:my|his|her|their)\s+(?P<value>[^\W\d_][\w'\-]*(?:\s+[^\W\d_][\w'\-]*){0,3}?)"
    r"\s+(?:diagnosis|diagnose|diagnóstico)\b", re.IGNORECASE)
_DRUG = re.compile(
    r"\b(?:prescribed|taking|takes|take|started on|continue|continues|rx:?|verschrieben|"
    r"(?:is|am|are|was|been|stays?|remains?|still|now) on|"
    r"prescrit|recetado)\s+(?P<value>[^\W\d_][\w\-]{3,24})(?=\s+(?:\d+\s?(?:mg|mcg|ml|units?|"
    r"iu)\b|for|since|daily|twice|once|every|bid|tid|qd|prn)\b|\s*[.;,]\s*(?:plan|is it)\b)",
    re.IGNORECASE,
)
_NOT_DRUG = frozenset("it this that them a an the my his her your their time board call duty "
                      "track hold leave vacation".split())


def _index(words: frozenset[str], kind: str) -> dict[str, list[tuple[str, str]]]:
    """First word -> (phrase, kind) pairs, longest phrase first."""
    index: dict[str, list[tuple[str, str]]] = {}
    for phrase in sorted(words, key=len, reverse=True):
        first = _WORD.match(phrase)
        if first:
            index.setdefault(first.group().rstrip("'-"), []).append((phrase, kind))
    return index


@register
class MedicalRecognizer(Recognizer):
    """``MEDICAL_CONDITION`` and ``MEDICATION`` mentions, scored by whether a person is near."""

    name = "medical"
    types = ("MEDICAL_CONDITION", "MEDICATION")

    def __init__(self) -> None:
        self._index = _index(load_words("conditions"), "MEDICAL_CONDITION")
        for word, phrases in _index(load_words("medications"), "MEDICATION").items():
            self._index.setdefault(word, []).extend(phrases)

    def find(self, text: str) -> Iterator[Entity]:
        yield from self._lexicon(text)
        for pattern, kind in ((_DIAGNOSIS, "MEDICAL_CONDITION"), (_BEFORE_DIAGNOSIS,
                              "MEDICAL_CONDITION"), (_DRUG, "MEDICATION")):
            for match in pattern.finditer(text):
                value = match.group("value")
                if value.lower() not in _NOT_DRUG:
                    yield Entity(kind, match.start("value"), match.end("value"), TIED_SCORE)

    def _lexicon(self, text: str) -> Iterator[Entity]:
        lower = text.lower()
        for word in _WORD.finditer(lower):
            candidates = self._index.get(word.group().rstrip("'-"))
            if candidates is None:
                continue
            start = word.start()
            if start and (lower[start - 1].isalnum() or lower[start - 1] == "-"):
                continue
            for phrase, kind in candidates:
                end = start + len(phrase)
                if lower.startswith(phrase, start) and (
                        end == len(lower) or not (lower[end].isalnum() or lower[end] == "-")):
                    yield Entity(kind, start, end, self._score(text, start, end))
                    break

    @staticmethod
    def _score(text: str, start: int, end: int) -> float:
        window = _PERSONAL.search(text, max(0, start - _WINDOW), min(len(text), end + _WINDOW))
        if window or _has_subject(text[max(0, start - 80):start]) or _AGE.search(
                text, max(0, start - _WINDOW), min(len(text), end + _WINDOW)):
            return TIED_SCORE
        return UNTIED_SCORE


def _has_subject(before: str) -> bool:
    """Whether ``before`` ends with "<someone> has" (not "everyone has", "it has")."""
    match = _SUBJECT_HAS.search(before)
    if match is None:
        return False
    words = match.group("subject").lower().split()
    return not any(w in _GENERIC_SUBJECT for w in words[-1:]) and words[0] not in (
        _GENERIC_SUBJECT)
