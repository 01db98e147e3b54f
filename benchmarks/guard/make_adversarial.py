"""Generate the guard's evasion corpus (seeded, deterministic) into ``corpus/adversarial.jsonl``.

    .venv/bin/python benchmarks/guard/make_adversarial.py

One JSON object per line, the main corpus's row format plus a ``category``:
``{"id", "label": "sensitive"|"clean", "category", "tags", "text", "entities"}``. Sensitive
categories write an SSN, a card number, a phone number, a lower-case name or an AWS secret so
that plain patterns miss it (base64, percent-encoding, HTML entities, JSON escapes, number
words, odd separators, look-alike digits, invisible characters, combining marks, reversed or
interleaved digits, right-to-left overrides, one digit per line, hex, quoted-printable, mixed
languages); the gold span is the encoded form as written. Decoy
categories (``decoy-...``) hold look-alikes that are not personal data (random base64, hashes,
recipes, versions, IP addresses, UUIDs, ISBNs, dates, harmless escapes); a decoy's only gold
spans are IP addresses, which should be reported as such and as nothing else.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _doc import Doc
from _evasions import Evasions

HERE = Path(__file__).parent
SEED = 20261201
PER_CATEGORY = 40
Build = Callable[[Evasions], Doc]


def _doc(before: str, kind: str, value: str, after: str = "") -> Doc:
    return Doc().add(before).add_entity(kind, value).add(after)


def _value(ev: Evasions) -> tuple[str, str, str]:
    """A value to hide: (entity type, value, a cue that names it)."""
    kind = ev.pick(["US_SSN", "US_SSN", "CREDIT_CARD", "CREDIT_CARD", "PHONE_NUMBER"])
    if kind == "US_SSN":
        return kind, ev.ssn(), ev.pick(["my SSN", "SSN", "social security number", "ssn"])
    if kind == "CREDIT_CARD":
        return kind, ev.card(), ev.pick(["my card", "card number", "Visa", "the card"])
    return kind, ev.phone(), ev.pick(["call me at", "my phone", "phone", "cell"])


# --- sensitive categories ----------------------------------------------------------------

def base64_plain(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    inner = ev.pick([value, f"{cue}: {value}", f"{cue} is {value}, thanks"])
    encoded = ev.base64(inner)
    form = ev.pick(["Decode this and keep it on file: {}", "{} (base64)",
                    "data:text/plain;base64,{}", '{{"payload": "{}"}}', "note={}&ok=1"])
    before, after = form.split("{}")
    return _doc(before.replace("{{", "{"), kind, encoded, after.replace("}}", "}"))


def base64_urlsafe(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    encoded = ev.base64(f"{cue}: {value} >> ok?", urlsafe=True)
    return _doc(ev.pick(["https://pay.example.com/r/", "GET /v1/lookup?token=", "ref: "]), kind,
                encoded, ev.pick(["", " HTTP/1.1", " please check"]))


def base64_nested(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    inner = ev.base64(f"{cue} {value}")
    if ev.rng.random() < 0.5:
        return _doc("double encoded: ", kind, ev.base64(inner))
    return _doc("https://example.com/cb?d=", kind, ev.percent(inner, every=False), "&v=2")


def percent_url(ev: Evasions) -> Doc:
    kind, value, _ = _value(ev)
    field = {"US_SSN": "ssn", "CREDIT_CARD": "card", "PHONE_NUMBER": "phone"}[kind]
    every = ev.rng.random() < 0.5
    if every:
        return _doc(f"https://api.example.com/v2/verify?{field}=", kind,
                    ev.percent(value, every=True), "&lang=en")
    return _doc(f"GET /apply?name=x&{field}=", kind, ev.percent(value, every=False), " 200")


def html_entities(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"<p>{cue}: ", kind, ev.html_entities(value), "</p>")


def json_escapes(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    field = cue.replace(" ", "_").lower()
    return _doc(f'{{"{field}": "', kind, ev.json_escapes(value), '"}')


def number_words(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    spelled = ev.words(value, oh=ev.rng.random() < 0.3)
    return _doc(ev.pick([f"{cue} is ", f"Here you go, {cue}: ", f"{cue}... "]), kind, spelled,
                ev.pick([".", ", ok?", " - please update it."]))


def number_tens(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}: ", kind, ev.tens_words(value), ".")


_LANG_CUES = {
    "de": ("Meine Kartennummer ist ", "Meine SSN lautet ", "Ruf mich an unter "),
    "fr": ("Mon numéro de carte est ", "Mon SSN est le ", "Appelez-moi au "),
    "es": ("Mi número de tarjeta es ", "Mi SSN es ", "Llámame al "),
    "it": ("Il numero della carta è ", "Il mio SSN è ", "Chiamami al "),
    "pt": ("O número do cartão é ", "Meu SSN é ", "Me ligue no "),
    "nl": ("Mijn kaartnummer is ", "Mijn SSN is ", "Bel me op "),
}


def number_hundreds(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue} is ", kind, ev.hundreds_words(value), ".")


def hex_encoded(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(ev.pick(["payload (hex): ", "0x", "data="]), kind,
                ev.hex(ev.pick([value, f"{cue}: {value}"])), "")


def quoted_printable(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"Content-Transfer-Encoding: quoted-printable\n\n{cue}: ", kind,
                ev.quoted_printable(value), "=0A")


def bidi_override(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}: ", kind, "\u202e" + value[::-1] + "\u202c", " thanks")


def vertical_digits(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}:\n", kind, "\n".join(c for c in value if c.isdigit()), "\n")


def number_words_multilingual(ev: Evasions) -> Doc:
    kind, value, _ = _value(ev)
    language = ev.pick(list(_LANG_CUES))
    cue = _LANG_CUES[language][["CREDIT_CARD", "US_SSN", "PHONE_NUMBER"].index(kind)]
    return _doc(cue, kind, ev.words(value, language), ".")


def mixed_language(ev: Evasions) -> Doc:
    """A sentence in one language, the number spelled in another (or switching mid-number)."""
    kind, value, _ = _value(ev)
    language = ev.pick(list(_LANG_CUES))
    cue = _LANG_CUES[language][["CREDIT_CARD", "US_SSN", "PHONE_NUMBER"].index(kind)]
    other = ev.pick([lang for lang in ("en", "de", "fr", "es") if lang != language])
    groups = "".join(c if c.isdigit() else " " for c in value).split()
    spelled = ", ".join(ev.words(g, ev.pick([language if language != "it" else "en", other]))
                        for g in groups)
    return _doc(cue, kind, spelled, " merci / danke.")


def number_words_lines(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    spelled = "\n".join(ev.words(value).replace(",", "").replace(" dash", "").replace(
        " -", "").split())
    return _doc(f"{cue}:\n", kind, spelled, "\n")


def cjk_numerals(ev: Evasions) -> Doc:
    kind, value, _ = _value(ev)
    cue = {"US_SSN": "社会保障番号: ", "CREDIT_CARD": "カード番号 ", "PHONE_NUMBER": "电话 "}[kind]
    return _doc(cue, kind, ev.cjk(value), "。")


def string_concat(ev: Evasions) -> Doc:
    kind, value, _ = _value(ev)
    name = {"US_SSN": "ssn", "CREDIT_CARD": "card_number", "PHONE_NUMBER": "phone"}[kind]
    return _doc(f"{name} = ", kind, ev.concatenated(value), ev.pick(["\n", ";\n", "  # test"]))


def base64_utf16(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    encoded = ev.base64(f"{cue} {value}".encode("utf-16-le"))
    return _doc("powershell -EncodedCommand ", kind, encoded, "")


def scattered_ssn(ev: Evasions) -> Doc:
    area, group, serial = ev.ssn().split("-")
    form = ev.pick(["My SSN: the first three digits are {a}, the next two are {g} and the last "
                    "four are {s}.", "ssn - first 3: {a}; middle 2: {g}; last 4: {s}",
                    "For the social: first three {a}, then two {g}, final four {s}."])
    head, rest = form.split("{a}")
    middle, tail = rest.split("{s}")
    written = f"{area}{middle.format(g=group)}{serial}"
    return _doc(head, "US_SSN", written, tail)


def split_dots(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}: ", kind, ev.regroup(value, "."), "")


def split_separators(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue} ", kind, ev.regroup(value, ev.pick(["/", "_", "|", "*", "~", "/_|"])),
                " (split on purpose)")


def split_spaces(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}: ", kind, ev.regroup(value, " "), ".")


def lookalike_digits(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    style = ev.pick(["fullwidth", "math_bold", "double_struck", "arabic_indic", "devanagari",
                     "circled", "letters", "cyrillic"])
    return _doc(f"{cue}: ", kind, ev.lookalike_digits(value, style), ".")


def invisible_chars(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue} ", kind, ev.invisible(value), "")


def combining_marks(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue}: ", kind, ev.marks(value), "")


def reversed_digits(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    form = ev.pick([f"{cue}, written backwards: ", f"{cue} (reversed): ",
                    f"Reverse this to get {cue}: "])
    return _doc(form, kind, value[::-1], "")


def interleaved_digits(ev: Evasions) -> Doc:
    kind, value, cue = _value(ev)
    return _doc(f"{cue} (ignore the letters): ", kind, ev.interleave(value), "")


def lowercase_name(ev: Evasions) -> Doc:
    name = ev.name().lower()
    form = ev.pick(["patient {} called about the charge on card ", "the patient, {}, paid with ",
                    "patient name: {}. card on file ", "refund for patient {} to card ",
                    "pt {} disputes card "])
    before, after = form.split("{}")
    return _doc(before, "PERSON", name, after).add_entity("CREDIT_CARD", ev.card()).add(".")


def aws_secret(ev: Evasions) -> Doc:
    key_id, secret = ev.aws_pair()
    layout = ev.pick(["csv", "space", "json", "configure", "colon"])
    heads = {"csv": "Access key ID,Secret access key\n", "space": "creds: ",
             "json": '{"AccessKeyId": "', "configure": "AWS Access Key ID [None]: ",
             "colon": "aws "}
    seps = {"csv": ",", "space": " ", "json": '", "SecretAccessKey": "',
            "configure": "\nAWS Secret Access Key [None]: ", "colon": ":"}
    doc = Doc().add(heads[layout]).add_entity("API_KEY", key_id).add(seps[layout])
    return doc.add_entity("API_KEY", secret).add('"}' if layout == "json" else "")


SENSITIVE: dict[str, Build] = {
    "base64": base64_plain, "base64url": base64_urlsafe, "base64-nested": base64_nested,
    "percent-url": percent_url, "html-entities": html_entities, "json-escapes": json_escapes,
    "hex": hex_encoded, "quoted-printable": quoted_printable,
    "number-words": number_words, "number-words-tens": number_tens,
    "number-words-hundreds": number_hundreds,
    "number-words-multilingual": number_words_multilingual, "mixed-language": mixed_language,
    "number-words-lines": number_words_lines, "cjk-numerals": cjk_numerals,
    "string-concat": string_concat, "base64-utf16": base64_utf16,
    "ssn-in-parts": scattered_ssn,
    "split-dots": split_dots, "split-separators": split_separators,
    "split-spaces": split_spaces, "lookalike-digits": lookalike_digits,
    "zero-width": invisible_chars, "combining-marks": combining_marks,
    "reversed": reversed_digits, "bidi-override": bidi_override,
    "interleaved": interleaved_digits, "vertical-digits": vertical_digits,
    "lowercase-name": lowercase_name, "aws-secret": aws_secret,
}


# --- decoys -------------------------------------------------------------------------------

def decoy_base64_binary(ev: Evasions) -> Doc:
    encoded = ev.base64(ev.noise(ev.rng.randint(12, 96)), urlsafe=ev.rng.random() < 0.3)
    form = ev.pick(["data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAA{}", "sha256-{}",
                    "checksum: {}", "nonce={}", "-----BEGIN CERTIFICATE-----\n{}"])
    return Doc().add(form.format(encoded))


def decoy_base64_text(ev: Evasions) -> Doc:
    sentence = ev.pick(["Hello world, the meeting moved to noon.", "Quarterly report attached",
                        "version=2.14.3;build=1187", "The quick brown fox jumps over 13 dogs",
                        "lorem ipsum dolor sit amet 2024"])
    return Doc().add(ev.pick(["payload: ", "decoded it says: ", "b64="]) + ev.base64(sentence))


def decoy_token_like(ev: Evasions) -> Doc:
    segments = [ev.base64(ev.noise(n), urlsafe=True) for n in (9, 24, 32)]
    return Doc().add("trace id " + ".".join(segments) + " in the logs")


def decoy_recipe(ev: Evasions) -> Doc:
    return Doc().add(ev.pick([
        "Mix two cups flour, three eggs, one teaspoon salt and four tablespoons butter.",
        "Bake for twenty-five minutes, then rest five, slice into eight pieces, serves six.",
        "Add one, two, three pinches of sugar; stir seven times; wait nine minutes.",
        "Count along: one two three four five six seven eight nine ten!",
        "Zwei Eier, drei Löffel Zucker, ein Glas Milch, vier Minuten rühren.",
        "Deux œufs, trois cuillères, un verre de lait, cinq minutes de cuisson.",
        "The score was three to two, then four to four after six minutes of extra time.",
        "Take one tablet twice a day for seven days, then one a day for three weeks.",
    ]))


def decoy_version(ev: Evasions) -> Doc:
    major, minor, patch = ev.rng.randint(1, 30), ev.rng.randint(0, 40), ev.rng.randint(0, 300)
    return Doc().add(ev.pick([
        f"Upgrade numpy to {major}.{minor}.{patch} before the release.",
        f"Kernel 5.{minor}.0-{patch}-generic, build 10.0.19041.{ev.rng.randint(1000, 4000)}.",
        f"Chrome {major + 100}.0.{ev.rng.randint(5000, 7000)}.{patch} crashed on start.",
        f"Tested with node v{major}.{minor}.{patch} and python {major % 4 + 3}.{minor}.{patch}.",
        f"Firmware {major}.{minor}.{patch}.{ev.rng.randint(1000, 9999)} is out.",
    ]))


def decoy_ip(ev: Evasions) -> Doc:
    first = ev.rng.choice([*range(1, 127), *range(128, 224)])  # not loopback or multicast
    address = ".".join([str(first), *(str(ev.rng.randint(1, 254)) for _ in range(3))])
    doc = Doc().add(ev.pick(["The server at ", "Block traffic from ", "ping "]))
    return doc.add_entity("IP_ADDRESS", address).add(ev.pick([" is down.", " now", ":8080"]))


def decoy_identifiers(ev: Evasions) -> Doc:
    isbn = "978" + "".join(str(ev.rng.randint(0, 9)) for _ in range(9))
    check = (10 - sum(int(d) * (3 if i % 2 else 1) for i, d in enumerate(isbn)) % 10) % 10
    return Doc().add(ev.pick([
        f"Request id {uuid.UUID(int=ev.rng.getrandbits(128))} failed.",
        f"ISBN {isbn[:3]}-{isbn[3]}-{isbn[4:8]}-{isbn[8:]}-{check} is out of print.",
        f"commit {hashlib.sha1(str(ev.rng.random()).encode()).hexdigest()} fixed it",
        f"sha256: {hashlib.sha256(str(ev.rng.random()).encode()).hexdigest()}",
        f"Order #{ev.rng.randint(10 ** 7, 10 ** 8)} shipped on 2024-03-{ev.rng.randint(10, 28)}.",
    ]))


def decoy_dates_numbers(ev: Evasions) -> Doc:
    day, month = ev.rng.randint(1, 28), ev.rng.randint(1, 12)
    return Doc().add(ev.pick([
        f"Logged at 2024-{month:02d}-{day:02d} 14:{day:02d}:{month:02d}.123 UTC.",
        f"Scores: {'-'.join(str(ev.rng.randint(5, 15)) for _ in range(7))}.",
        f"See pages 12/34/{ev.rng.randint(100, 999)} and figure 3.14.{day}.",
        f"Ratio {':'.join(str(ev.rng.randint(1, 9)) for _ in range(6))} in the mix.",
        f"Part PN_{ev.rng.randint(100, 999)}_{ev.rng.randint(100, 999)}_{day:02d} restocked.",
        f"Meet on {day:02d}.{month:02d}.2025 at 10.30, room 4.{day}.",
    ]))


def decoy_escapes(ev: Evasions) -> Doc:
    return Doc().add(ev.pick([
        "https://www.example.com/search?q=hello%20world%21&page=2",
        "Tom &amp; Jerry &lt;b&gt;live&lt;/b&gt; at 8 &mdash; tickets &euro;20",
        '{"title": "\\u00e9t\\u00e9 \\u00e0 Paris", "n": 3}',
        "redirect=%2Fhome%2Fdashboard%3Ftab%3D3",
        "caf\u0065\u0301 cr\u0065\u0300me \u2764\ufe0f 5\ufe0f\u20e3 stars",
        "Price: \u0663\u0665\u0660 \u0631\u064a\u0627\u0644, \uff11\uff12\uff13 units",
    ]))


def decoy_code_and_cjk(ev: Evasions) -> Doc:
    n = ev.rng.randint(2, 9)
    return Doc().add(ev.pick([
        f'greeting = "Hello, " + name + "! You have " + str({n}) + " new messages"',
        "url = base + '/api/v' + '2' + '/items?page=' + str(page)",
        "第一章到第三章\uff0c一二三四五六七八九十\uff0c共十章。",
        "会议定在二〇二四年三月十五日\uff0c三楼二号会议室。",
        f"Read the first three chapters, the next two by Friday and the last four in week {n}.",
        "The first 3 laps took 95 seconds, the next 2 took 61, the last 4 took 130.",
    ]))


def decoy_hex(ev: Evasions) -> Doc:
    noise = ev.noise(ev.rng.randint(9, 32)).hex()
    return Doc().add(ev.pick([
        f"pointer 0x{noise[:12]} freed twice", f"digest {noise}",
        f"dump: {' '.join(noise[i:i + 2] for i in range(0, len(noise), 2))}",
        f"greeting hex {ev.hex('Hello world, see you at 10')}",
        f"colours #{noise[:6]} and #{noise[6:12]}, salt {noise.upper()}",
    ]))


def decoy_numeric_table(ev: Evasions) -> Doc:
    rows = [" ".join(str(ev.rng.randint(0, ev.rng.choice([9, 99, 999, 9999])))
                     for _ in range(ev.rng.randint(4, 8))) for _ in range(3)]
    return Doc().add("Weekly counts:\n" + "\n".join(f"{ev.pick(['Mon', 'Tue', 'Q1', 'Q2', 'A'])} "
                                                      f"{row}" for row in rows))


def decoy_long_numbers(ev: Evasions) -> Doc:
    digits = "".join(str(ev.rng.randint(0, 9)) for _ in range(12))
    return Doc().add(ev.pick([
        f"Tracking 1Z {digits[:3]} AA1 {digits[3:5]} {digits[5:9]} {digits[9:]} arrives Monday.",
        f"Invoice INV-2024-{digits[:6]} total {digits[6:9]}.{digits[9:11]} EUR.",
        f"Coordinates {ev.rng.uniform(-80, 80):.4f}, {ev.rng.uniform(-170, 170):.4f} on the map.",
        f"Population 8 {digits[:3]} {digits[3:6]} in 2023, up 1 {digits[6:9]} from 2022.",
        f"Serial {digits[:4]}-{digits[4:6]}-{digits[6:9]}-{digits[9:]} under warranty.",
        f"Batch {digits[:2]}.{digits[2:5]}.{digits[5:7]}.{digits[7:10]} passed QA.",
    ]))


def decoy_counting(ev: Evasions) -> Doc:
    return Doc().add(ev.pick([
        "one hundred twenty-three thousand four hundred fifty-six people attended",
        "I counted one, two, three, four, five, six, seven sheep and fell asleep.",
        "Chapter one: two roads; chapter two: three doors; chapter three: four keys.",
        "Uno, dos, tres, cuatro: the kids counted in Spanish, then eins, zwei, drei.",
        "It was nine to five, five days a week, for twenty-two years and eight months.",
        "Double five and triple seven are lucky numbers, said the one-eyed dealer.",
    ]))


def decoy_code_escapes(ev: Evasions) -> Doc:
    return Doc().add(ev.pick([
        'const s = "\\x48\\x65\\x6c\\x6c\\x6f"; // Hello',
        "https://de.wikipedia.org/wiki/M%C3%BCnchen?oldid=2301",
        "<a href=\"/p?id=42&amp;lang=en\">&laquo; back</a> &copy; 2024",
        'print("\\u0048\\u0069 there, 3 + 4 = 7")',
        "Bearer-free call: curl -d 'q=10%25+off+%26+free+shipping' https://shop.example",
        f"ISO 9001, COVID-19, A4 paper, room l0{ev.rng.randint(1, 9)}, "
        f"model O-{ev.rng.randint(10, 99)}",
    ]))


DECOYS: dict[str, Build] = {
    "decoy-base64-binary": decoy_base64_binary, "decoy-base64-text": decoy_base64_text,
    "decoy-token-like": decoy_token_like, "decoy-number-words": decoy_recipe,
    "decoy-versions": decoy_version, "decoy-ip": decoy_ip,
    "decoy-identifiers": decoy_identifiers, "decoy-dates-numbers": decoy_dates_numbers,
    "decoy-escapes": decoy_escapes, "decoy-hex": decoy_hex,
    "decoy-code-and-cjk": decoy_code_and_cjk,
    "decoy-numeric-tables": decoy_numeric_table,
    "decoy-long-numbers": decoy_long_numbers, "decoy-counting": decoy_counting,
    "decoy-code-escapes": decoy_code_escapes,
}


def build(seed: int = SEED, per_category: int = PER_CATEGORY) -> list[dict[str, Any]]:
    ev = Evasions(seed)
    rows = []
    for label, builders in (("sensitive", SENSITIVE), ("clean", DECOYS)):
        for category, make in builders.items():
            for index in range(per_category):
                record = make(ev).record(f"{category}-{index:03d}", label)
                rows.append({**record, "category": category, "tags": [category]})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "corpus" / "adversarial.jsonl")
    args = parser.parse_args()
    rows = build()
    args.out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                        "utf-8")
    print(f"{len(rows)} texts -> {args.out}")


if __name__ == "__main__":
    main()
