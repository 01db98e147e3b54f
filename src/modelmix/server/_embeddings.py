"""``POST /v1/embeddings``: OpenAI's Embeddings API over
:meth:`~modelmix.engine.ChatService.embed` (engine/_embed.py).

The same shell as chat completions: key auth (fails closed), the in-flight body budget,
JSON limits, the ``tags`` field / header for the data policy, a usage row for every
request refused before the service (bad JSON, auth, token arrays...), errors in the
OpenAI format, and the ``x-modelmix-*`` headers (deployment, route reason, cost).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelmix.engine import CallContext
from modelmix.errors import ModelmixError
from modelmix.guard import TAGS_HEADER, request_tags
from modelmix.protocol import EmbeddingRequest, embedding_json, parse_embedding_request
from modelmix.server._bodies import BodyHold
from modelmix.server._gateway import (
    HEADER_COST,
    _model_name,
    _request_id,
    _route_headers,
    _unless_disconnected,
    error_response,
)

if TYPE_CHECKING:
    from modelmix.server._gateway import Gateway

__all__ = ["EmbeddingsEndpoint", "routes"]


class EmbeddingsEndpoint:
    """``POST /v1/embeddings`` for one gateway.

    Example (the official SDK)::

        client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=key)
        vectors = client.embeddings.create(model="local-embed", input=["a", "b"])
    """

    def __init__(self, gateway: Gateway):
        self.gateway = gateway

    async def handle(self, request: Request) -> Response:
        ctx = CallContext(request_id=_request_id(request), endpoint="embeddings")
        hold = BodyHold(None, 0)  # filled once the body has room; released at the end
        try:
            parsed = await self._parse(request, ctx, hold)
            if isinstance(parsed, Response):
                return parsed
            return await self._embed(request, parsed, ctx)
        finally:
            hold.release()

    async def _parse(self, request: Request, ctx: CallContext, hold: BodyHold
                     ) -> EmbeddingRequest | Response:
        """Authenticate, read and validate: the request, or the error response after
        recording the refusal."""
        gateway = self.gateway
        model: str | None = None
        try:
            _, data = await gateway.read_json(request, ctx, hold,
                                              request.headers.get("authorization"))
            model = _model_name(data)
            ctx.tags = request_tags(data.pop("tags", None), request.headers.get(TAGS_HEADER))
            return parse_embedding_request(data)
        except ModelmixError as exc:
            gateway.service.record_rejected(ctx, exc, model)
            return error_response(exc, ctx.request_id)

    async def _embed(self, request: Request, parsed: EmbeddingRequest,
                     ctx: CallContext) -> Response:
        try:
            done = await _unless_disconnected(request, self.gateway.service.embed(parsed, ctx))
        except ModelmixError as exc:
            return error_response(exc, ctx.request_id)
        headers = _route_headers(done.decision, done.deployment.name, ctx.request_id)
        headers[HEADER_COST] = f"{done.cost_usd:.8f}"
        return Response(embedding_json(done.response), media_type="application/json",
                        headers=headers)


def routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes this module serves, under ``/v1`` (app.py adds the same without it)."""
    return [Route("/v1/embeddings", EmbeddingsEndpoint(gateway).handle, methods=["POST"])]
