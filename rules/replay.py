"""Replays time-ordered events for many customers through the engine; pure, no I/O.

Customers whose decision can change by time alone sit in a heap keyed by that instant, so moving
the clock forward costs only the customers that are due, never a scan of everyone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable

from models.events import Event
from models.instants import to_micros
from models.outputs import OutputEvent
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.engine import accept, advance, apply


def event_order(event: Event) -> tuple[int, str, str]:
    """Sort key for replay: event time, ties broken by content so input order never matters."""
    return to_micros(event.occurred_at), event.event_id, event.customer_id


class Replay:
    """The state of every customer, fed events in event-time order."""

    def __init__(self, policy: CompiledPolicy,
                 states: Iterable[CustomerState] = ()) -> None:
        self.policy = policy
        self.states: dict[str, CustomerState] = {s.customer_id: s for s in states}
        self._due = [(s.next_change_at, s.customer_id) for s in self.states.values()
                     if s.next_change_at is not None]
        heapq.heapify(self._due)
        self.clock: int | None = None

    def feed(self, event: Event) -> list[OutputEvent]:
        """Apply one event after every change due by its time; InvalidEventError if rejected."""
        accept(event, self.policy)  # before time moves, so a rejection loses nothing
        outputs = self.advance_to(to_micros(event.occurred_at))
        new, more = apply(self.states.get(event.customer_id), event, self.policy)
        self._store(event.customer_id, new)
        return outputs + more

    def advance_to(self, now: int) -> list[OutputEvent]:
        """Let time pass up to `now` for every customer with a time-driven change due."""
        outputs: list[OutputEvent] = []
        while self._due and self._due[0][0] <= now:
            due, customer = heapq.heappop(self._due)
            state = self.states.get(customer)
            if state is None or state.next_change_at != due:
                continue  # stale entry: the customer was re-evaluated or erased since
            state, more = advance(state, self.policy, due)
            outputs += more
            self._store(customer, state)
        self.clock = now if self.clock is None else max(self.clock, now)
        return outputs

    def _store(self, customer: str, state: CustomerState | None) -> None:
        if state is None:
            self.states.pop(customer, None)
            return
        previous = self.states.get(customer)
        self.states[customer] = state
        due = state.next_change_at
        if due is not None and (previous is None or previous.next_change_at != due):
            heapq.heappush(self._due, (due, customer))
