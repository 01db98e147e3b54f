"""Guard evasions (issue 9, item 5): values written to slip past patterns are still found, on
the span of what was written, and harmless look-alikes are not flagged."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from _guard_fakes import EchoProvider, sent_text
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.errors import PolicyDenied
from modelmix.guard import Guard, GuardDetector, load_detector, load_policy, normalize
from modelmix.protocol import ChatRequest
from modelmix.testing import ListSink

SSN = "536-22-8761"
CARD = "4111 1111 1111 1111"


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return load_detector()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


# Each case: text, the written form of the value (its gold span), the type reported.
EVASIONS = {
    "base64": (f"my ssn is {_b64(SSN)}", _b64(SSN), "US_SSN"),
    "base64 with its label inside": (f"note: {_b64('SSN ' + SSN)}", _b64("SSN " + SSN),
                                     "US_SSN"),
    "base64 card": (f"card {_b64(CARD)} pls", _b64(CARD), "CREDIT_CARD"),
    "base64url": ("see https://x.example/r/" + base64.urlsafe_b64encode(
        b"card: 4111 1111 1111 1111 >> ok?").decode().rstrip("="),
        base64.urlsafe_b64encode(b"card: 4111 1111 1111 1111 >> ok?").decode().rstrip("="),
        "CREDIT_CARD"),
    "base64 of base64": (f"twice: {_b64(_b64('ssn ' + SSN))}", _b64(_b64("ssn " + SSN)),
                         "US_SSN"),
    "percent-encoded separators": ("GET /v?ssn=536%2D22%2D8761 200", "536%2D22%2D8761",
                                   "US_SSN"),
    "percent-encoded throughout": ("https://a.example/?q=%35%33%36%2D%32%32%2D%38%37%36%31",
                                   "%35%33%36%2D%32%32%2D%38%37%36%31", "US_SSN"),
    "percent-encoded card, status after": ("card=4111%201111%201111%201111 200",
                                           "4111%201111%201111%201111", "CREDIT_CARD"),
    "HTML entities": ("<p>ssn &#53;&#51;&#x36;-22-8761</p>", "&#53;&#51;&#x36;-22-8761",
                      "US_SSN"),
    "JSON escapes": ('{"ssn": "\\u0035\\u0033\\u0036-22-8761"}', "\\u0035\\u0033\\u0036-22-8761",
                     "US_SSN"),
    "number words": ("my ssn is five three six two two eight seven six one",
                     "five three six two two eight seven six one", "US_SSN"),
    "number words in groups": ("five three six, two two, eight seven six one.",
                               "five three six, two two, eight seven six one", "US_SSN"),
    "number words, card": ("card four one one one one one one one one one one one one one "
                           "one one", "four one one one one one one one one one one one one "
                           "one one one", "CREDIT_CARD"),
    "number words with tens": ("ssn: five thirty-six, twenty-two, eighty-seven sixty-one",
                               "five thirty-six, twenty-two, eighty-seven sixty-one", "US_SSN"),
    "number words, German": ("Kartennummer vier eins eins eins eins eins eins eins eins eins "
                             "eins eins eins eins eins eins", "vier eins eins eins eins eins "
                             "eins eins eins eins eins eins eins eins eins eins", "CREDIT_CARD"),
    "dots in odd places": ("ssn 53.62.28.761", "53.62.28.761", "US_SSN"),
    "odd separators": ("card 4111_11/11|1111*111~1", "4111_11/11|1111*111~1",
                       "CREDIT_CARD"),
    "uneven spaces": ("my card: 4 111 11 111 111 1111.", "4 111 11 111 111 1111",
                      "CREDIT_CARD"),
    "letters for digits": ("ssn: 536-22-876l and card 4111 1111 1111 11l1", "536-22-876l",
                           "US_SSN"),
    "Devanagari digits": ("Visa: ४१११ ११११ ११११ ११११", "४१११ ११११ ११११ ११११", "CREDIT_CARD"),
    "combining marks": ("ssn: 5\u03363\u03366\u0336-2\u03362\u0336-8\u03367\u03366\u03361\u0336",
                        "5\u03363\u03366\u0336-2\u03362\u0336-8\u03367\u03366\u03361",
                        "US_SSN"),
    "keycaps": ("card 4\ufe0f\u20e3111 1111 1111 1111", "4\ufe0f\u20e3111 1111 1111 1111",
                "CREDIT_CARD"),
    "reversed": ("my ssn backwards: 1678-22-635", "1678-22-635", "US_SSN"),
    "right-to-left override": ("ssn: \u202e1678-22-635\u202c ok", "1678-22-635", "US_SSN"),
    "one digit per line": ("SSN:\n5\n3\n6\n2\n2\n8\n7\n6\n1\n", "5\n3\n6\n2\n2\n8\n7\n6\n1",
                           "US_SSN"),
    "hex": ("payload 0x3533362d32322d38373631 (ssn)", "3533362d32322d38373631", "US_SSN"),
    "hex bytes": ("ssn 35 33 36 2d 32 32 2d 38 37 36 31", "35 33 36 2d 32 32 2d 38 37 36 31",
                  "US_SSN"),
    "quoted-printable": ("ssn: =35=33=36=2D22=2D8761=0A", "=35=33=36=2D22=2D8761", "US_SSN"),
    "base64 with JSON-escaped slashes": (
        '{"doc": "' + _b64("ssn 536-22-8761 ??>").replace("/", "\\/") + '"}',
        _b64("ssn 536-22-8761 ??>").replace("/", "\\/"), "US_SSN"),
    "number words with hundreds": ("ssn five hundred and thirty-six, twenty-two, eighty-seven "
                                   "sixty-one", "five hundred and thirty-six, twenty-two, "
                                   "eighty-seven sixty-one", "US_SSN"),
    "digits with spelled dashes": ("ssn 536 dash 22 dash 8761", "536 dash 22 dash 8761",
                                   "US_SSN"),
    "number words one per line": ("SSN:\nfive\nthree\nsix\ntwo\ntwo\neight\nseven\nsix\none",
                                  "five\nthree\nsix\ntwo\ntwo\neight\nseven\nsix\none",
                                  "US_SSN"),
    "number words, Dutch": ("Mijn kaartnummer is vier een een een een een een een een een een "
                            "een een een een een", "vier een een een een een een een een een een "
                            "een een een een een", "CREDIT_CARD"),
    "Chinese numerals": ("社会保障番号 五三六-二二-八七六一", "五三六-二二-八七六一", "US_SSN"),
    "string concatenation": ('ssn = "536" + "-22-" + "8761"', '536" + "-22-" + "8761',
                             "US_SSN"),
    "base64 of UTF-16": ("powershell -EncodedCommand " + base64.b64encode(
        "ssn 536-22-8761".encode("utf-16-le")).decode(), base64.b64encode(
        "ssn 536-22-8761".encode("utf-16-le")).decode(), "US_SSN"),
    "SSN told in parts": ("My SSN: the first three digits are 536, the next two are 22 and the "
                          "last four are 8761.", "536, the next two are 22 and the last four "
                          "are 8761", "US_SSN"),
    "interleaved": ("ssn (drop the x): 5x3x6x2x2x8x7x6x1", "5x3x6x2x2x8x7x6x1", "US_SSN"),
}


@pytest.mark.parametrize("name", EVASIONS)
def test_evasion_is_found_on_the_written_form(detector: GuardDetector, name: str) -> None:
    text, written, kind = EVASIONS[name]
    start = text.index(written)
    hits = [e for e in detector.detect(text) if e.type == kind]
    assert hits, (name, detector.detect(text))
    assert any(e.start <= start and e.end >= start + len(written) for e in hits), (
        name, [(e.type, text[e.start:e.end]) for e in hits])


DECOYS = [
    _b64("Hello world, the meeting moved to noon."),
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk",
    "sha256-47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=",
    "trace C9qSXVG7lKG9.1l5s8doiWMCHYw393Ck_DgJ7shAMvgFZ.Z4eSE9A-i5SvNBqhA1Q3",
    "Mix two cups flour, three eggs, one teaspoon salt and four tablespoons butter.",
    "Count along: one two three four five six seven eight nine ten!",
    "one hundred twenty-three thousand four hundred fifty-six people attended",
    "Upgrade numpy to 1.26.4; kernel 5.15.0-91-generic, build 10.0.19041.1288.",
    "Chrome 120.0.6099.109 and firmware 28.14.189.1413 are out.",
    "Request id 3f2a9c4e-8b1d-4e6f-9a7b-2c5d8e1f0a3b failed.",
    "ISBN 978-0-306-40615-7 is out of print.",
    "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 fixed it",
    "Logged at 2024-03-15 14:30:00.123 UTC; meet on 15.03.2025 at 10.30.",
    "https://www.example.com/search?q=hello%20world%21&page=2",
    "Tom &amp; Jerry &lt;b&gt;live&lt;/b&gt; at 8 &mdash; tickets &euro;20",
    '{"title": "\\u00e9t\\u00e9 \\u00e0 Paris", "n": 3}',
    "caf\u0065\u0301 cr\u0065\u0300me \u2764\ufe0f 5\ufe0f\u20e3 stars, gpt-4o and ISO 9001",
    "The charge was reversed on 2024-01-02; see pages 12/34/707.",
    "digest 9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08, colour #a3f2c1",
    "hex greeting 48656c6c6f20776f726c642c2073656520796f75206174203130",
    "scores\n1\n2\n3\n4\n5\n6\n7\n8\n9\n10",
    "width=20 height=10 depth=30; x=3D y=4F z=2A",
    'greeting = "Hello, " + name + "! You have " + str(3) + " new messages"',
    "会议定在二〇二四年三月十五日, 三楼二号会议室。",
    "Read the first three chapters, the next two by Friday and the last four in week 9.",
    "Weekly counts: Mon 2 41 5 1338 160 974",
]


@pytest.mark.parametrize("text", DECOYS)
def test_harmless_lookalikes_are_not_flagged(detector: GuardDetector, text: str) -> None:
    assert detector.detect(text) == [], [(e.type, text[e.start:e.end])
                                         for e in detector.detect(text)]


@pytest.mark.parametrize("text", ["Block traffic from 192.168.10.1 now",
                                  "ping 78.53.188.34 is down"])
def test_ip_addresses_stay_ip_addresses(detector: GuardDetector, text: str) -> None:
    assert {e.type for e in detector.detect(text)} == {"IP_ADDRESS"}


def test_decoded_view_maps_back_to_the_original() -> None:
    from modelmix.guard._decode import decode

    view = decode("ssn=536%2D22%2D8761")
    assert view is not None and view.text == "ssn=536-22-8761"
    assert view.span(4, 15) == (4, 19)  # the value, per character
    encoded = _b64(SSN)
    view = decode(f"x {encoded} y")
    assert view is not None and view.text == f"x {SSN} y"
    assert view.span(2, 2 + len(SSN)) == (2, 2 + len(encoded))  # the whole run
    assert decode("two cups flour, three eggs") is None
    assert decode("plain text with 4111 1111 1111 1111") is None


def test_normalize_folds_other_digits_and_marks() -> None:
    assert normalize("\u0966\u0967 5\u0336").text == "01 5"
    assert normalize("caf\u0065\u0301").text == "caf\u0065\u0301"  # a mark on a letter stays


# --- AWS secret access key ----------------------------------------------------------------

AWS_ID, AWS_SECRET = "AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.mark.parametrize("text", [
    f"{AWS_ID} {AWS_SECRET}",
    f"Access key ID,Secret access key\n{AWS_ID},{AWS_SECRET}\n",
    f'{{"AccessKeyId": "{AWS_ID}", "SecretAccessKey": "{AWS_SECRET}"}}',
    f"aws secret {AWS_SECRET}",
])
def test_aws_secret_access_key_is_found(detector: GuardDetector, text: str) -> None:
    found = {text[e.start:e.end] for e in detector.detect(text) if e.type == "API_KEY"}
    assert AWS_SECRET in found


def test_scan_command_reports_the_aws_secret() -> None:
    from typer.testing import CliRunner

    from modelmix.cli import app

    result = CliRunner().invoke(app, ["guard", "scan", "--input", "-", "--format", "lines"],
                                input=f"{AWS_ID} {AWS_SECRET}\n")
    assert result.exit_code == 0, result.output
    assert result.output.count('"API_KEY"') == 2


def test_forty_character_hashes_are_not_aws_secrets(detector: GuardDetector) -> None:
    text = f"{AWS_ID} rotated; commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"
    assert [text[e.start:e.end] for e in detector.detect(text)] == [AWS_ID]


# --- lower-case names ---------------------------------------------------------------------

@pytest.mark.parametrize("text, name", [
    (f"the patient, mary okafor, paid with card {CARD}", "mary okafor"),
    (f"patient name: john smith. card on file {CARD}", "john smith"),
    (f"refund for patient donald coffey to card {CARD}", "donald coffey"),
    (f"patient ms. yvette collins disputes card {CARD}", "yvette collins"),
])
def test_cued_lower_case_names_are_found(detector: GuardDetector, text: str,
                                         name: str) -> None:
    assert ("PERSON", name) in [(e.type, text[e.start:e.end]) for e in detector.detect(text)]


# --- end to end: policies over a local and a cloud deployment ------------------------------

def _service(policy: str) -> tuple[ChatService, dict[str, Any]]:
    config = config_from_dict({
        "deployments": [
            {"name": "cloud", "provider": "openai", "model": "m-cloud"},
            {"name": "onprem", "provider": "vllm", "model": "m-onprem",
             "base_url": "http://127.0.0.1:9/v1"},
        ],
        "groups": {"all": ["cloud", "onprem"]},
        "router": "ordered",
    })
    fakes = {d.name: EchoProvider(d) for d in config.deployments}
    guard = Guard(load_policy(policy), load_detector(), in_thread=False)
    return ChatService(config, providers=fakes, usage=ListSink(), guard=guard), fakes


def _chat(text: str) -> ChatRequest:
    return ChatRequest.model_validate(
        {"model": "all", "messages": [{"role": "user", "content": text}]})


@pytest.mark.parametrize("text", [
    f"Please file this: {_b64('SSN ' + SSN)}",
    "my ssn is five three six, two two, eight seven six one",
    "https://intake.example/?ssn=%35%33%36%2D%32%32%2D%38%37%36%31",
])
async def test_encoded_ssn_never_reaches_a_cloud_deployment(text: str) -> None:
    service, fakes = _service("healthcare")
    done = await service.complete(_chat(text))
    assert done.deployment.name == "onprem"
    assert not fakes["cloud"].calls


async def test_encoded_card_is_pseudonymised_under_finance() -> None:
    service, fakes = _service("finance")
    text = f"charge {_b64(CARD)} for patient john smith, card {CARD}"
    done = await service.complete(_chat(text))
    sent = sent_text(fakes[done.deployment.name].calls[0])
    assert _b64(CARD) not in sent and CARD not in sent and "john smith" not in sent


async def test_aws_secret_alone_is_blocked() -> None:
    service, fakes = _service("finance")
    with pytest.raises(PolicyDenied, match="API_KEY"):
        await service.complete(_chat(f"the aws secret {AWS_SECRET} from the vault"))
    assert not any(fake.calls for fake in fakes.values())
