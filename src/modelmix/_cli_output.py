"""Where the command line writes: tables to stdout, messages to stderr, and one way to fail.

Every ``modelmix`` command reports bad input as a single ``error: ...`` line on stderr and
exits with status 2 (1 for failures that are not the caller's input), never a traceback.
"""

from __future__ import annotations

import sys
from typing import NoReturn

import typer
from rich.console import Console
from rich.text import Text

__all__ = ["console", "err_console", "fail"]

#: Tables and results (160 columns when piped, so logs stay readable).
console = Console(width=None if sys.stdout.isatty() else 160)
#: Messages, warnings and errors.
err_console = Console(stderr=True)


def fail(message: str, code: int = 2, label: str = "error") -> NoReturn:
    """Print ``label: message`` to stderr (``message`` is not read as markup) and exit.

    Raises:
        typer.Exit: always, with ``code``.
    """
    err_console.print(Text.assemble((f"{label}:", "red"), " ", message), soft_wrap=True,
                      highlight=False)
    raise typer.Exit(code)
