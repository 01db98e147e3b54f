"""Reading worked solutions: arithmetic steps (``3 x 60 = 180``, ``<<3*60=180>>``) and the
final answer (``#### 540``, "the answer is 540", the last number).

Steps are found around each ``=`` of the answer: the left side is the longest run of
numbers, operators and parentheses that ends there and parses (unit words after a number,
``180 meters/session * 3``, are skipped; ``x``, ``times``, ``of`` between numbers
multiply), the right side starts with the stated result. GSM8K's calculator annotations
``<<expression=result>>`` are steps too; a step written both ways counts once.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from modelmix.routing.cascade._expr import (
    MAX_TOKENS,
    NUMBER,
    ExprError,
    Token,
    evaluate,
    negated,
    number_token,
    tokenize_expression,
)

__all__ = ["FinalAnswer", "RawStep", "agrees", "find_final", "find_numbers", "find_steps",
           "strip_annotations"]

_ANNOTATION = re.compile(r"<<([^<>=]{1,400})=([^<>]{1,100})>>")
#: Operator words, replaced by the operator padded to the same length (offsets stay).
_WORDS = ((re.compile(r"\bdivided by\b", re.I), "/"),
          (re.compile(r"\bmultiplied by\b", re.I), "*"),
          (re.compile(r"\\(?:times|cdot)\b|\btimes\b", re.I), "*"),
          (re.compile(r"\\div\b"), "/"), (re.compile(r"\bplus\b", re.I), "+"),
          (re.compile(r"\bminus\b", re.I), "-"))
_LABEL = re.compile(r"\([^()\d]{0,40}\)")  # "4 (Science) + 20 (History)": labels
_PROSE = re.compile(
    r"(?P<number>" + NUMBER.pattern + r")|(?P<eq>~=|\u2248|=)"
    r"|(?P<op>\*\*|[-+*/^\u00d7\u00b7\u22c5\u00f7\u2212\u2013])|(?P<lp>\()|(?P<rp>\))"
    r"|(?P<word>[A-Za-z][A-Za-z'\u2019]*(?:/[A-Za-z]+)*)|(?P<brk>\S)")
_FINAL_PATTERNS = (
    ("####", re.compile(r"####\s*(-)?\s*(" + NUMBER.pattern + ")")),
    ("boxed", re.compile(r"\\boxed\{\s*(-)?\s*(" + NUMBER.pattern + ")")),
    ("answer is", re.compile(r"(?:answer|result)\s*(?:is|:|=)\s*:?\s*(?:approximately\s+)?"
                             r"(-)?\s*(" + NUMBER.pattern + ")", re.I)),
)
_MULTIPLY_WORDS = frozenset({"x", "X"})
#: A stated result with this many decimals is a float printed in full: relative tolerance.
_FLOAT_DIGITS, _FLOAT_EPS = 10, Fraction(1, 10**9)

Kind = Literal["num", "op", "lp", "rp", "eq", "word", "var", "brk"]


@dataclass(frozen=True, slots=True)
class _Lex:
    kind: Kind
    token: Token | None  # num / op / lp / rp
    text: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class RawStep:
    """One ``expression = result`` found in an answer.

    Attributes:
        expression: the left side as written, units left out (``"3 x 60"``).
        operands: its number tokens, in order.
        computed: the left side's exact value.
        stated: the result as written (``"$180"``), its token.
        rhs_value: the right side's value when it is itself an expression
            (``3 * 2 = 2 * 3``), else None.
        position: offset of the stated result in the cleaned text (for reading order).
        approximate: written with ``≈`` or ``~=``.
    """

    expression: str
    operands: tuple[Token, ...]
    computed: Fraction
    stated: Token
    rhs_value: Fraction | None
    position: int
    approximate: bool = False

    @property
    def key(self) -> tuple[str, Fraction | None]:
        """Canonical identity: the same step in prose and in an annotation is one step."""
        ops = " ".join(str(t.value) if t.kind == "num" else t.op if t.kind == "op" else t.text
                       for t in _expr_tokens(self.expression))
        return ops, self.stated.value

    @property
    def ok(self) -> bool:
        """The stated result (or the right side) equals the recomputed left side."""
        if agrees(self.computed, self.stated, approximate=self.approximate):
            return True
        return self.rhs_value is not None and self.rhs_value == self.computed


@dataclass(frozen=True, slots=True)
class FinalAnswer:
    """The answer's final number and how it was found (``####``, ``boxed``,
    ``answer is`` or ``last number``)."""

    token: Token
    source: str

    @property
    def value(self) -> Fraction:
        assert self.token.value is not None  # num tokens always carry one
        return self.token.value


def _expr_tokens(text: str) -> list[Token]:
    try:
        return tokenize_expression(text)
    except ExprError:
        return []


def agrees(value: Fraction, stated: Token, *, approximate: bool = False) -> bool:
    """Whether ``value`` is what ``stated`` says, allowing rounding to the stated precision.

    Exact when ``value`` can be written with the stated decimals (``3 * 60 = 181`` fails);
    otherwise within one unit of the last stated digit (``10 / 3 = 3.33``, ``= 3.34``,
    ``= 3``). A percentage may state the fraction or the number (``0.4`` or ``40`` for
    ``40%``); ``approximate`` (``≈``) allows 1% relative error.
    """
    if stated.value is None:
        return False
    candidates = [stated.value, stated.value * 100] if stated.percent else [stated.value]
    for target in candidates:
        if value == target:
            return True
        if approximate and abs(value - target) <= abs(target) / 100:
            return True
        if stated.decimals >= _FLOAT_DIGITS and abs(value - target) <= abs(target) * _FLOAT_EPS:
            return True  # 140/3 = 46.666666666666664, a float printed in full
        scale = 10 ** stated.decimals
        if (value * scale).denominator != 1 and abs(value - target) < Fraction(1, scale):
            return True
    return False


def strip_annotations(text: str) -> tuple[str, list[tuple[int, str, str]]]:
    """``text`` without GSM8K ``<<expression=result>>`` annotations, and each annotation as
    (offset in the stripped text, expression, result)."""
    out: list[str] = []
    found: list[tuple[int, str, str]] = []
    last, size = 0, 0
    for m in _ANNOTATION.finditer(text):
        out.append(text[last:m.start()])
        size += m.start() - last
        found.append((size, m.group(1), m.group(2)))
        last = m.end()
    out.append(text[last:])
    return "".join(out), found


def _lex(text: str) -> list[_Lex]:
    text = _unescape(text)
    for pattern, op in _WORDS:
        text = pattern.sub(_padded(op), text)
    text = _LABEL.sub(lambda m: " " * len(m.group(0)), text)
    out: list[_Lex] = []
    for m in _PROSE.finditer(text):
        kind = _kind(m)
        if kind == "brk" and m.group(0) in "$€£":
            continue  # a currency sign whose number follows after spaces
        token = None
        if kind == "num":
            token = number_token(m)
        elif kind in ("op", "lp", "rp"):
            token = Token(kind, m.group(0))
        elif kind == "word" and _glued(text, m.start(), m.group(0)):
            kind = "var"
        elif kind == "word" and m.group(0) in _MULTIPLY_WORDS:
            kind, token = "op", Token("op", "x")
        out.append(_Lex(kind, token, m.group(0), m.start(), m.end()))
    return out


def _unescape(text: str) -> str:
    """Markdown escapes (``16 \\* 3``) as plain operators, offsets kept."""
    return text.replace("\\*", " *").replace("\\_", " _")


def _padded(op: str) -> Callable[[re.Match[str]], str]:
    return lambda m: f" {op}".ljust(len(m.group(0)))


def _kind(match: re.Match[str]) -> Kind:
    if match.group("number"):
        return "num"
    for kind in ("eq", "op", "lp", "rp", "word"):
        if match.group(kind):
            return kind
    return "brk"


def _glued(text: str, start: int, word: str) -> bool:
    """``2x``, ``6s``: a single letter right after a digit, not followed by a number
    (``3x60`` multiplies), is a variable (or a glued unit: either way not arithmetic)."""
    return (len(word) == 1 and start > 0 and text[start - 1].isdigit()
            and not re.match(r".\s*[\d(.$]", text[start:]))


def _is_unit(lexes: Sequence[_Lex], j: int) -> bool:
    """A word after a number (``180 meters``) or after such a word (``2 square feet``)."""
    if j >= 1 and lexes[j - 1].kind in ("num", "rp"):
        return True
    return j >= 2 and lexes[j - 1].kind == "word" and lexes[j - 2].kind == "num"


def _left_span(lexes: Sequence[_Lex], i: int) -> list[Token]:
    """Tokens of the candidate left side that ends before ``lexes[i]`` (an ``=``)."""
    span: list[Token] = []
    j = i - 1
    while j >= 0 and len(span) < MAX_TOKENS:
        lex = lexes[j]
        if lex.token is not None:
            span.insert(0, lex.token)
        elif (lex.kind == "word" and lex.text.lower() == "of" and span
              and span[0].kind == "num" and j >= 1 and lexes[j - 1].kind == "num"):
            span.insert(0, Token("op", "*"))  # 20% of 50, 1/4 of 20
        elif not (lex.kind == "word" and _is_unit(lexes, j)):
            break
        j -= 1
    return span


def _right_span(lexes: Sequence[_Lex], i: int) -> tuple[list[Token], int]:
    """Tokens of the right side after ``lexes[i]`` and the offset of its first one."""
    span: list[Token] = []
    start = lexes[i + 1].start if i + 1 < len(lexes) else -1
    for j in range(i + 1, len(lexes)):
        lex = lexes[j]
        if lex.token is not None:
            span.append(lex.token)
        elif not (lex.kind == "word" and _is_unit(lexes, j)) or len(span) >= MAX_TOKENS:
            break
    return span, start


def _longest_suffix(span: Sequence[Token]) -> tuple[list[Token], Fraction] | None:
    """The longest tail of ``span`` that parses and has two or more numbers; None when
    none does, or when an operator precedes that tail (``x * 4 + 8``, ``9^99999999 + 1``:
    the whole left side has no value here, so no part of it is checked)."""
    for k in range(len(span)):
        tail = list(span[k:])
        if sum(t.kind == "num" for t in tail) < 2:
            return None
        if tail[0].kind == "op" and tail[0].op != "-":
            continue
        try:
            value = evaluate(tail)
        except ExprError:
            continue
        if k and span[k - 1].kind == "op":
            return None
        return tail, value
    return None


def _right_value(span: Sequence[Token]) -> Fraction | None:
    """The value of the right side when it is an expression of two or more numbers."""
    for k in range(len(span), 2, -1):
        head = list(span[:k])
        if sum(t.kind == "num" for t in head) >= 2:
            try:
                return evaluate(head)
            except ExprError:
                continue
    return None


def _stated(span: Sequence[Token]) -> Token | None:
    """The stated result: the right side's first number (a leading minus negates it)."""
    if span and span[0].kind == "num":
        return span[0]
    if len(span) >= 2 and span[0].kind == "op" and span[0].op == "-" and span[1].kind == "num":
        return negated(span[1])
    return None


def _written(tokens: Sequence[Token]) -> str:
    return " ".join(t.text for t in tokens).replace("( ", "(").replace(" )", ")")


def _prose_steps(text: str) -> list[RawStep]:
    lexes = _lex(text)
    steps: list[RawStep] = []
    for i, lex in enumerate(lexes):
        if lex.kind != "eq":
            continue
        left = _longest_suffix(_left_span(lexes, i))
        right, where = _right_span(lexes, i)
        stated = _stated(right)
        if left is None or stated is None:
            continue
        tokens, value = left
        rhs = _right_value(right)
        if rhs is not None and rhs != value and not agrees(value, stated):
            continue  # "4 dozens + 2 = 4*12 + 2": a rewrite (units), not a computation
        steps.append(RawStep(
            expression=_written(tokens), operands=tuple(t for t in tokens if t.kind == "num"),
            computed=value, stated=stated, rhs_value=rhs, position=where,
            approximate=lex.text != "="))
    return steps


def _stated_result(text: str) -> Token | None:
    """An annotation's result: a number, or an exact expression such as ``2/3``."""
    tokens = _expr_tokens(text)
    if len(tokens) == 1 or (len(tokens) == 2 and tokens[0].kind == "op"):
        return _stated(tokens)
    try:
        return Token("num", text, evaluate(tokens)) if tokens else None
    except ExprError:
        return None


def _annotation_step(position: int, expression: str, result: str) -> RawStep | None:
    expression = expression.replace("\\*", "*")
    tokens = _expr_tokens(expression)
    stated = _stated_result(result.strip())
    if not tokens or stated is None:
        return None
    try:
        value = evaluate(tokens)
    except ExprError:
        return None
    return RawStep(expression=expression.strip(),
                   operands=tuple(t for t in tokens if t.kind == "num"), computed=value,
                   stated=stated, rhs_value=None, position=position)


def find_steps(answer: str) -> list[RawStep]:
    """Every arithmetic step of ``answer`` in reading order, each once."""
    clean, annotations = strip_annotations(answer)
    steps = [s for s in (_annotation_step(*a) for a in annotations) if s is not None]
    marks = {a[0] for a in annotations}
    # "1 year / 3 months = <<1/3*12=4>>4": the annotation is the computation meant
    steps += [s for s in _prose_steps(clean)
              if not marks & {s.position, s.position + 1, s.position + 2}]
    steps.sort(key=lambda s: s.position)
    seen: set[tuple[str, Fraction | None]] = set()
    unique = []
    for step in steps:
        if step.key not in seen:
            seen.add(step.key)
            unique.append(step)
    return unique


def _signed(match: re.Match[str]) -> Token:
    inner = NUMBER.match(match.group(2))
    assert inner is not None  # group 2 is a NUMBER match
    token = number_token(inner)
    return negated(token) if match.group(1) else token


def find_final(answer: str) -> FinalAnswer | None:
    """The final number: after the last ``####``, else ``\\boxed{}``, else the last "the
    answer is N", else the last number of the text; None when it has no number."""
    clean, _ = strip_annotations(answer)
    for source, pattern in _FINAL_PATTERNS:
        matches = list(pattern.finditer(clean))
        if matches:
            return FinalAnswer(_signed(matches[-1]), source)
    numbers = find_numbers(clean)
    return FinalAnswer(numbers[-1][1], "last number") if numbers else None


def find_numbers(text: str) -> list[tuple[int, Token]]:
    """Every number written in ``text`` with its offset (a ``-`` right before a number
    that follows a space or starts the text makes it negative)."""
    out = []
    for m in NUMBER.finditer(text):
        if m.start() > 0 and (text[m.start() - 1].isalnum() or text[m.start() - 1] in "._"):
            continue  # inside a word or a longer number: "m2", "v1.2.3"
        token = number_token(m)
        s = m.start()
        if s >= 1 and text[s - 1] == "-" and (s == 1 or text[s - 2].isspace()):
            token = negated(token)
        out.append((s, token))
    return out
