"""The engine: one request's life from screening to usage record, without HTTP.

:class:`ChatService` is the public embedding API: the gateway (``modelmix.server``) and
the library clients (``modelmix.Client`` / ``AsyncClient``) are thin shells over it.
It screens a request with the data guard (when a policy is set), routes it
(``modelmix.routing``), admits it against a key's budget (an :class:`Admission`), runs
it with retries, fallbacks and circuit breakers (:class:`Executor`,
:class:`CircuitBreaker`) and records it (``modelmix.store``), telling each
:class:`ServiceObserver` (metrics, tracing) as it goes.

Example::

    from modelmix.catalog import load_config
    from modelmix.engine import CallContext, ChatService
    from modelmix.protocol import ChatRequest

    service = ChatService(load_config())
    done = await service.complete(ChatRequest.model_validate(body), CallContext())
    print(done.deployment.name, done.decision.reason, done.cost_usd, done.response.text)

Layer: above ``guard`` and ``routing``, below ``server``, ``client`` and ``cli``.
"""

from modelmix.engine._breaker import BreakerState, CircuitBreaker
from modelmix.engine._cache import (
    CACHE_HEADER,
    CacheControl,
    CacheStatus,
    ResponseCache,
    parse_cache_control,
)
from modelmix.engine._contracts import SystemInfo
from modelmix.engine._embed import Embeddings, EmbeddingService
from modelmix.engine._executor import Attempt, Executor, StreamStart
from modelmix.engine._service import (
    KEPT_TEXT_CHARS,
    POLICY_FROM_CONFIG,
    Admission,
    CallContext,
    ChatService,
    Completion,
    FromConfig,
    ServiceObserver,
    StreamCompletion,
)

__all__ = [
    "CACHE_HEADER",
    "KEPT_TEXT_CHARS",
    "POLICY_FROM_CONFIG",
    "Admission",
    "Attempt",
    "BreakerState",
    "CacheControl",
    "CacheStatus",
    "CallContext",
    "ChatService",
    "CircuitBreaker",
    "Completion",
    "EmbeddingService",
    "Embeddings",
    "Executor",
    "FromConfig",
    "ResponseCache",
    "ServiceObserver",
    "StreamCompletion",
    "StreamStart",
    "SystemInfo",
    "parse_cache_control",
]
