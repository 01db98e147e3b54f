"""The ``arithmetic`` verifier: recompute every worked step of a quantitative answer.

For GSM8K-style worked solutions and finance answers. Every step the answer writes out
(``3 x 60 = 180``, ``<<3*60=180>>``, ``180 meters/session * 3 = 540``, ``20% of $50 =
$10``) is recomputed exactly (:mod:`._expr`, fractions, no ``eval``) and must equal its
stated result up to the stated precision; the final number (``#### 540``, "the answer is
540", else the last number) must be the result of a step. With ``numbers_from_prompt``
(finance: figures must come from the question or its tool results), every number of the
answer must also appear in the prompt, formatting aside (``1,234.5`` = ``1234.50``), or be
the checked result of a computation over earlier such numbers.

Options: ``require_final`` (default true: an answer without a number fails),
``numbers_from_prompt`` (default false), ``allow`` (numbers always accepted in that mode;
default ``[0, 1, 100]``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, ClassVar

from modelmix.errors import ConfigError
from modelmix.routing.cascade._base import Check, Verifier, bool_option, check_options
from modelmix.routing.cascade._expr import Token
from modelmix.routing.cascade._text import (
    FinalAnswer,
    RawStep,
    agrees,
    find_final,
    find_numbers,
    find_steps,
    strip_annotations,
)

__all__ = ["Analysis", "ArithmeticVerifier", "analyse", "prompt_numbers"]

_NUMBER_WORDS: dict[str, tuple[int | Fraction, ...]] = {
    "zero": (0,), "one": (1,), "two": (2,), "three": (3,), "four": (4,), "five": (5,),
    "six": (6,), "seven": (7,), "eight": (8,), "nine": (9,), "ten": (10,), "eleven": (11,),
    "twelve": (12,), "thirteen": (13,), "fourteen": (14,), "fifteen": (15,),
    "sixteen": (16,), "seventeen": (17,), "eighteen": (18,), "nineteen": (19,),
    "twenty": (20,), "thirty": (30,), "forty": (40,), "fifty": (50,), "sixty": (60,),
    "seventy": (70,), "eighty": (80,), "ninety": (90,), "hundred": (100,),
    "thousand": (1000,), "million": (1_000_000,), "dozen": (12,), "twice": (2,),
    "double": (2,), "triple": (3,), "thrice": (3,), "half": (Fraction(1, 2), 2),
    "third": (Fraction(1, 3), 3), "quarter": (Fraction(1, 4), 4), "percent": (100,),
}
_WORD = re.compile(r"[A-Za-z]+")
_FRACTION = re.compile(r"(?<![\d.])(\d+)\s*/\s*(\d+)(?![\d.])")
_ENUMERATION = re.compile(r"(?m)^\s*(?:step\s+)?\d+[.):]\s|\bstep\s+\d+", re.I)
_DEFAULT_ALLOW = (Fraction(0), Fraction(1), Fraction(100))


@dataclass(frozen=True, slots=True)
class Analysis:
    """What the arithmetic verifier found in one answer.

    Attributes:
        steps: the worked steps, in reading order.
        failed: indices into ``steps`` whose stated result is not the recomputed one.
        final: the final number, or None when the answer has no number.
        final_ok: the final number is a step's result (None: no steps to compare with).
        final_in_prompt: the final number is also a number of the prompt.
        unsupported: answer numbers neither in the prompt nor computed from earlier
            numbers (always computed; a failure only with ``numbers_from_prompt``).
        prompt_numbers_used: share of the prompt's distinct numbers the answer uses.
    """

    steps: tuple[RawStep, ...]
    failed: tuple[int, ...]
    final: FinalAnswer | None
    final_ok: bool | None
    final_in_prompt: bool
    unsupported: tuple[Token, ...]
    prompt_numbers_used: float


def prompt_numbers(prompt: str) -> set[Fraction]:
    """Every number the prompt states: digits (``$1,234.50``; ``20%`` as 0.2 and 20),
    fractions (``3/4`` as 0.75) and number words (``twelve``, ``dozen``, ``half``)."""
    values: set[Fraction] = set()
    for _, token in find_numbers(prompt):
        values.update(_token_values(token))
    for m in _FRACTION.finditer(prompt):
        if int(m.group(2)):
            values.add(Fraction(int(m.group(1)), int(m.group(2))))
    for word in _WORD.findall(prompt):
        values.update(Fraction(v) for v in _NUMBER_WORDS.get(word.lower(), ()))
    return values


def _token_values(token: Token) -> set[Fraction]:
    assert token.value is not None
    values = {token.value, abs(token.value)}
    if token.percent:
        values.add(token.value * 100)
    return values


def _supported(token: Token, known: set[Fraction]) -> bool:
    """``token`` is one of ``known`` (which holds absolute values too), allowing rounding
    to its written precision, sign and percent-vs-fraction differences."""
    if token.value is None:
        return False
    if _token_values(token) & known:
        return True
    if token.decimals:
        positive = _abs(token)
        return any(agrees(value, positive) for value in known if value > 0)
    return False


def _abs(token: Token) -> Token:
    assert token.value is not None
    return Token("num", token.text.lstrip("-"), abs(token.value), token.percent, token.decimals)


def _unsupported(prompt_values: set[Fraction], answer: str, steps: Sequence[RawStep],
                 allow: Sequence[Fraction]) -> list[Token]:
    """Answer numbers in reading order that are not in the prompt (or ``allow``) and not
    the result of a checked step over supported numbers."""
    clean, _ = strip_annotations(answer)
    skip = {m.end() for m in _ENUMERATION.finditer(clean)}
    known = {abs(v) for v in (*prompt_values, *allow)} | set(prompt_values)
    pending = sorted(steps, key=lambda s: s.position)
    found: list[Token] = []
    for position, token in find_numbers(clean):
        # a step's result is read when reached ("= $<<0.25*40=10>>10": the "$" first)
        while pending and pending[0].position <= position + 2:
            step = pending.pop(0)
            bad = [t for t in step.operands if not _supported(t, known)]
            found.extend(bad)
            if step.ok and not bad:
                known.update({step.computed, abs(step.computed),
                              *_token_values(step.stated)})
        if not _skipped(clean, position, token, skip) and not _supported(token, known):
            found.append(token)
    return _unique(found)


def _skipped(clean: str, position: int, token: Token, skip: set[int]) -> bool:
    """List numbering (``1.``, ``Step 2``) is not a quantity."""
    end = position + len(token.text)
    return any(end <= s <= end + 2 for s in skip)


def _unique(tokens: Sequence[Token]) -> list[Token]:
    seen: set[Fraction | None] = set()
    out = []
    for t in tokens:
        if t.value not in seen:
            seen.add(t.value)
            out.append(t)
    return out


def _final_ok(final: FinalAnswer | None, steps: Sequence[RawStep]) -> bool | None:
    if final is None or not steps:
        return None
    values = {v for s in steps for v in (s.computed, *_token_values(s.stated))}
    values |= {v * 100 for v in values if abs(v) <= 1}  # 7/20 = 0.35 -> "#### 35" (%)
    return any(agrees(v, final.token) or agrees(-v, final.token) for v in values)


def analyse(prompt: str, answer: str, *,
            allow: Sequence[Fraction] = _DEFAULT_ALLOW) -> Analysis:
    """Every check of the arithmetic verifier on one answer, without a verdict."""
    steps = tuple(find_steps(answer))
    final = find_final(answer)
    given = prompt_numbers(prompt)
    answer_values = {v for _, t in find_numbers(answer) for v in _token_values(t)}
    used = len(given & answer_values) / len(given) if given else 1.0
    return Analysis(
        steps=steps, failed=tuple(i for i, s in enumerate(steps) if not s.ok), final=final,
        final_ok=_final_ok(final, steps),
        final_in_prompt=final is not None and _supported(final.token, given),
        unsupported=tuple(_unsupported(given, answer, steps, allow)),
        prompt_numbers_used=used)


def _fmt(value: Fraction) -> str:
    if value.denominator == 1 and abs(value.numerator) < 10**30:
        return str(value.numerator)
    if abs(value) > 10**300:  # beyond a float
        return f"a number of about {len(str(abs(value.numerator) // value.denominator))} digits"
    text = f"{float(value):.6g}"
    return text if Fraction(text) == value else f"{text}..."


def _step_reason(index: int, step: RawStep) -> str:
    return (f"step {index + 1}: {step.expression} = {step.stated.text}, but "
            f"{step.expression} = {_fmt(step.computed)}")


class ArithmeticVerifier(Verifier):
    """Recomputes the worked steps of a quantitative answer (see the module doc).

    Score: the share of failed checks (every step, the final answer, and with
    ``numbers_from_prompt`` the provenance of numbers), 0.0 when all pass; an answer
    without a final number scores 1.0.

    Example::

        v = ArithmeticVerifier.from_options({})
        v.check(prompt, "3 x 60 = 190\\n#### 190")
        # Check(ok=False, score=0.5, reason='step 1: 3 x 60 = 190, but 3 x 60 = 180')
    """

    name: ClassVar[str] = "arithmetic"
    OPTIONS: ClassVar[tuple[str, ...]] = ("require_final", "numbers_from_prompt", "allow")

    def __init__(self, *, require_final: bool = True, numbers_from_prompt: bool = False,
                 allow: Sequence[Fraction] = _DEFAULT_ALLOW) -> None:
        self.require_final = require_final
        self.numbers_from_prompt = numbers_from_prompt
        self.allow = tuple(allow)

    def __repr__(self) -> str:
        return (f"ArithmeticVerifier(require_final={self.require_final}, "
                f"numbers_from_prompt={self.numbers_from_prompt})")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> ArithmeticVerifier:
        """Options ``require_final``, ``numbers_from_prompt`` (booleans) and ``allow``
        (a list of numbers). Raises :class:`ConfigError` naming a bad one."""
        check_options(cls.name, options, cls.OPTIONS)
        return cls(require_final=bool_option(cls.name, options, "require_final", True),
                   numbers_from_prompt=bool_option(cls.name, options, "numbers_from_prompt",
                                                   False),
                   allow=_allow_option(options.get("allow")))

    def check(self, prompt: str, answer: str) -> Check:
        """Recompute the steps of ``answer`` (see the class doc for the score)."""
        return self.check_analysis(analyse(prompt, answer, allow=self.allow))

    def check_analysis(self, found: Analysis) -> Check:
        """The verdict on an answer already analysed (:func:`analyse`)."""
        if found.final is None and self.require_final:
            return Check(ok=False, score=1.0, reason="no final number in the answer")
        problems = [_step_reason(i, found.steps[i]) for i in found.failed]
        checks = len(found.steps)
        if found.final_ok is not None:
            checks += 1
            if not found.final_ok:
                assert found.final is not None
                problems.append(f"final answer {found.final.token.text} is not the result "
                                f"of any step (last step gives {found.steps[-1].stated.text})")
        if self.numbers_from_prompt:
            checks += 1
            if found.unsupported:
                problems.append(f"unsupported number {found.unsupported[0].text}: not in "
                                "the prompt and not computed from earlier numbers")
        if problems:
            return Check(ok=False, score=len(problems) / max(checks, 1),
                         reason="; ".join(problems))
        return Check(ok=True, score=0.0, reason=_ok_reason(found))


def _ok_reason(found: Analysis) -> str:
    if found.final is None:
        return "no final number, and none required"
    text = found.final.token.text
    if not found.steps:
        return f"final answer {text}; no worked steps to check"
    n = len(found.steps)
    return f"final answer {text} matches the recomputed steps ({n} step{'s' * (n != 1)})"


def _allow_option(value: Any) -> tuple[Fraction, ...]:
    if value is None:
        return _DEFAULT_ALLOW
    if not isinstance(value, list | tuple) or any(
            isinstance(v, bool) or not isinstance(v, int | float | str) for v in value):
        raise ConfigError("verifier 'arithmetic': option 'allow' must be a list of numbers, "
                          f"got {value!r}")
    try:
        return tuple(Fraction(str(v).replace(",", "")) for v in value)
    except (ValueError, ZeroDivisionError):
        raise ConfigError("verifier 'arithmetic': option 'allow' must be a list of numbers, "
                          f"got {value!r}") from None
