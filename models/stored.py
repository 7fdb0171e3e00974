"""A customer's table value and changelog record: its state and the input partition it belongs
to, in a versioned format.

Version 4, written: a MessagePack array `[4, partition, customer_id, created_at, clock, orders,
...]`: the fields of `CustomerState` in their order (frozen in `LAYOUT`), orders, touches,
transitions and the folded totals as arrays too, nothing folded as nil, the type of each recent
transition as its index in `KINDS`. No field names and binary numbers: 351 bytes per customer on
average on CDNOW against 798 for version 1. msgspec checks the types as it decodes. A new field
in the state means a new version (tests/test_stored.py fails until then).

Version 3 and 2, read and migrated: the same array without the places on further axes
(`axes`; version 3), nor the follow-up fields and the latest interactions by kind (`contact_at`
on; version 2), which take their defaults.

Version 1, read and migrated: `{"partition": P, "state": {...}}`, as workers wrote it before;
fields it lacks take their defaults.
"""

from __future__ import annotations

from typing import Any, get_type_hints

import msgspec
from msgspec.structs import astuple, replace

from models.state import CustomerState, Folded, Transition

VERSION = 4
LAYOUT = ("customer_id", "created_at", "clock", "orders", "folded", "touches", "tier",
          "tier_since", "downgrade_due", "downgrade_warned", "churn_rule", "churn_since",
          "sequence", "next_change_at", "recent", "failures", "contact_at", "owner",
          "followup_due", "followup_from", "followup_overdue", "latest", "axes")
# the item count of each older array version: its version
_OLDER = {2 + LAYOUT.index(first): version for version, first in ((2, "contact_at"), (3, "axes"))}
_FOLDED = LAYOUT.index("folded")
_NOTHING_FOLDED = Folded()
_RECENT = LAYOUT.index("recent")
# A transition's type (an output type without "tierstream."), stored as its index here: a new
# output type goes at the end.
KINDS = ("tier.assigned", "tier.upgraded", "tier.downgraded", "tier.downgrade_warning",
         "churn.warning", "churn.recovered", "followup.due", "followup.overdue", "followup.done")
_KIND_INDEX = {kind: index for index, kind in enumerate(KINDS)}
_HINTS = get_type_hints(CustomerState) | {
    "folded": Folded | None, "recent": tuple[tuple[int, int, str | None, str | None, str], ...]}
_encoder = msgspec.msgpack.Encoder()
_decoders = {items: msgspec.msgpack.Decoder(tuple[int, int, *(_HINTS[name]
                                                                for name in LAYOUT[:items - 2])])
             for items in (*_OLDER, 2 + len(LAYOUT))}


class _Version1(msgspec.Struct, forbid_unknown_fields=True):
    partition: int
    state: CustomerState


_version1 = msgspec.json.Decoder(_Version1)


def encode(partition: int, state: CustomerState) -> bytes:
    values = list(astuple(state))
    if values[_FOLDED] == _NOTHING_FOLDED:
        values[_FOLDED] = None
    values[_RECENT] = [(_KIND_INDEX[r[0]], r[1], r[2], r[3], r[4]) for r in values[_RECENT]]
    return _encoder.encode((VERSION, partition, *values))


def decode(raw: bytes) -> tuple[int, CustomerState]:
    """The partition and the state of a stored record of any version."""
    if raw[:1] == b"{":
        old = _version1.decode(raw)
        return old.partition, _migrated(old.state)
    # (each array version: a MessagePack array of 16 to 65535 items, a 0xdc header and count)
    items = int.from_bytes(raw[1:3]) if raw[:1] == b"\xdc" else 2 + len(LAYOUT)
    decoder = _decoders.get(items)
    if decoder is None:  # a newer version holds more items
        raise ValueError(f"stored state of version {_versioned.decode(raw).version} with "
                         f"{items} items; this worker reads 1 to {VERSION}")
    version, partition, *values = decoder.decode(raw)
    if version != _OLDER.get(items, VERSION):
        raise ValueError(f"stored state of version {version} with {items} items; this worker "
                         f"reads 1 to {VERSION}")
    values[_FOLDED] = values[_FOLDED] or _NOTHING_FOLDED
    values[_RECENT] = tuple([Transition(KINDS[r[0]], r[1], r[2], r[3], r[4])
                             for r in values[_RECENT]])
    return partition, CustomerState(*values)


def _migrated(state: CustomerState) -> CustomerState:
    """A version 1 state kept no instant of its refunds and cancellations: each order with one
    is taken as changed at the state's clock, so it stays held (with the ids that tell a
    redelivery) for one exact history from then (rules/history.py)."""
    if not any(o.refund_ids or o.cancel_id for o in state.orders):
        return state
    return replace(state, orders=tuple(
        o._replace(touched=max(o.touched, state.clock)) if o.refund_ids or o.cancel_id else o
        for o in state.orders))


def peek(raw: bytes) -> tuple[int, str | None, int | None, tuple[tuple[str, str], ...]]:
    """The partition, tier, next change instant and (axis, class) pairs of a stored record,
    without building its state: all a recovering worker needs of each customer."""
    if raw[:1] == b"{":
        record: Any = msgspec.json.decode(raw)
        state = record["state"]
        return record["partition"], state["tier"], state.get("next_change_at"), ()
    version = _versioned.decode(raw).version
    if version not in (*_OLDER.values(), VERSION):
        raise ValueError(f"stored state of version {version}; this worker reads 1 to {VERSION}")
    record = _peeker.decode(raw)
    return record.partition, record.tier, record.next_change_at, \
        tuple((place[0], place[1]) for place in record.axes)


# An array version's version, whatever follows it.
_versioned = msgspec.msgpack.Decoder(msgspec.defstruct("Versioned", [("version", int)],
                                                       array_like=True))
# What `peek` reads of an array version; the rest is skipped undecoded (msgspec.Raw), and what
# the older versions lack is missing.
_PEEKED: dict[str, Any] = {"tier": str | None, "next_change_at": int | None,
                           "axes": list[tuple[str, str, msgspec.Raw, msgspec.Raw, msgspec.Raw]]}
_FIRST_MISSING = min(_OLDER) - 2  # the first field of the state the oldest array version lacks
_peeker = msgspec.msgpack.Decoder(msgspec.defstruct("Peeked", [
    ("version", int), ("partition", int),
    *((name, _PEEKED.get(name, msgspec.Raw)) for name in LAYOUT[:_FIRST_MISSING]),
    *((name, _PEEKED.get(name, msgspec.Raw), ()) for name in LAYOUT[_FIRST_MISSING:])],
    array_like=True))
