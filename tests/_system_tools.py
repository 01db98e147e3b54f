"""Tools called by ``tool`` steps in tests/test_systems.py (by import path)."""

from __future__ import annotations

import asyncio
import threading


def word_count(text: str) -> dict[str, int]:
    return {"words": len(text.split())}


async def slow_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def explode() -> None:
    raise ValueError("kaboom")


#: Set to let :func:`block` return (tests of stuck sync tools).
RELEASE = threading.Event()


def block() -> str:
    RELEASE.wait(timeout=10)
    return "released"
