"""Word lists shipped in ``modelmix/guard/data`` (sources in each file's first line and in
``data/NOTICE.md``), loaded once per process and never modified."""

from __future__ import annotations

from functools import cache
from importlib import resources

__all__ = ["load_words"]


@cache
def load_words(name: str) -> frozenset[str]:
    """The lower-cased entries of ``data/<name>.txt`` (``#`` lines are comments)."""
    text = resources.files("modelmix.guard").joinpath("data", f"{name}.txt").read_text("utf-8")
    return frozenset(line.strip().lower() for line in text.splitlines()
                     if line.strip() and not line.startswith("#"))
