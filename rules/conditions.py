"""Compiled CEL conditions, and when a condition on time-growing metrics can next change by time.

Each condition is compiled once by the Rust-backed `cel` package and executed with only the
variables it references (building a CEL context costs ~1 us per variable). For comparisons that
involve a time metric (see metrics.TIME_METRICS) the difference `left - right` is compiled too:
between discrete events every time metric grows by exactly 1.0 per day, so that difference is
linear in time and its zero is the instant the comparison flips.
"""

from __future__ import annotations

import math
from typing import Any

import cel

from models.errors import PolicyEvaluationError
from models.instants import MICROS_PER_DAY
from rules.comparisons import comparisons
from rules.metrics import TIME_METRICS

Values = dict[str, Any]
_LINEAR_TOLERANCE = 1e-9


class Condition:
    """One `when` expression: evaluates to a bool and knows when time alone could flip it."""

    def __init__(self, source: str, where: str) -> None:
        self.source, self.where = source, where
        self.program = cel.compile(source)
        self.variables = tuple(self.program.variables())
        self.timed = tuple(_TimedComparison(c.left, c.right)
                           for c in comparisons(source)
                           if c.identifiers & set(TIME_METRICS) and not c.nested)

    def holds(self, values: Values) -> bool:
        try:
            result = self.program.execute({v: values[v] for v in self.variables})
        except Exception as error:  # CEL raises several builtin types for evaluation failures
            raise PolicyEvaluationError(f"`{self.source}` failed on "
                                        f"{self.inputs(values)}: {error}", field=self.where) from None
        if not isinstance(result, bool):
            raise PolicyEvaluationError(f"`{self.source}` gave {result!r}, not true or false",
                                        field=self.where)
        return result

    def inputs(self, values: Values) -> Values:
        return {v: values[v] for v in self.variables}

    def next_flip(self, values: Values, growing: dict[str, bool], now: int) -> int | None:
        """Earliest instant after `now` at which a time comparison inside could flip, if any."""
        flips = [f for c in self.timed if (f := c.next_flip(values, growing, now)) is not None]
        return min(flips, default=None)


class _TimedComparison:
    def __init__(self, left: str, right: str) -> None:
        self.program = cel.compile(f"double({left}) - double({right})")
        self.variables = tuple(self.program.variables())

    def gap(self, values: Values, growing: dict[str, bool], days: float) -> float:
        context = {v: values[v] + days if growing.get(v) else values[v] for v in self.variables}
        return float(self.program.execute(context))

    def next_flip(self, values: Values, growing: dict[str, bool], now: int) -> int | None:
        if not any(growing.get(v) for v in self.variables):
            return None
        gaps = [self.gap(values, growing, d) for d in (0.0, 1.0, 2.0)]
        slope = gaps[1] - gaps[0]
        if abs((gaps[2] - gaps[1]) - slope) > _LINEAR_TOLERANCE * max(1.0, *map(abs, gaps)):
            return now + MICROS_PER_DAY  # not linear in time: look again in a day
        if gaps[0] == 0.0:
            # On the boundary now: a strict comparison flips right after, unless it is flat here.
            return now + 1 if self.gap(values, growing, 1 / MICROS_PER_DAY) != 0.0 else (
                now + MICROS_PER_DAY if slope else None)
        if slope == 0.0 or gaps[0] * slope > 0:
            return None  # constant, or moving away from zero
        return max(now + 1, now + math.floor(-gaps[0] / slope * MICROS_PER_DAY))
