"""Router: resolve the requested model name to candidates, filter by policy, order."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Literal

from modelmix.catalog import Config, Deployment, Tier
from modelmix.errors import (
    ConfigError,
    InvalidRequest,
    ModelmixError,
    NoDeployment,
    NoDeploymentAvailable,
    PermissionDenied,
    PolicyDenied,
)
from modelmix.protocol import RequestNeeds
from modelmix.routing._balance import LoadStats
from modelmix.routing._decision import RouteDecision
from modelmix.routing._exclusion import Exclusion, ExclusionKind
from modelmix.routing._input import RoutingHints, RoutingInput
from modelmix.routing._policy import PolicyContext, Rule, capability_rules, filter_candidates
from modelmix.routing._strategies import STRATEGIES, OrderedStrategy, Strategy

__all__ = ["HealthCheck", "Router"]

#: Returns None when a deployment can take calls now, else why not: UNAVAILABLE (it
#: cannot serve here: API key unset, model file missing) or UNHEALTHY (its circuit is
#: open; ``retry_after_s`` says when it may take calls again).
HealthCheck = Callable[[Deployment], Exclusion | None]

#: The kind of request routed: chat (every generating API) or embedding.
Mode = Literal["chat", "embedding"]

_K = ExclusionKind
_REFUSED_BY_POLICY = frozenset({_K.POLICY, _K.NOT_ALLOWED})
_REQUEST_CANNOT_FIT = frozenset({_K.CAPABILITY, _K.CONTEXT})
_NO_HINTS = RoutingHints()
_BUILTIN_GROUPS = ("auto", "open", "proprietary")


class Router:
    """Turns (model name, request needs) into a :class:`RouteDecision`.

    ``auto`` uses the configured strategy (``config.router``, default ``learned``) over all
    deployments; ``open`` / ``proprietary`` (unless defined in ``groups``) are every
    deployment of that tier; other groups use their strategy (``group_strategies``:
    ``weighted``, ``least-busy``, ``latency``, ``cost``; docs/load-balancing.md), else
    keep their configured order; a deployment name is that deployment followed by its
    configured ``fallbacks``. A group's ``fallbacks`` follow all its members (the
    strategy orders the members only).

    ``load`` is the calls in flight and latencies the executor reports (shared with it;
    a fresh :class:`LoadStats` when omitted); the group strategies read it.

    Raises (construction): ConfigError when ``config.router`` or a group's strategy names
    no registered strategy.

    Raises (``route``):
        NoDeployment: unknown model name, or no deployment configured to serve it (404:
            with ``retry_after`` given, when no unhealthy candidate would recover by
            waiting); nothing healthy now (503, ``retry_after`` the shortest wait).
        InvalidRequest: no candidate can take this request (e.g. context too long).
        PolicyDenied: candidates exist but policy forbids all of them (403).
    """

    def __init__(
        self,
        config: Config,
        *,
        health: HealthCheck,
        extra_rules: Sequence[Rule] = (),
        strategies: dict[str, Strategy] | None = None,
        load: LoadStats | None = None,
    ):
        if config.router not in STRATEGIES:
            raise ConfigError(f'{config.source}: field "router": unknown routing strategy '
                              f"{config.router!r}; expected one of {sorted(STRATEGIES)}")
        for group, name in config.group_strategies.items():
            if name not in STRATEGIES:
                raise ConfigError(f"{config.source}: group {group!r}: unknown routing "
                                  f"strategy {name!r}; expected one of {sorted(STRATEGIES)}")
        self.config = config
        self.load = load if load is not None else LoadStats()
        self._health = health
        self._rules = [*capability_rules(), *extra_rules]
        self._strategies = strategies or {}
        self._ordered = OrderedStrategy()
        self._deployment_names = frozenset(d.name for d in config.deployments)
        self._allow_lists: dict[frozenset[str], frozenset[str]] = {}

    def strategy(self, name: str) -> Strategy:
        if name not in self._strategies:
            if name not in STRATEGIES:
                raise InvalidRequest(f"unknown routing strategy {name!r}")
            self._strategies[name] = STRATEGIES[name].for_router(self.config, self.load)
        return self._strategies[name]

    def warm(self) -> None:
        """Build the ``auto`` strategy and load what it needs (blocking: a learned
        router loads its model here). Call off the event loop.

        A catalog with a single deployment has nothing to choose between, so nothing is
        loaded ahead of time (the model still loads on the first ``auto`` request): a
        pass-through gateway stays small (benchmarks/overhead: idle RSS)."""
        if len(self.config.deployments) < 2:
            return
        self.strategy(self.config.router).warm()

    def candidates(self, model: str, mode: Mode = "chat") -> tuple[list[Deployment], Strategy]:
        """The deployments a model name stands for and how to order them. The built-in
        ``auto``, ``open`` and ``proprietary`` hold chat deployments only; for
        ``mode="embedding"`` they raise InvalidRequest (vectors of different models are
        not comparable, so an embedding request names its model)."""
        cfg = self.config
        if model in cfg.groups:
            members = [cfg.deployment(n) for n in cfg.groups[model]]
            if model in cfg.group_strategies:
                return members, self.strategy(cfg.group_strategies[model])
            return members, self.strategy(cfg.router) if model == "auto" else self._ordered
        if model in _BUILTIN_GROUPS and mode == "embedding":
            raise self._wrong_mode(model, "a built-in group of chat models", mode)
        chat = [d for d in cfg.deployments if d.mode == "chat"]
        if model == "auto":
            return chat, self.strategy(cfg.router)
        if model in ("open", "proprietary"):
            tier = Tier(model)
            return [d for d in chat if d.tier is tier], self.strategy("cheapest")
        try:
            dep = cfg.deployment(model)
        except KeyError:
            shown = model if len(model) <= 100 else model[:100] + "..."
            raise NoDeployment(
                f"The model '{shown}' does not exist. Available: "
                f"{', '.join(cfg.model_names())}",
            ) from None
        chain = [dep, *(cfg.deployment(n) for n in cfg.fallbacks.get(model, ()))]
        return chain, self._ordered

    def _with_group_members(self, allowed: frozenset[str] | None) -> frozenset[str] | None:
        """A key's allow-list with the deployments of every group on it added: a key
        allowed ``open`` may also name ``open``'s deployments (cached per list)."""
        if allowed is None:
            return None
        if allowed not in self._allow_lists:
            names = set(allowed)
            for name in allowed:
                if name not in self._deployment_names:
                    try:
                        names.update(d.name for d in self.candidates(name)[0])
                    except ModelmixError:  # a group since removed from the catalog
                        continue
            self._allow_lists[allowed] = frozenset(names)
        return self._allow_lists[allowed]

    def permits(self, model: str, allowed_models: frozenset[str] | None) -> bool:
        """Whether a key with ``allowed_models`` may name ``model``, as :meth:`route`
        decides before routing (a group on the list covers its deployments; a group
        with a member on the list may be named). Routes nothing: for endpoints that
        call no model (``/v1/messages/count_tokens``)."""
        if allowed_models is None or model in allowed_models:
            return True
        allowed = self._with_group_members(allowed_models) or frozenset()
        try:
            members = self.candidates(model)[0]
        except ModelmixError:  # not a deployment or group: only a listed name passes
            members = []
        return model in allowed or any(d.name in allowed for d in members)

    def route(
        self,
        model: str,
        needs: RequestNeeds,
        *,
        allowed_models: frozenset[str] | None = None,
        tags: frozenset[str] = frozenset(),
        prompt: str = "",
        hints: RoutingHints | None = None,
        extra_rules: Sequence[Rule] = (),
        mode: Mode = "chat",
    ) -> RouteDecision:
        """Choose deployments for one request; see the class docstring for errors.

        ``extra_rules`` add policy-filter rules for this request only (the data guard's).
        ``mode`` is the kind of request (``chat`` or ``embedding``): a model name
        standing for deployments of the other kind is refused (InvalidRequest, 400,
        ``model_not_supported``).

        ``prompt`` (the last user message) and ``hints`` reach the strategy; only the
        ``learned`` strategy reads them (it raises InvalidRequest for an unknown
        ``hints.target`` or when ``hints.max_cost_per_1k`` leaves no candidate).
        """
        members, strategy = self.candidates(model, mode)
        if members and all(d.mode != mode for d in members):  # groups never mix modes
            kind = ("an embedding model" if members[0].mode == "embedding"
                    else "a chat model" if len(members) == 1 else "a group of chat models")
            raise self._wrong_mode(model, kind, mode)
        if not members:  # a built-in group (open, proprietary) this catalog has none of
            raise NoDeployment(f"'{model}' has no deployments in this catalog; available: "
                               f"{', '.join(self.config.model_names())}",
                               code="model_not_available")
        is_group = model not in self._deployment_names
        allowed_models = self._with_group_members(allowed_models)
        ctx = PolicyContext(needs=needs, requested=model, allowed_models=allowed_models,
                            tags=tags, requested_is_group=is_group)
        if allowed_models is not None and model not in allowed_models and not any(
            d.name in allowed_models for d in members
        ):
            raise PermissionDenied(f"this key may not use model '{model}'")
        rules = [*self._rules, *extra_rules] if extra_rules else self._rules
        allowed, excluded = filter_candidates(members, ctx, rules)
        healthy = self._healthy(allowed, excluded)
        request = RoutingInput(needs=needs, prompt=prompt, hints=hints or _NO_HINTS)
        backup: list[Deployment] = []
        if is_group and self.config.fallbacks.get(model):
            backup = self._group_fallbacks(model, members, replace(ctx, requested_is_group=False),
                                           rules, excluded, allowed)
        if not healthy:
            if backup:
                decision = self._ordered.decide(backup, request, excluded)
                return replace(decision, reason=f"fallback: no member of '{model}' can serve "
                                                f"now; {decision.reason}")
            raise self._nothing_left(model, allowed, excluded)
        decision = strategy.decide(healthy, request, excluded)
        return replace(decision, fallbacks=(*decision.fallbacks, *backup)) if backup \
            else decision

    def _healthy(self, allowed: list[Deployment],
                 excluded: dict[str, Exclusion]) -> list[Deployment]:
        """The deployments of ``allowed`` that can take calls now (the others go into
        ``excluded`` with why)."""
        healthy = []
        for dep in allowed:
            why = self._health(dep)
            if why is None:
                healthy.append(dep)
            else:
                excluded[dep.name] = why
        return healthy

    def _group_fallbacks(self, model: str, members: list[Deployment], ctx: PolicyContext,
                         rules: Sequence[Rule], excluded: dict[str, Exclusion],
                         allowed: list[Deployment]) -> list[Deployment]:
        """A group's configured ``fallbacks``, tried in order after all its members: each
        passes the policy filter as if named itself (a key allowed the group is not
        thereby allowed its fallbacks). Those allowed are added to ``allowed``."""
        cfg = self.config
        names = {d.name for d in members}
        extra = [cfg.deployment(n) for n in cfg.fallbacks[model] if n not in names]
        ok, dropped = filter_candidates(extra, ctx, rules)
        excluded.update(dropped)
        allowed.extend(ok)
        return self._healthy(ok, excluded)


    def _wrong_mode(self, model: str, kind: str, mode: Mode) -> InvalidRequest:
        """The refusal of a request naming a model of the other kind, with the names
        that would serve it."""
        names = [d.name for d in self.config.deployments if d.mode == mode]
        if mode == "chat":
            names += [g for g in self.config.model_names() if g not in self._deployment_names
                      and not self._is_embedding_group(g)]
        what = ("call POST /v1/embeddings" if mode == "chat"
                else "it cannot embed; name an embedding deployment")
        shown = model if len(model) <= 100 else model[:100] + "..."
        return InvalidRequest(
            f"'{shown}' is {kind}: {what} (models for this endpoint: "
            f"{', '.join(names) or 'none configured'})",
            param="model", code="model_not_supported")

    def _is_embedding_group(self, name: str) -> bool:
        members = self.config.groups.get(name, ())
        return bool(members) and self.config.deployment(members[0]).mode == "embedding"

    def _nothing_left(self, model: str, allowed: list[Deployment],
                      excluded: dict[str, Exclusion]) -> ModelmixError:
        """The error when no deployment is left, chosen by the kinds of exclusion."""
        detail = "; ".join(f"{name}: {why}" for name, why in excluded.items())
        if allowed:  # permitted, capable deployments exist, but none can take calls now
            waits = [e.retry_after_s or 0.0 for e in excluded.values()
                     if e.kind is _K.UNHEALTHY]
            if waits:
                return NoDeploymentAvailable(
                    f"no deployment for '{model}' is available now ({detail})",
                    retry_after=min(waits))
            return NoDeployment(  # e.g. API keys unset: waiting (and retrying) won't help
                f"no deployment for '{model}' can serve requests in this configuration "
                f"({detail})", code="model_not_available")
        kinds = {e.kind for e in excluded.values()}
        # The data policy's rule runs after the capability rules, so a deployment it
        # excluded could have taken the request: the policy is why nothing is left.
        if _K.POLICY in kinds or (kinds & _REFUSED_BY_POLICY
                                  and kinds <= _REFUSED_BY_POLICY | {_K.UNAVAILABLE}):
            return PolicyDenied(f"policy forbids every deployment for '{model}' ({detail})")
        if kinds & _REQUEST_CANNOT_FIT:
            code = "context_length_exceeded" if _K.CONTEXT in kinds else "unsupported_request"
            return InvalidRequest(
                f"no deployment for '{model}' can take this request ({detail})", code=code)
        return NoDeployment(f"no deployment for '{model}' can serve this request ({detail})",
                            code="model_not_available")
