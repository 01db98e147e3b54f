"""Router: name resolution, policy filter, rules strategy."""

from __future__ import annotations

import pytest

from modelmix.catalog import Deployment, config_from_dict
from modelmix.errors import InvalidRequest, NoDeployment, PermissionDenied
from modelmix.protocol import ChatRequest, RequestNeeds
from modelmix.routing import Exclusion, ExclusionKind, Router

CFG = config_from_dict({
    "deployments": [
        {"name": "local", "provider": "openai-compatible", "base_url": "http://l/v1",
         "model": "s", "hosting": "local", "context_window": 4096},
        {"name": "vllm", "provider": "vllm", "base_url": "http://v/v1", "model": "l",
         "context_window": 32000, "input_cost_per_mtok": 0.1, "output_cost_per_mtok": 0.1},
        {"name": "gpt", "provider": "openai", "model": "g", "api_key_env": "MM_TEST_KEY",
         "input_modalities": ["text", "image"], "context_window": 1000000,
         "supports_tools": True, "input_cost_per_mtok": 2, "output_cost_per_mtok": 8},
        {"name": "claude", "provider": "anthropic", "model": "c",
         "input_modalities": ["text", "image"], "context_window": 200000,
         "supports_tools": True, "input_cost_per_mtok": 3, "output_cost_per_mtok": 15},
    ],
    "fallbacks": {"vllm": ["claude"]},
    "router": "rules",  # these tests pin the rules strategy; test_router_gateway.py: learned
})


def healthy(dep: Deployment) -> str | None:
    return None


def needs(text: str = "hi", **kw: object) -> RequestNeeds:
    req = ChatRequest.model_validate({"model": "auto",
                                      "messages": [{"role": "user", "content": text}], **kw})
    return req.needs()


def test_auto_prefers_local_open_then_proprietary_by_price() -> None:
    d = Router(CFG, health=healthy).route("auto", needs())
    assert [x.name for x in d.candidates] == ["local", "vllm", "gpt", "claude"]
    assert d.reason == "rules: open model by default"


def test_long_context_skips_small_windows() -> None:
    d = Router(CFG, health=healthy).route("auto", needs("word " * 40000))
    assert [x.name for x in d.candidates] == ["gpt", "claude"]
    assert "context window" in d.reason


def test_tools_go_proprietary_and_reason_says_why() -> None:
    d = Router(CFG, health=healthy).route(
        "auto", needs(tools=[{"type": "function", "function": {"name": "f"}}]))
    assert d.deployment.name == "gpt" and "no tool calling" in d.reason


def test_unhealthy_deployments_are_excluded_with_reason() -> None:
    circuit = Exclusion(ExclusionKind.UNHEALTHY, "circuit open", retry_after_s=3.0)
    router = Router(CFG, health=lambda d: circuit if d.name == "local" else None)
    d = router.route("auto", needs())
    assert d.deployment.name == "vllm" and d.excluded["local"].why == "circuit open"


def test_named_deployment_uses_configured_fallbacks() -> None:
    d = Router(CFG, health=healthy).route("vllm", needs())
    assert [x.name for x in d.candidates] == ["vllm", "claude"]


def test_unknown_model_is_404() -> None:
    with pytest.raises(NoDeployment) as info:
        Router(CFG, health=healthy).route("gpt-9", needs())
    assert info.value.status_code == 404


def test_nothing_fits_is_400_context_length() -> None:
    with pytest.raises(InvalidRequest) as info:
        Router(CFG, health=healthy).route("local", needs(max_tokens=100000))
    assert info.value.code == "context_length_exceeded"


def test_nothing_healthy_is_503() -> None:
    down = Exclusion(ExclusionKind.UNHEALTHY, "down")
    with pytest.raises(NoDeployment) as info:
        Router(CFG, health=lambda d: down).route("auto", needs())
    assert info.value.status_code == 503


def test_503_says_when_the_first_circuit_reopens() -> None:
    waits = {"local": 7.5, "vllm": 2.25, "gpt": None, "claude": None}

    def health(dep: Deployment) -> Exclusion:
        wait = waits[dep.name]
        if wait is None:
            return Exclusion(ExclusionKind.UNAVAILABLE, "MM_TEST_KEY is not set")
        return Exclusion(ExclusionKind.UNHEALTHY, "circuit open", retry_after_s=wait)

    router = Router(CFG, health=health)
    with pytest.raises(NoDeployment) as info:
        router.route("auto", needs())
    assert info.value.status_code == 503 and info.value.retry_after == 2.25


def test_nothing_that_waiting_would_fix_is_404_not_503() -> None:
    """OpenAI SDKs retry a 503 three times; a deployment whose API key is unset will
    not come back by retrying, so the answer is a 404 that they do not retry."""
    unset = Exclusion(ExclusionKind.UNAVAILABLE, "MM_TEST_KEY is not set")
    router = Router(CFG, health=lambda d: unset)
    with pytest.raises(NoDeployment) as info:
        router.route("gpt", needs())
    assert info.value.status_code == 404 and info.value.code == "model_not_available"
    assert getattr(info.value, "retry_after", None) is None


def test_allow_list_limits_candidates_and_forbids_others() -> None:
    router = Router(CFG, health=healthy)
    d = router.route("auto", needs(), allowed_models=frozenset({"auto", "vllm"}))
    assert d.deployment.name == "local"  # allowed through the group name
    d = router.route("vllm", needs(), allowed_models=frozenset({"vllm"}))
    assert [x.name for x in d.candidates] == ["vllm"]  # fallback not on the allow-list
    with pytest.raises(PermissionDenied):
        router.route("gpt", needs(), allowed_models=frozenset({"vllm"}))
    # a key allowed a group may also name the group's deployments, and no others
    open_only = frozenset({"open"})
    assert router.route("vllm", needs(), allowed_models=open_only).deployment.name == "vllm"
    assert router.route("open", needs(), allowed_models=open_only).deployment.name == "local"
    with pytest.raises(PermissionDenied):
        router.route("gpt", needs(), allowed_models=open_only)
    d = router.route("auto", needs(), allowed_models=open_only)  # narrowed to open members
    assert {x.name for x in d.candidates} <= {"local", "vllm"}


def test_tier_groups() -> None:
    router = Router(CFG, health=healthy)
    assert [x.name for x in router.route("proprietary", needs()).candidates] == ["gpt", "claude"]
    assert [x.name for x in router.route("open", needs()).candidates] == ["local", "vllm"]


def test_a_policy_exclusion_makes_the_refusal_a_403() -> None:
    """Found by attack: an image under a policy that keeps it off the only vision model
    answered 400 (no image input elsewhere) instead of 403: the policy rule runs after the
    capability rules, so the deployment it excluded could have served."""
    from modelmix.errors import PolicyDenied

    def policy(dep: Deployment, ctx: object) -> Exclusion | None:
        return Exclusion(ExclusionKind.POLICY, "not allowed by policy x") if dep.name in (
            "gpt", "claude") else None

    image = RequestNeeds(image_input=True, prompt_tokens_estimate=10)
    with pytest.raises(PolicyDenied):
        Router(CFG, health=healthy).route("auto", image, extra_rules=[policy])


def test_an_empty_built_in_group_says_so() -> None:
    only_open = config_from_dict({"deployments": [
        {"name": "v", "provider": "vllm", "base_url": "http://v/v1", "model": "m"}]})
    with pytest.raises(NoDeployment, match="'proprietary' has no deployments") as info:
        Router(only_open, health=healthy).route("proprietary", needs())
    assert info.value.status_code == 404 and info.value.code == "model_not_available"
