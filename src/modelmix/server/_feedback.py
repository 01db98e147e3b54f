"""``POST /v1/feedback``: callers score earlier answers; the learned router learns from it.

Body: ``{"request_id": "...", "score": 0.0-1.0}`` or ``{"request_id": "...", "thumbs":
"up" | "down"}`` (up = 1.0, down = 0.0), with an optional ``"comment"`` (at most 2,000
characters). The request id is the ``x-request-id`` header of the answer.

Authenticated like chat requests. A virtual key may only rate requests made with that
key; the master key (and open mode) may rate any. Answers 200 with the stored row,
400 for a bad body, 401 without a valid key, 404 for a request id the gateway has not
recorded (or that another key made), 503 when feedback cannot be stored (the usage
store is disabled or down).

Requests finished in this process are known at once (:class:`RecentRequests`), so
feedback does not wait for the usage writer's next batch; older ones are looked up in
the usage table.

Example::

    curl -s localhost:4000/v1/feedback -H "authorization: Bearer $KEY" \\
         -d '{"request_id": "4be1...", "thumbs": "up"}'
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy.exc import SQLAlchemyError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from modelmix.engine import Attempt, CallContext
from modelmix.errors import InvalidRequest, ModelmixError, invalid_request
from modelmix.protocol import ChatRequest
from modelmix.routing import RouteDecision
from modelmix.server._auth import Authenticator, KeyInfo
from modelmix.server._body_read import load_json_object, read_body
from modelmix.server._gateway import error_response
from modelmix.store import FeedbackRecord, FeedbackStore, RequestInfo, UsageRecord

__all__ = [
    "FeedbackBody",
    "FeedbackEndpoint",
    "FeedbackUnavailable",
    "RecentRequests",
    "RequestNotFound",
    "parse_feedback",
]

log = logging.getLogger("modelmix.feedback")

_BODY_LIMIT = 64 * 1024  # bytes


class RequestNotFound(InvalidRequest):
    """No recorded request has this id (for this key): 404."""

    status_code = 404
    default_code = "request_not_found"


class FeedbackUnavailable(ModelmixError):
    """Feedback cannot be stored now: the store is disabled or unreachable (503)."""

    status_code = 503
    error_type = "service_unavailable_error"
    default_code = "feedback_unavailable"


class FeedbackBody(BaseModel):
    """The ``POST /v1/feedback`` body; exactly one of ``score`` and ``thumbs``."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    request_id: str = Field(pattern=r"^[A-Za-z0-9._:-]{1,128}$")
    score: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    thumbs: Literal["up", "down"] | None = None
    comment: str | None = Field(default=None, max_length=2000)

    @model_validator(mode="after")
    def _one_grade(self) -> FeedbackBody:
        if (self.score is None) == (self.thumbs is None):
            raise ValueError("give exactly one of score (0 to 1) and thumbs ('up'/'down')")
        return self

    def value(self) -> float:
        """The score in [0, 1] (thumbs up 1.0, down 0.0)."""
        if self.score is not None:
            return self.score
        return 1.0 if self.thumbs == "up" else 0.0


def parse_feedback(body: bytes | bytearray) -> FeedbackBody:
    """Parse and validate a feedback body. Raises InvalidRequest (400)."""
    data = load_json_object(body)
    try:
        return FeedbackBody.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from exc


class RecentRequests:
    """The last ``size`` requests this process finished, by id (a
    :class:`~modelmix.engine._service.ServiceObserver`; O(1) per request, no I/O)."""

    def __init__(self, size: int = 10_000):
        self._size = size
        self._items: OrderedDict[str, RequestInfo] = OrderedDict()

    def routed(self, request: ChatRequest, ctx: CallContext,
               decision: RouteDecision | None, seconds: float) -> None:
        return None

    def finished(self, rec: UsageRecord, attempts: Sequence[Attempt]) -> None:
        self._items[rec.request_id] = RequestInfo(
            request_id=rec.request_id, key_id=rec.key_id, deployment=rec.deployment,
            status_code=rec.status_code, created_at=rec.created_at)
        self._items.move_to_end(rec.request_id)
        if len(self._items) > self._size:
            self._items.popitem(last=False)

    def get(self, request_id: str) -> RequestInfo | None:
        return self._items.get(request_id)


class FeedbackEndpoint:
    """The logic of ``POST /v1/feedback`` (see the module docstring).

    Args:
        auth: how keys are checked (the chat endpoint's authenticator).
        store: where feedback goes; None when the usage store is disabled.
        recent: requests finished in this process.
    """

    def __init__(self, auth: Authenticator, store: FeedbackStore | None,
                 recent: RecentRequests):
        self.auth = auth
        self.store = store
        self.recent = recent

    def close(self) -> None:
        """Release the store's connections."""
        if self.store is not None:
            self.store.close()

    async def handle(self, request: Request) -> Response:
        """Answer one ``POST /v1/feedback`` (errors as OpenAI error bodies)."""
        try:
            key = await self.auth.authenticate(request.headers.get("authorization"))
            body = parse_feedback(await read_body(request, _BODY_LIMIT))
            record = await self._store(key, body)
        except ModelmixError as exc:
            return error_response(exc)
        return JSONResponse({"object": "feedback", **record.to_dict()})

    async def _store(self, key: KeyInfo, body: FeedbackBody) -> FeedbackRecord:
        store = self.store
        if store is None:
            raise FeedbackUnavailable("feedback is disabled: the usage store is off "
                                      "(store.enabled: false)", code="feedback_disabled")
        info = self.recent.get(body.request_id)
        try:
            if info is None:
                info = await asyncio.to_thread(store.find_request, body.request_id)
            _check_owner(key, info, body.request_id)
            record = FeedbackRecord(request_id=body.request_id, score=body.value(),
                                    thumbs=body.thumbs, comment=body.comment,
                                    key_id=key.key_id)
            await asyncio.to_thread(store.add, record)
        except SQLAlchemyError as exc:
            log.error("feedback store %r failed: %s", store, exc)
            raise FeedbackUnavailable("the feedback store is unavailable; try again "
                                      "later") from exc
        return record


def _check_owner(key: KeyInfo, info: RequestInfo | None, request_id: str) -> None:
    """404 unless the request exists and ``key`` may rate it (its own, or admin)."""
    if info is None or not (key.is_admin or info.key_id == key.key_id):
        raise RequestNotFound(f"no recorded request with id {request_id!r}",
                              param="request_id")
