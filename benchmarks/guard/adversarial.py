"""Score the guard's detector on the evasion corpus (``corpus/adversarial.jsonl``).

    .venv/bin/python benchmarks/guard/make_adversarial.py   # regenerate the corpus (seeded)
    .venv/bin/python benchmarks/guard/adversarial.py        # score, write adversarial.json and
                                                            # the adversarial part of RESULTS.md
    PYTHONPATH=/tmp/old/src .venv/bin/python benchmarks/guard/adversarial.py \\
        --label "before" --merge                            # add another build as a column

Recall per category: gold spans matched by a prediction of the same type group that overlaps
them (the rule of ``evaluate.py``). Decoy false positives: decoy texts with at least one
prediction that matches no gold span (a decoy's only gold spans are IP addresses).
"""

from __future__ import annotations

import argparse
import json
import platform
from collections import Counter
from pathlib import Path
from typing import Any

from evaluate import group, load

HERE = Path(__file__).parent
BEGIN, END = "<!-- adversarial: begin -->", "<!-- adversarial: end -->"


def _matches(prediction: tuple[str, int, int], gold: dict[str, Any]) -> bool:
    kind, start, end = prediction
    return group(kind) == group(gold["type"]) and min(end, gold["end"]) > max(start,
                                                                               gold["start"])


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    from modelmix.guard import load_detector

    detector = load_detector()
    gold_n, gold_hit, texts, flagged = Counter(), Counter(), Counter(), Counter()
    misses: dict[str, list[str]] = {}
    false_positives: dict[str, list[str]] = {}
    for row in rows:
        category, text = row["category"], row["text"]
        predicted = [(e.type, e.start, e.end) for e in detector.detect(text)]
        texts[category] += 1
        for gold in row["entities"]:
            gold_n[category] += 1
            if any(_matches(p, gold) for p in predicted):
                gold_hit[category] += 1
            elif len(misses.setdefault(category, [])) < 5:
                misses[category].append(text[:160])
        extra = [p for p in predicted if not any(_matches(p, g) for g in row["entities"])]
        if row["label"] == "clean" and extra:
            flagged[category] += 1
            if len(false_positives.setdefault(category, [])) < 5:
                false_positives[category].append(
                    f"{text[:120]} -> {[(k, text[s:e]) for k, s, e in extra]}")
    sensitive = sorted({r["category"] for r in rows if r["label"] == "sensitive"},
                       key=[r["category"] for r in rows].index)
    decoys = sorted({r["category"] for r in rows if r["label"] == "clean"},
                    key=[r["category"] for r in rows].index)
    return {
        "recall": {c: {"texts": texts[c], "gold": gold_n[c], "found": gold_hit[c],
                       "recall": round(gold_hit[c] / gold_n[c], 4)} for c in sensitive},
        "decoys": {c: {"texts": texts[c], "flagged": flagged[c],
                       "fp_rate": round(flagged[c] / texts[c], 4)} for c in decoys},
        "micro_recall": round(sum(gold_hit[c] for c in sensitive)
                              / sum(gold_n[c] for c in sensitive), 4),
        "decoy_fp_rate": round(sum(flagged[c] for c in decoys)
                               / sum(texts[c] for c in decoys), 4),
        "misses": misses,
        "false_positives": false_positives,
    }


def report(meta: dict[str, Any], systems: dict[str, Any]) -> list[str]:
    names = list(systems)
    first = systems[names[0]]
    lines = [BEGIN, "",
             f"Corpus: {meta['sensitive']} evasion texts ({meta['gold']} gold values) in "
             f"{len(first['recall'])} categories, {meta['clean']} decoy texts in "
             f"{len(first['decoys'])} categories; seed {meta['seed']}.", "",
             "| system | recall (all evasions) | decoy texts flagged |", "| --- | --- | --- |"]
    for name, result in systems.items():
        lines.append(f"| {name} | {result['micro_recall']:.3f} | {result['decoy_fp_rate']:.3f} |")
    lines += ["", "| evasion | gold | " + " | ".join(f"{n} recall" for n in names) + " |",
              "|" + " --- |" * (2 + len(names))]
    for category, row in first["recall"].items():
        cells = [f"{systems[n]['recall'].get(category, {}).get('recall', 0):.3f}" for n in names]
        lines.append(f"| {category} | {row['gold']} | " + " | ".join(cells) + " |")
    lines += ["", "| decoy | texts | " + " | ".join(f"{n} flagged" for n in names) + " |",
              "|" + " --- |" * (2 + len(names))]
    for category, row in first["decoys"].items():
        cells = [f"{systems[n]['decoys'].get(category, {}).get('flagged', 0)}" for n in names]
        lines.append(f"| {category} | {row['texts']} | " + " | ".join(cells) + " |")
    return [*lines, "", END]


def _write(args: argparse.Namespace, meta: dict[str, Any], systems: dict[str, Any]) -> None:
    path = HERE / "adversarial.json"
    if args.merge and path.exists():
        earlier = json.loads(path.read_text("utf-8"))["systems"]
        systems = {**earlier, **systems}
    path.write_text(json.dumps({"meta": meta, "systems": systems}, indent=1,
                               ensure_ascii=False) + "\n", "utf-8")
    results = HERE / "RESULTS.md"
    text = results.read_text("utf-8")
    head, _, rest = text.partition(BEGIN)
    _, _, tail = rest.partition(END)
    if not rest:
        raise SystemExit(f"{results} has no {BEGIN} marker")
    results.write_text(head + "\n".join(report(meta, systems)) + tail, "utf-8")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus" / "adversarial.jsonl")
    parser.add_argument("--label", default="modelmix", help="column name for this build")
    parser.add_argument("--merge", action="store_true",
                        help="keep the other columns of adversarial.json")
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = load(args.corpus)
    result = score(rows)
    meta = {"python": platform.python_version(), "texts": len(rows), "seed": 20261201,
            "sensitive": sum(r["label"] == "sensitive" for r in rows),
            "clean": sum(r["label"] == "clean" for r in rows),
            "gold": sum(len(r["entities"]) for r in rows if r["label"] == "sensitive")}
    print(f"{args.label}: recall {result['micro_recall']}, decoy FP {result['decoy_fp_rate']}")
    for category, row in result["recall"].items():
        print(f"  {category:28} {row['recall']:.3f}  ({row['found']}/{row['gold']})")
    for category, row in result["decoys"].items():
        print(f"  {category:28} FP {row['flagged']}/{row['texts']}")
    print(json.dumps({"misses": result["misses"], "false_positives": result["false_positives"]},
                     indent=1, ensure_ascii=False)[:6000])
    if not args.no_write:
        _write(args, meta, {args.label: result})


if __name__ == "__main__":
    main()
