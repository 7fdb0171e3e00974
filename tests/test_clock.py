"""Per-partition clocks and due indexes of the streaming runtime (no broker needed)."""

from __future__ import annotations

import pytest

from models.errors import InvalidEventError
from models.events import parse_event
from rules.admission import check_key, reject_future
from rules.clock import PartitionClocks
from rules.due_index import DueIndex

IDLE = 30


def test_clock_is_the_watermark_while_events_flow() -> None:
    clocks = PartitionClocks(idle_after=IDLE)
    assert clocks.now(0, wall=1_000) is None
    clocks.observe(0, event_time=500, wall=1_000)
    clocks.observe(0, event_time=400, wall=1_001)   # a late event never moves the clock back
    assert clocks.now(0, wall=1_010) == 500
    assert clocks.now(1, wall=1_010) is None         # partitions are independent


def test_idle_partition_follows_the_wall_clock() -> None:
    clocks = PartitionClocks(idle_after=IDLE)
    clocks.observe(0, event_time=500, wall=1_000)
    assert clocks.now(0, wall=1_000 + IDLE - 1) == 500
    assert clocks.now(0, wall=1_000 + IDLE) == 1_000 + IDLE
    clocks.observe(0, event_time=5_000, wall=2_000)   # event time ahead of the wall clock wins
    assert clocks.now(0, wall=2_000 + IDLE) == 5_000


def test_a_partition_reading_dead_letters_is_not_idle() -> None:
    clocks = PartitionClocks(idle_after=IDLE)
    clocks.observe(0, event_time=500, wall=1_000)
    clocks.busy(0, wall=1_000 + IDLE - 1)             # an invalid message: no event time
    assert clocks.now(0, wall=1_000 + IDLE) == 500
    assert clocks.now(0, wall=1_000 + 2 * IDLE - 2) == 500


def test_assigned_partition_with_no_events_starts_its_idle_timer() -> None:
    clocks = PartitionClocks(idle_after=IDLE)
    clocks.assigned([3], wall=100)
    assert clocks.now(3, wall=100 + IDLE - 1) is None
    assert clocks.now(3, wall=100 + IDLE) == 100 + IDLE


def test_a_gap_in_ticks_restarts_the_idle_timer() -> None:
    """No tick processed for half the idle time: the worker was not reading (the broker was
    down), so input may be waiting; the partition is not idle until it stays quiet again."""
    clocks = PartitionClocks(idle_after=IDLE)
    clocks.observe(0, event_time=500, wall=1_000)
    for wall in range(1_000, 1_010):
        clocks.ticked(0, wall)                        # ticks every second: no gap
    clocks.ticked(0, 1_009 + IDLE)                    # the first tick after an outage
    assert clocks.now(0, wall=1_009 + IDLE) == 500
    assert clocks.now(0, wall=1_009 + 2 * IDLE - 1) == 500
    assert clocks.now(0, wall=1_009 + 2 * IDLE) == 1_009 + 2 * IDLE
    clocks.assigned([1], wall=1_000)
    clocks.ticked(1, 1_000)
    clocks.ticked(1, 1_000 + IDLE // 2 - 1)           # a shorter gap changes nothing
    assert clocks.now(1, wall=1_000 + IDLE) == 1_000 + IDLE


def test_due_index_pops_only_what_is_due_in_order() -> None:
    due = DueIndex()
    for at, customer in [(30, "c"), (10, "a"), (20, "b")]:
        due.schedule(at, customer)
    due.schedule(None, "never")
    assert [due.pop_next(now=20) for _ in range(3)] == [(10, "a"), (20, "b"), None]
    assert due.pop_next(now=100) == (30, "c")


def test_due_index_passes_over_instants_a_customer_no_longer_has() -> None:
    due = DueIndex()
    due.schedule(10, "later")
    due.schedule(30, "later")   # decided again: its entry at 10 is stale
    due.schedule(15, "erased")
    due.schedule(None, "erased")
    assert due.pop_next(now=20) is None
    assert due.pop_next(now=30) == (30, "later")
    assert due.pop_next(now=100) is None


EVENT = parse_event(b'{"type": "interaction", "event_id": "e", "customer_id": "c-1", '
                    b'"occurred_at": "2026-01-02T00:00:00Z", "kind": "visit"}')
JAN_1 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


def test_events_far_ahead_of_the_wall_clock_are_rejected() -> None:
    day = 86_400_000_000
    reject_future(EVENT, wall=JAN_1, tolerance=day)
    with pytest.raises(InvalidEventError) as caught:
        reject_future(EVENT, wall=JAN_1, tolerance=day - 1)
    assert caught.value.reason == "future_timestamp"


@pytest.mark.parametrize("key", [None, b"c-2", b"C-1"])
def test_messages_not_keyed_by_customer_id_are_rejected(key: bytes | None) -> None:
    check_key(b"c-1", "c-1")
    with pytest.raises(InvalidEventError) as caught:
        check_key(key, "c-1")
    assert caught.value.reason == "wrong_key"
