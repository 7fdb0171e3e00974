"""Replays time-ordered events for many customers through the engine; pure, no I/O.

Customers whose decision can change by time alone sit in a heap keyed by that instant, so moving
the clock forward costs only the customers that are due, never a scan of everyone.
"""

from __future__ import annotations

from collections.abc import Iterable

from models.events import Event
from models.instants import to_micros
from models.outputs import OutputEvent
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.due_index import DueIndex
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
        self._due = DueIndex()
        for state in self.states.values():
            self._due.schedule(0, state.next_change_at, state.customer_id)
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
        while (entry := self._due.pop_next(0, now)) is not None:
            due, customer = entry
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
        if previous is None or previous.next_change_at != state.next_change_at:
            self._due.schedule(0, state.next_change_at, customer)
