"""Train the shipped default router (``src/modelmix/data/router/default``).

    .venv/bin/python benchmarks/router/build_default.py      # ~3 min on 2 cores

The same as ``modelmix router train --data data/routellm/mmlu.csv data/routellm/gsm8k.csv
--out src/modelmix/data/router/default --cv 5`` with the learner chosen in RESULTS.md, then
the calibrated targets (``balanced``: 30% strong calls, the default; ``frugal``: 10%;
``quality``: PGR 0.8) set on the **out-of-fold** scores of that cross-validation, as
``modelmix router calibrate`` would on data the router never saw: in-sample scores of its
own training prompts are overconfident (APGR ~1.0 in-sample against 0.68 under CV), so
thresholds set on them would not hold on new traffic. The static embedding table comes from
``benchmarks/.work/router/embedder-<dim>`` when ``distill.py`` made one, else from the
artifact already shipped (so a rebuild needs no torch).

Since issue 15 the artifact also carries the task-type prior
(``modelmix.routing.learned._prior``, docs/decisions/0013): prompts outside the exam format
the heads were trained on are scored by task type. The manifest's ``cv_metrics`` and the
calibration are computed on the out-of-fold scores **with the prior applied**, i.e. for the
router as shipped (only GSM8K prompts the gate misses change: 18 of 1,046).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from modelmix.catalog import load_config
from modelmix.cli._router_calibrate import run_calibration
from modelmix.metrics import cross_validate_sources
from modelmix.routing._calibration import Target
from modelmix.routing.learned import (
    FitOptions,
    LearnedPredictor,
    StaticEmbedder,
    artifact_size,
    default_artifact_dir,
    load_embedder,
    read_outcome_tables,
    train_router,
)
from modelmix.routing.learned._prior import TaskPrior
from modelmix.routing.learned._train import assign_folds

ROOT = Path(__file__).resolve().parents[2]
DATA = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
#: The learner RESULTS.md picked (best CV mean APGR on MMLU).
SHIPPED = FitOptions(learner="logreg", c=0.001, tokens=True, structure=True)
#: name -> (target kind, value); the first is the default.
TARGETS = {"balanced": ("strong-share", 0.3), "frugal": ("strong-share", 0.1),
           "quality": ("min-pgr", 0.8)}


def train_shipped(out: Path | None, embedder: StaticEmbedder,
                  progress: Any = None) -> LearnedPredictor:
    """The shipped router: trained with :data:`SHIPPED` and 5-fold CV, the task-type prior
    set, and ``cv_scores`` / ``cv_metrics`` recomputed with the prior applied to the
    out-of-fold scores (saved to ``out`` when given)."""
    router = train_router(DATA, None, options=SHIPPED, embedder_from=embedder, cv_folds=5,
                          progress=progress)
    assert router.cv_scores is not None and router.weak_model and router.strong_model
    prior = router.prior = TaskPrior()
    table = read_outcome_tables(DATA)
    scores = np.array(router.cv_scores, dtype=np.float64)
    for i in np.flatnonzero(prior.outside(table.prompts)):
        scores[i] = prior.strong_need(table.prompts[i])
    w = table.model_names.index(router.weak_model)
    s = table.model_names.index(router.strong_model)
    datasets = cross_validate_sources(table.sources, table.outcomes[:, w],
                                      table.outcomes[:, s], assign_folds(table, 5, 0),
                                      lambda _train, test: scores[test])
    router.cv_scores = scores
    router.manifest["cv_metrics"] = {
        **router.manifest["cv_metrics"], "datasets": datasets,
        "prior": "task-type prior applied to the out-of-fold scores of prompts outside "
                 "its gate (the router as shipped)"}
    if out is not None:
        router.save(out)
    return router


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--out", type=Path, default=default_artifact_dir())
    args = parser.parse_args()
    distilled = ROOT / "benchmarks" / ".work" / "router" / f"embedder-{args.dim}"
    embedder = (StaticEmbedder.load(distilled) if (distilled / "embeddings.npz").exists()
                else load_embedder("default"))
    start = time.perf_counter()

    def progress(stage: str, done: int, total: int) -> None:
        print(f"{time.perf_counter() - start:6.0f} s  {stage} {done}/{total}", flush=True)

    router = train_shipped(args.out, embedder, progress)
    print(f"wrote {args.out} ({artifact_size(args.out) / 1e6:.1f} MB)")
    assert router.cv_scores is not None
    (args.out / "calibration.json").unlink(missing_ok=True)
    for i, (name, (kind, value)) in enumerate(TARGETS.items()):
        run = run_calibration(router=str(args.out), data=DATA, target=Target(kind, value),
                              name=name, config=load_config(), make_default=i == 0,
                              scores=router.cv_scores.tolist())
        r = run.result
        print(f"{name}: {kind}={value:g} -> threshold {r.threshold:.4f}, strong share "
              f"{r.strong_share:.1%}, PGR {r.pgr:.3f} (out-of-fold)")
    for name, m in router.manifest["cv_metrics"]["datasets"].items():
        print(f"{name}: APGR {m['apgr']['mean']:.3f} ± {m['apgr']['std']:.3f}, CPT(50%) "
              f"{100 * m['cpt50']['mean']:.1f} ± {100 * m['cpt50']['std']:.1f}%")


if __name__ == "__main__":
    main()
