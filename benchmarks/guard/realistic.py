"""Realistic check set for issue 9 items 6 and 7: generate it, score the guard on it.

    .venv/bin/python benchmarks/guard/realistic.py            # regenerate, score, update RESULTS.md
    .venv/bin/python benchmarks/guard/realistic.py --no-write # score and print only

Writes ``corpus/realistic.jsonl`` (seeded, identical on every run; same row format as the
main corpus) from the hand-written lists in ``_realistic.py``, then runs the default
detector (``load_detector()``) over it and reports, between the ``realistic`` markers of
RESULTS.md:

* clean medical questions (no individual): share with any entity (false positives) and share
  classed ``regulated`` (what the healthcare policy would keep off cloud models);
* per class (tag): recall of the gold values (a prediction of the same type group overlapping
  the gold span), and for person-tied health texts the share classed ``regulated``.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import string
from collections import Counter
from pathlib import Path
from typing import Any

import _realistic as R
from _doc import Doc
from evaluate import group

HERE = Path(__file__).parent
BEGIN, END = "<!-- realistic: begin -->", "<!-- realistic: end -->"
_SLOT = re.compile(r"\{(\w+)\}|<(\w+)>")
_TYPES = {"SSN": "US_SSN", "PLAN": "HEALTH_PLAN_ID", "NAME": "PERSON", "PHONE": "PHONE_NUMBER",
          "DRUG": "MEDICATION", "COND": "MEDICAL_CONDITION"}


def _fill(template: str, values: dict[str, str], tag: str) -> Doc:
    doc = Doc()
    doc.tags.add(tag)
    pos = 0
    for match in _SLOT.finditer(template):
        doc.add(template[pos:match.start()])
        slot = match.group(1) or match.group(2)
        if match.group(1):
            doc.add_entity(_TYPES[slot], values[slot])
        else:
            doc.add(values[slot])
        pos = match.end()
    return doc.add(template[pos:])


def _ssn(rng: random.Random, spaced: bool) -> str:
    area = rng.choice([rng.randint(1, 899), rng.randint(900, 999), rng.randint(1, 665)])
    digits = f"{area:03d}{rng.randint(1, 99):02d}{rng.randint(1, 9999):04d}"
    return " ".join(digits) if spaced else f"{digits[:3]} {digits[3:5]} {digits[5:]}"


def _plan(rng: random.Random, shape: int) -> str:
    alnum = string.ascii_uppercase + string.digits
    if shape == 0:  # "XGH882716354": three letters and nine digits
        value = "".join(rng.choices(string.ascii_uppercase, k=3)) + "".join(
            rng.choices(string.digits, k=rng.choice((8, 9))))
    elif shape == 1:  # "W2837461950"
        value = rng.choice(string.ascii_uppercase) + "".join(rng.choices(string.digits, k=10))
    elif shape == 2:  # mostly letters, one or two digits late: "ZQXMRTBWK4LP"
        value = "".join(rng.choices(string.ascii_uppercase, k=rng.choice((9, 10))))
        value += str(rng.randint(1, 99))
    else:  # mixed, 8-14
        value = "".join(rng.choices(alnum, k=rng.randint(8, 14)))
    if not any(c.isdigit() for c in value):
        value = value[:-1] + str(rng.randint(0, 9))
    return value


def _phone(rng: random.Random, region: str) -> str:
    import phonenumbers

    prefixes, lengths = R.PHONE_PREFIXES[region]
    for _ in range(1000):
        value = rng.choice(prefixes)
        value += "".join(rng.choices(string.digits, k=rng.choice(lengths) - len(value)))
        parsed = phonenumbers.parse(value, region)
        if phonenumbers.is_valid_number(parsed):
            return value
    raise ValueError(f"no valid {region} number from {prefixes}")


def _name(rng: random.Random, lang: str, form: str) -> str:
    given, family = R.NAMES[lang]
    name = f"{rng.choice(given)} {rng.choice(family)}" if form != "given" else rng.choice(given)
    return name.lower() if form == "lower" else name


_TIED_NAMES = ["John Smith", "Maria Keller", "Ahmed Rahman", "Grace Okafor", "Tomasz Nowak"]


def _terms(rng: random.Random) -> dict[str, str]:
    drug, drug2 = rng.sample(R.DRUGS, 2)
    cond, cond2 = rng.sample(R.CONDITIONS, 2)
    return {"drug": drug, "drug2": drug2, "cond": cond, "cond2": cond2,
            "DRUG": rng.choice(R.DRUGS), "COND": rng.choice(R.CONDITIONS)}


def build(seed: int = 20260915) -> list[dict[str, Any]]:
    """The check set: every template, filled twice (clean) or in each form (sensitive)."""
    rng = random.Random(seed)
    docs: list[tuple[Doc, str]] = []
    for template in R.CLEAN_EN + R.CLEAN_INTL:
        docs += [(_fill(template, _terms(rng), "clean_medical"), "clean") for _ in range(2)]
    docs += [(_fill(t, {}, "clean_near_cue"), "clean") for t in R.CLEAN_OTHER]
    for template in R.TIED:
        for _ in range(3):
            values = {**_terms(rng), "NAME": rng.choice(_TIED_NAMES)}
            docs.append((_fill(template, values, "health_tied"), "sensitive"))
    for template in R.SSN:
        docs += [(_fill(template, {"SSN": _ssn(rng, spaced)}, "ssn_spaced"), "sensitive")
                 for spaced in (True, False)]
    for template, lang in R.MEMBER:
        docs += [(_fill(template, {"PLAN": _plan(rng, shape)}, f"member_id:{lang}"), "sensitive")
                 for shape in rng.sample(range(4), 2)]
    for lang, templates in R.INTRO.items():
        for template in templates:
            docs += [(_fill(template, {"NAME": _name(rng, lang, form)}, f"intro_name:{lang}"),
                      "sensitive") for form in ("full", "lower")]
        docs.append((_fill(templates[0], {"NAME": _name(rng, lang, "given")},
                           f"intro_name:{lang}"), "sensitive"))
    for template, region in R.PHONE:
        docs += [(_fill(template, {"PHONE": _phone(rng, region)}, f"phone_run:{region}"),
                  "sensitive") for _ in range(2)]
    return [doc.record(f"real-{i:04d}", label) for i, (doc, label) in enumerate(docs)]


def score(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Recall per class tag, false positives and ``regulated`` share on clean texts."""
    from modelmix.guard import DataClass, load_detector

    detector = load_detector()
    gold_n, gold_hit, texts, flagged, regulated = (Counter[str]() for _ in range(5))
    misses: dict[str, list[str]] = {}
    for row in rows:
        found = detector.detect(row["text"])
        tag = row["tags"][0]
        family = tag.split(":")[0]
        texts[tag] += 1
        texts[family] += tag != family
        is_regulated = detector.classify(found) is DataClass.REGULATED
        for key in {tag, family}:
            flagged[key] += bool(found)
            regulated[key] += is_regulated
        for gold in row["entities"]:
            hit = any(group(e.type) == group(gold["type"]) and e.start < gold["end"]
                      and e.end > gold["start"] for e in found)
            for key in {tag, family}:
                gold_n[key] += 1
                gold_hit[key] += hit
            if not hit:
                misses.setdefault(family, []).append(row["text"])
    return {"texts": dict(texts), "gold": dict(gold_n), "found": dict(gold_hit),
            "flagged": dict(flagged), "regulated": dict(regulated),
            "misses": {k: v[:10] for k, v in misses.items()}}


def _pct(a: int, b: int) -> str:
    return f"{a / b:.3f} ({a}/{b})" if b else "-"


def report(result: dict[str, Any]) -> list[str]:
    texts, gold, found = result["texts"], result["gold"], result["found"]
    flagged, regulated = result["flagged"], result["regulated"]
    lines = [BEGIN, "", "| texts | n | any entity found | classed regulated |",
             "| --- | --- | --- | --- |"]
    for tag in ("clean_medical", "clean_near_cue"):
        lines.append(f"| {tag} | {texts[tag]} | {_pct(flagged[tag], texts[tag])} | "
                     f"{_pct(regulated[tag], texts[tag])} |")
    lines += ["", "| class | gold values | recall | classed regulated |",
              "| --- | --- | --- | --- |"]
    families = ["ssn_spaced", "member_id", "intro_name", "phone_run", "health_tied"]
    for tag in sorted(gold, key=lambda t: (families.index(t.split(":")[0]), t)):
        lines.append(f"| {tag} | {gold[tag]} | {_pct(found.get(tag, 0), gold[tag])} | "
                     f"{_pct(regulated.get(tag, 0), texts[tag])} |")
    return [*lines, "", END]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = build()
    path = HERE / "corpus" / "realistic.jsonl"
    if not args.no_write:
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    result = score(rows)
    body = report(result)
    print("\n".join(body[1:-1]))
    print(json.dumps(result["misses"], indent=1, ensure_ascii=False)[:8000])
    if not args.no_write:
        results = HERE / "RESULTS.md"
        text = results.read_text("utf-8")
        head, _, rest = text.partition(BEGIN)
        _, _, tail = rest.partition(END)
        if not rest:
            raise SystemExit(f"{results} has no {BEGIN} marker")
        results.write_text(head + "\n".join(body) + tail, "utf-8")


if __name__ == "__main__":
    main()
