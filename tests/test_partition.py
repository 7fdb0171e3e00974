"""The partition driver (rules/partition.py) on batches of raw messages and ticks, with an
in-memory store and population reports as fakes: what the worker hands it and carries out."""

from __future__ import annotations

import json

from models.instants import MICROS_PER_SECOND
from models.state import CustomerState
from rules.partition import TICK, Message, Partition
from rules.relative import Population
from tests.builders import FAILING_POLICY, day, erase, order, policy, raw, replay, touch

POLICY = policy("""
    name: test
    version: "1"
    currency: CNY
    windows: [30d]
    tiers:
      - id: A
        when: revenue_30d >= 1000
      - id: B
    """)
WALL = day(400)  # the wall clock of every batch: long after the events
IDLE = 60 * MICROS_PER_SECOND
DAY = day(1) - day(0)


def message(event, offset: int = 0, key: bytes | None = None) -> Message:
    """The Kafka message of an event, keyed by its customer unless `key` is given."""
    return Message("orders", offset, key or event.customer_id.encode(), raw(event))


class Store(dict):
    """The states between batches: what the worker's table holds once a batch is stored."""

    def keep(self, states: dict[str, CustomerState | None]) -> None:
        for customer, state in states.items():
            if state is None:
                self.pop(customer, None)
            else:
                self[customer] = state


def driver(store: Store, compiled=POLICY, **options) -> Partition:
    return Partition(0, compiled, store, idle_after=IDLE, **options)


def test_a_batch_equals_replay_of_its_events_and_writes_each_customer_once() -> None:
    events = [order("ann", day(1), 600), order("bob", day(2), 50), order("ann", day(3), 600),
              touch("bob", day(4)), order("ann", day(5), 10)]
    effects = driver(Store()).run([message(e, i) for i, e in enumerate(events)], WALL)
    run, outputs = replay(events, POLICY)
    assert [o.id for o in effects.outputs] == [o.id for o in outputs]
    assert effects.states == run.states  # the latest state of each, one write per customer
    # the `customer-tiers` record is the state at the customer's last output
    assert {c: s.clock for c, s in effects.tiers.items()} == {"ann": day(3), "bob": day(2)}
    assert effects.events == {("orders", "order_completed", "applied"): 4,
                              ("orders", "interaction", "applied"): 1}


def test_states_stored_between_batches_are_read_back() -> None:
    store = Store()
    partition = driver(store)
    store.keep(partition.run([message(order("ann", day(1), 600))], WALL).states)
    effects = partition.run([message(order("ann", day(2), 600), 1)], WALL)
    assert [o.data.to_tier for o in effects.outputs] == ["A"]
    store.keep(effects.states)
    again = partition.run([message(order("ann", day(2), 600), 1)], WALL)  # redelivered
    assert not again.outputs and not again.states
    assert again.events == {("orders", "order_completed", "duplicate"): 1}


def test_bad_messages_are_dead_lettered_with_their_reason_and_the_rest_applied() -> None:
    good = order("ann", day(1), 600)
    batch = [Message("orders", 0, b"ann", b"{not json"), message(good, 1, key=b"bob"),
             message(order("ann", day(1), 5, currency="ZZZ"), 2), message(good, 3)]
    effects = driver(Store()).run(batch, WALL)
    assert [(d.reason, d.message.offset) for d in effects.dead_letters] == [
        ("not_json", 0), ("wrong_key", 1), ("unknown_currency", 2)]
    assert set(effects.states) == {"ann"}
    assert effects.events[("orders", "invalid", "dead_letter")] == 3


def test_a_due_customer_is_woken_before_its_next_event() -> None:
    store = Store()
    partition = driver(store)
    store.keep(partition.run([message(order("ann", day(1), 1000))], WALL).states)
    effects = partition.run([message(order("ann", day(40), 1), 1)], WALL)
    run, outputs = replay([order("ann", day(1), 1000), order("ann", day(40), 1)], POLICY)
    assert [o.type for o in effects.outputs] == ["tierstream.tier.downgraded"]
    assert effects.outputs[0].id == outputs[-1].id
    assert effects.states["ann"] == run.states["ann"]


def test_a_tick_wakes_due_customers_once_the_partition_is_idle() -> None:
    store = Store()
    partition = driver(store)
    first = day(1)
    store.keep(partition.run([message(order("ann", first, 1000))], WALL).states)
    assert partition.run([TICK], WALL + IDLE - 1).outputs == []  # busy: time is the events'
    idle = partition.run([TICK], WALL + IDLE)  # quiet: the partition follows the wall clock
    assert [o.type for o in idle.outputs] == ["tierstream.tier.downgraded"]
    assert idle.due_customers == 1
    assert idle.states["ann"].tier == "B"


def test_erasure_writes_a_tombstone_even_for_an_unknown_customer() -> None:
    store = Store()
    partition = driver(store)
    store.keep(partition.run([message(order("ann", day(1), 10))], WALL).states)
    effects = partition.run([message(erase("ann", day(2)), 1), message(erase("nobody", day(2)), 2)],
                            WALL)
    assert effects.tiers == {"ann": None, "nobody": None}
    assert effects.states == {"ann": None}
    assert effects.erased_created_at == {"ann": day(1)}


def test_a_time_driven_policy_failure_is_a_dead_letter_without_a_message() -> None:
    failing = policy(FAILING_POLICY)
    store = Store()
    partition = driver(store, failing)
    store.keep(partition.run([message(order("ann", day(1), 10))], WALL).states)
    effects = partition.run([message(order("ann", day(45), 10), 1)], WALL)
    failed = [d for d in effects.dead_letters if d.message is None]
    assert failed and failed[0].reason == "policy_error"
    assert failed[0].failed.customer_id == "ann"


def test_a_customer_whose_time_driven_decision_failed_stays_due() -> None:
    # 30 days after its order the churn rule divides by zero: each tick that reaches the retry
    # instant fails again (after 1, 2, 4 ... 64 days), and the customer is never dropped
    failing = policy(FAILING_POLICY)
    store = Store()
    partition = driver(store, failing)
    store.keep(partition.run([message(order("ann", day(1), 10))], WALL).states)
    for wall in (WALL, WALL + 65 * DAY, WALL + 130 * DAY):
        failed = []
        for tick in range(4):  # ticks a third of the idle time apart: then it follows the wall
            effects = partition.run([TICK], wall + tick * IDLE // 3)
            store.keep(effects.states)
            failed += [d.failed.customer_id for d in effects.dead_letters if d.failed]
        assert failed and set(failed) == {"ann"}
        retry = store["ann"].next_change_at
        assert retry is not None and retry > wall
        assert partition.due.pop_next(retry) == (retry, "ann")
        partition.due.schedule(retry, "ann")  # (put back, as popping took it)


class Reports:
    """Population reports as the worker's feed keeps them, for one partition of one."""

    def __init__(self) -> None:
        self.published: list[tuple[int, int]] = []  # (boundary, customers), newest first
        self.complete: Population | None = None  # as merged from every partition's reports

    def latest(self) -> Population | None:
        return self.complete

    def before(self, population: Population) -> Population | None:
        return None

    def boundaries(self, partition: int) -> list[int]:
        return [boundary for boundary, _ in self.published]

    def publish(self, partition: int, boundary: int, customers: int,
                sketches: dict[str, bytes], again: bool) -> bytes:
        self.published = [(boundary, customers), *self.published[1 if again else 0:]]
        return json.dumps([boundary, customers]).encode()


RELATIVE = policy("""
    name: relative
    version: "1"
    currency: CNY
    windows: [30d]
    relative: {refresh: 1d}
    tiers:
      - id: A
        when: revenue_30d_pct >= 0.5
      - id: B
    """)


def test_a_partition_reports_its_population_at_each_boundary_it_passes() -> None:
    reports = Reports()
    store = Store()
    partition = driver(store, RELATIVE, populations=reports, sketch_k=64)
    first = partition.run([message(order("ann", day(1) + 5, 10)),
                           message(order("bob", day(1) + 9, 20), 1)], WALL)
    assert first.reports == [json.dumps([day(1), 0]).encode()]  # before the first order
    store.keep(first.states)
    later = partition.run([message(order("ann", day(3) + 1, 10), 2)], WALL)
    assert later.reports == [json.dumps([day(3), 2]).encode()]  # ann and bob by then
    assert reports.published == [(day(3), 2), (day(1), 0)]


def test_customers_move_to_each_newer_complete_population() -> None:
    reports = Reports()
    store = Store()
    partition = driver(store, RELATIVE, populations=reports, sketch_k=64)
    store.keep(partition.run([message(order("ann", day(1), 10)),
                              message(order("bob", day(1) + 1, 20), 1)], WALL).states)
    assert {s.tier for s in store.values()} == {"B"}  # no population yet: no percentile
    reports.complete = Population.of(day(2), {"revenue_30d": [5.0, 15.0, 25.0, 100.0]})
    moved = partition.run([TICK], WALL)
    assert partition.decided_in() is reports.complete
    assert {c: s.tier for c, s in moved.states.items()} == {"ann": "B", "bob": "A"}
    assert [(o.subject, o.data.to_tier) for o in moved.outputs] == [("bob", "A")]
