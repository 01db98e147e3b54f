"""Diagnoses and medications, reported only when tied to an individual.

HIPAA's protected health information is health information about an identifiable
individual; "Explain how metoprolol lowers blood pressure" or "describe the symptoms of type 2
diabetes" is general knowledge, not PHI. A lexicon hit (``data/conditions.txt``,
``data/medications.txt``) or a phrase hit ("diagnosed with X", "takes X 50 mg") is tied to an
individual when, within about a sentence either side, there is

* a first-person speaker about themselves ("I", "my", "me"; "ich", "je", "mi", "mijn"...),
* a third-person individual ("he", "she", "his", "her"; "elle", "ella", "lui"...; not "he or
  she"), "the patient" (not "a patient", "patient leaflet"), "our son"...,
* a record cue ("hx", "dx", "s/p", "admitted", "discharged", "45M", "45 y/o", "JOHN DOE, 45,"),
* or "<someone> has X" with a person as the subject (not "everyone", "welche Nebenwirkungen").

First-person words in a frame about the writer's work rather than their health ("I'm a nursing
student", "I want to understand", "for my exam", "tell me", "mi puoi spiegare") do not tie.
Health verbs alone ("taking", "dose", "diagnosed", "prescribed", "mg") do not either: "what
foods should be avoided while taking cetirizine?" is about no one.

Tied hits score :data:`TIED_SCORE`; the others score :data:`UNTIED_SCORE` and the detector keeps
them only when the text also identifies someone (a name, an MRN, an SSN...), the combination
being PHI.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator

from modelmix.guard._base import Entity
from modelmix.guard._lexicon import load_words
from modelmix.guard._patterns import Anchored, Recognizer, gated, register, word_index

__all__ = ["TIED_SCORE", "UNTIED_SCORE", "MedicalRecognizer"]

TIED_SCORE = 0.8
UNTIED_SCORE = 0.45
_WINDOW = 120  # characters either side searched for a personal cue
_APOS = "['\u2019]"
_PERSONAL = re.compile(
    rf"\b(?:i|i{_APOS}(?:m|ve|d|ll)|my|mine|me|myself|he|she|him|his|her|hers|himself|"
    r"herself|patient|pt|hx|dx|s/p|admitted|discharged|"
    r"our (?:son|daughter|baby|child|kid|mother|father|mom|mum|dad)|"
    r"ich|mein|meine|meinem|meinen|meiner|meines|je|j'|mon|mes|ma (?:m[eè]re|fille|femme|"
    r"s(?:oe|œ)ur|tante|grand-m[eè]re)|yo|mi|mis|io|mio|mia|miei|mie|ik|mijn|eu|meu|minha|"
    r"meus|minhas|elle|él|ella|lui|hij|ele|ela|"
    r"paziente|paciente|patiente|patientin|patiënt)(?![\w'])",
    re.IGNORECASE,
)
#: The words :data:`_PERSONAL` starts with, looked up in the shared word index.
_PERSONAL_WORDS = frozenset(
    "i my mine me myself he she him his her hers himself herself patient pt hx dx s admitted "
    "discharged our ich mein meine meinem meinen meiner meines je j mon mes ma yo mi mis io mio "
    "mia miei mie ik mijn eu meu minha meus minhas elle él ella lui hij ele ela paziente "
    "paciente patiente patientin patiënt".split())
# "45M", "45 y/o": an age and sex, as in a clinical note.
_AGE_SEX = re.compile(r"\d{1,3}\s?(?:[mf]|yo|y/o)(?![\w'])", re.IGNORECASE)
# First-person words in a frame about the writer's work or request, not their health.
_COPULA = (r"i(?:'m|\u2019m| am)|ich bin|je suis|yo soy|soy|io sono|sono|ik ben|eu sou|sou")
_META = re.compile(
    rf"(?P<copula>(?:{_COPULA})\s+(?:(?:a|an|ein|eine|un|une|uno|una|um|uma|een)\s+)?"
    r"(?!(?:pregnant|schwanger|enceinte|embarazada|incinta|zwanger|gr[aá]vida|allergic|"
    r"allergisch|allergique|al[eé]rgic[oa]|allergico|on|taking|still|now)\b)[^\W\d_]+)"
    r"|i(?:'m|\u2019m| am|'ve been| was)\s+(?:\w+\s+)?(?:writing|preparing|studying|"
    r"researching|teaching|learning|reading|working on|trying to|curious|wondering|interested|"
    r"looking for|putting together|revising|reviewing|creating|making|drafting|giving|"
    r"planning|doing)"
    r"|i(?:'d| would)?\s+(?:like|want|wanted|need|needed|hope|have|must|try|tried)\s+to\s+"
    r"(?:know|understand|learn|write|explain|prepare|study|teach|summari[sz]e|find|read|"
    r"research|review|compare|clarify|present|cite|check|make|create|ask)"
    r"|i\s+(?:need|want|have|got)\s+(?:a|an|some|two|three|one)?\s*(?:quick\s+)?"
    r"(?:question|help|summary|explanation|overview|outline|quiz|list|table|essay|exam|test|"
    r"lecture|presentation|article|report|assignment)"
    r"|i\s+(?:read|heard|saw|learned|wonder|was wondering|teach|study|work|wrote)\b"
    r"|my\s+(?:[\w\-]+\s+)?(?:exam|class|course|essay|thesis|paper|homework|assignment|"
    r"lecture|presentation|article|blog|book|research|project|students|readers|audience|team|"
    r"job|work|report|notes|studies|training|understanding|questions?|patients|clients|"
    r"colleagues|classmates|website|newsletter|podcast|channel|slides|module|textbook)\b"
    r"|ich\s+(?:möchte|will|würde|muss|schreibe|bereite|studiere|lerne|suche|unterrichte|"
    r"habe eine frage)"
    r"|je\s+(?:voudrais|veux|souhaite|cherche|prépare|rédige|écris|étudie|dois|aimerais|"
    r"me demande|travaille)"
    r"|mi\s+(?:puoi|può|potresti|potete|spieghi|spiega|spiegheresti|dici|dica|descrivi|chiedo|"
    r"domando|serve|interessa|piacerebbe|aiuti|aiuta|puedes|podrías|podria|explicas)"
    r"|io\s+(?:vorrei|voglio|devo|sto|studio|insegno)"
    r"|ik\s+(?:wil|zou|moet|schrijf|studeer|zoek|bereid)"
    r"|eu\s+(?:quero|gostaria|preciso|estou|estudo)"
    r"|yo\s+(?:quiero|necesito|estoy|estudio)"
    r"|me\s+(?:puedes|podr[ií]as|puede|pode|podes|explicas|explica|explicar|explique|dices|"
    r"dice|diz|ayudas|ayuda|ajuda|ajudar|gustar[ií]a|interesa|mostra|mostrar|dar|d[aá])\b",
    re.IGNORECASE,
)
# "tell me about X", "help me understand X": the reader, not the reader's health.
_ASKED_ME = re.compile(r"\b(?:tell|give|show|help|explain(?: to)?|teach|let|remind|walk|send|"
                       r"write|answer|brief|quiz|get|find|make)\s+$", re.IGNORECASE)
# "a patient", "any patient", "patient leaflet": no one in particular.
_ANY_PATIENT_BEFORE = re.compile(r"\b(?:a|an|any|each|every|which|what|typical|average|no|"
                                 r"such|one|un|une|ein|eine|uno|una|um|uma|een)\s+"
                                 r"(?:[\w\-]+\s+)?$", re.IGNORECASE)
_PATIENT_MODIFIER = re.compile(
    r"\s+(?:education|information|leaflets?|handouts?|safety|care|guides?|materials?|outcomes?|"
    r"populations?|groups?|portals?|advocacy|experiences?|satisfaction|selection|"
    r"counsell?ing|resources?|friendly|cent(?:er|re)d|reported|records? system)\b",
    re.IGNORECASE)
_EITHER_SEX = re.compile(r"\b(?:he|she|his|her|him|hers)\s*(?:or|/)\s*(?:he|she|his|her|him|"
                         r"hers)\b|\bs/he\b", re.IGNORECASE)
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
# Subjects that are no one in particular, in the languages of the cues above; questions
# with the verb first ("welche Nebenwirkungen hat X", "qué efectos tiene X") start with one.
_GENERIC_SUBJECT = frozenset(
    "the a an this that these those it which what who whoever everyone everybody anyone "
    "anybody someone somebody nobody no one each every any some many most few people "
    "patients adults children men women population nobody if whether when who's how why "
    "drug medicine medication treatment disease condition "
    "welche welcher welches was wie wer der die das ein eine jeder man "
    "quel quelle quels quelles qui que le la les un une chaque "
    "qué que cuál cuáles cuántos el los las uno una cada "
    "quale quali che il lo gli ogni "
    "wat welke hoe het een elke "
    "qual quais o os as um uma cada".split())


_WORD = re.compile(r"[a-z\u00e0-\u00ff][a-z\u00e0-\u00ff'\-]*")
_WORD_START = re.compile(r"[a-z\u00e0-\u00ff]")
_HEAD = re.compile(r"[^\W_]+")


# Conditions and drugs outside the lexicon, recognised by the phrase that introduces them.
# Each is tried only where one of its first words starts a word (Anchored; _phrases).
_DIAGNOSIS = Anchored(
    r"\b(?:diagnosed with|diagnosis of|suffers from|suffering from|treated for|history of|"
    r"presents with|presented with|complains of|reports|"
    r"(?:takes?|taking|on) \w+ for (?:my|his|her)|"
    r"diagnosticad[oa] con|diagnostiqu[ée]e? avec|diagnostiziert mit|erkrankt an|affett[oa] da|"
    r"diagnosticat[oa] con|gediagnosticeerd met|dx:?)\s+(?:an?\s+|the\s+|de\s+|una?\s+)?"
    r"(?P<value>[^\W\d_][\w'\-]*(?:\s+[^\W\d_][\w'\-]*){0,3}?)"
    r"(?=\s*[.,;:!?)\n]|\s+(?:and|last|since|in|at|on|but|which|who|two|three|years?|months?|"
    r"y|et|und|e|en)\b|$)",
    ("diagnosed", "diagnosis", "suffers", "suffering", "treated", "history", "presents",
     "presented", "complains", "reports", "take", "taking", "on", "diagnosticad",
     "diagnostiqu", "diagnostiziert", "erkrankt", "affett", "diagnosticat",
     "gediagnosticeerd", "dx"),
)
# "... his ankylosing spondylitis diagnosis"
_BEFORE_DIAGNOSIS = Anchored(
    r"\b(?:my|his|her|their)\s+(?P<value>[^\W\d_][\w'\-]*(?:\s+[^\W\d_][\w'\-]*){0,3}?)"
    r"\s+(?:diagnosis|diagnose|diagnóstico)\b", ("my", "his", "her", "their"))
_DRUG = Anchored(
    r"\b(?:prescribed|taking|takes|take|started on|continue|continues|rx:?|verschrieben|"
    r"(?:is|am|are|was|been|stays?|remains?|still|now) on|"
    r"prescrit|recetado)\s+(?P<value>[^\W\d_][\w\-]{3,24})(?=\s+(?:\d+\s?(?:mg|mcg|ml|units?|"
    r"iu)\b|for|since|daily|twice|once|every|bid|tid|qd|prn)\b|\s*[.;,]\s*(?:plan|is it)\b)",
    ("prescribed", "taking", "takes", "take", "started", "continue", "rx", "verschrieben",
     "is", "am", "are", "was", "been", "stay", "remain", "still", "now", "prescrit",
     "recetado"),
)
#: Letters that match an ASCII letter case-insensitively but lower-case to another one
#: (dotless i, long s): in a text with one, a phrase pattern scans every position.
_FOLD_APART = ("\u0131", "\u017f")


def _phrases(pattern: Anchored, text: str) -> Iterator[re.Match[str]]:
    """``pattern.regex.finditer(text)``: through the word index where that finds the
    same matches (a match starts with one of the anchors' words), else plainly."""
    if any(c in text for c in _FOLD_APART):
        return pattern.regex.finditer(text)
    return pattern.finditer(text)
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
        # A key that starts with no letter or digit ("÷" is in _WORD's range) has no head:
        # then every text gets the full scan.
        self._heads = (_Heads(iter(self._index)) if all(_HEAD.match(key) for key in self._index)
                       else None)

    def find(self, text: str) -> Iterator[Entity]:
        hits = list(self._lexicon(text))
        for pattern, kind in ((_DIAGNOSIS, "MEDICAL_CONDITION"), (_BEFORE_DIAGNOSIS,
                              "MEDICAL_CONDITION"), (_DRUG, "MEDICATION")):
            hits += [(kind, *match.span("value")) for match in _phrases(pattern, text)
                     if match.group("value").lower() not in _NOT_DRUG]
        if hits:
            cues = _Cues(text)
            for kind, start, end in hits:
                yield Entity(kind, start, end, TIED_SCORE if cues.tied(start, end)
                             else UNTIED_SCORE)

    def _lexicon(self, text: str) -> Iterator[tuple[str, int, int]]:
        lower = text.lower()
        starts = self._heads.starts(lower) if gated() and self._heads is not None else None
        words = _WORD.finditer(lower) if starts is None else _words_at(lower, starts)
        for word in words:
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
                    yield kind, start, end
                    break


class _Heads:
    """Where a lexicon phrase can start, from the shared word index (:func:`word_index`).

    A phrase found at ``s`` starts with its key, the key with its *head* (its leading
    letters and digits) and ``s`` follows no letter or digit, so the index's word at ``s``
    begins with a head. The words that do (four-character heads looked up in the index's
    by-prefix table, shorter heads by prefix) give every start the full scan would try
    that can hold a phrase; the lexicon loop then reads only those.
    """

    def __init__(self, keys: Iterator[str]) -> None:
        heads = [_HEAD.match(key) for key in keys]
        self.long = frozenset(h.group()[:4] for h in heads if h and len(h.group()) >= 4)
        self.short = frozenset(h.group() for h in heads if h and len(h.group()) < 4)
        self.lengths = sorted({len(h) for h in self.short})

    def starts(self, lower: str) -> list[int]:
        """Sorted offsets in ``lower`` where a lexicon phrase may start."""
        index, by_prefix = word_index(lower)
        words = {w for head in by_prefix.keys() & self.long for w in by_prefix[head]}
        for size in self.lengths:
            words.update(w for w in index if w[:size] in self.short)
        return sorted(p for w in words for p in index[w])


def _words_at(lower: str, starts: list[int]) -> Iterator[re.Match[str]]:
    """The matches ``_WORD.finditer(lower)`` gives that start at one of ``starts``."""
    for start in starts:
        before = start - 1
        while before >= 0 and lower[before] in "'-":
            before -= 1
        if before >= 0 and _WORD_START.match(lower, before):
            continue  # inside the run of letters, apostrophes and hyphens before it
        word = _WORD.match(lower, start)
        if word is not None:
            yield word


class _Cues:
    """The personal cues of one text, found once and asked about each health term."""

    def __init__(self, text: str) -> None:
        self.text = text
        lower = text.lower()
        if len(lower) == len(text):  # look the cue words up instead of scanning every position
            index, _ = word_index(lower)
            starts = sorted(p for w in _PERSONAL_WORDS if w in index for p in index[w])
            found = [m for m in (_PERSONAL.match(text, p) for p in starts) if m]
        else:
            found = list(_PERSONAL.finditer(text))
        found += [m for m in _AGE_SEX.finditer(text)
                  if not (m.start() and text[m.start() - 1].isalnum())]
        self.cues = sorted(found, key=lambda m: m.start())
        self.starts = [m.start() for m in self.cues]

    def tied(self, start: int, end: int) -> bool:
        """Whether the health term at ``[start, end)`` is about an individual."""
        text = self.text
        low, high = max(0, start - _WINDOW), min(len(text), end + _WINDOW)
        for cue in self.cues[bisect_left(self.starts, low):]:
            if cue.start() >= high:
                break
            if cue.end() <= high and not _no_one(text, cue, start):
                return True
        return _has_subject(text[max(0, start - 80):start]) or bool(
            _AGE.search(text, low, high))


def _no_one(text: str, cue: re.Match[str], term_start: int) -> bool:
    """Whether a personal ``cue`` refers to no individual's health ("a patient", "he or
    she", "tell me", "I'm a nursing student", "for my exam")."""
    word = cue.group().lower()
    if word.startswith(("pati", "pt", "pazi", "paci")):
        return bool(_ANY_PATIENT_BEFORE.search(text, max(0, cue.start() - 30), cue.start())
                    or _PATIENT_MODIFIER.match(text, cue.end()))
    if word in _SEX_PRONOUNS:
        return _EITHER_SEX.search(text, max(0, cue.start() - 8), cue.end() + 8) is not None
    if word == "me" and _ASKED_ME.search(text, max(0, cue.start() - 16), cue.start()):
        return True
    meta = _META.match(text, cue.start())
    if meta is None:
        return False
    # "I'm a diabetic", "ich bin Diabetiker": the role is the health term itself.
    return not (meta.group("copula") and cue.start() <= term_start < meta.end())


_SEX_PRONOUNS = frozenset("he she him his her hers".split())


def _has_subject(before: str) -> bool:
    """Whether ``before`` ends with "<someone> has" (not "everyone has", "it has")."""
    match = _SUBJECT_HAS.search(before)
    if match is None:
        return False
    words = match.group("subject").lower().split()
    if _EITHER_SEX.search(match.group("subject")):
        return False  # "if he or she has asthma"
    return not any(w in _GENERIC_SUBJECT for w in words[-1:]) and words[0] not in (
        _GENERIC_SUBJECT)
