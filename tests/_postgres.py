"""A throwaway PostgreSQL cluster for tests, from the Debian ``postgresql`` binaries.

Without them (or psycopg) PostgreSQL tests skip, or fail when ``CI=true``.
"""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import NoReturn

import pytest

from _servers import free_port


def pg_bindir() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def unavailable(reason: str) -> NoReturn:
    message = (f"PostgreSQL tests need {reason}: apt-get install postgresql, or set "
               "MODELMIX_TEST_PG_URL to a throwaway database")
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


class Cluster:
    """A throwaway PostgreSQL cluster on a free loopback port (trust auth, fsync off)."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.root = Path(tempfile.mkdtemp(prefix="modelmix-pg-"))
        self.port = free_port()
        self.user: str | None = None
        if os.geteuid() == 0:  # initdb refuses root: run the server as the postgres user
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                unavailable("a 'postgres' system user when tests run as root")
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.user = "postgres"

    def _run(self, *args: str) -> None:
        proc = subprocess.run([str(self.bindir / args[0]), *args[1:]], user=self.user,
                              capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            log = (self.root / "log").read_text() if (self.root / "log").exists() else ""
            raise RuntimeError(f"{args[0]} failed: {proc.stdout}{proc.stderr}{log}")

    def start(self) -> str:
        data = str(self.root / "data")
        self._run("initdb", "-D", data, "-U", "postgres", "--auth=trust", "-E", "UTF8")
        opts = (f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off")
        self._run("pg_ctl", "-D", data, "-w", "-t", "60", "-l", str(self.root / "log"),
                  "-o", opts, "start")
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def stop(self) -> None:
        """Stop the server (at once, as a crash would) and delete its files; idempotent."""
        if not self.root.exists():
            return
        try:
            self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "immediate", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
