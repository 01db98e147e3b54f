"""Chat (AlpacaEval) routing: 5-fold CV on the chat preference table and transfer between
chat and exams (issue 15, must-have 2).

    .venv/bin/python benchmarks/router/chat.py      # ~3 min on 2 cores

Reads ``../shared/data/alpacaeval/chat.csv`` (CC BY-NC 4.0: read in place, never copied;
nothing trained on it is written) and ``data/routellm/{mmlu,gsm8k}.csv``. Pair: Mixtral
8x7B (weak) vs gpt-4-1106-preview (strong); on the chat table the strong model's quality is
its constant 0.5 (a tie with itself) and the weak model's is P(judge preferred it).

* CV: the folds of ``router train --cv 5`` (seed 0; the options were picked on them) and
  a second split (seed 1, no part in picking) for the chat defaults
  (``PREFERENCE_DEFAULTS``), the exam defaults, the pooled-target option, and the
  ``dataset`` domain column (whose folds differ: stratified by it); random (10 seeds),
  oracle and negative prompt length on the same folds, as ``router eval`` computes them.
* Transfer: a router trained on all of one side scores all of the other.

Writes ``benchmarks/router/chat.json`` (numbers only) and prints markdown tables.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from modelmix.eval import oracle_metrics, random_metrics
from modelmix.metrics import Stat, evaluate_scores
from modelmix.routing.learned import FitOptions, load_embedder, train_router
from modelmix.routing.learned._tables import OutcomeTable, read_outcome_tables
from modelmix.routing.learned._train import (
    PREFERENCE_DEFAULTS,
    assign_folds,
    cross_validate_router,
    options_for_table,
)

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT.parent / "shared" / "data" / "alpacaeval" / "chat.csv"
EXAMS = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
CHAT_PAIR = ("Mixtral-8x7B-Instruct-v0.1", "gpt4_1106_preview")
EXAM_PAIR = ("mistralai/Mixtral-8x7B-Instruct-v0.1", "gpt-4-1106-preview")
OUT = Path(__file__).resolve().parent / "chat.json"
EXAM_DEFAULTS = FitOptions()


def _stat(m: dict) -> dict:
    return {k: {"mean": m[k]["mean"], "std": m[k]["std"]} for k in ("apgr", "cpt50", "cpt80")}


def _cv_rows(seed: int) -> dict[str, dict]:
    """Per method, chat CV metrics on the folds of ``seed``."""
    embedder = load_embedder("default")
    table = read_outcome_tables([CHAT])
    by_dataset = read_outcome_tables([CHAT], domain_column="dataset")
    chat = options_for_table(table)
    configs = {
        "chat defaults (no tokens, C=3e-4)": (table, chat),
        "exam defaults (tokens, C=1e-3)": (table, EXAM_DEFAULTS),
        "chat defaults + pool 0.5": (table, FitOptions(**PREFERENCE_DEFAULTS, pool=0.5)),
        "chat defaults + domain column dataset": (by_dataset, chat),
    }
    rows = {}
    for name, (tab, opts) in configs.items():
        m = cross_validate_router(tab, embedder, opts, weak=CHAT_PAIR[0], strong=CHAT_PAIR[1],
                                  folds=5, seed=seed)["datasets"]["chat"]
        rows[name] = _stat(m)
        print(f"  seed {seed} {name}: APGR {m['apgr']['mean']:.3f}", file=sys.stderr)
    rows.update(_baselines(table, seed))
    return rows


def _baselines(table: OutcomeTable, seed: int) -> dict[str, dict]:
    """Random (10 seeds), oracle and negative prompt length per fold, as ``router eval``
    computes them."""
    w, s = (table.outcomes[:, table.model_names.index(m)] for m in CHAT_PAIR)
    fold = assign_folds(table, 5, seed)
    length = -np.array([len(p) for p in table.prompts], dtype=float)
    per: dict[str, list] = {"random": [], "oracle": [], "negative prompt length": []}
    for j in range(5):
        rows = fold == j
        per["random"].append(random_metrics(w[rows], s[rows]))
        per["oracle"].append(oracle_metrics(w[rows], s[rows]))
        per["negative prompt length"].append(evaluate_scores(length[rows], w[rows], s[rows]))
    return {name: {key: Stat.of([m.apgr if key == "apgr" else m.cpt[target]
                                 for m in ms]).to_dict()
                   for key, target in (("apgr", 0.0), ("cpt50", 0.5), ("cpt80", 0.8))}
            for name, ms in per.items()}


def _score(router, paths: list[Path], pair: tuple[str, str]) -> dict[str, dict]:
    """APGR / CPT of ``router``'s strong scores on each table of ``paths``."""
    out = {}
    for path in paths:
        table = read_outcome_tables([path], models=list(pair))
        m = evaluate_scores(router.strong_score(list(table.prompts)), table.outcomes[:, 0],
                            table.outcomes[:, 1])
        out[path.stem] = {"apgr": m.apgr, "cpt50": m.cpt[0.5], "cpt80": m.cpt[0.8],
                          "prompts": len(table.prompts)}
    return out


def _transfer() -> dict[str, dict]:
    embedder = load_embedder("default")
    chat_router = train_router([CHAT], None, weak=CHAT_PAIR[0], strong=CHAT_PAIR[1],
                               embedder_from=embedder)  # in memory only, never saved
    exam_router = train_router(EXAMS, None, options=EXAM_DEFAULTS, embedder_from=embedder)
    return {"chat -> exams": _score(chat_router, EXAMS, EXAM_PAIR),
            "exams -> chat": _score(exam_router, [CHAT], CHAT_PAIR)}


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{100 * v:.1f}%"


def _markdown(result: dict) -> str:
    lines = []
    for seed, rows in result["cv"].items():
        lines += [f"\n5-fold CV on the chat table, folds of seed {seed} (mean ± std over folds)\n",
                  "| method | APGR | CPT(50%) | CPT(80%) |", "|---|---|---|---|"]
        lines += [f"| {name} | {r['apgr']['mean']:.3f} ± {r['apgr']['std']:.3f} | "
                  f"{_pct(r['cpt50']['mean'])} ± {100 * r['cpt50']['std']:.1f} | "
                  f"{_pct(r['cpt80']['mean'])} |" for name, r in rows.items()]
    lines += ["\nTransfer (trained on all of one side, scored on all of the other)\n",
              "| direction | scored on | APGR | CPT(50%) | CPT(80%) |", "|---|---|---|---|---|"]
    for direction, tables in result["transfer"].items():
        lines += [f"| {direction} | {name} ({r['prompts']}) | {r['apgr']:.3f} | "
                  f"{_pct(r['cpt50'])} | {_pct(r['cpt80'])} |" for name, r in tables.items()]
    return "\n".join(lines)


def main() -> None:
    if not CHAT.is_file():
        sys.exit(f"no chat table at {CHAT}")
    result = {"pair": {"chat": CHAT_PAIR, "exams": EXAM_PAIR},
              "preference_defaults": PREFERENCE_DEFAULTS,
              "cv": {str(seed): _cv_rows(seed) for seed in (0, 1)},
              "transfer": _transfer()}
    OUT.write_text(json.dumps(result, indent=1) + "\n")
    print(_markdown(result))


if __name__ == "__main__":
    main()
