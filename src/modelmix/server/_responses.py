"""OpenAI Responses API: ``POST /v1/responses``, ``GET`` / ``DELETE /v1/responses/{id}``.

A request becomes a chat completion request (protocol/_responses.py) and runs the
gateway's one pipeline (server/_dialect.py); its answer or stream is written back as a
``response`` object or Responses events (protocol/_responses_out.py). Finished responses
are kept per process and per key for ``previous_response_id`` (server/_response_store.py).

Example::

    client = openai.OpenAI(base_url="http://localhost:4000/v1", api_key=key)
    first = client.responses.create(model="auto", input="Name a prime.")
    client.responses.create(model="auto", input="Another?", previous_response_id=first.id)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from modelmix.engine import CallContext, Completion
from modelmix.errors import InvalidRequest, ModelmixError
from modelmix.protocol import (
    ChatChunk,
    ChatRequest,
    ResponseEvents,
    ResponsesRequest,
    TurnMessages,
    assistant_turn,
    new_response_id,
    request_echo,
    response_from_chat,
)
from modelmix.server._dialect import Dialect, as_error, openai_error_response
from modelmix.server._response_store import ResponseStore

if TYPE_CHECKING:
    from modelmix.server._gateway import Gateway

__all__ = ["ResponsesDialect", "routes"]


class ResponsesDialect(Dialect):
    """The Responses API for one request (it holds that request's parsed body).

    Args:
        store: where finished responses are kept and earlier ones are read.
        max_tokens_limit: the gateway's ``server.max_tokens_limit`` (tokens).
    """

    endpoint = "responses"

    def __init__(self, store: ResponseStore, max_tokens_limit: int):
        self._store = store
        self._limit = max_tokens_limit
        self._id = new_response_id()
        self._request: ResponsesRequest | None = None
        self._turn: TurnMessages = []
        self._echo: dict[str, Any] = {}

    def to_chat(self, data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        request = ResponsesRequest.parse(data)
        limit = request.max_output_tokens
        if limit is not None and limit > self._limit:
            raise InvalidRequest(f"max_output_tokens {limit} exceeds this gateway's limit "
                                 f"of {self._limit}", param="max_output_tokens",
                                 code="invalid_value")
        history = (self._store.history(request.previous_response_id, ctx.key_id)
                   if request.previous_response_id else [])
        self._request, self._turn = request, request.turn()
        self._echo = request_echo(request)
        return request.to_chat(history, self._turn)

    def render(self, done: Completion, chat: ChatRequest, ctx: CallContext) -> bytes:
        body = response_from_chat(done.response, response_id=self._id,
                                  created_at=int(ctx.created_at), echo=self._echo)
        raw = orjson.dumps(body)
        self._keep(body, ctx, len(raw))
        return raw

    async def stream(self, chunks: AsyncIterator[ChatChunk], chat: ChatRequest,
                     ctx: CallContext) -> AsyncIterator[bytes]:
        events = ResponseEvents(self._id, int(ctx.created_at), chat.model, self._echo)
        for event in events.start():
            yield event
        try:
            async for chunk in chunks:
                for event in events.feed(chunk):
                    yield event
        except Exception as exc:
            for event in events.fail(as_error(exc, ctx.request_id).to_openai()["error"]):
                yield event
            return
        final = events.finish()
        self._keep(events.snapshot(events.status), ctx, sum(len(e) for e in final))
        for event in final:
            yield event

    def _keep(self, body: dict[str, Any], ctx: CallContext, size: int) -> None:
        """Store the finished response unless the request said ``store: false``."""
        request = self._request
        if request is None or not request.keep:
            return
        turn = self._turn + assistant_turn(body["output"])
        self._store.put(self._id, key=ctx.key_id, parent=request.previous_response_id,
                        turn=turn, response=body, size=size + len(orjson.dumps(self._turn)))


def routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes this module serves, under ``/v1`` (app.py adds the same without it);
    one :class:`ResponseStore` per app."""
    store = ResponseStore()
    limit = gateway.config.server.max_tokens_limit

    async def create(request: Request) -> Response:
        return await gateway.handle(request, ResponsesDialect(store, limit))

    async def stored(request: Request) -> Response:
        try:
            key = await gateway.auth.authenticate(request.headers.get("authorization"))
            if request.query_params:
                name = next(iter(request.query_params))
                raise InvalidRequest(f"{name} is not supported when reading a stored "
                                     "response", param=name, code="unsupported_parameter")
            response_id = request.path_params["response_id"]
            if request.method == "DELETE":
                store.delete(response_id, key.key_id)
                return JSONResponse({"id": response_id, "object": "response.deleted",
                                     "deleted": True})
            return Response(orjson.dumps(store.get(response_id, key.key_id)),
                            media_type="application/json")
        except ModelmixError as exc:
            return openai_error_response(exc)

    return [
        Route("/v1/responses", create, methods=["POST"]),
        Route("/v1/responses/{response_id}", stored, methods=["GET", "DELETE"]),
    ]
