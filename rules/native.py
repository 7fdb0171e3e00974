"""The common condition shapes compiled to plain Python, so the hot path skips a CEL call.

Shapes: comparisons of metrics, literals and arithmetic on them (`orders_90d >= 3`,
`tier == "A"`, `days_since_last_order > 3.0 * avg_days_between_orders`) joined by `&&`, `||`
and parentheses. Anything else (functions, `!`, `?:`, `%`, uint or escaped string literals, a
division by anything but a non-zero double literal) returns None and stays with CEL.

The result equals CEL's for the value types the engine computes: counts are ints far below 2**53
(CEL's int/double comparison and Python's agree there, and int arithmetic cannot overflow), every
other number is a double, and doubles follow IEEE 754 in both. What CEL cannot type (`tier > 1`,
`orders_90d * 1.5`) fails when the policy loads, before this runs; the loader also checks each
compiled condition against CEL on sample values. Every operation is parenthesised as CEL parsed
it (left to right), so floating-point results are the same bits.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rules.comparisons import RELATIONS, tokens

Predicate = Callable[[dict[str, Any]], bool]
Gaps = Callable[[dict[str, Any]], list[float]]
_IDENT = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
_SIMPLE_STRING = re.compile(r"""^(?:"[^"\\\n]*"|'[^'\\\n]*')$""")
_KEYWORDS = {"true", "false", "null", "in"}
_NAMESPACE = {"__builtins__": {}, "float": float}


def compile_predicate(source: str) -> Predicate | None:
    """A Python function equal to the CEL condition `source`, or None for other shapes."""
    code = _translate(source, _Parser.expr)
    return None if code is None else eval(f"lambda v: {code}", _NAMESPACE)  # noqa: S307


def compile_first(sources: list[str]) -> Callable[[dict[str, Any]], int] | None:
    """A Python function giving the index of the first of the CEL conditions `sources` that
    holds (len(sources) when none does), or None if one is not of a shape above."""
    codes = [_translate(source, _Parser.expr) for source in sources]
    if None in codes:
        return None
    chain = "".join(f"{i} if {code} else " for i, code in enumerate(codes))
    return eval(f"lambda v: {chain}{len(codes)}", _NAMESPACE)  # noqa: S307 - checked tokens


def compile_gaps(pairs: list[tuple[str, str]]) -> Gaps | None:
    """A Python function giving `double(left) - double(right)` for each pair, as CEL would, or
    None if a side is not plain arithmetic."""
    sides = [(_translate(left, _Parser.sum), _translate(right, _Parser.sum))
             for left, right in pairs]
    if any(code is None for side in sides for code in side):
        return None
    items = ", ".join(f"float({left}) - float({right})" for left, right in sides)
    return eval(f"lambda v: [{items}]", _NAMESPACE)  # noqa: S307 - built from checked tokens


def compile_settled(holders: list[str], blocked: list[list[str]]) -> Predicate | None:
    """`any(holders) or all(not all(parts) for parts in blocked)` in one Python function, or
    None if a part is not of a shape above."""
    held = [_translate(h, _Parser.expr) for h in holders]
    stopped = [[_translate(p, _Parser.expr) for p in parts] for parts in blocked]
    if None in held or any(None in parts for parts in stopped):
        return None
    code = " or ".join([*held, "(" + " and ".join(
        "(" + " or ".join(f"not {p}" for p in parts) + ")" if parts else "False"
        for parts in stopped) + ")" if stopped else "True"])
    return eval(f"lambda v: {code}", _NAMESPACE)  # noqa: S307 - built from checked tokens


def _translate(source: str, rule: Callable[[_Parser], str]) -> str | None:
    parser = _Parser(source)
    try:
        code = rule(parser)
    except _Unsupported:
        return None
    return code if parser.pos == len(parser.tokens) else None


class _Unsupported(Exception):
    pass


class _Parser:
    def __init__(self, source: str) -> None:
        self.tokens = [t.text for t in tokens(source)]
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        token = self.peek()
        if token is None:
            raise _Unsupported
        self.pos += 1
        return token

    def expr(self) -> str:
        parts = [self.conjunction()]
        while self.peek() == "||":
            self.pos += 1
            parts.append(self.conjunction())
        return parts[0] if len(parts) == 1 else f"({' or '.join(parts)})"

    def conjunction(self) -> str:
        parts = [self.atom()]
        while self.peek() == "&&":
            self.pos += 1
            parts.append(self.atom())
        return parts[0] if len(parts) == 1 else f"({' and '.join(parts)})"

    def atom(self) -> str:
        start = self.pos
        try:
            return self.comparison()
        except _Unsupported:
            self.pos = start
        if self.take() != "(":
            raise _Unsupported
        inner = self.expr()
        if self.take() != ")":
            raise _Unsupported
        return inner

    def comparison(self) -> str:
        left = self.sum()
        operator = self.take()
        if operator not in RELATIONS:
            raise _Unsupported
        return f"({left} {operator} {self.sum()})"

    def sum(self) -> str:
        code = self.product()
        while self.peek() in ("+", "-"):
            operator = self.take()
            code = f"({code} {operator} {self.product()})"
        return code

    def product(self) -> str:
        code = self.unary()
        while self.peek() in ("*", "/"):
            operator = self.take()
            right = self.unary()
            if operator == "/" and not _nonzero_double(right):
                raise _Unsupported  # int division and x / 0.0 differ between CEL and Python
            code = f"({code} {operator} {right})"
        return code

    def unary(self) -> str:
        if self.peek() == "-":
            self.pos += 1
            return f"(-{self.unary()})"
        return self.primary()

    def primary(self) -> str:
        token = self.take()
        if token == "(":
            inner = self.sum()
            if self.take() != ")":
                raise _Unsupported
            return inner
        if _IDENT.match(token) and token not in _KEYWORDS:
            if self.peek() in ("(", ".", "["):
                raise _Unsupported  # a call, a member or an index
            return f"v[{token!r}]"
        if _SIMPLE_STRING.match(token):
            return repr(token[1:-1])
        return repr(_number(token))


def _nonzero_double(code: str) -> bool:
    try:
        value = eval(code, _NAMESPACE)  # noqa: S307 - a literal or a negated one, from repr()
    except Exception:
        return False
    return isinstance(value, float) and value != 0.0


def _number(token: str) -> int | float:
    if token.endswith(("u", "U")):
        raise _Unsupported  # uint: CEL's own type, left to CEL
    if token.lower().startswith("0x"):
        return int(token, 16)
    try:
        return float(token) if any(c in token for c in ".eE") else int(token)
    except ValueError:
        raise _Unsupported from None
