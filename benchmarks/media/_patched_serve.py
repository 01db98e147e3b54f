"""Experiments only: ``modelmix serve`` with changes proposed in RESULTS.md applied from
outside (``src/`` is untouched), to measure what they would save before anyone writes them.

    python _patched_serve.py --patch stream-upstream --patch budget=64 -- serve --config ...

- ``budget=<MB>``: a budget of request-body bytes in flight. A chat request takes its
  ``Content-Length`` from the budget before its body is read and gives it back when its
  answer is ready; requests over budget wait with their bodies unread (in the kernel's
  socket buffers and the client, not in the gateway). One body larger than the whole
  budget still passes alone.
- ``stream-upstream``: the openai-compatible adapter serialises the request without its
  large data URLs (placeholders), then streams the JSON pieces and the data URLs, encoded
  in 1 MiB slices, with an explicit ``Content-Length``: no full-size ``orjson.dumps``
  output (which reserves about 10x its size) and no header + body join in aiohttp.

``large_images.py --patch ...`` starts the gateway through this file.
"""

from __future__ import annotations

import asyncio
import itertools
import sys
from collections.abc import AsyncIterator
from typing import Any

SLICE = 1 << 20
#: Data URLs longer than this are streamed instead of serialised with the rest.
LARGE = 1 << 16


class ByteBudget:
    """At most ``capacity`` bytes held at once; ``hold(n)`` waits for room (one request
    larger than the budget passes when nothing else is held)."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.used = 0
        self._cond = asyncio.Condition()

    async def acquire(self, n: int) -> int:
        n = min(n, self.capacity)
        async with self._cond:
            await self._cond.wait_for(lambda: self.used + n <= self.capacity)
            self.used += n
        return n

    async def release(self, n: int) -> None:
        async with self._cond:
            self.used -= n
            self._cond.notify_all()


def patch_budget(megabytes: float) -> None:
    from starlette.requests import Request
    from starlette.responses import Response

    from modelmix.server import _gateway

    original = _gateway.Gateway.chat_completions
    budgets: dict[int, ByteBudget] = {}  # one per event loop (created lazily on it)

    async def chat_completions(self: Any, request: Request) -> Response:
        budget = budgets.setdefault(id(asyncio.get_running_loop()),
                                    ByteBudget(int(megabytes * 1e6)))
        try:
            size = int(request.headers.get("content-length") or 0)
        except ValueError:
            size = 0
        held = await budget.acquire(size)
        try:
            return await original(self, request)
        finally:
            await budget.release(held)

    _gateway.Gateway.chat_completions = chat_completions  # type: ignore[method-assign]


def _split_large(body: dict[str, Any]) -> list[str]:
    """Replace every long, plain-ASCII image data URL in ``body`` by a placeholder; the
    URLs in order."""
    urls: list[str] = []
    for msg in body.get("messages", []):
        content = msg.get("content") if isinstance(msg, dict) else None
        if not isinstance(content, list):
            continue
        for part in content:
            image = part.get("image_url") if isinstance(part, dict) else None
            url = image.get("url") if isinstance(image, dict) else None
            # the service decoded every data URL strictly before (find_media): past its
            # header it is base64, which JSON carries as it is
            if isinstance(url, str) and len(url) > LARGE and url.isascii() and (
                    url[:256].isprintable() and not ('"' in url[:256] or "\\" in url[:256])):
                image["url"] = f"@@media-{len(urls)}@@"
                urls.append(url)
    return urls


async def _pieces(head: list[bytes], urls: list[str]) -> AsyncIterator[bytes]:
    for i, piece in enumerate(head):
        yield piece
        if i < len(urls):
            url = urls[i]
            for start in range(0, len(url), SLICE):
                yield url[start:start + SLICE].encode("ascii")


def patch_stream_upstream() -> None:
    import orjson

    from modelmix.errors import UpstreamUnavailable
    from modelmix.protocol import ChatResponse
    from modelmix.providers import openai_compat as oc

    async def complete(self: Any, request: Any) -> Any:
        body = request.to_upstream(self.deployment.model)
        body["stream"] = False
        body.pop("stream_options", None)
        urls = _split_large(body)
        text = orjson.dumps(body)
        head = [text]
        for i in range(len(urls)):
            head[-1:] = head[-1].split(f"@@media-{i}@@".encode(), 1)
        length = sum(map(len, head)) + sum(map(len, urls))
        headers = {**self._headers(), "Content-Length": str(length)}
        with oc._translate(self.deployment.name):
            async with self._client().post(self._url, data=_pieces(head, urls),
                                           headers=headers) as resp:
                if resp.status != 200:
                    await self._raise_for(resp)
                raw = await resp.read()
        try:
            return ChatResponse.model_validate(orjson.loads(raw))
        except ValueError as exc:
            raise UpstreamUnavailable(f"{self.deployment.name}: invalid completion: {exc}"[:500],
                                      deployment=self.deployment.name) from exc

    oc.OpenAICompatProvider.complete = complete  # type: ignore[method-assign]


def main() -> None:
    argv = sys.argv[1:]
    cut = argv.index("--")
    for patch in (a for flag, a in itertools.pairwise(argv[:cut]) if flag == "--patch"):
        if patch.startswith("budget="):
            patch_budget(float(patch.split("=", 1)[1]))
        elif patch == "stream-upstream":
            patch_stream_upstream()
        else:
            raise SystemExit(f"unknown patch {patch!r}")
    from modelmix.cli import main as cli

    sys.argv = ["modelmix", *argv[cut + 1:]]
    cli()


if __name__ == "__main__":
    main()
