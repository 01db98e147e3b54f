"""The task-type prior of the shipped router: gate, task types, how it rewrites scores, its
manifest round trip, and what it does on the exam tables (in the repo) and the chat table
(read from ../shared, never copied)."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from modelmix.errors import ConfigError
from modelmix.metrics import evaluate_scores
from modelmix.routing.learned import load_predictor, read_outcome_tables
from modelmix.routing.learned._prior import TASK_PRIORS, TaskPrior, exam_format, task_type

ROOT = Path(__file__).resolve().parents[1]
CHAT = ROOT.parent / "shared" / "data" / "alpacaeval" / "chat.csv"

# Written for these tests (not taken from any benchmark).
MC = ("Which gas makes up most of the air we breathe?\nA. Oxygen\nB. Nitrogen\n"
      "C. Carbon dioxide\nD. Argon\nAnswer:")
WORD_PROBLEM = ("Tom buys 3 crates of apples with 24 apples in each crate. He gives half of "
                "them to his sister. How many apples does he keep?")
CHAT_PROMPTS = {
    "open": "Why do cats purr when they are happy?",
    "transform": "Rewrite this sentence so it sounds more formal: gonna be late, sorry",
    "creative": "Write a short poem about autumn leaves",
    "code": "Write a python function that reverses a linked list",
    "math": "Solve the equation 3x + 5 = 20",
    "roleplay": "Act as a travel agent and plan my weekend",
    "other": "Good morning! Lovely weather today.",
}


@pytest.mark.parametrize(("kind", "prompt"), sorted(CHAT_PROMPTS.items()))
def test_task_type_of_written_prompts(kind: str, prompt: str) -> None:
    assert task_type(prompt) == kind


def test_gate_accepts_exam_formats_and_rejects_chat() -> None:
    assert exam_format(MC)
    assert exam_format(WORD_PROBLEM)
    for prompt in CHAT_PROMPTS.values():
        assert not exam_format(prompt), prompt
    # several lines of supplied material are not a word problem, even with numbers
    assert not exam_format("Summarise this report:\nSales rose 5% in Q1 and 7% in Q2.\n"
                           "What was the total?")


def test_supplied_material_lowers_the_need() -> None:
    prior = TaskPrior()
    short = "Explain how vaccines work?"
    long = short + "\n" + "Here is my draft answer that you should build on. " * 20
    assert prior.strong_need(short) == pytest.approx(TASK_PRIORS["open"])
    assert prior.strong_need(long) < prior.strong_need(short) - 0.05
    assert 0.05 <= prior.strong_need("x" * 100_000) <= 0.95


def test_prior_predictions_give_the_need_as_the_strong_score() -> None:
    prior = TaskPrior()
    prompts = [CHAT_PROMPTS["open"], CHAT_PROMPTS["transform"]]
    out = prior.predictions(prompts, models=3, weak=0, strong=2)
    for i, prompt in enumerate(prompts):
        assert (1 + out[i, 2] - out[i, 0]) / 2 == pytest.approx(prior.strong_need(prompt))
        assert out[i, 1] == 0.5  # a column the prior knows nothing about


def test_heads_score_only_prompts_inside_the_gate() -> None:
    """A batch mixing exam and chat prompts: the exam prompt gets exactly what the heads
    give alone; the heads never see the chat prompts (their features are not computed)."""
    router = load_predictor("default")
    prior = router.prior
    assert prior is not None
    chat = [CHAT_PROMPTS["open"], CHAT_PROMPTS["creative"]]
    mixed = router.predict_array([chat[0], MC, chat[1]])
    router.prior = None
    heads_alone = router.predict_array([MC])
    assert np.array_equal(mixed[1], heads_alone[0])
    router.prior = prior
    seen: list[list[str]] = []
    original = router.model.features

    def spy(embedder, prompts):  # type: ignore[no-untyped-def]
        seen.append(list(prompts))
        return original(embedder, prompts)

    router.model.features = spy  # type: ignore[method-assign]
    router.predict_array([chat[0], MC, chat[1]])
    router.predict_array(chat)
    assert seen == [[MC]]


def test_shipped_router_carries_the_prior_and_uses_it() -> None:
    router = load_predictor("default")
    assert router.prior == TaskPrior(gate="exam-format")
    chat = CHAT_PROMPTS["transform"]
    assert router.strong_score([chat])[0] == pytest.approx(router.prior.strong_need(chat))
    router.prior = None
    assert router.strong_score([chat])[0] != pytest.approx(TaskPrior().strong_need(chat))


def test_prior_round_trips_and_bad_manifests_are_refused(tmp_path: Path) -> None:
    router = load_predictor("default")
    out = router.save(tmp_path / "copy")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["prior"]["kind"] == "task-type"
    assert load_predictor(out).prior == router.prior

    manifest["prior"] = {"kind": "crystal-ball"}
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="unsupported router prior"):
        load_predictor(out)
    manifest["prior"] = {"kind": "task-type", "gate": "exam-format"}
    manifest["strong_model"] = None
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match="weak/strong model pair"):
        load_predictor(out)


def test_gate_keeps_the_exam_tables_on_the_learned_heads() -> None:
    table = read_outcome_tables([ROOT / "data" / "routellm" / "mmlu.csv",
                                 ROOT / "data" / "routellm" / "gsm8k.csv"])
    outside = TaskPrior().outside(table.prompts)
    sources = np.asarray(table.sources)
    assert outside[sources == "mmlu"].sum() == 0
    assert outside[sources == "gsm8k"].mean() < 0.03  # 18 of 1,046 at the time of writing


@pytest.mark.skipif(not CHAT.is_file(), reason="../shared/data/alpacaeval/chat.csv absent")
def test_shipped_router_beats_random_on_chat() -> None:
    """Issue 15's bar for the shipped default (trained on MMLU + GSM8K only): APGR >= 0.55
    on the chat table, Mixtral vs gpt-4-1106-preview (random routing: 0.50)."""
    with CHAT.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    prompts = [r["prompt"] for r in rows]
    weak = np.array([float(r["Mixtral-8x7B-Instruct-v0.1"]) for r in rows])
    strong = np.array([float(r["gpt4_1106_preview"]) for r in rows])
    scores = load_predictor("default").strong_score(prompts)
    assert evaluate_scores(scores, weak, strong).apgr >= 0.55


_HOSTILE = [
    '"Which?\\nA. 1" + " " * 100_000 + "x!\\nB. 2\\nC. 3"',  # numeric-option backtracking
    '"\\n" * 200_000', '" \\n" * 100_000', '"what " * 100_000 + "1 2"', '"1 " * 200_000',
    '"A. x\\n" * 50_000',
]


def test_hostile_prompts_are_scored_in_linear_time() -> None:
    """No pattern rescans the text from every line or word (the option patterns took 17 s
    each on 20,000 newlines before); in a child process, killed after 60 s."""
    code = ("from modelmix.routing.learned import load_predictor\n"
            "r = load_predictor('default')\n"
            f"for t in [{', '.join(_HOSTILE)}]:\n"
            "    s = r.strong_score([t])[0]\n"
            "    assert 0.0 <= s <= 1.0, s\n"
            "print('ok')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-2000:]


def test_numbers_too_large_for_a_float_do_not_make_the_score_nan() -> None:
    """``float`` of 309+ digits is inf; the magnitude feature is capped instead, so the
    router still scores (it used to answer NaN and fall back to the rules)."""
    router = load_predictor("default")
    for text in (f"Is 2^1024 equal to {2**1024}?", "7" * 10_000 + " how much is that?"):
        score = router.strong_score([text])[0]
        assert np.isfinite(score) and 0.0 <= score <= 1.0


@pytest.mark.skipif(not CHAT.is_file(), reason="../shared/data/alpacaeval/chat.csv absent")
def test_router_eval_maps_the_shipped_pair_onto_the_chat_columns(tmp_path: Path) -> None:
    """`router eval --router default --weak COL --strong COL`: the table names the router's
    pair differently; the CLI scores the same APGR as scoring by hand (the first test)."""
    from typer.testing import CliRunner

    from modelmix.cli import app

    done = CliRunner().invoke(app, [
        "router", "eval", "--data", str(CHAT), "--router", "default",
        "--weak", "Mixtral-8x7B-Instruct-v0.1", "--strong", "gpt4_1106_preview",
        "--out", str(tmp_path)])
    assert done.exit_code == 0, done.output
    results = json.loads((tmp_path / "results.json").read_text())
    with CHAT.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    scores = load_predictor("default").strong_score([r["prompt"] for r in rows])
    expected = evaluate_scores(scores, np.array([float(r["Mixtral-8x7B-Instruct-v0.1"])
                                                 for r in rows]),
                               np.array([float(r["gpt4_1106_preview"]) for r in rows])).apgr
    chat = results["datasets"][0]
    assert (chat["weak_model"], chat["strong_model"]) == ("Mixtral-8x7B-Instruct-v0.1",
                                                          "gpt4_1106_preview")
    assert chat["methods"]["router"]["apgr"]["mean"] == pytest.approx(expected)
