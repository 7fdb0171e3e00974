"""The metric catalogue and the fold that computes metric values from a customer's state at time t.

A window w covers events with occurred_at in (t - w, t]. Cancelled orders do not count; refunds
lower the net revenue of the order they refund, in whichever window holds that order.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from difflib import get_close_matches
from functools import lru_cache
from math import fsum
from operator import attrgetter
from typing import NamedTuple

from models.event_contract import INTERACTION_KIND
from models.instants import MICROS_PER_DAY, days_between, parse_duration
from models.state import CustomerState
from rules import followup, history, model_metrics, relative
from rules.lifetime_value import Model
from rules.model_metrics import ModelMetric
from rules.relative import Relative

FIXED = {
    "orders_total": "completed orders ever (cancelled ones excluded)",
    "revenue_total": "net revenue ever, after refunds, in the policy currency",
    "days_since_last_order": "days since the latest order (0.0 with no order)",
    "days_since_first_order": "days since the first order (0.0 with no order)",
    "purchase_days_total": "distinct UTC days with a completed order",
    "avg_days_between_orders": "mean days between consecutive purchase days (distinct UTC days "
                               "with an order, as the BG/NBD summary counts them; 0.0 below two)",
    "tier": "the current tier id (\"\" before the first assignment)",
    "days_in_tier": "days since the current tier was entered",
    "days_since_last_contact": "days since the latest contact (policy followup.contacts), or "
                               "since the customer was first seen with none",
}
WINDOWED = {
    "orders": "completed orders placed in the window",
    "revenue": "net revenue of orders placed in the window",
    "refunds": "amount refunded on orders placed in the window",
    "avg_order_value": "revenue / orders in the window (0.0 with none)",
    "interactions": "interactions of any kind in the window",
    "contacts": "contacts (interactions of the kinds in followup.contacts) in the window",
}
# Metrics that grow by one per day between events; the engine solves conditions on them for time.
TIME_METRICS = ("days_since_last_order", "days_since_first_order", "days_in_tier",
                "days_since_last_contact")
# days_since_last_<kind>: days since the latest interaction of that kind, a time metric too
_LAST_KIND = re.compile(rf"^days_since_last_(?!(?:order|contact)$)(?P<kind>{INTERACTION_KIND})$")
STRING_METRICS = ("tier",)
# fixed metrics of the purchase days (history.purchases), worked out once per evaluation
_OF_PURCHASES = frozenset({"purchase_days_total", "days_since_last_order",
                           "days_since_first_order", "avg_days_between_orders"})
INT_METRICS = ("orders_total", "purchase_days_total")
COUNTS = ("orders", "interactions", "contacts")  # the windowed kinds that count items
_WINDOWED = re.compile(r"^(?P<kind>orders|revenue|refunds|avg_order_value|interactions|contacts)"
                       r"(?:_(?P<touch>[a-z][a-z0-9_]*?))?_(?P<window>\d+[smhdw])$")


_placed = attrgetter("at")


class Windowed(NamedTuple):
    name: str
    kind: str
    touch: str | None   # interaction kind for interactions_<kind>_<w>
    window: str
    micros: int
    contacts: frozenset[str] = frozenset()  # contacts_<w>: the kinds that count


def classify(name: str, windows: tuple[str, ...], has_model: bool = True,
             contacts: frozenset[str] | None = None) -> Windowed | ModelMetric | Relative | None:
    """None for a fixed metric; a Windowed, ModelMetric or Relative for the others; ValueError
    if unknown. `has_model` says whether the policy names a fitted model, which the model
    metrics need; `contacts` are the interaction kinds of its followup.contacts, which the
    contact metrics need (None: not checked).
    """
    if contacts is not None and not contacts and (name == "days_since_last_contact"
                                                  or name.startswith("contacts_")):
        raise ValueError(f"metric {name!r} needs the policy's `followup.contacts`: the "
                         "interaction kinds that count as a contact")
    if name in FIXED or last_kind(name) is not None:
        return None
    placed = relative.parse(name)
    if placed is not None:
        _check_base(placed, windows, has_model, contacts)
        return placed
    modelled = model_metrics.parse(name)
    if modelled is not None:
        if not has_model:
            raise ValueError(f"metric {name!r} needs a fitted model: name a model file in the "
                             "policy's `model:` key (write one with `tierstream model fit`)")
        _check_window(name, modelled.window, windows)
        return modelled
    match = _WINDOWED.match(name)
    if match is None or (match["touch"] and match["kind"] != "interactions"):
        raise ValueError(f"unknown metric {name!r}")
    _check_window(name, match["window"], windows)
    return Windowed(name, match["kind"], match["touch"], match["window"],
                    parse_duration(match["window"]), contacts or frozenset())


def _check_base(placed: Relative, windows: tuple[str, ...], has_model: bool,
                contacts: frozenset[str] | None) -> None:
    if placed.base in STRING_METRICS or relative.parse(placed.base) is not None:
        raise ValueError(f"metric {placed.name!r} places customers by {placed.base!r}, which is "
                         "not a numeric metric of a customer; use e.g. revenue_365d_"
                         f"{placed.kind}")
    try:
        classify(placed.base, windows, has_model, contacts)
    except ValueError as error:
        raise ValueError(f"metric {placed.name!r} needs a numeric base metric: {error}") from None


def _check_window(name: str, window: str | None, windows: tuple[str, ...]) -> None:
    if window is not None and window not in windows:
        raise ValueError(f"metric {name!r} uses window {window}, which is not in the "
                         f"policy's windows [{', '.join(windows)}]; add it there")


class Window:
    """What a windowed metric counts at t: its items oldest first, what each adds to a sum
    (None for a count), and its value. (A plain class: compiled, it is built and read in C,
    where a NamedTuple's generated __new__ is a Python call.)"""

    def __init__(self, items: list, amounts: list[float] | None, value: float | int) -> None:
        self.items, self.amounts, self.value = items, amounts, value


def compute(state: CustomerState, t: int, fixed: tuple[str, ...],
            windowed: tuple[Windowed, ...], modelled: tuple[ModelMetric, ...] = (),
            model: Model | None = None, orders: list | None = None,
            windows: dict[str, Window] | None = None
            ) -> dict[str, float | int | str]:
    """Values of the named metrics for `state` evaluated at instant `t`; `orders` are its
    counted_orders at t when the caller has them already; `windows` receives each windowed
    metric's Window."""
    if orders is None:
        orders = counted_orders(state, t)
    values: dict[str, float | int | str] = {}
    bought, known = None, False  # the purchases, once worked out
    for name in fixed:
        if name in _OF_PURCHASES:
            if not known:
                bought, known = history.purchases(state, orders), True
            values[name] = _of_purchases(name, bought, t)
        else:
            values[name] = _fixed(name, state, orders, t)
    for metric in windowed:
        seen = window(metric, state, orders, t)
        values[metric.name] = seen.value
        if windows is not None:
            windows[metric.name] = seen
    if modelled and model is not None:
        values.update(model_metrics.compute(model, modelled, state, orders, t))
    return values


def counted_orders(state: CustomerState, t: int) -> list:
    """The orders kept one by one that count at t (amount known, not cancelled), oldest first;
    those folded into state.folded are not among them."""
    counted = [o for o in state.orders if o.amount is not None and not o.cancelled and o.at <= t]
    counted.sort(key=_placed)
    return counted


def _fixed(name: str, state: CustomerState, orders: list, t: int) -> float | int | str:
    if name == "orders_total":
        return state.folded.orders + len(orders)
    if name == "revenue_total":
        return max(fsum([*history.revenue(state),
                         *(max(o.amount - o.refunded, 0.0) for o in orders)]), 0.0)
    if name == "tier":
        return state.tier or ""
    if name == "days_since_last_contact":
        return days_between(followup.since_contact(state), t)
    kind = last_kind(name)
    if kind is not None:
        return days_between(_kind_anchor(state, kind), t)
    assert name == "days_in_tier"
    return days_between(state.tier_since, t) if state.tier_since is not None else 0.0


def _of_purchases(name: str, bought: history.Purchases | None, t: int) -> float | int:
    if bought is None:
        return 0 if name in INT_METRICS else 0.0
    if name == "purchase_days_total":
        return bought.days
    if name == "days_since_last_order":
        return days_between(bought.last_at, t)
    if name == "days_since_first_order":
        return days_between(bought.first_at, t)
    # Orders minutes apart are one purchase, not a habit of buying every few minutes: the gaps
    # are between purchase days, so such a pair never makes a customer look overdue.
    span = bought.last_at // MICROS_PER_DAY - bought.first_at // MICROS_PER_DAY
    return span / (bought.days - 1) if bought.days > 1 else 0.0


def window(metric: Windowed, state: CustomerState, orders: list, t: int) -> Window:
    inside = in_window(metric, state, orders, t)
    if metric.kind in COUNTS:
        return Window(inside, None, len(inside))
    amounts = item_amounts(metric, inside)
    return Window(inside, amounts, of_amounts(metric, amounts))


def in_window(metric: Windowed, state: CustomerState, orders: list, t: int) -> list:
    """The orders (or matching interactions) that `metric` counts at t, oldest first."""
    start = t - metric.micros
    if metric.kind == "contacts":
        return sorted((x for x in state.touches if start < x.at <= t
                       and x.kind in metric.contacts), key=_placed)
    if metric.kind == "interactions":
        return sorted((x for x in state.touches if start < x.at <= t
                       and (metric.touch is None or x.kind == metric.touch)), key=_placed)
    return orders[bisect_right(orders, start, key=_placed):]


def item_amounts(metric: Windowed, orders: list) -> list[float]:
    """What each order adds to a sum metric: its refunded amount, or its net revenue."""
    if metric.kind == "refunds":
        return [min(o.refunded, o.amount) for o in orders]
    return [max(o.amount - o.refunded, 0.0) for o in orders]  # Order.net, inlined


def of_amounts(metric: Windowed, amounts: list[float]) -> float:
    """A sum metric's value over the amounts of the orders inside its window."""
    total = fsum(amounts)
    if metric.kind in ("revenue", "refunds"):
        return total
    return total / len(amounts) if amounts else 0.0


def time_anchors(state: CustomerState, names: tuple[str, ...], orders: list
                 ) -> dict[str, int | None]:
    """For each time metric in `names`, the instant it counts the days from (its value at t is
    days_between(anchor, t)), or None while it stays at 0.0; `orders` are the state's
    counted_orders."""
    first, last = history.span(state, orders) or (None, None)
    anchors: dict[str, int | None] = {}
    for name in names:
        if name == "days_in_tier":
            anchors[name] = state.tier_since
        elif name == "days_since_last_contact":
            anchors[name] = followup.since_contact(state)
        elif (kind := last_kind(name)) is not None:
            anchors[name] = _kind_anchor(state, kind)
        elif name in TIME_METRICS:
            anchors[name] = last if name == "days_since_last_order" else first
    return anchors


def is_time(name: str) -> bool:
    """Whether `name` is a metric that grows by one a day between events."""
    return name in TIME_METRICS or last_kind(name) is not None


@lru_cache(maxsize=4096)
def last_kind(name: str) -> str | None:
    """The interaction kind of a days_since_last_<kind> metric, else None; a kind spelt nearly
    as `order` or `contact` (`days_since_last_ordr`) is taken for a typo, not a kind."""
    match = _LAST_KIND.match(name)
    if match is None or relative.parse(name) is not None or \
            get_close_matches(match["kind"], ("order", "contact"), cutoff=0.8):
        return None
    return match["kind"]


def _kind_anchor(state: CustomerState, kind: str) -> int:
    """The latest interaction of `kind`, or the customer's first-seen instant with none."""
    return next((at for seen, at in state.latest if seen == kind), state.created_at)


def sample_values(fixed: tuple[str, ...], windowed: tuple[Windowed, ...],
                  modelled: tuple[ModelMetric, ...] = (), placed: tuple[Relative, ...] = ()
                  ) -> dict:
    """Typed non-zero sample values, used to type-check conditions when a policy loads."""
    values: dict[str, float | int | str] = {m.name: 0.5 for m in modelled}
    values.update((r.name, 0.5) for r in placed)
    for name in fixed:
        values[name] = "A" if name in STRING_METRICS else 1 if name in INT_METRICS else 1.5
    for metric in windowed:
        values[metric.name] = 1 if metric.kind in COUNTS else 1.5
    return values
