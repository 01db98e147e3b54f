"""OpenAI Embeddings request and response models (``POST /v1/embeddings``).

Mirrors https://platform.openai.com/docs/api-reference/embeddings/create. ``input`` is a
string or a list of strings; token arrays (lists of token ids) are refused, because the
data guard screens text and cannot read token ids of an unknown tokenizer. Unknown
fields are refused too (400 naming them), so nothing travels upstream unscreened.

Example::

    request = parse_embedding_request({"model": "local-embed", "input": ["a", "b"]})
    request.inputs        # ["a", "b"]
"""

from __future__ import annotations

import base64
from typing import Any, Literal

import numpy as np
import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from modelmix.errors import InvalidRequest, invalid_request

__all__ = [
    "MAX_EMBEDDING_INPUTS",
    "MAX_INPUT_CHARS",
    "EmbeddingData",
    "EmbeddingRequest",
    "EmbeddingResponse",
    "EmbeddingUsage",
    "embedding_json",
    "embedding_response",
    "encode_vector",
    "parse_embedding_request",
]

#: Most inputs one request may carry (OpenAI's limit).
MAX_EMBEDDING_INPUTS = 2048
#: Longest input, in characters (OpenAI's per-input limit is 8,192 tokens, about 32,000
#: characters of English; the deployment's context window is checked when routing).
MAX_INPUT_CHARS = 100_000


class EmbeddingRequest(BaseModel):
    """A ``POST /v1/embeddings`` body, ``input`` normalised to a list of strings.

    Attributes:
        input: the texts, in order (1 to :data:`MAX_EMBEDDING_INPUTS`, each non-empty and
            at most :data:`MAX_INPUT_CHARS` characters).
        encoding_format: ``float`` (lists of numbers) or ``base64`` (little-endian
            float32 bytes, what the OpenAI SDK asks for by default).
        dimensions: the vector size asked for; deployments that cannot produce it refuse
            the request (400).
        input_type: ``query`` or ``passage`` / ``document`` for asymmetric models (E5,
            NVIDIA NIM retrievers); not an OpenAI field. ``local-embed`` uses E5's
            ``query:`` form when omitted (E5's advice for symmetric similarity).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    model: str = Field(min_length=1, max_length=256)
    input: list[str] = Field(min_length=1, max_length=MAX_EMBEDDING_INPUTS)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1, le=65_536)
    user: str | None = Field(default=None, max_length=256)
    input_type: Literal["query", "passage", "document"] | None = None

    @property
    def inputs(self) -> list[str]:
        return self.input

    def to_upstream(self, model: str, texts: list[str]) -> dict[str, Any]:
        """The body an OpenAI-compatible upstream receives: ``texts`` (the inputs as the
        data guard lets this upstream see them) under its model id, always as floats
        (the gateway encodes base64 itself)."""
        body: dict[str, Any] = {"model": model, "input": texts, "encoding_format": "float"}
        if self.dimensions is not None:
            body["dimensions"] = self.dimensions
        if self.user is not None:
            body["user"] = self.user
        if self.input_type is not None:
            body["input_type"] = self.input_type
        return body


def parse_embedding_request(data: dict[str, Any]) -> EmbeddingRequest:
    """Validate a parsed body. Raises InvalidRequest (400) naming the bad field: token
    arrays, an empty list or string, too many or too long inputs, unknown fields."""
    raw = data.get("input")
    if isinstance(raw, str):
        data = {**data, "input": [raw]}
    elif isinstance(raw, list) and raw and any(not isinstance(x, str) for x in raw):
        if all(isinstance(x, int) or _is_int_list(x) for x in raw):
            raise InvalidRequest(
                "input: token arrays are not supported by this gateway (its data guard "
                "screens text); send the text as a string or a list of strings",
                param="input", code="unsupported_input")
    try:
        request = EmbeddingRequest.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc) from exc
    for i, text in enumerate(request.input):
        if not text:
            raise InvalidRequest(f"input.{i}: empty string; every input needs text",
                                 param=f"input.{i}", code="invalid_value")
        if len(text) > MAX_INPUT_CHARS:
            raise InvalidRequest(f"input.{i}: {len(text)} characters; at most "
                                 f"{MAX_INPUT_CHARS} per input", param=f"input.{i}",
                                 code="invalid_value")
    return request


def _is_int_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(x, int) for x in value)


class EmbeddingData(BaseModel):
    """One vector: ``embedding`` is a list of floats or a base64 string."""

    object: Literal["embedding"] = "embedding"
    index: int
    embedding: list[float] | str


class EmbeddingUsage(BaseModel):
    """Tokens the embedding model read (embeddings produce no completion tokens)."""

    prompt_tokens: int = 0
    total_tokens: int = 0


class EmbeddingResponse(BaseModel):
    """The ``POST /v1/embeddings`` answer: one :class:`EmbeddingData` per input, in the
    inputs' order."""

    object: Literal["list"] = "list"
    data: list[EmbeddingData]
    model: str
    usage: EmbeddingUsage


def encode_vector(vector: list[float], encoding_format: str) -> list[float] | str:
    """``vector`` as the client asked: the floats, or base64 of their little-endian
    float32 bytes (what OpenAI sends and its SDK decodes)."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return vector


def embedding_response(vectors: list[list[float]], model: str, prompt_tokens: int,
                       encoding_format: str = "float") -> EmbeddingResponse:
    """The answer for ``vectors`` (in the inputs' order), built without re-validating
    hundreds of thousands of floats."""
    data = [EmbeddingData.model_construct(object="embedding", index=i,
                                          embedding=encode_vector(v, encoding_format))
            for i, v in enumerate(vectors)]
    usage = EmbeddingUsage(prompt_tokens=prompt_tokens, total_tokens=prompt_tokens)
    return EmbeddingResponse.model_construct(object="list", data=data, model=model,
                                             usage=usage)


def embedding_json(response: EmbeddingResponse) -> bytes:
    """``response`` as JSON bytes (orjson over plain values: about 10x faster than
    pydantic's dump for a batch of 2,048 vectors)."""
    return orjson.dumps({
        "object": "list",
        "data": [{"object": "embedding", "index": d.index, "embedding": d.embedding}
                 for d in response.data],
        "model": response.model,
        "usage": {"prompt_tokens": response.usage.prompt_tokens,
                  "total_tokens": response.usage.total_tokens},
    })
