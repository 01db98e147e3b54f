"""What each feature group of the learned verifier is worth on GSM8K (RESULTS.md).

    .venv/bin/python benchmarks/cascade/features.py     # ~1 min -> features.json

Every row is the cascade evaluation of ``modelmix cascade eval`` (5-fold CV by prompt,
seed 0, the same folds; no router): the arithmetic verifier alone, then the learned
verifier on the answer features only, on answer + prompt lexical features (the shipped
setting), and with a weaker and a stronger L2 penalty.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from modelmix.eval._cascade import (
    VerifierScorer,
    fixed_scores,
    learned_scores,
    load_cascade_table,
    run_cascade_eval,
)
from modelmix.routing.cascade import ArithmeticVerifier, VerifierFitOptions

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data" / "routellm" / "gsm8k.csv"
OUT = Path(__file__).resolve().parent / "features.json"

ROWS: dict[str, tuple[str, VerifierScorer]] = {
    "arithmetic": ("arithmetic verifier alone (score = share of failed checks)",
                   fixed_scores(ArithmeticVerifier())),
    "answer-only": ("learned, answer features only (C=0.1)",
                    learned_scores(VerifierFitOptions(prompt_features=False))),
    "shipped": ("learned, answer + prompt lexical features (C=0.1, shipped)",
                learned_scores(VerifierFitOptions())),
    "c0.01": ("learned, answer + prompt, C=0.01", learned_scores(VerifierFitOptions(c=0.01))),
    "c1": ("learned, answer + prompt, C=1", learned_scores(VerifierFitOptions(c=1.0))),
}


def main() -> None:
    table = load_cascade_table(DATA)
    results = {}
    for key, (label, scorer) in ROWS.items():
        start = time.perf_counter()
        report = run_cascade_eval(table, scorer, verifier=label, folds=5, seed=0)
        cascade = report.methods["cascade"]
        results[key] = {"label": label, "apgr": cascade.apgr.to_dict(),
                        "cpt50": cascade.cpt[0.5].to_dict(), "cpt80": cascade.cpt[0.8].to_dict(),
                        "auc": report.verifier_metrics["auc"].to_dict()}
        print(f"{key:12s} APGR {cascade.apgr.fmt()}  CPT(50%) "
              f"{cascade.cpt[0.5].fmt(100, 1, '%')}  AUC {report.verifier_metrics['auc'].fmt()}"
              f"  ({time.perf_counter() - start:.0f} s)", flush=True)
    OUT.write_text(json.dumps({"data": DATA.name, "protocol": "5-fold CV by prompt, seed 0",
                               "rows": results}, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
