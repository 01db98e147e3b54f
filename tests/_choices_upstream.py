"""A recording OpenAI-compatible upstream that answers ``n`` choices and ``logprobs``, as
OpenAI does, or ignores ``n`` as some compatible servers do (``honour_n=False``).

Choice ``i`` replies ``"choice <i> of <name>"``; with ``logprobs: true`` each word is a
token with logprob ``-0.1 * (position + 1)`` and ``top_logprobs`` alternatives
``alt<k>`` at ``logprob - k``. Streams send the choices' chunks interleaved (word 0 of
every choice, then word 1...), as OpenAI does. Every request body is kept in
``received`` (:class:`faulty_upstream.FaultyUpstream`).
"""

from __future__ import annotations

import json
import time
from typing import Any

from faulty_upstream import FaultyUpstream

__all__ = ["ChoicesUpstream"]


class ChoicesUpstream(FaultyUpstream):
    def __init__(self, name: str = "up", *, honour_n: bool = True, prompt_tokens: int = 7):
        super().__init__(name, prompt_tokens=prompt_tokens)
        self.honour_n = honour_n

    def _n(self, body: dict[str, Any]) -> int:
        return int(body.get("n") or 1) if self.honour_n else 1

    def _words(self, i: int) -> list[str]:
        return f"choice {i} of {self.name}".split(" ")

    @staticmethod
    def _logprobs(tokens: list[str], top: int) -> dict[str, Any]:
        content = []
        for pos, token in enumerate(tokens):
            lp = round(-0.1 * (pos + 1), 3)
            content.append({"token": token, "logprob": lp, "bytes": list(token.encode()),
                            "top_logprobs": [{"token": token if k == 0 else f"alt{k}",
                                              "logprob": lp - k, "bytes": None}
                                             for k in range(top)]})
        return {"content": content, "refusal": None}

    def _usage(self, body: dict[str, Any]) -> dict[str, int]:
        done = sum(len(self._words(i)) for i in range(self._n(body)))
        prompt = int(self.prompt_tokens) if not callable(self.prompt_tokens) else 0
        return {"prompt_tokens": prompt, "completion_tokens": done,
                "total_tokens": prompt + done}

    def _completion(self, body: dict[str, Any]) -> dict[str, Any]:
        choices = []
        for i in range(self._n(body)):
            words = self._words(i)
            tokens = [w if k == 0 else " " + w for k, w in enumerate(words)]
            choices.append({
                "index": i, "finish_reason": "stop",
                "message": {"role": "assistant", "content": "".join(tokens)},
                "logprobs": (self._logprobs(tokens, int(body.get("top_logprobs") or 0))
                             if body.get("logprobs") else None)})
        return {"id": "chatcmpl-choices", "object": "chat.completion",
                "created": int(time.time()), "model": body.get("model", self.name),
                "choices": choices, "usage": self._usage(body)}

    def _events(self, body: dict[str, Any]) -> list[bytes]:
        base = {"id": "chatcmpl-choices", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model", self.name)}
        top = int(body.get("top_logprobs") or 0)

        def event(i: int, delta: dict[str, Any], finish: str | None = None,
                  logprobs: Any = None) -> bytes:
            item = {"index": i, "delta": delta, "finish_reason": finish, "logprobs": logprobs}
            return json.dumps({**base, "choices": [item]}).encode()

        n = self._n(body)
        events = [event(i, {"role": "assistant", "content": ""}) for i in range(n)]
        words = self._words(0)  # every choice has as many words
        for k in range(len(words)):
            for i in range(n):
                token = self._words(i)[k] if k == 0 else " " + self._words(i)[k]
                lp = self._logprobs([token], top) if body.get("logprobs") else None
                events.append(event(i, {"content": token}, logprobs=lp))
        events += [event(i, {}, "stop") for i in range(n)]
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append(json.dumps({**base, "choices": [],
                                      "usage": self._usage(body)}).encode())
        events.append(b"[DONE]")
        return events
