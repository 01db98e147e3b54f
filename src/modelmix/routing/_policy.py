"""Policy filter: which deployments MAY serve a request.

Checks, in order: availability (API key set, model file present), circuit state,
the caller's allow-list, modalities, context window, tools, JSON mode and logprobs.
Later checks (data class vs hosting/region) plug in as extra :class:`Rule` callables.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from modelmix.catalog import Deployment, Modality
from modelmix.protocol import RequestNeeds
from modelmix.routing._exclusion import Exclusion, ExclusionKind

__all__ = ["PolicyContext", "Rule", "capability_rules", "filter_candidates"]


@dataclass(frozen=True, slots=True)
class PolicyContext:
    """What the filter knows about one request.

    Attributes:
        needs: what the request needs from a deployment.
        allowed_models: the key's allow-list of deployment or group names (None: all).
        requested: the model name the client asked for.
        requested_is_group: whether ``requested`` names a group (so allowing it allows
            its members) rather than a deployment (whose fallbacks must be allowed too).
    """

    needs: RequestNeeds
    requested: str = ""
    allowed_models: frozenset[str] | None = None
    requested_is_group: bool = False
    tags: frozenset[str] = field(default_factory=frozenset)


#: A rule returns None when ``dep`` may serve the request, else why not.
Rule = Callable[[Deployment, PolicyContext], Exclusion | None]

_CAPABILITY, _CONTEXT = ExclusionKind.CAPABILITY, ExclusionKind.CONTEXT


def _modalities(dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
    if ctx.needs.image_input and Modality.IMAGE not in dep.input_modalities:
        return Exclusion(_CAPABILITY, "no image input")
    if ctx.needs.audio_input and Modality.AUDIO not in dep.input_modalities:
        return Exclusion(_CAPABILITY, "no audio input")
    if ctx.needs.file_input and Modality.FILE not in dep.input_modalities:
        return Exclusion(_CAPABILITY, "no file (PDF) input")
    return None


def _context(dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
    need = ctx.needs.prompt_tokens_estimate + ctx.needs.max_output_tokens
    if need > dep.context_window:
        return Exclusion(_CONTEXT, f"context window {dep.context_window} < ~{need} tokens needed")
    if dep.max_output_tokens and ctx.needs.max_output_tokens > dep.max_output_tokens:
        return Exclusion(_CONTEXT, f"max output {dep.max_output_tokens} < "
                                   f"{ctx.needs.max_output_tokens} asked")
    return None


def _features(dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
    if ctx.needs.tools and not dep.supports_tools:
        return Exclusion(_CAPABILITY, "no tool calling")
    if ctx.needs.json_mode and not dep.supports_json_mode:
        return Exclusion(_CAPABILITY, "no JSON mode")
    if ctx.needs.logprobs and not dep.returns_logprobs:
        return Exclusion(_CAPABILITY, "no logprobs")
    return None


def _allow_list(dep: Deployment, ctx: PolicyContext) -> Exclusion | None:
    if ctx.allowed_models is None:
        return None
    if dep.name in ctx.allowed_models:
        return None
    if ctx.requested_is_group and ctx.requested in ctx.allowed_models:
        return None  # a key allowed a group may use every member of it
    return Exclusion(ExclusionKind.NOT_ALLOWED, "not allowed for this key")


def capability_rules() -> list[Rule]:
    """The built-in rules: allow-list, modalities, context window, features."""
    return [_allow_list, _modalities, _context, _features]


def filter_candidates(
    candidates: Sequence[Deployment],
    ctx: PolicyContext,
    rules: Sequence[Rule],
) -> tuple[list[Deployment], dict[str, Exclusion]]:
    """Split ``candidates`` into (allowed, {excluded name: why}), keeping order."""
    allowed: list[Deployment] = []
    excluded: dict[str, Exclusion] = {}
    for dep in candidates:
        for rule in rules:
            why = rule(dep, ctx)
            if why is not None:
                excluded[dep.name] = why
                break
        else:
            allowed.append(dep)
    return allowed, excluded
