"""The safe expression and template language of systems: Jinja2's sandbox.

Conditions (``when: guard.class == "regulated"``) are Jinja2 *expressions* and
templates (``content: "Summarise: {{ extract.text }}"``) are Jinja2 *templates*, both
compiled once at load time in an :class:`~jinja2.sandbox.ImmutableSandboxedEnvironment`:
no Python ``eval`` of spec text, no attribute starting with ``_``, no mutation of step
outputs, ranges capped by Jinja2 (100,000 items) and, here, ``**`` and string / list
repetition capped too, and a template's output capped at 10 million characters. These
bound what a caller's values can do; a template that joins 100,000 copies of the input
can still build large strings, so templates are operator-written config, reviewed as code. Ansible's
``when:`` and NeMo Guardrails' prompt templates use the same language, so operators
already know it.

Names an expression may use: ``input`` (the request: ``input.text`` is the last user
message, ``input.messages`` every message as ``{role, content}``) and every step's
outputs by step name (docs/systems.md lists each kind's outputs). A step that did not
run reads as ``{"ran": false}``, so ``cloud.text`` of a skipped step is undefined (falsy,
renders as ``""``).
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable, Mapping, MutableMapping
from typing import Any

import jinja2
import jinja2.meta
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from modelmix.routing.cascade import extract_json

__all__ = ["MAX_RENDERED_CHARS", "Condition", "ExpressionError", "Template", "references",
           "template_globals"]

#: Longest text a template may render (the gateway's default body limit is 32 MiB).
MAX_RENDERED_CHARS = 10_000_000
#: Longest string or list a ``*`` may build, and the largest exponent ``**`` may use.
_MAX_REPEAT = 100_000
_MAX_EXPONENT = 1_000


class ExpressionError(ValueError):
    """A condition or template that does not compile (syntax), or that names something
    other than ``input`` and known steps."""


def _bounded_mul(left: Any, right: Any) -> Any:
    for seq, count in ((left, right), (right, left)):
        if isinstance(seq, str | list | tuple) and isinstance(count, int) and (
                len(seq) * count > _MAX_REPEAT):
            raise SecurityError(f"repetition longer than {_MAX_REPEAT}")
    return operator.mul(left, right)


def _bounded_pow(left: Any, right: Any) -> Any:
    if isinstance(right, int | float) and abs(right) > _MAX_EXPONENT:
        raise SecurityError(f"exponent above {_MAX_EXPONENT}")
    return operator.pow(left, right)


_BINOPS: Mapping[str, Callable[[Any, Any], Any]] = {"*": _bounded_mul, "**": _bounded_pow}


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"*", "**"})

    def call_binop(self, context: Any, operator: str, left: Any, right: Any) -> Any:
        return _BINOPS[operator](left, right)

    def make_globals(self, d: MutableMapping[str, Any] | None) -> MutableMapping[str, Any]:
        """A plain dict, not Jinja2's ChainMap: a render copies its globals key by key,
        which is 60% of a render's set-up (benchmarks/systems/RESULTS.md). Safe because
        this environment's globals never change after import."""
        return {**self.globals, **(d or {})}


def _fromjson(value: Any) -> Any:
    """The ``fromjson`` filter: the JSON value in a text, found as the json-schema
    verifier finds it (the whole text, a fenced block, else the first embedded object or
    array); none when there is none. ``{{ {"fields": check.text | fromjson} | tojson }}``
    builds JSON from a model's JSON answer."""
    found = extract_json(str(value))
    return None if found is None else found[0]


def _search(value: Any, pattern: str) -> bool:
    """The ``search`` test: ``answer is search("\\d+ ?mg")``, a case-insensitive regular
    expression search (Python ``re``) in the value's text."""
    return re.search(pattern, str(value), re.IGNORECASE) is not None


#: One environment for every system: compiled code holds no per-request state.
_ENV = _Sandbox(autoescape=False, keep_trailing_newline=True)
_ENV.tests["search"] = _search
_ENV.filters["fromjson"] = _fromjson


def template_globals() -> frozenset[str]:
    """Names Jinja2 defines for every template (``range``, ``dict``, ``lipsum``...)."""
    return frozenset(_ENV.globals)


def references(source: str, *, template: bool = False) -> frozenset[str]:
    """The top-level names ``source`` reads (``{"guard", "input"}`` for
    ``guard.class == "regulated" and input.text``).

    Raises:
        ExpressionError: ``source`` does not parse.
    """
    text = source if template else "{{ (" + source + ") }}"
    try:
        return frozenset(jinja2.meta.find_undeclared_variables(_ENV.parse(text)))
    except jinja2.TemplateSyntaxError as exc:
        raise ExpressionError(f"{exc.message} in {source!r}") from exc


class Condition:
    """A compiled expression, evaluated over step outputs.

    Example::

        Condition('guard.class in ["regulated", "confidential"]').test(
            {"guard": {"class": "regulated"}})  # True
    """

    __slots__ = ("_run", "source")

    def __init__(self, source: str):
        self.source = source
        try:
            self._run = _ENV.compile_expression(source, undefined_to_none=False)
        except jinja2.TemplateSyntaxError as exc:
            raise ExpressionError(f"{exc.message} in {source!r}") from exc

    def __repr__(self) -> str:
        return f"Condition({self.source!r})"

    def value(self, names: Mapping[str, Any]) -> Any:
        """The expression's value (Jinja2's ``Undefined`` for a missing output)."""
        return self._run(**names)

    def test(self, names: Mapping[str, Any]) -> bool:
        """The expression's truth (undefined is false)."""
        return bool(self.value(names))


class Template:
    """A compiled template rendering step outputs into text.

    Example::

        Template("Summarise: {{ extract.text }}").render({"extract": {"text": "..."}})
    """

    __slots__ = ("_template", "source")

    def __init__(self, source: str):
        self.source = source
        try:
            self._template = _ENV.from_string(source)
        except jinja2.TemplateSyntaxError as exc:
            raise ExpressionError(f"{exc.message} in {source!r}") from exc

    def __repr__(self) -> str:
        return f"Template({self.source!r})"

    def render(self, names: Mapping[str, Any]) -> str:
        """The rendered text. Raises SecurityError past :data:`MAX_RENDERED_CHARS`
        (rendering stops there: loops cannot build more)."""
        parts: list[str] = []
        size = 0
        for part in self._template.generate(names):
            size += len(part)
            if size > MAX_RENDERED_CHARS:
                raise SecurityError(f"rendered text longer than {MAX_RENDERED_CHARS:,} "
                                    "characters")
            parts.append(part)
        return "".join(parts)
