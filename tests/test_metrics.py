"""Metric values folded from events: windows (t - w, t], totals, refunds, cancellations, rates."""

from __future__ import annotations

import pytest

from models.errors import InvalidEventError
from models.instants import MICROS_PER_DAY
from models.state import CustomerState
from rules import metrics
from rules.engine import apply, stale
from tests.builders import US, cancel, day, fold, full_refund, order, policy, refund, touch

WINDOWS = ("7d", "30d", "90d")
POLICY = policy("""
    name: metrics
    version: "1"
    currency: CNY
    rates: {USD: 7.1, EUR: 7.7}
    windows: [7d, 30d, 90d]
    tiers:
      - id: A
        when: revenue_90d >= 1000.0
      - id: B
""")
W = {"7d": 7 * MICROS_PER_DAY, "30d": 30 * MICROS_PER_DAY, "90d": 90 * MICROS_PER_DAY}


def value(state: CustomerState, name: str, t: int) -> float | int | str:
    """One metric of `state` at instant t, whether or not the policy's conditions use it."""
    kind = metrics.classify(name, WINDOWS)
    fixed, windowed = ((name,), ()) if kind is None else ((), (kind,))
    return metrics.compute(state, t, fixed, windowed)[name]


def state_of(*events) -> CustomerState:
    state, _ = fold(events, POLICY)
    assert state is not None
    return state


ONE_ORDER = state_of(order("c", day(0), 100, "o1"), refund("c", day(0), 25, "o1"))
TOUCHES = state_of(touch("c", day(0), "visit"), touch("c", day(0), "email_open",
                                                     event_id="open-1"))

# (metric, state, window, value inside the window, value outside it)
WINDOWED = [
    ("orders_{w}", ONE_ORDER, 1, 0),
    ("revenue_{w}", ONE_ORDER, 75.0, 0.0),
    ("refunds_{w}", ONE_ORDER, 25.0, 0.0),
    ("avg_order_value_{w}", ONE_ORDER, 75.0, 0.0),
    ("interactions_{w}", TOUCHES, 2, 0),
    ("interactions_visit_{w}", TOUCHES, 1, 0),
    ("interactions_email_open_{w}", TOUCHES, 1, 0),
    ("interactions_complaint_{w}", TOUCHES, 0, 0),
]


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize(("pattern", "state", "inside", "outside"), WINDOWED,
                         ids=[row[0] for row in WINDOWED])
def test_window_covers_t_minus_w_exclusive_to_t_inclusive(
        pattern: str, state: CustomerState, inside: float, outside: float, window: str) -> None:
    name, w = pattern.format(w=window), W[window]
    assert value(state, name, day(0)) == inside                 # event exactly at t: in
    assert value(state, name, day(0) + w - US) == inside        # 1 us less than w before t: in
    assert value(state, name, day(0) + w) == outside            # exactly w before t: out
    assert value(state, name, day(0) - US) == outside           # after t: not yet


THREE_ORDERS = (order("c", day(0), 100, "o1"), order("c", day(10), 200, "o2"),
                order("c", day(40), 300, "o3"))

# (case, events, t, metric, expected)
FIXED = [
    ("orders_total", THREE_ORDERS, day(50), "orders_total", 3),
    ("revenue_total", THREE_ORDERS, day(50), "revenue_total", 600.0),
    ("days_since_last_order", THREE_ORDERS, day(50), "days_since_last_order", 10.0),
    ("days_since_first_order", THREE_ORDERS, day(50), "days_since_first_order", 50.0),
    ("avg_days_between_orders", THREE_ORDERS, day(50), "avg_days_between_orders", 20.0),
    ("fractional days", THREE_ORDERS, day(40.5), "days_since_last_order", 0.5),
    ("one microsecond", THREE_ORDERS, day(40) + US, "days_since_last_order",
     1 / MICROS_PER_DAY),
    ("windows over several orders", THREE_ORDERS, day(50), "orders_30d", 1),
    ("revenue over several orders", THREE_ORDERS, day(50), "revenue_90d", 600.0),
    ("average order value", THREE_ORDERS, day(50), "avg_order_value_90d", 200.0),
    ("orders after t do not count yet", THREE_ORDERS, day(20), "orders_total", 2),
    ("avg gap of one order", THREE_ORDERS[:1], day(50), "avg_days_between_orders", 0.0),
    ("avg gap of two orders", THREE_ORDERS[:2], day(50), "avg_days_between_orders", 10.0),
    # Gaps are between purchase days (distinct UTC days), as the BG/NBD summary counts them.
    ("purchase days", (*THREE_ORDERS, order("c", day(10.5), 50, "o4")), day(50),
     "purchase_days_total", 3),
    ("avg gap: a second order the same day", (*THREE_ORDERS, order("c", day(40.9), 50, "o4")),
     day(50), "avg_days_between_orders", 20.0),
    ("avg gap: two orders a minute apart", (order("c", day(0.5), 1, "o1"),
                                            order("c", day(0.5) + 60_000_000, 1, "o2")),
     day(50), "avg_days_between_orders", 0.0),
    ("avg gap: whole days between purchase days", (order("c", day(0.9), 1, "o1"),
                                                   order("c", day(1.1), 1, "o2")),
     day(50), "avg_days_between_orders", 1.0),
    ("no orders: days since last", (touch("c", day(0)),), day(50), "days_since_last_order", 0.0),
    ("no orders: days since first", (touch("c", day(0)),), day(50), "days_since_first_order",
     0.0),
    ("no orders: avg gap", (touch("c", day(0)),), day(50), "avg_days_between_orders", 0.0),
    ("no orders: revenue", (touch("c", day(0)),), day(50), "revenue_total", 0.0),
    ("no orders: average order value", (touch("c", day(0)),), day(50), "avg_order_value_30d",
     0.0),
    ("zero-amount order counts", (order("c", day(0), 0),), day(1), "orders_total", 1),
    # Cancellations remove the order everywhere.
    ("cancelled: orders_total", (*THREE_ORDERS, cancel("c", day(45), "o2")), day(50),
     "orders_total", 2),
    ("cancelled: revenue_total", (*THREE_ORDERS, cancel("c", day(45), "o2")), day(50),
     "revenue_total", 400.0),
    ("cancelled: window", (*THREE_ORDERS, cancel("c", day(45), "o2")), day(50), "orders_90d",
     2),
    ("cancelled: average order value", (*THREE_ORDERS, cancel("c", day(45), "o2")), day(50),
     "avg_order_value_90d", 200.0),
    ("cancelled: avg gap", (*THREE_ORDERS, cancel("c", day(45), "o2")), day(50),
     "avg_days_between_orders", 40.0),
    ("cancelled last order: recency", (*THREE_ORDERS, cancel("c", day(45), "o3")), day(50),
     "days_since_last_order", 40.0),
    ("cancelled first order: age", (*THREE_ORDERS, cancel("c", day(45), "o1")), day(50),
     "days_since_first_order", 40.0),
    ("everything cancelled", (*THREE_ORDERS[:1], cancel("c", day(1), "o1")), day(2),
     "days_since_last_order", 0.0),
    # A refund lowers the window holding the original order, even when it arrives later.
    ("late partial refund: old window", (*THREE_ORDERS[:1], refund("c", day(40), 30, "o1")),
     day(40), "revenue_90d", 70.0),
    ("late partial refund: not the refund's window",
     (*THREE_ORDERS[:1], refund("c", day(40), 30, "o1")), day(40), "revenue_30d", 0.0),
    ("late partial refund: refunds of the old window",
     (*THREE_ORDERS[:1], refund("c", day(40), 30, "o1")), day(40), "refunds_90d", 30.0),
    ("late partial refund: no refunds in the refund's window",
     (*THREE_ORDERS[:1], refund("c", day(40), 30, "o1")), day(40), "refunds_30d", 0.0),
    ("late partial refund: total", (*THREE_ORDERS[:1], refund("c", day(40), 30, "o1")),
     day(40), "revenue_total", 70.0),
    ("partial refunds add up", (*THREE_ORDERS[:1], refund("c", day(1), 30, "o1", "r1"),
                                refund("c", day(2), 20, "o1", "r2")), day(3), "revenue_7d",
     50.0),
    ("full refund without an amount", (*THREE_ORDERS[:1], full_refund("c", day(1), "o1")),
     day(2), "revenue_7d", 0.0),
    ("full refund after a partial one: the rest",
     (*THREE_ORDERS[:1], refund("c", day(1), 30, "o1"), full_refund("c", day(2), "o1")),
     day(3), "refunds_7d", 100.0),
    ("full refund of one order of two", (*THREE_ORDERS[:2], full_refund("c", day(11), "o2")),
     day(12), "revenue_30d", 100.0),
    ("full refund", (*THREE_ORDERS[:1], refund("c", day(1), 100, "o1")), day(2), "revenue_7d",
     0.0),
    ("fully refunded order still counts as an order",
     (*THREE_ORDERS[:1], refund("c", day(1), 100, "o1")), day(2), "orders_7d", 1),
    ("refund above the amount: revenue floors at zero",
     (*THREE_ORDERS[:1], refund("c", day(1), 150, "o1")), day(2), "revenue_total", 0.0),
    ("refund above the amount: refunds cap at the amount",
     (*THREE_ORDERS[:1], refund("c", day(1), 150, "o1")), day(2), "refunds_7d", 100.0),
    # Refunds and cancellations may arrive before their order.
    ("refund before its order: revenue", (refund("c", day(5), 30, "o1"), THREE_ORDERS[0]),
     day(6), "revenue_7d", 70.0),
    ("refund before its order: the order keeps its own time",
     (refund("c", day(5), 30, "o1"), THREE_ORDERS[0]), day(6), "days_since_first_order", 6.0),
    ("refund alone is not an order", (refund("c", day(5), 30, "o1"),), day(6), "orders_total",
     0),
    ("cancellation before its order", (cancel("c", day(5), "o1"), THREE_ORDERS[0]), day(6),
     "orders_total", 0),
    ("cancellation before its order: no revenue", (cancel("c", day(5), "o1"), THREE_ORDERS[0]),
     day(6), "revenue_7d", 0.0),
    # Amounts are converted to the policy currency with `rates`.
    ("order in USD", (order("c", day(0), 100, "o1", currency="USD"),), day(1),
     "revenue_total", 710.0),
    ("order in the policy currency", (order("c", day(0), "12.5", "o1", currency="CNY"),),
     day(1), "revenue_total", 12.5),
    ("refund in EUR on a CNY order", (order("c", day(0), 100, "o1"),
                                      refund("c", day(1), 10, "o1", currency="EUR")), day(1),
     "revenue_total", 23.0),
]


@pytest.mark.parametrize(("events", "t", "name", "expected"), [row[1:] for row in FIXED],
                         ids=[row[0] for row in FIXED])
def test_metric_value(events: tuple, t: int, name: str, expected: float) -> None:
    assert value(state_of(*events), name, t) == pytest.approx(expected, abs=1e-9)
    assert type(value(state_of(*events), name, t)) is type(expected)


def test_policy_values_compute_exactly_the_metrics_its_conditions_use() -> None:
    state = state_of(*THREE_ORDERS)
    assert POLICY.values(state, day(50)) == {"revenue_90d": 600.0}


@pytest.mark.parametrize("event", [
    order("c", day(1), 10, "o9", currency="JPY"),
    refund("c", day(1), 10, "o1", currency="JPY"),
], ids=["order", "refund"])
def test_unknown_currency_is_an_invalid_event(event) -> None:
    state = state_of(*THREE_ORDERS[:1])
    with pytest.raises(InvalidEventError) as caught:
        apply(state, event, POLICY)
    assert caught.value.reason == "unknown_currency"
    assert "JPY" in str(caught.value)


def test_unknown_currency_on_a_new_customer_creates_no_state() -> None:
    with pytest.raises(InvalidEventError):
        apply(None, order("c", day(1), 10, currency="JPY"), POLICY)


DUPLICATES = [
    ("same order redelivered", THREE_ORDERS[0], THREE_ORDERS[0]),
    ("same order re-sent under a new event id", THREE_ORDERS[0],
     order("c", day(0), 100, "o1", event_id="other")),
    ("same refund redelivered", refund("c", day(1), 10, "o1", "r1"),
     refund("c", day(1), 10, "o1", "r1")),
    ("same full refund redelivered", full_refund("c", day(1), "o1", "r1"),
     full_refund("c", day(1), "o1", "r1")),
    ("same cancellation redelivered", cancel("c", day(1), "o1", "x1"),
     cancel("c", day(1), "o1", "x1")),
    ("second cancellation of the order", cancel("c", day(1), "o1", "x1"),
     cancel("c", day(2), "o1", "x2")),
    ("same interaction redelivered", touch("c", day(1), event_id="t1"),
     touch("c", day(1), event_id="t1")),
]


@pytest.mark.parametrize(("first", "again"), [row[1:] for row in DUPLICATES],
                         ids=[row[0] for row in DUPLICATES])
def test_duplicates_change_nothing(first, again) -> None:
    once, _ = fold([THREE_ORDERS[0], first], POLICY)
    twice, outputs = apply(once, again, POLICY)
    assert twice == once
    assert outputs == []


def test_a_full_refund_of_an_order_not_held_is_refused_saying_why() -> None:
    state = state_of(*THREE_ORDERS[:1])
    with pytest.raises(InvalidEventError) as caught:
        apply(state, full_refund("c", day(1), "o-unknown"), POLICY)
    assert caught.value.reason == "unknown_refund_amount"
    assert "'o-unknown'" in str(caught.value) and "send the refund's amount" in str(caught.value)


def test_distinct_refunds_of_one_order_both_count() -> None:
    state = state_of(THREE_ORDERS[0], refund("c", day(1), 10, "o1", "r1"),
                     refund("c", day(1), 10, "o1", "r2"))
    assert value(state, "revenue_total", day(2)) == 80.0


def test_interaction_older_than_every_window_is_not_kept() -> None:
    state = state_of(touch("c", day(100), event_id="new"), touch("c", day(10), event_id="old"))
    assert [x.event_id for x in state.touches] == ["new"]


@pytest.mark.parametrize(("at", "expected"), [(day(5), True), (day(10), True), (day(11), False),
                                              (day(50), False), (day(200), False)])
def test_stale_is_an_interaction_at_or_before_the_largest_window(at: int, expected: bool) -> None:
    state = state_of(touch("c", day(100), event_id="new"))
    assert POLICY.largest_window == 90 * MICROS_PER_DAY  # stale at or before day 10
    assert stale(state, touch("c", at, event_id="late"), POLICY) is expected
    assert not stale(None, touch("c", at, event_id="late"), POLICY)
    assert not stale(state, order("c", at, 10), POLICY)
    applied, outputs = apply(state, touch("c", at, event_id="late"), POLICY)
    assert (applied is state and outputs == []) if expected else applied != state
