"""Records written for every request: usage and cost (audit records join later)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Protocol

__all__ = ["NullSink", "UsageRecord", "UsageSink"]


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
