"""``modelmix guard ...``: run the sensitive-data detector outside the gateway.

Examples::

    modelmix guard scan --input texts.jsonl > found.jsonl     # JSONL with a "text" field
    modelmix guard scan --input notes.txt                      # one text per line
    cat texts.jsonl | modelmix guard scan --input -

Each input text gives one output line, in order::

    {"class": "regulated", "entities": [{"type": "US_SSN", "start": 4, "end": 15}]}

``start``/``end`` are character offsets (Python ``str`` indices, end exclusive) into the text.
"""

from __future__ import annotations

import itertools
import json
import sys
from collections.abc import Iterator
from enum import StrEnum
from pathlib import Path
from typing import Annotated, TextIO

import typer

from modelmix.cli._output import fail as _fail

__all__ = ["guard_app"]

guard_app = typer.Typer(help="Sensitive-data detection: scan texts for PII/PHI/secrets.",
                        no_args_is_help=True)


class InputFormat(StrEnum):
    AUTO = "auto"
    JSONL = "jsonl"
    LINES = "lines"


class NerOption(StrEnum):
    NONE = "none"
    PRESIDIO = "presidio"




def _looks_like_jsonl(path: Path | None, first: str) -> bool:
    if path is not None and path.suffix.lower() in (".jsonl", ".ndjson"):
        return True
    return first.lstrip().startswith("{")


def _jsonl_texts(lines: Iterator[tuple[int, str]], field: str, source: str) -> Iterator[str]:
    for number, line in lines:
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            _fail(f"{source}:{number}: not valid JSON ({exc.msg}); use --format lines for "
                  "plain text")
        if not isinstance(record, dict) or not isinstance(record.get(field), str):
            _fail(f"{source}:{number}: expected an object with a string {field!r} field")
        yield record[field]


def _texts(handle: TextIO, path: Path | None, fmt: InputFormat, field: str) -> Iterator[str]:
    """The texts of ``handle``, one per JSONL record or per line."""
    source = str(path) if path else "<stdin>"
    numbered = ((n, line.rstrip("\r\n")) for n, line in enumerate(handle, start=1))
    first = next(numbered, None)
    if first is None:
        return
    use_jsonl = fmt is InputFormat.JSONL or (
        fmt is InputFormat.AUTO and _looks_like_jsonl(path, first[1]))
    lines = itertools.chain([first], numbered)
    if use_jsonl:
        yield from _jsonl_texts(lines, field, source)
    else:
        yield from (line for _, line in lines)


@guard_app.command()
def scan(
    input_path: Annotated[str, typer.Option(
        "--input", "-i", help="File to scan: JSONL with a text field, or plain text, one text "
        "per line; '-' reads standard input.")],
    fmt: Annotated[InputFormat, typer.Option(
        "--format", help="auto: JSONL when the file ends in .jsonl or its first line starts "
        "with '{'.")] = InputFormat.AUTO,
    field: Annotated[str, typer.Option(help="JSONL field holding the text.")] = "text",
    ner: Annotated[NerOption, typer.Option(
        help="presidio adds Presidio + spaCy person names (slower).")] = NerOption.NONE,
) -> None:
    """Print one JSON object per input text: its data class and entity spans."""
    from modelmix.errors import ModelmixError
    from modelmix.guard import load_detector

    path = None if input_path == "-" else Path(input_path)
    if path is not None and not path.is_file():
        _fail(f"{input_path}: " + ("is a directory, not a file" if path.is_dir() else
                                   "not a regular file" if path.exists() else "no such file"))
    try:
        detector = load_detector(ner="presidio" if ner is NerOption.PRESIDIO else "none")
    except ModelmixError as exc:
        _fail(exc.message)
    try:
        handle = sys.stdin if path is None else path.open(encoding="utf-8-sig")
    except OSError as exc:
        _fail(f"{input_path}: {exc.strerror or exc}")
    out = sys.stdout
    try:
        with handle:
            for text in _texts(handle, path, fmt, field):
                entities = detector.detect(text)
                record = {"class": detector.classify(entities).value,
                          "entities": [{"type": e.type, "start": e.start, "end": e.end}
                                       for e in entities]}
                out.write(json.dumps(record) + "\n")
    except UnicodeDecodeError as exc:
        _fail(f"{input_path}: not UTF-8 text ({exc.reason} at byte {exc.start})")
    out.flush()


def _register_policy() -> None:
    from modelmix.cli._audit import policy  # data policies (docs/guard.md)

    guard_app.command("policy")(policy)


_register_policy()
