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

from models.events import Event
from models.outputs import Output
from models.state import CustomerState
from rules import relative
from rules.admission import admit
from rules.compiled import CompiledPolicy
from rules.engine import Failed, refresh
from rules.partition import Partition
from rules.relative import Population, snapshot


def event_order(event: Event) -> tuple[int, str, str]:
    """Sort key for replay: event time, ties broken by content so input order never matters."""
    return event.at, event.event_id, event.customer_id


class Replay:
    """The state of every customer, fed events in event-time order: one partition
    (rules/partition.py) over an in-memory store, with its own population snapshots."""

    def __init__(self, policy: CompiledPolicy, states: Iterable[CustomerState] = (),
                 population: Population | None = None, refreshing: bool = True,
                 wall: int | None = None, max_future: int = 0) -> None:
        """`population` is the snapshot to start from; `refreshing=False` holds it fixed.
        `wall` and `max_future` are the wall clock and tolerance of admission's future check
        (rules/admission.py; wall None: no such check)."""
        self.policy = policy
        self.wall, self.max_future = wall, max_future
        self.states: dict[str, CustomerState] = {s.customer_id: s for s in states}
        self._customers = Partition(0, policy, self.states, population=population)
        for state in self.states.values():
            self._customers.due.schedule(state.next_change_at, state.customer_id)
        self.clock: int | None = None
        self._every = policy.refresh if refreshing else None
        self._refreshed = None if population is None else population.taken_at
        self._bases: dict[str, tuple[CustomerState, dict]] = {}
        # decisions the policy failed to make, for the caller to dead-letter (take_failed)
        self._failed: list[tuple[Failed, Event | None]] = []
        self._outputs: list[Output] = []

    @property
    def population(self) -> Population | None:
        return self._customers.population

    def feed(self, event: Event) -> list[Output]:
        """Apply one event after every change due by its time. InvalidEventError if it is not
        admitted; one the engine refuses (a full customer) or the policy fails on is not applied
        and waits in take_failed, with the outputs of the time that passed returned."""
        # before time moves, so a rejection loses nothing
        admit(event, self.policy, wall=self.wall, max_future=self.max_future)
        t = event.at
        self._pass_time(t, refresh_at_now=False)
        self._customers.event(event, t)
        return self._take()

    def take_failed(self) -> list[tuple[Failed, Event | None]]:
        """The decisions not made since the last call, with the event each failed on (None: a
        time-driven decision; see rules.engine.wake and refresh)."""
        failed, self._failed = self._failed, []
        return failed

    def advance_to(self, now: int) -> list[Output]:
        """Let time pass up to `now` for every customer with a time-driven change due, and
        retake the population snapshot at every refresh boundary up to `now` (inclusive)."""
        self._pass_time(now, refresh_at_now=True)
        return self._take()

    def _take(self) -> list[Output]:
        """The outputs since the last call."""
        self._sync()
        outputs, self._outputs = self._outputs, []
        return outputs

    def _sync(self) -> None:
        """Take the partition's effects: the changed states into `states`."""
        effects = self._customers.take()
        for customer, state in effects.states.items():
            if state is None:
                self.states.pop(customer, None)
                self._bases.pop(customer, None)
            else:
                self.states[customer] = state
        self._failed += [(d.failed, d.event) for d in effects.dead_letters if d.failed]
        self._outputs += effects.outputs

    def _pass_time(self, now: int, refresh_at_now: bool) -> None:
        customers = self._customers
        if self._every is not None:
            if self._refreshed is None:  # the first boundary is the first at or after now
                self._refreshed = (now - 1) // self._every * self._every
            while (boundary := self._refreshed + self._every) < now + refresh_at_now:
                customers.advance(boundary)
                self._refresh(boundary)
        customers.advance(now)
        self.clock = now if self.clock is None else max(self.clock, now)

    def _refresh(self, at: int) -> None:
        """Retake the snapshot at `at` from every customer and move each one to it."""
        self._sync()  # the states up to now, to take the snapshot from
        policy, customers = self.policy, sorted(self.states)
        values = [self._base_values(c, at) for c in customers]
        new = snapshot(at, policy.relative_bases, values)
        old, self._customers.population, self._refreshed = self.population, new, at
        changed = np.full(len(customers), bool(policy.time_bases))
        for metric in policy.relative:
            column = np.array([float(v[metric.base]) for v in values])
            changed |= relative.changed(metric, column, old, new,
                                        policy.thresholds.get(metric.name))
        for customer in (c for c, moved in zip(customers, changed, strict=True) if moved):
            before = self.states[customer]
            state, outputs, failed = refresh(before, policy, old, new, changed=True)
            self._customers.failed(failed)
            self._customers.emit(customer, before, state, outputs)

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
