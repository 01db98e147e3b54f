"""Postal addresses: a street line (or PO box, military or postcode anchor) extended over the
neighbouring address-like lines (unit, city, state, postcode).

Anchors:

* US/UK/Commonwealth street lines: house number, up to four capitalised words, a USPS C1 street
  suffix (``Street``, ``Ave``, ``Stravenue``, ``Mews``...), optional unit (``Apt 4``,
  ``Suite 310``).
* Continental street lines: a street keyword in the local language (``rue``, ``Calle``, ``Via``,
  ``Rua``, ``ul.``...) with a house number on the same line, or a compound ending in
  ``-straße``/``-weg``/``-laan``/``-straat``... followed by a number.
* ``PO Box 123``, US military (``PSC 1234, Box 5678 APO AE 09012``), ``City, ST 12345``, UK and
  Canadian postcodes.

Sources: USPS Publication 28 appendix C1 (street suffixes), Royal Mail and Canada Post postcode
formats, national street-type words from each country's postal guidance.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from modelmix.guard._base import Entity
from modelmix.guard._patterns import Anchored, Recognizer, anchors_of, has_digit, register

__all__ = ["AddressRecognizer"]

_SUFFIX = (
    "alley|allee|aly|anex|annex|arcade|avenue|ave|av|bayou|beach|bend|bluffs?|bottom|boulevard|"
    "blvd|branch|bridge|brooks?|burgs?|bypass|camp|canyon|cape|causeway|centers?|circles?|cir|"
    "cliffs?|close|club|commons?|corners?|course|courts?|ct|coves?|creek|crescent|cres|crest|"
    "crossing|crossroads?|curve|dale|dam|divide|drives?|dr|estates?|expressway|extensions?|falls?|"
    "ferry|fields?|flats?|fords?|forest|forges?|forks?|fort|freeway|gardens?|gateway|glens?|"
    "greens?|groves?|harbors?|haven|heights|hts|highway|hwy|hills?|hollow|inlet|islands?|isle|"
    "junctions?|keys?|knolls?|lakes?|land|landing|lane|ln|lights?|loaf|locks?|lodge|loop|mall|"
    "manors?|meadows?|mews|mills?|mission|motorway|mount|mountains?|neck|orchard|oval|overpass|"
    "parade|parks?|parkways?|pkwy|pass|passage|path|pike|pines?|place|pl|plains?|plaza|points?|"
    "ports?|prairie|radial|ramp|ranch|rapids?|rest|ridges?|rise|river|roads?|rd|route|row|rue|run|"
    "shoals?|shores?|skyway|springs?|spurs?|squares?|sq|station|stravenue|stream|streets?|st|"
    "summit|terrace|ter|throughway|trace|track|trafficway|trail|trl|trailer|tunnel|turnpike|"
    "underpass|unions?|vale|valleys?|via|viaduct|views?|villages?|ville|vista|walks?|wall|ways?|"
    "wells?|wharf|yard"
)
_UNIT = (r"(?:,?[ \t]*(?:apt\.?|apartment|suite|ste\.?|unit|#|floor|fl\.?|room|rm\.?|bldg\.?|"
         r"building|flat)[ \t]*#?[ \t]*[A-Za-z0-9\-]{1,6})?")
_Q = "\u2019"  # right single quotation mark, as in O'Connell typed by a word processor
_STREET_US = re.compile(
    rf"\d(?<![\w.,\-]\d)\d{{0,5}}[A-Za-z]?(?:-\d{{1,4}})?[ \t]+(?:(?:[NSEW]\.?|North|South|East|"
    rf"West)[ \t]+)?(?:(?:[A-Z][\w'{_Q}.\-]*|\d{{1,3}}(?:st|nd|rd|th))[ \t]+){{1,4}}?"
    rf"(?i:{_SUFFIX})\.?(?:[ \t]+(?:[NSEW]|NE|NW|SE|SW)\b\.?)?(?![\w])(?i:{_UNIT})"
)
_STREET_WORDS = (
    "rue|avenue|av\\.|bd|boulevard|chemin|impasse|allée|place|quai|route|cours|passage|square|"
    "voie|faubourg|calle|c/|avenida|avda\\.?|plaza|pza\\.|paseo|camino|carrer|ronda|travesía|"
    "callejón|glorieta|via|viale|piazza|piazzale|corso|largo|vicolo|borgo|contrada|strada|"
    "rotonda|vico|rua|travessa|praça|alameda|estrada|rodovia|ladeira|ulica|ul\\.|aleja|"
    "rambla|pasaje|vial|carretera|cuesta|urbanización|avinguda|passeig|"
    "al\\.|plac|osiedle|straße|strasse|platz|r\\.|circuito|corredor|prolongación|privada|"
    "andador|calzada|cerrada|retorno|periférico|diagonal|diag\\."
)
# A street keyword, then up to six words and a house number on the same line ("Via Roma 12",
# "Calle de Alcalá, 48"), or a number before the keyword ("14 bis, rue des Lilas").
_STREET_EU = Anchored(
    rf"(?:{_STREET_WORDS})[ \t]+(?:[\w'{_Q}.\-]+[ \t]+){{0,6}}?[\w'{_Q}.\-]*,?[ \t]*"
    r"(?:n[º°o]\.?[ \t]*)?\d{1,5}[A-Za-z]?(?![\w])",
    anchors_of(_STREET_WORDS),
)
_STREET_EU_NAME = Anchored(rf"(?:{_STREET_WORDS})[ \t]+(?:[\w'{_Q}\-]+[ \t]*){{1,6}}",
                           anchors_of(_STREET_WORDS))
# Street words that are also ordinary English words count only when capitalised.
_AMBIGUOUS = frozenset("place route passage square via cours voie ronda largo corso plaza avenue "
                       "boulevard camino rotonda al. bd r. circuito corredor privada retorno "
                       "diagonal".split())
_NUMBER_BEFORE = re.compile(r"\d{1,4}(?:[ \t]?(?:bis|ter))?,?[ \t]+$", re.IGNORECASE)
_STREET_COMPOUND = re.compile(
    r"[A-Z\u00c4\u00d6\u00dc](?<![\w][A-Z\u00c4\u00d6\u00dc])[\w\-\u00e4\u00f6\u00fc\u00df]*"
    r"(?i:straße|strasse|str\.|weg|platz|allee|gasse|ring|damm|ufer|steig|chaussee|pfad|laan|"
    r"straat|plein|gracht|kade|singel|dijk|markt|gade|vej|gatan|vägen|veien|gata|katu|tie|kuja|"
    r"bulevardi)[ \t]+\d{1,5}"
    r"(?:[/\-]\d{1,4})?[ \t]?[a-zA-Z]?(?![\w])"
)
# Street types written after the name (Hungarian "Kaposvári utca 34.", Finnish
# "Capellan puistokuja 953"), and Romanian street types, distinctive enough to need no number.
_STREET_AFTER = re.compile(
    r"[A-Z\u00c0-\u017d][\w\-]*(?:[ \t][A-Z\u00c0-\u017d][\w\-]*){0,3}[ \t]"
    r"(?:utca|út|tér|körút|köz|sétány|fasor|u\.|puistokuja|katu|tie|kuja)[ \t]+\d{1,5}\.?"
    r"(?![\w])")
_STREET_RO = re.compile(
    r"(?<![\w])(?:Strada|Str\.|Bulevardul|Bd\.|Calea|Drumul|Aleea|Splaiul|Intrarea|Șoseaua|"
    r"Soseaua)[ \t]+[A-Z\u00c0-\u017d\u0218\u021a][\w\-]*(?:[ \t]+[A-Z\u00c0-\u017d\u0218\u021a]"
    r"[\w\-]*){0,4}(?:,?[ \t]*(?:nr\.?[ \t]*)?\d{1,5}[A-Za-z]?)?(?![\w])")
# Australian "City, NSW 2000" / "City, NT, 2956".
_STATE_POSTCODE_AU = re.compile(r",[ \t]*(?:NSW|VIC|QLD|WA|SA|TAS|ACT|NT),?[ \t]+\d{4}(?![\w])")
_BOXES = ("p.o. box|po box|p.o.box|p o box|post office box|postfach|apartado de correos|"
          "casella postale")
_PO_BOX = Anchored(rf"(?:{_BOXES.replace('.', chr(92) + '.')})[ \t]*#?[ \t]*\d{{1,8}}",
                   tuple(_BOXES.split("|")))
_MILITARY = re.compile(r"(?:APO|FPO|DPO)[ \t]+A[AEP][ \t]+\d{5}(?![\w])")
_MILITARY_LINE = re.compile(r"(?:USNS|USNV|USS|USCGC|PSC|Unit)[ \t]+[\w ,]{1,40}[ \t\n]*$")
_STATE_ZIP = re.compile(
    r",[ \t]*(?:A[KLRZ]|C[AOT]|D[CE]|FL|GA|HI|I[ADLN]|K[SY]|LA|M[ADEINOST]|N[CDEHJMVY]|O[HKR]|PA|"
    r"RI|S[CD]|T[NX]|UT|V[AIT]|W[AIVY]|A[AEPS]|GU|MP|PR|UM|FM|MH|PW)[ \t]+\d{5}(?:-\d{4})?"
    r"(?![\w])"
)
_CITY_BEFORE = re.compile(rf"(?:[A-Z][a-zA-Z.'{_Q}\-]+[ \t]+){{0,3}}[A-Z][a-zA-Z.'{_Q}\-]+$")
_HOUSE_NO = re.compile(r"(?:H\.[ \t]?No\.|House No\.|Flat No\.|Plot No\.)[ \t]*[\w/\-]{1,8}")
# Continental "street 12, 12345 City" without a known street word: found from the postcode and
# city, then a capitalised street line with a house number just before it.
_POSTCODE_CITY = re.compile(
    r"\d(?<![\w\-]\d)(?:\d{3,4}(?:[ \t]?[A-Z]{2})?|\d-\d{3}|\d{4}-?\d{3}|\d{2}[ \t]\d{2})"
    r"(?![\w\-])[ \t,]+"
    r"[A-Z\u00c0-\u017d][\w\-]+(?:[ \t](?:[A-Z\u00c0-\u017d][\w\-]+|an der|am|sur|de|del))*"
)
_STREET_BEFORE = re.compile(
    r"[A-Z\u00c0-\u017d][\w'.\-]*(?:[ \t](?:[A-Z\u00c0-\u017d][\w'.\-]*|de|la|del|van|von|der|"
    r"di|da|do|dos|das)){0,5}[ \t,]+\d{1,5}[a-zA-Z]?(?:-\d{1,4})?"
    r"[ \t]*,?[ \t\n]*(?:[A-Z][\w' \-]{1,30},[ \t]*)?$"
)
_POSTCODE = re.compile(
    r"[A-Z](?<![\w][A-Z])(?:[A-Z]?\d[A-Z\d]?[ \t]?\d[ABD-HJLNP-UW-Z]{2}|(?<=[ABCEGHJ-NPRSTVXY])\d"
    r"[A-Z][ \t]?\d[A-Z]\d)(?![\w])"
)
_SEGMENT = re.compile(
    r"(?:,[ \t]*|[ \t]*\n[ \t]*|[ \t]+(?=\d{4,5}[ \t]))(?P<seg>(?:[\d(]|[^\W\d_])[^\n,;:!?]{0,45})"
)
_SEG_OK = re.compile(
    r"^(?:\d{2}-\d{3}|\d{4,6}(?:[ \t]?[A-Z]{2})?|[A-Z]{1,2}\d[A-Z\d]?[ \t]?\d[A-Z]{2}|"
    r"[A-Z]\d[A-Z][ \t]?\d[A-Z]\d|(?:apto|apt|ap|sala|bloco|casa|andar|piso|planta|puerta|"
    r"esc|étage|etage|bte|stiege|tür|whg|flat|unit|suite|ste)\.?[ \t]*[\dA-Za-z][\w\-/]*|"
    r"(?:[A-Z\u00c0-\u017d(][\w'\u2019.()\-/]*|\d[\w\-]*|de|di|da|"
    r"del|la|le|sur|am|an|der|upon|on|en)(?:[ \t]+(?:[A-Z\u00c0-\u017d(][\w'\u2019.()\-/]*|"
    r"\d[\w\-]*|-|de|di|da|del|la|le|sur|am|an|der|upon|on|en|du|des|y|e|i|zu|bei|im|of)){0,5})"
    r"[ \t]*$"
)
# A segment that starts a phone number or mail address ends the address ("..., Tel. 030 ...").
_CONTACT = re.compile(r"(?:tel|t[ée]l|phone|fax|mobil|mobile|handy|cell|e-?mail|mail|tlf|"
                      r"telefon|telefone|tel[ée]fono)\b", re.IGNORECASE)
_YEAR_LEAD = re.compile(r"(?:in|since|by|of|until|from|during|before|after|circa|c\.)[ \t]+$",
                        re.IGNORECASE)


# Japan: the postal mark, the postcode and the address written after it (〒150-0002 東京都...).
_JP_POSTAL = re.compile(r"〒\s?\d{3}-?\d{4}(?:[ \t\u3000]*[^\s,\uff0c\u3001\u3002]{1,40})?")

#: The anchors that can match text without a digit.
_DIGIT_FREE = (_HOUSE_NO, _STREET_RO)


@register
class AddressRecognizer(Recognizer):
    """Postal addresses (see the module docstring), one span per address."""

    name = "address"
    types = ("ADDRESS",)

    def find(self, text: str) -> Iterator[Entity]:
        for start, end, score in self._anchors(text):
            yield Entity("ADDRESS", start, self._extend(text, end), score)
        if "〒" in text:
            for match in _JP_POSTAL.finditer(text):
                yield Entity("ADDRESS", match.start(), match.end(), 0.9)

    def _anchors(self, text: str) -> Iterator[tuple[int, int, float]]:
        # Every anchor but a house-number label and a Romanian street needs a digit: without
        # one (most prose) those scans are skipped (``has_digit``: nothing they could match).
        digit = has_digit(text)
        if digit:
            yield from self._streets(text)
        for other in (_DIGIT_FREE if not digit else
                      (_STREET_COMPOUND, _PO_BOX, _HOUSE_NO, _STREET_AFTER, _STREET_RO)):
            for match in other.finditer(text):
                yield match.start(), match.end(), 0.85
        if digit:
            yield from self._regions(text)

    def _streets(self, text: str) -> Iterator[tuple[int, int, float]]:
        for match in _STREET_US.finditer(text):
            if not self._year_not_number(text, match):
                yield match.start(), match.end(), 0.9
        for pattern in (_STREET_EU, _STREET_EU_NAME):
            for match in pattern.finditer(text):
                keyword = match.group().split(None, 1)[0]
                before = _NUMBER_BEFORE.search(text, max(0, match.start() - 12), match.start())
                if keyword.lower() in _AMBIGUOUS and keyword[0].islower() and not before:
                    continue
                if before or pattern is _STREET_EU:
                    yield (before.start() if before else match.start()), match.end(), 0.85

    @staticmethod
    def _regions(text: str) -> Iterator[tuple[int, int, float]]:
        for match in _MILITARY.finditer(text):
            line = _MILITARY_LINE.search(text, max(0, match.start() - 50), match.start())
            yield (line.start() if line else match.start()), match.end(), 0.85
        for match in (*_STATE_ZIP.finditer(text), *_STATE_POSTCODE_AU.finditer(text)):
            city = _CITY_BEFORE.search(text, max(0, match.start() - 60), match.start())
            yield (city.start() if city else match.start() + 1), match.end(), 0.85
        for match in _POSTCODE.finditer(text):
            yield match.start(), match.end(), 0.7
        for match in _POSTCODE_CITY.finditer(text):
            street = _STREET_BEFORE.search(text, max(0, match.start() - 70), match.start())
            if street:
                yield street.start(), match.end(), 0.8

    @staticmethod
    def _year_not_number(text: str, match: re.Match[str]) -> bool:
        """``in 2019 Central Park``: a year after a preposition, not a house number."""
        number = match.group().split()[0]
        return (len(number) == 4 and number[:2] in ("19", "20")
                and _YEAR_LEAD.search(text, max(0, match.start() - 12), match.start()) is not None)

    @staticmethod
    def _extend(text: str, end: int) -> int:
        """Extend over up to five following address-like segments (unit, district, city, state,
        postcode)."""
        for _ in range(5):
            match = _SEGMENT.match(text, end)
            if match is None:
                break
            segment = match.group("seg").rstrip(" \t.")
            if _CONTACT.match(segment) or not _SEG_OK.match(segment):
                break
            end = match.start("seg") + len(segment)
        return end
