"""``POST /v1/completions``: OpenAI's legacy text completions, as a :class:`Dialect`.

The prompt becomes one user message of a chat request (protocol/_completions.py), which
runs the whole chat pipeline (guard, routing, cache, budgets, usage rows with endpoint
``completions``); the answer and the stream are written back as ``text_completion``
objects. docs/endpoints.md says what is mapped and what is refused.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from modelmix.engine import CallContext, Completion
from modelmix.errors import invalid_request
from modelmix.protocol import DONE_EVENT, ChatChunk, ChatRequest, error_event
from modelmix.protocol._completions import CompletionRequest, CompletionStream, text_completion
from modelmix.server._dialect import Dialect, as_error

if TYPE_CHECKING:
    from modelmix.server._gateway import Gateway

__all__ = ["CompletionsDialect", "routes"]


class CompletionsDialect(Dialect):
    """Legacy completions over chat; one instance per request (it keeps the request's
    prompt, ``echo`` and ``logprobs`` for the answer)."""

    endpoint = "completions"

    def __init__(self) -> None:
        self.request: CompletionRequest | None = None

    def to_chat(self, data: dict[str, Any], ctx: CallContext) -> dict[str, Any]:
        try:
            self.request = CompletionRequest.model_validate(data)
        except ValidationError as exc:
            raise invalid_request(exc) from exc
        return self.request.to_chat()

    def render(self, done: Completion, chat: ChatRequest, ctx: CallContext) -> bytes:
        assert self.request is not None
        return orjson.dumps(text_completion(done.response, self.request))

    async def stream(self, chunks: AsyncIterator[ChatChunk], chat: ChatRequest,
                     ctx: CallContext) -> AsyncIterator[bytes]:
        assert self.request is not None
        converter = CompletionStream(self.request, chat.include_usage)
        try:
            async for chunk in chunks:
                for event in converter.convert(chunk):
                    yield b"data: " + orjson.dumps(event) + b"\n\n"
        except Exception as exc:
            yield error_event(as_error(exc, ctx.request_id).to_openai())
            return
        yield DONE_EVENT


def routes(gateway: Gateway) -> list[BaseRoute]:
    """The routes this module serves, under ``/v1`` (app.py adds the same without it)."""

    async def completions(request: Request) -> Response:
        return await gateway.handle(request, CompletionsDialect())

    return [Route("/v1/completions", completions, methods=["POST"])]
