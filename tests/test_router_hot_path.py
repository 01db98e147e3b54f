"""The routed hot path's fast paths give the same numbers as the code that defines them
(benchmarks/overhead/hot_path.py times them): ASCII tokenisation through the word cache,
lexical and structure features, the token heads' row layout, the predictor's memory of
the last prompt (per request, never across requests or routers), and the guard's
anchored medical phrases and anchor positions."""

from __future__ import annotations

import csv
import dataclasses
import json
import random
import threading
from pathlib import Path

import numpy as np
import pytest

from modelmix.guard import _medical
from modelmix.guard._address import _PO_BOX, _STREET_EU
from modelmix.guard._normalize import normalize
from modelmix.guard._patterns import _WORDS, Anchored, word_index
from modelmix.routing.learned import LearnedPredictor, load_predictor
from modelmix.routing.learned._features import lexical_features, reference_lexical_features
from modelmix.routing.learned._structure import (
    reference_structure_features,
    structure_features,
)
from modelmix.routing.learned._tokens import sparse_logits

ROOT = Path(__file__).resolve().parents[1]
TABLES = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
CHAT = ROOT.parent / "shared" / "data" / "alpacaeval" / "chat.csv"
GUARD_CORPUS = ROOT / "benchmarks" / "guard" / "corpus"

#: Texts where a shortcut could go wrong: Unicode digits and case folding (Kelvin sign,
#: dotless i, long s), "Answer:" joining words, options, code, formulas, blanks.
EDGE_CASES = [
    "", " ", "²³ ½ Ⅻ 42", "KELVIN \u212a percent", "\u017fum of the above", "PERCENT 50%",
    "a__b", "x = 3/4 half", "\\frac{1}{2} + \\sqrt{2}", "déjà vu NOT", "Ünïcödé  ",
    "def f(): return 1 == 2 -> ```", "\r\nA. one\r\nB. two", "$5 money",
    "\uff21\uff22\uff23\uff11\uff12\uff13",
    "which of theAnswer: following", "Which Of The Following", "more than 3 times",
    "twice as many", "remaining remain", "x=sin(3)", "3 - 4", "for (int i;",
    "Statement 1 | Statement 2", "I. a\nII. b", "IV. x\nV. y", "A. 12\nB. 13 kg",
    "True, False", "ALL OF THE ABOVE", "5 kg of the stuff", "each_ per3 per", "d\u0131vide",
    "x\x01y\x0bz\x7f", "tab\tnew\nline\rret", "a" * 150, "Q: 1,000.5 or 2/3?",
    "for (int i = 0; i == n; i++) { return def; }", "fort( _int def_ for(x) ===",
]


def _table_prompts(every: int = 1) -> list[str]:
    prompts: list[str] = []
    for path in [*TABLES, *([CHAT] if CHAT.exists() else [])]:
        with path.open(newline="", encoding="utf-8") as fh:
            prompts += [row["prompt"] for row in csv.DictReader(fh)][::every]
    return prompts


@pytest.fixture(scope="module")
def predictor() -> LearnedPredictor:
    return load_predictor("default")


def _bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def test_lexical_features_equal_their_definitions_bit_for_bit() -> None:
    texts = [*_table_prompts(every=3), *EDGE_CASES]
    assert np.array_equal(_bits(lexical_features(texts)), _bits(reference_lexical_features(texts)))


def test_structure_features_equal_their_definitions_bit_for_bit() -> None:
    texts = [*_table_prompts(every=3), *EDGE_CASES]
    assert np.array_equal(_bits(structure_features(texts)),
                          _bits(reference_structure_features(texts)))


def test_ascii_token_ids_equal_the_tokenizers(predictor: LearnedPredictor) -> None:
    embedder = predictor.embedder
    rng = random.Random(0)
    alphabet = [chr(c) for c in range(128)]
    fuzz = ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 200)))
            for _ in range(1500)]
    fuzz += [" ".join("".join(rng.choice("abXY09#-'.") for _ in range(rng.randint(1, 120)))
                      for _ in range(4)) for _ in range(500)]  # words over 100 chars: [UNK]
    texts = [t for t in [*_table_prompts(every=2), *EDGE_CASES, *fuzz] if t.isascii()]
    expected = embedder._tokenizer.encode_batch(texts, add_special_tokens=False)
    for text, enc in zip(texts, expected, strict=True):
        got = embedder.token_ids([text])[0]  # one text: the cached word path
        assert got.tolist() == enc.ids[: embedder.max_tokens], text


def test_token_rows_layout_equals_the_saved_layout(predictor: LearnedPredictor) -> None:
    model = predictor.model
    assert model.uses_tokens
    rows = model.token_rows(predictor.embedder.token_ids(_table_prompts(every=50)))
    plane = sparse_logits(rows, model._idf64(), model.arrays["tok_coef"])
    from modelmix.routing.learned._tokens import sparse_logits_rows

    fast = sparse_logits_rows(rows, model._idf64(), model._token_coef_rows(), plane.shape[1:])
    np.testing.assert_allclose(fast, plane, rtol=0, atol=1e-12)


def _fresh(text: str) -> str:
    """An equal string that is a new object (as each request's JSON brings)."""
    return text[:-1] + text[-1]


class _Counting:
    """Counts RouterModel.features calls of one predictor."""

    def __init__(self, predictor: LearnedPredictor, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        inner = predictor.model.features

        def features(*args: object, **kw: object) -> object:
            self.calls += 1
            return inner(*args, **kw)  # type: ignore[arg-type]

        monkeypatch.setattr(predictor.model, "features", features)


def test_one_request_scores_its_prompt_once(predictor: LearnedPredictor,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    counting = _Counting(predictor, monkeypatch)
    # exam format: the shipped router's heads score it (its prior scores other prompts)
    prompt = _fresh("Which metre does a limerick use?\nA. iambic\nB. anapaestic\n"
                    "C. trochaic\nD. dactylic\nAnswer:")
    row = predictor.predict([prompt])[0]
    score = predictor.strong_score([prompt])[0]
    assert counting.calls == 1  # strong_score read what predict computed
    w = predictor.model_names.index(predictor.weak_model or "")
    s = predictor.model_names.index(predictor.strong_model or "")
    assert score == pytest.approx((1.0 + row[s] - row[w]) / 2.0, abs=1e-15)
    again = predictor.predict([_fresh(prompt)])[0]  # equal text, another request
    assert counting.calls == 2 and again == row
    assert predictor.features([prompt]).prompts == (prompt,)


def test_remembered_answer_equals_a_fresh_one_and_is_a_copy(
        predictor: LearnedPredictor) -> None:
    prompt = _fresh("Which structure reverses in O(n)?\nA. array\nB. linked list\n"
                    "C. heap\nD. trie\nAnswer:")
    first = predictor.predict_array([prompt])
    first[0, 0] = -1.0  # the caller's copy: the remembered answer must not change
    hit = predictor.predict_array([prompt])
    uncached = load_predictor("default").predict_array([_fresh(prompt)])
    assert hit[0, 0] != -1.0
    assert np.array_equal(hit, uncached)


def test_a_reloaded_or_changed_router_scores_afresh(predictor: LearnedPredictor) -> None:
    prompt = _fresh("Which event started the First World War?\nA. an assassination\n"
                    "B. a flood\nC. an election\nD. a treaty\nAnswer:")
    before = predictor.predict_array([prompt])
    model = predictor.model
    shifted = dataclasses.replace(model, arrays={**model.arrays,
                                                 "intercept": model.arrays["intercept"] + 3.0})
    reloaded = dataclasses.replace(predictor, model=shifted)  # what a reload installs
    assert reloaded._last is None
    after = reloaded.predict_array([prompt])
    assert not np.allclose(after, before)
    predictor.model = shifted  # the same predictor object with another model
    try:
        assert np.array_equal(predictor.predict_array([prompt]), after)
    finally:
        predictor.model = model
    assert np.array_equal(predictor.predict_array([prompt]), before)


def test_concurrent_requests_get_their_own_answers(predictor: LearnedPredictor) -> None:
    prompts = [f"Question {i}: what is {i} times {i + 1}, and why?" for i in range(24)]
    expected = {p: load_predictor("default").predict([p])[0] for p in prompts[:3]}
    serial = {p: predictor.predict([_fresh(p)])[0] for p in prompts}
    assert all(serial[p] == v for p, v in expected.items())
    errors: list[str] = []

    def work(offset: int) -> None:
        for i in range(60):
            p = prompts[(i + offset) % len(prompts)]
            text = _fresh(p)
            row = predictor.predict([text])[0]
            score = predictor.strong_score([text])[0]
            if row != serial[p] or not np.isfinite(score):
                errors.append(p)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def _guard_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(GUARD_CORPUS.glob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            texts += [v for v in record.values() if isinstance(v, str)]
    return texts


def test_anchored_medical_phrases_find_what_the_patterns_find() -> None:
    rng = random.Random(1)
    words = ("diagnosed with history of taking on his her my their diagnosis diagnose "
             "diagnóstico Dx: rx prescribed started on is on was on still on metformin 500 "
             "mg daily asthma . , and since TAKES for d\u0131agnosed \u017fuffers from "
             "Diagnostiquée avec İstanbul x_on ON_ on-the").split()
    fuzz = [" ".join(rng.choice(words) for _ in range(rng.randint(1, 25)))
            for _ in range(2000)]
    texts = [*_guard_texts()[::2], *fuzz]
    texts += [normalize(t).text for t in texts[::7]]
    for text in texts:
        for pattern in (_medical._DIAGNOSIS, _medical._BEFORE_DIAGNOSIS, _medical._DRUG):
            got = [m.span() + m.span("value") for m in _medical._phrases(pattern, text)]
            want = [m.span() + m.span("value") for m in pattern.regex.finditer(text)]
            assert got == want, text


def _positions_by_definition(anchored: Anchored, lower: str) -> list[int]:
    """Word starts whose word is an exact anchor (under four characters) or begins with
    one (four or more)."""
    found = set()
    for match in _WORDS.finditer(lower):
        word = match.group()
        if word in anchored._exact_set or any(word.startswith(k) for k in anchored._prefixes):
            found.add(match.start())
    return sorted(found)


def test_anchor_positions_follow_their_definition() -> None:
    texts = [t.lower() for t in _guard_texts()[::10]]
    for anchored in (_STREET_EU, _PO_BOX, _medical._DRUG):
        for lower in texts:
            assert anchored._positions(lower) == _positions_by_definition(anchored, lower)
    assert word_index.cache_info().maxsize == 2
