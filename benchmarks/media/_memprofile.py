"""Where the gateway's memory goes for a request carrying a large base64 image.

Run by ``large_images.py`` (a child process, the gateway's environment): builds the
gateway's ASGI app (``create_app`` over the benchmark's catalog), enters its lifespan and
drives it on uvloop as uvicorn would, the request body arriving in 64 KiB chunks
(``http.request`` messages), the upstream being the benchmark's real aiohttp server.
After two untraced warm-up requests (lazy imports, the upstream session), ``tracemalloc``
starts and probes wrap the stages of the request path (module attributes replaced here;
``src/`` is untouched). At each probe: the memory traced, the peak since the previous
probe, and every live block of at least 1 MiB with the line that allocated it.

1. one request alone, probed at every stage: which full-size copies of the payload are
   alive at once, and the transient peaks between stages;
2. ``--concurrency`` requests at once: the peak traced memory, and the allocation sites
   (by line) when the traced memory was highest.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import gc
import json
import time
import tracemalloc
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

MASTER_KEY = "sk-bench-large-images"
CHUNK = 64 * 1024
BIG = 1 << 20
MB = 1e6


# --- driving the ASGI app ------------------------------------------------------------------


async def asgi_post(app: Any, body: bytes, on_done: Callable[[], None] | None = None
                    ) -> tuple[int, bytes]:
    """POST ``body`` to ``/v1/chat/completions`` of ``app`` in ``CHUNK``-byte messages
    (each a new bytes object, as uvicorn hands them over); (status, response body)."""
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
             "method": "POST", "scheme": "http", "path": "/v1/chat/completions",
             "raw_path": b"/v1/chat/completions", "query_string": b"", "root_path": "",
             "headers": [(b"content-type", b"application/json"),
                         (b"content-length", str(len(body)).encode()),
                         (b"authorization", f"Bearer {MASTER_KEY}".encode())],
             "client": ("127.0.0.1", 50000), "server": ("127.0.0.1", 4000)}
    sent = asyncio.Event()
    pos = 0
    status, out = 0, []

    async def receive() -> dict[str, Any]:
        nonlocal pos
        if pos < len(body):
            piece = body[pos:pos + CHUNK]
            pos += len(piece)
            await asyncio.sleep(0)  # other requests' chunks interleave, as on a socket
            return {"type": "http.request", "body": piece, "more_body": pos < len(body)}
        await sent.wait()
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            out.append(message.get("body", b""))
            if not message.get("more_body"):
                if on_done is not None:
                    on_done()
                sent.set()

    await app(scope, receive, send)
    return status, b"".join(out)


def chat_body(png: bytes, i: int = 0) -> bytes:
    body = {"model": "vision", "max_tokens": 16, "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"What does this image show? (request {i})"},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,@@"}}]}]}
    head, tail = json.dumps(body).encode().split(b"@@")
    return head + base64.b64encode(png) + tail


# --- probes ---------------------------------------------------------------------------------


Frames = tuple[tuple[str, int], ...]


def _short(frame: tuple[str, int]) -> str:
    name = frame[0]
    for cut in ("site-packages/", "/src/", "/lib/python3.11/"):
        if cut in name:
            name = name.split(cut, 1)[1]
            break
    return f"{name}:{frame[1]}"


def _where(frames: Frames) -> dict[str, str]:
    """The allocating line, and the innermost modelmix line that led to it (tracemalloc's
    raw frames run from the most recent to the oldest)."""
    frames = tuple(f for f in frames if not f[0].endswith("_memprofile.py"))  # the probes
    ours = next((f for f in frames if "/modelmix/" in f[0]), None)
    return {"line": _short(frames[0]) if frames else "?",
            "via": _short(ours) if ours else ""}


def _traces() -> list[tuple[int, int, Frames, int]]:
    """tracemalloc's live traces, raw: (domain, size, frames, total frames); much cheaper
    than building a Snapshot's Trace objects."""
    return tracemalloc._get_traces()  # type: ignore[attr-defined, no-any-return]


def _sites(top: int = 12) -> list[dict[str, Any]]:
    """Live memory grouped by (allocating line, innermost modelmix line), largest first."""
    groups: dict[tuple[str, str], list[int]] = {}
    cache: dict[Frames, tuple[str, str]] = {}
    for _, size, frames, _ in _traces():
        key = cache.get(frames)
        if key is None:
            w = _where(frames)
            key = cache[frames] = (w["line"], w["via"])
        acc = groups.setdefault(key, [0, 0, 0])
        acc[0] += size
        acc[1] += 1
        acc[2] += size >= BIG
    ranked = sorted(groups.items(), key=lambda kv: -kv[1][0])[:top]
    return [{"mb": round(size / MB, 2), "blocks": n, "big_blocks": big, "line": line,
             "via": via} for (line, via), (size, n, big) in ranked]


def _rss() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process, MB."""
    got = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            got[key] = int(value.split()[0]) * 1024 / MB
    return got["VmRSS"], got["VmHWM"]


def _reset_hwm() -> None:
    """Reset VmHWM to the current RSS (Linux >= 4.0: ``clear_refs`` 5)."""
    Path("/proc/self/clear_refs").write_text("5")


class Probe:
    """Records, at each labelled point: traced memory, the peak since the previous point,
    and the large live blocks (``detail``), or, when ``detail`` is off, only numbers, with
    allocation statistics taken whenever the traced memory reaches a new high."""

    def __init__(self, payload: int, detail: bool):
        self.payload = payload
        self.detail = detail
        self.rss_base = _rss()[0]
        self.rss_peak = 0.0
        _reset_hwm()
        self.points: list[dict[str, Any]] = []
        self.highest = 0
        self.at_highest: dict[str, Any] = {}
        self.peak = 0

    def mark(self, label: str) -> None:
        current, peak = tracemalloc.get_traced_memory()
        rss, hwm = _rss()
        self.peak = max(self.peak, peak)
        self.rss_peak = max(self.rss_peak, hwm - self.rss_base)
        if self.detail:
            blocks = sorted((t for t in _traces() if t[1] >= BIG), key=lambda t: -t[1])
            self.points.append({
                "at": label, "traced_mb": round(current / MB, 1),
                "peak_since_previous_mb": round(peak / MB, 1),
                "rss_mb": round(rss - self.rss_base, 1),
                "rss_peak_since_previous_mb": round(hwm - self.rss_base, 1),
                "blocks": [{"mb": round(t[1] / MB, 2), **_where(t[2])} for t in blocks]})
            del blocks
        elif current > self.highest * 1.05:
            self.highest = current
            self.at_highest = {"at": label, "traced_mb": round(current / MB, 1),
                               "sites": _sites()}
        tracemalloc.reset_peak()
        _reset_hwm()


def install_probes(probe_of: Callable[[], Probe | None]) -> None:
    """Wrap the request path's stages so each reports to the current probe."""
    import aiohttp
    import orjson

    import modelmix.engine._media as media_stage
    import modelmix.engine._service as service
    import modelmix.media._decode as decode
    import modelmix.providers.openai_compat as compat
    import modelmix.server._gateway as gw

    def mark(label: str) -> None:
        probe = probe_of()
        if probe is not None:
            probe.mark(label)

    def after(label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            out = fn(*a, **k)
            mark(label)
            return out
        return wrapper

    def after_async(label: str, fn: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        async def wrapper(*a: Any, **k: Any) -> Any:
            out = await fn(*a, **k)
            mark(label)
            return out
        return wrapper

    def before_and_after(before: str, label: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(*a: Any, **k: Any) -> Any:
            mark(before)
            out = fn(*a, **k)
            mark(label)
            return out
        return wrapper

    class _Orjson:  # orjson as one module sees it, with loads / dumps probed
        def __init__(self, **over: Callable[..., Any]):
            self.__dict__.update(over)

        def __getattr__(self, name: str) -> Any:
            return getattr(orjson, name)

    gw.read_body = after_async("1 read_body returned: body joined from its chunks",
                               gw.read_body)
    gw.orjson = _Orjson(loads=after("2 orjson.loads returned: body bytes + parsed JSON",
                                    orjson.loads))
    gw.validate_chat_request = after("3 validate_chat_request returned: ChatRequest",
                                     gw.validate_chat_request)
    decode.decode_base64 = before_and_after(
        "4 decode_base64 called: payload str sliced out of the data URL",
        "5 decode_base64 returned: decoded image bytes", decode.decode_base64)
    media_stage.find_media = after("6 find_media returned: MediaPart (decoded bytes)",
                                   media_stage.find_media)
    service.ChatService._decide = after_async(  # type: ignore[method-assign]
        "7 _decide returned: routed (media plan dropped)", service.ChatService._decide)
    compat.orjson = _Orjson(dumps=after("8 orjson.dumps returned: upstream body serialised",
                                        orjson.dumps))
    read = aiohttp.ClientResponse.read

    @functools.wraps(read)
    async def probed_read(self: Any) -> bytes:
        mark("9 upstream answered: request body fully sent")
        return await read(self)

    aiohttp.ClientResponse.read = probed_read  # type: ignore[method-assign]


# --- the runs -------------------------------------------------------------------------------


async def profile(args: argparse.Namespace) -> dict[str, Any]:
    import numpy as np
    from PIL import Image

    from modelmix.catalog import load_config
    from modelmix.server import create_app

    png = Path(args.image).read_bytes()
    tiny = _tiny_png(np, Image, args.seed)
    app = create_app(load_config(args.catalog))
    current: list[Probe | None] = [None]
    install_probes(lambda: current[0])
    payload = len(base64.b64encode(png))
    async with app.router.lifespan_context(app):
        for body in (chat_body(tiny), chat_body(png)):  # untraced warm-up
            status, answer = await asgi_post(app, body)
            assert status == 200, (status, answer[:300])
        cpu = await cpu_profile(app, png)
        single_body = chat_body(png)
        bodies = [chat_body(png, i) for i in range(args.concurrency)]
        gc.collect()
        tracemalloc.start(args.frames)
        base = tracemalloc.get_traced_memory()[0]
        single = current[0] = Probe(payload, detail=True)
        tracemalloc.reset_peak()
        status, _ = await asgi_post(app, single_body,
                                    on_done=lambda: single.mark("10 response sent"))
        assert status == 200
        current[0] = None
        gc.collect()
        single.mark("11 after the request (gc.collect)")
        many = current[0] = Probe(payload, detail=False)
        tracemalloc.reset_peak()
        t0 = time.perf_counter()
        statuses = await asyncio.gather(*(asgi_post(app, b) for b in bodies))
        took = time.perf_counter() - t0
        current[0] = None
        many.mark("after")
        tracemalloc.stop()
    assert all(s == 200 for s, _ in statuses), [s for s, _ in statuses]
    return {"png_bytes": len(png), "base64_bytes": payload, "body_bytes": len(single_body),
            "chunk_bytes": CHUNK, "traced_at_start_mb": round(base / MB, 1), "cpu": cpu,
            "single": {"points": single.points, "peak_traced_mb": round(single.peak / MB, 1),
                       "peak_rss_mb": round(single.rss_peak, 1)},
            "concurrent": {"requests": args.concurrency, "seconds": round(took, 2),
                           "peak_traced_mb": round(many.peak / MB, 1),
                           "peak_rss_mb": round(many.rss_peak, 1),
                           "at_highest": many.at_highest}}


async def cpu_profile(app: Any, png: bytes, n: int = 5) -> dict[str, Any]:
    """Wall time of ``n`` requests one after another (untraced), then one under cProfile:
    the functions with the most own time."""
    import cProfile
    import pstats

    walls = []
    for i in range(n):
        body = chat_body(png, i)
        t0 = time.perf_counter()
        await asgi_post(app, body)
        walls.append((time.perf_counter() - t0) * 1000)
    body = chat_body(png, n)
    prof = cProfile.Profile()
    prof.enable()
    await asgi_post(app, body)
    prof.disable()
    stats = pstats.Stats(prof)
    rows = sorted(stats.stats.items(), key=lambda kv: -kv[1][2])[:12]  # type: ignore[attr-defined]
    return {"sequential_ms": [round(w, 1) for w in walls],
            "median_ms": round(sorted(walls)[n // 2], 1),
            "top_own_time": [{"ms": round(tt * 1000, 1), "calls": nc,
                              "function": f"{_short((file, line))}({name})"}
                             for (file, line, name), (_, nc, tt, _, _) in rows]}


def _tiny_png(np: Any, image: Any, seed: int) -> bytes:
    import io

    out = io.BytesIO()
    pixels = np.random.default_rng(seed + 1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


def report(result: dict[str, Any]) -> None:
    payload = result["base64_bytes"]
    cpu = result["cpu"]
    print(f"  one request at a time, in-process: median {cpu['median_ms']} ms "
          f"({cpu['sequential_ms']}); own time under cProfile:")
    for row in cpu["top_own_time"][:8]:
        print(f"        {row['ms']:7.1f} ms  {row['calls']:6d} calls  {row['function']}")
    print(f"  one request, payload {payload / MB:.1f} MB base64 "
          f"({result['png_bytes'] / MB:.1f} MB decoded):")
    for p in result["single"]["points"]:
        live = sum(b["mb"] for b in p["blocks"])
        print(f"    {p['at'][:64]:<64} traced {p['traced_mb']:6.1f} (peak before "
              f"{p['peak_since_previous_mb']:6.1f}) RSS +{p['rss_mb']:6.1f} (peak before "
              f"{p['rss_peak_since_previous_mb']:6.1f}); >=1 MiB blocks {live:6.1f} MB")
        for b in p["blocks"]:
            print(f"        {b['mb']:7.2f} MB  {b['line']}  (via {b['via']})")
    c = result["concurrent"]
    print(f"  {c['requests']} at once: peak traced {c['peak_traced_mb']} MB, peak RSS "
          f"+{c['peak_rss_mb']} MB; at the highest probe ({c['at_highest'].get('at')}, "
          f"{c['at_highest'].get('traced_mb')} MB traced):")
    for s in c["at_highest"].get("sites", [])[:8]:
        print(f"        {s['mb']:8.2f} MB in {s['blocks']:5d} blocks ({s['big_blocks']} >= 1 MiB)"
              f"  {s['line']}  (via {s['via']})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    p.add_argument("--catalog", required=True)
    p.add_argument("--image", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--concurrency", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=60)
    args = p.parse_args()
    import uvloop

    result = uvloop.run(profile(args))
    report(result)
    Path(args.out).write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
