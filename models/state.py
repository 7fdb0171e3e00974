"""Per-customer state: the facts the metrics are folded from, plus the tier machine's memory."""

from __future__ import annotations

from typing import NamedTuple

import msgspec


class Order(NamedTuple):
    """An order as seen so far; `amount` is None while only a refund or cancellation arrived."""

    order_id: str
    at: int                     # placed, microseconds since the epoch
    amount: float | None        # in the policy currency
    refunded: float
    cancelled: bool
    refund_ids: tuple[str, ...]  # event ids of refunds applied, so a redelivery counts once
    event_id: str = ""           # of the completion ("" before it, or in a state kept before)
    given: str = ""              # the completion's amount and currency as sent, e.g. "12.5 USD"
    cancel_id: str = ""          # event id of the cancellation
    touched: int = 0             # when its latest refund or cancellation happened (0: none)

    @property
    def counts(self) -> bool:
        return self.amount is not None and not self.cancelled

    @property
    def net(self) -> float:
        return max((self.amount or 0.0) - self.refunded, 0.0)


class Touch(NamedTuple):
    """One interaction inside the largest window."""

    event_id: str
    at: int
    kind: str


class Folded(NamedTuple):
    """The counted orders placed before `until`, folded into totals; their ids are no longer
    kept (rules/history.py). `revenue` and `repeat` are exact partial sums (as math.fsum keeps
    them) of the folded orders' net revenue, and of that of those after the first purchase
    day, so totals over folded and exact orders round exactly as over the orders themselves."""

    until: int = 0        # the start of a UTC day; 0: nothing folded yet
    orders: int = 0
    days: int = 0         # distinct UTC purchase days
    first_at: int = 0     # the first and the latest folded order
    last_at: int = 0
    revenue: tuple[float, ...] = ()
    repeat: tuple[float, ...] = ()


class Transition(NamedTuple):
    """One of the customer's latest output events, kept for lookups ("why is this customer B?")."""

    type: str
    at: int
    from_tier: str | None
    to_tier: str | None
    rule: str


RECENT_TRANSITIONS = 5


class Place(NamedTuple):
    """The customer's class on one of the policy's further axes, with that axis' hysteresis."""

    axis: str
    name: str                   # the class
    since: int
    downgrade_due: int | None = None
    downgrade_warned: bool = False


class CustomerState(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Everything the engine knows about one customer. Instants are epoch microseconds.

    A msgspec struct, not a pydantic model: the engine makes a new one at every change, and a
    struct is built, copied (`msgspec.structs.replace`) and decoded several times faster, with
    no validation: its writers are the engine and models/stored.py."""

    customer_id: str
    created_at: int
    clock: int
    orders: tuple[Order, ...] = ()   # placed from folded.until on
    folded: Folded = Folded()
    touches: tuple[Touch, ...] = ()
    tier: str | None = None
    tier_since: int | None = None
    downgrade_due: int | None = None
    downgrade_warned: bool = False
    churn_rule: str | None = None
    churn_since: int | None = None
    sequence: int = 0
    next_change_at: int | None = None
    recent: tuple[Transition, ...] = ()   # the latest RECENT_TRANSITIONS output events
    failures: int = 0  # time-driven decisions the policy failed on in a row (rules.engine.wake)
    # follow-up (rules/followup.py): the latest contact, its owner, the open follow-up
    contact_at: int | None = None    # the latest interaction of a counting kind
    owner: str | None = None         # the owner it carried, or an earlier contact's
    followup_due: int | None = None  # the open follow-up fell due then (None: none open)
    followup_from: int | None = None  # contact_at when it opened: a newer contact closes it
    followup_overdue: bool = False   # followup.overdue sent for it
    # per interaction kind a days_since_last_<kind> metric names: its latest instant, by kind
    latest: tuple[tuple[str, int], ...] = ()
    # its class on each of the policy's axes besides the value tier, in the policy's order
    axes: tuple[Place, ...] = ()

    def classes(self) -> dict[str, str]:
        """Its class on each axis, by axis."""
        return {place.axis: place.name for place in self.axes}
