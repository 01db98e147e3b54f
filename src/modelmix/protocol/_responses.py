"""OpenAI Responses API requests (``POST /v1/responses``) and their chat completion form.

Mirrors https://platform.openai.com/docs/api-reference/responses/create as the ``openai``
SDK's ``types/responses`` spell it. Every field is either mapped onto a chat completion
field, kept for the response object (``metadata``, ``store``...), or refused with a 400
naming it: nothing is dropped silently (docs/endpoints.md lists which is which).

Example::

    request = ResponsesRequest.parse({"model": "auto", "input": "hi", "instructions": "Be brief"})
    chat = request.to_chat([], request.turn())  # {"model": "auto", "messages": [system, user]}
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelmix.errors import InvalidRequest, invalid_request
from modelmix.protocol._echo import named
from modelmix.protocol._responses_items import (
    Item,
    TurnMessages,
    append_item,
    check_items,
    typed_items,
    unsupported,
)

__all__ = ["ResponsesRequest", "TurnMessages"]

#: Fields OpenAI's Responses API has that this gateway cannot honour, and why.
_REFUSED: dict[str, str] = {
    "conversation": "conversation objects are not kept here; send previous_response_id "
                    "or the whole conversation as input",
    "prompt": "stored prompt templates are not available here; send the text as input",
    "max_tool_calls": "built-in tool calls are not run here",
    "context_management": "server-side context compaction is not done here",
    "moderation": "moderation runs are not done here (the data guard screens requests)",
    "background_options": "background responses are not supported",
    "prompt_cache_options": "prompt cache options are not forwarded",
    "image": "image generation options are not supported",
    "access_programs": "access programs are OpenAI's own",
}

#: Every field this gateway reads (``router``, ``tags`` and ``cache`` are taken out by
#: the gateway before this model sees the body).
_KNOWN = frozenset({
    "model", "input", "instructions", "tools", "tool_choice", "max_output_tokens",
    "temperature", "top_p", "text", "metadata", "user", "parallel_tool_calls", "store",
    "stream", "stream_options", "previous_response_id", "reasoning", "include",
    "truncation", "service_tier", "prompt_cache_key", "prompt_cache_retention",
    "safety_identifier", "background", "top_logprobs", "timeout",
})


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- tools and text format ----------------------------------------------------------------


class FunctionTool(_Wire):
    """The Responses function tool, flat: ``{type, name, description, parameters, strict}``."""

    type: Literal["function"]
    name: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    def to_chat(self) -> dict[str, Any]:
        function = self.model_dump(exclude={"type"}, exclude_none=True)
        return {"type": "function", "function": function}


class TextFormat(_Wire):
    type: Literal["text", "json_object", "json_schema"]
    name: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    description: str | None = None
    strict: bool | None = None

    def to_chat(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "json_object"}
        if not self.name or self.schema_ is None:
            raise ValueError("a 'json_schema' format needs 'name' and 'schema'")
        spec = {"name": self.name, "schema": self.schema_, "description": self.description,
                "strict": self.strict}
        return {"type": "json_schema",
                "json_schema": {k: v for k, v in spec.items() if v is not None}}


class TextConfig(_Wire):
    format: TextFormat | None = None
    verbosity: Literal["low", "medium", "high"] | None = None


class ReasoningConfig(_Wire):
    effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    summary: None = None  # summaries are not produced: refused when set
    generate_summary: None = None


# -- the request --------------------------------------------------------------------------


class ResponsesRequest(_Wire):
    """A ``POST /v1/responses`` body, validated. ``max_output_tokens`` is tokens; build
    one with :meth:`parse`, which refuses what cannot be honoured (InvalidRequest, 400)."""

    model: str = Field(min_length=1)
    input: str | list[Item] | None = None
    instructions: str | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: str | dict[str, Any] | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    text: TextConfig | None = None
    metadata: dict[str, str] | None = Field(default=None, max_length=16)
    user: str | None = None
    parallel_tool_calls: bool | None = None
    store: bool | None = None
    stream: bool | None = None
    stream_options: dict[str, Any] | None = None
    previous_response_id: str | None = Field(default=None, min_length=1)
    reasoning: ReasoningConfig | None = None
    include: list[str] | None = None
    truncation: Literal["disabled"] | None = None
    service_tier: Literal["auto", "default"] | None = None
    prompt_cache_key: str | None = None
    prompt_cache_retention: str | None = None
    safety_identifier: str | None = None
    background: Literal[False] | None = None
    top_logprobs: Literal[0] | None = None
    #: modelmix extension, as on chat completions: the deadline in seconds.
    timeout: float | None = Field(default=None, gt=0, le=3600)

    @classmethod
    def parse(cls, data: dict[str, Any]) -> ResponsesRequest:
        """Validate a body. Raises InvalidRequest (400) naming the first field it cannot
        honour (``code`` ``unsupported_parameter``) or the first invalid one."""
        _refuse_unsupported(data)
        try:
            request = cls.model_validate(typed_items(data))
        except ValidationError as exc:
            raise invalid_request(exc) from exc
        if isinstance(request.input, list):
            check_items(request.input)
        return request

    @property
    def keep(self) -> bool:
        """Whether the response is kept for ``previous_response_id`` (``store``, default
        true as on OpenAI)."""
        return self.store is not False

    def turn(self) -> TurnMessages:
        """This request's ``input`` as chat messages (``instructions`` not included)."""
        if self.input is None:
            return []
        if isinstance(self.input, str):
            return [{"role": "user", "content": self.input}]
        messages: TurnMessages = []
        for item in self.input:
            append_item(messages, item)
        return messages

    def to_chat(self, history: TurnMessages, turn: TurnMessages) -> dict[str, Any]:
        """The chat completion body: ``instructions`` as the system message, then
        ``history`` (earlier turns of a ``previous_response_id`` chain), then ``turn``."""
        messages = ([{"role": "system", "content": self.instructions}]
                    if self.instructions is not None else [])
        messages += history + turn
        if not messages:
            raise InvalidRequest("input: give input, instructions or previous_response_id",
                                 param="input", code="missing_required_parameter")
        body: dict[str, Any] = {"model": self.model, "messages": messages}
        if self.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        if self.tools:
            body["tools"] = [t.to_chat() for t in self.tools]
        if self.tool_choice is not None:
            body["tool_choice"] = _chat_tool_choice(self.tool_choice)
        body.update(self._sampling())
        return body

    def _sampling(self) -> dict[str, Any]:
        """The fields that map one to one (renamed where the chat API names them apart)."""
        fields: dict[str, Any] = {
            "max_completion_tokens": self.max_output_tokens,
            "temperature": self.temperature, "top_p": self.top_p, "user": self.user,
            "parallel_tool_calls": self.parallel_tool_calls,
            "prompt_cache_key": self.prompt_cache_key,
            "prompt_cache_retention": self.prompt_cache_retention,
            "safety_identifier": self.safety_identifier, "timeout": self.timeout,
            "service_tier": self.service_tier,
            "reasoning_effort": self.reasoning.effort if self.reasoning else None,
        }
        if self.text is not None:
            fields["verbosity"] = self.text.verbosity
            if self.text.format is not None:
                try:
                    fields["response_format"] = self.text.format.to_chat()
                except ValueError as exc:
                    raise InvalidRequest(f"text.format: {exc}", param="text.format",
                                         code="invalid_value") from None
        return {k: v for k, v in fields.items() if v is not None}


def _refuse_unsupported(data: dict[str, Any]) -> None:
    """Raise InvalidRequest naming the first field this gateway cannot honour."""
    for name, value in data.items():
        if name in _REFUSED and value is not None:
            raise unsupported(name, _REFUSED[name])
        if name not in _KNOWN and name not in _REFUSED:
            raise unsupported(name, "this gateway does not know it")
    if data.get("background") is True:
        raise unsupported("background", "background responses are not supported; "
                           "stream instead")
    include = data.get("include")
    if isinstance(include, list) and include:
        raise unsupported("include", f"{named('value', include[0])} is not produced here "
                           "(no built-in tools, no logprobs, no encrypted reasoning)")
    if data.get("truncation") == "auto":
        raise unsupported("truncation", "'auto' truncation is not done here")
    if data.get("top_logprobs"):
        raise unsupported("top_logprobs", "logprobs are not returned on /v1/responses")
    reasoning = data.get("reasoning")
    if isinstance(reasoning, dict):
        for key in ("summary", "generate_summary"):
            if reasoning.get(key) is not None:
                raise unsupported(f"reasoning.{key}", "reasoning summaries are not "
                                   "produced here (reasoning.effort is passed on)")
    options = data.get("stream_options")
    if isinstance(options, dict):
        for key, value in options.items():
            if key != "include_obfuscation" or value:
                raise unsupported(f"stream_options.{key}", "not supported here")
    _refuse_tools(data.get("tools"), data.get("tool_choice"))


def _refuse_tools(tools: Any, choice: Any) -> None:
    for i, tool in enumerate(tools if isinstance(tools, list) else ()):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise unsupported(f"tools.{i}.type", f"tools of {named('type', kind)} are not "
                               "supported here: only 'function' tools (built-in tools such as "
                               "web_search, file_search, computer_use or "
                               "code_interpreter run on OpenAI's servers only)")
    if isinstance(choice, dict) and choice.get("type") != "function":
        raise unsupported("tool_choice.type", "tool_choice of "
                           f"{named('type', choice.get('type'))} is not supported here: use "
                           "'none', 'auto', 'required' or "
                           "{'type': 'function', 'name': ...}")

def _chat_tool_choice(choice: str | dict[str, Any]) -> str | dict[str, Any]:
    if isinstance(choice, str):
        if choice not in ("none", "auto", "required"):
            raise InvalidRequest("tool_choice must be 'none', 'auto', 'required' or an object",
                                 param="tool_choice", code="invalid_value")
        return choice
    name = choice.get("name")
    if not isinstance(name, str) or not name or set(choice) - {"type", "name"}:
        raise InvalidRequest("tool_choice: a function choice is {'type': 'function', "
                             "'name': ...}", param="tool_choice", code="invalid_value")
    return {"type": "function", "function": {"name": name}}
