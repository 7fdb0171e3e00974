"""Admission: the checks a parsed event must pass before the engine takes it.

One function, in one order, for every path that takes events: the worker (a Kafka message, its
key and the wall clock), replay and policy diff (file records, no key). Parsing comes before it
(`models.events.parse_event`, or the file readers); the first failed check is the event's
dead-letter reason.
"""

from __future__ import annotations

from models.errors import InvalidEventError
from models.events import Event
from models.instants import format_instant
from rules.compiled import CompiledPolicy
from rules.engine import in_policy_currency


class _Unkeyed:
    """The key of a record read from a file: there is none to check."""


UNKEYED = _Unkeyed()


def admit(event: Event, policy: CompiledPolicy, *, wall: int | None, max_future: int,
          key: bytes | None | _Unkeyed = UNKEYED) -> None:
    """Raise InvalidEventError for the first check the event fails, in this order:
    `unknown_currency` (the policy has no rate for it), `wrong_key` (a Kafka message not keyed
    by its customer id), `future_timestamp` (dated more than `max_future` after `wall`, the wall
    clock in micros; None: no wall clock to compare with, as in a what-if)."""
    in_policy_currency(event, policy)
    if not isinstance(key, _Unkeyed):
        check_key(key, event.customer_id)
    if wall is not None:
        reject_future(event, wall, max_future)


def reject_future(event: Event, wall: int, tolerance: int) -> None:
    """An event dated further ahead of the wall clock than `tolerance` would drag the clock of
    every customer forward with it: it is rejected instead."""
    if event.at > wall + tolerance:
        raise InvalidEventError(f"occurred_at {format_instant(event.at)} is "
                                f"in the future (now {format_instant(wall)})", "future_timestamp")


def check_key(key: bytes | None, customer_id: str) -> None:
    """Input must be keyed by customer id, or one customer's state splits across partitions."""
    if key is None or key != customer_id.encode():
        shown = key.decode(errors="replace") if key is not None else None
        raise InvalidEventError(f"message key {shown!r} is not the customer_id "
                                f"{customer_id!r}", "wrong_key")
