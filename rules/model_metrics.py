"""Model metrics: p_alive, expected_orders_<w>, clv_<w> of one customer at t, from a fitted model.

The customer is summarised as `tierstream model fit` summarises them (rules/lifetime_value.py):
distinct UTC purchase days, x repeat purchase days, t_x and T in weeks from the first one, T
measured to the UTC day of t. Between events only T moves, one day at each UTC midnight, so these
metrics change by time alone exactly at UTC midnights; `next_change` finds the first midnight at
which one of them crosses a threshold of the policy.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from math import fsum
from typing import Any, NamedTuple

import numpy as np

from models.instants import MICROS_PER_DAY, parse_duration
from models.state import CustomerState, Order
from rules import history
from rules import lifetime_value as lv

KINDS = {
    "p_alive": "probability that the customer is still active (BG/NBD; 1.0 before a repeat "
               "purchase, 0.0 with no order)",
    "expected_orders": "expected purchase days in the next",
    "clv": "expected revenue, in the policy currency, in the next",
}
NAME = re.compile(r"^(?:p_alive|(?P<kind>expected_orders|clv)_(?P<window>\d+[smhdw]))$")
LOOKAHEAD_DAYS = 366  # how far ahead a threshold crossing is searched; beyond, look again then

Threshold = tuple[Callable[[Any, Any], Any], float]


class ModelMetric(NamedTuple):
    name: str
    kind: str            # p_alive, expected_orders or clv
    window: str | None   # the horizon of expected_orders_<w> / clv_<w>
    weeks: float         # that horizon in weeks, the model's time unit


def parse(name: str) -> ModelMetric | None:
    """The model metric `name` names, or None if it is not one (its window is not checked)."""
    match = NAME.match(name)
    if match is None:
        return None
    if match["kind"] is None:
        return ModelMetric(name, "p_alive", None, 0.0)
    weeks = parse_duration(match["window"]) / MICROS_PER_DAY / lv.DAYS_PER_UNIT
    return ModelMetric(name, match["kind"], match["window"], weeks)


def summary(state: CustomerState, orders: Sequence[Order], t: int
            ) -> lv.CustomerSummary | None:
    """The customer's summary at t from its folded orders and `orders`, the rest that count;
    None without any. The spend of repeat purchase days is summed exactly (math.fsum)."""
    bought = history.purchases(state, orders)
    if bought is None:
        return None
    first = bought.first_at // MICROS_PER_DAY
    if state.folded.orders:
        spent = max(fsum([*history.repeat(state), *(o.net for o in orders)]), 0.0)
    else:
        spent = fsum([o.net for o in orders if o.at // MICROS_PER_DAY != first])
    repeats = bought.days - 1
    return lv.CustomerSummary("", x=repeats,
                              t_x=(bought.last_at // MICROS_PER_DAY - first) / lv.DAYS_PER_UNIT,
                              T=(t // MICROS_PER_DAY - first) / lv.DAYS_PER_UNIT,
                              spend=spent / repeats if repeats else 0.0)


def compute(model: lv.Model, wanted: Sequence[ModelMetric], state: CustomerState,
            orders: Sequence[Order], t: int) -> dict[str, float]:
    """Values of the `wanted` model metrics at t; 0.0 for a customer with no order."""
    s = summary(state, orders, t)
    if s is None:
        return {m.name: 0.0 for m in wanted}
    return {m.name: float(_series(model, m, s, np.array([s.T]))[0]) for m in wanted}


def next_change(model: lv.Model, metric: ModelMetric, checks: Sequence[Threshold],
                state: CustomerState, orders: Sequence[Order], t: int, now: float
                ) -> int | None:
    """First UTC midnight after t at which `metric` compares differently with its thresholds.

    Searches LOOKAHEAD_DAYS ahead in one vectorised step and, finding no change, asks to be
    looked at again at the end of that span. None for a customer with no order (nothing moves).
    """
    s = summary(state, orders, t)
    if s is None:
        return None
    days = np.arange(1, LOOKAHEAD_DAYS + 1)
    # T exactly as customer_summary computes it on that day, so the values match to the bit
    ahead = (round(s.T * lv.DAYS_PER_UNIT) + days) / lv.DAYS_PER_UNIT
    series = _series(model, metric, s, ahead)
    changed = np.zeros(len(days), dtype=bool)
    for compare, number in checks:
        changed |= compare(series, number) != compare(now, number)
    step = int(days[np.argmax(changed)]) if changed.any() else LOOKAHEAD_DAYS
    return next_midnight(t) + (step - 1) * MICROS_PER_DAY


def next_midnight(t: int) -> int:
    """The first UTC midnight after t."""
    return (t // MICROS_PER_DAY + 1) * MICROS_PER_DAY


def _series(model: lv.Model, metric: ModelMetric, s: lv.CustomerSummary,
            T: np.ndarray) -> np.ndarray:
    if metric.kind == "p_alive":
        return lv.p_alive(model.bgnbd, s.x, s.t_x, T)
    if metric.kind == "expected_orders":
        return lv.expected_purchases(model.bgnbd, metric.weeks, s.x, s.t_x, T)
    return lv.clv(model.bgnbd, model.gamma_gamma, metric.weeks, s.x, s.t_x, T, s.spend)
