"""Records written for every request: usage and cost, and the guard's audit record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

__all__ = ["AuditRecord", "NullSink", "UsageRecord", "UsageSink"]


@dataclass(slots=True)
class AuditRecord:
    """What the data guard found and decided for one request (never raw values).

    Attributes:
        policy: the policy's name.
        data_class: public, internal, confidential or regulated.
        action: allow, pseudonymise, route-local or block.
        rule: the policy rule that decided (``classes.regulated``, ``tags.eu``...).
        rules: every policy rule that matched.
        entities: detected entity types and their counts.
        pseudonymised: distinct values replaced by placeholders in what was sent.
        tags: the request's tags.
        forbidden: deployments the policy kept from serving the request.
    """

    policy: str
    data_class: str
    action: str
    rule: str
    rules: list[str] = field(default_factory=list)
    entities: dict[str, int] = field(default_factory=dict)
    pseudonymised: int = 0
    tags: list[str] = field(default_factory=list)
    forbidden: list[str] = field(default_factory=list)


@dataclass(slots=True)
class UsageRecord:
    """One request, success or failure.

    Attributes:
        request_id: the gateway's id for the request (``x-request-id`` header).
        created_at: Unix time (s) the request arrived.
        key_id: id of the virtual key used ("master" for the master key), or None.
        requested_model: the ``model`` the client sent.
        deployment: the deployment that served (or last failed), None if none was called.
        prompt_tokens / completion_tokens: tokens as the provider reported them.
        cost_usd: from catalog prices (USD per 1M tokens) x tokens.
        latency_ms: arrival to last byte; ttft_ms: arrival to first streamed chunk.
        route_reason: why the router chose ``deployment``.
        status_code: HTTP status answered; error / error_type: why it failed, if it did.
        attempts: upstream calls made (retries and fallbacks included).
        prompt / response: the last user message and the answer's text, only when
            ``store.keep_prompts`` / ``store.keep_responses`` are on; stored in the
            ``request_texts`` table, not in ``usage``.
        audit: the data guard's record when a policy is set (table ``guard_audit``).
        parent_id: for a row written by a step of a system of models, the ``request_id``
            of the system request's envelope row; None on every other row.
        system: the system's name (``model: "system/<name>"``) on its envelope row and on
            each of its step rows; None outside systems.
        step: the step's name on a step row; None on the envelope and outside systems.
        verdict: what a verifying step decided (``accept`` or ``escalate``), else None.
        media: the request's media parts as JSON, one ``{"part", "kind", "type", "bytes",
            "sha256"}`` object each (never their content); None without media.
        conversions: how media were turned into text for the deployment that served,
            comma-separated (``ocr``, ``pdf``, ``asr``), as ``x-modelmix-conversions``
            says; None when none were.
        media_ms: time spent reading media (OCR, PDF text, speech recognition),
            milliseconds, cache hits included (about 0); None without media read.
        cache: what the response cache did (docs/cache.md): ``hit`` (answered from
            it: no upstream call, no tokens, cost 0), ``miss`` or ``bypass``; None for
            requests refused before the lookup (validation, auth, routing, policy) and
            the envelope rows of systems of models (their step rows say ``bypass``).
        saved_usd: on a hit, what the cached answer cost when it was first produced
            (its tokens at the deployment's catalog prices), USD; else None.
        endpoint: the HTTP API the request came through (``chat``, ``responses``,
            ``messages``, ``completions``, ``embeddings``; docs/endpoints.md), also on a
            system's step rows; None for library calls.

    A system request writes one envelope row (``parent_id`` and ``step`` None, no deployment,
    no tokens, cost 0, the whole request's latency and status) and one row per model call
    or verify step, each with its own ``request_id`` and the envelope's as ``parent_id``.
    Costs live on the step rows only, so summing ``cost_usd`` over rows counts each once.
    """

    request_id: str
    created_at: float
    requested_model: str | None = None
    key_id: str | None = None
    deployment: str | None = None
    provider: str | None = None
    route_reason: str | None = None
    stream: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    ttft_ms: float | None = None
    status_code: int = 200
    error: str | None = None
    error_type: str | None = None
    attempts: int = 0
    prompt: str | None = None
    response: str | None = None
    audit: AuditRecord | None = None
    parent_id: str | None = None
    system: str | None = None
    step: str | None = None
    verdict: str | None = None
    media: str | None = None
    conversions: str | None = None
    media_ms: float | None = None
    cache: str | None = None
    saved_usd: float | None = None
    endpoint: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.audit, dict):  # read back from a spill file
            self.audit = AuditRecord(**self.audit)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class UsageSink(Protocol):
    """Where usage records go. ``record`` must not block the event loop."""

    def record(self, rec: UsageRecord) -> None: ...

    def close(self) -> None:
        """Flush everything recorded so far, then release resources."""
        ...


class NullSink:
    """Discards records (for library use without a store)."""

    def record(self, rec: UsageRecord) -> None:
        return None

    def close(self) -> None:
        return None
