"""Structured identifiers: pattern, then a check digit or a context cue, never a pattern alone
where the pattern is common in ordinary text.

Every recognizer reads normalised text (full-width digits, look-alike letters, odd dashes and
spaces already folded) and allows separators between digit groups (``4111 1111``, ``4111-1111``,
``4111.1111``, ``4 1 1 1 ...``). Validation sources are listed in :mod:`._validators`.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterator

from modelmix.guard._base import Entity
from modelmix.guard._patterns import (
    Anchored,
    Recognizer,
    anchors_of,
    cue_regex,
    digits_of,
    has_digit,
    preceded_by_word,
    register,
    windows,
)
from modelmix.guard._validators import (
    IBAN_LENGTHS,
    iban_ok,
    luhn_ok,
    ssn_ok,
    vin_ok,
)

__all__ = [
    "CreditCardRecognizer",
    "DateOfBirthRecognizer",
    "EmailRecognizer",
    "IbanRecognizer",
    "IpRecognizer",
    "SsnRecognizer",
    "VehicleRecognizer",
]

_SEP = r"[ \-.]{1,2}"


@register
class EmailRecognizer(Recognizer):
    """RFC 5322 addresses (practical subset) and the ``name [at] host [dot] com`` disguise."""

    name = "email"
    types = ("EMAIL_ADDRESS",)
    _PLAIN = re.compile(
        r"(?<![A-Za-z0-9_.+\-])[A-Za-z0-9_%+\-]+(?:\.[A-Za-z0-9_%+\-]+)*\s?@\s?"
        r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9\-]{0,62}"
        r"[A-Za-z0-9])?)*\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])"
    )
    _AT = r"\s*[\[({<]\s*at\s*[\])}>]\s*|\s+at\s+|\s*\(@\)\s*"
    _DOT = r"\s*[\[({<]\s*dot\s*[\])}>]\s*|\s+dot\s+|\."
    _OBFUSCATED = re.compile(
        rf"(?<![\w.])[A-Za-z0-9_%+\-]+(?:(?:{_DOT})[A-Za-z0-9_%+\-]+)*(?:{_AT})"
        rf"[A-Za-z0-9\-]+(?:(?:{_DOT})[A-Za-z0-9\-]+)*(?:{_DOT})(?:com|org|net|edu|gov|io|co|de|fr|"
        r"uk|es|it|nl|info|biz|us|ca|me|dev|ai)(?![A-Za-z0-9])",
        re.IGNORECASE,
    )

    _URL_USER = re.compile(r"://[^\s/@]*$")  # user info of a URL, not a mailbox
    _AT_HINT = re.compile(r"@|[ \[({<]at[ \])}>]", re.IGNORECASE)

    def find(self, text: str) -> Iterator[Entity]:
        for start, end in windows(text, self._AT_HINT, 80, 260):
            for match in self._PLAIN.finditer(text, start, end):
                if not self._URL_USER.search(text, max(0, match.start() - 80), match.start()):
                    yield Entity("EMAIL_ADDRESS", match.start(), match.end(), 1.0)
            for match in self._OBFUSCATED.finditer(text, start, end):
                if "@" not in match.group():
                    yield Entity("EMAIL_ADDRESS", match.start(), match.end(), 0.85)


# IIN ranges (ISO/IEC 7812): the first digits a payment card can start with.
_CARD_PREFIX = re.compile(r"^(?:4|5[0-9]|2[2-7]|3[0-9]|6|1800|2131|8)")


_IMEI_CUE = re.compile(r"\bimei\b[^\d\n]{0,16}$", re.IGNORECASE)
_IMEI = re.compile(r"\bimei\b[^\d\n]{0,16}(?P<value>\d{2}[ \-]?\d{6}[ \-]?\d{6}[ \-]?\d(?:\d)?)"
                   r"(?![\w])", re.IGNORECASE)


@register
class CreditCardRecognizer(Recognizer):
    """Payment cards: 13-19 digits, card-like grouping, known IIN prefix, Luhn check."""

    name = "credit_card"
    types = ("CREDIT_CARD",)
    # 12- and 13-digit numbers (old Visa, Maestro) count only after such a word.
    _IBAN_HEAD = re.compile(r"[A-Za-z]{2}\d{2}[ \-.]?$")
    _CUE = re.compile(r"card|visa|master|maestro|amex|karte|carte|tarjeta|carta|cart[ãa]o|\bcc\b",
                      re.IGNORECASE)
    _PATTERN = re.compile(
        rf"\d(?<![\w\-]\d)(?:\d{{3}}{_SEP}\d{{4}}{_SEP}\d{{4}}{_SEP}\d{{1,4}}(?:{_SEP}\d{{1,3}})?"
        rf"|\d{{3}}{_SEP}\d{{6}}{_SEP}\d{{4,5}}|\d{{3}}{_SEP}\d{{4}}{_SEP}\d{{4}}"
        rf"|(?:[ \-.]{{1,3}}\d){{11,18}}|\d{{11,18}})(?![\w])"
    )

    # A 16-digit card followed by an unrelated short number ("4111 1111 1111 1111 200").
    _SIXTEEN = re.compile(rf"\d{{4}}{_SEP}\d{{4}}{_SEP}\d{{4}}{_SEP}\d{{4}}")

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        for match in self._PATTERN.finditer(text):
            start, value = match.start(), match.group()
            digits = digits_of(value)
            if len(digits) > 16 and not luhn_ok(digits) and self._SIXTEEN.match(value):
                value = self._SIXTEEN.match(value).group()  # type: ignore[union-attr]
                digits = digits_of(value)
            if not (12 <= len(digits) <= 19 and _CARD_PREFIX.match(digits) and luhn_ok(digits)
                    and len(set(digits)) > 1):
                continue
            if self._IBAN_HEAD.search(text, max(0, start - 6), start):
                continue  # the tail of an IBAN with a wrong check, not a card
            if _IMEI_CUE.search(text, max(0, start - 24), start):
                continue  # IMEIs are Luhn-checked too: VehicleRecognizer reports them
            if len(digits) >= 14 or self._CUE.search(text, max(0, start - 60), start):
                yield Entity("CREDIT_CARD", start, start + len(value), 1.0)


@register
class IbanRecognizer(Recognizer):
    """IBANs (ISO 13616) in any grouping: country length and mod-97 check."""

    name = "iban"
    types = ("IBAN_CODE",)
    # Found by the check digits (a digit run is cheap to scan for), country code looked up behind.
    _START = re.compile(r"\d(?:(?<=[A-Za-z]{2}\d)|(?<=[A-Za-z]{2} \d))[ \-.]?\d")

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        for match in self._START.finditer(text):
            start = match.start() - (2 if text[match.start() - 1] != " " else 3)
            country = text[start:start + 2].upper()
            length = IBAN_LENGTHS.get(country)
            if length is None or preceded_by_word(text, start):
                continue
            end = _collect(text, match.end(), length - 4)
            if end is None:
                continue
            value = country + digits_of(match.group()) + "".join(
                c for c in text[match.end():end] if c.isalnum())
            if iban_ok(value):
                yield Entity("IBAN_CODE", start, end, 1.0)


def _collect(text: str, pos: int, count: int) -> int | None:
    """End offset after ``count`` alphanumerics from ``pos``, allowing 1-2 separators between
    them; ``None`` if the run is shorter or continues with another alphanumeric."""
    gap = 0
    while count and pos < len(text):
        char = text[pos]
        if char.isascii() and char.isalnum():
            count -= 1
            gap = 0
        elif char in " -." and gap < 2:
            gap += 1
        else:
            return None
        pos += 1
    if count or (pos < len(text) and text[pos].isalnum()):
        return None
    return pos


# "social" alone is how people name the number ("my social is ...", "seguro social: ..."),
# when a number is said to follow it (not "social media stats: 123456789").
_SSN_CUES = (r"ssn|ss ?#|ss ?no|ss ?num(?:ber)?|soc\.? ?sec|sozialversicherungsnummer"
             r"|social(?=\s*(?:[#:=(]|(?:is|was|es|'s|\u2019s|no|num|number|security|sec)\b))"
             r"|taxpayer id|itin")


@register
class SsnRecognizer(Recognizer):
    """US SSNs: 3-2-4 grouping (any separator), spaced digits, or 9 bare digits after a cue."""

    name = "us_ssn"
    types = ("US_SSN",)
    _GROUPED = re.compile(r"\d(?<![\w\-.]\d)\d{2}([ \-.]{1,3})\d{2}\1\d{4}(?![\w]|[\-.]\d)")
    _SPACED = re.compile(r"\d(?<![\d\-]\d)(?<!\d \d)(?:[ \-.]\d){8}(?![ \-.]?\d)")
    _CUED = cue_regex(_SSN_CUES, r"\d{9}|\d{3}[ \-.]{1,3}\d{2}[ \-.]{1,3}\d{4}"
                      r"|\d(?:[ \-.]\d){8}", gap=30)

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        for pattern in (self._GROUPED, self._SPACED):
            for match in pattern.finditer(text):
                if ssn_ok(digits_of(match.group())):
                    yield Entity("US_SSN", match.start(), match.end(), 0.95)
        for match in self._CUED.finditer(text):
            # With an explicit cue ("SSN", "social security") any 9 digits count, even
            # numbers the SSA never issues (123-45-6789, ITIN-like 9xx): failing closed
            # is right for a guard, and examples in real prompts use exactly those.
            if len(digits_of(match.group("value"))) == 9:
                yield Entity("US_SSN", match.start("value"), match.end("value"), 1.0)


_HEX_COLON = frozenset("0123456789abcdefABCDEF:.")


@register
class IpRecognizer(Recognizer):
    """IPv4 (dotted quad, octets <= 255, not a version string) and IPv6 addresses."""

    name = "ip"
    types = ("IP_ADDRESS",)
    _V4 = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(?![\w]|\.\d)")
    _VERSION = re.compile(r"(?:v|version |ver\. ?)$", re.IGNORECASE)
    _V6_HINT = re.compile(r":[0-9A-Fa-f]{0,4}:")
    _V6_RUN = re.compile(r"[0-9A-Fa-f:.]+")

    def find(self, text: str) -> Iterator[Entity]:
        yield from self._v4(text)
        yield from self._v6(text)

    def _v4(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return
        for match in self._V4.finditer(text):
            start = match.start()
            if preceded_by_word(text, start, ".") or self._VERSION.search(
                    text, max(0, start - 9), start):
                continue
            octets = [int(octet) for octet in match.group().split(".")]
            if max(octets) <= 255 and octets[0] not in (0, 127, 255):
                yield Entity("IP_ADDRESS", start, match.end(), 0.95)

    def _v6(self, text: str) -> Iterator[Entity]:
        seen = -1
        for hint in self._V6_HINT.finditer(text):
            if hint.start() < seen:
                continue
            start = hint.start()
            while start > 0 and text[start - 1] in _HEX_COLON:
                start -= 1
            run = self._V6_RUN.match(text, start)
            if run is None:
                continue
            seen = run.end()
            value = run.group().rstrip(".")
            after = text[run.end():run.end() + 1]
            if len(value) < 4 or preceded_by_word(text, start) or after.isalnum() or after == "_":
                continue
            try:
                address = ipaddress.IPv6Address(value)
            except ValueError:
                continue
            if sum(1 for group in value.split(":") if group) < 3 and not address.ipv4_mapped:
                continue  # "0::2", "a::b": a slice or a ratio far more often than a host
            yield Entity("IP_ADDRESS", start, start + len(value), 0.95)


_MONTHS = (r"jan(?:uary|uar|vier|eiro)?|feb(?:ruary|ruar|rero|braio)?|f[ée]v(?:rier)?|"
           r"mar(?:ch|s|zo|ço)?|m[äa]rz|apr(?:il|ile)?|avr(?:il)?|abr(?:il)?|may|mai|mayo|maggio|"
           r"maio|mei|jun(?:e|i|io|ho)?|juin|giugno|jul(?:y|i|io|ho)?|juil(?:let)?|luglio|"
           r"aug(?:ust|ustus)?|ao[uû]t|ago(?:sto)?|sep(?:t|tember|tembre|tiembre)?|set(?:tembre|"
           r"embro)?|oct(?:ober|obre|ubre)?|okt(?:ober)?|ott(?:obre)?|out(?:ubro)?|"
           r"nov(?:ember|embre|iembre)?|dec(?:ember)?|d[ée]c(?:embre)?|dez(?:ember|embro)?|"
           r"dic(?:iembre|embre)?")
_DATE = (rf"\d{{1,4}}[./\- ]{{1,2}}\d{{1,2}}[./\- ]{{1,2}}\d{{2,4}}"
         rf"|\d{{1,2}}[\-/ ](?:{_MONTHS})\.?[\-/ ]\d{{2,4}}"
         rf"|\d{{1,2}}(?:st|nd|rd|th|er|º)?\.?\s+(?:of\s+|de\s+)?(?:{_MONTHS})\.?,?\s+"
         rf"(?:de\s+)?\d{{4}}|(?:{_MONTHS})\.?\s+\d{{1,2}}(?:st|nd|rd|th)?,?\s+\d{{4}}")
_DOB_CUES = (r"dob|d\.o\.b\.?|date of birth|birth ?date|birthday|born(?: on)?|b\.|"
             r"geboren(?: am)?|geburtsdatum|geb\.|née le|nee le|né le|ne le|date de naissance|"
             r"fecha de nacimiento|nacido(?: el)?|nacida(?: el)?|nato il|nata il|data di nascita|"
             r"data de nascimento|nascido em|nascida em|geboortedatum|geboren op")


_YEAR = re.compile(r"(?<!\d)(1[5-9]\d\d|20\d\d)(?!\d)")
#: Birth dates before this year are history, not personal data.
_OLDEST_BIRTH_YEAR = 1900


@register
class DateOfBirthRecognizer(Recognizer):
    """Dates of birth: a date (numeric or with a month name, six languages) after a birth cue."""

    name = "date_of_birth"
    types = ("DATE_OF_BIRTH",)
    _PATTERN = Anchored(
        rf"(?:{_DOB_CUES})(?![a-z])[^\n\d]{{0,16}}?(?<![A-Za-z0-9])(?P<value>{_DATE})(?![\w])",
        anchors_of(_DOB_CUES))

    def find(self, text: str) -> Iterator[Entity]:
        if not has_digit(text):
            return  # every pattern here needs a digit
        for match in self._PATTERN.finditer(text):
            years = _YEAR.findall(match.group("value"))
            if years and int(years[-1]) < _OLDEST_BIRTH_YEAR:
                continue  # a historical birth date (HIPAA's identifiers concern living people)
            yield Entity("DATE_OF_BIRTH", match.start("value"), match.end("value"), 0.9)


@register
class VehicleRecognizer(Recognizer):
    """Vehicle identification numbers (ISO 3779 check digit); MAC addresses and IMEIs
    (after "IMEI", Luhn-checked) as device IDs."""

    name = "vehicle_device"
    types = ("VEHICLE_ID", "DEVICE_ID")
    _VIN = re.compile(r"[A-HJ-NPR-Z0-9](?<![A-Za-z0-9][A-HJ-NPR-Z0-9])[A-HJ-NPR-Z0-9]{16}"
                      r"(?![A-Za-z0-9])")
    _MAC = re.compile(r"[:\-][0-9A-Fa-f]{2}[:\-][0-9A-Fa-f]{2}[:\-]")
    _MAC_FULL = re.compile(r"[0-9A-Fa-f]{2}([:\-])[0-9A-Fa-f]{2}(?:\1[0-9A-Fa-f]{2}){4}"
                           r"(?![\w:\-])")
    _VIN_CUE = re.compile(r"\bvin\b|vehicle", re.IGNORECASE)

    def _vins(self, text: str) -> Iterator[Entity]:
        cue: bool | None = None  # looked for once, at the first VIN-shaped run that needs it
        for match in self._VIN.finditer(text):
            value = match.group()
            if not (any(c.isdigit() for c in value) and any(c.isalpha() for c in value)):
                continue
            valid = vin_ok(value)
            if not valid and cue is None:
                cue = self._VIN_CUE.search(text) is not None
            if valid or cue:
                yield Entity("VEHICLE_ID", match.start(), match.end(), 0.85)

    def find(self, text: str) -> Iterator[Entity]:
        if has_digit(text):  # a VIN holds a digit
            yield from self._vins(text)
        for start, end in windows(text, self._MAC, 12, 12):
            for match in self._MAC_FULL.finditer(text, start, end):
                if not preceded_by_word(text, match.start(), ":-"):
                    yield Entity("DEVICE_ID", match.start(), match.end(), 0.85)
        if "imei" in text.lower() and has_digit(text):
            for match in _IMEI.finditer(text):
                if luhn_ok(digits_of(match.group("value"))[:15]):
                    yield Entity("DEVICE_ID", match.start("value"), match.end("value"), 0.95)


