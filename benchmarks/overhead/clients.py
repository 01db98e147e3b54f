"""Upstream HTTP client cost: aiohttp against httpx (and a bare asyncio floor).

Starts the harness's nginx upstream, then, in this process on uvloop, POSTs the fixed
chat completion body through each client, one at a time and 32 at a time, and reports
wall time and CPU time per request. The process is pinned to one CPU and nginx to
another, as in ``run.py``. Usage::

    .venv/bin/python benchmarks/overhead/clients.py --requests 20000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from run import REQUEST_BODY, Cpus, nginx_upstream

Post = Callable[[], Awaitable[bytes]]
BODY = json.dumps(REQUEST_BODY).encode()
HEADERS = {"Content-Type": "application/json", "Authorization": "Bearer sk-bench"}


async def aiohttp_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    """As modelmix's OpenAICompatProvider configures it."""
    import aiohttp
    import orjson

    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
        timeout=aiohttp.ClientTimeout(total=None),
        json_serialize=lambda o: orjson.dumps(o).decode())

    async def post() -> bytes:
        async with session.post(url, data=BODY, headers=HEADERS) as resp:
            if resp.status != 200:
                raise RuntimeError(resp.status)
            return await resp.read()

    return post, session.close


async def httpx_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    import httpx

    client = httpx.AsyncClient(timeout=None, limits=httpx.Limits(
        max_connections=None, max_keepalive_connections=256))

    async def post() -> bytes:
        resp = await client.post(url, content=BODY, headers=HEADERS)
        if resp.status_code != 200:
            raise RuntimeError(resp.status_code)
        return resp.content

    return post, client.aclose


async def bare_client(url: str) -> tuple[Post, Callable[[], Awaitable[None]]]:
    """A keep-alive pool of asyncio streams speaking just enough HTTP/1.1: the floor."""
    from urllib.parse import urlsplit

    parts = urlsplit(url)
    head = (f"POST {parts.path} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Content-Type: application/json\r\nAuthorization: Bearer sk-bench\r\n"
            f"Content-Length: {len(BODY)}\r\n\r\n").encode() + BODY
    pool: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post() -> bytes:
        conn = pool.pop() if pool else await asyncio.open_connection(
            parts.hostname, parts.port)
        reader, writer = conn
        writer.write(head)
        header = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in header.split(b"\r\n")
                      if line.lower().startswith(b"content-length:"))
        body = await reader.readexactly(length)
        pool.append(conn)
        return body

    async def close() -> None:
        for _, writer in pool:
            writer.close()

    return post, close


CLIENTS = {"aiohttp": aiohttp_client, "httpx": httpx_client, "bare-asyncio": bare_client}


async def measure(post: Post, total: int, concurrency: int) -> dict[str, float]:
    async def worker(n: int) -> None:
        for _ in range(n):
            await post()

    await asyncio.gather(*(worker(200 // concurrency + 1) for _ in range(concurrency)))
    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker(total // concurrency) for _ in range(concurrency)))
    done = total // concurrency * concurrency
    return {"wall_us_per_request": round((time.perf_counter() - wall) / done * 1e6, 1),
            "cpu_us_per_request": round((time.process_time() - cpu) / done * 1e6, 1)}


async def bench(url: str, total: int, rounds: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, factory in CLIENTS.items():
        post, close = await factory(url)
        for conc in (1, 32):
            runs = [await measure(post, total, conc) for _ in range(rounds)]
            best = min(runs, key=lambda r: r["cpu_us_per_request"])
            out[f"{name} c={conc}"] = best
            print(f"{name:<13} c={conc:<3} wall {best['wall_us_per_request']:>7} us/req"
                  f"  CPU {best['cpu_us_per_request']:>7} us/req", flush=True)
        await close()
    return out


def main() -> None:
    import uvloop

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--requests", type=int, default=20000)
    p.add_argument("--rounds", type=int, default=3, help="best of N rounds (by CPU time)")
    p.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here")
    args = p.parse_args()
    cpus = Cpus.plan(True)
    if cpus.gateway:
        os.sched_setaffinity(0, cpus.gateway)
    with tempfile.TemporaryDirectory(prefix="modelmix-clients-") as tmp, \
            nginx_upstream(Path(tmp), cpus) as upstream:
        result = uvloop.run(bench(upstream + "/chat/completions", args.requests, args.rounds))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
