"""A system's spec, validated and built into a DAG of steps.

A spec is a mapping (YAML) with ``steps`` (name -> step), optional ``output``,
``policy`` and ``description``; or, as shorthand for a one-step cascade, ``cascade``.
Steps depend on what they read (``{{ extract.text }}``, ``when: guard.class ...``,
``answer: draft``, ``input: prompt``) and on ``after``; steps that do not depend on each
other run concurrently. Every error names the file, the system, the step and the field.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, ValidationError

from modelmix.catalog import Config
from modelmix.errors import ConfigError
from modelmix.systems._base import STEP_KINDS, BuildContext, SpecError, Step
from modelmix.systems._expr import Condition, ExpressionError, references, template_globals

if TYPE_CHECKING:
    from modelmix.guard import Guard

__all__ = ["StepNode", "System", "SystemSpec", "build_system"]

_STEP_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,63}$")
#: Names expressions read besides steps, and Jinja2's own globals and keywords; a step
#: may not take them (it could never be read).
_RESERVED = frozenset({"input", "score", "threshold", "answer", "prompt", "loop", "true",
                       "false", "none", "not", "and", "or", "in", "is", "self", "if",
                       "else", "for", "block", "macro", "caller", "varargs", "kwargs",
                       *template_globals()})
#: Kinds whose outputs include ``text`` (may be a system's output).
_TEXT_KINDS = frozenset({"model", "cascade", "verify", "tool", "transform"})


class SystemSpec(BaseModel):
    """The fields of one system (docs/systems.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    description: str = ""
    policy: str | dict[str, Any] | None = None
    steps: dict[str, dict[str, Any]] | None = None
    output: str | list[str] | None = None
    cascade: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StepNode:
    """A built step with its condition and the steps it waits for."""

    step: Step
    when: Condition | None
    deps: frozenset[str]


@dataclass(frozen=True, slots=True)
class System:
    """A built system.

    Attributes:
        nodes: steps by name, in declaration order.
        order: a topological order (declaration order among independent steps).
        outputs: candidate output steps: the first that ran gives the answer.
        dependents: per step, the steps that wait for it.
        guard: the guard its model calls are screened with (the system's policy stacked
            on the gateway's), None for the service's own.
    """

    name: str
    description: str
    source: str
    nodes: dict[str, StepNode]
    order: tuple[str, ...]
    outputs: tuple[str, ...]
    dependents: dict[str, frozenset[str]]
    guard: Guard | None
    policy: str | None

    @property
    def model(self) -> str:
        return f"system/{self.name}"


GuardFactory = Callable[[str | dict[str, Any], "Guard | None"], "Guard"]


def build_system(name: str, raw: Any, config: Config, *, source: str,
                 base_guard: Guard | None, make_guard: GuardFactory | None) -> System:
    """Validate and build one system. Raises ConfigError naming source, system, step
    and field (exit status 2 at the CLI)."""
    where = f'{source}: system "{name}"'
    spec = _spec(raw, where)
    steps = dict(spec.steps or {})
    if spec.cascade is not None:
        if steps:
            raise ConfigError(f'{where}: give either "cascade" or "steps", not both')
        steps = {"cascade": {"kind": "cascade", **spec.cascade}}
    if not steps:
        raise ConfigError(f'{where}: field "steps": name at least one step')
    guard = base_guard
    if spec.policy is not None:
        if make_guard is None:
            raise ConfigError(f'{where}: field "policy": policies cannot be set here')
        try:
            guard = make_guard(spec.policy, base_guard)
        except ConfigError as exc:
            raise ConfigError(f'{where}: field "policy": {exc.message}') from exc

    def stacked(policy: str | dict[str, Any]) -> Guard:
        assert make_guard is not None
        return make_guard(policy, guard)

    build = BuildContext(config, name, guard, frozenset(steps),
                         stacked if make_guard is not None else None)
    nodes = {step: _node(step, body, build, f'{where}, step "{step}"')
             for step, body in steps.items()}
    order = _topological(nodes, where)
    outputs = _outputs(spec.output, nodes, where)
    _check_calls(nodes, where)
    dependents = {n: frozenset(m for m, node in nodes.items() if n in node.deps)
                  for n in nodes}
    policy = spec.policy if isinstance(spec.policy, str) else (
        None if spec.policy is None else str(spec.policy.get("name", "inline")))
    return System(name, spec.description, source, nodes, order, outputs, dependents,
                  guard, policy)


def _spec(raw: Any, where: str) -> SystemSpec:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping with steps")
    try:
        return SystemSpec.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f'{where}: field "{loc}": {err["msg"]}') from exc


def _node(name: str, body: Any, build: BuildContext, where: str) -> StepNode:
    if not _STEP_NAME.match(name) or name in _RESERVED:
        raise ConfigError(f"{where}: step names are lower-case identifiers (a-z, 0-9, _) "
                          f"usable in expressions, not {sorted(_RESERVED)}")
    if not isinstance(body, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a kind")
    fields = dict(body)
    kind = fields.pop("kind", None)
    cls = STEP_KINDS.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ConfigError(f'{where}, field "kind": unknown kind {kind!r}; known: '
                          f"{', '.join(sorted(STEP_KINDS))}")
    when_src, after = fields.pop("when", None), fields.pop("after", [])
    fields.pop("description", None)
    try:
        options = cls.Options.model_validate(fields)
        step = cls(name, options, build)
        when = _condition(when_src)
        deps = _deps(name, step, when, after, build.steps)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = ".".join(str(p) for p in err["loc"])
        raise ConfigError(f'{where}, field "{loc}": {err["msg"]}') from exc
    except SpecError as exc:
        raise ConfigError(f'{where}, field "{exc.field}": {exc.message}') from exc
    return StepNode(step, when, deps)


def _condition(source: Any) -> Condition | None:
    if source is None:
        return None
    if not isinstance(source, str | bool):
        raise SpecError("when", "must be a condition (text), e.g. 'verify.ok'")
    try:
        return Condition(str(source).lower() if isinstance(source, bool) else source)
    except ExpressionError as exc:
        raise SpecError("when", str(exc)) from exc


def _deps(name: str, step: Step, when: Condition | None, after: Any,
          steps: frozenset[str]) -> frozenset[str]:
    if isinstance(after, str):
        after = [after]
    if not isinstance(after, list) or not all(isinstance(a, str) for a in after):
        raise SpecError("after", "must be a list of step names")
    for field, names in (("after", set(after)),
                         ("when", references(when.source) if when else set()),
                         ("", step.references())):
        unknown = sorted(n for n in names if n != "input" and n not in steps)
        if unknown:
            where = field or _field_reading(step.options.model_dump(), unknown[0])
            raise SpecError(where, f"reads {unknown[0]!r}, which is neither input nor a "
                            f"step of this system (steps: {', '.join(sorted(steps))})")
        if name in names:
            raise SpecError(field, "a step cannot depend on itself")
    refs = set(after) | (references(when.source) if when else set()) | step.references()
    return frozenset(refs - {"input"})


def _field_reading(options: Any, name: str) -> str:
    """The option (``messages.0.content``, ``template``) whose text reads ``name``."""
    return _find_reading(options, name, "") or "options"


def _find_reading(value: Any, name: str, path: str) -> str:
    if isinstance(value, str):
        return path if re.search(rf"\b{re.escape(name)}\b", value) else ""
    items: list[tuple[Any, Any]] = (list(value.items()) if isinstance(value, dict)
                                    else list(enumerate(value))
                                    if isinstance(value, list | tuple) else [])
    for key, item in items:
        found = _find_reading(item, name, f"{path}.{key}" if path else str(key))
        if found:
            return found
    return ""


def _topological(nodes: dict[str, StepNode], where: str) -> tuple[str, ...]:
    order: list[str] = []
    placed: set[str] = set()
    while len(order) < len(nodes):
        ready = [n for n, node in nodes.items() if n not in placed and node.deps <= placed]
        if not ready:
            raise ConfigError(f'{where}: field "steps": cycle {_cycle(nodes, placed)}')
        order.extend(ready)
        placed.update(ready)
    return tuple(order)


def _cycle(nodes: dict[str, StepNode], placed: set[str]) -> str:
    """One cycle among the unplaced steps, as ``a -> b -> a``."""
    start = next(n for n in nodes if n not in placed)
    path = [start]
    while True:
        nxt = sorted(d for d in nodes[path[-1]].deps if d not in placed)[0]
        if nxt in path:
            loop = [*path[path.index(nxt):], nxt]
            return " -> ".join(loop)
        path.append(nxt)


def _check_calls(nodes: dict[str, StepNode], where: str) -> None:
    """A system calls a model (it answers like one), and a model step's ``input`` names
    a transform step (the kind that produces messages)."""
    if not any(node.step.kind in ("model", "cascade") for node in nodes.values()):
        raise ConfigError(f'{where}: field "steps": a system needs at least one model or '
                          "cascade step (it is called like a model)")
    for name, node in nodes.items():
        source = getattr(node.step, "input_step", None)
        if source is not None and nodes[source].step.kind != "transform":
            raise ConfigError(f'{where}, step "{name}", field "input": step {source!r} is a '
                              f"{nodes[source].step.kind} step; input names a transform "
                              "step (its messages are sent)")


def _outputs(output: str | list[str] | None, nodes: dict[str, StepNode], where: str
             ) -> tuple[str, ...]:
    names = [output] if isinstance(output, str) else list(output or [list(nodes)[-1]])
    if not names:
        raise ConfigError(f'{where}: field "output": name at least one step')
    for name in names:
        if name not in nodes:
            raise ConfigError(f'{where}: field "output": unknown step {name!r}')
        if nodes[name].step.kind not in _TEXT_KINDS:
            raise ConfigError(f'{where}: field "output": step {name!r} is a '
                              f"{nodes[name].step.kind} step, which produces no text")
    return tuple(names)
