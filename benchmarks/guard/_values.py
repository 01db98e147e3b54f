"""Sensitive values for the guard corpus: Faker (seeded) plus formats Faker lacks.

Each generator returns ``(type, value)``. Obfuscations (spaced, dotted, full-width digits,
look-alike letters, zero-width characters) are applied by :func:`disguise`.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from datetime import date

from faker import Faker

__all__ = ["CONDITIONS", "MEDICATIONS", "SYMPTOMS", "Values", "disguise"]

# Written for the corpus independently of the detector's lexicon; about a third are deliberately
# rarer terms the detector's lists may not hold.
CONDITIONS = [
    "type 2 diabetes", "hypertension", "asthma", "major depressive disorder", "breast cancer",
    "HIV", "hepatitis C", "bipolar disorder", "epilepsy", "COPD", "schizophrenia",
    "atrial fibrillation", "rheumatoid arthritis", "Crohn's disease", "multiple sclerosis",
    "chronic kidney disease", "sarcoidosis", "myasthenia gravis", "Hashimoto's thyroiditis",
    "ankylosing spondylitis", "sickle cell anemia", "lupus", "anorexia nervosa", "PTSD",
    "Parkinson's disease", "early-onset Alzheimer's", "celiac disease", "endometriosis",
    "non-Hodgkin lymphoma", "opioid use disorder", "gestational diabetes", "heart failure",
]
MEDICATIONS = [
    "metformin", "lisinopril", "atorvastatin", "sertraline", "insulin glargine", "albuterol",
    "levothyroxine", "Humira", "Ozempic", "warfarin", "lithium", "quetiapine", "prednisone",
    "Eliquis", "methotrexate", "gabapentin", "Truvada", "buprenorphine", "Adderall", "tamoxifen",
    "omeprazole", "amlodipine", "lamotrigine", "escitalopram", "hydroxychloroquine", "Keytruda",
    "clozapine", "naltrexone", "Entresto", "Biktarvy", "pregabalin", "infliximab",
]
SYMPTOMS = ["chest pain", "shortness of breath", "a persistent cough", "severe headaches",
            "abdominal pain", "blurred vision", "a high fever", "palpitations"]
_FULLWIDTH = {ord(c): chr(ord(c) + 0xFEE0) for c in string.digits + string.ascii_letters}
# Latin letter -> Cyrillic look-alike.
_LOOKALIKE = dict(zip("aeopcxiAEOPCTHKM",
                      "\u0430\u0435\u043e\u0440\u0441\u0445\u0456\u0410\u0415\u041e\u0420"
                      "\u0421\u0422\u041d\u041a\u041c", strict=True))
_STATES = ["CA", "NY", "TX", "FL", "IL", "WA", "MA", "OH", "GA", "PA"]


def disguise(value: str, form: str, rng: random.Random) -> str:
    """Apply one obfuscation ``form`` to ``value``."""
    if form == "spaced":
        return " ".join(c for c in value if not c.isspace())
    if form == "dotted":
        return "".join("." if c in " -" else c for c in value)
    if form == "fullwidth":
        return value.translate(_FULLWIDTH)
    if form == "lookalike":
        return "".join(_LOOKALIKE.get(c, c) if rng.random() < 0.5 else c for c in value)
    if form == "zero_width":
        cut = rng.randrange(1, max(2, len(value) - 1))
        return value[:cut] + "\u200b" + value[cut:]
    if form == "nbsp":
        return value.replace(" ", "\u00a0")
    return value


def _group(digits: str, sizes: tuple[int, ...], sep: str) -> str:
    out, pos = [], 0
    for size in sizes:
        out.append(digits[pos:pos + size])
        pos += size
    if pos < len(digits):
        out.append(digits[pos:])
    return sep.join(p for p in out if p)


class Values:
    """Seeded value factory over a few Faker locales."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.fakers = {loc: Faker(loc) for loc in ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES",
                                                   "it_IT", "nl_NL", "pt_BR", "en_CA", "en_IN",
                                                   "pl_PL")}
        for index, fake in enumerate(self.fakers.values()):
            fake.seed_instance(seed + index)

    def fake(self, locale: str = "en_US") -> Faker:
        return self.fakers[locale]

    def pick(self, options: list[str]) -> str:
        return self.rng.choice(options)

    def name(self, locale: str = "en_US") -> str:
        fake = self.fake(locale)
        style = self.rng.random()
        if style < 0.6:
            return str(fake.name())
        if style < 0.85:
            return f"{fake.first_name()} {fake.last_name()}"
        return f"{fake.first_name()} {fake.random_uppercase_letter()}. {fake.last_name()}"

    def email(self, locale: str = "en_US") -> str:
        fake = self.fake(locale)
        return str(self.rng.choice([fake.email, fake.free_email, fake.company_email])())

    def phone(self, locale: str = "en_US") -> str:
        if locale == "en_US" and self.rng.random() < 0.3:
            digits = f"{self.rng.randint(201, 989)}{self.rng.randint(200, 999)}"
            digits += f"{self.rng.randint(0, 9999):04d}"
            return self.pick([f"+1 {digits[:3]} {digits[3:6]} {digits[6:]}",
                              f"1-{digits[:3]}-{digits[3:6]}-{digits[6:]}",
                              f"({digits[:3]}) {digits[3:6]}-{digits[6:]}"])
        return str(self.fake(locale).phone_number())

    def address(self, locale: str = "en_US", one_line: bool = False) -> str:
        value = str(self.fake(locale).address())
        return value.replace("\n", ", ") if one_line else value

    def dob(self) -> str:
        day: date = self.fake().date_of_birth(minimum_age=18, maximum_age=90)
        fmt = self.pick(["%m/%d/%Y", "%d.%m.%Y", "%Y-%m-%d", "%B %d, %Y", "%d %B %Y", "%d/%m/%Y",
                         "%b %d, %Y", "%m-%d-%Y"])
        return day.strftime(fmt)

    def ssn(self) -> str:
        value = str(self.fake().ssn())
        return self.pick([value, value, value.replace("-", " "), value.replace("-", "")])

    def card(self) -> str:
        number = str(self.fake().credit_card_number())
        if len(number) == 15:
            amex = (4, 6, 5)
            return self.pick([number, _group(number, amex, " "), _group(number, amex, "-")])
        sizes = (4, 4, 4, 4, 3)
        return self.pick([number, _group(number, sizes, " "), _group(number, sizes, "-")])

    def iban(self, locale: str = "en_US") -> str:
        value = str(self.fake(locale).iban())
        return self.pick([value, _group(value, (4,) * 9, " ")])

    def ip(self) -> str:
        fake = self.fake()
        return str(self.rng.choice([fake.ipv4, fake.ipv4, fake.ipv4_private, fake.ipv6])())

    def mrn(self) -> str:
        n = self.rng.randint(10**5, 10**9)
        return self.pick([str(n), f"{n:010d}", f"MRN-{n}", f"{self.rng.choice('ABEHKM')}{n}",
                          f"{n // 1000}-{n % 1000:03d}"])

    def plan_id(self) -> str:
        letters = "".join(self.rng.choice(string.ascii_uppercase) for _ in range(3))
        n = self.rng.randint(10**7, 10**10)
        mbi = (f"{self.rng.randint(1, 9)}{self.rng.choice('ACDEFGHJKMNPQRTUVWXY')}"
               f"{self.rng.choice('ACDEFGHJKMNPQRTUVWXY0123456789')}{self.rng.randint(0, 9)}"
               f"{self.rng.choice('ACDEFGHJKMNPQRTUVWXY')}{self.rng.randint(0, 9)}"
               f"{self.rng.randint(0, 9)}{self.rng.choice('ACDEFGHJKMNPQRTUVWXY')}"
               f"{self.rng.choice('ACDEFGHJKMNPQRTUVWXY')}{self.rng.randint(10, 99)}")
        return self.pick([f"{letters}{n}", f"W{n}", mbi, f"{letters}-{n % 10**6:06d}-01"])

    def passport(self, locale: str = "en_US") -> str:
        return str(self.fake(locale).passport_number())

    def license(self) -> str:
        n = self.rng.randint(10**6, 10**8)
        return self.pick([f"{self.rng.choice(string.ascii_uppercase)}{n}", f"{n:09d}",
                          f"S530-{n % 10**4:04d}-{n // 10**4 % 10**4:04d}"])

    def bank_account(self) -> tuple[str, str]:
        fake = self.fake()
        if self.rng.random() < 0.3:
            return "routing", str(fake.aba())
        return "account", self.pick([str(self.rng.randint(10**7, 10**12)), str(fake.bban())])

    def national_id(self) -> tuple[str, str]:
        locale = self.pick(["en_GB", "fr_FR", "it_IT", "nl_NL", "pt_BR", "en_CA", "en_IN", "es_ES"])
        fake = self.fake(locale)
        makers: dict[str, Callable[[], str]] = {
            "en_GB": fake.ssn, "fr_FR": fake.ssn, "it_IT": fake.ssn, "nl_NL": fake.ssn,
            "pt_BR": fake.cpf, "en_CA": fake.ssn, "en_IN": fake.aadhaar_id, "es_ES": fake.nif,
        }
        return locale, str(makers[locale]())

    def api_key(self) -> str:
        rng = self.rng
        alnum = string.ascii_letters + string.digits

        def rand(n: int, chars: str = alnum) -> str:
            return "".join(rng.choice(chars) for _ in range(n))

        return self.pick([
            f"sk-proj-{rand(48)}", f"sk-{rand(48)}", f"AKIA{rand(16, string.ascii_uppercase)}",
            f"ghp_{rand(36)}",
            f"xoxb-{rand(11, string.digits)}-{rand(12, string.digits)}-{rand(24)}",
            f"AIza{rand(35)}", f"sk_live_{rand(24)}", f"glpat-{rand(20)}", f"hf_{rand(34)}",
            f"eyJhbGciOiJIUzI1NiJ9.eyJ{rand(40)}.{rand(43)}", rand(32, "0123456789abcdef"),
            f"sk-ant-api03-{rand(80)}",
        ])

    def password(self) -> str:
        rng = self.rng
        word = rng.choice(["Summer", "Dragon", "Monkey", "Purple", "Falcon", "Winter", "Tiger"])
        return self.pick([f"{word}{rng.randint(10, 2030)}!", f"{word.lower()}_{rng.randint(1, 99)}",
                          "".join(rng.choice(string.ascii_letters + string.digits + "!@#$%")
                                  for _ in range(rng.randint(10, 16)))])
