"""A customer's state is bounded (policy `limits.customer_items`): an event past the bound is
refused with reason customer_full, in replay as in the worker, and never stops anything."""

from __future__ import annotations

import pytest

from models import stored
from models.errors import InvalidEventError, PolicyError
from rules.engine import apply
from rules.replay import Replay
from tests.builders import day, fold, order, policy, refund, touch

SMALL_TEXT = """
    name: small
    version: "1"
    currency: CNY
    windows: [30d]
    tiers:
      - id: A
        when: orders_30d >= 3
      - id: B
    limits:
      customer_items: 5
"""
SMALL = policy(SMALL_TEXT)


def test_an_event_past_the_bound_is_refused_and_changes_nothing() -> None:
    state, _ = fold([order("c", day(n), 10, f"o{n}") for n in range(5)], SMALL)
    assert state is not None and len(state.orders) == 5
    with pytest.raises(InvalidEventError) as caught:
        apply(state, order("c", day(6), 10, "o6"), SMALL)
    assert caught.value.reason == "customer_full"
    assert "holds 5 orders, refunds and interactions" in str(caught.value)
    assert "limits.customer_items" in str(caught.value)
    with pytest.raises(InvalidEventError):
        apply(state, refund("c", day(6), 5, "o1"), SMALL)  # a refund id is an item too
    with pytest.raises(InvalidEventError):
        apply(state, touch("c", day(6)), SMALL)
    assert apply(state, order("c", day(1), 10, "o1"), SMALL) == (state, [])  # a redelivery


def test_replay_of_a_customer_with_50000_orders_keeps_going() -> None:
    replay = Replay(SMALL)
    outputs = []
    for n in range(50_000):  # 100 a day: 5 apply, then none until they leave the exact history
        outputs += replay.feed(order("heavy", day(n / 100), 10, f"h{n}"))
        if n == 2_500:
            outputs += replay.feed(order("light", day(n / 100), 10, "l1"))
    refused = replay.take_failed()
    folded = replay.states["heavy"].folded.orders
    assert len(refused) == 50_000 - 5 - folded and folded > 0
    assert {f.error.reason for f, event in refused if event is not None} == {"customer_full"}
    assert len(replay.states["heavy"].orders) == 5
    assert replay.states["light"].tier == "B"
    assert [o.subject for o in outputs].count("light") == 1


def test_the_bound_is_at_most_2500_items() -> None:
    with pytest.raises(PolicyError, match="customer_items"):
        policy(SMALL_TEXT.replace("customer_items: 5", "customer_items: 2501"))


def test_a_state_of_the_longest_ids_stays_under_the_kafka_record_limit() -> None:
    widest = policy(SMALL_TEXT.replace("customer_items: 5", "customer_items: 2500"))
    emoji = "\U0001F600" * 120  # 128 characters of 4 bytes each, with the counter
    state, last = None, None
    for n in range(2500):
        event = order("c", day(n / 100), 10, f"{emoji}{n:08d}", f"{emoji}e{n:07d}")
        try:
            state, _ = apply(state, event, widest)
        except InvalidEventError as error:
            last = error
            break
    assert last is not None and last.reason == "customer_full" and "bytes" in str(last)
    assert state is not None
    record = stored.encode(0, state)
    assert 800_000 < len(record) < 1_000_000
