"""One partition's customers, driven by what arrives on the partition; pure, no I/O.

Everything that decides customers runs through `Partition`: the worker hands it each batch it
fetched of a partition (input messages and ticks, in order) and carries out the returned
`Effects` in order; replay (rules/replay.py) feeds it parsed events in event-time order and lets
time pass. Per input message: admission (or a dead letter with its reason), the customer woken
first if a time-driven change of its own is due by the event's instant, then the event applied.
Per tick: the partition's clock (rules/clock.py) moves, and every customer due by it minus the
allowed lateness is woken. States are read through a `Store` once per customer and batch;
every change stays in the effects (the latest state per customer) until the caller stores it.

A policy with relative metrics also exchanges population reports (streams/worker/population.py):
at each refresh boundary the partition reports its customers' base values, and its customers
move to every newer complete population (engine.refresh).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from models.errors import InvalidEventError, PolicyEvaluationError
from models.events import CustomerErased, Event, parse_event
from models.outputs import Output
from models.state import CustomerState
from rules import sketches
from rules.admission import admit
from rules.clock import PartitionClocks
from rules.compiled import CompiledPolicy
from rules.due_index import DueIndex
from rules.engine import Failed, apply, refresh, stale, wake
from rules.relative import Population


class Store(Protocol):
    """Where the partition's customers' states are kept between batches."""

    def get(self, customer_id: str) -> CustomerState | None: ...


class Populations(Protocol):
    """The population reports of every partition (streams/worker/population.Reports)."""

    def latest(self) -> Population | None: ...

    def before(self, population: Population) -> Population | None: ...

    def boundaries(self, partition: int) -> list[int]:
        """The boundaries of the partition's reports as published, newest first."""
        ...

    def publish(self, partition: int, boundary: int, customers: int,
                sketches: dict[str, bytes], again: bool) -> bytes:
        """Take the partition's report (replacing its latest with `again`) and return its
        record for the population topic."""
        ...


@dataclass(slots=True)
class Message:
    """An input record as read from Kafka."""

    topic: str
    offset: int
    key: bytes | None
    value: bytes | None


TICK = None  # in a batch: the partition's time moves on (a tick of the wall clock)


@dataclass(slots=True)
class DeadLetter:
    """An input message not applied (`message`), or a time-driven decision the policy failed
    on (`failed`, no message), with the reason it is counted under."""

    reason: str
    error: str
    message: Message | None = None
    failed: Failed | None = None
    event: Event | None = None  # the parsed event refused, if any


@dataclass
class Effects:
    """What a batch did, for the caller to carry out in this order: outputs and dead letters
    and population reports sent, then `tiers` (the `customer-tiers` record of every customer
    with outputs: its state at its last output, None when erased) and `states` (the latest
    state of every changed customer, None when erased) stored once Kafka has the former."""

    outputs: list[Output] = field(default_factory=list)
    dead_letters: list[DeadLetter] = field(default_factory=list)
    reports: list[bytes] = field(default_factory=list)
    tiers: dict[str, CustomerState | None] = field(default_factory=dict)
    erased_created_at: dict[str, int] = field(default_factory=dict)
    states: dict[str, CustomerState | None] = field(default_factory=dict)
    events: Counter[tuple[str, str, str]] = field(default_factory=Counter)  # topic, type, outcome
    lags: list[int] = field(default_factory=list)  # wall minus event time of applied events, µs
    due_customers: int | None = None  # woken by the last tick; None: no tick


class Partition:
    """The customers of one partition, their due index, clock and population."""

    def __init__(self, partition: int, policy: CompiledPolicy, store: Store, *,
                 lateness: int = 0, idle_after: int | None = None, max_future: int = 0,
                 populations: Populations | None = None, sketch_k: int = 0,
                 population: Population | None = None) -> None:
        """`lateness`, `idle_after` and `max_future` in µs (idle_after None: the clock never
        follows the wall clock, as in replay). `population` is the one decided in without
        `populations` (replay's own snapshot)."""
        self.partition, self.policy, self.store = partition, policy, store
        self.lateness, self.max_future = lateness, max_future
        self.clocks = PartitionClocks(idle_after if idle_after is not None else 1 << 62)
        self.due = DueIndex()
        self.tiers: Counter[str] = Counter()  # customers per tier
        self.classes: Counter[tuple[str, str]] = Counter()  # per (axis, class)
        self.populations, self.sketch_k = populations, sketch_k
        self.population = population
        self.members: set[str] = set()  # relative metrics: the partition's customers
        self.moved: Population | None = None  # the population its customers are in
        self.known = False  # whether `moved` is known (not after a restart or rebalance)
        self.late = False  # events dated before its last report
        self.effects = Effects()

    # -- recovery --------------------------------------------------------------------------

    def recovered(self, customer: str, tier: str | None, next_change_at: int | None,
                  classes: tuple[tuple[str, str], ...] = ()) -> None:
        """A customer found in the store at start (its stored fields, not a parsed state):
        `classes` are its (axis, class) pairs."""
        if self.populations is not None:
            self.members.add(customer)
        self.due.schedule(next_change_at, customer)
        if tier is not None:
            self.tiers[tier] += 1
        if classes:  # (Counter.update of nothing still checks its argument's type)
            self.classes.update(classes)

    # -- batches ---------------------------------------------------------------------------

    def run(self, batch: Iterable[Message | None], wall: int) -> Effects:
        """Process a batch of the partition's input messages and ticks (TICK) in order at wall
        clock `wall` (µs) and return what it did."""
        for item in batch:
            if item is TICK:
                self.tick(wall)
            else:
                self.message(item, wall)
        return self.take()

    def take(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        return effects

    def load(self, customer: str) -> CustomerState | None:
        states = self.effects.states
        return states[customer] if customer in states else self.store.get(customer)

    def message(self, message: Message, wall: int) -> None:
        self.clocks.busy(self.partition, wall)
        try:
            event = parse_event(message.value or b"")
            admit(event, self.policy, wall=wall, max_future=self.max_future, key=message.key)
        except InvalidEventError as error:
            self.effects.dead_letters.append(
                DeadLetter(error.reason, str(error), message))
            self.effects.events[message.topic, "invalid", "dead_letter"] += 1
            return
        t = event.at
        # boundaries before the event (one at its instant comes after it, as in replay); a late
        # event never makes the partition report a boundary it has already passed
        watermark = self.clocks.watermark(self.partition)
        self.pass_boundary(max(t, watermark or t) - 1)
        self.move_to_latest()
        self.clocks.observe(self.partition, t, wall)  # as replay's clock, even if refused
        outcome = self.event(event, t, message)
        if outcome is not None:
            self.effects.events[message.topic, event.type, outcome] += 1
            self.effects.lags.append(wall - t)

    def event(self, event: Event, t: int, message: Message | None = None) -> str | None:
        """Apply an admitted event (after waking its customer if due by then): "applied",
        "duplicate" or "stale", or None when it was refused (a dead letter)."""
        customer = event.customer_id
        before = self.load(customer)
        if before is not None and before.next_change_at is not None \
                and before.next_change_at <= t:  # woken first, as time passes before t
            self.wake(customer, before, t)
            before = self.load(customer)
        try:
            state, outputs = apply(before, event, self.policy, self.decided_in())
        except (PolicyEvaluationError, InvalidEventError) as error:
            reason = error.reason if isinstance(error, InvalidEventError) else "policy_error"
            self.effects.dead_letters.append(DeadLetter(
                reason, str(error), message, Failed(customer, t, error), event))
            if message is not None:
                self.effects.events[message.topic, event.type, "dead_letter"] += 1
            return None
        self.emit(customer, before, state, outputs, erased=isinstance(event, CustomerErased))
        if self.populations is not None and state is not before:
            published = self.populations.boundaries(self.partition)
            if published and t <= published[0]:
                self.late = True
        return "stale" if stale(before, event, self.policy) else \
            "duplicate" if state is before else "applied"

    def tick(self, wall: int) -> None:
        self.clocks.ticked(self.partition, wall)
        now = self.clocks.now(self.partition, wall)
        if now is None:
            return
        self.pass_boundary(now - self.lateness, again=self.clocks.idle(self.partition, wall))
        self.move_to_latest()
        self.effects.due_customers = self.advance(now - self.lateness)

    # -- time ------------------------------------------------------------------------------

    def advance(self, now: int) -> int:
        """Let time pass up to `now` for the customers with a change due by then; how many."""
        woken = 0
        while (entry := self.due.pop_next(now)) is not None:
            due, customer = entry
            before = self.load(customer)
            if before is None or before.next_change_at != due:
                continue  # (the index returns current instants only: never expected)
            woken += 1
            self.wake(customer, before, due)  # a later change of it is due again, in turn
        return woken

    def wake(self, customer: str, before: CustomerState, now: int) -> None:
        """Let time pass up to `now` for a due customer; a decision the policy fails on is
        dead-lettered and made again later (rules.engine.wake)."""
        state, outputs, failed = wake(before, self.policy, now, self.decided_in())
        self.failed(failed)
        self.emit(customer, before, state, outputs)

    def failed(self, failed: list[Failed]) -> None:
        self.effects.dead_letters += [DeadLetter("policy_error", str(f.error), None, f)
                                      for f in failed]

    def decided_in(self) -> Population | None:
        """The population the partition's customers are decided in (None without relative
        metrics or before the first complete one)."""
        if self.populations is None:
            return self.population
        return self.moved if self.known else self.populations.latest()

    def pass_boundary(self, horizon: int, again: bool = False) -> None:
        """Once the partition's time reaches a refresh boundary (the latest at or before
        `horizon`) not yet reported, report its population there: what replay snapshots at that
        boundary, after every change due by then and before any later event.

        Events dated before the last report can still come (a partition that followed the wall
        clock while idle, then a backfill; late events): with `again` (the partition is idle
        now) a partition that had such events reports that boundary again, from its customers'
        values as of the boundary, which later orders do not change."""
        every = self.policy.refresh
        if self.populations is None or every is None:
            return
        boundary = horizon // every * every
        published = self.populations.boundaries(self.partition)
        repeat = bool(published) and boundary <= published[0]
        if repeat:
            if not (again and self.late):
                return
            boundary = published[0]
        self.late = False
        self.advance(boundary)
        values = [self.policy.base_values(state, boundary) for customer in
                  sorted(self.members) if (state := self.load(customer))]
        self.effects.reports.append(self.populations.publish(
            self.partition, boundary, len(values),
            {base: sketches.sketch((v[base] for v in values), self.sketch_k)
             for base in self.policy.relative_bases}, again=repeat))

    def move_to_latest(self) -> None:
        """Move every customer of the partition to the latest complete population, if newer
        than the one they are in (engine.refresh: only changed comparisons decide again)."""
        latest = None if self.populations is None else self.populations.latest()
        if latest is None or (self.known and self.moved is latest):
            return
        # After a restart or rebalance the population the partition's customers were decided in
        # is unknown (the previous one, an earlier report of this boundary, or this one), so
        # every customer is decided again; deciding again in the same population at the same
        # instant changes nothing (tests/test_relative.py).
        assert self.populations is not None
        old = self.moved if self.known else self.populations.before(latest)
        for customer in sorted(self.members):
            before = self.load(customer)
            if before is None:
                continue
            state, outputs, failed = refresh(before, self.policy, old, latest,
                                             changed=None if self.known else True)
            self.failed(failed)
            self.emit(customer, before, state, outputs)
        self.moved, self.known = latest, True

    # -- changes ---------------------------------------------------------------------------

    def emit(self, customer: str, before: CustomerState | None, state: CustomerState | None,
             outputs: list[Output], erased: bool = False) -> None:
        """Record a customer's change: outputs, its `customer-tiers` record when it has
        outputs or was erased, its new state, the due index and the tier counts."""
        effects = self.effects
        if state is before and not outputs and not erased:
            return  # a duplicate: nothing changed
        effects.outputs += outputs
        if erased:
            effects.tiers[customer] = None
            if before is not None:
                effects.erased_created_at[customer] = before.created_at
        elif outputs and state is not None:
            effects.tiers[customer] = state
        self._count(before, state)
        if state is None:
            self.members.discard(customer)
            self.due.schedule(None, customer)
        elif state is not before:
            if self.populations is not None:
                self.members.add(customer)
            if before is None or before.next_change_at != state.next_change_at:
                self.due.schedule(state.next_change_at, customer)
        if state is not before:
            effects.states[customer] = state

    def _count(self, before: CustomerState | None, state: CustomerState | None) -> None:
        """Customers per tier (and per class of each axis): one moves from the tier of
        `before` to that of `state`."""
        old = None if before is None else before.tier
        new = None if state is None else state.tier
        if old != new:
            if old is not None:
                self.tiers[old] -= 1
            if new is not None:
                self.tiers[new] += 1
        old_places = () if before is None else before.axes
        new_places = () if state is None else state.axes
        if old_places != new_places:
            for place in old_places:
                self.classes[place.axis, place.name] -= 1
            for place in new_places:
                self.classes[place.axis, place.name] += 1

