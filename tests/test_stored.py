"""The stored state (models/stored.py): version 4 round-trips every field, version 1 to 3
records as workers wrote them are read and migrated, and the layout cannot change unnoticed."""

from __future__ import annotations

import json
from typing import get_args

import msgspec
import pytest

from models import stored
from models.outputs import AXIS_TYPES, OutputType
from models.state import CustomerState, Folded, Order, Place, Touch, Transition

STATE = CustomerState(
    customer_id="客户/42", created_at=1_700_000_000_000_000, clock=1_710_000_000_000_000,
    orders=(Order("o1", 1_700_000_000_000_000, 12.5, 2.25, False, ("r1",), "e1", "12.5 CNY",
                  "", 1_700_100_000_000_000),
            Order("o2", 1_700_200_000_000_000, None, 0.0, True, (), "", "", "c2",
                  1_700_200_000_000_000)),
    folded=Folded(1_690_000_000_000_000, 7, 5, 1_600_000_000_000_000, 1_689_000_000_000_000,
                  (123.25, 1e-17), (100.0,)),
    touches=(Touch("t1", 1_709_000_000_000_000, "visit"),),
    tier="A", tier_since=1_705_000_000_000_000, downgrade_due=1_711_000_000_000_000,
    downgrade_warned=True, churn_rule="overdue", churn_since=1_708_000_000_000_000, sequence=9,
    next_change_at=1_711_000_000_000_000,
    recent=(Transition("tier.upgraded", 1_705_000_000_000_000, "B", "A", "A"),
            Transition("followup.due", 1_706_000_000_000_000, "A", "A", "A")), failures=2,
    contact_at=1_704_000_000_000_000, owner="rep-7", followup_due=1_706_000_000_000_000,
    followup_from=1_704_000_000_000_000, followup_overdue=True,
    latest=(("complaint", 1_703_000_000_000_000), ("visit", 1_709_000_000_000_000)),
    axes=(Place("lifecycle", "active", 1_702_000_000_000_000),
          Place("potential", "high", 1_703_000_000_000_000, 1_712_000_000_000_000, True)))


def test_version_4_round_trips_every_field() -> None:
    raw = stored.encode(3, STATE)
    assert msgspec.msgpack.decode(raw)[:3] == [4, 3, "客户/42"]
    assert stored.decode(raw) == (3, STATE)
    new = CustomerState(customer_id="c", created_at=1, clock=1)  # nothing folded: nil
    assert stored.decode(stored.encode(0, new)) == (0, new)
    assert stored.peek(raw) == (3, "A", 1_711_000_000_000_000,
                                (("lifecycle", "active"), ("potential", "high")))
    assert len(raw) < len(msgspec.json.encode({"partition": 3, "state": STATE}))


def test_a_version_1_record_is_read_with_defaults_for_what_it_lacks() -> None:
    old = {"partition": 1, "state": {
        "customer_id": "c", "created_at": 5, "clock": 9, "tier": "B", "next_change_at": 20,
        "orders": [["o1", 5, 10.0, 0.0, False, [], "e1", "10.0 CNY", ""]]}}
    raw = json.dumps(old).encode()
    partition, state = stored.decode(raw)
    assert partition == 1 and state.tier == "B" and state.folded == Folded()
    assert state.orders == (Order("o1", 5, 10.0, 0.0, False, (), "e1", "10.0 CNY", "", 0),)
    assert stored.peek(raw) == (1, "B", 20, ())
    assert stored.decode(stored.encode(partition, state)) == (1, state)  # migrated on write


def test_a_version_2_record_is_read_with_no_follow_up() -> None:
    before = msgspec.structs.replace(STATE, contact_at=None, owner=None, followup_due=None,
                                     followup_from=None, followup_overdue=False, latest=(),
                                     recent=STATE.recent[:1], axes=())
    version_2 = msgspec.msgpack.decode(stored.encode(3, before))[:2 + 16]
    raw = msgspec.msgpack.encode([2, *version_2[1:]])
    assert stored.decode(raw) == (3, before)
    assert stored.peek(raw) == (3, "A", 1_711_000_000_000_000, ())


def test_a_version_3_record_is_read_with_no_place_on_an_axis() -> None:
    before = msgspec.structs.replace(STATE, axes=())
    version_3 = msgspec.msgpack.decode(stored.encode(3, before))[:2 + 22]
    raw = msgspec.msgpack.encode([3, *version_3[1:]])
    assert stored.decode(raw) == (3, before)
    assert stored.peek(raw) == (3, "A", 1_711_000_000_000_000, ())


def test_a_version_1_order_with_a_refund_stays_held_for_one_exact_history() -> None:
    old = {"partition": 0, "state": {"customer_id": "c", "created_at": 5, "clock": 900,
                                     "orders": [["o1", 5, 10.0, 4.0, False, ["r1"], "e1",
                                                 "10.0 CNY", ""],
                                                ["o2", 6, 10.0, 0.0, False, [], "e2",
                                                 "10.0 CNY", ""]]}}
    _, state = stored.decode(json.dumps(old).encode())
    assert [o.touched for o in state.orders] == [900, 0]  # its refund's instant is not known


def test_the_layout_is_frozen_for_version_4() -> None:
    # A new field in any of these changes what version 4 means: write a version 5 instead.
    assert stored.LAYOUT == CustomerState.__struct_fields__ == (
        "customer_id", "created_at", "clock", "orders", "folded", "touches", "tier", "tier_since",
        "downgrade_due", "downgrade_warned", "churn_rule", "churn_since", "sequence",
        "next_change_at", "recent", "failures", "contact_at", "owner", "followup_due",
        "followup_from", "followup_overdue", "latest", "axes")
    assert Order._fields == ("order_id", "at", "amount", "refunded", "cancelled", "refund_ids",
                             "event_id", "given", "cancel_id", "touched")
    assert Folded._fields == ("until", "orders", "days", "first_at", "last_at", "revenue",
                              "repeat")
    assert Touch._fields == ("event_id", "at", "kind")
    assert Transition._fields == ("type", "at", "from_tier", "to_tier", "rule")
    assert Place._fields == ("axis", "name", "since", "downgrade_due", "downgrade_warned")
    assert stored.KINDS == ("tier.assigned", "tier.upgraded", "tier.downgraded",
                            "tier.downgrade_warning", "churn.warning", "churn.recovered",
                            "followup.due", "followup.overdue", "followup.done")
    # (axis moves are not remembered in `recent`)
    assert {f"tierstream.{kind}" for kind in stored.KINDS} == \
        set(get_args(OutputType)) - set(AXIS_TYPES)


def test_an_unknown_version_is_refused_clearly() -> None:
    newer = msgspec.msgpack.encode([5, 0, *msgspec.msgpack.decode(stored.encode(0, STATE))[2:],
                                    "a field added later"])
    for read in (stored.decode, stored.peek):
        with pytest.raises(ValueError, match="version 5"):
            read(newer)
