"""How the learned router's CV metrics grow with the number of training prompts.

    .venv/bin/python benchmarks/router/learning_curve.py    # ~2 min on 2 cores

The shipped learner as re-implemented in ``subject_ceiling.py`` (``dense`` mode, within
0.002 of the package's numbers), trained per fold on a random fraction of the training
folds (seeded by fold) and scored on the full test fold. Writes ``learning_curve.json``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np
from subject_ceiling import STRONG, WEAK, Setup, cross_validate_method, method

HERE = Path(__file__).resolve().parent
FRACTIONS = (0.25, 0.5, 0.75, 1.0)


def main() -> None:
    s = Setup()
    score = method(s, "dense")
    results: dict[str, Any] = {}
    for frac in FRACTIONS:
        def subsampled(train: np.ndarray, test: np.ndarray, frac: float = frac) -> np.ndarray:
            rng = np.random.default_rng(int(np.flatnonzero(test)[0]))
            return score(train & (rng.random(len(train)) < frac), test)

        r = cross_validate_method(s.bench.table, s.bench.fold, WEAK, STRONG, subsampled)
        rows = round(frac * float(np.mean([(s.bench.fold != k).sum() for k in range(5)])))
        results[str(frac)] = {"training_rows": rows, **r}
        print(f"{frac:.2f} (~{rows} rows): " + " | ".join(
            f"{b} APGR {r[b]['apgr']['mean']:.3f} ± {r[b]['apgr']['std']:.3f}, CPT(50%) "
            f"{100 * r[b]['cpt50']['mean']:.1f}" for b in ("mmlu", "gsm8k")),
            file=sys.stderr, flush=True)
    (HERE / "learning_curve.json").write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
