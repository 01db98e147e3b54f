"""Generate the guard's adversarial corpus (seeded, deterministic) into ``corpus/``.

    .venv/bin/python benchmarks/guard/make_corpus.py            # writes corpus/*.jsonl

Output: ``corpus/sensitive.jsonl`` and ``corpus/clean.jsonl``, one JSON object per line:
``{"id", "label": "sensitive"|"clean", "tags": [...], "text", "entities": [{"type", "start",
"end"}]}`` with character offsets (end exclusive). Hand-written cases from ``handwritten.txt``
are appended (marker syntax ``[[TYPE|value]]``). Needs ``faker`` (a dev/benchmark dependency).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from _doc import Doc, parse_marked
from _templates import CLEAN_NEWS, CLEAN_NUMBERS, CLEAN_TECH, EN, INTL, PUBLIC_FIGURES
from _values import CONDITIONS, MEDICATIONS, SYMPTOMS, Values, disguise

HERE = Path(__file__).parent
Slot = Callable[[Values, str], tuple[str, str]]

SLOTS: dict[str, Slot] = {
    "name": lambda v, loc: ("PERSON", v.name(loc)),
    "email": lambda v, loc: ("EMAIL_ADDRESS", v.email(loc)),
    "phone": lambda v, loc: ("PHONE_NUMBER", v.phone(loc)),
    "address": lambda v, loc: ("ADDRESS", v.address(loc)),
    "address_line": lambda v, loc: ("ADDRESS", v.address(loc, one_line=True)),
    "dob": lambda v, loc: ("DATE_OF_BIRTH", v.dob()),
    "ssn": lambda v, loc: ("US_SSN", v.ssn()),
    "card": lambda v, loc: ("CREDIT_CARD", v.card()),
    "iban": lambda v, loc: ("IBAN_CODE", v.iban(loc)),
    "ip": lambda v, loc: ("IP_ADDRESS", v.ip()),
    "mrn": lambda v, loc: ("MEDICAL_RECORD_NUMBER", v.mrn()),
    "plan_id": lambda v, loc: ("HEALTH_PLAN_ID", v.plan_id()),
    "passport": lambda v, loc: ("PASSPORT", v.passport(loc)),
    "license": lambda v, loc: ("DRIVER_LICENSE", v.license()),
    "routing": lambda v, loc: ("BANK_ACCOUNT", str(v.fake().aba())),
    "account": lambda v, loc: ("BANK_ACCOUNT", v.bank_account()[1]),
    "api_key": lambda v, loc: ("API_KEY", v.api_key()),
    "password": lambda v, loc: ("PASSWORD", v.password()),
    "condition": lambda v, loc: ("MEDICAL_CONDITION", v.pick(CONDITIONS)),
    "symptom": lambda v, loc: ("MEDICAL_CONDITION", v.pick(SYMPTOMS)),
    "medication": lambda v, loc: ("MEDICATION", v.pick(MEDICATIONS)),
    "national_id_gb": lambda v, loc: ("NATIONAL_ID", str(v.fake("en_GB").ssn())),
    "national_id_fr": lambda v, loc: ("NATIONAL_ID", str(v.fake("fr_FR").ssn())),
    "national_id_it": lambda v, loc: ("NATIONAL_ID", str(v.fake("it_IT").ssn())),
    "national_id_nl": lambda v, loc: ("NATIONAL_ID", str(v.fake("nl_NL").ssn())),
    "national_id_br": lambda v, loc: ("NATIONAL_ID", str(v.fake("pt_BR").cpf())),
}
_SLOT = re.compile(r"\{(\w+)\}")
_NUMERIC = {"PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE", "MEDICAL_RECORD_NUMBER",
            "BANK_ACCOUNT", "NATIONAL_ID"}
_FORMS = {
    "spaced": _NUMERIC - {"IBAN_CODE"}, "dotted": {"US_SSN", "CREDIT_CARD", "PHONE_NUMBER"},
    "fullwidth": _NUMERIC | {"EMAIL_ADDRESS", "IP_ADDRESS"},
    "lookalike": {"EMAIL_ADDRESS", "PERSON", "IBAN_CODE"},
    "zero_width": _NUMERIC | {"EMAIL_ADDRESS", "API_KEY"}, "nbsp": {"CREDIT_CARD", "PHONE_NUMBER"},
}


def fill(template: str, values: Values, locale: str, form: str | None = None) -> Doc:
    """Fill ``template``'s slots; ``form`` disguises the first value it applies to."""
    doc = Doc()
    pos = 0
    for match in _SLOT.finditer(template):
        doc.add(template[pos:match.start()])
        kind, value = SLOTS[match.group(1)](values, locale)
        if form and kind in _FORMS[form]:
            value = disguise(value, form, values.rng)
            doc.tags.add(form)
            form = None
        doc.add_entity(kind, value)
        pos = match.end()
    return doc.add(template[pos:])


def _escaped(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)[1:-1]


def as_json(inner: Doc, values: Values) -> Doc:
    """The text as a message inside a JSON request body (escapes shift the gold spans)."""
    doc = Doc(tags={"json", *inner.tags})
    doc.add('{"model": "gpt-4o-mini", "user": ')
    doc.add_json_string("EMAIL_ADDRESS", values.email())
    doc.add(', "messages": [{"role": "user", "content": "')
    text = inner.text
    pos = 0
    for entity in sorted(inner.entities, key=lambda e: e["start"]):
        doc.add(_escaped(text[pos:entity["start"]]))
        doc.add_entity(entity["type"], _escaped(text[entity["start"]:entity["end"]]))
        pos = entity["end"]
    doc.add(_escaped(text[pos:]))
    return doc.add('"}]}')


def as_tool_call(values: Values, locale: str) -> Doc:
    """An assistant tool call whose JSON-encoded arguments carry the identifiers."""
    doc = Doc(tags={"tool_call"})
    doc.add('{"role": "assistant", "tool_calls": [{"type": "function", "function": '
            '{"name": "lookup_patient", "arguments": "{\\"name\\": \\"')
    doc.add_entity("PERSON", values.name(locale))
    doc.add('\\", \\"mrn\\": \\"')
    doc.add_entity("MEDICAL_RECORD_NUMBER", values.mrn())
    doc.add('\\", \\"dob\\": \\"')
    doc.add_entity("DATE_OF_BIRTH", values.dob())
    return doc.add('\\"}"}}]}')


def as_chat(values: Values, locale: str) -> Doc:
    """A transcript where the identifiers come in different messages."""
    doc = Doc(tags={"multi_message"})
    doc.add("system: You are a helpful bank assistant.\nuser: Hi, I need help with a transfer.\n"
            "assistant: Sure, may I have your full name?\nuser: ")
    doc.add_entity("PERSON", values.name(locale))
    doc.add("\nassistant: Thanks. Which account should we debit?\nuser: IBAN ")
    doc.add_entity("IBAN_CODE", values.iban(locale))
    doc.add("\nassistant: And a phone number for the confirmation code?\nuser: ")
    doc.add_entity("PHONE_NUMBER", values.phone(locale))
    return doc.add("\nassistant: Done.")


def as_code(values: Values) -> Doc:
    doc = Doc(tags={"code"})
    doc.add("import requests\n\nclient = Client(\n    api_key=\"")
    doc.add_entity("API_KEY", values.api_key())
    doc.add("\",\n    base_url=\"https://api.example.com\",\n)\nADMIN_EMAIL = \"")
    doc.add_entity("EMAIL_ADDRESS", values.email())
    doc.add("\"\nDB_URL = \"postgresql://app:")
    doc.add_entity("PASSWORD", values.password().replace("@", "x").replace("/", "x"))
    return doc.add("@db.internal:5432/prod\"\n")


def filler(values: Values, size: int) -> str:
    parts: list[str] = []
    total = 0
    while total < size:
        paragraph = str(values.fake().paragraph(nb_sentences=8))
        parts.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(parts)[:size]


def long_doc(values: Values, sensitive: bool) -> Doc:
    """20,000-50,000 characters of prose; sensitive ones end with the entity."""
    doc = Doc(tags={"long"})
    body = filler(values, values.rng.randint(20_000, 50_000))
    doc.add(body.rsplit(" ", 1)[0] + ".\n\n")
    if sensitive:
        template = values.pick(["Contact: {email}", "SSN {ssn}", "card {card}",
                                "Call me at {phone}", "IBAN {iban}", "MRN {mrn}", "{name}"])
        doc.extend(fill("Signed, " + template if template == "{name}" else template, values,
                        "en_US"))
    return doc


def sensitive_docs(values: Values, count: int) -> Iterator[Doc]:
    rng = values.rng
    for index in range(count):
        roll = rng.random()
        locale = "en_US"
        if roll < 0.55:
            template = rng.choice(EN)
            form = rng.choice(list(_FORMS)) if rng.random() < 0.3 else None
            doc = fill(template, values, locale, form)
        elif roll < 0.75:
            locale = rng.choice(list(INTL))
            doc = fill(rng.choice(INTL[locale]), values, locale)
            doc.tags.add("non_english")
        elif roll < 0.83:
            doc = as_json(fill(rng.choice(EN), values, locale), values)
        elif roll < 0.89:
            doc = as_chat(values, rng.choice(["en_US", "de_DE", "fr_FR", "en_GB"]))
        elif roll < 0.93:
            doc = as_tool_call(values, locale)
        elif roll < 0.97:
            doc = as_code(values)
        else:
            doc = long_doc(values, sensitive=True)
        doc.tags.add(f"locale:{locale}")
        yield doc
        del index


def _clean_fields(values: Values) -> dict[str, Any]:
    rng = values.rng
    fake = values.fake()
    return {
        "fig": rng.choice(PUBLIC_FIGURES), "fig2": rng.choice(PUBLIC_FIGURES),
        "city": fake.city(), "weekday": fake.day_of_week(), "company": fake.company(),
        "amount": f"{rng.randint(1, 999)}.{rng.randint(0, 99):02d}", "quarter": rng.randint(1, 4),
        "year": rng.randint(1990, 2026), "order": rng.randint(10**6, 10**10),
        "order_short": rng.randint(100, 99999),
        "version": f"{rng.randint(0, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 20)}",
        "small": rng.randint(2, 99), "pct": rng.randint(2, 60),
        "iso_date": fake.date(), "room": rng.randint(1, 60), "isbn": fake.isbn13(),
        "uuid": uuid.UUID(int=rng.getrandbits(128)), "sha": f"{rng.getrandbits(160):040x}",
        "big": f"{rng.randint(10**5, 10**7):,}", "lat": f"{rng.uniform(-80, 80):.4f}",
        "lon": f"{rng.uniform(-170, 170):.4f}", "ean": fake.ean13(),
        "tracking": "1Z" + "".join(rng.choice(string.ascii_uppercase + string.digits)
                                   for _ in range(16)),
        "small_big": rng.randint(1000, 99999), "flight": rng.randint(100, 9999),
        "hex": f"{rng.getrandbits(24):06x}",
    }


def clean_docs(values: Values, count: int) -> Iterator[Doc]:
    rng = values.rng
    for _ in range(count):
        roll = rng.random()
        if roll < 0.3:
            doc = Doc(tags={"news"}).add(rng.choice(CLEAN_NEWS).format(**_clean_fields(values)))
        elif roll < 0.6:
            doc = Doc(tags={"numbers"}).add(rng.choice(CLEAN_NUMBERS).format(
                **_clean_fields(values)))
        elif roll < 0.78:
            doc = Doc(tags={"tech"}).add(rng.choice(CLEAN_TECH).format())
        elif roll < 0.9:
            locale = rng.choice(["de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL"])
            doc = Doc(tags={"non_english"}).add(str(values.fake(locale).paragraph(5)))
        elif roll < 0.98:
            doc = Doc(tags={"prose"}).add(str(values.fake().paragraph(6)))
        else:
            doc = long_doc(values, sensitive=False)
        yield doc


def handwritten() -> Iterator[tuple[str, Doc]]:
    for line in (HERE / "handwritten.txt").read_text("utf-8").splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        label, tags, text = line.split("|", 2)
        doc = parse_marked(text)
        doc.tags |= {"handwritten", *filter(None, tags.split(","))}
        yield ("sensitive" if label.strip() == "S" else "clean"), doc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=20250601)
    parser.add_argument("--sensitive", type=int, default=2300)
    parser.add_argument("--clean", type=int, default=1150)
    parser.add_argument("--out", type=Path, default=HERE / "corpus")
    args = parser.parse_args()
    values = Values(args.seed)
    random.seed(args.seed)
    records = {"sensitive": [d.record(f"s{i:05d}", "sensitive")
                             for i, d in enumerate(sensitive_docs(values, args.sensitive))],
               "clean": [d.record(f"c{i:05d}", "clean")
                         for i, d in enumerate(clean_docs(values, args.clean))]}
    for index, (label, doc) in enumerate(handwritten()):
        records[label].append(doc.record(f"h{index:04d}", label))
    args.out.mkdir(parents=True, exist_ok=True)
    for label, rows in records.items():
        with (args.out / f"{label}.jsonl").open("w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
        print(f"{label}: {len(rows)} texts, {sum(len(r['entities']) for r in rows)} entities")


if __name__ == "__main__":
    main()
