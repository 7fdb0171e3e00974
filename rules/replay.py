"""Replays time-ordered events for many customers through the engine; pure, no I/O.

Customers whose decision can change by time alone sit in a heap keyed by that instant, so moving
the clock forward costs only the customers that are due, never a scan of everyone.

A policy with relative metrics has its population snapshot retaken at every multiple of its
`relative.refresh` (since the epoch, so UTC-aligned) in event time: at the end of that instant,
after its events, from the exact metric values of every customer then; every customer is then
looked at again (O(customers) per refresh) and the snapshot is held fixed until the next one.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from models.errors import InvalidEventError, PolicyEvaluationError
from models.events import Event
from models.instants import to_micros
from models.outputs import OutputEvent
from models.state import CustomerState
from rules import relative
from rules.admission import admit
from rules.compiled import CompiledPolicy
from rules.due_index import DueIndex
from rules.engine import Failed, apply, refresh, wake
from rules.relative import Population, snapshot


def event_order(event: Event) -> tuple[int, str, str]:
    """Sort key for replay: event time, ties broken by content so input order never matters."""
    return to_micros(event.occurred_at), event.event_id, event.customer_id


class Replay:
    """The state of every customer, fed events in event-time order."""

    def __init__(self, policy: CompiledPolicy, states: Iterable[CustomerState] = (),
                 population: Population | None = None, refreshing: bool = True,
                 wall: int | None = None, max_future: int = 0) -> None:
        """`population` is the snapshot to start from; `refreshing=False` holds it fixed.
        `wall` and `max_future` are the wall clock and tolerance of admission's future check
        (rules/admission.py; wall None: no such check)."""
        self.policy = policy
        self.wall, self.max_future = wall, max_future
        self.states: dict[str, CustomerState] = {s.customer_id: s for s in states}
        self._due = DueIndex()
        for state in self.states.values():
            self._due.schedule(0, state.next_change_at, state.customer_id)
        self.clock: int | None = None
        self.population = population
        self._every = policy.refresh if refreshing else None
        self._refreshed = None if population is None else population.taken_at
        self._bases: dict[str, tuple[CustomerState, dict]] = {}
        # decisions the policy failed to make, for the caller to dead-letter (take_failed)
        self._failed: list[tuple[Failed, Event | None]] = []

    def feed(self, event: Event) -> list[OutputEvent]:
        """Apply one event after every change due by its time. InvalidEventError if it is not
        admitted; one the engine refuses (a full customer) or the policy fails on is not applied
        and waits in take_failed, with the outputs of the time that passed returned."""
        # before time moves, so a rejection loses nothing
        admit(event, self.policy, wall=self.wall, max_future=self.max_future)
        t = to_micros(event.occurred_at)
        outputs = self._pass_time(t, refresh_at_now=False)
        try:
            new, more = apply(self.states.get(event.customer_id), event, self.policy,
                              self.population)
        except (PolicyEvaluationError, InvalidEventError) as error:  # dead-lettered, as live
            self._failed.append((Failed(event.customer_id, t, error), event))
            return outputs
        self._store(event.customer_id, new)
        return outputs + more

    def take_failed(self) -> list[tuple[Failed, Event | None]]:
        """The decisions not made since the last call, with the event each failed on (None: a
        time-driven decision; see rules.engine.wake and refresh)."""
        failed, self._failed = self._failed, []
        return failed

    def advance_to(self, now: int) -> list[OutputEvent]:
        """Let time pass up to `now` for every customer with a time-driven change due, and
        retake the population snapshot at every refresh boundary up to `now` (inclusive)."""
        return self._pass_time(now, refresh_at_now=True)

    def _pass_time(self, now: int, refresh_at_now: bool) -> list[OutputEvent]:
        outputs: list[OutputEvent] = []
        if self._every is not None:
            if self._refreshed is None:  # the first boundary is the first at or after now
                self._refreshed = (now - 1) // self._every * self._every
            while (boundary := self._refreshed + self._every) < now + refresh_at_now:
                outputs += self._advance_customers(boundary)
                outputs += self._refresh(boundary)
        outputs += self._advance_customers(now)
        self.clock = now if self.clock is None else max(self.clock, now)
        return outputs

    def _advance_customers(self, now: int) -> list[OutputEvent]:
        outputs: list[OutputEvent] = []
        while (entry := self._due.pop_next(0, now)) is not None:
            due, customer = entry
            state = self.states.get(customer)
            if state is None or state.next_change_at != due:
                continue  # stale entry: the customer was re-evaluated or erased since
            state, more, failed = wake(state, self.policy, due, self.population)
            self._failed += [(f, None) for f in failed]
            outputs += more
            self._store(customer, state)
        return outputs

    def _refresh(self, at: int) -> list[OutputEvent]:
        """Retake the snapshot at `at` from every customer and move each one to it."""
        policy, customers = self.policy, sorted(self.states)
        values = [self._base_values(c, at) for c in customers]
        new = snapshot(at, policy.relative_bases, values)
        old, self.population, self._refreshed = self.population, new, at
        changed = np.full(len(customers), bool(policy.time_bases))
        for metric in policy.relative:
            column = np.array([float(v[metric.base]) for v in values])
            changed |= relative.changed(metric, column, old, new,
                                        policy.thresholds.get(metric.name))
        outputs: list[OutputEvent] = []
        for customer in (c for c, moved in zip(customers, changed, strict=True) if moved):
            state, more, failed = refresh(self.states[customer], policy, old, new, changed=True)
            self._failed += [(f, None) for f in failed]
            outputs += more
            self._store(customer, state)
        return outputs

    def _base_values(self, customer: str, at: int) -> dict:
        """The customer's base metric values at `at`; reused while its state is unchanged, as
        every change of a (non-time) base wakes the customer, which makes a new state."""
        state = self.states[customer]
        cached = self._bases.get(customer)
        if cached is not None and cached[0] is state and not self.policy.time_bases:
            return cached[1]
        values = self.policy.base_values(state, at)
        self._bases[customer] = (state, values)
        return values

    def _store(self, customer: str, state: CustomerState | None) -> None:
        if state is None:
            self.states.pop(customer, None)
            self._bases.pop(customer, None)
            return
        previous = self.states.get(customer)
        self.states[customer] = state
        if previous is None or previous.next_change_at != state.next_change_at:
            self._due.schedule(0, state.next_change_at, customer)
