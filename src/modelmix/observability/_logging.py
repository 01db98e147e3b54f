"""Structured logs: a JSON-lines formatter, a per-request log sink, and process setup.

``modelmix serve --log-format json`` (the default) writes one JSON object per line::

    {"ts": "2025-06-01T12:00:00.123Z", "level": "INFO", "logger": "modelmix.requests",
     "msg": "request completed", "request_id": "9f1c...", "deployment": "vllm-llama",
     "status": 200, "latency_ms": 812.4, ...}

Fields passed with ``extra=`` become top-level keys. Prompts are never logged unless the
catalog sets ``log_prompts: true`` (then :class:`PromptLogger` logs them on their own line,
joined to the request line by ``request_id``).
"""

from __future__ import annotations

import logging
import logging.handlers
import queue
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, TextIO

import orjson

from modelmix.engine import Attempt, CallContext
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.store import UsageRecord, UsageSink

__all__ = [
    "REQUEST_LOGGER",
    "JsonFormatter",
    "LogFormat",
    "PromptLogger",
    "RequestLogSink",
    "TextFormatter",
    "configure_logging",
]

#: Logger of the one-line-per-request log.
REQUEST_LOGGER = "modelmix.requests"

#: Attributes every LogRecord has; anything else on a record came from ``extra=``
#: (uvicorn's ``color_message`` repeats ``msg`` with terminal colour codes).
_STANDARD_ATTRS: frozenset[str] = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None))
) | {"message", "asctime", "taskName", "color_message"}
_BASE_KEYS = ("ts", "level", "logger", "msg")


class LogFormat(StrEnum):
    """How ``modelmix serve`` writes logs."""

    JSON = "json"
    TEXT = "text"


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items()
            if k not in _STANDARD_ATTRS and not k.startswith("_")}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ``ts`` (UTC, ISO 8601, ms), ``level``, ``logger``, ``msg``,
    the record's ``extra`` fields, and ``exc`` (the traceback) when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for key, val in _extras(record).items():
            if key not in _BASE_KEYS:
                out[key] = val
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            out["exc"] = record.exc_text
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        try:
            return orjson.dumps(out, default=str).decode()
        except (TypeError, orjson.JSONEncodeError):  # e.g. an int beyond 64 bits
            return orjson.dumps({k: str(v) for k, v in out.items()}).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...`` for reading in a terminal."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        extras = _extras(record)
        if not extras:
            return line
        head, sep, tail = line.partition("\n")  # keep a traceback below the fields
        fields = " ".join(f"{k}={v!r}" if isinstance(v, str) and " " in v else f"{k}={v}"
                          for k, v in extras.items())
        return f"{head} {fields}{sep}{tail}"


def configure_logging(
    fmt: LogFormat | str = LogFormat.JSON,
    level: int | str = logging.INFO,
    *,
    stream: TextIO | None = None,
) -> logging.handlers.QueueListener:
    """Send every log record to ``stream`` (stderr) in ``fmt``, written off the event loop.

    Records are formatted by the caller and written by a background thread, so a slow
    stderr never blocks request handling. Replaces the root logger's handlers.

    Args:
        fmt: ``json`` (one object per line) or ``text``.
        level: root log level (name or number).
        stream: where lines go (stderr when omitted).

    Returns:
        The started listener; call ``stop()`` at exit to flush the queue.
    """
    formatter: logging.Formatter = (JsonFormatter() if LogFormat(fmt) is LogFormat.JSON
                                    else TextFormatter())
    writer = logging.StreamHandler(stream or sys.stderr)
    writer.setFormatter(logging.Formatter("%(message)s"))  # lines arrive formatted
    lines: queue.SimpleQueue[logging.LogRecord] = queue.SimpleQueue()
    enqueue = logging.handlers.QueueHandler(lines)
    enqueue.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [enqueue]
    if isinstance(level, str):  # uvicorn's "trace" is level 5, below DEBUG
        level = 5 if level.lower() == "trace" else level.upper()
    root.setLevel(level)
    listener = logging.handlers.QueueListener(lines, writer)
    listener.start()
    return listener


class RequestLogSink:
    """A :class:`~modelmix.store.UsageSink` tee that logs one line per request, then forwards.

    Successes log ``request completed`` at INFO; failures log ``request failed`` at WARNING
    with ``error`` (the message) and ``error_type`` (the modelmix error class). Times are in
    milliseconds, cost in USD. The record holds no prompt text, so none is logged.

    A system of models logs its request (``system`` set) and, apart, each of its steps'
    rows as ``step completed`` / ``step failed`` with ``parent_id`` (the request's id),
    ``system``, ``step`` and ``verdict``; each of those four keys appears only when set.
    """

    def __init__(self, next: UsageSink, logger: logging.Logger | None = None):
        self.next = next
        self.log = logger or logging.getLogger(REQUEST_LOGGER)

    def record(self, rec: UsageRecord) -> None:
        level = logging.INFO if rec.error is None else logging.WARNING
        if self.log.isEnabledFor(level):
            self.log.log(level, _MESSAGES[rec.parent_id is not None, rec.error is not None],
                         extra=_fields(rec))
        self.next.record(rec)

    def close(self) -> None:
        self.next.close()


#: (a system step's row?, failed?) -> the line's ``msg``.
_MESSAGES: dict[tuple[bool, bool], str] = {
    (False, False): "request completed", (False, True): "request failed",
    (True, False): "step completed", (True, True): "step failed",
}


def _fields(rec: UsageRecord) -> dict[str, Any]:
    fields: dict[str, Any] = {
        "request_id": rec.request_id,
        "status": rec.status_code,
        "requested_model": rec.requested_model,
        "deployment": rec.deployment,
        "provider": rec.provider,
        "key_id": rec.key_id,
        "stream": rec.stream,
        "latency_ms": round(rec.latency_ms, 2),
        "prompt_tokens": rec.prompt_tokens,
        "completion_tokens": rec.completion_tokens,
        "cost_usd": rec.cost_usd,
        "attempts": rec.attempts,
        "route_reason": rec.route_reason,
    }
    if rec.ttft_ms is not None:
        fields["ttft_ms"] = round(rec.ttft_ms, 2)
    if rec.error is not None:
        fields["error"] = rec.error
        fields["error_type"] = rec.error_type
    for key, value in (("system", rec.system), ("step", rec.step),
                       ("parent_id", rec.parent_id), ("verdict", rec.verdict),
                       ("cache", rec.cache), ("saved_usd", rec.saved_usd)):
        if value is not None:  # systems of models, verifying cascades, the response cache
            fields[key] = value
    return fields


class PromptLogger:
    """Logs each routed request's messages at INFO (``request prompt``), keyed by
    ``request_id``. Install only when the catalog sets ``log_prompts: true``."""

    def __init__(self, logger: logging.Logger | None = None):
        self.log = logger or logging.getLogger(REQUEST_LOGGER)

    def routed(self, request: ChatRequest, ctx: CallContext,
               decision: RouteDecision | None, seconds: float) -> None:
        if not self.log.isEnabledFor(logging.INFO):
            return
        messages = [m.model_dump(mode="json", exclude_none=True) for m in request.messages]
        self.log.info("request prompt", extra={"request_id": ctx.request_id,
                                               "requested_model": request.model,
                                               "messages": messages})

    def finished(self, rec: UsageRecord, attempts: Sequence[Attempt]) -> None:
        return None
