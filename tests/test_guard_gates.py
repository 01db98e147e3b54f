"""The guard's gates (a scan is skipped when the text lacks what every match of it needs: a
digit, a literal prefix, a non-ASCII character, a word a lexicon phrase can start with)
never change what is found: each recognizer, the decoder and the whole detector give the
same answer with gates on and inside ``ungated()``, on the guard corpora and on random
texts built from the characters and words the gates look for
(benchmarks/overhead/hot_path.py times the gated path)."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelmix.guard import _medical
from modelmix.guard._decode import decode
from modelmix.guard._detect import GuardDetector
from modelmix.guard._normalize import normalize
from modelmix.guard._patterns import gated, has_digit, ungated

ROOT = Path(__file__).resolve().parents[1]
GUARD = ROOT / "benchmarks" / "guard"
CORPORA = ("sensitive", "clean", "realistic", "adversarial")

#: Pieces the gates test for, mixed into random texts with words and separators.
PIECES = [
    "0", "7", "42", "123-45-6789", "4111 1111 1111 1111", "\u0663\u0664", "\uff17", "\u00b2",
    "@", " at ", "[dot]", "sk-", "sk-proj-abcdefghijklmnopqrstuvwx", "AKIA", "ASIA",
    "AKIAABCDEFGHIJKLMNOP", "ghp_", "xoxb-", "AIza", "k_live_", "eyJ", "Bearer ", "Token ",
    "Basic ", "secret", "password: ", "api_key=", "\u4e2d", "\u7530\u4e2d\u69d8", "\u00f7",
    "'", "-", "o'", "a-'", "deep vein thrombosis", "diabetes", "hiv", "HIV-1", "ocd", "non",
    "end-stage renal disease", "acl tear", "metformin", "\u0131", "\u017f", "Strada", "Calea",
    "House No. 12b", "PO Box 12", "Via Roma 12", "\u3012150-0002", "IL 62704", "SW1A 1AA",
    "::1", "fe80::1ff:fe23:4567:890a", "aa:bb:cc:dd:ee:ff", "1HGCM82633A004352", "vin",
    "IMEI 490154203237518", "MRN", "passport", "routing", "DE89 3704 0044 0532 0130 00",
    "\n", " ", ", ", ". ", "my", "patient", "she", "I'm", "Dr.", "Maria", "Gonzalez",
]
WORDS = ("the a and of to in for with my her his patient call card number plan water "
         "garden balcony summer seeds plants first season young simple").split()


def _corpus_texts() -> list[str]:
    texts = []
    for name in CORPORA:
        lines = (GUARD / "corpus" / f"{name}.jsonl").read_text("utf-8").splitlines()
        texts += [json.loads(line)["text"] for line in lines if line.strip()]
    return texts


def _fuzz_texts(count: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    for _ in range(count):
        parts = [rng.choice(PIECES) if rng.random() < 0.45 else rng.choice(WORDS)
                 for _ in range(rng.randint(1, 24))]
        joined = [part + rng.choice(("", " ", " ", "-", "'", "\n", ": ")) for part in parts]
        yield "".join(joined)


@pytest.fixture(scope="module")
def detector() -> GuardDetector:
    return GuardDetector()


def _found(detector: GuardDetector, text: str) -> dict[str, list[tuple[str, int, int, float]]]:
    """Every recognizer's entities on the normalised text and on its decoded view, the
    decoded view itself and the detector's answer."""
    views = [normalize(text).text]
    view = decode(text)
    if view is not None:
        views.append(view.text)
    out: dict[str, list[tuple[str, int, int, float]]] = {
        "detect": [(e.type, e.start, e.end, e.score) for e in detector.detect(text)],
        "decoded": [("", 0, 0, 0.0)] if view is None else [(view.text, 0, 0, 0.0)]}
    for finder in detector._finders:
        out[type(finder).__name__] = sorted(
            (e.type, e.start, e.end, e.score) for v in views for e in finder.find(v))
    return out


def _assert_same(detector: GuardDetector, texts: list[str]) -> None:
    gated_answers = [_found(detector, text) for text in texts]
    with ungated():
        plain_answers = [_found(detector, text) for text in texts]
    for text, got, want in zip(texts, gated_answers, plain_answers, strict=True):
        assert got == want, text


def test_gates_switch_off_inside_ungated() -> None:
    assert gated() and not has_digit("plain prose, no numbers")
    assert has_digit("x7") and has_digit("\u0663") and has_digit("\uff17")
    assert not has_digit("\u00b2 \u00bd")  # superscripts and fractions are not \d
    with ungated():
        assert not gated() and has_digit("plain prose, no numbers")
    assert gated()


def test_medical_lexicon_reads_fewer_words_but_finds_the_same() -> None:
    recognizer = _medical.MedicalRecognizer()
    assert recognizer._heads is not None
    text = "I am planning a deep garden; my deep vein thrombosis, o'deep and a-'diabetes."
    starts = recognizer._heads.starts(text)
    assert 0 < len(starts) < len(_medical._WORD.findall(text))
    found = list(recognizer._lexicon(text))
    with ungated():
        assert found == list(recognizer._lexicon(text))
    assert ("MEDICAL_CONDITION", text.index("deep vein"), text.index(", o'")) in found


def test_gated_equals_ungated_on_a_corpus_sample(detector: GuardDetector) -> None:
    texts = _corpus_texts()
    assert len(texts) > 5000
    _assert_same(detector, texts[::12])


def test_gated_equals_ungated_on_random_texts(detector: GuardDetector) -> None:
    _assert_same(detector, list(_fuzz_texts(600, seed=15)))


@pytest.mark.slow  # ~30 s: every text of the four corpora, each scanned twice
def test_gated_equals_ungated_on_every_corpus_text(detector: GuardDetector) -> None:
    _assert_same(detector, _corpus_texts())
