"""Values and the encodings written to slip them past the guard, for the adversarial corpus.

Every value is generated here (seeded ``random`` and Faker), never copied from a public set.
"""

from __future__ import annotations

import base64
import random
import string
import urllib.parse

from faker import Faker

__all__ = ["Evasions"]

_WORDS = {
    "en": "zero one two three four five six seven eight nine".split(),
    "de": "null eins zwei drei vier fünf sechs sieben acht neun".split(),
    "fr": "zéro un deux trois quatre cinq six sept huit neuf".split(),
    "es": "cero uno dos tres cuatro cinco seis siete ocho nueve".split(),
    "it": "zero uno due tre quattro cinque sei sette otto nove".split(),
    "pt": "zero um dois três quatro cinco seis sete oito nove".split(),
    "nl": "nul een twee drie vier vijf zes zeven acht negen".split(),
}
_TENS = "_ _ twenty thirty forty fifty sixty seventy eighty ninety".split()
_TEENS = "ten eleven twelve thirteen fourteen fifteen sixteen seventeen eighteen nineteen".split()
# Digit look-alikes: each maps a digit to another script's digit or a confusable character.
_DIGIT_SETS = {
    "fullwidth": {str(d): chr(0xFF10 + d) for d in range(10)},
    "math_bold": {str(d): chr(0x1D7CE + d) for d in range(10)},
    "double_struck": {str(d): chr(0x1D7D8 + d) for d in range(10)},
    "arabic_indic": {str(d): chr(0x0660 + d) for d in range(10)},
    "devanagari": {str(d): chr(0x0966 + d) for d in range(10)},
    "circled": {"0": "\u24ea", **{str(d): chr(0x2460 + d - 1) for d in range(1, 10)}},
    "letters": {"0": "O", "1": "l"},
    "cyrillic": {"0": "\u041e", "3": "\u0417"},
}
_INVISIBLE = ["\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad", "\u180e"]
_MARKS = ["\u0336", "\u0332", "\u0335", "\ufe0f", "\u0305"]


class Evasions:
    """Seeded values (SSN, card, phone, names) and the ways of writing them."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.faker = Faker("en_US")
        self.faker.seed_instance(seed)

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def noise(self, size: int) -> bytes:
        return bytes(self.rng.randrange(256) for _ in range(size))

    # --- values -------------------------------------------------------------------------

    def ssn(self) -> str:
        """A well-formed SSN (not area 000/666/9xx, group 00 or serial 0000), 3-2-4 dashed."""
        area = self.rng.choice([*range(1, 666), *range(667, 900)])
        return f"{area:03d}-{self.rng.randint(1, 99):02d}-{self.rng.randint(1, 9999):04d}"

    def card(self) -> str:
        """A Luhn-valid 16-digit card number (Visa, Mastercard or Discover), 4-4-4-4 spaced."""
        prefix = self.pick(["4", "51", "52", "53", "54", "55", "6011"])
        body = prefix + "".join(self.rng.choice(string.digits) for _ in range(15 - len(prefix)))
        number = body + _luhn_digit(body)
        return " ".join(number[i:i + 4] for i in range(0, 16, 4))

    def phone(self) -> str:
        """A North American number, (415) 555-0132 style."""
        area, exchange = self.rng.randint(201, 989), self.rng.randint(200, 999)
        return f"({area}) {exchange}-{self.rng.randint(0, 9999):04d}"

    def name(self) -> str:
        return f"{self.faker.first_name()} {self.faker.last_name()}"

    def aws_pair(self) -> tuple[str, str]:
        """An AWS access key id and a 40-character secret access key (random, not real)."""
        key_id = self.pick(["AKIA", "ASIA"]) + "".join(
            self.rng.choice(string.ascii_uppercase + "234567") for _ in range(16))
        alphabet = string.ascii_letters + string.digits + "/+"
        secret = "".join(self.rng.choice(alphabet) for _ in range(40))
        return key_id, secret

    # --- encodings ----------------------------------------------------------------------

    def base64(self, text: str | bytes, *, urlsafe: bool = False) -> str:
        raw = text.encode() if isinstance(text, str) else text
        if urlsafe:
            return base64.urlsafe_b64encode(raw).decode().rstrip("=")
        return base64.b64encode(raw).decode()

    def percent(self, text: str, *, every: bool) -> str:
        """Percent-encode every character, or only the separators and spaces."""
        if every:
            return "".join(f"%{b:02X}" for b in text.encode())
        return "".join(c if c.isalnum() else urllib.parse.quote(c, safe="") if c != "-"
                       else "%2D" for c in text)

    def cjk(self, value: str) -> str:
        return "".join("〇一二三四五六七八九"[int(c)] if c.isdigit() else c for c in value)

    def concatenated(self, value: str) -> str:
        """The value as string pieces joined with + (Python / JavaScript)."""
        quote = self.pick(['"', "'"])
        pieces, rest = [], value
        while rest:
            size = self.rng.randint(1, 4)
            pieces.append(rest[:size])
            rest = rest[size:]
        return quote + f"{quote} + {quote}".join(pieces) + quote

    def hex(self, text: str) -> str:
        raw = text.encode().hex()
        if self.rng.random() < 0.3:
            raw = raw.upper()
        if self.rng.random() < 0.4:
            raw = self.pick([" ", ":"]).join(raw[i:i + 2] for i in range(0, len(raw), 2))
        return raw

    def quoted_printable(self, text: str) -> str:
        return "".join(f"={ord(c):02X}" if c.isdigit() or not c.isalnum() else c for c in text)

    def html_entities(self, text: str) -> str:
        style = self.rng.random()
        return "".join((f"&#{ord(c)};" if style < 0.5 else f"&#x{ord(c):x};")
                       if c.isdigit() or self.rng.random() < 0.5 else c for c in text)

    def json_escapes(self, text: str) -> str:
        return "".join(f"\\u{ord(c):04x}" if c.isdigit() or self.rng.random() < 0.3 else c
                       for c in text)

    def words(self, value: str, language: str = "en", *, oh: bool = False) -> str:
        """Each digit as a word; groups separated by ", " (the value's separators)."""
        names = _WORDS[language]
        groups = _groups(value)
        spelled = [" ".join(("oh" if oh and d == "0" else names[int(d)]) for d in g)
                   for g in groups]
        return self.pick([", ", " dash ", " - "]).join(spelled) if self.rng.random() < 0.7 \
            else " ".join(spelled)

    def tens_words(self, value: str) -> str:
        """Digit pairs as tens ("thirty-six"), teens, "double seven" and "oh five"."""
        return ", ".join(" ".join(_pair_words(pair) for pair in _pairs(group))
                         for group in _groups(value))

    def hundreds_words(self, value: str) -> str:
        """Three-digit groups as "five hundred thirty-six", the rest as digit pairs."""
        out = []
        for group in _groups(value):
            if len(group) == 3 and group[0] != "0":
                rest = _pair_words(group[1:]) if group[1:] != "00" else ""
                rest = rest.replace("oh ", "") if rest.startswith("oh ") else rest
                out.append(f"{_WORDS['en'][int(group[0])]} hundred"
                           + (f"{self.pick([' ', ' and '])}{rest}" if rest else ""))
            else:
                out.append(" ".join(_pair_words(pair) for pair in _pairs(group)))
        return ", ".join(out)

    def regroup(self, value: str, separators: str) -> str:
        """The digits of ``value`` in random groups of 1-4, joined by ``separators``."""
        digits = "".join(c for c in value if c.isdigit())
        groups: list[str] = []
        while digits:
            size = self.rng.randint(1, 4)
            groups.append(digits[:size])
            digits = digits[size:]
        if len(groups) < 3:
            groups = [groups[0][:1], groups[0][1:], *groups[1:]]
        out = groups[0]
        for group in groups[1:]:
            out += self.rng.choice(separators) + group
        return out

    def lookalike_digits(self, value: str, kind: str) -> str:
        table = _DIGIT_SETS[kind]
        if kind in ("letters", "cyrillic"):
            swapped = [i for i, c in enumerate(value) if c in table]
            keep = set(self.rng.sample(swapped, min(len(swapped), 2)))
            return "".join(table[c] if i in keep else c for i, c in enumerate(value))
        return "".join(table.get(c, c) for c in value)

    def invisible(self, value: str) -> str:
        mark = self.pick(_INVISIBLE)
        every = self.rng.random() < 0.5
        return "".join(c + mark if c.isdigit() and (every or self.rng.random() < 0.3) else c
                       for c in value).rstrip(mark)

    def marks(self, value: str) -> str:
        mark = self.pick(_MARKS)
        return "".join(c + mark if c.isdigit() else c for c in value)

    def interleave(self, value: str) -> str:
        junk = self.pick(["x", "#", "*", "ab", "q"])
        digits = [c for c in value if c.isdigit()]
        if len(junk) == 2 or junk == "q":
            return "".join(d + self.rng.choice(string.ascii_lowercase) for d in digits[:-1]) \
                + digits[-1]
        return junk.join(digits)


def _groups(value: str) -> list[str]:
    """The digit groups of a formatted value ("(415) 555-0132" -> 415, 555, 0132)."""
    return "".join(c if c.isdigit() else " " for c in value).split()


def _pairs(group: str) -> list[str]:
    """"805" -> ["8", "05"]: an odd group starts with its single digit, as people say it."""
    head = group[:len(group) % 2]
    return ([head] if head else []) + [group[i:i + 2] for i in range(len(head), len(group), 2)]


def _pair_words(pair: str) -> str:
    units = _WORDS["en"]
    if len(pair) == 1:
        return units[int(pair)]
    if pair[0] == pair[1]:
        return f"double {units[int(pair[0])]}"
    if pair[0] == "0":
        return f"oh {units[int(pair[1])]}"
    if pair[0] == "1":
        return _TEENS[int(pair[1])]
    return _TENS[int(pair[0])] + (f"-{units[int(pair[1])]}" if pair[1] != "0" else "")


def _luhn_digit(body: str) -> str:
    total = 0
    for position, char in enumerate(reversed(body)):
        value = int(char)
        if position % 2 == 0:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return str((10 - total % 10) % 10)
