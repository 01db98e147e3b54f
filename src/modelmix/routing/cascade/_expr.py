"""A tiny safe arithmetic evaluator: numbers, ``+ - * / ^``, parentheses; exact fractions.

No ``eval``: text is split into tokens by regular expressions and a recursive-descent
parser computes with :class:`fractions.Fraction`, so ``0.1 + 0.2 == 0.3`` and nothing in an
answer is ever executed (``__import__('os')`` is just letters). Sizes are bounded: at most
:data:`MAX_TOKENS` tokens, :data:`MAX_DEPTH` nested parentheses, integer exponents up to
:data:`MAX_EXPONENT` and results up to :data:`MAX_BITS` bits, so a hostile answer costs
microseconds, never seconds.

Example::

    evaluate_text("3 x 60")          # Fraction(180, 1)
    evaluate_text("$1,234.50 * 2")   # Fraction(2469, 1)
    evaluate_text("20% * 50")        # Fraction(10, 1)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

__all__ = ["MAX_TOKENS", "ExprError", "Token", "evaluate", "evaluate_text", "negated",
           "number_token", "tokenize_expression"]

#: Longest expression evaluated, in tokens.
MAX_TOKENS = 256
#: Deepest nesting of parentheses and unary signs.
MAX_DEPTH = 32
#: Largest absolute integer exponent of ``^``.
MAX_EXPONENT = 64
#: Largest numerator or denominator of any intermediate result, in bits.
MAX_BITS = 4096

TokenKind = Literal["num", "op", "lp", "rp"]

#: A number as written: optional currency, digits with thousands commas or plain, decimals,
#: optional percent sign. ``.5`` and ``$.75`` count; a minus sign is always an operator.
#: Runs of more than 60 digits (or 30 decimals) are not numbers: no quantity is that long,
#: and Python refuses to convert strings of over 4,300 digits.
NUMBER = re.compile(
    r"(?P<cur>[$€£]\s?)?(?P<num>(?<!\d)(?:\d{1,3}(?:,\d{3}){1,20}(?:\.\d{1,30})?"
    r"|\d{1,60}(?:\.\d{1,30})?|\.\d{1,30})(?!\d))(?P<pct>\s?%)?")
#: Operators as written -> canonical (minus sign, en dash, multiplication sign, middle dot,
#: dot operator and division sign included).
_OPS = {"+": "+", "-": "-", "\u2212": "-", "\u2013": "-", "*": "*", "\u00d7": "*", "x": "*",
        "X": "*", "\u00b7": "*", "\u22c5": "*", "/": "/", "\u00f7": "/", "^": "^", "**": "^"}
_EXPR_TOKEN = re.compile(r"\s*(?:(?P<num>" + NUMBER.pattern.replace("(?P<", "(?P<n_") +
                         r")|(?P<op>\*\*|[-+*/^x\u00d7\u00b7\u22c5\u00f7\u2212\u2013X])|(?P<lp>\()"
                         r"|(?P<rp>\)))")


class ExprError(ValueError):
    """The tokens are not a well-formed expression, or its value is out of bounds."""


@dataclass(frozen=True, slots=True)
class Token:
    """One token of an arithmetic expression.

    Attributes:
        kind: ``num``, ``op`` (one of ``+ - * / ^``), ``lp`` or ``rp``.
        text: as written (``"$1,234.50"``, ``"x"``).
        value: the number (percent already divided by 100) for ``num``, else None.
        percent: the number was written with ``%``.
        decimals: digits after the decimal point as written (``"13.50"``: 2).
    """

    kind: TokenKind
    text: str
    value: Fraction | None = None
    percent: bool = False
    decimals: int = 0

    @property
    def op(self) -> str:
        """The canonical operator (``x`` and the multiplication sign are ``*``) of an
        ``op`` token."""
        return _OPS.get(self.text, self.text)


def number_token(match: re.Match[str], prefix: str = "") -> Token:
    """The ``num`` token of a :data:`NUMBER` match (``prefix``: group-name prefix)."""
    digits = match.group(prefix + "num")
    value = Fraction(digits.replace(",", ""))
    percent = match.group(prefix + "pct") is not None
    decimals = len(digits.split(".")[1]) if "." in digits else 0
    return Token("num", match.group(0).strip(), value / 100 if percent else value, percent,
                 decimals)


def negated(token: Token) -> Token:
    """The ``num`` token with its sign flipped (``-`` written before it)."""
    value = token.value if token.value is not None else Fraction(0)
    return Token("num", "-" + token.text, -value, token.percent, token.decimals)


def tokenize_expression(text: str) -> list[Token]:
    """Tokens of a standalone expression (a GSM8K ``<<3*60=180>>`` left side).

    Raises:
        ExprError: a character that is no number, operator or parenthesis.
    """
    out: list[Token] = []
    pos, end = 0, len(text.rstrip())
    while pos < end:
        m = _EXPR_TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise ExprError(f"unexpected {text[pos:pos + 10].strip()!r}")
        if m.group("num"):
            out.append(number_token(m, "n_"))
        else:
            kind: TokenKind = "op" if m.group("op") else "lp" if m.group("lp") else "rp"
            out.append(Token(kind, m.group(kind)))
        if len(out) > MAX_TOKENS:
            raise ExprError(f"longer than {MAX_TOKENS} tokens")
        pos = m.end()
    return out


def evaluate_text(text: str) -> Fraction:
    """The exact value of an expression written as text.

    Raises:
        ExprError: not an expression, division by zero, or a value out of bounds.
    """
    return evaluate(tokenize_expression(text))


def evaluate(tokens: Sequence[Token]) -> Fraction:
    """The exact value of ``tokens``; a number next to ``(`` multiplies (``2(3+4)``).

    Raises:
        ExprError: malformed, empty, division by zero, or out of bounds.
    """
    if not tokens:
        raise ExprError("empty expression")
    if len(tokens) > MAX_TOKENS:
        raise ExprError(f"longer than {MAX_TOKENS} tokens")
    parser = _Parser(tokens)
    value = parser.expression(0)
    if parser.pos != len(tokens):
        raise ExprError(f"unexpected {tokens[parser.pos].text!r}")
    return value


def _bounded(value: Fraction) -> Fraction:
    if max(value.numerator.bit_length(), value.denominator.bit_length()) > MAX_BITS:
        raise ExprError("number too large")
    return value


def _power(base: Fraction, exponent: Fraction) -> Fraction:
    if exponent.denominator != 1 or abs(exponent) > MAX_EXPONENT:
        raise ExprError("only whole exponents up to 64 are computed")
    if base == 0 and exponent < 0:
        raise ExprError("division by zero")
    size = max(base.numerator.bit_length(), base.denominator.bit_length())
    if size * abs(int(exponent)) > MAX_BITS:
        raise ExprError("number too large")
    return base ** int(exponent)


class _Parser:
    """Recursive descent: expression > term > unary > power > atom."""

    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tokens
        self.pos = 0

    def _peek(self) -> Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _is_op(self, *ops: str) -> bool:
        tok = self._peek()
        return tok is not None and tok.kind == "op" and tok.op in ops

    def expression(self, depth: int) -> Fraction:
        value = self.term(depth)
        while self._is_op("+", "-"):
            op = self.tokens[self.pos].op
            self.pos += 1
            rhs = self.term(depth)
            value = _bounded(value + rhs if op == "+" else value - rhs)
        return value

    def term(self, depth: int) -> Fraction:
        value = self.unary(depth)
        while True:
            tok = self._peek()
            if self._is_op("*", "/"):
                self.pos += 1
                rhs = self.unary(depth)
                if tok is not None and tok.op == "/":
                    if rhs == 0:
                        raise ExprError("division by zero")
                    value = _bounded(value / rhs)
                else:
                    value = _bounded(value * rhs)
            elif tok is not None and tok.kind == "lp":  # implicit product: 2(3 + 4)
                value = _bounded(value * self.unary(depth))
            else:
                return value

    def unary(self, depth: int) -> Fraction:
        if depth > MAX_DEPTH:
            raise ExprError(f"nested deeper than {MAX_DEPTH}")
        if self._is_op("+", "-"):
            sign = -1 if self.tokens[self.pos].op == "-" else 1
            self.pos += 1
            return sign * self.unary(depth + 1)
        return self.power(depth)

    def power(self, depth: int) -> Fraction:
        base = self.atom(depth)
        if self._is_op("^"):
            self.pos += 1
            return _bounded(_power(base, self.unary(depth + 1)))
        return base

    def atom(self, depth: int) -> Fraction:
        tok = self._peek()
        if tok is None:
            raise ExprError("expression ends early")
        self.pos += 1
        if tok.kind == "num" and tok.value is not None:
            return tok.value
        if tok.kind == "lp":
            value = self.expression(depth + 1)
            if self._peek() is None or self.tokens[self.pos].kind != "rp":
                raise ExprError("unbalanced parentheses")
            self.pos += 1
            return value
        raise ExprError(f"unexpected {tok.text!r}")
