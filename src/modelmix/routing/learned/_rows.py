"""Reading table rows and prompts from CSV/TSV, JSON/JSONL and text files (the standard
library only), for :mod:`._tables`: every reader raises :class:`RouterDataError` in one
line naming the file."""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from modelmix.errors import ModelmixError

__all__ = ["RouterDataError", "prompt_of", "read_prompts", "read_rows"]

_JSONL_SUFFIXES = frozenset({".jsonl", ".ndjson", ".json"})


class RouterDataError(ModelmixError):
    """A prompt or outcome file cannot be used (missing, empty, wrong column, bad value)."""

    status_code = 400
    error_type = "invalid_request_error"


def _csv_rows(path: Path) -> Iterator[dict[str, Any]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    with path.open(newline="", encoding="utf-8-sig") as fh:
        dialect = csv.excel_tab if path.suffix.lower() == ".tsv" else csv.excel
        reader = csv.DictReader(fh, dialect=dialect)
        header = reader.fieldnames or []
        twice = sorted({c for c in header if header.count(c) > 1})
        if twice:  # DictReader would keep only the last of them, silently
            raise RouterDataError(f"{path}: column name(s) {twice} appear more than once "
                                  "in the header")
        for lineno, row in enumerate(reader, 1):
            if None in row:  # more cells than the header names
                raise RouterDataError(f"{path}: row {lineno} has more cells than the header "
                                      f"({len(header)} columns)")
            yield row


def _json_rows(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8-sig") as fh:
        text = fh.read()
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RouterDataError(f"{path}: not valid JSON ({exc.msg})") from None
        yield from (_as_object(path, i + 1, row) for i, row in enumerate(data))
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise RouterDataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            yield _as_object(path, lineno, row)


def _as_object(path: Path, lineno: int, row: Any) -> dict[str, Any]:
    if not isinstance(row, dict):
        raise RouterDataError(f"{path}:{lineno}: expected a JSON object per row")
    return row


def read_rows(path: Path | str) -> list[dict[str, Any]]:
    """All rows of a CSV/TSV or JSON/JSONL file as dicts.

    Raises:
        RouterDataError: the file is missing, unreadable or has no rows.
    """
    path = Path(path)
    _check_file(path)
    try:
        rows = list(_json_rows(path) if path.suffix.lower() in _JSONL_SUFFIXES
                    else _csv_rows(path))
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise RouterDataError(f"{path}: cannot read ({exc})") from None
    if not rows:
        hint = ""
        if path.suffix.lower() not in _JSONL_SUFFIXES and path.stat().st_size > 0:
            hint = " below the header line (an unclosed double quote joins all lines into one)"
        raise RouterDataError(f"{path}: no rows{hint}")
    return rows


def _prompt_text(value: Any) -> str:
    """A prompt cell as text: strings as they are; an OpenAI ``messages`` list as its last
    user message (what the gateway routes on); anything else as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and all(isinstance(m, dict) for m in value):
        users = [m.get("content") for m in value if m.get("role", "user") == "user"]
        if users and isinstance(users[-1], str):
            return users[-1]
    return json.dumps(value)


def read_prompts(path: Path | str, *, prompt_column: str = "prompt") -> list[str]:
    """The prompts of a file, in file order: the ``prompt_column`` of a CSV/TSV/JSONL/JSON
    file, or every line of a ``.txt`` file.

    Raises:
        RouterDataError: missing file, no rows, or a row without ``prompt_column``.
    """
    path = Path(path)
    if path.suffix.lower() == ".txt":
        return _text_lines(path)
    return [prompt_of(row, prompt_column, where=f"{path}: row {i}", hint="; use --prompt-column")
            for i, row in enumerate(read_rows(path), 1)]


def prompt_of(row: dict[str, Any], column: str, *, where: str, hint: str = "") -> str:
    """The prompt text of a table row, as the gateway routes on it: a string as it is,
    an OpenAI ``messages`` list as its last user message, anything else as JSON.

    Raises:
        RouterDataError: the row has no such column, or its cell is null (a missing CSV
            cell): more likely a broken file than a prompt. ``""`` is a valid prompt.
    """
    if column not in row:
        cols = ", ".join(map(str, row)) or "none"
        raise RouterDataError(f"{where} has no column {column!r} (columns: {cols}){hint}")
    value = row[column]
    if value is None:
        raise RouterDataError(f"{where}: {column!r} is empty (null or a missing CSV cell)")
    return _prompt_text(value)


def _check_file(path: Path) -> None:
    """Raise RouterDataError unless ``path`` is a regular file, saying what it is instead."""
    if path.is_file():
        return
    if path.is_dir():
        raise RouterDataError(f"{path}: is a directory, not a file")
    if path.exists():
        raise RouterDataError(f"{path}: not a regular file")
    raise RouterDataError(f"no such file: {path}")


def _text_lines(path: Path) -> list[str]:
    _check_file(path)
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise RouterDataError(f"{path}: cannot read ({exc})") from None
    if not lines:
        raise RouterDataError(f"{path}: no lines")
    return lines
