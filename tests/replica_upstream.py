"""The fixed OpenAI-compatible upstream of the multi-replica tests, as a process of its own.

It is :class:`faulty_upstream.FaultyUpstream` (the same wire code the reliability tests
use) run standalone, with two changes:

* ``usage`` is exact and fixed: ``prompt_tokens`` is a constant (``--prompt-tokens``) and
  ``completion_tokens`` is the request's ``max_tokens`` (``--completion-tokens`` when the
  request sends none), so a gateway's reservation bound (``max_tokens x output price``
  with a zero input price) equals the cost it settles, to the token;
* control routes, so that tests in another process can steer it and count its calls:

  - ``GET /stats``: ``{"count": chat requests since the last reset, "models": {...}}``;
  - ``POST /control`` ``{"fail": 500 | null, "delay_s": 0.05}``: from now on every chat
    request fails with that status (``null``: answers), after ``delay_s`` seconds;
  - ``POST /reset``: count from zero, answer normally, no delay.

Run it with ``python tests/replica_upstream.py``; it listens on a free loopback port and
prints ``PORT <n>`` as its first line once it does, and serves until SIGTERM / SIGINT.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from faulty_upstream import (
    Fault,
    FaultyUpstream,
    Received,
    _Request,
    _send_json,
)

__all__ = ["FixedUpstream"]

#: Received requests kept for inspection (the count is kept apart, without a bound).
_KEEP = 1000


class FixedUpstream(FaultyUpstream):
    """A :class:`FaultyUpstream` with exact usage and HTTP control routes."""

    def __init__(self, name: str = "fixed", *, prompt_tokens: int = 7,
                 completion_tokens: int = 5) -> None:
        super().__init__(name, prompt_tokens=prompt_tokens)
        self.completion_tokens = completion_tokens
        self.hits = 0
        self.models: dict[str, int] = {}

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        prompt = int(self.prompt_tokens) if not callable(self.prompt_tokens) else 0
        done = int(body.get("max_tokens") or body.get("max_completion_tokens")
                   or self.completion_tokens)
        return {"prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}

    def _take(self, body: dict[str, Any], raw: bytes = b"") -> Received:
        rec = super()._take(body)
        with self._log.lock:
            self.hits += 1
            model = str(body.get("model"))
            self.models[model] = self.models.get(model, 0) + 1
            if len(self._log.received) > _KEEP:
                del self._log.received[: _KEEP // 2]
        return rec

    def _control(self, body: dict[str, Any]) -> dict[str, Any]:
        fail, delay = body.get("fail"), float(body.get("delay_s") or 0.0)
        if fail is not None:
            self.default = Fault.error(int(fail))
        elif delay > 0:
            self.default = Fault.hang(delay)
        else:
            self.default = Fault.ok()
        return {"fail": fail, "delay_s": delay}

    def _reset(self) -> None:
        with self._log.lock:
            self.hits = 0
            self.models = {}
        self.clear()

    async def _dispatch(self, request: _Request, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> bool:
        if request.path == "/stats":
            with self._log.lock:
                stats = {"count": self.hits, "models": dict(self.models)}
            await _send_json(writer, 200, stats)
            return True
        if request.method == "POST" and request.path == "/control":
            await _send_json(writer, 200, self._control(json.loads(request.body or b"{}")))
            return True
        if request.method == "POST" and request.path == "/reset":
            self._reset()
            await _send_json(writer, 200, {"count": 0})
            return True
        return await super()._dispatch(request, reader, writer)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description="fixed OpenAI-compatible upstream")
    p.add_argument("--prompt-tokens", type=int, default=7)
    p.add_argument("--completion-tokens", type=int, default=5)
    args = p.parse_args(argv)
    upstream = FixedUpstream(prompt_tokens=args.prompt_tokens,
                             completion_tokens=args.completion_tokens)
    upstream.start()
    print(f"PORT {upstream.port}", flush=True)
    done = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: done.set())
    done.wait()
    upstream.stop()


if __name__ == "__main__":
    main()
