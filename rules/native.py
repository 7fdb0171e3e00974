"""The common condition shapes compiled to plain Python, so the hot path skips a CEL call.

Shapes: comparisons of metrics and literals (`orders_90d >= 3`, `tier == "A"`,
`revenue_365d > revenue_30d`) joined by `&&`, `||` and parentheses. Anything else (arithmetic,
functions, `!`, `?:`, uint or escaped string literals) returns None and stays with CEL.

The result equals CEL's for the value types the engine computes: counts are ints far below 2**53,
where CEL's int/double comparison and Python's agree, and every other number is a double. A
comparison CEL cannot type (`tier > 1`) fails when the policy loads, before this runs; the loader
also checks each compiled condition against CEL on sample values.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from rules.comparisons import RELATIONS, tokens

Predicate = Callable[[dict[str, Any]], bool]
_IDENT = re.compile(r"^[_a-zA-Z][_a-zA-Z0-9]*$")
_SIMPLE_STRING = re.compile(r"""^(?:"[^"\\\n]*"|'[^'\\\n]*')$""")
_KEYWORDS = {"true", "false", "null", "in"}


def compile_predicate(source: str) -> Predicate | None:
    """A Python function equal to the CEL condition `source`, or None for other shapes."""
    try:
        parser = _Parser(source)
        code = parser.expr()
    except _Unsupported:
        return None
    if parser.pos != len(parser.tokens):
        return None
    return eval(f"lambda v: {code}", {"__builtins__": {}})  # noqa: S307 - built from checked tokens


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
        if self.peek() == "(":
            self.pos += 1
            inner = self.expr()
            if self.take() != ")":
                raise _Unsupported
            return inner
        left = self.operand()
        operator = self.take()
        if operator not in RELATIONS:
            raise _Unsupported
        return f"({left} {operator} {self.operand()})"

    def operand(self) -> str:
        token = self.take()
        negative = token == "-"
        if negative:
            token = self.take()
        if _IDENT.match(token) and token not in _KEYWORDS and not negative:
            if self.peek() in ("(", ".", "["):
                raise _Unsupported  # a call, a member or an index
            return f"v[{token!r}]"
        if _SIMPLE_STRING.match(token) and not negative:
            return repr(token[1:-1])
        return repr(-_number(token) if negative else _number(token))


def _number(token: str) -> int | float:
    if token.endswith(("u", "U")):
        raise _Unsupported  # uint: CEL's own type, left to CEL
    if token.lower().startswith("0x"):
        return int(token, 16)
    try:
        return float(token) if any(c in token for c in ".eE") else int(token)
    except ValueError:
        raise _Unsupported from None
