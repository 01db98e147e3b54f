"""A cheap check for regular expressions that may backtrack catastrophically.

A policy's own entity patterns (:mod:`._policy_patterns`) run on every text of every
request, so one pattern with nested repeats, ``(a+)+`` or ``(\\w+\\s?)*``, could take
exponential time on a crafted text and stall the gateway. :func:`nested_repeat` reads the
pattern's parse tree (the one :mod:`re` builds) and reports a repeat that may run more
than once around a body holding an unbounded repeat, unless each round must cross a
*separator*: a required character that the body's unbounded repeats cannot match, as the
``.`` in ``(?:\\.[a-z0-9-]+)*`` or the ``,`` in ``(?:\\w+,)*``. A separator that is itself
repeated (``\\s+`` in ``(?:\\s+\\w+)*``) counts when another required item of the round
cannot match it.

It is a heuristic, and cheap (under a millisecond per pattern, once, when the policy loads). It
is conservative where it cannot tell the characters apart (a repeated longer group inside
a repeated group, ``((ab)+c)*``, is reported though it is safe) and blind to overlapping
alternatives under a repeat (``(a|a)*``) and to polynomial blow-ups (``\\d+\\d+x``).
Possessive repeats (``\\w++``) and atomic groups never backtrack and are not reported;
lookarounds are atomic in Python.

Example::

    nested_repeat(r"(\\w+\\s?)*$")          # "nested quantifiers: a group repeated by '*' ..."
    nested_repeat(r"[a-z]+(?:\\.[a-z]+)*")   # None
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterator, Sequence
from typing import Any

__all__ = ["nested_repeat"]

def _re_parser() -> Any:
    """The parser of the standard library's ``re`` (private, so typed Any; ``sre_parse``
    before Python 3.11 and its deprecated alias after)."""
    try:
        return importlib.import_module("re._parser")
    except ImportError:  # pragma: no cover - an interpreter without re._parser
        return importlib.import_module("sre_parse")


_PARSER: Any = _re_parser()
_REPEATS = frozenset({"MAX_REPEAT", "MIN_REPEAT"})
_SINGLE = frozenset({"LITERAL", "NOT_LITERAL", "ANY", "IN"})
_CATEGORIES = {
    "CATEGORY_DIGIT": re.compile(r"\d"), "CATEGORY_NOT_DIGIT": re.compile(r"\D"),
    "CATEGORY_WORD": re.compile(r"\w"), "CATEGORY_NOT_WORD": re.compile(r"\W"),
    "CATEGORY_SPACE": re.compile(r"\s"), "CATEGORY_NOT_SPACE": re.compile(r"\S"),
}
#: Characters tried when comparing two character sets: ASCII, Latin-1 and a few others.
_ALPHABET = "".join(map(chr, range(256))) + "\u2028\u3000\u0663\u4e2d\u0416\u00df"

_Item = tuple[Any, Any]  # (opcode, argument) of the parse tree


def nested_repeat(pattern: str) -> str | None:
    """Why ``pattern`` (which compiles) may backtrack catastrophically, or None."""
    tree = _PARSER.parse(pattern)
    ignore_case = bool(tree.state.flags & re.IGNORECASE) or "(?i" in pattern
    for body, label in _repeated_bodies(list(tree)):
        if _unbounded(body) and not _separated(body, ignore_case):
            return (f"nested quantifiers: a group repeated by '{label}' holds an unbounded "
                    "repeat (*, + or {n,}) and no required separator between rounds, so it "
                    "can take exponential time; start or end each round with a character "
                    "the inner repeat cannot match, e.g. (?:-[A-Z0-9]+)*")
    return None


def _children(op: str, av: Any) -> list[list[_Item]]:
    """The sub-sequences of one node that the matcher may backtrack into."""
    if op in _REPEATS:
        return [list(av[2])]
    if op == "SUBPATTERN":
        return [list(av[-1])]
    if op == "BRANCH":
        return [list(branch) for branch in av[1]]
    if op == "GROUPREF_EXISTS":
        return [list(part) for part in av[1:] if part is not None]
    return []  # atoms, possessive repeats, atomic groups and lookarounds


def _repeated_bodies(items: Sequence[_Item]) -> Iterator[tuple[list[_Item], str]]:
    """The body of every repeat that may run more than once, anywhere in ``items``."""
    for op, av in items:
        name = str(op)
        if name in _REPEATS and av[1] > 1:
            yield _flat(list(av[2])), _quantifier(av[0], av[1])
        for child in _children(name, av):
            yield from _repeated_bodies(child)


def _quantifier(low: int, high: int) -> str:
    """How a repeat was written: ``*``, ``+``, ``{2,}``, ``{2,5}``."""
    if high == _PARSER.MAXREPEAT:
        return {0: "*", 1: "+"}.get(low, f"{{{low},}}")
    return f"{{{low},{high}}}"


def _flat(items: Sequence[_Item]) -> list[_Item]:
    """``items`` with capturing groups opened into the sequence around them."""
    out: list[_Item] = []
    for item in items:
        if str(item[0]) == "SUBPATTERN":
            out.extend(_flat(list(item[1][-1])))
        else:
            out.append(item)
    return out


def _unbounded(items: Sequence[_Item]) -> list[_Item]:
    """Every unbounded repeat in ``items``, at any depth (outside lookarounds)."""
    found: list[_Item] = []
    for item in items:
        name, av = str(item[0]), item[1]
        if name in _REPEATS and av[1] == _PARSER.MAXREPEAT:
            found.append(item)
        for child in _children(name, av):
            found.extend(_unbounded(child))
    return found


def _separated(body: Sequence[_Item], ignore_case: bool) -> bool:
    """Whether a required one-character item of ``body`` keeps its rounds apart."""
    inner = _unbounded(body)
    required = [item for item in body if _required_chars(item) is not None]
    for item in required:
        chars = _charset(_required_chars(item), ignore_case)
        others = [r for r in inner if r is not item]
        if any(_charset(_single(r), ignore_case) & chars for r in others):
            continue
        if any(r is item for r in inner) and not any(
                r is not item and not _charset(_required_chars(r), ignore_case) & chars
                for r in required):
            continue  # a repeated separator needs another required item it cannot match
        return True
    return False


def _single(repeat: _Item) -> _Item | None:
    """The one-character item a repeat repeats, or None (a longer body)."""
    body = _flat(list(repeat[1][2]))
    if len(body) == 1 and str(body[0][0]) in _SINGLE:
        return body[0]
    return None


def _required_chars(item: _Item) -> _Item | None:
    """The one-character item ``item`` requires at least once, or None."""
    op, av = item
    if str(op) in _SINGLE:
        return item
    if str(op) in _REPEATS and av[0] >= 1:
        return _single(item)
    return None


def _charset(item: _Item | None, ignore_case: bool) -> frozenset[str]:
    """The characters of :data:`_ALPHABET` that ``item`` matches (all for None)."""
    if item is None:
        return frozenset(_ALPHABET)
    return frozenset(ch for ch in _ALPHABET
                     if any(_accepts(item, c) for c in _cases(ch, ignore_case)))


def _cases(ch: str, ignore_case: bool) -> set[str]:
    if not ignore_case:
        return {ch}
    return {c for c in (ch, ch.lower(), ch.upper()) if len(c) == 1}


def _accepts(item: _Item, ch: str) -> bool:
    """Whether the one-character ``item`` matches ``ch`` (unknown items match all)."""
    op, av = str(item[0]), item[1]
    if op == "LITERAL":
        return ch == chr(av)
    if op == "NOT_LITERAL":
        return ch != chr(av)
    if op == "RANGE":
        return bool(av[0] <= ord(ch) <= av[1])
    if op == "CATEGORY":
        category = _CATEGORIES.get(str(av))
        return category is None or bool(category.match(ch))
    if op == "IN":
        negate = any(str(o) == "NEGATE" for o, _ in av)
        return negate != any(_accepts((o, a), ch) for o, a in av if str(o) != "NEGATE")
    return True  # ANY and anything unknown
