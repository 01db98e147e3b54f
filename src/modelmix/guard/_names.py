"""Person names without a neural model: capitalised word runs judged by gazetteers and cues.

A run of capitalised words (particles such as ``van``, ``de``, ``da`` allowed inside, initials
such as ``J.`` too) is a person name when

* it follows an honorific (``Mr``, ``Dr``, ``Frau``, ``Mme``, ``Sra``...) or a cue such as
  "my name is", "patient", "Dear", "Name:" (then one word is enough), or
* its first word is a known given name and it has a second word that is not a common word, or
* it has two or more words, none common, at least one a known given or family name.

Runs are split at common words (``The``, ``Monday``, ``Street``, ``Bank``...). A run that follows
a public role (``President``, ``Senator``, ``CEO``...) or that is a listed public figure is left
alone: news about public people is not personal data here. Lower-case names are found only after
a cue ("my name is"; with two known words and other personal data nearby, "patient", "dr",
"for", "from", "dear"...).
Gazetteers: US Census 1990 given and family names, hand-written European given names, and
Faker's name lists of South Asian, African, Turkish, Indonesian, Vietnamese, Irish and
(romanised) Chinese and Japanese locales (see ``data/NOTICE.md``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelmix.guard import _intro
from modelmix.guard._base import Entity
from modelmix.guard._lexicon import load_words
from modelmix.guard._patterns import Anchored, Recognizer, register

__all__ = ["CUED_SCORE", "UNCUED_SCORE", "NameRecognizer"]

#: Score of a name after an honorific or cue ("Dr.", "my name is", "patient").
CUED_SCORE = 0.85
#: Score of a name found by gazetteers alone; the detector keeps such names only when the text
#: also holds other personal data (news about people is not, by itself, personal data).
UNCUED_SCORE = 0.65

_UPPER = "A-Z\u00c0-\u00d6\u00d8-\u00de\u0100-\u017d"
_WORD = rf"[{_UPPER}][^\W\d_]*(?:['\u2019\-][{_UPPER}a-z][^\W\d_]*)*"
_PARTICLES = frozenset("van von der den de del della di da das dos du la le bin ibn al el ten "
                       "ter zu y".split())
_RUN = re.compile(
    rf"[{_UPPER}](?<![\w@./\-][{_UPPER}])(?:[^\W\d_]*(?:['\u2019\-][{_UPPER}a-z][^\W\d_]*)*\.?|\.)"
    rf"(?:[ \t]{{1,2}}(?:(?:{'|'.join(sorted(_PARTICLES))})[ \t])*(?:[{_UPPER}]\.|{_WORD})"
    r"(?![\w@]))*"
)
_HONORIFICS = frozenset(
    "mr mrs ms miss mx dr prof sir madam dame herr frau mme mlle monsieur madame sr sra srta "
    "señor señora don doña sig signor signora dott dhr mevr pan pani dear hi hello hey "
    "attn".split())
_SUFFIXES = re.compile(r",?\s*(?:Jr\.?|Sr\.?|II|III|IV|MD|M\.D\.|PhD|Ph\.D\.|DDS|DVM|RN|Esq\.?)"
                       r"(?![\w])")
# Last one or two words before a run that make a single capitalised word a name.
_CUE_WORDS = frozenset(
    "name name: named called patient pt pt. client customer employee applicant tenant member user "
    "contact signed regards regards, sincerely sincerely, from: to: cc: by nom: nombre: nome: "
    "naam: paciente patient: patientin beneficiary insured guardian spouse wife husband son "
    "daughter mother father brother sister colleague manager nurse physician thanks thanks, "
    "thank dear hi hello hey mr mrs ms dr kontoinhaber inhaber holder się".split())
# Self-introductions in other languages ("mein Name ist", "je suis"...) are in ._intro.
_CUE_PAIRS = frozenset({("i", "am"), ("i'm", ""), ("this", "is")})
_PUBLIC_ROLES = frozenset(
    "president senator sen. chancellor minister governor gov. mayor king queen prince princess "
    "pope secretary ceo chairman chairwoman founder representative rep. congressman "
    "congresswoman speaker justice coach star actor actress singer rapper author novelist "
    "director striker champion billionaire premier président präsident bundeskanzler kanzlerin "
    "presidente ministro ministre minister, ceo, executive".split())
_LOWER_CUES = (r"my name is|my name's|i am|i'm|this is|name:|nombre:|je m'appelle|ich heiße|"
               r"me llamo|patient|patient:|pt:?|client|dr\.?|mr\.?|mrs\.?|ms\.?|dear|for|from|"
               r"called|named|contact|signed")
# A cue word right after a cue ("patient name: ...", "for patient ...", "patient ms. ...") is
# not a name: the later cue is tried instead.
_NOT_A_NAME = r"(?!(?:name|patient|pt|client|contact|dr|mr|mrs|ms|my|this|i)\b)"
_LOWER_CUE = Anchored(
    rf"\b(?:{_LOWER_CUES})[,:]?\s+{_NOT_A_NAME}(?P<name>[a-z\u00e0-\u00ff]{{2,20}}"
    rf"(?:\s+[a-z\u00e0-\u00ff']{{2,20}}){{0,2}})",
    ("my name", "i am", "i'm", "this is", "name:", "nombre:", "je m'appelle", "ich hei",
     "me llamo", "patient", "pt", "client", "dr", "mr", "mrs", "ms", "dear", "for", "from",
     "called", "named", "contact", "signed"),
)


_STRONG_LOWER_CUES = ("my name", "i am", "i'm", "this is", "name:", "nombre:", "je m'appelle",
                      "ich hei", "me llamo")

# Han / kana names (山田太郎, 李明) count only with an honorific after them or a label before.
_CJK_CHAR = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
_CJK_RUN = r"[\u3040-\u30ff\u4e00-\u9fff]"
_CJK_LABELLED = re.compile(
    r"(?:患者|病人|姓名|氏名|名前|联系人|聯絡人|客户|客戶|お客様)[:\uff1a\s]*"
    rf"(?P<run>{_CJK_RUN}{{2,4}})")
_CJK_HONOURED = re.compile(
    rf"(?P<run>{_CJK_RUN}{{2,5}}?)\s*"
    r"(?:様|さま|さん|先生|女士|小姐|氏|君|ちゃん|医生|医師)")

#: Lower-case words that end a lower-case name even when a gazetteer lists them.
_LOWER_STOP = frozenset("will would can could may might must shall should is was are were be "
                        "has had have and or but to of in on at with by see said says who "
                        "here there today tomorrow".split())

_STREET_SUFFIXES = frozenset(
    "street st avenue ave road rd boulevard blvd lane ln drive dr court ct place pl square way "
    "terrace circle highway parkway plaza oval mews crescent close grove gardens park ridge "
    "hill hills heights trail row walk alley view village villages plains springs".split())


# A chat turn answering a question about a name ("...your full name?\nuser: Jane Roe").
_ASKED_NAME = re.compile(r"name\s*[?:]\s*\n\s*(?:\w+\s*:)?\s*$", re.IGNORECASE)


def _tail_words(text: str, start: int) -> list[str]:
    """The last (up to) three lower-cased words before ``start`` on the same line."""
    window = text[max(0, start - 40):start]
    window = window[window.rfind("\n") + 1:]
    return window.lower().split()[-3:]


def _after_naming(text: str, start: int) -> bool:
    """Whether a naming phrase ("my name is", "je m'appelle") ends just before ``start``."""
    head = text[max(0, start - 16):start].rsplit(None, 1)
    return bool(head) and head[-1].lower() in _intro.NAMING_LAST and _intro.intro_level(
        _tail_words(text, start)) == _intro.NAMING


class _Judge:
    """Scores one piece (consecutive non-common capitalised words) of a run."""

    def __init__(self, first: frozenset[str], last: frozenset[str],
                 public: frozenset[str]) -> None:
        self.first, self.last, self.public = first, last, public

    def score(self, text: str, words: list[tuple[str, int, int]], honorific: bool) -> float:
        keys = [w[0].lower().rstrip(".") for w in words if w[0].lower() not in _PARTICLES]
        if not keys or keys[-1] in _STREET_SUFFIXES:
            return 0.0
        known_first = self.given(keys[0])
        known = sum(1 for k in keys if self.known(k))
        if len(keys) > 1 and all(w[0].isupper() for w in words) and not known_first:
            return 0.0
        level = self.cue_level(text, words[0][1])
        # a copula ("ich bin", "je suis") cues only known names, not "Ich bin Arzt"
        cued = honorific or level >= _intro.CUE or (level == _intro.COPULA and known > 0)
        if len(keys) > 1 and (known_first or (known and cued)):
            score = CUED_SCORE if cued else UNCUED_SCORE
        elif len(keys) > 1 and cued:
            score = CUED_SCORE - 0.1
        elif len(keys) > 1 and (known or level == _intro.COPULA):
            score = UNCUED_SCORE - 0.05  # kept only next to other personal data
        elif cued and not words[0][0].isupper() and (honorific or known
                                                       or level == _intro.NAMING):
            score = CUED_SCORE - 0.05
        else:
            return 0.0
        if self._public(text, words, keys):
            return 0.0
        return score

    def given(self, key: str) -> bool:
        """Whether ``key`` (lower case) is a known given name, accents folded."""
        return key in self.first or (not key.isascii() and _intro.fold(key) in self.first)

    def known(self, key: str) -> bool:
        """Whether ``key`` (lower case) is a known given or family name, accents folded."""
        if key in self.first or key in self.last:
            return True
        if key.isascii():
            return False
        folded = _intro.fold(key)
        return folded in self.first or folded in self.last

    @staticmethod
    def cue_level(text: str, start: int) -> int:
        """How strongly the words before ``start`` cue a name (an ``_intro`` level)."""
        tail = _tail_words(text, start)
        level = _intro.intro_level(tail)
        if level != _intro.NAMING and _ASKED_NAME.search(text, max(0, start - 80), start):
            return _intro.NAMING
        if level:
            return level
        if tail and (tail[-1] in _CUE_WORDS or (tail[-1], "") in _CUE_PAIRS):
            return _intro.CUE
        return _intro.CUE if len(tail) >= 2 and (tail[-2], tail[-1]) in _CUE_PAIRS else 0

    def _public(self, text: str, words: list[tuple[str, int, int]], keys: list[str]) -> bool:
        if " ".join(keys) in self.public:
            return True
        tail = _tail_words(text, words[0][1])
        return bool(tail) and (tail[-1] in _PUBLIC_ROLES or tail[-1].rstrip(",") in _PUBLIC_ROLES)


@register
class NameRecognizer(Recognizer):
    """Person names from capitalised runs, gazetteers and cues (see the module docstring)."""

    name = "person"
    types = ("PERSON",)

    def __init__(self) -> None:
        self._first = load_words("first_names") | load_words("first_names_world")
        self._last = load_words("last_names") | load_words("last_names_world")
        self._common = load_words("common_words")
        self._judge = _Judge(self._first, self._last, load_words("public_figures"))

    def find(self, text: str) -> Iterator[Entity]:
        for run in _RUN.finditer(text):
            value = run.group()
            if " " not in value and "\t" not in value:
                key = value.lower().rstrip(".")
                if key in self._common or not (self._judge.known(key)
                                               or _after_naming(text, run.start())):
                    continue  # one unknown word is a name only after "my name is" and such
            yield from self._split(text, run.start(), value)
        yield from self._lower_case(text)
        if not text.isascii() and _CJK_CHAR.search(text):
            yield from self._cjk(text)

    def _cjk(self, text: str) -> Iterator[Entity]:
        """Han / kana names: a known family name and one or two more characters, with a
        label before ("患者", "氏名") or an honorific after ("様", "先生")."""
        for match in _CJK_LABELLED.finditer(text):
            run, start = match.group("run"), match.start("run")
            family = self._cjk_family(run)
            if family and len(run) > len(family):
                yield Entity("PERSON", start, start + min(len(run), len(family) + 2),
                             CUED_SCORE)
        for match in _CJK_HONOURED.finditer(text):
            end = match.end("run")
            for begin in range(max(0, end - 4), end - 1):  # longest name first
                family = self._cjk_family(text[begin:end])
                if family and end - begin > len(family):
                    yield Entity("PERSON", begin, end, CUED_SCORE)
                    break

    def _cjk_family(self, run: str) -> str | None:
        for size in (2, 1):
            if len(run) >= size and run[:size] in self._last:
                return run[:size]
        return None

    def _split(self, text: str, offset: int, value: str) -> Iterator[Entity]:
        """Split a run at common words and honorifics; judge each piece."""
        piece: list[tuple[str, int, int]] = []
        honorific = public = False
        for match in re.finditer(r"\S+", value):
            word = match.group()
            key = word.lower().rstrip(".")
            role = key in _PUBLIC_ROLES and match.end() < len(value)
            initial = len(word) == 2 and word[1] == "." and word[0].isupper()
            cue = (key in _CUE_WORDS or key in _intro.NAMING_WORDS) and (
                match.end() < len(value))  # "Chamo-me Inês Sousa"
            copula = key in _intro.WEAK_WORDS  # "Ich bin Jürgen": judged by its own cue
            acronym = word.isupper() and len(key) <= 3 and not initial
            if not initial and (key in _HONORIFICS or key in self._common or role or cue
                                or acronym or copula):
                if not public:
                    yield from self._emit(text, piece, honorific)
                piece, honorific, public = [], key in _HONORIFICS or cue, role
                continue
            if word.endswith(".") and not initial:  # a full stop ends the sentence and the name
                piece.append((word[:-1], offset + match.start(), offset + match.end() - 1))
                if not public:
                    yield from self._emit(text, piece, honorific)
                piece, honorific, public = [], False, False
                continue
            piece.append((word, offset + match.start(), offset + match.end()))
        if not public:
            yield from self._emit(text, piece, honorific)

    def _emit(self, text: str, piece: list[tuple[str, int, int]],
              honorific: bool) -> Iterator[Entity]:
        while piece and piece[-1][0].lower() in _PARTICLES:
            piece = piece[:-1]
        if not piece:
            return
        score = self._judge.score(text, piece, honorific)
        if score:
            end = piece[-1][2]
            suffix = _SUFFIXES.match(text, end)
            yield Entity("PERSON", piece[0][1], suffix.end() if suffix else end, score)

    def _lower_case(self, text: str) -> Iterator[Entity]:
        """Lower-case names after a cue: a known given name then known family names, or
        (East Asian order, "zhang wei") a family name then a given name. After the weaker
        cues ("patient", "dr", "for", "from"...) two known words are needed and the name
        counts as uncued (kept only next to other personal data): gazetteers hold many
        English words ("hope", "rich", "summer")."""
        for match in _LOWER_CUE.finditer(text):
            words = match.group("name").split()
            keys = [w.replace("'", "").replace("\u2019", "") for w in words]
            if keys[0] in self._common or keys[0] in _LOWER_STOP:
                continue
            if keys[0] in self._first:
                count = 1
                for key in keys[1:]:
                    if key in self._common or key in _LOWER_STOP or key not in self._last:
                        break
                    count += 1
            elif (keys[0] in self._last and len(keys) > 1 and keys[1] in self._first
                  and keys[1] not in self._common and keys[1] not in _LOWER_STOP):
                count = 2
            else:
                continue
            strong = match.group().lower().startswith(_STRONG_LOWER_CUES)
            if count < 2 and not strong:
                continue
            start = match.start("name")
            yield Entity("PERSON", start, start + len(" ".join(words[:count])),
                         0.75 if strong else UNCUED_SCORE)
        judge = self._judge
        for start, end in _intro.lower_case_intros(
                text, self._common.__contains__, judge.given, judge.known):
            yield Entity("PERSON", start, end, 0.75)
