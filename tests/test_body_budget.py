"""Large request bodies are admitted against a byte budget (server.max_inflight_body_bytes,
server/_bodies.py): bursts of big images wait unread instead of piling up in memory. A
real gateway over a recording upstream that answers slowly, on loopback."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from _servers import serve_app
from faulty_upstream import Fault, FaultyUpstream
from modelmix.catalog import config_from_dict
from modelmix.engine import ChatService
from modelmix.server import create_app
from modelmix.server._bodies import SMALL_BODY, BodyBudget
from modelmix.testing import ListSink


def _big_png() -> str:
    """A real PNG of ~1.5 MB incompressible pixels: over SMALL_BODY as base64."""
    import io
    import os

    from PIL import Image

    img = Image.frombytes("RGB", (700, 700), os.urandom(700 * 700 * 3))
    out = io.BytesIO()
    img.save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture(scope="module")
def up() -> Iterator[FaultyUpstream]:
    with FaultyUpstream("vision") as started:
        yield started


def _app(up: FaultyUpstream, budget: int, body_timeout_s: float = 30.0) -> Any:
    up.clear()
    cfg = config_from_dict({
        "deployments": [{"name": "vision", "provider": "openai-compatible", "base_url": up.url,
                         "model": "m", "input_modalities": ["text", "image"]}],
        "reliability": {"num_retries": 0},
        "server": {"max_inflight_body_bytes": budget, "body_timeout_s": body_timeout_s}})
    return create_app(service=ChatService(cfg, usage=ListSink()))


def _body(image: str, stream: bool = False) -> dict[str, Any]:
    return {"model": "vision", "stream": stream, "messages": [{"role": "user", "content": [
        {"type": "text", "text": "look"}, {"type": "image_url", "image_url": {"url": image}}]}]}


async def _post_all(url: str, bodies: list[dict[str, Any]]) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=60) as client:
        return list(await asyncio.gather(*(
            client.post(url + "/v1/chat/completions", json=b) for b in bodies)))


def _overlap(up: FaultyUpstream, hold_s: float) -> int:
    """Most upstream calls that were in progress at once (each lasts ``hold_s``)."""
    starts = sorted(r.at for r in up.received)
    return max(sum(1 for t in starts if s <= t < s + hold_s * 0.9) for s in starts)


@pytest.mark.parametrize("stream", [False, True])
def test_large_bodies_wait_for_room(up: FaultyUpstream, stream: bool) -> None:
    image = _big_png()
    size = len(image)
    assert size > SMALL_BODY
    app = _app(up, budget=size + size // 2)  # room for one body, not two
    up.script(*[Fault.hang(0.4)] * 3)
    with serve_app(app) as url:
        responses = asyncio.run(_post_all(url, [_body(image, stream)] * 3))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert up.count == 3 and _overlap(up, 0.4) == 1  # one at a time, none refused


def test_small_bodies_are_not_counted(up: FaultyUpstream) -> None:
    app = _app(up, budget=SMALL_BODY + 1)
    up.script(*[Fault.hang(0.4)] * 3)
    small = {"model": "vision", "messages": [{"role": "user", "content": "hi"}]}
    with serve_app(app) as url:
        responses = asyncio.run(_post_all(url, [small] * 3))
    assert [r.status_code for r in responses] == [200, 200, 200]
    assert _overlap(up, 0.4) == 3


def test_a_body_waiting_too_long_gets_503(up: FaultyUpstream) -> None:
    image = _big_png()
    app = _app(up, budget=len(image) + 10, body_timeout_s=0.5)
    up.script(Fault.hang(2.0))
    with serve_app(app) as url:
        responses = asyncio.run(_post_all(url, [_body(image)] * 2))
    codes = sorted(r.status_code for r in responses)
    assert codes == [200, 503]
    busy = next(r for r in responses if r.status_code == 503).json()["error"]
    assert busy["code"] == "server_busy" and "retry later" in busy["message"]


async def test_budget_is_first_come_first_served_and_never_leaks() -> None:
    budget = BodyBudget(10 * SMALL_BODY)
    first = await budget.hold(8 * SMALL_BODY, fallback=0, timeout_s=1)
    order: list[str] = []

    async def take(name: str, size: int) -> None:
        hold = await budget.hold(size, fallback=0, timeout_s=5)
        order.append(name)
        await asyncio.sleep(0.01)
        hold.release()

    waiting = [asyncio.create_task(take("big", 9 * SMALL_BODY)),
               asyncio.create_task(take("small", 2 * SMALL_BODY))]
    await asyncio.sleep(0.05)
    assert order == []  # the small one fits but waits behind the big one
    first.release()
    first.release()  # idempotent
    await asyncio.gather(*waiting)
    assert order == ["big", "small"] and budget.used == 0
    hold = await budget.hold(5 * SMALL_BODY, fallback=0, timeout_s=1)
    cancelled = asyncio.create_task(budget.hold(10 * SMALL_BODY, fallback=0, timeout_s=5))
    await asyncio.sleep(0.01)  # it waits for room
    cancelled.cancel()  # the client left while waiting
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    hold.release()
    assert budget.used == 0 and not budget._waiting
