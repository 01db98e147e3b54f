"""Generalisation probe: guard recall on Faker locales the corpus is NOT generated from.

    .venv/bin/python benchmarks/guard/probe_locales.py

The committed corpus (make_corpus.py) uses en_US, de_DE, es_ES, fr_FR, it_IT, nl_NL, pl_PL and
pt_BR; this probe draws phone numbers, emails, postal addresses and IBANs from 22 other
locales (15 each, seed 1), puts each in a one-line sentence and counts it found when an
entity of the right type overlaps it. Faker's IBANs for locales without an IBAN format of
their own (en_IN, es_MX: "GB" with a wrong length; es_AR: Argentina has no IBAN) are invalid,
so a checksumming detector rightly rejects them.
"""

from __future__ import annotations

import collections

from faker import Faker

from modelmix.guard import load_detector

LOCALES = ["en_GB", "en_AU", "en_CA", "en_IN", "de_AT", "de_CH", "fr_CA", "fr_CH", "es_MX",
           "es_AR", "pt_PT", "it_CH", "sv_SE", "da_DK", "no_NO", "fi_FI", "cs_CZ", "hu_HU",
           "ro_RO", "tr_TR", "en_IE", "en_NZ"]
TYPES = {"phone": ("PHONE_NUMBER",), "email": ("EMAIL_ADDRESS",), "address": ("ADDRESS",),
         "iban": ("IBAN_CODE", "BANK_ACCOUNT")}
SENTENCE = {"phone": "Please call me at {} tomorrow.", "email": "Write to {} soon.",
            "address": "Send the parcel to {} please.", "iban": "Transfer to {} today."}


def main() -> None:
    detector = load_detector()
    missed: collections.Counter[tuple[str, str]] = collections.Counter()
    total: collections.Counter[str] = collections.Counter()
    examples: dict[tuple[str, str], list[str]] = {}
    for locale in LOCALES:
        fake = Faker(locale)
        fake.seed_instance(1)
        makers = {"phone": fake.phone_number, "email": fake.email, "iban": fake.iban,
                  "address": lambda f=fake: f.address().replace("\n", ", ")}
        for kind, make in makers.items():
            for _ in range(15):
                value = make()
                text = SENTENCE[kind].format(value)
                start = text.index(value)
                end = start + len(value)
                total[kind] += 1
                if not any(e.start < end and e.end > start and e.type in TYPES[kind]
                           for e in detector.detect(text)):
                    missed[(kind, locale)] += 1
                    examples.setdefault((kind, locale), []).append(value)
    for kind in TYPES:
        lost = sum(n for (k, _), n in missed.items() if k == kind)
        print(f"{kind:8s} recall {1 - lost / total[kind]:.3f} ({total[kind] - lost}/{total[kind]})")
    for key, n in missed.most_common(10):
        print(f"  missed {key[0]} {key[1]} x{n}: {examples[key][:2]}")


if __name__ == "__main__":
    main()
