"""A redelivery repeats its event exactly; different content under a known event id or order id
is a conflict (conflicting_duplicate): never applied, never dropped silently."""

from __future__ import annotations

import pytest

from models.errors import InvalidEventError
from models.events import Event
from rules.engine import apply
from tests.builders import cancel, day, fold, order, policy, refund, touch

POLICY_TEXT = """
    name: conflicts
    version: "1"
    currency: CNY
    rates: {USD: 7.0}
    windows: [30d]
    tiers:
      - id: A
        when: revenue_total >= 500.0
      - id: B
"""
POLICY = policy(POLICY_TEXT)
FIRST = [order("c", day(0), 100, "o1", "e1"), refund("c", day(1), 10, "o1", "r1"),
         touch("c", day(2), "visit", "t1"), cancel("c", day(2), "o8", "x1")]

CONFLICTS = [
    ("order id again, another amount", order("c", day(0), 999, "o1", "e9")),
    ("order id again, another time", order("c", day(3), 100, "o1", "e9")),
    ("order id again, another currency", order("c", day(0), 100, "o1", "e9", "USD")),
    ("event id reused for another order", order("c", day(3), 900, "o2", "e1")),
    ("a refund's event id on another order", refund("c", day(3), 5, "o2", "r1")),
    ("a refund's event id as an order", order("c", day(3), 5, "o3", "r1")),
    ("an order's event id as a refund", refund("c", day(3), 5, "o1", "e1")),
    ("an order's event id as an interaction", touch("c", day(3), "visit", "e1")),
    ("an interaction's event id as an order", order("c", day(3), 5, "o4", "t1")),
    ("an interaction's event id as a cancellation", cancel("c", day(3), "o1", "t1")),
    ("a cancellation's event id as an order", order("c", day(3), 5, "o5", "x1")),
    ("a cancellation's event id on another order", cancel("c", day(3), "o1", "x1")),
    ("interaction again, another kind", touch("c", day(2), "complaint", "t1")),
    ("interaction again, another time", touch("c", day(4), "visit", "t1")),
]


@pytest.mark.parametrize("again", [row[1] for row in CONFLICTS], ids=[r[0] for r in CONFLICTS])
def test_conflicting_redelivery_is_refused(again: Event) -> None:
    state, _ = fold(FIRST, POLICY)
    with pytest.raises(InvalidEventError) as caught:
        apply(state, again, POLICY)
    assert caught.value.reason == "conflicting_duplicate", str(caught.value)
    assert again.event_id in str(caught.value) or "o1" in str(caught.value)


@pytest.mark.parametrize("again", FIRST, ids=["order", "refund", "interaction", "cancellation"])
def test_exact_redelivery_is_a_duplicate(again: Event) -> None:
    state, _ = fold(FIRST, POLICY)
    assert apply(state, again, POLICY) == (state, [])


def test_a_redelivery_after_a_rate_change_is_still_a_duplicate() -> None:
    # the table can be ahead of the committed input: a redelivery may meet a new policy
    dollars = order("c", day(0), 100, "o1", "e1", "USD")
    state, _ = fold([dollars], POLICY)
    new_rate = policy(POLICY_TEXT.replace("USD: 7.0", "USD: 7.5"))
    assert apply(state, dollars, new_rate)[0] == state
