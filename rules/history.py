"""A customer's order history: each order from `folded.until` on, totals before it.

Only windows need orders one by one; the lifetime metrics and the lifetime-value summary need
counts, sums and the first and latest instants. So an order placed more than the largest window
plus the policy's redelivery horizon (`limits.redelivery_horizon`) before the customer's clock
is folded into `CustomerState.folded`, and its ids are dropped: a state holds what its windows
and redeliveries need, never its lifetime.

An event of an order the state does not hold, placed before its exact history, can no longer be
told from a redelivery: it is refused (beyond_history, rules/engine.py). An order refunded or
cancelled lately stays, with every later one, until that event too is past the horizon, so a
redelivered refund is always recognised. A refund of an order the state does not hold, by a
customer with folded orders, may be of a folded one: until its order's completion arrives it
lowers the folded sums (never below zero), and it is folded so once past the horizon. A
cancellation of a folded order changes nothing: its amount is no longer known.
"""

from __future__ import annotations

from operator import attrgetter

from msgspec.structs import replace

from models.instants import MICROS_PER_DAY
from models.state import CustomerState, Folded, Order

_placed = attrgetter("at")


def cut(clock: int, exact_history: int) -> int:
    """The start of the UTC day before which orders are folded, for a customer at `clock`."""
    return (clock - exact_history) // MICROS_PER_DAY * MICROS_PER_DAY


def fold(state: CustomerState, before: int) -> CustomerState:
    """The state with its orders placed before `before` folded into its totals, up to the day
    of the first order refunded or cancelled since: that order stays, with the ids that tell
    its refunds' redeliveries, and so do all after it, so folded orders all precede the rest."""
    before = min([before, *(o.at // MICROS_PER_DAY * MICROS_PER_DAY
                            for o in state.orders if o.touched >= before)])
    old = [o for o in state.orders if o.at < before]
    if not old:
        return state
    folded = state.folded
    counted = sorted((o for o in old if o.counts), key=_placed)
    if not counted and not folded.orders:  # refunds and cancellations of orders never seen
        return replace(state, orders=tuple(o for o in state.orders if o.at >= before),
                       folded=folded._replace(until=max(folded.until, before)))
    first = folded.first_at if folded.orders else counted[0].at
    days = {o.at // MICROS_PER_DAY for o in counted}
    nets = [o.net for o in counted]
    # refunds of orders not held count against folded orders only once there are some (as in
    # `revenue`): before, they were of orders never seen
    refunds = [-o.refunded for o in _unmatched(old)] if folded.orders else []
    new = Folded(
        until=max(folded.until, before), orders=folded.orders + len(counted),
        days=folded.days + len(days), first_at=first,
        last_at=counted[-1].at if counted else folded.last_at,
        revenue=partials([*folded.revenue, *nets, *refunds]),
        repeat=partials([*folded.repeat, *(o.net for o in counted
                                           if o.at // MICROS_PER_DAY != first // MICROS_PER_DAY),
                         *refunds]))
    return replace(state, orders=tuple(o for o in state.orders if o.at >= before), folded=new)


class Purchases:
    """A customer's purchases (a plain class, built in C when compiled, as metrics.Window)."""

    def __init__(self, first_at: int, last_at: int, days: int) -> None:
        self.first_at, self.last_at = first_at, last_at  # the first and latest counted order
        self.days = days  # distinct UTC purchase days


def purchases(state: CustomerState, orders: list) -> Purchases | None:
    """The customer's purchases over its folded orders and `orders` (the held ones that count,
    oldest first); None without any. Folded and held orders never share a day."""
    first_last = span(state, orders)
    if first_last is None:
        return None
    return Purchases(first_last[0], first_last[1],
                     state.folded.days + len({o.at // MICROS_PER_DAY for o in orders}))


def span(state: CustomerState, orders: list) -> tuple[int, int] | None:
    """The first and the latest counted order's instants (as `purchases`), None without any."""
    folded = state.folded
    if not orders and not folded.orders:
        return None
    return (folded.first_at if folded.orders else orders[0].at,
            orders[-1].at if orders else folded.last_at)


def revenue(state: CustomerState) -> tuple[float, ...]:
    """Partial sums of the folded net revenue, and the refunds that may be of folded orders."""
    return _less_unmatched(state, state.folded.revenue)


def repeat(state: CustomerState) -> tuple[float, ...]:
    """The same for the folded orders after the first purchase day."""
    return _less_unmatched(state, state.folded.repeat)


def _less_unmatched(state: CustomerState, sums: tuple[float, ...]) -> tuple[float, ...]:
    """`sums` and the held refunds of orders not held, negated. Nothing is clamped before the
    total (metrics.py clamps it at zero), so when a refund folds never changes it."""
    if not state.folded.orders:
        return sums
    return (*sums, *(-o.refunded for o in _unmatched(state.orders)))


def _unmatched(orders: list[Order] | tuple[Order, ...]) -> list[Order]:
    """Refunds of orders whose completion the state does not hold (cancelled or not: the
    cancellation of a folded order changes nothing)."""
    return [o for o in orders if o.amount is None and o.refunded]


def partials(values: list[float]) -> tuple[float, ...]:
    """Non-overlapping floats whose exact sum is that of `values` (Shewchuk's algorithm, as
    math.fsum runs it), so fsum of them and more values rounds as fsum of all the values."""
    result: list[float] = []
    for x in values:
        i = 0
        for y in result:
            if abs(x) < abs(y):
                x, y = y, x
            high = x + y
            low = y - (high - x)
            if low:
                result[i] = low
                i += 1
            x = high
        result[i:] = [x]
    return tuple(p for p in result if p)
