"""Rebuild src/modelmix/data/demo_prompts.jsonl from ../shared/data (seeded sample).

Usage: python scripts/make_demo_prompts.py [--shared ../shared/data/routellm]
"""

from __future__ import annotations

import argparse
import csv
import json
import random
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--shared", default=str(Path(__file__).parents[2] / "shared/data/routellm"))
    parser.add_argument("--per-source", type=int, default=30)
    args = parser.parse_args()
    rng = random.Random(20261129)
    rows: list[dict[str, str]] = []
    with open(Path(args.shared) / "mmlu.csv", newline="", encoding="utf-8") as f:
        mmlu = list(csv.DictReader(f))
    for row in rng.sample(mmlu, args.per_source):
        rows.append({"source": "mmlu", "subject": row["subject"], "prompt": row["prompt"]})
    with open(Path(args.shared) / "gsm8k.csv", newline="", encoding="utf-8") as f:
        gsm = list(csv.DictReader(f))
    for row in rng.sample(gsm, args.per_source):
        rows.append({"source": "gsm8k", "subject": "math", "prompt": row["prompt"]})
    rng.shuffle(rows)
    out = Path(__file__).parents[1] / "src/modelmix/data/demo_prompts.jsonl"
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    print(f"wrote {len(rows)} prompts to {out}")


if __name__ == "__main__":
    main()
