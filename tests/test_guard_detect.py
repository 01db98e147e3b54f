"""The guard's detector: recognizers with validation, normalisation offsets, long inputs,
classification rules and the ``modelmix guard scan`` command."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from modelmix.cli import app
from modelmix.guard import (
    DEFAULT_RULES,
    ClassificationRules,
    DataClass,
    Entity,
    GuardDetector,
    classify,
    load_detector,
    normalize,
)
from modelmix.guard._context import STRADDLE_WINDOW, join_straddling
from modelmix.guard._presidio import chunks
from modelmix.guard._validators import iban_ok, luhn_ok, nhs_ok, ssn_ok, vin_ok


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return load_detector()


def found(detector: GuardDetector, text: str) -> list[tuple[str, str]]:
    return [(e.type, text[e.start:e.end]) for e in detector.detect(text)]


def types(detector: GuardDetector, text: str) -> set[str]:
    return {e.type for e in detector.detect(text)}


# --- validators -------------------------------------------------------------------------------

def test_checksums() -> None:
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    assert iban_ok("DE89370400440532013000") and not iban_ok("DE89370400440532013001")
    assert ssn_ok("123456780") and not ssn_ok("666123456") and not ssn_ok("900123456")
    assert not ssn_ok("123006789") and not ssn_ok("123450000")
    assert vin_ok("1M8GDM9AXKP042788") and not vin_ok("1M8GDM9A1KP042788")
    assert nhs_ok("9434765919") and not nhs_ok("9434765918")


# --- structured recognizers ------------------------------------------------------------------

@pytest.mark.parametrize("text, kind, value", [
    ("card 4111 1111 1111 1111 exp 09/27", "CREDIT_CARD", "4111 1111 1111 1111"),
    ("amex 3782-822463-10005", "CREDIT_CARD", "3782-822463-10005"),
    ("pay with 5555.5555.5555.4444", "CREDIT_CARD", "5555.5555.5555.4444"),
    ("SSN 123-45-6780 on file", "US_SSN", "123-45-6780"),
    ("ssn: 123456780", "US_SSN", "123456780"),
    ("IBAN DE89 3704 0044 0532 0130 00.", "IBAN_CODE", "DE89 3704 0044 0532 0130 00"),
    ("iban gb82 west 1234 5698 7654 32", "IBAN_CODE", "gb82 west 1234 5698 7654 32"),
    ("to jane.doe+x@mail.example.co.uk now", "EMAIL_ADDRESS", "jane.doe+x@mail.example.co.uk"),
    ("mail anna.berg [at] posteo [dot] de", "EMAIL_ADDRESS", "anna.berg [at] posteo [dot] de"),
    ("call (415) 555-0132 x12 today", "PHONE_NUMBER", "(415) 555-0132 x12"),
    ("Tel.: +49 (0) 89 1234 5678", "PHONE_NUMBER", "+49 (0) 89 1234 5678"),
    ("mobile: 06 12 34 56 78", "PHONE_NUMBER", "06 12 34 56 78"),
    ("from 203.0.113.77 again", "IP_ADDRESS", "203.0.113.77"),
    ("host 2001:db8:85a3::8a2e:370:7334 down", "IP_ADDRESS", "2001:db8:85a3::8a2e:370:7334"),
    ("MRN: 00123456", "MEDICAL_RECORD_NUMBER", "00123456"),
    ("member ID XGH882716354", "HEALTH_PLAN_ID", "XGH882716354"),
    ("passport no. C01X00T47", "PASSPORT", "C01X00T47"),
    ("DOB 03/14/1962", "DATE_OF_BIRTH", "03/14/1962"),
    ("geboren am 5. Mai 1983", "DATE_OF_BIRTH", "5. Mai 1983"),
    ("DNI 12345678Z", "NATIONAL_ID", "12345678Z"),
    ("CPF 111.444.777-35", "NATIONAL_ID", "111.444.777-35"),
    ("routing number 021000021", "BANK_ACCOUNT", "021000021"),
    ('api_key = "sk-proj-abcDEF1234567890abcdefXYZ"', "API_KEY",
     "sk-proj-abcDEF1234567890abcdefXYZ"),
    ("AWS key AKIAIOSFODNN7EXAMPLE", "API_KEY", "AKIAIOSFODNN7EXAMPLE"),
    ("postgres://app:Tr0ub4dor3@db:5432/x", "PASSWORD", "Tr0ub4dor3"),
    ("my aadhaar number is 2345 6789 0123", "NATIONAL_ID", "2345 6789 0123"),  # cued, any digits
    ("numéro de sécu 1 85 05 78 006 084 36", "NATIONAL_ID", "1 85 05 78 006 084 36"),
    ("\u8eab\u4efd\u8bc1 110101199003074514", "NATIONAL_ID", "110101199003074514"),
    ("born 12-Mar-1985 in Leeds", "DATE_OF_BIRTH", "12-Mar-1985"),
    ("my pw is hunter2, don't tell", "PASSWORD", "hunter2"),
    ("device IMEI 490154203237518", "DEVICE_ID", "490154203237518"),  # Luhn, but no card
    ("PAN card ABCPE1234F", "NATIONAL_ID", "ABCPE1234F"),
    ("patient Jane Roe takes insulin glargine", "MEDICATION", "insulin glargine"),
    ("Hauptstraße 5, 10115 Berlin, Tel. 030 12345678", "ADDRESS", "Hauptstraße 5, 10115 Berlin"),
    ("Av. Paulista, 1578, sala 4, Bela Vista, São Paulo - SP, 01310-200", "ADDRESS",
     "Av. Paulista, 1578, sala 4, Bela Vista, São Paulo - SP, 01310-200"),
    ("to Kaposvári utca 34., H-1809 Pécs", "ADDRESS", "Kaposvári utca 34., H-1809 Pécs"),
    ("to Bulevardul Tatiana Nistor, Cumpana, 248396", "ADDRESS",
     "Bulevardul Tatiana Nistor, Cumpana, 248396"),
    ("to Ke Hrázi 7, 202 78 Odry", "ADDRESS", "Ke Hrázi 7, 202 78 Odry"),
    ("to 96 Smith Deviation, Lisashire, NT, 2956", "ADDRESS", "Lisashire, NT, 2956"),
    ("to Capellan puistokuja 953, 40525 Lahti", "ADDRESS", "Capellan puistokuja 953, 40525 Lahti"),
    ("git clone https://ghp_16C7e42F292c6912E7710c838347Ae178B4a@github.com/o/r", "API_KEY",
     "ghp_16C7e42F292c6912E7710c838347Ae178B4a"),  # a token as the URL's user, not an email
    ("my password is hunter2hunter2", "PASSWORD", "hunter2hunter2"),
])
def test_recognizers_find(detector: GuardDetector, text: str, kind: str, value: str) -> None:
    assert (kind, value) in found(detector, text)


@pytest.mark.parametrize("text", [
    "card 4111 1111 1111 1112",              # fails Luhn
    "IBAN DE89 3704 0044 0532 0130 01",       # fails mod 97
    "version 1.2.3.4 released",               # version string, not an IP
    "on 127.0.0.1 only",                      # loopback
    "Order #1234567890 shipped on 2024-03-15.",
    "The barcode is 4006381333931.",
    "ISBN 978-3-16-148410-0, 2nd edition",
    "api_key = os.environ['OPENAI_API_KEY']",
    "Part numbers: 100-200-300 and 100-200-301.",
    "ssh://git@github.com/org/repo.git",
    "order 110101199003074515 shipped",  # 18 digits with a birth-date shape, bad check digit
    "the pw ratio is fine",
    "evens = digits[0::2]",  # a slice, not an IPv6 address
    "ISBN 0-306-40615-2",
    "Dr. Seuss wrote many books.",
    "Marie Curie was born on 7 November 1867 in Warsaw.",
])
def test_no_false_positive(detector: GuardDetector, text: str) -> None:
    assert detector.detect(text) == []


def test_names_addresses_and_health(detector: GuardDetector) -> None:
    text = ("Patient John Smith, MRN 00123456, takes metformin for type 2 diabetes. "
            "Lives at 150 Anthony Plains, South Glendachester, VA 04307.")
    result = found(detector, text)
    assert ("PERSON", "John Smith") in result
    assert ("ADDRESS", "150 Anthony Plains, South Glendachester, VA 04307") in result
    assert ("MEDICATION", "metformin") in result
    assert ("MEDICAL_CONDITION", "type 2 diabetes") in result


def test_health_terms_need_a_person(detector: GuardDetector) -> None:
    assert detector.detect("Metformin is a first-line treatment for type 2 diabetes.") == []


@pytest.mark.parametrize(("text", "term"), [
    ("ahmed hassan has hypertension", "hypertension"),  # someone has it: no pronoun needed
    ("Adebayo Ogunlesi has malaria", "malaria"),
    ("Chukwuemeka Okonkwo was admitted with sickle cell crisis", "sickle cell crisis"),
    ("JOHN DOE, 45, HIV POSITIVE, ON BIKTARVY", "HIV POSITIVE"),  # an age in apposition
    ("summarize: john doe 45M HIV+ on biktarvy", "HIV"),  # age and sex
    ("Patientin Anna Schmidt, Diagnose: Brustkrebs", "Brustkrebs"),
])
def test_health_terms_tied_to_someone(detector: GuardDetector, text: str, term: str) -> None:
    entities = detector.detect(text)
    assert ("MEDICAL_CONDITION", term) in [(e.type, text[e.start:e.end]) for e in entities]
    assert detector.classify(entities) is DataClass.REGULATED


@pytest.mark.parametrize("text", [
    "Diabetes has many complications.", "Everyone has hypertension risk after 60.",
    "It has been linked to asthma.", "The study found that malaria has declined.",
    "Many people have diabetes.", "Tell me about a malaria vaccine.",
])
def test_general_health_talk_is_not_phi(detector: GuardDetector, text: str) -> None:
    assert detector.classify(detector.detect(text)) is DataClass.PUBLIC


@pytest.mark.parametrize(("text", "name"), [
    ("patient priya venkataraman (DOB 03/07/1986)", "priya venkataraman"),
    ("appointment for wang fang, call 415-555-0132", "wang fang"),  # family name first
    ("medical record no. A-7734-221 for tom o'brien", "tom o'brien"),
    ("my name is zhang wei", "zhang wei"),
    ("〒150-0002 東京都渋谷区渋谷2-21-1 山田太郎 様", "山田太郎"),
    ("患者\uff1a李明\uff0c电话 13800138000", "李明"),
])
def test_lower_case_and_cjk_names(detector: GuardDetector, text: str, name: str) -> None:
    assert ("PERSON", name) in found(detector, text)


@pytest.mark.parametrize("text", [
    "dr rahul sharma will see you",  # a lower-case name alone, weakly cued: not enough
    "from rose garden to river", "I bought this for mark and it was great",
    "我们的王小姐", "今天天气很好", "東京大学の研究",
])
def test_weakly_cued_lower_case_words_are_not_names(detector: GuardDetector, text: str) -> None:
    assert "PERSON" not in types(detector, text)


def test_japanese_address_and_chinese_phone(detector: GuardDetector) -> None:
    assert ("ADDRESS", "〒150-0002 東京都渋谷区渋谷2-21-1") in found(
        detector, "〒150-0002 東京都渋谷区渋谷2-21-1 山田太郎 様")
    assert ("PHONE_NUMBER", "13800138000") in found(detector, "电话 13800138000")


def test_public_figures_in_news_are_not_flagged(detector: GuardDetector) -> None:
    text = "Chancellor Friedrich Merz met President Emmanuel Macron in Paris."
    assert detector.detect(text) == []
    assert detector.detect("Apple CEO Tim Cook unveiled the new iPhone.") == []


def test_names_alone_need_a_cue_or_other_data(detector: GuardDetector) -> None:
    assert detector.detect("Max Verstappen announced a new partnership.") == []
    assert ("PERSON", "Siobhan Kelly") in found(detector, "Dear Siobhan Kelly, thanks.")
    assert ("PERSON", "Kenneth King") in found(detector, "Is 415-555-0132 right for Kenneth King?")


# --- normalisation and offsets ----------------------------------------------------------------

FULLWIDTH_CARD = " ".join(["".join(chr(0xFF10 + int(d)) for d in "4111")] + [
    "".join(chr(0xFF10 + 1) for _ in range(4))] * 3)


@pytest.mark.parametrize(("texts", "kind", "parts"), [
    (["My card is 4111 1111", "1111 1111, thanks"], "CREDIT_CARD", ["4111 1111", "1111 1111"]),
    (["IBAN GB82 WEST 1234", "5698 7654 32 please"], "IBAN_CODE",
     ["GB82 WEST 1234", "5698 7654 32"]),
    (["x" * 500 + " ssn 123-45", "-6780"], "US_SSN", ["123-45", "-6780"]),
    (["ssn 536-22-", "1874"], "US_SSN", ["536-22-", "1874"]),  # two text parts, no space
    (["write to jane.doe@", "example.com please"], "EMAIL_ADDRESS", ["jane.doe@", "example.com"]),
])
def test_identifiers_split_across_texts_are_joined(detector: GuardDetector, texts: list[str],
                                                   kind: str, parts: list[str]) -> None:
    alone = detector.detect_many(texts)
    assert not any(e.type == kind for ents in alone for e in ents)  # each half alone: nothing
    joined = join_straddling(detector, texts, alone)
    got = [[(e.type, text[e.start:e.end]) for e in ents]
           for text, ents in zip(texts, joined, strict=True)]
    assert got[0][-1] == (kind, parts[0]) and got[1][0] == (kind, parts[1])


def test_straddling_keeps_what_each_text_had(detector: GuardDetector) -> None:
    texts = ["mail jane@example.com", "call +1 415 555 0132", "a" * STRADDLE_WINDOW + "!", "",
             "order 12", "items please"]
    alone = detector.detect_many(texts)
    assert join_straddling(detector, texts, alone) == alone
    assert join_straddling(detector, ["4111 1111", "1111 1111"], [[], []])[0][0].type == (
        "CREDIT_CARD")


def test_normalize_maps_offsets_back() -> None:
    text = "card " + FULLWIDTH_CARD[:4] + "\u200b-1111"
    normalized = normalize(text)
    assert normalized.text == "card 4111-1111"
    assert normalized.span(5, 14) == (5, len(text))


def test_ascii_text_needs_no_map() -> None:
    assert normalize("plain ascii").source is None


@pytest.mark.parametrize("text, kind, value", [
    (f"Karte: {FULLWIDTH_CARD}.", "CREDIT_CARD", FULLWIDTH_CARD),
    ("my ssn is 5 3 1 - 4 4 - 2 9 8 7 ok", "US_SSN", "5 3 1 - 4 4 - 2 9 8 7"),
    ("SSN 078-05-11\u200b21 on file", "US_SSN", "078-05-11\u200b21"),
    ("write to m\u0430rk.tw\u0430in@gm\u0430il.com", "EMAIL_ADDRESS",
     "m\u0430rk.tw\u0430in@gm\u0430il.com"),
    ("\u0440\u0430ssport number X1234567", "PASSPORT", "X1234567"),
    ("call\u00a0+44\u00a020\u00a07946\u00a00958", "PHONE_NUMBER",
     "+44\u00a020\u00a07946\u00a00958"),
])
def test_disguised_values_map_to_original_offsets(detector: GuardDetector, text: str, kind: str,
                                                  value: str) -> None:
    assert (kind, value) in found(detector, text)


def test_entity_at_the_very_end_of_a_long_text(detector: GuardDetector) -> None:
    filler = "The quarterly report covers revenue, costs and hiring plans in detail. " * 800
    text = filler[:49_960] + " SSN 123-45-6780"
    assert len(text) > 49_970
    entities = detector.detect(text)
    assert [(e.type, text[e.start:e.end]) for e in entities] == [("US_SSN", "123-45-6780")]
    assert entities[0].end == len(text)


def test_entities_sorted_and_non_overlapping(detector: GuardDetector) -> None:
    text = "Mail a@b.co, call +1 415 555 0132, card 4111111111111111, a@b.co again"
    entities = detector.detect(text)
    assert entities == sorted(entities, key=lambda e: e.start)
    assert all(a.end <= b.start for a, b in itertools.pairwise(entities))
    assert detector.detect_many([text, ""]) == [entities, []]


def test_presidio_chunks_cover_the_whole_text() -> None:
    text = "word " * 50_000
    pieces = list(chunks(text, size=10_000, overlap=100))
    assert pieces[0][0] == 0
    assert pieces[-1][0] + len(pieces[-1][1]) == len(text)
    for (offset, piece), (next_offset, _) in itertools.pairwise(pieces):
        assert next_offset <= offset + len(piece)


# --- classification ---------------------------------------------------------------------------

@pytest.mark.parametrize("kinds, expected", [
    ([], DataClass.PUBLIC),
    (["PERSON"], DataClass.INTERNAL),
    (["IP_ADDRESS"], DataClass.INTERNAL),
    (["PERSON", "EMAIL_ADDRESS"], DataClass.CONFIDENTIAL),
    (["API_KEY"], DataClass.CONFIDENTIAL),
    (["CREDIT_CARD"], DataClass.REGULATED),
    (["US_SSN", "EMAIL_ADDRESS"], DataClass.REGULATED),
    (["MEDICAL_RECORD_NUMBER"], DataClass.REGULATED),
    (["PERSON", "MEDICATION"], DataClass.REGULATED),
])
def test_classification_rules(kinds: list[str], expected: DataClass) -> None:
    assert classify([Entity(k, 0, 1) for k in kinds]) is expected


def test_classification_is_configurable() -> None:
    rules = ClassificationRules(classes={**DEFAULT_RULES.classes,
                                         "IP_ADDRESS": DataClass.CONFIDENTIAL})
    assert classify([Entity("IP_ADDRESS", 0, 1)], rules) is DataClass.CONFIDENTIAL
    assert classify([Entity("SOMETHING_NEW", 0, 1)], rules) is rules.unknown_class
    detector = load_detector(rules=rules)
    assert detector.classify(detector.detect("from 203.0.113.77")) is DataClass.CONFIDENTIAL


def test_unknown_recognizer_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown recognizers"):
        load_detector(recognizers=("nope",))


# --- scan command -----------------------------------------------------------------------------

runner = CliRunner()


def scan(*args: str, stdin: str | None = None) -> tuple[int, list[str], str]:
    result = runner.invoke(app, ["guard", "scan", *args], input=stdin)
    return result.exit_code, result.stdout.splitlines(), result.output


def test_scan_jsonl_in_order(tmp_path: Path) -> None:
    path = tmp_path / "in.jsonl"
    rows = [{"text": "SSN 123-45-6780"}, {"text": "nothing here"}, {"text": "mail a@b.co"}]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    code, lines, _ = scan("--input", str(path))
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert records == [
        {"class": "regulated", "entities": [{"type": "US_SSN", "start": 4, "end": 15}]},
        {"class": "public", "entities": []},
        {"class": "confidential", "entities": [{"type": "EMAIL_ADDRESS", "start": 5, "end": 11}]},
    ]


def test_scan_plain_lines_keeps_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "in.txt"
    path.write_text("call +44 20 7946 0958\n\nhello\n", encoding="utf-8")
    code, lines, _ = scan("-i", str(path))
    assert code == 0
    records = [json.loads(line) for line in lines]
    assert [r["class"] for r in records] == ["confidential", "public", "public"]
    assert records[0]["entities"] == [{"type": "PHONE_NUMBER", "start": 5, "end": 21}]


def test_scan_stdin_and_custom_field() -> None:
    code, lines, _ = scan("-i", "-", "--field", "body", stdin='{"body": "SSN 123-45-6780"}\n')
    assert code == 0 and json.loads(lines[0])["class"] == "regulated"


@pytest.mark.parametrize("content, message", [
    ('{"text": "ok"}\n{bad json\n', "not valid JSON"),
    ('{"text": 1}\n', "string 'text' field"),
])
def test_scan_bad_jsonl_is_a_clean_error(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(content, encoding="utf-8")
    result = runner.invoke(app, ["guard", "scan", "-i", str(path)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_scan_missing_or_binary_file(tmp_path: Path) -> None:
    result = runner.invoke(app, ["guard", "scan", "-i", str(tmp_path / "nope.txt")])
    assert result.exit_code == 2 and "no such file" in result.output
    binary = tmp_path / "bin.txt"
    binary.write_bytes(b"\xff\xfe\x00abc\n")
    result = runner.invoke(app, ["guard", "scan", "-i", str(binary)])
    assert result.exit_code == 2 and "not UTF-8" in result.output


def test_cued_ssn_counts_even_when_never_issued() -> None:
    """With an explicit SSN cue the guard fails closed: example numbers (123-45-6789)
    and never-issued areas (666, 9xx) are still flagged."""
    from modelmix.guard import load_detector

    detector = load_detector()
    for text in ("SSN 666-45-6789", "my SSN is 123-45-6789", "ssn: 912-78-1234"):
        assert [e.type for e in detector.detect(text)] == ["US_SSN"], text
    assert detector.detect("order 123-45-6789 shipped") == []
