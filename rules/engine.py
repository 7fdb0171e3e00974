"""The pure tier engine: `apply(state, event, policy)` and `advance(state, policy, now)`.

Both return the new state and the output events. Time is always an argument (event time), so live
processing, replay, backfill and what-if all give the same decisions for the same events. So is
the population snapshot that relative metrics (`<metric>_pct`, `<metric>_share_above`) are placed
in: None means no snapshot yet (see rules/relative.py); `refresh` moves a customer to a new one.
"""

from __future__ import annotations

from operator import attrgetter
from typing import NamedTuple

import numpy as np
from msgspec.structs import replace

from models import stored
from models.errors import InvalidEventError, PolicyEvaluationError
from models.events import (
    CustomerErased,
    Event,
    Interaction,
    OrderCancelled,
    OrderCompleted,
    OrderRefunded,
)
from models.instants import MICROS_PER_DAY, format_instant
from models.outputs import Output
from models.state import CustomerState, Order, Touch
from rules import decisions, followup, history, relative
from rules.compiled import CompiledPolicy
from rules.relative import Population

Result = tuple[CustomerState | None, list[Output]]
# After the policy failed on a time-driven decision, it is tried again after 1, 2, 4, ... 64
# days of event time: a lasting error costs a few dead letters a year, never one a day.
RETRY_AFTER_POLICY_ERROR = MICROS_PER_DAY
MOST_RETRY_DOUBLINGS = 6
# A stored state (models/stored.py) stays under Kafka's default 1 MB record limit. States of
# fewer items than ITEMS_ALWAYS_FIT fit whatever their ids (an item is at most ~1.1 KB: two ids
# of 128 characters of 4 bytes each), so only larger ones are measured.
STATE_BYTES_MAX = 900_000
ITEMS_ALWAYS_FIT = 700


def apply(state: CustomerState | None, event: Event, policy: CompiledPolicy,
          population: Population | None = None) -> Result:
    """Fold one event into the customer's state; a redelivered event changes nothing."""
    t = event.at
    if isinstance(event, CustomerErased):  # time first passes up to the erasure, as for any event
        return None, advance(state, policy, t, population)[1] if state is not None else []
    amount = in_policy_currency(event, policy)
    outputs: list[Output] = []
    if state is None:
        state = CustomerState(customer_id=event.customer_id, created_at=t, clock=t)
        fresh = True
    else:
        state, outputs = advance(state, policy, t, population)
        fresh = False
    ingested = _ingest(state, event, amount, t, policy)
    if ingested is None and not fresh:
        return state, outputs
    if ingested is not None:
        ingested = history.fold(ingested, history.cut(max(state.clock, t),
                                                      policy.exact_history))
        _check_room(ingested, state, policy)
    state, more = decisions.evaluate(ingested or state, policy, max(state.clock, t), population)
    return state, outputs + more


def advance(state: CustomerState, policy: CompiledPolicy, now: int,
            population: Population | None = None) -> tuple[CustomerState, list[Output]]:
    """Let time pass up to `now` (inclusive): every time-driven change happens at its instant."""
    outputs: list[Output] = []
    while state.next_change_at is not None and state.next_change_at <= now:
        state, more = decisions.evaluate(state, policy, state.next_change_at, population)
        outputs += more
    return state, outputs


class Failed(NamedTuple):
    """A decision not made, to be dead-lettered and counted: the policy failed (on a time-driven
    decision or an event), or the engine refused an event (InvalidEventError: customer_full,
    conflicting_duplicate)."""

    customer_id: str
    at: int
    error: PolicyEvaluationError | InvalidEventError

    def record(self) -> dict[str, str]:
        """The dead letter of a failed time-driven decision (it has no input message)."""
        return {"customer_id": self.customer_id, "at": format_instant(self.at),
                "reason": "policy_error", "error": str(self.error)}


def wake(state: CustomerState, policy: CompiledPolicy, now: int,
         population: Population | None = None
         ) -> tuple[CustomerState, list[Output], list[Failed]]:
    """`advance` for a customer woken by time, which must never be lost: when a condition fails
    at run time (a policy bug), the changes before that instant are kept and the customer is
    decided again later (after 1, 2, 4, ... 64 days of event time, counted in the state, so live
    equals replay); each failure is returned for the caller to dead-letter."""
    outputs: list[Output] = []
    failed: list[Failed] = []
    while state.next_change_at is not None and state.next_change_at <= now:
        at = state.next_change_at
        try:
            state, more = decisions.evaluate(state, policy, at, population)
        except PolicyEvaluationError as error:
            failed.append(Failed(state.customer_id, at, error))
            delay = RETRY_AFTER_POLICY_ERROR << min(state.failures, MOST_RETRY_DOUBLINGS)
            state = replace(state, next_change_at=at + delay, failures=state.failures + 1)
            continue
        outputs += more
    return state, outputs, failed


def refresh(state: CustomerState, policy: CompiledPolicy, old: Population | None,
            new: Population, changed: bool | None = None) -> tuple[
        CustomerState, list[Output], list[Failed]]:
    """Move the customer from snapshot `old` to `new` (taken at new.taken_at, not before its
    clock): time passes up to then under `old` (as in `wake`), and the customer is decided again
    under `new` unless no relative metric compares differently (the same decision, skipped).
    `changed` is that answer when the caller worked it out for many customers at once. A
    decision the policy fails on is returned as failed; the customer keeps its state."""
    t = new.taken_at
    state, outputs, failed = wake(state, policy, t, old)
    if changed is None:
        changed = relative_changed(state, policy, old, new)
    if not changed:
        return state, outputs, failed
    at = max(state.clock, t)
    try:
        state, more = decisions.evaluate(state, policy, at, new)
    except PolicyEvaluationError as error:
        return state, outputs, [*failed, Failed(state.customer_id, at, error)]
    return state, outputs + more, failed


def relative_changed(state: CustomerState, policy: CompiledPolicy, old: Population | None,
                     new: Population) -> bool:
    if policy.time_bases:  # their next crossing depends on the snapshot: always look again
        return True
    # the values the customer is decided on: at its own clock when that is past the snapshot (a
    # worker whose partition ran ahead of the population decided it there, in an older one)
    values = policy.base_values(state, max(state.clock, new.taken_at))
    return any(bool(relative.changed(r, np.array([float(values[r.base])]), old, new,
                                     policy.thresholds.get(r.name))[0])
               for r in policy.relative)


def in_policy_currency(event: Event, policy: CompiledPolicy) -> float | None:
    """The event's amount in the policy currency (None: a full refund, whose amount is the rest
    of its order); InvalidEventError if it has no rate."""
    if not isinstance(event, OrderCompleted | OrderRefunded):
        return 0.0
    if event.amount is None or event.currency is None:
        return None
    rate = policy.rates.get(event.currency)
    if rate is None:
        raise InvalidEventError(f"currency {event.currency} has no rate in policy "
                                f"{policy.name}; known: {', '.join(sorted(policy.rates))}",
                                reason="unknown_currency")
    return event.amount * rate


def _ingest(state: CustomerState, event: OrderCompleted | OrderRefunded | OrderCancelled |
            Interaction, amount: float | None, t: int, policy: CompiledPolicy
            ) -> CustomerState | None:
    """The state with the event's facts added, or None when the event adds nothing new."""
    _check_event_id(state, event)
    if isinstance(event, Interaction):
        touched = _add_touch(state, event, t, policy)
        touched = _latest_of_kind(touched or state, event, t, policy.latest_kinds) or touched
        return followup.contacted(touched or state, event, t, policy.contacts) or touched
    index, order = _find(state.orders, event.order_id)
    if order is None or (isinstance(event, OrderCompleted) and order.amount is None):
        _check_history(state, event, t, policy)  # (a refund's stub holds no completion)
    if isinstance(event, OrderCompleted):
        assert amount is not None
        given = f"{event.amount!r} {event.currency}"
        if order is not None and order.amount is not None:
            # (a state kept before `given` was compares the amount in the policy currency)
            alike = order.given == given if order.given else order.amount == amount
            if order.at != t or not alike:
                raise _conflict(event, f"order {order.order_id!r} was completed at "
                                f"{format_instant(order.at)} for {order.given or order.amount}, "
                                f"this event says {format_instant(t)} and {given}")
            return None
        new = Order(event.order_id, t, amount, 0.0, False, (), event.event_id, given) \
            if order is None else \
            order._replace(at=t, amount=amount, event_id=event.event_id, given=given)
    elif isinstance(event, OrderRefunded):
        order = order or Order(event.order_id, t, None, 0.0, False, ())
        if event.event_id in order.refund_ids:
            return None
        if amount is None:  # a full refund: what is left of the order
            if order.amount is None:
                raise InvalidEventError(
                    f"a full refund (no amount) of order {event.order_id!r}, whose completion "
                    f"customer {state.customer_id!r} does not hold (not seen, or folded into "
                    "totals): send the refund's amount", reason="unknown_refund_amount")
            amount = max(order.amount - order.refunded, 0.0)
        new = order._replace(refunded=order.refunded + amount, touched=max(order.touched, t),
                             refund_ids=(*order.refund_ids, event.event_id))
    else:
        assert isinstance(event, OrderCancelled)
        order = order or Order(event.order_id, t, None, 0.0, False, ())
        if order.cancelled:
            return None
        new = order._replace(cancelled=True, cancel_id=event.event_id,
                             touched=max(order.touched, t))
    orders = (*state.orders, new) if index is None else \
        (*state.orders[:index], new, *state.orders[index + 1:])
    return replace(state, orders=orders)


def _check_event_id(state: CustomerState, event: Event) -> None:
    """An event id names one fact: a redelivery repeats it exactly; the same id on another
    fact is a conflict (conflicting_duplicate), never applied or dropped silently. Interactions
    compare their content in _add_touch; a refund's amount is not kept, so a refund redelivered
    with another amount counts once, as first seen."""
    same = event.event_id
    for order in state.orders:
        if order.event_id == same and not (
                isinstance(event, OrderCompleted) and event.order_id == order.order_id):
            raise _conflict(event, f"event {same!r} completed order {order.order_id!r}")
        if same in order.refund_ids and not (
                isinstance(event, OrderRefunded) and event.order_id == order.order_id):
            raise _conflict(event, f"event {same!r} refunded order {order.order_id!r}")
        if order.cancel_id == same and not (
                isinstance(event, OrderCancelled) and event.order_id == order.order_id):
            raise _conflict(event, f"event {same!r} cancelled order {order.order_id!r}")
    if not isinstance(event, Interaction) and any(x.event_id == same for x in state.touches):
        raise _conflict(event, f"event {same!r} was an interaction")


def _check_history(state: CustomerState, event: Event, t: int, policy: CompiledPolicy) -> None:
    """InvalidEventError (beyond_history) for an event of an order the state does not hold,
    placed before the customer's exact history: a redelivery there can no longer be told from
    a new event (rules/history.py)."""
    start = max(state.folded.until, history.cut(max(state.clock, t), policy.exact_history))
    if t < start:
        raise InvalidEventError(
            f"{event.type} at {format_instant(t)} is of an order not held and before the "
            f"exact history of customer {state.customer_id!r}, which starts "
            f"{format_instant(start)} (older orders are folded into totals, so a redelivery "
            "can no longer be told from a new event); policy limits.redelivery_horizon sets "
            "how long orders stay exact", reason="beyond_history")


def _conflict(event: Event, what: str) -> InvalidEventError:
    return InvalidEventError(f"{what}: a redelivery must repeat its event exactly, this one "
                             f"({event.type}) differs", "conflicting_duplicate")


def _check_room(ingested: CustomerState, state: CustomerState, policy: CompiledPolicy) -> None:
    """InvalidEventError (customer_full) if the state grown by the event would hold more items
    than the policy allows, or be too large a Kafka record. A state that did not grow (a bound
    lowered since) is let through."""
    items = _items(ingested)
    if items <= min(policy.customer_items, ITEMS_ALWAYS_FIT):
        return  # the common case: one count, nothing measured
    held = _items(state)
    if items <= held:
        return
    if items > policy.customer_items:
        why = (f"holds {held} orders, refunds and interactions, the most one "
               f"customer's state may hold (policy limits.customer_items)")
    elif items > ITEMS_ALWAYS_FIT and \
            len(stored.encode(0, ingested)) > STATE_BYTES_MAX:
        why = f"state would pass {STATE_BYTES_MAX:,} bytes (its ids are long)"
    else:
        return
    raise InvalidEventError(f"customer {state.customer_id!r} {why}; the event is not applied",
                            reason="customer_full")


def _items(state: CustomerState) -> int:
    return len(state.orders) + len(state.touches) + \
        sum(map(len, map(_refund_ids, state.orders)))


_refund_ids = attrgetter("refund_ids")


def _find(orders: tuple[Order, ...], order_id: str) -> tuple[int | None, Order | None]:
    for index, order in enumerate(orders):
        if order.order_id == order_id:
            return index, order
    return None, None


def stale(state: CustomerState | None, event: Event, policy: CompiledPolicy) -> bool:
    """An interaction at or before the start of the customer's largest window counts in no
    window: the engine ignores it (orders always count, in the lifetime metrics), unless it is
    a contact newer than the customer's latest (rules/followup.py), or the latest of a kind a
    days_since_last_<kind> metric needs."""
    return isinstance(event, Interaction) and state is not None and \
        _forgotten(state, event, policy) and \
        followup.contacted(state, event, event.at, policy.contacts) is None and \
        _latest_of_kind(state, event, event.at, policy.latest_kinds) is None


def _forgotten(state: CustomerState, event: Interaction, policy: CompiledPolicy) -> bool:
    """Whether the interaction is at or before the start of the customer's largest window."""
    return event.at <= state.clock - policy.largest_window


def _latest_of_kind(state: CustomerState, event: Interaction, t: int, kinds: frozenset[str]
                    ) -> CustomerState | None:
    """The state with the interaction as the latest of its kind, for a kind whose latest
    instant the policy needs (days_since_last_<kind>); None when it is not newer."""
    if event.kind not in kinds:
        return None
    latest = dict(state.latest)
    if latest.get(event.kind, t - 1) >= t:
        return None
    latest[event.kind] = t
    return replace(state, latest=tuple(sorted(latest.items())))


def _add_touch(state: CustomerState, event: Interaction, t: int,
               policy: CompiledPolicy) -> CustomerState | None:
    if _forgotten(state, event, policy):
        return None  # too old to count in any window
    seen = next((x for x in state.touches if x.event_id == event.event_id), None)
    if seen is not None:
        if (seen.at, seen.kind) != (t, event.kind):
            raise _conflict(event, f"event {event.event_id!r} was a {seen.kind} at "
                            f"{format_instant(seen.at)}")
        return None  # already seen
    forgotten = max(state.clock, t) - policy.largest_window  # at or before: counts nowhere
    kept = tuple(x for x in state.touches if x.at > forgotten)
    return replace(state, touches=(*kept, Touch(event.event_id, t, event.kind)))
