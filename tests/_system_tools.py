"""Tools called by ``tool`` steps in tests/test_systems.py (by import path)."""

from __future__ import annotations

import asyncio


def word_count(text: str) -> dict[str, int]:
    return {"words": len(text.split())}


async def slow_async(seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "done"


def explode() -> None:
    raise ValueError("kaboom")
