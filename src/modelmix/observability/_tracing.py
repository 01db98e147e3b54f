"""OpenTelemetry tracing, only when configured: nothing here imports OpenTelemetry until a
:class:`Tracing` is built.

:meth:`Tracing.from_env` builds one when ``OTEL_EXPORTER_OTLP_ENDPOINT`` (or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) is set, or ``OTEL_TRACES_EXPORTER`` names ``otlp`` or
``console``; ``OTEL_SDK_DISABLED=true`` or ``OTEL_TRACES_EXPORTER=none`` turn it off. It
needs the ``otel`` extra (``pip install 'modelmix[otel]'``).

Spans follow the OpenTelemetry GenAI semantic conventions (development status):

- one SERVER span per chat request, ``chat {requested model}``, from :class:`TracingMiddleware`
  (parent taken from an incoming ``traceparent``), with ``gen_ai.operation.name``,
  ``gen_ai.request.model``, ``gen_ai.response.model`` (the serving deployment's model id),
  ``gen_ai.provider.name``, ``gen_ai.usage.input_tokens`` / ``output_tokens``,
  ``modelmix.deployment``, ``modelmix.route_reason``, ``modelmix.request_id``,
  ``modelmix.cost_usd``, ``modelmix.attempts``, and ``error.type`` plus ERROR status on failure;
- one CLIENT child span per upstream attempt, ``chat {deployment model}``, with the model the
  upstream reported, its token counts and finish reasons, or the error class;
- for a system of models, the request span is named ``chat system/{name}`` and gets
  ``modelmix.system``; each step's record (``parent_id`` set) gets an INTERNAL span
  ``step {step}``, a child of the span current when the record is reported (the request's
  span), back-dated to the step's start, with ``modelmix.system``, ``modelmix.step``,
  ``modelmix.parent_id``, ``modelmix.verdict`` and the step's own tokens and cost.

Example::

    tracing = Tracing.from_env(os.environ)      # None when not configured
    if tracing is not None:
        tracing.instrument(service)             # request attributes + attempt spans
        app.add_middleware(TracingMiddleware, tracing=tracing)
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelmix.engine import Attempt
from modelmix.providers import Provider
from modelmix.store import UsageRecord

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from modelmix.engine import CallContext, ChatService
    from modelmix.protocol import ChatChunk, ChatRequest, ChatResponse, Usage
    from modelmix.routing import RouteDecision

__all__ = ["CHAT_PATHS", "Tracing", "TracingMiddleware", "tracing_requested"]

log = logging.getLogger("modelmix.tracing")

#: Paths that get a request span.
CHAT_PATHS: frozenset[str] = frozenset({"/v1/chat/completions", "/chat/completions"})

#: modelmix provider name -> ``gen_ai.provider.name`` well-known value (others pass through).
_GENAI_PROVIDERS: Mapping[str, str] = {
    "openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini",
}


#: Attributes a system request's span leaves to its step spans (its record carries zeros).
_STEP_TOTALS = ("gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "modelmix.cost_usd")


def _provider_name(provider: str) -> str:
    return _GENAI_PROVIDERS.get(provider, provider)


def _exporters(environ: Mapping[str, str]) -> list[str]:
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    named = environ.get("OTEL_TRACES_EXPORTER", "")
    chosen = [e.strip().lower() for e in named.split(",") if e.strip()]
    if "none" in chosen:
        return []
    endpoint = (environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
                or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
    if not chosen and endpoint:
        chosen = ["otlp"]
    return chosen


def tracing_requested(environ: Mapping[str, str]) -> bool:
    """Whether the ``OTEL_*`` variables ask for traces (reads only; imports nothing)."""
    return bool(_exporters(environ))


class Tracing:
    """A tracer and the hooks that feed it; one per app.

    Implements :class:`~modelmix.engine._service.ServiceObserver`: it names and annotates the
    current request span. Build it over your own provider in tests::

        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        app = create_app(service=service, tracing=Tracing(provider))

    Args:
        tracer_provider: an OpenTelemetry SDK (or API) tracer provider.
        owned: shut the provider down on :meth:`close` (True when built from the environment).
    """

    def __init__(self, tracer_provider: TracerProvider, *, owned: bool = False):
        from opentelemetry import propagate, trace

        self.provider = tracer_provider
        self.tracer: Tracer = tracer_provider.get_tracer("modelmix")
        self._trace = trace
        self._propagate = propagate
        self._owned = owned
        self._models: dict[str, tuple[str, str]] = {}  # deployment -> (model id, provider)

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Tracing | None:
        """A Tracing exporting as the ``OTEL_*`` variables say, or None when they say nothing
        (or the ``otel`` extra is missing, which is logged)."""
        exporters = _exporters(environ)
        if not exporters:
            return None
        try:
            provider = _sdk_provider(exporters, environ)
        except ImportError as exc:
            log.warning("OTEL_* variables ask for tracing but OpenTelemetry is not installed "
                        "(pip install 'modelmix[otel]'): %s", exc)
            return None
        return cls(provider, owned=True) if provider is not None else None

    def instrument(self, service: ChatService) -> None:
        """Annotate request spans from ``service`` and trace each upstream attempt."""
        for dep in service.config.deployments:
            self._models[dep.name] = (dep.model, _provider_name(dep.provider))
        service.observers.append(self)
        service.executor.providers = _TracedProviders(service.providers, self.tracer,
                                                      self._trace)

    def close(self) -> None:
        """Export what is buffered (and shut the provider down when this owns it)."""
        if self._owned:
            self.provider.shutdown()
        else:
            self.provider.force_flush()

    def routed(self, request: ChatRequest, ctx: CallContext,
               decision: RouteDecision | None, seconds: float) -> None:
        if ctx.parent_id is not None:  # a system step's call: the request span is the system's
            return
        span = self._trace.get_current_span()
        if not span.is_recording():
            return
        span.update_name(f"chat {request.model}")
        attrs: dict[str, Any] = {"gen_ai.request.model": request.model,
                                 "modelmix.request_id": ctx.request_id,
                                 "modelmix.routing_ms": seconds * 1000}
        for key, value in (("gen_ai.request.max_tokens", request.completion_limit),
                           ("gen_ai.request.temperature", request.temperature),
                           ("gen_ai.request.top_p", request.top_p),
                           ("gen_ai.request.seed", request.seed)):
            if value is not None:
                attrs[key] = value
        if decision is not None:
            attrs["modelmix.route_reason"] = decision.reason
            attrs["modelmix.candidates"] = [d.name for d in decision.candidates]
        span.set_attributes(attrs)

    def finished(self, rec: UsageRecord, attempts: Sequence[Attempt]) -> None:
        if rec.parent_id is not None:  # a system's step: its own span, not the request's
            self._step_span(rec)
            return
        span = self._trace.get_current_span()
        if not span.is_recording():
            return
        attrs = self._record_attributes(rec)
        if rec.system is not None:  # the envelope: tokens and cost are on its step spans
            span.update_name(f"chat system/{rec.system}")
            for key in _STEP_TOTALS:
                del attrs[key]
        span.set_attributes(attrs)
        if rec.error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, rec.error))

    def _step_span(self, rec: UsageRecord) -> None:
        """An INTERNAL span for a step's record, child of the current (request) span, over
        the step's own time (the record's start and latency)."""
        start_ns = int(rec.created_at * 1e9)
        attrs = self._record_attributes(rec)
        if rec.deployment is None:  # a verification without a judge model: no chat
            del attrs["gen_ai.operation.name"]
        span = self.tracer.start_span(f"step {rec.step}", kind=self._trace.SpanKind.INTERNAL,
                                      attributes=attrs, start_time=start_ns)
        if rec.error is not None:
            span.set_status(self._trace.Status(self._trace.StatusCode.ERROR, rec.error))
        span.end(end_time=start_ns + int(rec.latency_ms * 1e6))

    def _record_attributes(self, rec: UsageRecord) -> dict[str, Any]:
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.usage.input_tokens": rec.prompt_tokens,
            "gen_ai.usage.output_tokens": rec.completion_tokens,
            "modelmix.request_id": rec.request_id,
            "modelmix.cost_usd": rec.cost_usd,
            "modelmix.attempts": rec.attempts,
            "modelmix.stream": rec.stream,
        }
        if rec.requested_model is not None:
            attrs["gen_ai.request.model"] = rec.requested_model
        if rec.route_reason is not None:
            attrs["modelmix.route_reason"] = rec.route_reason
        if rec.deployment is not None:
            attrs["modelmix.deployment"] = rec.deployment
            model, provider = self._models.get(rec.deployment, (None, rec.provider))
            if model is not None:
                attrs["gen_ai.response.model"] = model
            if provider is not None:
                attrs["gen_ai.provider.name"] = provider
        if rec.ttft_ms is not None:
            attrs["modelmix.ttft_ms"] = rec.ttft_ms
        if rec.error_type is not None:
            attrs["error.type"] = rec.error_type
        for key, value in (("modelmix.system", rec.system), ("modelmix.step", rec.step),
                           ("modelmix.parent_id", rec.parent_id),
                           ("modelmix.verdict", rec.verdict)):
            if value is not None:
                attrs[key] = value
        return attrs

    async def traced(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        """Run one HTTP request under a SERVER span (continuing an incoming trace)."""
        carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        span = self.tracer.start_span(
            "chat", context=self._propagate.extract(carrier),
            kind=self._trace.SpanKind.SERVER,
            attributes={"gen_ai.operation.name": "chat",
                        "http.request.method": scope.get("method", ""),
                        "url.path": scope["path"]})

        async def send_traced(message: Message) -> None:
            if message["type"] == "http.response.start":
                span.set_attribute("http.response.status_code", message["status"])
            await send(message)

        with self._trace.use_span(span, end_on_exit=True):
            await app(scope, receive, send_traced)


class TracingMiddleware:
    """ASGI middleware giving each chat request a span from ``tracing``."""

    def __init__(self, app: ASGIApp, *, tracing: Tracing, paths: Iterable[str] = CHAT_PATHS):
        self.app = app
        self.tracing = tracing
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self.app(scope, receive, send)
            return
        await self.tracing.traced(self.app, scope, receive, send)


def _sdk_provider(exporters: Sequence[str], environ: Mapping[str, str]) -> TracerProvider | None:
    """An SDK TracerProvider with a batch processor per known exporter (ImportError without
    the ``otel`` extra)."""
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter

    chosen: list[SpanExporter] = []
    for name in exporters:
        if name == "otlp":
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

            chosen.append(OTLPSpanExporter())  # endpoint, headers... from OTEL_EXPORTER_OTLP_*
        elif name == "console":
            from opentelemetry.sdk.trace.export import ConsoleSpanExporter

            chosen.append(ConsoleSpanExporter())
        else:
            log.warning("OTEL_TRACES_EXPORTER=%s is not supported (use otlp or console)", name)
    if not chosen:
        return None
    service_name = environ.get("OTEL_SERVICE_NAME") or "modelmix"
    provider = TracerProvider(resource=Resource.create({"service.name": service_name}))
    for exporter in chosen:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


class _TracedProvider(Provider):
    """Wraps one deployment's provider: a CLIENT span per call (an upstream attempt)."""

    def __init__(self, inner: Provider, tracer: Tracer, trace: Any):
        super().__init__(inner.deployment)
        self.inner = inner
        self._tracer = tracer
        self._trace = trace

    def _start(self) -> Span:
        dep = self.deployment
        attrs: dict[str, Any] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": _provider_name(dep.provider),
            "gen_ai.request.model": dep.model,
            "modelmix.deployment": dep.name,
        }
        return self._tracer.start_span(f"chat {dep.model}", kind=self._trace.SpanKind.CLIENT,
                                       attributes=attrs)

    def _failed(self, span: Span, exc: BaseException) -> None:
        cancelled = not isinstance(exc, Exception)  # CancelledError (timeout), GeneratorExit
        span.set_attribute("error.type", "cancelled" if cancelled else type(exc).__name__)
        if not cancelled:
            span.record_exception(exc)
        span.set_status(self._trace.Status(self._trace.StatusCode.ERROR,
                                           "cancelled" if cancelled else str(exc)))

    async def complete(self, request: ChatRequest) -> ChatResponse:
        span = self._start()
        with self._trace.use_span(span, end_on_exit=True, record_exception=False,
                                  set_status_on_exception=False):
            try:
                response = await self.inner.complete(request)
            except BaseException as exc:
                self._failed(span, exc)
                raise
            _set_response(span, response.model, response.id, response.usage,
                          [c.finish_reason for c in response.choices if c.finish_reason])
            return response

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        # Not made current: a stream's chunks are pulled from more than one task.
        span = self._start()
        it = self.inner.stream(request)
        last: ChatChunk | None = None
        usage: Usage | None = None
        reasons: list[str] = []
        try:
            async for chunk in it:
                last = chunk
                usage = chunk.usage or usage
                reasons.extend(c.finish_reason for c in chunk.choices if c.finish_reason)
                yield chunk
        except BaseException as exc:
            self._failed(span, exc)
            raise
        finally:
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                await aclose()
            if last is not None:
                _set_response(span, last.model, last.id, usage, reasons)
            span.end()

    async def aclose(self) -> None:
        return None  # the service closes the wrapped provider


def _set_response(span: Span, model: str | None, response_id: str | None,
                  usage: Usage | None, reasons: list[str]) -> None:
    attrs: dict[str, Any] = {}
    if model:
        attrs["gen_ai.response.model"] = model
    if response_id:
        attrs["gen_ai.response.id"] = response_id
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"] = usage.prompt_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.completion_tokens
    if reasons:
        attrs["gen_ai.response.finish_reasons"] = reasons
    span.set_attributes(attrs)


class _TracedProviders(dict[str, Provider]):
    """The executor's provider table, each entry wrapped in a :class:`_TracedProvider` on
    first use (the wrapped table still builds adapters lazily)."""

    def __init__(self, inner: Mapping[str, Provider], tracer: Tracer, trace: Any):
        super().__init__()
        self._inner = inner
        self._tracer = tracer
        self._trace = trace

    def __missing__(self, name: str) -> Provider:
        wrapped = self[name] = _TracedProvider(self._inner[name], self._tracer, self._trace)
        return wrapped
