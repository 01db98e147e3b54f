"""Offline verifiers of verified cascades: arithmetic (recomputed steps, no eval),
JSON Schema (extraction, paths, repair prompt), learned (training, numpy-only scoring),
the registry and the interface the live runtime uses."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelmix.errors import ConfigError
from modelmix.routing.cascade import (
    VERIFIERS,
    ArithmeticVerifier,
    Check,
    ExprError,
    JsonSchemaVerifier,
    LearnedVerifier,
    Verifier,
    analyse,
    default_verifier_dir,
    evaluate_text,
    extract_json,
    load_verifier,
    prompt_numbers,
    read_response_table,
    repair_prompt,
    roc_auc,
    train_verifier,
    verifier_from_spec,
)
from modelmix.routing.learned import RouterDataError

_ROOT = Path(__file__).resolve().parents[1]
GSM8K = _ROOT / "data" / "routellm" / "gsm8k.csv"
WEAK = "mistralai/Mixtral-8x7B-Instruct-v0.1"

SPRINTS = ("James decides to run 3 sprints 3 times a week.  He runs 60 meters each sprint.  "
           "How many total meters does he run a week?")
SPRINTS_ANSWER = (" James runs 3 sprints in each session, and each sprint is 60 meters. So in one "
                  "session, he runs 3 x 60 = <<3*60=180>>180 meters.\nHe does this 3 times a "
                  "week, so in a week, James runs 180 x 3 = <<180*3=540>>540 meters.\n#### 540")


_SHIPPED = load_verifier("default")


def _gsm8k_slice(tmp_path: Path, rows: int = 160) -> Path:
    with GSM8K.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        data = [row for _, row in zip(range(rows), reader, strict=False)]
    out = tmp_path / "gsm8k-slice.csv"
    with out.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=header)
        writer.writeheader()
        writer.writerows(data)
    return out


# -- the safe arithmetic evaluator ----------------------------------------------------------


@pytest.mark.parametrize(("text", "value"), [
    ("3 x 60", 180), ("3*60", 180), ("2 + 3 * 4", 14), ("(2 + 3) * 4", 20),
    ("2 ^ 10", 1024), ("2 ** 3 ** 2", 512), ("-3 + 5", 2), ("2(3 + 4)", 14),
    ("$1,234.50 * 2", Fraction(2469)), ("20% * 50", 10), (".5 * 4", 2),
    ("0.1 + 0.2", Fraction(3, 10)), ("10 \u00f7 4", Fraction(5, 2)), ("7 \u2212 2", 5),
])
def test_expressions_are_computed_exactly(text: str, value: Fraction | int) -> None:
    assert evaluate_text(text) == value


@pytest.mark.parametrize("text", ["1 / 0", "2 ^ 100000", "9 ^ 0.5", "(1 + 2", "1 +", "",
                                  "__import__('os').system('true')", "x * 2"])
def test_bad_or_huge_expressions_are_refused_not_run(text: str) -> None:
    with pytest.raises(ExprError):
        evaluate_text(text)


def test_an_answer_with_python_in_it_is_just_text(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    answer = f"__import__('os').system('touch {marker}') = 5\n#### 5"
    check = ArithmeticVerifier().check("What is 2 + 3?", answer)
    assert not marker.exists()
    assert check.ok and "no worked steps" in check.reason
    hostile = "(" * 5000 + "1" + ")" * 5000 + " + 1 = 2 and 9^99999999 + 1 = 3\n#### 3"
    assert isinstance(ArithmeticVerifier().check("", hostile), Check)


_NOISE = st.text(alphabet="0123456789+-*/^()=xX.,$%# \n<>{}[]\"ab\u00d7\u2212", max_size=120)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(prompt=_NOISE, answer=_NOISE)
def test_verifiers_never_raise_on_any_text(prompt: str, answer: str) -> None:
    schema = JsonSchemaVerifier({"type": "object"})
    for verifier in (ArithmeticVerifier(), ArithmeticVerifier(numbers_from_prompt=True),
                     schema, _SHIPPED):
        check = verifier.check(prompt, answer)
        assert 0.0 <= check.score <= 1.0 and check.reason


# -- the arithmetic verifier ----------------------------------------------------------------


def test_arithmetic_accepts_a_correct_gsm8k_worked_answer() -> None:
    check = ArithmeticVerifier().check(SPRINTS, SPRINTS_ANSWER)
    assert check == Check(ok=True, score=0.0,
                          reason="final answer 540 matches the recomputed steps (2 steps)")


def test_arithmetic_rejects_a_wrong_step() -> None:
    answer = SPRINTS_ANSWER.replace("3 x 60 = <<3*60=180>>180", "3 x 60 = 190")
    check = ArithmeticVerifier().check(SPRINTS, answer)
    assert not check.ok and 0.0 < check.score <= 1.0
    assert check.reason.startswith("step 1: 3 x 60 = 190, but 3 x 60 = 180")


def test_arithmetic_rejects_a_final_answer_the_steps_do_not_give() -> None:
    answer = SPRINTS_ANSWER.replace("#### 540", "#### 500")
    check = ArithmeticVerifier().check(SPRINTS, answer)
    assert not check.ok and check.score == pytest.approx(1 / 3)
    assert "final answer 500 is not the result of any step (last step gives 540)" in check.reason


def test_an_answer_without_a_number_fails_when_one_is_expected() -> None:
    check = ArithmeticVerifier().check(SPRINTS, "He runs a lot of meters.")
    assert check == Check(ok=False, score=1.0, reason="no final number in the answer")
    relaxed = ArithmeticVerifier.from_options({"require_final": False})
    assert relaxed.check(SPRINTS, "He runs a lot.").ok


@pytest.mark.parametrize(("answer", "ok"), [
    ("180 meters/session * 3 = 540 meters. The answer is 540.", True),
    ("20% of $50 = $10\n#### 10", True),
    ("10 / 3 = 3.33, so about 3.33 each.\n#### 3.33", True),
    ("3 * 60 = 181\n#### 181", False),
    ("Total: $6.50 + $2.00 + $1.00 = $9.50.\n#### 9.5", True),
    ("Total: $6.50 + $2.00 + $1.00 = $10.50.\n#### 10.5", False),
    ("16 \\* 3/4 = <<16*3/4=12>>12 bags\n#### 12", True),
    ("80 / 120 = <<80/120=2/3>>2/3 of an hour, 2/3 \\* 60 = <<2/3*60=40>>40 min\n#### 40", True),
    ("4 (Science) + 20 (History) = <<4+20=24>>24 pages\n#### 24", True),
    ("4 (Science) + 20 (History) = <<4+20=34>>34 pages\n#### 34", False),
    ("2 x 1 hour = <<2*60=120>>120 minutes\n#### 120", True),
    ("Let x be the mugs: x * 4 + 8 = 40, so x = 8.\n#### 8", True),
    ("7/20 = 0.35 of the puppies have spots.\n#### 35", True),
    ("140 / 3 = <<140/3=46.666666666666664>>46.67 mph\n#### 46.67", True),
    ("The share is 40/100 * 100 = 40%.\n#### 40", True),
])
def test_arithmetic_reads_common_ways_of_writing_steps(answer: str, ok: bool) -> None:
    assert ArithmeticVerifier().check("", answer).ok is ok, ArithmeticVerifier().check("", answer)


def test_numbers_from_prompt_reports_the_first_unsupported_number() -> None:
    prompt = "Revenue was $1,234.5 and costs were $234.50 (tool result: {\"tax\": 100})."
    strict = ArithmeticVerifier.from_options({"numbers_from_prompt": True})
    good = "Profit = 1234.50 - 234.50 - 100 = $900.00.\nThe answer is $900."
    assert strict.check(prompt, good).ok
    bad = strict.check(prompt, "Profit = 1234.50 - 200 = $1,034.50.\nThe answer is $1,034.50.")
    assert not bad.ok
    assert bad.reason == "unsupported number 200: not in the prompt and not computed from " \
                         "earlier numbers"
    plain = ArithmeticVerifier().check(prompt, "Profit = 1234.50 - 200 = $1,034.50.")
    assert plain.ok  # without the option only the arithmetic counts
    allowed = ArithmeticVerifier.from_options({"numbers_from_prompt": True, "allow": [200]})
    assert allowed.check(prompt, "Profit = 1234.50 - 200 = $1,034.50.").ok


def test_prompt_numbers_include_words_fractions_and_percent() -> None:
    numbers = prompt_numbers("A dozen eggs, half of them, 3/4 cup, 20% off $1,000.50")
    assert {Fraction(12), Fraction(1, 2), Fraction(3, 4), Fraction(1, 5), Fraction(20),
            Fraction(2001, 2)} <= numbers


def test_analysis_exposes_steps_and_final() -> None:
    found = analyse(SPRINTS, SPRINTS_ANSWER)
    assert [s.expression for s in found.steps] == ["3*60", "180*3"]
    assert found.final is not None and found.final.value == 540 and found.final.source == "####"
    assert found.failed == () and found.final_ok is True and found.prompt_numbers_used == 1.0


@pytest.mark.parametrize(("options", "words"), [
    ({"numbers_from_prompt": "yes"}, "'numbers_from_prompt' must be true or false"),
    ({"allow": "7"}, "'allow' must be a list of numbers"),
    ({"tolerance": 1}, "unknown option 'tolerance'"),
])
def test_arithmetic_options_are_checked(options: dict[str, object], words: str) -> None:
    with pytest.raises(ConfigError, match=words):
        ArithmeticVerifier.from_options(options)


# -- the JSON Schema verifier ---------------------------------------------------------------

ORDER = {"type": "object", "required": ["item", "qty"],
         "properties": {"item": {"type": "string"}, "qty": {"type": "integer", "minimum": 1}}}


def test_json_schema_accepts_valid_json_whole_fenced_or_embedded() -> None:
    v = JsonSchemaVerifier.from_options({"schema": ORDER})
    assert v.check("", '{"item": "pen", "qty": 2}') == Check(True, 0.0,
                                                               "valid JSON (whole answer)")
    fenced = 'Here you go:\n```json\n{"item": "pen", "qty": 2}\n```\nThanks!'
    assert v.check("", fenced).reason == "valid JSON (fenced block)"
    embedded = 'The order is {"item": "pen", "qty": 2} as asked.'
    assert v.check("", embedded).reason == "valid JSON (embedded)"
    assert not JsonSchemaVerifier.from_options({"schema": ORDER, "strict": True}).check(
        "", embedded).ok


def test_json_schema_names_the_path_of_the_error() -> None:
    v = verifier_from_spec("json-schema", {"schema": ORDER})
    check = v.check("", '{"item": "pen", "qty": "two"}')
    assert not check.ok and 0.5 < check.score <= 1.0
    assert check.reason == "invalid JSON at $.qty: 'two' is not of type 'integer'"
    missing = v.check("", '{"item": "pen"}')
    assert missing.reason == "invalid JSON at $: 'qty' is a required property"
    assert v.check("", "no json here {oops") == Check(False, 1.0, "no JSON found in the answer")


def test_json_extraction_prefers_whole_then_fence_then_first_balanced() -> None:
    assert extract_json('[1, 2]') == ([1, 2], "whole answer")
    assert extract_json('x {"a": "}"} y {"b": 1}') == ({"a": "}"}, "embedded")
    assert extract_json("[" * 100_000) is None  # deep nesting: no JSON, no RecursionError


def test_bad_schemas_are_config_errors_naming_the_option() -> None:
    with pytest.raises(ConfigError, match=r"option 'schema' is not a valid JSON Schema at \$"):
        verifier_from_spec("json-schema", {"schema": {"type": "nope"}})
    with pytest.raises(ConfigError, match="option 'schema' is required"):
        verifier_from_spec("json-schema", {})
    with pytest.raises(ConfigError, match="does not point into the schema"):
        verifier_from_spec("json-schema", {"schema": {"$ref": "https://example.com/s.json"}})
    ok = {"$defs": {"n": {"type": "integer"}}, "properties": {"a": {"$ref": "#/$defs/n"}}}
    assert verifier_from_spec("json-schema", {"schema": ok}).check("", '{"a": 1}').ok


def test_repair_prompt_states_the_reason_and_the_schema() -> None:
    v = JsonSchemaVerifier.from_options({"schema": ORDER})
    answer = 'Sure: {"item": "pen", "qty": 0}'
    check = v.check("", answer)
    text = v.repair_prompt(answer, check)
    assert check.reason in text and '"minimum": 1' in text
    assert "no text around it" in text and text.endswith("Reply with only the corrected JSON.")
    generic = repair_prompt("3 x 60 = 190", Check(False, 0.5, "step 1: 3 x 60 = 190, but ..."))
    assert "step 1" in generic and "JSON" not in generic


# -- registry and interface -----------------------------------------------------------------


def test_registry_and_spec() -> None:
    assert set(VERIFIERS) == {"arithmetic", "json-schema", "learned"}
    assert all(issubclass(cls, Verifier) and cls.name == name for name, cls in VERIFIERS.items())
    assert isinstance(verifier_from_spec("arithmetic", {}), ArithmeticVerifier)
    with pytest.raises(ConfigError, match="known verifiers: arithmetic, json-schema, learned"):
        verifier_from_spec("judge-free", {})
    with pytest.raises(ValueError):
        Check(ok=True, score=1.5, reason="out of range")


# -- the learned verifier -------------------------------------------------------------------


def test_learned_verifier_trains_saves_and_scores(tmp_path: Path) -> None:
    data = _gsm8k_slice(tmp_path)
    v = train_verifier(data, tmp_path / "v", response_column=f"{WEAK}_response", cv_folds=3)
    manifest = json.loads((tmp_path / "v" / "manifest.json").read_text())
    assert manifest["format"] == "modelmix-verifier" and manifest["format_version"] == 1
    assert manifest["training_data"]["rows"] == 160 and len(manifest["training_data"][
        "sha256"]) == 64 and manifest["training_data"]["columns"]["label"] == WEAK
    assert manifest["cv_metrics"]["auc"]["mean"] > 0.6
    assert v.cv_scores is not None and v.cv_scores.shape == (160,)
    loaded = load_verifier(tmp_path / "v")
    table = read_response_table(data, response_column=f"{WEAK}_response")
    scores = np.asarray(loaded.scores(table.prompts, table.answers))
    assert np.allclose(scores, v.scores(table.prompts, table.answers))
    assert roc_auc(scores, table.labels < 0.5) > 0.75  # in-sample, but a real signal
    check = loaded.check(SPRINTS, SPRINTS_ANSWER)
    assert check.ok and "arithmetic: final answer 540" in check.reason
    assert not loaded.check(SPRINTS, "I think 12.5").ok


def test_learned_verifier_scores_with_numpy_only(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['sklearn'] = None\n"  # any scikit-learn import would fail
        "from modelmix.routing.cascade import verifier_from_spec\n"
        f"v = verifier_from_spec('learned', {{'artifact': {str(default_verifier_dir())!r}}})\n"
        f"print(v.check({SPRINTS!r}, {SPRINTS_ANSWER!r}).ok)\n"
        "print('sklearn' in sys.modules and sys.modules['sklearn'] is not None)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["True", "False"]


def test_shipped_verifier_is_small_and_loads() -> None:
    directory = default_verifier_dir()
    size = sum(p.stat().st_size for p in directory.iterdir())
    assert size < 1_000_000
    v = verifier_from_spec("learned", {"threshold": 0.3})
    assert isinstance(v, LearnedVerifier) and v.threshold == 0.3
    assert v.manifest["training_data"]["file"] == "gsm8k.csv"


def test_learned_verifier_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no verifier artifact"):
        load_verifier(tmp_path / "missing")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "manifest.json").write_text(json.dumps(
        {"format": "modelmix-verifier", "format_version": 99}))
    with pytest.raises(ConfigError, match="format version 99"):
        load_verifier(tmp_path / "old")
    with pytest.raises(ConfigError, match="'threshold' must be a number in"):
        verifier_from_spec("learned", {"threshold": 2})
    with pytest.raises(RouterDataError, match="name the label column"):
        read_response_table(GSM8K, response_column="prompt")
