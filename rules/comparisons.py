"""Finds the comparisons inside a CEL expression, so time-dependent ones can be solved for time.

CEL itself is compiled and evaluated by the Rust-backed `cel` package; this module only walks the
token structure of an expression that already compiled, down to the relation level
(`a < b`, `a >= b`, ...), and returns the source text of both sides of every comparison.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_TOKEN = re.compile(r"""
    (?P<space>\s+|//[^\n]*)
  | (?P<string>[rRbB]{0,2}(?:\"\"\"(?:\\.|[^\\])*?\"\"\"|'''(?:\\.|[^\\])*?'''
                         |"(?:\\.|[^"\\\n])*"|'(?:\\.|[^'\\\n])*'))
  | (?P<number>0[xX][0-9a-fA-F]+[uU]?|(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?[uU]?)
  | (?P<ident>[_a-zA-Z][_a-zA-Z0-9]*)
  | (?P<op>\|\||&&|<=|>=|==|!=|[-+*/%<>!?:()\[\]{}.,])
""", re.VERBOSE)
RELATIONS = ("<", "<=", ">=", ">", "==", "!=")


class Comparison(NamedTuple):
    left: str
    operator: str
    right: str
    identifiers: frozenset[str]
    nested: bool  # a side holds a comparison itself, e.g. `(a > 1) == true`


class _Token(NamedTuple):
    kind: str
    text: str
    start: int
    end: int


def shift(text: str, names: frozenset[str], by: str) -> str:
    """`text` with every variable in `names` replaced by `(name + <by>)`."""
    out, last = [], 0
    found = tokens(text)
    for i, token in enumerate(found):
        called = i + 1 < len(found) and found[i + 1].text == "("
        member = i > 0 and found[i - 1].text == "."
        if token.kind == "ident" and token.text in names and not called and not member:
            out.append(f"{text[last:token.start]}({token.text} + {by.format(token.text)})")
            last = token.end
    return "".join(out) + text[last:]


def is_linear(text: str, names: frozenset[str]) -> bool:
    """True when `text` is plainly linear in `names`: sums, products and divisions by numbers,
    with one of `names` at most."""
    found = tokens(text)
    for i, token in enumerate(found):
        after = found[i + 1] if i + 1 < len(found) else None
        if token.kind == "ident" and after is not None and after.text in "(.":
            return False  # a function call or a member: not plainly linear
        if token.text == "/" and (after is None or after.kind != "number"):
            return False  # dividing by anything but a number
        if token.kind not in ("ident", "number") and token.text not in "+-*/()":
            return False
    return sum(t.text in names for t in found) <= 1


def tokens(text: str) -> list[_Token]:
    return [_Token(m.lastgroup or "", m.group(), m.start(), m.end())
            for m in _TOKEN.finditer(text) if m.lastgroup != "space"]


def comparisons(source: str) -> list[Comparison]:
    """Every relational comparison in `source`, innermost included, in source order."""
    parser = _Parser(source)
    parser.expr()
    if parser.peek() is not None:
        raise SyntaxError(f"unexpected {parser.peek().text!r} at column {parser.peek().start + 1}")
    return parser.found


class _Parser:
    """Recursive descent over CEL's precedence levels; only relations are recorded."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens = tokens(source)
        if sum(len(m.group()) for m in _TOKEN.finditer(source)) != len(source):
            raise SyntaxError("expression contains characters CEL does not allow")
        self.pos = 0
        self.found: list[Comparison] = []

    def peek(self) -> _Token | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, *texts: str) -> _Token | None:
        token = self.peek()
        if token is not None and token.kind in ("op", "ident") and token.text in texts:
            self.pos += 1
            return token
        return None

    def expect(self, text: str) -> None:
        if self.take(text) is None:
            raise SyntaxError(f"expected {text!r}")

    def expr(self) -> None:
        self.binary(0)
        if self.take("?"):
            self.binary(0)
            self.expect(":")
            self.expr()

    _LEVELS = (("||",), ("&&",), RELATIONS + ("in",), ("+", "-"), ("*", "/", "%"))

    def binary(self, level: int) -> None:
        if level == len(self._LEVELS):
            return self.unary()
        first, known = self.pos, len(self.found)
        self.binary(level + 1)
        while (op := self.take(*self._LEVELS[level])) is not None:
            split = self.pos
            self.binary(level + 1)
            if op.text in RELATIONS:
                self._record(first, split - 1, op.text, split, len(self.found) > known)
        return None

    def _record(self, start: int, op_index: int, op: str, split: int, nested: bool) -> None:
        left, right = self.tokens[start:op_index], self.tokens[split:self.pos]
        names = frozenset(t.text for t in left + right if t.kind == "ident")
        self.found.append(Comparison(self._text(left), op, self._text(right), names, nested))

    def _text(self, tokens: list[_Token]) -> str:
        return self.source[tokens[0].start:tokens[-1].end]

    def unary(self) -> None:
        while self.take("!", "-"):
            pass
        self.member()

    def member(self) -> None:
        self.primary()
        while True:
            if self.take("."):
                self.pos += 1
                if self.take("("):
                    self.arguments(")")
            elif self.take("["):
                self.expr()
                self.expect("]")
            elif self.take("{"):
                self.arguments("}", pairs=True)
            else:
                return

    def primary(self) -> None:
        token = self.peek()
        if token is None:
            raise SyntaxError("expression ends too early")
        self.pos += 1
        if token.text == "(":
            self.expr()
            self.expect(")")
        elif token.text == "[":
            self.arguments("]")
        elif token.text == "{":
            self.arguments("}", pairs=True)
        elif token.text == ".":
            self.pos += 1
            if self.take("("):
                self.arguments(")")
        elif token.kind == "ident" and self.take("("):
            self.arguments(")")
        elif token.kind == "op":
            raise SyntaxError(f"unexpected {token.text!r} at column {token.start + 1}")

    def arguments(self, closing: str, pairs: bool = False) -> None:
        while not self.take(closing):
            self.expr()
            if pairs and self.take(":"):
                self.expr()
            if not self.take(","):
                self.expect(closing)
                return
