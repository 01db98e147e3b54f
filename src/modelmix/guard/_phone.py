"""Phone and fax numbers in international, North American and European national formats.

A candidate is a run of digit groups (``+49 (0)30 1234 5678``, ``(415) 555-0132 x12``,
``06 12 34 56 78``). It is accepted when its shape says phone (a ``+``/``00`` country prefix that
``phonenumbers`` finds possible, North American 3-3-4 grouping, a parenthesised area code, or a
trunk ``0`` national number possible in a European numbering plan), or when a phone cue
("call", "tel", "mobile", "Handy", "portable", ...) stands shortly before it. After a word that
may name any number ("numéro", "número", "Nummer", "contact", "joignable au", or "erreichbar"
after the number) a plain digit run must be a valid number of a region of that word's
language. Dates, versions and IP addresses are rejected by shape. Source for numbering plans:
Google libphonenumber metadata via the ``phonenumbers`` package (imported lazily).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from modelmix.guard._base import Entity
from modelmix.guard._patterns import Recognizer, digits_of, has_digit, register

__all__ = ["PhoneRecognizer"]

_CANDIDATE = re.compile(
    r"(?<![A-Za-z0-9_+\-./])(?:\+\s?)?(?:\(\s?\+?\d{1,5}\s?\)[ \-.]{0,2})?"
    r"\d{1,15}(?:(?:[ \-./]{1,2}|[ ]?\([0-9]{1,4}\)[ ]?)\d{1,12}){0,7}"
    r"(?:\s?(?:x|ext\.?|extension|ext|poste|Durchwahl|#)\s?\d{1,6})?(?![A-Za-z0-9_]|[\-./]\d)",
    re.IGNORECASE,
)
_EXTENSION = re.compile(r"\s?(?:x|ext\.?|extension|poste|durchwahl|#)\s?\d{1,6}$", re.IGNORECASE)
_NANP = re.compile(r"^(?:\+?1[ \-.]?|001[ \-.]?)?(?:\(\d{3}\)[ \-.]?|\d{3}[ \-.])\d{3}[ \-.]\d{4}$")
_NANP_DIGITS = re.compile(r"^1?[2-9]\d{2}[2-9]\d{6}$")
_NUMBER_WORD = re.compile(r"\b(?:valid|correct|right|this|that|same)\s+number\b", re.IGNORECASE)
_DATE_SHAPE = re.compile(r"^\d{1,4}([./\-])\d{1,2}\1\d{1,4}$")
# Words that name a phone: any 7-15 digits after one count.
_STRONG_CUE = (r"phone|tel|tél|telephone|téléphone|telefon|telefono|teléfono|telefone|telefoon|"
               r"mobil|mobiel|cell|cellulare|celular|móvil|movil|handy|portable|fax|call|"
               r"whatsapp|sms|dial|hotline|appel|llam|llám|chiam|anruf|rückruf|ruf|bel|ligue|"
               r"电话|電話|手机|手機|携帯|連絡先|联系")
# Words that may precede any number ("número", "contact", "reach", "joignable au"): a plain
# digit run after one counts only when ``phonenumbers`` finds it valid in a region whose
# language uses the word.
_WEAK_CUES: dict[str, tuple[str, ...]] = {
    "numéro": ("FR", "BE", "CH", "LU", "CA"), "joindre": ("FR", "BE", "CH", "LU", "CA"),
    "joignable": ("FR", "BE", "CH", "LU", "CA"), "número": ("ES", "PT", "BR", "MX", "AR"),
    "liga": ("BR", "PT"), "ligar": ("BR", "PT"), "contacto": ("ES", "PT", "MX", "AR"),
    "contato": ("BR", "PT"), "nummer": ("DE", "AT", "CH", "NL", "BE"),
    "erreichbar": ("DE", "AT", "CH"), "bereikbaar": ("NL", "BE"), "numer": ("PL",),
    "reperibile": ("IT", "CH"), "contattare": ("IT", "CH"), "contattami": ("IT", "CH"),
    "numero": ("IT", "CH", "FR", "ES", "PT", "BR"),
}
_ANY_REGION = ("US", "GB", "DE", "FR", "IT", "ES", "NL", "BE", "AT", "CH", "PT", "PL", "IE",
               "SE", "AU", "IN", "BR", "MX", "CA")
_WEAK_CUE = (r"numéro|número|numer|nummer|contact|contatt|reach|text|ring|ph|cel|tlf|signal|"
             r"joindre|joignable|erreichbar|bereikbaar|reperibile|liga|ligar")
_CUE_WORD = re.compile(rf"\b(?:(?P<strong>{_STRONG_CUE})|{_WEAK_CUE})\w*", re.IGNORECASE)
_GAP = re.compile(r"[^\d]{0,50}")  # from the cue to the number
# "Ich bin unter 0151 ... erreichbar", "je suis joignable au ...": the cue after the number.
_CUE_AFTER = re.compile(r"[^\d\n]{0,12}?\b(?:erreichbar|bereikbaar|joignable|reperibile|"
                        r"anrufen|zurückrufen|bellen|chiamare|llamar|ligar|appeler)\b",
                        re.IGNORECASE)
_ISBN = re.compile(r"\bISBN(?:-1[03])?:?\s*$", re.IGNORECASE)
_REGIONS = ("DE", "FR", "GB", "IT", "ES", "NL", "BE", "AT", "CH", "PT", "PL", "IE", "SE", "AU",
            "IN")


@lru_cache(maxsize=1)
def _phonenumbers() -> Any:
    import phonenumbers

    return phonenumbers


def _possible(number: str, region: str | None) -> bool:
    """Whether ``number`` parses and is a possible number (length check) for ``region``."""
    lib = _phonenumbers()
    try:
        parsed = lib.parse(number, region)
    except lib.NumberParseException:
        return False
    return bool(lib.is_possible_number(parsed))


def _cued(core: str, digits: str, text: str, start: int) -> bool:
    """Whether a phone cue stands before ``core`` (or a reachability word after it); after a
    weak cue a plain digit run must be a valid number of the cue language's regions."""
    before = text[max(0, start - 70):start]
    weak: tuple[str, ...] | None = None
    for match in _CUE_WORD.finditer(before):
        if _GAP.fullmatch(before, match.end()) is None:
            continue
        if match.group("strong"):
            return True
        weak = _WEAK_CUES.get(match.group().lower(), _ANY_REGION)
    if weak is None and _CUE_AFTER.match(text, start + len(core)):
        weak = _ANY_REGION
    if weak is None:
        return False
    if not core.isdigit():
        return True
    return any(_valid(digits, region) for region in weak)


def _valid(number: str, region: str) -> bool:
    """Whether ``number`` is a valid (assigned-range) number of ``region``."""
    lib = _phonenumbers()
    try:
        return bool(lib.is_valid_number(lib.parse(number, region)))
    except lib.NumberParseException:
        return False


def _international(core: str) -> bool:
    number = core.replace("(0)", "").replace("( 0 )", "")
    if number.startswith("00"):
        number = "+" + number[2:]
    return _possible(number, None)


@register
class PhoneRecognizer(Recognizer):
    """Phone numbers by shape (validated with ``phonenumbers``) or after a phone cue."""

    name = "phone"
    types = ("PHONE_NUMBER",)

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # a candidate holds 7-15 digits
        for match in _CANDIDATE.finditer(text):
            value = match.group()
            core = _EXTENSION.sub("", value)
            digits = digits_of(core)
            if not 7 <= len(digits) <= 15 or len(set(digits)) == 1:
                continue
            score = self._score(core, digits, text, match.start())
            if score:
                yield Entity("PHONE_NUMBER", match.start(), match.end(), score)

    @staticmethod
    def _score(core: str, digits: str, text: str, start: int) -> float:
        """Confidence that ``core`` (the candidate without extension) is a phone number, or 0."""
        if core.startswith("+") or (core.startswith("00") and not core.isdigit()):
            return 0.95 if _international(core) else 0.0
        if _ISBN.search(text, max(0, start - 12), start):
            return 0.0  # "ISBN 0-306-40615-2"
        cued = _cued(core, digits, text, start)
        if _DATE_SHAPE.match(core) and not cued:
            return 0.0
        if _NANP.match(core) and len(digits) in (10, 11):
            return 0.9
        grouped = sum(1 for c in core if not c.isdigit()) >= 1
        if core.startswith("(") and len(digits) >= 9:
            return 0.85
        if grouped and digits[0] == "0" and 9 <= len(digits) <= 12 and "/" not in core and any(
                _possible(digits, region) for region in _REGIONS):
            return 0.8
        if cued and len(digits) >= 7:
            return 0.85
        if _NANP_DIGITS.match(digits) and _NUMBER_WORD.search(text, max(0, start - 30),
                                                              start + len(core) + 30):
            return 0.8
        return 0.0
