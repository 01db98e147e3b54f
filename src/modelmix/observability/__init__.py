"""Observability: request logs, Prometheus metrics and OpenTelemetry traces.

Each part observes the engine (:class:`~modelmix.engine.ServiceObserver`, usage sinks,
ASGI middleware) and changes nothing it sees. See docs/observability.md.

Layer: above ``engine``, below ``server`` and ``cli``.
"""

from modelmix.observability._logging import (
    REQUEST_LOGGER,
    LogFormat,
    PromptLogger,
    RequestLogSink,
    configure_logging,
)
from modelmix.observability._metrics import instrument
from modelmix.observability._tracing import Tracing, TracingMiddleware

__all__ = [
    "REQUEST_LOGGER",
    "LogFormat",
    "PromptLogger",
    "RequestLogSink",
    "Tracing",
    "TracingMiddleware",
    "configure_logging",
    "instrument",
]
