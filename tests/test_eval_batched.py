"""Held-out scoring runs in batches of SCORE_BATCH prompts, in order, with progress."""

from __future__ import annotations

from collections.abc import Sequence

from modelmix.eval import PairTable
from modelmix.eval._run import SCORE_BATCH, EvalOptions, batched, run_eval


def _table(n: int) -> PairTable:
    return PairTable(name="t", prompts=tuple(f"prompt {i} " + "x" * (i % 50) for i in range(n)),
                     weak=tuple(float(i % 2) for i in range(n)),
                     strong=tuple(float(i % 3 != 0) for i in range(n)),
                     weak_model="w", strong_model="s")


def test_held_out_scoring_is_batched_with_progress_and_same_results() -> None:
    n = SCORE_BATCH + 904
    table = _table(n)
    calls: list[int] = []

    def scorer(prompts: Sequence[str]) -> list[float]:
        calls.append(len(prompts))
        return [len(p) / 100 for p in prompts]

    progress: list[tuple[int, int]] = []
    report, = run_eval([table], options=EvalOptions(), scorer=scorer,
                       on_batch=lambda done, total: progress.append((done, total)))
    assert calls == [SCORE_BATCH, n - SCORE_BATCH]
    assert progress == [(SCORE_BATCH, n), (n, n)]
    whole, = run_eval([table], options=EvalOptions(),
                      scorer=lambda ps: [len(p) / 100 for p in ps])
    assert report.methods["router"] == whole.methods["router"]


def test_batched_keeps_order() -> None:
    score = batched(lambda ps: [float(p) for p in ps], size=3)
    assert score([str(i) for i in range(8)]) == [float(i) for i in range(8)]
    assert score([]) == []
