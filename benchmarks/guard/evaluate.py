"""Evaluate the guard's detector (and plain Presidio) on the committed corpus.

    .venv/bin/python benchmarks/guard/evaluate.py                     # all systems, ~10 min
    .venv/bin/python benchmarks/guard/evaluate.py --systems modelmix  # fast check, ~10 s

Systems: ``modelmix`` (the gateway default, no neural NER), ``modelmix+ner`` (plus Presidio's
spaCy person names), ``presidio`` (plain ``AnalyzerEngine`` defaults, offline spaCy model).

Match rule: a predicted span matches a gold span when they overlap by at least one character
and their types are in the same group (:data:`GROUPS`: e.g. ``US_SSN`` and ``NATIONAL_ID`` are
both government IDs). Recall per gold type = matched gold spans / gold spans; precision per
predicted type = predictions matching some gold span / predictions, over all texts (clean ones
included). ``covered`` = share of gold characters inside matching predictions (how much a
pseudonymiser would hide). False-positive rate = clean texts with at least one prediction /
clean texts. Latency: p50/p95 of ``detect()`` wall time on texts of exactly 1,000 and 20,000
characters cut from the corpus, after a warm-up, one process, this machine.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from _report import write_report

HERE = Path(__file__).parent
Span = tuple[str, int, int]
Predict = Callable[[str], list[Span]]

GROUPS = {
    "US_SSN": "GOV_ID", "NATIONAL_ID": "GOV_ID", "PASSPORT": "GOV_ID", "DRIVER_LICENSE": "GOV_ID",
    "IBAN_CODE": "BANK", "BANK_ACCOUNT": "BANK", "API_KEY": "CREDENTIAL", "PASSWORD": "CREDENTIAL",
    "MEDICAL_RECORD_NUMBER": "HEALTH_ID", "HEALTH_PLAN_ID": "HEALTH_ID",
}
# Presidio entity type -> corpus type (generous: LOCATION counts as an address, DATE_TIME as a
# date of birth). Presidio types not listed (URL, NRP, ORGANIZATION...) are ignored.
PRESIDIO_TYPES = {
    "PERSON": "PERSON", "EMAIL_ADDRESS": "EMAIL_ADDRESS", "PHONE_NUMBER": "PHONE_NUMBER",
    "US_SSN": "US_SSN", "CREDIT_CARD": "CREDIT_CARD", "IBAN_CODE": "IBAN_CODE",
    "IP_ADDRESS": "IP_ADDRESS", "LOCATION": "ADDRESS", "DATE_TIME": "DATE_OF_BIRTH",
    "US_PASSPORT": "PASSPORT", "US_DRIVER_LICENSE": "DRIVER_LICENSE",
    "US_BANK_NUMBER": "BANK_ACCOUNT", "US_ITIN": "NATIONAL_ID", "UK_NHS": "NATIONAL_ID",
    "UK_NINO": "NATIONAL_ID", "ES_NIF": "NATIONAL_ID", "ES_NIE": "NATIONAL_ID",
    "IT_FISCAL_CODE": "NATIONAL_ID", "IN_AADHAAR": "NATIONAL_ID", "IN_PAN": "NATIONAL_ID",
    "PL_PESEL": "NATIONAL_ID", "MEDICAL_LICENSE": "DRIVER_LICENSE", "MAC_ADDRESS": "DEVICE_ID",
}
STRUCTURED = ["EMAIL_ADDRESS", "PHONE_NUMBER", "US_SSN", "CREDIT_CARD", "IBAN_CODE",
              "MEDICAL_RECORD_NUMBER"]


def group(kind: str) -> str:
    return GROUPS.get(kind, kind)


def load(path: Path) -> list[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def modelmix_system(ner: str) -> Predict:
    from modelmix.guard import load_detector

    detector = load_detector(ner=ner)  # type: ignore[arg-type]
    return lambda text: [(e.type, e.start, e.end) for e in detector.detect(text)]


def presidio_system() -> Predict:
    from modelmix.guard._presidio import build_analyzer

    analyzer = build_analyzer(defaults=True)

    def predict(text: str) -> list[Span]:
        return [(PRESIDIO_TYPES[r.entity_type], r.start, r.end)
                for r in analyzer.analyze(text, language="en")
                if r.entity_type in PRESIDIO_TYPES]

    return predict


SYSTEMS: dict[str, Callable[[], Predict]] = {
    "modelmix": lambda: modelmix_system("none"),
    "modelmix+ner": lambda: modelmix_system("presidio"),
    "presidio": presidio_system,
}


def _overlap(a: tuple[int, int], b: tuple[int, int]) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def score(rows: Sequence[dict[str, Any]], predictions: Sequence[list[Span]]) -> dict[str, Any]:
    """Per-type recall/precision/coverage, FP rate on clean texts, per-tag recall."""
    gold_n, gold_hit, covered, chars = Counter(), Counter(), Counter(), Counter()
    pred_n, pred_hit = Counter(), Counter()
    tag_n, tag_hit = Counter(), Counter()
    clean_texts = clean_flagged = 0
    misses: dict[str, list[str]] = defaultdict(list)
    for row, predicted in zip(rows, predictions, strict=True):
        gold = [(e["type"], e["start"], e["end"]) for e in row["entities"]]
        for kind, start, end in gold:
            hits = [p for p in predicted if group(p[0]) == group(kind)
                    and _overlap((p[1], p[2]), (start, end))]
            gold_n[kind] += 1
            chars[kind] += end - start
            covered[kind] += sum(_overlap((p[1], p[2]), (start, end)) for p in hits)
            for tag in row["tags"]:
                tag_n[tag] += 1
                tag_hit[tag] += bool(hits)
            if hits:
                gold_hit[kind] += 1
            elif len(misses[kind]) < 8:
                misses[kind].append(row["text"][max(0, start - 30):end + 10])
        for kind, start, end in predicted:
            pred_n[kind] += 1
            pred_hit[kind] += any(group(g[0]) == group(kind) and _overlap((start, end), g[1:])
                                  for g in gold)
        if row["label"] == "clean":
            clean_texts += 1
            clean_flagged += bool(predicted)
    types = sorted(set(gold_n) | set(pred_n))
    per_type = {t: {"gold": gold_n[t], "recall": _ratio(gold_hit[t], gold_n[t]),
                    "covered": _ratio(covered[t], chars[t]), "predicted": pred_n[t],
                    "precision": _ratio(pred_hit[t], pred_n[t])} for t in types}
    return {
        "per_type": per_type,
        "micro": {"recall": _ratio(sum(gold_hit.values()), sum(gold_n.values())),
                  "precision": _ratio(sum(pred_hit.values()), sum(pred_n.values()))},
        "structured_recall": _ratio(sum(gold_hit[t] for t in STRUCTURED),
                                    sum(gold_n[t] for t in STRUCTURED)),
        "fp_rate_clean": _ratio(clean_flagged, clean_texts),
        "clean_texts": clean_texts,
        "per_tag_recall": {t: _ratio(tag_hit[t], tag_n[t]) for t in sorted(tag_n)},
        "misses": dict(misses),
    }


def _ratio(a: float, b: float) -> float | None:
    return round(a / b, 4) if b else None


def latency(predict: Predict, texts: Sequence[str], size: int, count: int) -> dict[str, float]:
    """p50/p95 milliseconds of ``predict`` on ``count`` texts of exactly ``size`` characters.

    Wall time (``perf_counter``) and the thread's CPU time (``thread_time``): on a shared,
    busy machine the CPU time is the stable number, wall time includes waiting for a core.
    """
    joined = "\n".join(texts)
    step = max(1, (len(joined) - size) // count)
    samples = [joined[i * step:i * step + size] for i in range(count)]
    predict(samples[0])
    wall, cpu = [], []
    for sample in samples:
        begin, begin_cpu = time.perf_counter(), time.thread_time()
        predict(sample)
        wall.append((time.perf_counter() - begin) * 1000)
        cpu.append((time.thread_time() - begin_cpu) * 1000)
    wall.sort()
    cpu.sort()
    return {"p50_ms": round(statistics.median(wall), 3),
            "p95_ms": round(wall[int(len(wall) * 0.95) - 1], 3),
            "cpu_p50_ms": round(statistics.median(cpu), 3),
            "cpu_p95_ms": round(cpu[int(len(cpu) * 0.95) - 1], 3), "n": len(wall),
            "load_avg_1m": round(os.getloadavg()[0], 2)}


def run_system(name: str, rows: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, Any]:
    begin = time.perf_counter()
    predict = SYSTEMS[name]()
    load_s = time.perf_counter() - begin
    begin = time.perf_counter()
    predictions = [predict(row["text"]) for row in rows]
    elapsed = time.perf_counter() - begin
    result = score(rows, predictions)
    texts = [row["text"] for row in rows if "long" not in row["tags"]]
    result["latency"] = {"1000": latency(predict, texts, 1_000, args.latency_n),
                         "20000": latency(predict, texts, 20_000, max(10, args.latency_n // 10))}
    result["corpus_seconds"] = round(elapsed, 2)
    result["load_seconds"] = round(load_s, 2)
    print(f"{name}: structured recall {result['structured_recall']}, "
          f"FP {result['fp_rate_clean']}, p50 1k {result['latency']['1000']['p50_ms']} ms, "
          f"20k {result['latency']['20000']['p50_ms']} ms, corpus {elapsed:.1f} s", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--systems", default="modelmix,modelmix+ner,presidio")
    parser.add_argument("--corpus", type=Path, default=HERE / "corpus")
    parser.add_argument("--latency-n", type=int, default=200)
    parser.add_argument("--out", type=Path, default=HERE)
    parser.add_argument("--no-write", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="update results.json with these systems, keep the others")
    args = parser.parse_args()
    rows = load(args.corpus / "sensitive.jsonl") + load(args.corpus / "clean.jsonl")
    results = {name: run_system(name, rows, args) for name in args.systems.split(",")}
    meta = {"python": platform.python_version(), "machine": platform.processor() or
            platform.machine(), "cpus": os.cpu_count(),
            "texts": len(rows), "sensitive": sum(r["label"] == "sensitive" for r in rows),
            "clean": sum(r["label"] == "clean" for r in rows),
            "gold_entities": sum(len(r["entities"]) for r in rows)}
    if not args.no_write:
        path = args.out / "results.json"
        if args.merge and path.exists():  # keep the other systems of an earlier run
            earlier = json.loads(path.read_text("utf-8"))["systems"]
            results = {**earlier, **results}
            results = {name: results[name] for name in SYSTEMS if name in results}
        path.write_text(json.dumps({"meta": meta, "systems": results}, indent=1,
                                   ensure_ascii=False) + "\n")
        write_report(args.out / "RESULTS.md", meta, results)
    else:
        for name, result in results.items():
            print(name, json.dumps({k: v for k, v in result.items() if k != "misses"}, indent=1))
            print(json.dumps(result["misses"], indent=1, ensure_ascii=False)[:6000])


if __name__ == "__main__":
    main()
