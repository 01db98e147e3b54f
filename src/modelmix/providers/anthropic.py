"""Adapter for Anthropic's Messages API (``POST /v1/messages``) through the official SDK.

How an OpenAI chat request maps onto a Messages request:

* ``system`` / ``developer`` messages -> the top-level ``system`` prompt;
* user / assistant turns -> ``messages`` (consecutive turns of one role merged, as the
  API wants roles to alternate); ``image_url`` parts -> ``image`` blocks (base64 source
  for ``data:`` URLs, ``url`` source otherwise); assistant ``tool_calls`` -> ``tool_use``
  blocks; ``tool`` messages -> ``tool_result`` blocks in a user turn;
* ``max_tokens`` is required: the request's limit, else the deployment's
  ``max_output_tokens``, else 4096;
* ``stop`` -> ``stop_sequences``; function tools -> ``tools`` with ``input_schema``;
  ``tool_choice`` auto/none/required/function -> auto/none/any/tool;
  ``parallel_tool_calls: false`` -> ``disable_parallel_tool_use``;
  ``response_format`` json_schema -> ``output_config.format`` (json_object has no
  Anthropic equivalent and is left to the prompt);
* ``temperature`` and ``top_p`` are not sent: SDK 2.x speaks API version 2026-10-21,
  which rejects sampling parameters with HTTP 400, and no longer accepts them.

Example::

    provider = AnthropicProvider(Deployment(name="claude", provider="anthropic",
                                            model="claude-sonnet-4-5",
                                            api_key_env="ANTHROPIC_API_KEY"))
    response = await provider.complete(request)
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from anthropic import AsyncAnthropic

from modelmix.catalog import Deployment
from modelmix.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    UpstreamUnavailable,
)
from modelmix.protocol import (
    STOP_REASON_TO_FINISH,
    ChatChoice,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ContentPart,
    ResponseMessage,
    Usage,
    now,
)
from modelmix.providers._convert import (
    ChunkBuilder,
    ErrorTranslator,
    bad_request,
    dumps,
    forced_function,
    function_tools,
    make_usage,
    parse_data_url,
    stop_sequences,
    system_text,
    tool_call_arguments,
)
from modelmix.providers.base import Provider, error_from_status, parse_retry_after

__all__ = ["DEFAULT_MAX_TOKENS", "AnthropicProvider"]

#: ``max_tokens`` sent when neither the request nor the deployment sets one (tokens).
DEFAULT_MAX_TOKENS = 4096
#: SDK timeout when the deployment sets none (seconds); the executor's deadline is tighter.
DEFAULT_TIMEOUT_S = 600.0

#: Anthropic ``stop_reason`` -> ``finish_reason`` (shared with ``/v1/messages``).
_FINISH = STOP_REASON_TO_FINISH


class AnthropicProvider(Provider):
    """Calls Anthropic's Messages API for one deployment (``base_url`` optional).

    The SDK never retries (``max_retries=0``): retries and fallback are the executor's.
    The API key is read from ``api_key_env`` at each call, so a rotated key takes effect
    without a restart; without ``api_key_env`` the SDK's own lookup applies
    (``ANTHROPIC_API_KEY``...).
    """

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        self._sdk: AsyncAnthropic | None = None
        self._key: str | None = None

    def _client(self) -> AsyncAnthropic:
        dep = self.deployment
        key = dep.api_key()
        if dep.api_key_env and key is None:
            raise ProviderAuthError(f"{dep.name}: environment variable {dep.api_key_env} "
                                    "is not set", deployment=dep.name)
        if self._sdk is None:
            self._sdk = AsyncAnthropic(
                api_key=key, base_url=dep.base_url, max_retries=0,
                timeout=dep.timeout_s or DEFAULT_TIMEOUT_S,
                default_headers=dict(dep.headers) or None,
            )
            if not (self._sdk.api_key or self._sdk.auth_token or self._sdk.credentials):
                self._sdk = None
                raise ProviderAuthError(f"{dep.name}: no Anthropic API key configured",
                                        deployment=dep.name)
        elif key is not None and key != self._key:
            self._sdk = self._sdk.with_options(api_key=key)  # shares the HTTP pool
        self._key = key
        return self._sdk

    async def complete(self, request: ChatRequest) -> ChatResponse:
        params = build_params(request, self.deployment)
        with _Translate(self.deployment.name):
            message = await self._client().messages.create(**params)
        return _to_response(message)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        params = build_params(request, self.deployment)
        name = self.deployment.name
        state = _StreamState(ChunkBuilder(model=self.deployment.model))
        with _Translate(name):
            events = await self._client().messages.create(**params, stream=True)
            async with events:
                async for event in events:
                    for chunk in state.on_event(event):
                        yield chunk
        if not state.done:
            raise UpstreamUnavailable(f"{name}: stream ended before message_stop",
                                      deployment=name)

    async def aclose(self) -> None:
        if self._sdk is not None:
            await self._sdk.close()


# --- request ---------------------------------------------------------------------------


def build_params(request: ChatRequest, dep: Deployment) -> dict[str, Any]:
    """Keyword arguments for ``messages.create`` (the Messages API request body).

    Raises:
        ProviderBadRequest: content this adapter cannot express (audio, files...).
    """
    params: dict[str, Any] = {
        "model": dep.model,
        "max_tokens": request.completion_limit or dep.max_output_tokens or DEFAULT_MAX_TOKENS,
        "messages": _messages(request.messages, dep.name),
    }
    if system := system_text(request.messages):
        params["system"] = system
    if stops := stop_sequences(request.stop):
        params["stop_sequences"] = stops
    tools = [{"name": t.name, "input_schema": t.parameters,
              **({"description": t.description} if t.description else {})}
             for t in function_tools(request.tools)]
    if tools:
        params["tools"] = tools
        if choice := _tool_choice(request):
            params["tool_choice"] = choice
    rf = request.response_format or {}
    schema = (rf.get("json_schema") or {}).get("schema")
    if rf.get("type") == "json_schema" and schema:
        params["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
    if request.user:
        params["metadata"] = {"user_id": request.user}
    return params


def _tool_choice(request: ChatRequest) -> dict[str, Any] | None:
    choice = request.tool_choice
    out: dict[str, Any]
    if name := forced_function(choice):
        out = {"type": "tool", "name": name}
    elif choice in ("auto", "none", "required"):
        out = {"type": {"required": "any"}.get(choice, choice)}
    elif getattr(request, "parallel_tool_calls", None) is False:
        out = {"type": "auto"}
    else:
        return None
    if getattr(request, "parallel_tool_calls", None) is False and out["type"] != "none":
        out["disable_parallel_tool_use"] = True
    return out


def _messages(messages: list[ChatMessage], deployment: str) -> list[dict[str, Any]]:
    turns: list[dict[str, Any]] = []
    for msg in messages:
        if msg.role in ("system", "developer"):
            continue
        role = "assistant" if msg.role == "assistant" else "user"
        blocks = _blocks(msg, deployment)
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return turns


def _blocks(msg: ChatMessage, deployment: str) -> list[dict[str, Any]]:
    if msg.role == "tool":
        if not msg.tool_call_id:
            raise bad_request(deployment, "a tool message needs a tool_call_id")
        return [{"type": "tool_result", "tool_use_id": msg.tool_call_id, "content": msg.text()}]
    if msg.role == "function":
        raise bad_request(deployment, "legacy 'function' messages are not supported; "
                                      "use tool messages")
    blocks = _content_blocks(msg.content, deployment)
    for call in msg.tool_calls or []:
        fn = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": call.get("id"), "name": fn.get("name"),
                       "input": tool_call_arguments(call, deployment)})
    return blocks


def _content_blocks(content: str | list[ContentPart] | None, deployment: str
                    ) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    blocks: list[dict[str, Any]] = []
    for part in content:
        if part.type == "text":
            if part.text:
                blocks.append({"type": "text", "text": part.text})
        elif part.type == "image_url" and part.image_url is not None:
            blocks.append({"type": "image", "source": _image_source(part.image_url.url,
                                                                     deployment)})
        else:
            raise bad_request(deployment, f"content part type {part.type!r} is not supported "
                                          "by the Anthropic adapter")
    return blocks


def _image_source(url: str, deployment: str) -> dict[str, Any]:
    data = parse_data_url(url, deployment)
    if data is not None:
        return {"type": "base64", "media_type": data.mime_type, "data": data.base64}
    if url.startswith(("http://", "https://")):
        return {"type": "url", "url": url}
    raise bad_request(deployment, "image_url must be an http(s) or base64 data URL")


# --- response --------------------------------------------------------------------------


def _usage(usage: Any) -> Usage:
    """OpenAI usage from Anthropic's: prompt tokens include cache writes and reads."""
    prompt = ((getattr(usage, "input_tokens", None) or 0)
              + (getattr(usage, "cache_creation_input_tokens", None) or 0)
              + (getattr(usage, "cache_read_input_tokens", None) or 0))
    return make_usage(prompt, getattr(usage, "output_tokens", None))


def _to_response(message: Any) -> ChatResponse:
    text = "".join(b.text for b in message.content if b.type == "text")
    calls = [{"id": b.id, "type": "function",
              "function": {"name": b.name, "arguments": dumps(b.input)}}
             for b in message.content if b.type == "tool_use"]
    finish = _FINISH.get(message.stop_reason or "", "stop")
    reply = ResponseMessage(content=text or (None if calls else ""), tool_calls=calls or None)
    return ChatResponse(id=message.id, created=now(), model=message.model,
                        choices=[ChatChoice(message=reply, finish_reason=finish)],
                        usage=_usage(message.usage))


@dataclass
class _StreamState:
    """Turns Messages stream events into OpenAI chunks (one state per stream)."""

    build: ChunkBuilder
    tool_index: dict[int, int] = field(default_factory=dict)  # content block -> tool call
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish: str = "stop"
    done: bool = False

    def on_event(self, event: Any) -> list[ChatChunk]:
        handler = getattr(self, f"_on_{event.type}", None)
        return handler(event) if handler is not None else []

    def _on_message_start(self, event: Any) -> list[ChatChunk]:
        message = event.message
        self.build.id, self.build.model = message.id or self.build.id, message.model
        usage = _usage(message.usage)
        self.prompt_tokens, self.completion_tokens = usage.prompt_tokens, usage.completion_tokens
        return [self.build.role()]

    def _on_content_block_start(self, event: Any) -> list[ChatChunk]:
        block = event.content_block
        if block.type == "tool_use":
            index = self.tool_index[event.index] = len(self.tool_index)
            return [self.build.tool_call(index, call_id=block.id, name=block.name)]
        if block.type == "text" and block.text:
            return [self.build.content(block.text)]
        return []

    def _on_content_block_delta(self, event: Any) -> list[ChatChunk]:
        delta = event.delta
        if delta.type == "text_delta" and delta.text:
            return [self.build.content(delta.text)]
        if delta.type == "input_json_delta" and delta.partial_json:
            index = self.tool_index.get(event.index)
            if index is not None:
                return [self.build.tool_call(index, arguments=delta.partial_json)]
        return []

    def _on_message_delta(self, event: Any) -> list[ChatChunk]:
        if event.delta.stop_reason:
            self.finish = _FINISH.get(event.delta.stop_reason, "stop")
        if event.usage is not None:  # cumulative counts
            self.completion_tokens = event.usage.output_tokens or self.completion_tokens
            if getattr(event.usage, "input_tokens", None):
                self.prompt_tokens = _usage(event.usage).prompt_tokens
        return []

    def _on_message_stop(self, event: Any) -> list[ChatChunk]:
        self.done = True
        usage = make_usage(self.prompt_tokens, self.completion_tokens)
        return [self.build.finish(self.finish), self.build.usage(usage)]


# --- errors ----------------------------------------------------------------------------


class _Translate(ErrorTranslator):
    """Anthropic SDK and httpx2 failures -> the modelmix taxonomy (the one place).

    An ``event: error`` inside a 200 stream reaches us as an APIStatusError with status
    200; 529 overloaded (like every 5xx) is UpstreamUnavailable, retryable.
    """

    def map(self, exc: BaseException) -> ProviderError | None:
        name = self.deployment
        if isinstance(exc, anthropic.APIStatusError):
            return self._from_status(exc)
        if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException | TimeoutError):
            return ProviderTimeout(f"{name}: upstream timed out", deployment=name)
        if isinstance(exc, anthropic.AnthropicError | httpx2.TransportError | OSError):
            cause = exc.__cause__ or exc
            return UpstreamUnavailable(
                f"{name}: {type(cause).__name__}: {cause}"[:500], deployment=name)
        return None

    def _from_status(self, exc: anthropic.APIStatusError) -> ProviderError:
        name = self.deployment
        message = exc.api_message or exc.message
        if exc.type:
            message = f"{exc.type}: {message}"
        if exc.status_code < 400:  # an `event: error` inside a 200 stream
            return UpstreamUnavailable(f"{name}: error mid-stream: {message}"[:2000],
                                       deployment=name)
        retry_after = parse_retry_after(exc.response.headers.get("retry-after"))
        return error_from_status(exc.status_code, message, deployment=name,
                                 retry_after=retry_after)
