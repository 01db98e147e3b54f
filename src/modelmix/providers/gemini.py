"""Adapter for the Gemini API (``models/{model}:generateContent`` and
``:streamGenerateContent?alt=sse``) through the official ``google-genai`` SDK.

How an OpenAI chat request maps onto a generateContent request:

* ``system`` / ``developer`` messages -> ``system_instruction``;
* user / assistant turns -> ``contents`` with roles ``user`` / ``model`` (consecutive
  turns of one role merged); ``image_url`` parts -> ``inline_data`` for base64 ``data:``
  URLs, ``file_data`` (``file_uri`` plus a MIME type guessed from the path) for http(s)
  URLs, as the Gemini file-input guide documents; ``input_audio`` (wav, mp3) and ``file``
  parts with base64 ``file_data`` (PDF) -> ``inline_data``;
* assistant ``tool_calls`` -> ``function_call`` parts; ``tool`` messages ->
  ``function_response`` parts (the function name is looked up from the call's id);
  Gemini's ``thought_signature`` travels in the OpenAI tool call as
  ``extra_content.google.thought_signature`` (the shape of Google's own OpenAI
  compatibility layer), so thinking models accept the replayed history;
* function tools -> ``function_declarations`` with ``parameters_json_schema``;
  ``tool_choice`` auto/none/required/function -> mode AUTO/NONE/ANY (+ allowed names);
* ``stop``, ``temperature``, ``top_p``, ``max_tokens``, ``seed`` and the penalties ->
  ``generation_config``; ``response_format`` json_object/json_schema ->
  ``response_mime_type: application/json`` (+ ``response_json_schema``).

Example::

    provider = GeminiProvider(Deployment(name="flash", provider="gemini",
                                         model="gemini-2.5-flash",
                                         api_key_env="GEMINI_API_KEY"))
    async for chunk in provider.stream(request):
        print(chunk.text, end="")
"""

from __future__ import annotations

import base64
import mimetypes
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from modelmix.catalog import Deployment
from modelmix.errors import (
    ProviderAuthError,
    ProviderError,
    ProviderTimeout,
    UpstreamUnavailable,
)
from modelmix.protocol import (
    ChatChoice,
    ChatChunk,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    ContentPart,
    ResponseMessage,
    Usage,
    new_completion_id,
    now,
)
from modelmix.providers._convert import (
    ChunkBuilder,
    ErrorTranslator,
    b64decode,
    bad_request,
    dumps,
    forced_function,
    function_tools,
    make_usage,
    new_tool_call_id,
    parse_data_url,
    stop_sequences,
    system_text,
    tool_call_arguments,
    tool_names_by_id,
    tool_result_object,
)
from modelmix.providers.base import Provider, error_from_status, parse_retry_after

__all__ = ["GeminiProvider"]

#: SDK timeout when the deployment sets none (seconds); the executor's deadline is tighter.
DEFAULT_TIMEOUT_S = 600.0

_CONTENT_FILTER = frozenset({
    "SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION", "MODEL_ARMOR", "LANGUAGE",
})
_API_VERSION = re.compile(r"^(?P<base>.*?)/(?P<version>v\d+(?:alpha|beta)?)/?$")


class GeminiProvider(Provider):
    """Calls the Gemini API for one deployment (``base_url`` optional).

    The SDK never retries (one attempt): retries and fallback are the executor's. The
    API key is read from ``api_key_env`` at each call, so a rotated key takes effect
    without a restart; without ``api_key_env`` the SDK reads ``GOOGLE_API_KEY`` /
    ``GEMINI_API_KEY``. A ``base_url`` ending in an API version (``.../v1beta``) selects
    that version.
    """

    def __init__(self, deployment: Deployment):
        super().__init__(deployment)
        self._sdk: genai.Client | None = None
        self._key: str | None = None
        self._retired: list[genai.Client] = []

    def _client(self) -> genai.Client:
        dep = self.deployment
        key = dep.api_key()
        if dep.api_key_env and key is None:
            raise ProviderAuthError(f"{dep.name}: environment variable {dep.api_key_env} "
                                    "is not set", deployment=dep.name)
        if self._sdk is None or key != self._key:
            try:
                client = genai.Client(api_key=key, vertexai=False,
                                      http_options=_http_options(dep))
            except ValueError as exc:  # the SDK found no API key anywhere
                raise ProviderAuthError(f"{dep.name}: no Gemini API key configured",
                                        deployment=dep.name) from exc
            if self._sdk is not None:  # key rotated: close the old one with the provider
                self._retired.append(self._sdk)
            self._sdk, self._key = client, key
        return self._sdk

    async def complete(self, request: ChatRequest) -> ChatResponse:
        contents, config = build_request(request, self.deployment)
        with _Translate(self.deployment.name):
            response = await self._client().aio.models.generate_content(
                model=self.deployment.model, contents=contents, config=config)
        return _to_response(response, self.deployment.model)

    async def stream(self, request: ChatRequest) -> AsyncIterator[ChatChunk]:
        contents, config = build_request(request, self.deployment)
        translate = _Translate(self.deployment.name)
        state = _StreamState(ChunkBuilder(model=self.deployment.model))
        with translate:
            responses = await self._client().aio.models.generate_content_stream(
                model=self.deployment.model, contents=contents, config=config)
            try:
                async for response in responses:
                    translate.mid_stream = True
                    for chunk in state.on_response(response):
                        yield chunk
            finally:  # release the connection when the caller stops early
                aclose = getattr(responses, "aclose", None)
                if aclose is not None:
                    await aclose()
        for chunk in state.end(self.deployment.name):
            yield chunk

    async def aclose(self) -> None:
        for client in [*self._retired, *([self._sdk] if self._sdk else [])]:
            await client.aio.aclose()
            client.close()
        self._retired, self._sdk = [], None


def _http_options(dep: Deployment) -> types.HttpOptions:
    base, version = dep.base_url, None
    if base and (match := _API_VERSION.match(base)):
        base, version = match["base"], match["version"]
    return types.HttpOptions(
        base_url=base, api_version=version, headers=dict(dep.headers) or None,
        timeout=int((dep.timeout_s or DEFAULT_TIMEOUT_S) * 1000),  # milliseconds
        retry_options=types.HttpRetryOptions(attempts=1),
    )


# --- request ---------------------------------------------------------------------------


def build_request(request: ChatRequest, dep: Deployment
                  ) -> tuple[list[types.Content], types.GenerateContentConfig]:
    """The ``contents`` and ``config`` for ``generate_content``.

    Raises:
        ProviderBadRequest: content this adapter cannot express (a ``file_id``, an audio
            format other than wav / mp3, a malformed data URL...).
    """
    rf = request.response_format or {}
    schema = (rf.get("json_schema") or {}).get("schema")
    declarations = [types.FunctionDeclaration(name=t.name, description=t.description,
                                              parameters_json_schema=t.parameters)
                    for t in function_tools(request.tools)]
    config = types.GenerateContentConfig(
        system_instruction=system_text(request.messages) or None,
        temperature=request.temperature, top_p=request.top_p,
        max_output_tokens=request.completion_limit,
        stop_sequences=stop_sequences(request.stop), seed=request.seed,
        presence_penalty=request.presence_penalty,
        frequency_penalty=request.frequency_penalty,
        response_mime_type="application/json"
        if rf.get("type") in ("json_object", "json_schema") else None,
        response_json_schema=schema if rf.get("type") == "json_schema" else None,
        tools=[types.Tool(function_declarations=declarations)] if declarations else None,
        tool_config=_tool_config(request.tool_choice) if declarations else None,
        automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
    )
    return _contents(request.messages, dep.name), config


def _tool_config(choice: str | dict[str, Any] | None) -> types.ToolConfig | None:
    mode = types.FunctionCallingConfigMode
    modes = {"auto": mode.AUTO, "none": mode.NONE, "required": mode.ANY}
    if name := forced_function(choice):
        fcc = types.FunctionCallingConfig(mode=mode.ANY, allowed_function_names=[name])
    elif isinstance(choice, str) and choice in modes:
        fcc = types.FunctionCallingConfig(mode=modes[choice])
    else:
        return None
    return types.ToolConfig(function_calling_config=fcc)


def _contents(messages: list[ChatMessage], deployment: str) -> list[types.Content]:
    names = tool_names_by_id(messages)
    contents: list[types.Content] = []
    for msg in messages:
        if msg.role in ("system", "developer"):
            continue
        role = "model" if msg.role == "assistant" else "user"
        parts = _message_parts(msg, names, deployment)
        if not parts:
            continue
        if contents and contents[-1].role == role:
            (contents[-1].parts or []).extend(parts)
        else:
            contents.append(types.Content(role=role, parts=parts))
    return contents


def _message_parts(msg: ChatMessage, names: dict[str, str], deployment: str
                   ) -> list[types.Part]:
    if msg.role == "tool":
        name = names.get(msg.tool_call_id or "") or msg.name
        if not name:
            raise bad_request(deployment, "a tool message must answer a tool call of an "
                                          "earlier assistant message (tool_call_id)")
        return [types.Part(function_response=types.FunctionResponse(
            id=msg.tool_call_id, name=name, response=tool_result_object(msg.text())))]
    if msg.role == "function":
        raise bad_request(deployment, "legacy 'function' messages are not supported; "
                                      "use tool messages")
    parts = _content_parts(msg.content, deployment)
    for call in msg.tool_calls or []:
        parts.append(_function_call_part(call, deployment))
    return parts


def _function_call_part(call: dict[str, Any], deployment: str) -> types.Part:
    fn = call.get("function") or {}
    signature = ((call.get("extra_content") or {}).get("google") or {}).get("thought_signature")
    return types.Part(
        function_call=types.FunctionCall(id=call.get("id"), name=fn.get("name"),
                                         args=tool_call_arguments(call, deployment)),
        thought_signature=b64decode(signature, deployment) if signature else None,
    )


def _content_parts(content: str | list[ContentPart] | None, deployment: str
                   ) -> list[types.Part]:
    if content is None or isinstance(content, str):
        return [types.Part(text=content)] if content else []
    parts: list[types.Part] = []
    for part in content:
        if part.type == "text":
            if part.text:
                parts.append(types.Part(text=part.text))
        elif part.type == "image_url" and part.image_url is not None:
            parts.append(_image_part(part.image_url.url, deployment))
        elif part.type == "input_audio" and part.input_audio is not None:
            mime = _AUDIO_TYPES.get(part.input_audio.format.lower())
            if mime is None:
                raise bad_request(deployment, "input_audio format must be wav or mp3")
            parts.append(types.Part(inline_data=types.Blob(
                mime_type=mime, data=b64decode(part.input_audio.data, deployment))))
        elif part.type == "file" and part.file is not None and part.file.file_data:
            data = parse_data_url(part.file.file_data, deployment)
            if data is None:
                raise bad_request(deployment, "file_data must be a base64 data URL")
            parts.append(types.Part(inline_data=types.Blob(
                mime_type=data.mime_type, data=b64decode(data.base64, deployment))))
        else:
            raise bad_request(deployment, f"content part type {part.type!r} is not supported "
                                          "by the Gemini adapter")
    return parts


#: Gemini's audio types for OpenAI's ``input_audio.format`` values
#: (https://ai.google.dev/gemini-api/docs/audio: WAV ``audio/wav``, MP3 ``audio/mp3``).
_AUDIO_TYPES = {"wav": "audio/wav", "mp3": "audio/mp3"}


def _image_part(url: str, deployment: str) -> types.Part:
    data = parse_data_url(url, deployment)
    if data is not None:
        return types.Part(inline_data=types.Blob(mime_type=data.mime_type,
                                                 data=b64decode(data.base64, deployment)))
    if url.startswith(("http://", "https://")):
        mime = mimetypes.guess_type(url.split("?", 1)[0])[0] or "image/jpeg"
        return types.Part(file_data=types.FileData(file_uri=url, mime_type=mime))
    raise bad_request(deployment, "image_url must be an http(s) or base64 data URL")


def _tool_call(call: types.FunctionCall, signature: bytes | None) -> dict[str, Any]:
    """An OpenAI tool call from a ``function_call`` part (id generated when absent)."""
    out: dict[str, Any] = {"id": call.id or new_tool_call_id(), "type": "function",
                           "function": {"name": call.name or "",
                                        "arguments": dumps(call.args or {})}}
    if signature:
        thought = base64.b64encode(signature).decode("ascii")
        out["extra_content"] = {"google": {"thought_signature": thought}}
    return out


# --- response --------------------------------------------------------------------------


def _usage(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    """OpenAI usage from ``usageMetadata``; thinking tokens count as completion tokens."""
    if meta is None:
        return Usage()
    completion = (meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0)
    return make_usage(meta.prompt_token_count, completion, meta.total_token_count)


def _finish_reason(reason: Any, has_calls: bool) -> str:
    name = str(getattr(reason, "value", reason) or "")
    if name == "MAX_TOKENS":
        return "length"
    if name in _CONTENT_FILTER:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def _parts(response: types.GenerateContentResponse) -> list[types.Part]:
    cand = response.candidates[0] if response.candidates else None
    if cand is None or cand.content is None:
        return []
    return [p for p in cand.content.parts or [] if not p.thought]


def _blocked(response: types.GenerateContentResponse) -> bool:
    feedback = response.prompt_feedback
    return not response.candidates and bool(feedback and feedback.block_reason)


def _to_response(response: types.GenerateContentResponse, model: str) -> ChatResponse:
    parts = _parts(response)
    text = "".join(p.text for p in parts if p.text)
    calls = [_tool_call(p.function_call, p.thought_signature)
             for p in parts if p.function_call is not None]
    cand = response.candidates[0] if response.candidates else None
    finish = ("content_filter" if _blocked(response)
              else _finish_reason(cand.finish_reason if cand else None, bool(calls)))
    reply = ResponseMessage(content=text or (None if calls else ""), tool_calls=calls or None)
    return ChatResponse(id=response.response_id or new_completion_id(), created=now(),
                        model=response.model_version or model,
                        choices=[ChatChoice(message=reply, finish_reason=finish)],
                        usage=_usage(response.usage_metadata))


@dataclass
class _StreamState:
    """Turns streamed GenerateContentResponse objects into OpenAI chunks."""

    build: ChunkBuilder
    started: bool = False
    tool_calls: int = 0
    finish: str | None = None
    usage: Usage | None = None

    def on_response(self, response: types.GenerateContentResponse) -> list[ChatChunk]:
        out: list[ChatChunk] = []
        if not self.started:
            self.started = True
            self.build.id = response.response_id or self.build.id
            self.build.model = response.model_version or self.build.model
            out.append(self.build.role())
        if response.usage_metadata is not None:  # cumulative counts
            self.usage = _usage(response.usage_metadata)
        for part in _parts(response):
            if part.function_call is not None:
                call = _tool_call(part.function_call, part.thought_signature)
                fn, extra = call["function"], call.get("extra_content")
                out.append(self.build.tool_call(
                    self.tool_calls, call_id=call["id"], name=fn["name"],
                    arguments=fn["arguments"], extra={"extra_content": extra} if extra else None))
                self.tool_calls += 1
            elif part.text:
                out.append(self.build.content(part.text))
        cand = response.candidates[0] if response.candidates else None
        if _blocked(response):
            self.finish = "content_filter"
        elif cand is not None and cand.finish_reason is not None:
            self.finish = _finish_reason(cand.finish_reason, self.tool_calls > 0)
        return out

    def end(self, deployment: str) -> list[ChatChunk]:
        """The finish and usage chunks. Raises UpstreamUnavailable on a cut-off stream."""
        if self.finish is None:
            raise UpstreamUnavailable(f"{deployment}: stream ended without a finishReason",
                                      deployment=deployment)
        return [self.build.finish(self.finish), self.build.usage(self.usage or Usage())]


# --- errors ----------------------------------------------------------------------------


class _Translate(ErrorTranslator):
    """google-genai SDK and aiohttp failures -> the modelmix taxonomy (the one place)."""

    def map(self, exc: BaseException) -> ProviderError | None:
        name = self.deployment
        if isinstance(exc, genai_errors.APIError):
            return self._from_api_error(exc)
        if isinstance(exc, TimeoutError):
            return ProviderTimeout(f"{name}: upstream timed out", deployment=name)
        if isinstance(exc, aiohttp.ClientError | OSError | genai_errors.UnknownApiResponseError):
            return UpstreamUnavailable(f"{name}: {type(exc).__name__}: {exc}"[:500],
                                       deployment=name)
        return None

    def _from_api_error(self, exc: genai_errors.APIError) -> ProviderError:
        name = self.deployment
        message = f"{exc.status}: {exc.message}" if exc.status else str(exc.message)
        if self.mid_stream or not isinstance(exc.code, int) or exc.code < 400:
            return UpstreamUnavailable(f"{name}: error mid-stream: {message}"[:2000],
                                       deployment=name)
        status = 401 if _reason(exc.details) == "API_KEY_INVALID" else exc.code
        headers = getattr(exc.response, "headers", None) or {}
        retry_after = parse_retry_after(headers.get("retry-after")) or _retry_delay(exc.details)
        return error_from_status(status, message, deployment=name, retry_after=retry_after)


def _error_details(body: Any) -> list[dict[str, Any]]:
    error = body.get("error", body) if isinstance(body, dict) else {}
    details = error.get("details") if isinstance(error, dict) else None
    return [d for d in details if isinstance(d, dict)] if isinstance(details, list) else []


def _reason(body: Any) -> str | None:
    """``google.rpc.ErrorInfo.reason`` (e.g. API_KEY_INVALID, sent with HTTP 400)."""
    return next((str(d["reason"]) for d in _error_details(body) if d.get("reason")), None)


def _retry_delay(body: Any) -> float | None:
    """Seconds from ``google.rpc.RetryInfo.retryDelay`` (a Duration such as ``"37s"``)."""
    for detail in _error_details(body):
        delay = detail.get("retryDelay")
        if isinstance(delay, str) and delay.endswith("s"):
            try:
                return max(0.0, float(delay[:-1]))
            except ValueError:
                return None
    return None
