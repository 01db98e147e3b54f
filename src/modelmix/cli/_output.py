"""Where the command line writes: tables to stdout, messages to stderr, and one way to fail.

Every ``modelmix`` command reports bad input as a single ``error: ...`` line on stderr and
exits with status 2 (1 for failures that are not the caller's input), never a traceback.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, NoReturn, TextIO

import typer
from rich.console import Console
from rich.text import Text

from modelmix.catalog import Config, config_from_env
from modelmix.errors import ConfigError, ModelmixError

__all__ = ["ConfigOpt", "catalog_warnings_printed", "check_out_dir", "config_or_fail",
           "console", "err_console", "fail", "plain", "scores_out"]

#: Tables and results (160 columns when piped, so logs stay readable).
console = Console(width=None if sys.stdout is not None and sys.stdout.isatty() else 160)
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


def plain(*cells: str) -> tuple[Text, ...]:
    """Table cells as plain text: rich would read ``[local]`` in
    ``pip install 'modelmix[local]'`` (or a model name, a route reason, an error from an
    upstream) as markup and drop it."""
    return tuple(Text(cell) for cell in cells)


def check_out_dir(path: Path, option: str = "--out") -> None:
    """Create the output directory ``path`` now, before any long computation, or say
    why it cannot be used.

    Raises:
        ConfigError: ``path`` is a file, cannot be created, or is not writable.
    """
    try:
        path.mkdir(parents=True, exist_ok=True)
    except FileExistsError as exc:
        raise ConfigError(f"{option} {path}: exists and is not a directory") from exc
    except OSError as exc:
        raise ConfigError(f"{option} {path}: cannot create the directory: "
                          f"{exc.strerror or exc}") from exc
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{option} {path}: directory is not writable")


#: The ``--config`` option every command takes.
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="YAML catalog (default: $MODELMIX_CONFIG or the "
                 "embedded default).", exists=False),
]


def config_or_fail(path: Path | None) -> Config:
    """The catalog at ``path``, else ``$MODELMIX_CONFIG``, else the embedded default; a
    bad one is a one-line error and exit status 2."""
    try:
        with catalog_warnings_printed():
            return config_from_env(path)
    except ConfigError as exc:
        fail(exc.message)


class _WarningLines(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        err_console.print(Text.assemble(("warning:", "yellow"), " ", record.getMessage()),
                          soft_wrap=True, highlight=False)


@contextmanager
def catalog_warnings_printed() -> Iterator[None]:
    """Print what the catalog logs while loading (a LiteLLM config's unmapped settings,
    docs/litellm.md) as ``warning: ...`` lines on stderr, each once, before the command
    has set up logging."""
    logger = logging.getLogger("modelmix.catalog")
    handler, propagate = _WarningLines(logging.WARNING), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


@contextmanager
def scores_out() -> Iterator[TextIO]:
    """stdout for a command that prints one score per line (``router score``, ``cascade
    score``): a ModelmixError inside is a one-line error (exit 2); a reader that stops
    early (``| head``) ends the command quietly; a failing stdout is exit 1."""
    try:
        out = sys.stdout
        if out is None:  # started with stdout closed (`>&-`)
            fail("cannot write the scores: standard output is closed", code=1)
        yield out
        out.flush()
    except ModelmixError as exc:
        fail(exc.message)
    except BrokenPipeError:  # the reader has all it wants
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise typer.Exit(0) from None
    except OSError as exc:  # stdout itself failed (a full disk, a closed descriptor)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        fail(f"cannot write the scores: {exc.strerror or exc}", code=1)
