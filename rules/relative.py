"""Relative metrics: a customer's place among all customers, from a population snapshot.

`<metric>_pct` is the fraction of customers whose value of `<metric>` is strictly lower (0.0 for
the lowest, ties share one value; in [0, 1]). `<metric>_share_above` is the share of the
metric's total held by the customers with a strictly higher value: 0.0 for the top customer, 1.0
for one with nothing when others hold everything; with nothing to share (total 0) it is 1.0 for
everyone, so a Pareto split puts nobody in its top class.

A `Population` is taken at one instant (a refresh) and held fixed until the next one, so tiers
do not jitter; a customer's own value still moves with its events and is placed against the
fixed snapshot. Without a snapshot every relative metric reads as if the customer were last:
`_pct` 0.0, `_share_above` 1.0. Replay's snapshot is exact (every customer's value, weight 1);
the streaming runtime builds one from merged per-partition sketches (rules/sketches.py), whose
retained items carry the weight of the customers they stand for; the methods are the same.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from functools import cached_property
from itertools import accumulate, islice
from typing import Any, NamedTuple

import numpy as np

from models.instants import MICROS_PER_DAY

KINDS = {"pct": "fraction of customers with a lower value of",
         "share_above": "share of the total held by customers ranked above, of"}
UNAVAILABLE = {"pct": 0.0, "share_above": 1.0}


class Relative(NamedTuple):
    name: str
    base: str   # the metric whose distribution places the customer
    kind: str   # pct or share_above


def parse(name: str) -> Relative | None:
    """The relative metric `name` names, or None; its base metric is not checked here."""
    for kind in KINDS:
        if name.endswith(f"_{kind}") and len(name) > len(kind) + 1:
            return Relative(name, name[: -len(kind) - 1], kind)
    return None


@dataclass(frozen=True)
class Distribution:
    """The values of one metric over all customers, ascending, each with a weight (the number of
    customers it stands for: 1 for an exact snapshot, more for an item of a merged sketch), with
    cumulative weights from the bottom and weighted sums from the top down."""

    values: tuple[float, ...]
    below: tuple[float, ...]        # below[i] = weight of values[:i]; one extra entry, the count
    above_from: tuple[float, ...]   # above_from[i] = weighted sum of values[i:]; extra 0.0 at end

    @classmethod
    def of(cls, values: Iterable[float], weights: Iterable[float] | None = None) -> Distribution:
        items = sorted((float(v), 1.0) for v in values) if weights is None else \
            sorted((float(v), float(w)) for v, w in zip(values, weights, strict=True))
        ordered = tuple(v for v, _ in items)
        below = tuple(accumulate((w for _, w in items), initial=0.0))
        tail = list(accumulate((v * w for v, w in reversed(items)), initial=0.0))
        return cls(ordered, below, tuple(reversed(tail)))

    @property
    def count(self) -> float:
        return self.below[-1]

    @property
    def total(self) -> float:
        return self.above_from[0]

    def pct(self, value: float) -> float:
        return self.below[bisect_left(self.values, value)] / self.count if self.values else 0.0

    def share_above(self, value: float) -> float:
        if self.total <= 0.0:
            return 1.0
        return min(1.0, max(0.0, self.above_from[bisect_right(self.values, value)] / self.total))

    def place(self, kind: str, value: float) -> float:
        return self.pct(value) if kind == "pct" else self.share_above(value)

    def place_many(self, kind: str, values: np.ndarray) -> np.ndarray:
        """`place` for many values at once (the same numbers, vectorised)."""
        ordered = np.asarray(self.values, dtype=float)
        if kind == "pct":
            if not self.values:
                return np.zeros(len(values))
            return np.asarray(self.below)[np.searchsorted(ordered, values, side="left")] / \
                self.count
        if self.total <= 0.0:
            return np.ones(len(values))
        above = np.asarray(self.above_from)[np.searchsorted(ordered, values, side="right")]
        return np.clip(above / self.total, 0.0, 1.0)

    @cached_property
    def distinct(self) -> tuple[float, ...]:
        return tuple(sorted(set(self.values)))

    def steps_from(self, value: float) -> Iterator[float]:
        """Distinct values at or above `value`, ascending: passing one changes both placements."""
        return islice(self.distinct, bisect_left(self.distinct, value), None)


@dataclass(frozen=True)
class Population:
    """One snapshot: per base metric, its distribution over all customers at `taken_at`."""

    taken_at: int
    distributions: Mapping[str, Distribution]

    @classmethod
    def of(cls, taken_at: int, values: Mapping[str, Iterable[float]]) -> Population:
        return cls(taken_at, {base: Distribution.of(v) for base, v in values.items()})


def snapshot(taken_at: int, bases: tuple[str, ...],
             customers: Iterable[Mapping[str, Any]]) -> Population:
    """The population at `taken_at` from every customer's exact base metric values then."""
    columns: dict[str, list[float]] = {base: [] for base in bases}
    for values in customers:
        for base in bases:
            columns[base].append(float(values[base]))
    return Population.of(taken_at, columns)


def compute(wanted: tuple[Relative, ...], values: Mapping[str, Any],
            population: Population | None) -> dict[str, float]:
    """The relative metrics placing the customer's base `values` in `population`."""
    if population is None:
        return {r.name: UNAVAILABLE[r.kind] for r in wanted}
    return {r.name: population.distributions[r.base].place(r.kind, float(values[r.base]))
            for r in wanted}


def crossing(metric: Relative, population: Population, value: float, t: int,
             checks: tuple | None) -> int | None:
    """For a base growing by 1.0 per day from `value` at t: the first instant the relative
    metric changes how it compares with `checks` (any change when `checks` is None)."""
    distribution = population.distributions[metric.base]
    now = distribution.place(metric.kind, value)
    for step in distribution.steps_from(value):
        after = distribution.place(metric.kind, step + 1e-9 * max(1.0, abs(step)))
        if after == now:
            continue
        if checks is None or any(c(after, n) != c(now, n) for c, n in checks):
            return t + int((step - value) * MICROS_PER_DAY) + 1
    return None


def changed(metric: Relative, values: np.ndarray, old: Population | None, new: Population,
            checks: tuple | None) -> np.ndarray:
    """For customers with these base `values`: does moving from snapshot `old` to `new` change
    how their `metric` compares with `checks` (or its value at all, when `checks` is None)?"""
    after = new.distributions[metric.base].place_many(metric.kind, values)
    before = np.full(len(values), UNAVAILABLE[metric.kind]) if old is None else \
        old.distributions[metric.base].place_many(metric.kind, values)
    if checks is None:
        return before != after
    result = np.zeros(len(values), dtype=bool)
    for compare, number in checks:
        result |= compare(before, number) != compare(after, number)
    return result
