"""What a strategy sees of one request: needs, prompt text and per-request hints.

Routing knows nothing of HTTP: the gateway parses the ``router`` object of a chat body
(sent as ``extra_body={"router": {...}}`` from the OpenAI SDK) into
:class:`RoutingHints`; library callers put hints on
:class:`~modelmix.engine._service.CallContext` directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from modelmix.errors import InvalidRequest, invalid_request
from modelmix.protocol import ChatRequest, RequestNeeds

__all__ = [
    "DEFAULT_OUTPUT_TOKENS",
    "MAX_PROMPT_CHARS",
    "RoutingHints",
    "RoutingInput",
    "parse_hints",
    "prompt_text",
]

#: Completion tokens assumed for a cost estimate when the request sets no ``max_tokens``.
#: 256 is about a paragraph of English; a request that sets ``max_tokens`` is estimated
#: at that limit (an upper bound).
DEFAULT_OUTPUT_TOKENS = 256

#: Longest prompt text (characters) handed to a predictor; predictors truncate further
#: to their own input size (e.g. 256 word pieces for MiniLM embeddings).
MAX_PROMPT_CHARS = 16_000


class RoutingHints(BaseModel):
    """Per-request routing hints (the ``router`` object of a chat body).

    Used by the ``learned`` strategy (the default of ``model: "auto"``); other strategies
    and named deployments ignore them. All fields are optional; unknown fields are
    refused (400), as are numbers sent as strings.

    Attributes:
        target: name of a calibrated target (``modelmix router calibrate --name``) whose
            threshold decides this request instead of the default target.
        max_cost_per_1k: USD cap on the estimated cost of 1,000 requests like this one
            (prompt tokens estimated from its text, completion tokens from ``max_tokens``
            or :data:`DEFAULT_OUTPUT_TOKENS`). Deployments above the cap are not used at
            all, not even as fallbacks; when none is left the request fails (400).
        min_quality: in [0, 1]: pick the cheapest candidate whose predicted probability of
            an acceptable answer is at least this; when none reaches it, the candidate
            with the highest prediction goes first.
        prefer_open: put an open-weights deployment first whenever policy allows one,
            whatever the prediction (which is still computed and reported).

    ``target``, ``min_quality`` and ``prefer_open`` each pick the first choice, so at
    most one of them may be given; ``max_cost_per_1k`` combines with any of them.

    Example::

        client.chat.completions.create(model="auto", messages=msgs,
                                       extra_body={"router": {"min_quality": 0.8}})
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    target: str | None = Field(default=None, min_length=1, max_length=100)
    max_cost_per_1k: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    min_quality: float | None = Field(default=None, ge=0, le=1, allow_inf_nan=False)
    prefer_open: bool = False

    @model_validator(mode="after")
    def _one_first_choice_rule(self) -> RoutingHints:
        given = [name for name, on in (("target", self.target is not None),
                                       ("min_quality", self.min_quality is not None),
                                       ("prefer_open", self.prefer_open)) if on]
        if len(given) > 1:
            raise ValueError(f"give at most one of target, min_quality and prefer_open "
                             f"(got {', '.join(given)})")
        return self


def parse_hints(raw: Any) -> RoutingHints | None:
    """Validate a ``router`` object (None when absent). Raises InvalidRequest (400)
    naming the bad field, e.g. ``router.min_quality``."""
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise InvalidRequest('router: must be an object, e.g. {"min_quality": 0.8}',
                             param="router", code="invalid_value")
    try:
        return RoutingHints.model_validate(raw)
    except ValidationError as exc:
        raise invalid_request(exc, prefix=("router",)) from exc


@dataclass(frozen=True, slots=True)
class RoutingInput:
    """One request as a strategy sees it.

    Attributes:
        needs: what the request needs from a deployment (modalities, tools, size).
        prompt: the text a predictor scores: the last user message (see
            :func:`prompt_text`); '' when the caller gave none.
        hints: per-request hints (all unset by default).
    """

    needs: RequestNeeds
    prompt: str = ""
    hints: RoutingHints = field(default_factory=RoutingHints)

    def output_tokens_estimate(self) -> int:
        """Completion tokens assumed for cost estimates (``max_tokens`` or the default)."""
        return self.needs.max_output_tokens or DEFAULT_OUTPUT_TOKENS


def prompt_text(request: ChatRequest, limit: int = MAX_PROMPT_CHARS) -> str:
    """The text a learned router scores: the last user message, at most ``limit`` chars.

    RouteLLM's routers score the last user turn too; earlier turns and the system
    message say less about how hard the question is. Falls back to the last message of
    any role when no user message has text.
    """
    for msg in reversed(request.messages):
        if msg.role == "user":
            text = msg.text()
            if text:
                return text[:limit]
    return request.messages[-1].text()[:limit]
