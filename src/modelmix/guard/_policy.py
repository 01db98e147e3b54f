"""Data policies: which data may go where, and what to do with it.

A policy maps each :class:`~modelmix.guard.DataClass` (and, optionally, entity types,
request tags, virtual keys and tenants) to an :class:`Action` and to the deployments
allowed to receive the data (by hosting, tier and region). Ready policies ship in
``guard/policies/*.yaml``; see docs/guard.md for the file format.

A policy may also declare its own entity types (``patterns:``, ad-hoc regular
expressions with optional context words: :mod:`~modelmix.guard._policy_patterns`), which
its rules then name like built-in ones.

How a request's rules combine (:meth:`Policy.evaluate`):

1. the rule for its data class (a key's override, else its tenant's, else the policy's;
   a class with no rule is allowed anywhere);
2. the rule for each detected entity type (same override order);
3. the rule for each request tag.

Every matching rule applies: the strictest action wins (block > route-local >
pseudonymise > allow) and a deployment must satisfy every rule's hosting / tier / region
limits. So tags, which callers assert, can only tighten a policy; keys and tenants,
which authentication establishes, may also loosen it through their overrides.

Example::

    policy = load_policy("healthcare")
    verdict = policy.evaluate(DataClass.REGULATED, {"PERSON": 1}, key_id=None, tags=())
    verdict.action  # Action.ROUTE_LOCAL
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic import model_validator as _model_validator

from modelmix.catalog._models import Deployment, Hosting, Tier
from modelmix.errors import InvalidRequest
from modelmix.guard._base import DataClass
from modelmix.guard._policy_patterns import PatternSpec, check_pattern_names

__all__ = [
    "LOCAL_HOSTING",
    "POLICY_ENV",
    "READY_POLICIES",
    "TAGS_HEADER",
    "Action",
    "ClassOverride",
    "Policy",
    "RuleSpec",
    "Scope",
    "TenantOverride",
    "Verdict",
    "request_tags",
]

#: Header carrying request tags (comma-separated), as an alternative to the body's ``tags``.
TAGS_HEADER = "x-modelmix-tags"
_TAG = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}$")
_MAX_TAGS = 16

#: Environment variable naming a ready policy or a policy file; overrides ``policy:``.
POLICY_ENV = "MODELMIX_POLICY"

#: Names of the policies shipped in ``modelmix/guard/policies``.
READY_POLICIES = ("healthcare", "finance", "eu-residency", "manufacturing")

_ENTITY_TYPE = r"^[A-Z][A-Z0-9_]*$"
#: Hosting kinds that keep data on the operator's machines (``route-local``).
LOCAL_HOSTING = (Hosting.LOCAL, Hosting.SELF_HOSTED)


class Action(StrEnum):
    """What happens to a request, least to most restrictive."""

    ALLOW = "allow"
    PSEUDONYMISE = "pseudonymise"
    ROUTE_LOCAL = "route-local"
    BLOCK = "block"

    @property
    def rank(self) -> int:
        return list(Action).index(self)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Scope(_Strict):
    """Deployments allowed to receive data: each given list must match (None: any).

    ``regions`` are shell-style patterns matched case-insensitively (``eu-*``); a
    deployment without a region never matches a region limit.
    """

    hosting: tuple[Hosting, ...] | None = None
    tiers: tuple[Tier, ...] | None = None
    regions: tuple[str, ...] | None = None

    @property
    def unlimited(self) -> bool:
        return self.hosting is None and self.tiers is None and self.regions is None

    def refuses(self, dep: Deployment) -> str | None:
        """None when ``dep`` is in scope, else a short reason naming the limit."""
        if self.hosting is not None and dep.hosting not in self.hosting:
            return f"hosting {dep.hosting.value} not in {_names(self.hosting)}"
        if self.tiers is not None and dep.tier not in self.tiers:
            return f"tier {dep.tier.value} not in {_names(self.tiers)}"
        if self.regions is not None:
            region = (dep.region or "").lower()
            if not region:
                return f"no region set (needs one of {_names(self.regions)})"
            if not any(fnmatchcase(region, p.lower()) for p in self.regions):
                return f"region {dep.region} not in {_names(self.regions)}"
        return None


def _check_entity_types(names: Iterable[str]) -> Iterable[str]:
    for name in names:
        if not re.match(_ENTITY_TYPE, name):
            raise ValueError(f"entity type {name!r} must be upper snake case, e.g. US_SSN")
    return names


def _names(items: Iterable[object]) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


class RuleSpec(Scope):
    """One rule: an action plus where the data may go.

    Attributes:
        action: allow, route-local, pseudonymise or block.
        hosting / tiers / regions: limits on deployments (see :class:`Scope`);
            ``route-local`` defaults ``hosting`` to local and self-hosted.
        entities: for ``pseudonymise``, the entity types to replace (default: every
            detected entity).
        send_raw_to: for ``pseudonymise``, deployments that may get the raw values
            (default: none; every deployment gets placeholders).
        reason: for ``block``, the explanation given to the caller.
    """

    action: Action = Action.ALLOW
    entities: tuple[str, ...] | None = None
    send_raw_to: Scope | None = None
    reason: str | None = Field(default=None, max_length=300)

    @field_validator("entities")
    @classmethod
    def _entity_names(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        return tuple(_check_entity_types(value)) if value is not None else None

    @_model_validator(mode="before")
    @classmethod
    def _local_by_default(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("action") == Action.ROUTE_LOCAL.value \
                and data.get("hosting") is None:
            return {**data, "hosting": [h.value for h in LOCAL_HOSTING]}
        return data

    @_model_validator(mode="after")
    def _consistent(self) -> RuleSpec:
        if self.action is Action.ROUTE_LOCAL and any(
            h not in LOCAL_HOSTING for h in self.hosting or ()
        ):
            raise ValueError("route-local allows only local and self-hosted hosting")
        if self.action is not Action.PSEUDONYMISE and (
            self.entities is not None or self.send_raw_to is not None
        ):
            raise ValueError("'entities' and 'send_raw_to' apply only to action pseudonymise")
        if self.reason is not None and self.action is not Action.BLOCK:
            raise ValueError("'reason' applies only to action block")
        return self

    @property
    def scope(self) -> Scope:
        return Scope(hosting=self.hosting, tiers=self.tiers, regions=self.regions)


class ClassOverride(_Strict):
    """Rules for one key (or tenant) that replace the policy's rules of the same name."""

    classes: dict[DataClass, RuleSpec] = Field(default_factory=dict)
    entities: dict[str, RuleSpec] = Field(default_factory=dict)
    entity_classes: dict[str, DataClass] = Field(default_factory=dict)

    @field_validator("entities", "entity_classes")
    @classmethod
    def _entity_keys(cls, value: dict[str, Any]) -> dict[str, Any]:
        _check_entity_types(value)
        return value


class TenantOverride(ClassOverride):
    """A tenant: the virtual key ids that belong to it, and its overrides."""

    keys: tuple[str, ...] = Field(min_length=1)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What a policy decided for one request.

    Attributes:
        policy: the policy's name (stacked policies' names joined with ``+``).
        data_class: the request's class after the policy's ``entity_classes``.
        action: the strictest action of the matching rules.
        rule: the rule that decided (``classes.regulated``, ``keys.k1.entities.API_KEY``,
            ``tags.eu``..., or ``default`` when nothing matched).
        rules: every matching rule, in evaluation order.
        scopes: (rule, scope) limits a deployment must all satisfy.
        pseudonymise: entity types to replace (None: all detected), when the action or
            any matching rule pseudonymises; ``pseudonymising`` says whether one does.
        raw_scopes: where raw values may still go when pseudonymising (empty: nowhere).
        reason: the block reason, when blocking.
    """

    policy: str
    data_class: DataClass
    action: Action
    rule: str
    rules: tuple[str, ...] = ()
    scopes: tuple[tuple[str, Scope], ...] = ()
    pseudonymising: bool = False
    pseudonymise: frozenset[str] | None = None
    raw_scopes: tuple[Scope, ...] = ()
    reason: str | None = None

    @property
    def constrained(self) -> bool:
        """Whether any rule limits the deployments."""
        return bool(self.scopes)

    def refuses(self, dep: Deployment) -> str | None:
        """None when ``dep`` may serve this request, else why not (shown to the caller;
        the screening's router rule marks it a POLICY exclusion, so the router answers
        PolicyDenied when nothing is left)."""
        if self.action is Action.BLOCK:
            return f"not allowed: blocked by data policy {self.policy} ({self.rule})"
        for rule, scope in self.scopes:
            why = scope.refuses(dep)
            if why is not None:
                return (f"not allowed for {self.data_class.value} data by policy "
                        f"{self.policy} ({rule}: {why})")
        return None

    def raw_allowed(self, dep: Deployment) -> bool:
        """Whether ``dep`` may receive the raw values of pseudonymised entities."""
        if not self.pseudonymising:
            return True
        return bool(self.raw_scopes) and all(s.refuses(dep) is None for s in self.raw_scopes)

    def pseudonymises(self, entity_type: str) -> bool:
        return self.pseudonymising and (self.pseudonymise is None
                                        or entity_type in self.pseudonymise)


@dataclass(slots=True)
class _Matches:
    """Rules collected while evaluating one request."""

    items: list[tuple[str, RuleSpec]] = field(default_factory=list)

    def add(self, rule: str, spec: RuleSpec | None) -> None:
        if spec is not None:
            self.items.append((rule, spec))


class Policy(ClassOverride):
    """A data policy (see the module docstring for how rules combine).

    Attributes:
        name: shown in audit records and errors.
        entity_classes: raise the data class of a request holding these entity types
            (on top of the detector's own classification).
        classes / entities / tags: rules by data class, entity type and request tag.
        keys: overrides by virtual key id; tenants: overrides for groups of keys.
        patterns: the policy's own entity types, each with its regular expressions
            (a mapping in the file, or a list of them), compiled when the policy loads;
            the guard runs them on every text it scans whenever the policy applies.
    """

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    description: str = ""
    # classes, entities and entity_classes (validated) come from ClassOverride
    tags: dict[str, RuleSpec] = Field(default_factory=dict)
    keys: dict[str, ClassOverride] = Field(default_factory=dict)
    tenants: dict[str, TenantOverride] = Field(default_factory=dict)
    patterns: dict[str, tuple[PatternSpec, ...]] = Field(default_factory=dict)

    @field_validator("patterns", mode="before")
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        """``NAME: {regex: ...}`` and ``NAME: '<regex>'`` are short for a list of one."""
        if isinstance(value, Mapping):
            return {k: [{"regex": v}] if isinstance(v, str) else [v] if isinstance(v, Mapping)
                    else v for k, v in value.items()}
        return value

    @field_validator("patterns")
    @classmethod
    def _pattern_names(cls, value: dict[str, tuple[PatternSpec, ...]]
                       ) -> dict[str, tuple[PatternSpec, ...]]:
        check_pattern_names(value)
        return value

    @_model_validator(mode="after")
    def _one_tenant_per_key(self) -> Policy:
        seen: dict[str, str] = {}
        for tenant, spec in self.tenants.items():
            for key in spec.keys:
                if key in seen:
                    raise ValueError(f"key {key!r} belongs to tenants {seen[key]!r} and "
                                     f"{tenant!r}; a key may belong to one tenant")
                seen[key] = tenant
        return self

    def tenant_of(self, key_id: str | None) -> str | None:
        if key_id is None:
            return None
        for tenant, spec in self.tenants.items():
            if key_id in spec.keys:
                return tenant
        return None

    def _layers(self, key_id: str | None) -> list[tuple[str, ClassOverride]]:
        """Override layers that apply to ``key_id``, most specific first."""
        layers: list[tuple[str, ClassOverride]] = []
        if key_id is not None and key_id in self.keys:
            layers.append((f"keys.{key_id}.", self.keys[key_id]))
        tenant = self.tenant_of(key_id)
        if tenant is not None:
            layers.append((f"tenants.{tenant}.", self.tenants[tenant]))
        return layers

    def classify(self, data_class: DataClass, entity_types: Iterable[str],
                 key_id: str | None = None) -> DataClass:
        """``data_class`` raised by the ``entity_classes`` of the policy (or of the key's
        and tenant's overrides, which replace the policy's entry for a type)."""
        layers = self._layers(key_id)
        for etype in entity_types:
            found = next((o.entity_classes[etype] for _, o in layers
                          if etype in o.entity_classes), self.entity_classes.get(etype))
            if found is not None and found.rank > data_class.rank:
                data_class = found
        return data_class

    def evaluate(self, data_class: DataClass, entity_counts: Mapping[str, int], *,
                 key_id: str | None = None, tags: Iterable[str] = ()) -> Verdict:
        """The verdict for a request of ``data_class`` holding these entity types."""
        layers = self._layers(key_id)
        matches = _Matches()
        matches.add(*_pick(layers, "classes", data_class, self.classes, data_class.value))
        for etype in sorted(entity_counts):
            matches.add(*_pick(layers, "entities", etype, self.entities, etype))
        for tag in sorted(set(tags)):
            matches.add(f"tags.{tag}", self.tags.get(tag))
        return _combine(self.name, data_class, matches.items)


def _pick(layers: Sequence[tuple[str, ClassOverride]], kind: str, key: Any,
          base: Mapping[Any, RuleSpec], label: str) -> tuple[str, RuleSpec | None]:
    for prefix, override in layers:
        table: Mapping[Any, RuleSpec] = getattr(override, kind)
        if key in table:
            return f"{prefix}{kind}.{label}", table[key]
    return f"{kind}.{label}", base.get(key)


def _combine(policy: str, data_class: DataClass,
             items: list[tuple[str, RuleSpec]]) -> Verdict:
    if not items:
        return Verdict(policy, data_class, Action.ALLOW, "default")
    rule, top = max(items, key=lambda item: item[1].action.rank)  # first of the strictest
    pseudo = [spec for _, spec in items if spec.action is Action.PSEUDONYMISE]
    types: frozenset[str] | None = None
    if pseudo and all(spec.entities is not None for spec in pseudo):
        types = frozenset(t for spec in pseudo for t in spec.entities or ())
    raw = tuple(spec.send_raw_to for spec in pseudo if spec.send_raw_to is not None)
    return Verdict(
        policy=policy,
        data_class=data_class,
        action=top.action,
        rule=rule,
        rules=tuple(name for name, _ in items),
        scopes=tuple((name, spec.scope) for name, spec in items if not spec.scope.unlimited),
        pseudonymising=bool(pseudo),
        pseudonymise=types,
        raw_scopes=raw if len(raw) == len(pseudo) else (),
        reason=top.reason if top.action is Action.BLOCK else None,
    )


def request_tags(body: Any, header: str | None = None) -> frozenset[str]:
    """A request's tags: the body's ``tags`` (``extra_body={"tags": [...]}``) and the
    ``x-modelmix-tags`` header (comma-separated), merged.

    Tags are asserted by the caller, so a policy's tag rules can only tighten it.

    Raises:
        InvalidRequest: not a list of short names (letters, digits, ``._:/-``), or more
            than 16 tags.
    """
    if body is not None and (not isinstance(body, list)
                             or not all(isinstance(t, str) for t in body)):
        raise InvalidRequest('tags: must be a list of strings, e.g. ["eu-personal-data"]',
                             param="tags", code="invalid_value")
    tags = [*(body or ()), *(t.strip() for t in (header or "").split(",") if t.strip())]
    bad = next((t for t in tags if not _TAG.match(t)), None)
    if bad is not None:
        shown = bad if len(bad) <= 64 else bad[:64] + "..."
        raise InvalidRequest(f"tags: {shown!r} is not a valid tag (letters, digits and "
                             "._:/- only, at most 64 characters)", param="tags",
                             code="invalid_value")
    if len(set(tags)) > _MAX_TAGS:
        raise InvalidRequest(f"tags: at most {_MAX_TAGS} tags", param="tags",
                             code="invalid_value")
    return frozenset(tags)
