"""Prometheus metrics for the gateway, in a registry owned by one app.

Most series are fed from :class:`~modelmix.store.UsageRecord` by :class:`MetricsSink`, a tee
in front of the real usage sink; routing time and upstream attempts come through the
:class:`~modelmix.engine._service.ServiceObserver` hooks; in-flight requests are counted by
:class:`InFlightMiddleware`; circuit state is read from the executor at scrape time.

Example::

    metrics = GatewayMetrics.for_service(service)
    service.usage = MetricsSink(service.usage, metrics)
    service.observers.append(metrics)
    body = metrics.response()          # GET /metrics

Label values are bounded: ``requested_model`` is the client's ``model`` only when it names a
catalog deployment or group (else ``"other"``), ``deployment`` is ``"none"`` when no
deployment was called, and ``error_type`` / ``outcome`` are modelmix error class names.

Systems of models: a system request's envelope record (``system`` set, no ``parent_id``)
counts as a chat request and feeds ``modelmix_system_requests_total`` and
``modelmix_system_request_latency_seconds``; each step's record (``parent_id`` set) is not a
chat request: it feeds ``modelmix_system_steps_total`` and
``modelmix_system_step_latency_seconds``, and its tokens and cost go to the per-deployment
counters (the envelope carries none, so nothing counts twice). ``system`` and ``step`` are
catalog names; past :data:`MAX_SYSTEM_SERIES` label sets per metric, new ones read
``"other"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics import Counter, Gauge, Histogram
from prometheus_client.registry import Collector
from starlette.middleware import Middleware
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from modelmix.catalog import Config
from modelmix.engine import Attempt, BreakerState, CallContext, ChatService, CircuitBreaker
from modelmix.observability._logging import PromptLogger, RequestLogSink
from modelmix.observability._tracing import Tracing, TracingMiddleware
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.store import UsageRecord, UsageSink

__all__ = [
    "CHAT_PATHS",
    "LATENCY_BUCKETS_S",
    "MAX_SYSTEM_SERIES",
    "NO_DEPLOYMENT",
    "NO_VERDICT",
    "OTHER_MODEL",
    "ROUTING_BUCKETS_S",
    "TTFT_BUCKETS_S",
    "GatewayMetrics",
    "InFlightMiddleware",
    "MetricsSink",
    "instrument",
]

#: Request latency buckets (s): the GenAI semantic conventions' advice for
#: ``gen_ai.client.operation.duration`` (10 ms doubling to 82 s) plus 164 s for long
#: generations and slow reasoning models.
LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
    163.84,
)
#: Time-to-first-token buckets (s): the GenAI conventions' ``gen_ai.server.time_to_first_token``
#: advice (1 ms to 10 s) plus 20 s and 40 s for queued or cold-started upstreams.
TTFT_BUCKETS_S: tuple[float, ...] = (
    0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0,
    20.0, 40.0,
)
#: Routing buckets (s): 100 µs (rule routers) to 1 s (a learned router on a slow CPU;
#: embedding one prompt takes about 10 ms).
ROUTING_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
)
#: ``deployment`` label of requests that reached no deployment (rejected, unroutable).
NO_DEPLOYMENT = "none"
#: ``requested_model`` label of names outside the catalog (keeps cardinality bounded).
OTHER_MODEL = "other"
#: ``verdict`` label of a step that verified nothing.
NO_VERDICT = "none"
_UNSET = "none"  # ``step`` label of a step row without a step name (not expected)
#: Most label sets kept per system metric; later new ones are counted under ``"other"``
#: (a guard: system and step names come from the catalog, so it is never reached in use).
MAX_SYSTEM_SERIES = 2000
#: Paths whose requests count as in flight.
CHAT_PATHS: frozenset[str] = frozenset({"/v1/chat/completions", "/chat/completions"})


@dataclass(slots=True)
class _DeploymentSeries:
    """Cached label children of one deployment (``labels()`` is too slow for the hot path)."""

    latency: Histogram
    ttft: Histogram
    prompt_tokens: Counter
    completion_tokens: Counter
    cost: Counter


@dataclass(slots=True)
class _StepSeries:
    """Cached label children of one (system, step, deployment, verdict, status)."""

    count: Counter
    latency: Histogram


class _SystemMetrics:
    """The ``modelmix_system_*`` series, fed from records that carry ``system``, with cached
    label children and at most :data:`MAX_SYSTEM_SERIES` label sets per metric."""

    def __init__(self, reg: CollectorRegistry):
        self.requests = Counter("modelmix_system_requests",
                                "Requests to systems of models, by HTTP status.",
                                ["system", "status"], registry=reg)
        self.request_latency = Histogram("modelmix_system_request_latency_seconds",
                                         "A system request, arrival to last byte (s).",
                                         ["system"], buckets=LATENCY_BUCKETS_S, registry=reg)
        self.steps = Counter("modelmix_system_steps",
                             "Rows written by the steps of systems of models (model calls, "
                             "verifications).",
                             ["system", "step", "deployment", "verdict", "status"],
                             registry=reg)
        self.step_latency = Histogram("modelmix_system_step_latency_seconds",
                                      "One step's model call or verification (s).",
                                      ["system", "step"], buckets=LATENCY_BUCKETS_S,
                                      registry=reg)
        self._requests: dict[tuple[str, int], tuple[Counter, Histogram]] = {}
        self._steps: dict[tuple[str, str, str, str, int], _StepSeries] = {}
        self._step_latency: dict[tuple[str, str], Histogram] = {}
        #: ``system/<name>`` values the ``requested_model`` label of chat requests may take.
        self.models: set[str] = set()

    def model_name(self, system: str) -> str:
        """``system/<name>``, the ``requested_model`` of a system request (remembered as a
        known label value while fewer than :data:`MAX_SYSTEM_SERIES` are)."""
        name = f"system/{system}"
        if name not in self.models and len(self.models) < MAX_SYSTEM_SERIES:
            self.models.add(name)
        return name

    def request(self, rec: UsageRecord, system: str) -> None:
        """Count an envelope record (a whole system request)."""
        key = (system, rec.status_code)
        found = self._requests.get(key)
        if found is None:
            if len(self._requests) >= MAX_SYSTEM_SERIES:
                key = (OTHER_MODEL, rec.status_code)
                found = self._requests.get(key)
            if found is None:
                found = self._requests[key] = (self.requests.labels(key[0], str(key[1])),
                                               self.request_latency.labels(key[0]))
        found[0].inc()
        found[1].observe(rec.latency_ms / 1000)

    def step(self, rec: UsageRecord, system: str, deployment: str) -> None:
        """Count a step's record."""
        key = (system, rec.step or _UNSET, deployment, rec.verdict or NO_VERDICT,
               rec.status_code)
        series = self._steps.get(key)
        if series is None:
            if len(self._steps) >= MAX_SYSTEM_SERIES:
                key = (OTHER_MODEL, OTHER_MODEL, OTHER_MODEL, OTHER_MODEL, rec.status_code)
                series = self._steps.get(key)
            if series is None:
                series = self._steps[key] = self._step_series(key)
        series.count.inc()
        if rec.latency_ms > 0:  # a verdict row written without a timing is not observed
            series.latency.observe(rec.latency_ms / 1000)

    def _step_series(self, key: tuple[str, str, str, str, int]) -> _StepSeries:
        system, step, deployment, verdict, status = key
        latency = self._step_latency.get((system, step))
        if latency is None:
            latency = self._step_latency[(system, step)] = self.step_latency.labels(system, step)
        return _StepSeries(self.steps.labels(system, step, deployment, verdict, str(status)),
                           latency)


class _CircuitCollector(Collector):
    """``modelmix_circuit_open``: 1 while a deployment's circuit is not closed, read at scrape."""

    def __init__(self, names: Sequence[str], breakers: Mapping[str, CircuitBreaker]):
        self._names = names
        self._breakers = breakers

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "modelmix_circuit_open",
            "1 while the deployment's circuit breaker is open or half-open, else 0.",
            labels=["deployment"],
        )
        for name in self._names:
            breaker = self._breakers.get(name)
            is_open = breaker is not None and breaker.state is not BreakerState.CLOSED
            family.add_metric([name], 1.0 if is_open else 0.0)
        yield family


class GatewayMetrics:
    """Every gateway metric, in its own :class:`CollectorRegistry`.

    Implements :class:`~modelmix.engine._service.ServiceObserver` (routing time, upstream attempts);
    :meth:`observe` takes usage records (see :class:`MetricsSink`).

    Args:
        config: the catalog (its model names bound the ``requested_model`` label).
        breakers: the executor's circuit breakers by deployment name (read at scrape time).
        registry: where to register (a fresh one when omitted).
    """

    def __init__(
        self,
        config: Config,
        *,
        breakers: Mapping[str, CircuitBreaker] | None = None,
        registry: CollectorRegistry | None = None,
    ):
        self.registry = registry or CollectorRegistry()
        self._known_models = frozenset(config.model_names())
        self._define(self.registry)
        self.systems = _SystemMetrics(self.registry)
        names = [d.name for d in config.deployments]
        self.registry.register(_CircuitCollector(names, {} if breakers is None else breakers))
        self._series: dict[str, _DeploymentSeries] = {}
        self._requests: dict[tuple[str, str | None, int], Counter] = {}
        self._errors: dict[tuple[str, str], Counter] = {}
        self._attempts: dict[tuple[str, str], Counter] = {}
        self._cache_results: dict[str, Counter] = {}

    @classmethod
    def for_service(cls, service: ChatService) -> GatewayMetrics:
        """Metrics over ``service``'s catalog and circuit breakers."""
        return cls(service.config, breakers=service.executor.breakers)

    def _define(self, reg: CollectorRegistry) -> None:
        dep = ["deployment"]
        self.requests = Counter("modelmix_requests", "Chat requests answered.",
                                ["deployment", "requested_model", "status_code"], registry=reg)
        self.errors = Counter("modelmix_errors", "Chat requests that failed, by error class.",
                              ["deployment", "error_type"], registry=reg)
        self.latency = Histogram("modelmix_request_latency_seconds",
                                 "Arrival to last byte (s), failures included.", dep,
                                 buckets=LATENCY_BUCKETS_S, registry=reg)
        self.ttft = Histogram("modelmix_time_to_first_token_seconds",
                              "Arrival to first streamed chunk (s), streams only.", dep,
                              buckets=TTFT_BUCKETS_S, registry=reg)
        self.prompt_tokens = Counter("modelmix_prompt_tokens", "Prompt tokens (provider count).",
                                     dep, registry=reg)
        self.completion_tokens = Counter("modelmix_completion_tokens",
                                         "Completion tokens (provider count).", dep, registry=reg)
        self.cost = Counter("modelmix_cost_usd", "Cost in USD from catalog prices.", dep,
                            registry=reg)
        self.attempts = Counter("modelmix_upstream_attempts",
                                "Upstream calls (retries and fallbacks included); outcome is "
                                "'success' or the error class.", ["deployment", "outcome"],
                                registry=reg)
        self.in_flight = Gauge("modelmix_in_flight_requests",
                               "Chat requests being served now.", registry=reg)
        self.cache = Counter("modelmix_cache_requests", "Chat requests by what the response "
                             "cache did: hit, miss or bypass (docs/cache.md).", ["result"],
                             registry=reg)
        self.cache_saved = Counter("modelmix_cache_saved_usd", "USD not spent thanks to "
                                   "cache hits (the cached answers' catalog cost).",
                                   registry=reg)
        self.routing = Histogram("modelmix_routing_latency_seconds",
                                 "Time to choose deployments (s).", buckets=ROUTING_BUCKETS_S,
                                 registry=reg)

    def _deployment(self, name: str) -> _DeploymentSeries:
        series = self._series.get(name)
        if series is None:
            series = self._series[name] = _DeploymentSeries(
                self.latency.labels(name), self.ttft.labels(name),
                self.prompt_tokens.labels(name), self.completion_tokens.labels(name),
                self.cost.labels(name))
        return series

    def _request_counter(self, dep: str, model: str | None, status: int) -> Counter:
        key = (dep, model, status)
        child = self._requests.get(key)
        if child is None:
            label = "none" if model is None else model
            if (model is not None and model not in self._known_models
                    and model not in self.systems.models):
                label = OTHER_MODEL
                key = (dep, OTHER_MODEL, status)  # one cache entry for every unknown name
                child = self._requests.get(key)
            if child is None:
                child = self._requests[key] = self.requests.labels(dep, label, str(status))
        return child

    def _cache_counter(self, result: str) -> Counter:
        child = self._cache_results.get(result)
        if child is None:  # three values at most: hit, miss, bypass
            child = self._cache_results[result] = self.cache.labels(result)
        return child

    def _pair(self, cache: dict[tuple[str, str], Counter], metric: Counter,
              key: tuple[str, str]) -> Counter:
        child = cache.get(key)
        if child is None:
            child = cache[key] = metric.labels(*key)
        return child

    def observe(self, rec: UsageRecord) -> None:
        """Count one finished request (success or failure), or one system step's record."""
        dep = rec.deployment or NO_DEPLOYMENT
        series = self._deployment(dep)
        if rec.parent_id is not None:  # a step of a system of models, not a chat request
            self.systems.step(rec, rec.system or _UNSET, dep)
        else:
            model = (rec.requested_model if rec.system is None
                     else self.systems.model_name(rec.system))
            self._request_counter(dep, model, rec.status_code).inc()
            series.latency.observe(rec.latency_ms / 1000)
            if rec.ttft_ms is not None:
                series.ttft.observe(rec.ttft_ms / 1000)
            if rec.error_type is not None:
                self._pair(self._errors, self.errors, (dep, rec.error_type)).inc()
            if rec.system is not None:
                self.systems.request(rec, rec.system)
            if rec.cache is not None:
                self._cache_counter(rec.cache).inc()
                if rec.saved_usd:
                    self.cache_saved.inc(rec.saved_usd)
        if rec.prompt_tokens:
            series.prompt_tokens.inc(rec.prompt_tokens)
        if rec.completion_tokens:
            series.completion_tokens.inc(rec.completion_tokens)
        if rec.cost_usd:
            series.cost.inc(rec.cost_usd)

    def routed(self, request: ChatRequest, ctx: CallContext,
               decision: RouteDecision | None, seconds: float) -> None:
        self.routing.observe(seconds)

    def finished(self, rec: UsageRecord, attempts: Sequence[Attempt]) -> None:
        for attempt in attempts:
            outcome = attempt.error_type or "success"
            self._pair(self._attempts, self.attempts, (attempt.deployment, outcome)).inc()

    def exposition(self) -> bytes:
        """Every metric in the Prometheus text format (version 0.0.4)."""
        return generate_latest(self.registry)

    def response(self, accept: str = "") -> Response:
        """The ``GET /metrics`` response: the text format 0.0.4, or OpenMetrics when the
        ``Accept`` header asks for it (as Prometheus does)."""
        encode, content_type = choose_encoder(accept)
        return Response(encode(self.registry), headers={"content-type": content_type})


class MetricsSink:
    """A :class:`~modelmix.store.UsageSink` tee: updates ``metrics``, then forwards to ``next``.

    Costs a few microseconds per record (cached label children, no I/O).
    """

    def __init__(self, next: UsageSink, metrics: GatewayMetrics):
        self.next = next
        self.metrics = metrics

    def record(self, rec: UsageRecord) -> None:
        self.metrics.observe(rec)
        self.next.record(rec)

    def close(self) -> None:
        self.next.close()


class InFlightMiddleware:
    """ASGI middleware keeping ``modelmix_in_flight_requests`` for chat paths.

    A stream counts until its last chunk is sent.
    """

    def __init__(self, app: ASGIApp, *, metrics: GatewayMetrics,
                 paths: Iterable[str] = CHAT_PATHS):
        self.app = app
        self._gauge = metrics.in_flight
        self._paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self._paths:
            await self.app(scope, receive, send)
            return
        self._gauge.inc()
        try:
            await self.app(scope, receive, send)
        finally:
            self._gauge.dec()


def instrument(service: ChatService, tracing: Tracing | None = None
               ) -> tuple[GatewayMetrics, list[Middleware]]:
    """Wire metrics, the per-request log and (when given) tracing into ``service``.

    The usage chain becomes metrics -> request log -> the original sink. Call once per
    service.

    Returns:
        The metrics (for ``GET /metrics``) and the middleware the app must install.
    """
    metrics = GatewayMetrics.for_service(service)
    service.usage = MetricsSink(RequestLogSink(service.usage), metrics)
    service.observers.append(metrics)
    if service.config.log_prompts:
        service.observers.append(PromptLogger())
    middleware = [Middleware(InFlightMiddleware, metrics=metrics)]
    if tracing is not None:
        tracing.instrument(service)
        middleware.append(Middleware(TracingMiddleware, tracing=tracing))
    return metrics, middleware
