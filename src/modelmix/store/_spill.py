"""The spill file: records the database refused, kept as JSONL until they can be replayed.

Appends and replays take an exclusive ``flock`` on the file (POSIX), so several
gateway processes may share one spill file; a replay empties and removes it only
after the database accepted every record.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from modelmix.store._records import UsageRecord

if sys.platform != "win32":
    import fcntl

__all__ = ["SpillFile"]

log = logging.getLogger("modelmix.store")


class SpillFile:
    """An append-only JSONL file of :class:`UsageRecord` dicts, one per line.

    Args:
        path: the file; its folder is created on first append. Lines that cannot be
            parsed back go to ``<path>.rejected`` (kept for a human, never retried).
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"SpillFile({str(self.path)!r})"

    def append(self, records: Sequence[UsageRecord]) -> None:
        """Append ``records`` durably (fsync). Raises OSError when the disk refuses."""
        if not records:
            return
        text = "".join(json.dumps(rec.to_dict(), allow_nan=True) + "\n" for rec in records)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._locked("a") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())

    def pending(self) -> bool:
        """Whether the file exists and holds anything."""
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def replay(self, write: Callable[[list[UsageRecord]], None]) -> int:
        """Give every spilled record to ``write``, then remove the file.

        ``write`` is called once with all parseable records; when it raises, the file
        is left as it was and the exception propagates. Returns the records replayed.
        """
        if not self.pending():
            return 0
        try:
            with self._locked("r+") as fh:
                records, bad = _parse(fh.read())
                if records:
                    write(records)
                if bad:
                    self._reject(bad)
                self.path.unlink()
        except FileNotFoundError:  # another process replayed it first
            return 0
        return len(records)

    def _reject(self, lines: list[str]) -> None:
        log.error("usage spill %s: %d unreadable lines moved to %s.rejected",
                  self.path, len(lines), self.path)
        with open(f"{self.path}.rejected", "a", encoding="utf-8") as rejected:
            rejected.writelines(line + "\n" for line in lines)

    @contextmanager
    def _locked(self, mode: str) -> Iterator[IO[str]]:
        """Open and lock the file; reopen when another process removed it meanwhile."""
        while True:
            fh = open(self.path, mode, encoding="utf-8")
            try:
                if sys.platform != "win32":
                    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
                if os.fstat(fh.fileno()).st_nlink > 0:
                    yield fh
                    return
            finally:
                fh.close()


def _parse(text: str) -> tuple[list[UsageRecord], list[str]]:
    records: list[UsageRecord] = []
    bad: list[str] = []
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            records.append(UsageRecord(**json.loads(line)))
        except (ValueError, TypeError):
            bad.append(line)
    return records, bad
