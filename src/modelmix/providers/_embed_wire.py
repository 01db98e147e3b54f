"""Reading an OpenAI-format embeddings answer (``{"data": [{"index", "embedding"}],
"usage": {...}}``) into an :class:`~modelmix.providers.base.EmbeddingResult`."""

from __future__ import annotations

import base64
from typing import Any

import numpy as np
import orjson

from modelmix.errors import UpstreamUnavailable
from modelmix.protocol import estimate_tokens
from modelmix.providers.base import EmbeddingResult

__all__ = ["read_embeddings"]


def read_embeddings(raw: bytes, texts: list[str], deployment: str) -> EmbeddingResult:
    """The vectors of ``raw`` in input order (by ``index``), and its prompt tokens; when
    the upstream reports no usage, an estimate (~4 characters per token, marked
    ``tokens_counted=False``). Raises UpstreamUnavailable for anything but one vector
    per input."""
    try:
        payload = orjson.loads(raw)
        items = sorted(payload["data"], key=lambda d: int(d.get("index", 0)))
        vectors = [_vector(item["embedding"]) for item in items]
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise UpstreamUnavailable(f"{deployment}: upstream sent an invalid embeddings "
                                  f"answer: {type(exc).__name__}: {exc}"[:500],
                                  deployment=deployment) from exc
    if len(vectors) != len(texts):
        raise UpstreamUnavailable(f"{deployment}: upstream sent {len(vectors)} vectors for "
                                  f"{len(texts)} inputs", deployment=deployment)
    usage = payload.get("usage")
    tokens = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if isinstance(tokens, int) and tokens >= 0:
        return EmbeddingResult(vectors, tokens)
    return EmbeddingResult(vectors, sum(estimate_tokens(len(t)) for t in texts),
                           tokens_counted=False)


def _vector(value: Any) -> list[float]:
    """A list of floats, or base64 little-endian float32 (an upstream that ignores
    ``encoding_format: float``)."""
    if isinstance(value, str):
        floats: list[float] = np.frombuffer(base64.b64decode(value, validate=True),
                                            dtype="<f4").tolist()
        return floats
    if not isinstance(value, list) or not all(isinstance(x, (int, float)) for x in value):
        raise ValueError("embedding is neither a list of numbers nor base64")
    return [float(x) for x in value]
