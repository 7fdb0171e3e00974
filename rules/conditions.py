"""Compiled CEL conditions, and when a condition on time-growing metrics can next change by time.

Each condition is compiled once by the Rust-backed `cel` package and executed with only the
variables it references (building a CEL context costs ~1 us per variable). For comparisons that
involve a time metric (see metrics.is_time) the engine needs the instant they flip: between
discrete events every such metric grows by exactly 1.0 per day, so `left - right` is linear in
time for a linear comparison and its zero is that instant. One extra CEL program per condition
returns every such gap now and one day later. A comparison that is not plainly linear (a time
metric inside a function call, a division or a product with another) is looked at once a day.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import cel

from models.errors import PolicyEvaluationError
from models.instants import MICROS_PER_DAY, days_between
from rules.comparisons import comparisons, is_linear, shift, tokens
from rules.metrics import is_time
from rules.native import compile_gaps, compile_predicate, compile_settled

Values = dict[str, Any]
FLIPS_PASSED = 8  # time-comparison flips looked past per condition and decision (next_flip)
_GROWTH = "_growth_{}"  # context variable: 1.0 if the time metric grows, 0.0 if it is stuck at 0

# Bounds on a condition, checked before CEL sees it: real conditions are a few hundred characters
# and a few levels deep. CEL's parser stops at 96 levels with a bare "syntax error", the parsers
# here recurse per level, and evaluating a chain of thousands of operators overflows the stack.
MAX_CONDITION_LENGTH = 4096
MAX_CONDITION_NESTING = 50


def check_bounds(source: str) -> None:
    """Raise ValueError when `source` is longer than MAX_CONDITION_LENGTH characters or nested
    deeper than MAX_CONDITION_NESTING levels: each parenthesis, bracket or brace, each unary `-`
    or `!` before an operand, and each `?` of a conditional (up to the end of its group) is one.
    Nesting is looked at first: a deep condition is usually long too, and depth is its problem."""
    depth, run, previous = 0, 0, None
    opened: list[int] = [0]  # per open group: the levels it adds, `?`s inside it included
    for token in tokens(source):
        text = token.text if token.kind == "op" else ""
        if text and text in "([{":
            opened.append(run + 1)
            depth, run = depth + run + 1, 0
        elif text and text in ")]}":
            depth -= opened.pop() if len(opened) > 1 else 0
            run = 0
        elif text == "!" or (text == "-" and (previous is None or previous.kind == "op"
                                              and previous.text not in ")]}")):
            run += 1
        elif text == "?":
            opened[-1] += 1
            depth, run = depth + 1, 0
        else:
            run = 0
        if depth + run > MAX_CONDITION_NESTING:
            raise ValueError(f"the condition is nested {depth + run} levels deep at column "
                             f"{token.start + 1}; the nesting limit is {MAX_CONDITION_NESTING} "
                             "(each parenthesis, bracket, brace, unary - or ! and ?: is a level)")
        previous = token
    if len(source) > MAX_CONDITION_LENGTH:
        raise ValueError(f"the condition is {len(source):,} characters, more than the "
                         f"{MAX_CONDITION_LENGTH:,} allowed")


def native_or_none(compile_native: Callable[..., Any], *parts: Any) -> Any:
    """A native (Python) version of CEL code, or None: where Python's own parser cannot take
    the translation (e.g. a sum of hundreds of terms), CEL evaluates it instead."""
    try:
        return compile_native(*parts)
    except (SyntaxError, RecursionError, MemoryError):
        return None


class Condition:
    """One `when` expression: evaluates to a bool and knows when time alone could flip it."""

    def __init__(self, source: str, where: str) -> None:
        self.source, self.where = source, where
        check_bounds(source)
        self.program = cel.compile(source)
        self.variables = tuple(self.program.variables())
        self.native = native_or_none(compile_predicate, source)
        self.timed = _TimeGaps(source)
        self.steady = _Steady(source) if self.timed else None
        self.read = tuple(sorted({*self.variables, *self.timed.variables}))

    def holds(self, values: Values) -> bool:
        if self.native is not None:
            return self.native(values)
        return self.holds_in_cel(values)

    def holds_in_cel(self, values: Values) -> bool:
        try:
            result = self.program.execute({v: values[v] for v in self.variables})
        except Exception as error:  # CEL raises several builtin types for evaluation failures
            raise PolicyEvaluationError(f"`{self.source}` failed on {self.inputs(values)}: "
                                        f"{error}", field=self.where) from None
        if not isinstance(result, bool):
            raise PolicyEvaluationError(f"`{self.source}` gave {result!r}, not true or false",
                                        field=self.where)
        return result

    def inputs(self, values: Values) -> Values:
        return {v: values[v] for v in self.variables}

    def next_flip(self, values: Values, anchors: dict[str, int | None], now: int,
                  limit: int | None = None) -> int | None:
        """Earliest instant after `now` at which time alone changes whether the condition
        holds, if any. `anchors`: where each time metric counts its days from (None: it stays
        at 0.0), see metrics.time_anchors. With `limit`, an instant the caller will take if
        nothing comes earlier, any instant from `limit` on may answer once the walk below has
        passed it.

        Its time comparisons' flips are taken in turn, and at each the condition is evaluated
        on the time metrics as the engine computes them there: a flip that leaves it as it is
        (`days_since_last_order > 30.0` in `... && days_since_last_order > 3.0 * avg`, or an
        instant a microsecond before a strict comparison's crossing) is passed over, up to
        FLIPS_PASSED of them, after which that flip is the answer (the engine looks again
        there). A flip computed late (over years the gaps' rounding can move it by some
        microseconds) is moved back to the first instant the condition changes. A condition
        the policy fails to evaluate stops the walk where it fails."""
        if not self.timed or (self.steady is not None and self.steady.holds(values)):
            return None
        growing = {v: a for v in self.timed.time_variables if (a := anchors.get(v)) is not None}
        read = {v: values[v] for v in self.read}  # all the walk reads: cheaper to copy

        def at(instant: int) -> Values:
            return {**read, **{v: days_between(a, instant) for v, a in growing.items()}}

        try:
            held = self.holds(values)
            current = values
            for _ in range(FLIPS_PASSED):
                if limit is not None and now >= limit:
                    return now  # no change up to here, so none before the caller's instant
                flip = self.timed.next_flip(current, anchors, now)
                if flip is None:
                    return None
                current = at(flip)
                if self.holds(current) != held:
                    return self._first_change(at, held, now, flip)
                now = flip
        except PolicyEvaluationError:
            return self.timed.next_flip(at(now), anchors, now)
        return now

    def _first_change(self, at: Callable[[int], Values], held: bool, unchanged: int,
                      changed: int) -> int:
        """The first instant in (unchanged, changed] at which the condition no longer is
        `held`, as it is not at `changed`: `changed` itself unless the crossing came out late,
        then found by bisection (near a crossing the condition changes once)."""
        if changed - 1 <= unchanged or self.holds(at(changed - 1)) == held:
            return changed
        while changed - unchanged > 1:
            middle = (unchanged + changed) // 2
            if self.holds(at(middle)) == held:
                unchanged = middle
            else:
                changed = middle
        return changed


class _TimeGaps:
    """The gaps `left - right` of a condition's time comparisons, now and a day or two later."""

    def __init__(self, source: str) -> None:
        timed = [c for c in comparisons(source)
                 if any(map(is_time, c.identifiers)) and not c.nested]
        gaps, pairs = [], []
        self.daily = False  # some comparison is not plainly linear: look again every day
        for c in timed:
            names = frozenset(n for n in c.identifiers if is_time(n))
            if not (is_linear(c.left, names) and is_linear(c.right, names)):
                self.daily = True
                continue
            for days in (0, 1):
                by = f"{days}.0 * {_GROWTH}"
                pairs.append((shift(c.left, names, by), shift(c.right, names, by)))
                gaps.append(f"double({pairs[-1][0]}) - double({pairs[-1][1]})")
        self.program = cel.compile(f"[{', '.join(gaps)}]") if timed else None
        self.native = native_or_none(compile_gaps, pairs) if timed else None
        self.variables = tuple(v for v in self.program.variables()
                               if not v.startswith("_growth_")) if self.program else ()
        self.time_variables = tuple(sorted({n for c in timed for n in c.identifiers
                                            if is_time(n)}))
        self.growth = tuple((v, _GROWTH.format(v)) for v in self.time_variables)

    def __bool__(self) -> bool:
        return self.program is not None

    def next_flip(self, values: Values, anchors: dict[str, int | None], now: int) -> int | None:
        """The earliest instant after `now` at which a time comparison could flip, if any, as
        the floats of the gaps place it (Condition.next_flip checks it)."""
        if self.program is None:
            return None
        context = {v: values[v] for v in self.variables}
        growing = False
        for v, growth in self.growth:
            grows = anchors.get(v) is not None
            context[growth] = 1.0 if grows else 0.0
            growing = growing or grows
        if not growing:
            return None
        gaps = self.native(context) if self.native else self.program.execute(context)
        flips = [f for i in range(0, len(gaps), 2)
                 if (f := _flip(gaps[i], gaps[i + 1], now)) is not None]
        if self.daily:
            flips.append(now + MICROS_PER_DAY)
        return min(flips, default=None)


def _flip(now_gap: float, next_day_gap: float, now: int) -> int | None:
    """When a linear gap, `now_gap` now and `next_day_gap` a day later, first crosses zero."""
    slope = next_day_gap - now_gap
    if slope == 0.0 or now_gap * slope > 0:
        return None  # constant, or moving away from zero
    if now_gap == 0.0:
        return now + 1  # on the boundary now: a strict comparison flips right after
    return max(now + 1, now + math.floor(-now_gap / slope * MICROS_PER_DAY))


class _Steady:
    """Whether a condition's value is settled until something other than time changes.

    Time alone moves only the time metrics (every other metric changes at an event or at a
    wake-up of its own, and each evaluation looks again). So `orders_total >= 2 && <time
    comparison>` stays false while `orders_total >= 2` is false, and `<no time metric> || ...`
    stays true while its first part holds: its time comparisons need no wake-up.
    """

    def __init__(self, source: str) -> None:
        holders: list[str] = []            # time-free disjuncts: one true settles it
        blocked: list[list[str]] = []      # per timed disjunct, its time-free conjuncts
        disjuncts = _split(source, "||")
        for disjunct in disjuncts or ():
            conjuncts = _split(disjunct, "&&") or [disjunct]
            if not _reads_time(disjunct):
                holders.append(disjunct)
            else:
                blocked.append([c for c in conjuncts if not _reads_time(c)])
        if disjuncts is None:
            blocked = [[]]
        self.native = native_or_none(compile_settled, holders, blocked)
        if self.native is None:
            self.holders = [_Part(h) for h in holders]
            self.blocked = [[_Part(c) for c in parts] for parts in blocked]

    def holds(self, values: Values) -> bool:
        if self.native is not None:
            return self.native(values)
        if any(part.holds(values) is True for part in self.holders):
            return True
        return all(any(part.holds(values) is False for part in parts) for parts in self.blocked)


class _Part:
    """One time-free part of a condition; None when it cannot be evaluated on its own."""

    def __init__(self, source: str) -> None:
        self.native = native_or_none(compile_predicate, source)
        self.program = None if self.native else cel.compile(source)

    def holds(self, values: Values) -> bool | None:
        if self.native is not None:
            return self.native(values)
        assert self.program is not None
        try:
            result = self.program.execute({v: values[v] for v in self.program.variables()})
        except Exception:  # an error inside && or || may still be absorbed by another part
            return None
        return result if isinstance(result, bool) else None


def _reads_time(source: str) -> bool:
    return any(t.kind == "ident" and is_time(t.text) for t in tokens(source))


def _split(source: str, operator: str) -> list[str] | None:
    """`source` cut at its top-level `operator` (outer parentheses removed first); None when a
    top-level `?:` makes the cut meaningless."""
    found = tokens(source)
    while found and found[0].text == "(" and _closing(found, 0) == len(found) - 1:
        source = source[found[0].end:found[-1].start]
        found = tokens(source)
    parts, depth, start = [], 0, 0
    for token in found:
        if token.kind != "op":
            continue
        if token.text in "([{":
            depth += 1
        elif token.text in ")]}":
            depth -= 1
        elif depth == 0 and token.text == "?":
            return None
        elif depth == 0 and token.text == operator:
            parts.append(source[start:token.start])
            start = token.end
    return [*parts, source[start:]]


def _closing(found: list, opening: int) -> int:
    depth = 0
    for index in range(opening, len(found)):
        depth += found[index].text == "("
        depth -= found[index].text == ")"
        if depth == 0:
            return index
    return -1
