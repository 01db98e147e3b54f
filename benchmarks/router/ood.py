"""The shipped router on chat, a kind of prompt it was not trained on (issue 15).

    .venv/bin/python benchmarks/router/ood.py       # ~20 s -> ood.json, prints tables

Scores the AlpacaEval chat table (read from ../shared/data/alpacaeval/chat.csv; CC BY-NC,
never copied into the project) with the shipped router as it is (trained on MMLU + GSM8K
only) and with its task-type prior switched off (the router before issue 15), for
Mixtral-8x7B vs gpt-4-1106-preview (the shipped pair) and, as a check of how far the
ranking carries, every other chat-table model vs gpt-4-1106-preview. Also reports the share
of each table the prior's gate keeps on the learned heads, APGR per task type's share of
the table, and the scorers without training (prompt length, its negative) for reference.
Writes numbers only (no prompt text) to ood.json.
"""

from __future__ import annotations

import argparse
import csv
import json
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.metrics import evaluate_scores
from modelmix.routing.learned import load_predictor, read_outcome_tables
from modelmix.routing.learned._prior import task_type

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CHAT = ROOT.parent / "shared" / "data" / "alpacaeval" / "chat.csv"
EXAMS = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
REFERENCE = "gpt4_1106_preview"
WEAK = "Mixtral-8x7B-Instruct-v0.1"
RANDOM_SEEDS = range(10)


def _metrics(scores: np.ndarray, weak: np.ndarray, strong: np.ndarray) -> dict[str, float]:
    m = evaluate_scores(scores, weak, strong)
    return {"apgr": round(m.apgr, 4), "cpt50": round(m.cpt[0.5], 4)}


def _random(weak: np.ndarray, strong: np.ndarray) -> dict[str, float]:
    runs = [_metrics(np.random.default_rng(seed).random(len(weak)), weak, strong)
            for seed in RANDOM_SEEDS]
    return {k: round(float(np.mean([r[k] for r in runs])), 4) for k in ("apgr", "cpt50")}


def chat_report(path: Path) -> dict[str, Any]:
    """Metrics of the shipped router (with and without its prior) on the chat table."""
    with path.open(newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    prompts = [r["prompt"] for r in rows]
    router = load_predictor("default")
    prior = router.prior
    assert prior is not None, "the shipped router should carry the task-type prior"
    with_prior = np.asarray(router.strong_score(prompts))
    router.prior = None
    heads_only = np.asarray(router.strong_score(prompts))
    strong = np.array([float(r[REFERENCE]) for r in rows])
    lengths = np.array([len(p) for p in prompts], dtype=float)
    models = [c for c in rows[0] if c not in {"id", "prompt", "dataset", REFERENCE}]
    per_model = {}
    for model in models:
        weak = np.array([float(r[model]) for r in rows])
        per_model[model] = {"shipped": _metrics(with_prior, weak, strong),
                            "heads_only": _metrics(heads_only, weak, strong),
                            "random": _random(weak, strong)}
    weak = np.array([float(r[WEAK]) for r in rows])
    return {
        "prompts": len(prompts),
        "outside_gate": int(prior.outside(prompts).sum()),
        "task_types": dict(Counter(task_type(p) for p in prompts).most_common()),
        "mixtral": {"shipped": _metrics(with_prior, weak, strong),
                    "heads_only": _metrics(heads_only, weak, strong),
                    "random": _random(weak, strong),
                    "length": _metrics(lengths, weak, strong),
                    "negative_length": _metrics(-lengths, weak, strong)},
        "per_model": per_model,
    }


def exam_gate() -> dict[str, Any]:
    """How many exam prompts the gate keeps on the learned heads, per table."""
    table = read_outcome_tables(EXAMS)
    router = load_predictor("default")
    assert router.prior is not None
    outside = router.prior.outside(table.prompts)
    sources = np.asarray(table.sources)
    return {name: {"prompts": int((sources == name).sum()),
                   "outside_gate": int(outside[sources == name].sum())}
            for name in dict.fromkeys(table.sources)}


def _print(report: dict[str, Any]) -> None:
    chat = report["chat"]
    print(f"chat table: {chat['prompts']} prompts, {chat['outside_gate']} scored by the prior; "
          f"exam gate: {report['exams']}")
    print("\n| scorer | APGR | CPT(50%) |\n| --- | ---: | ---: |")
    for name, m in chat["mixtral"].items():
        print(f"| {name} | {m['apgr']:.3f} | {100 * m['cpt50']:.1f}% |")
    print("\n| weak model (vs gpt-4-1106-preview) | shipped APGR | heads only | random |")
    print("| --- | ---: | ---: | ---: |")
    for model, m in chat["per_model"].items():
        print(f"| {model} | {m['shipped']['apgr']:.3f} | {m['heads_only']['apgr']:.3f} | "
              f"{m['random']['apgr']:.3f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chat", type=Path, default=CHAT)
    parser.add_argument("--out", type=Path, default=HERE / "ood.json")
    args = parser.parse_args()
    if not args.chat.is_file():
        raise SystemExit(f"no chat table at {args.chat} (it lives in ../shared, not here)")
    report = {"chat": chat_report(args.chat), "exams": exam_gate()}
    args.out.write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    _print(report)
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
