"""Hypothesis properties of the engine: idempotence, order independence, resumable replay."""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import replace
from rich.progress import Progress

from models.errors import InvalidEventError
from models.events import Event
from models.instants import MICROS_PER_DAY
from models.outputs import Output
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.decisions import evaluate
from rules.engine import apply
from rules.replay import Replay, event_order
from streams.cli import replay_job
from streams.cli.files import Line
from tests.builders import T0, cancel, day, micros, order, policy, raw, refund, touch

POLICY = policy("""
    name: properties
    version: "1"
    currency: CNY
    rates: {USD: 7.0}
    windows: [30d, 90d]
    tiers:
      - id: A
        when: revenue_90d >= 800.0 && orders_30d >= 2
      - id: B
        when: orders_90d >= 2 || interactions_30d >= 3
      - id: C
        when: orders_total >= 1 && days_since_last_order <= 120.0
      - id: D
    downgrade:
      grace: 10d
      max_steps: 1
      warn_before: 4d
    churn:
      - id: quiet
        when: orders_total >= 2 && days_since_last_order > 2.0 * avg_days_between_orders
      - id: silent_a
        when: tier == "A" && days_since_last_order > 20.0
      - id: complaining
        when: interactions_complaint_30d >= 2
""")
# Conditions that change with time only as windows forget: the horizon skips the expiries that
# decide nothing (rules/horizon.py, windows_alone).
WINDOWS_ALONE = policy("""
    name: windows-alone
    version: "1"
    currency: CNY
    rates: {USD: 7.0}
    windows: [30d, 90d]
    tiers:
      - id: A
        when: revenue_90d >= 800.0 && orders_30d >= 2
      - id: B
        when: orders_90d >= 2 || interactions_30d >= 3 || revenue_30d * 2.0 > revenue_90d + 300.0
      - id: C
        when: orders_90d >= 1
      - id: D
    downgrade:
      grace: 10d
      max_steps: 1
      warn_before: 4d
    churn:
      - id: complaining
        when: interactions_complaint_30d >= 2
      - id: quiet_a
        when: tier == "A" && orders_30d == 0
""")
# The same, at once and with a tier condition that reads the tier: a decision can end unsettled
# (it moves as often as there are tiers, then is eligible for another).
AT_ONCE = policy("""
    name: windows-alone-at-once
    version: "1"
    currency: CNY
    rates: {USD: 7.0}
    windows: [30d, 90d]
    tiers:
      - id: A
        when: tier == "B" && orders_30d >= 1 || revenue_90d >= 800.0 && orders_30d >= 2
      - id: B
        when: orders_90d >= 2 || interactions_30d >= 3
      - id: C
        when: orders_90d >= 1
      - id: D
    downgrade:
      grace: 0d
      max_steps: 1
      warn_before: 0d
""")
HOURS = 2 * 365 * 24           # events fall in the first two years after T0
END = day(2 * 365 + 400)       # every history is finally advanced to here
SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def histories(draw: st.DrawFn) -> list[Event]:
    """2-4 customers' orders, refunds, cancellations and interactions, with a few redeliveries."""
    customers = [f"c{i}" for i in range(draw(st.integers(2, 4)))]
    events: list[Event] = []
    for i in range(draw(st.integers(1, 24))):
        customer = draw(st.sampled_from(customers))
        at = T0 + draw(st.integers(0, HOURS)) * 3_600_000_000
        if events and draw(st.booleans()):  # ties: another event's instant
            at = draw(st.sampled_from(events)).at
        order_id = f"{customer}-o{draw(st.integers(0, 5))}"
        amount = f"{draw(st.integers(0, 60_000)) / 100:.2f}"
        kind = draw(st.sampled_from(["order"] * 4 + ["refund", "cancel", "touch", "touch"]))
        if kind == "order":
            currency = draw(st.sampled_from(["CNY", "CNY", "USD"]))
            events.append(order(customer, at, amount, order_id, f"e{i}", currency))
        elif kind == "refund":
            events.append(refund(customer, at, amount, order_id, f"e{i}"))
        elif kind == "cancel":
            events.append(cancel(customer, at, order_id, f"e{i}"))
        else:
            what = draw(st.sampled_from(["visit", "complaint", "email_open"]))
            events.append(touch(customer, at, what, f"e{i}"))
    redelivered = draw(st.lists(st.sampled_from(events), max_size=3))
    return events + redelivered


def run(events: list[Event], until: int = END, policy: CompiledPolicy = POLICY
        ) -> tuple[Replay, list[Output]]:
    replay = Replay(policy)
    outputs = [o for e in sorted(events, key=event_order) for o in replay.feed(e)]
    return replay, outputs + replay.advance_to(until)


def dump(replay: Replay, outputs: list[Output]) -> tuple[dict[str, Any], list[dict]]:
    states = dict(sorted(replay.states.items()))
    return states, [o.document() for o in outputs]


@SETTINGS
@given(histories())
def test_applying_an_event_twice_equals_once(events: list[Event]) -> None:
    states: dict[str, CustomerState | None] = {}
    for event in events:                                  # delivery order: late events included
        try:
            once, _ = apply(states.get(event.customer_id), event, POLICY)
        except InvalidEventError as error:  # an order id reused with other content, or an
            assert error.reason in ("conflicting_duplicate", "beyond_history")  # order too late
            continue
        twice, outputs = apply(once, event, POLICY)
        assert twice == once
        assert outputs == []
        states[event.customer_id] = once


def replayed(events: list[Event]) -> tuple[str, str]:
    """`tierstream replay` of the events in this order of input lines: outputs and states."""
    records = [(Line("events.jsonl", n, raw(e)), e)
               for n, e in enumerate(events, start=1)]
    sinks = replay_job.Sinks(out=io.StringIO(), state_out=io.StringIO())
    replay_job.run(iter(records), POLICY, sinks, END, Progress(disable=True), wall=None,
                   max_future=0)
    assert isinstance(sinks.out, io.StringIO) and isinstance(sinks.state_out, io.StringIO)
    return sinks.out.getvalue(), sinks.state_out.getvalue()


@SETTINGS
@given(st.data())
def test_replay_input_order_does_not_matter(data: st.DataObject) -> None:
    events = data.draw(histories())
    shuffled = data.draw(st.permutations(events))
    assert replayed(shuffled) == replayed(events)


@SETTINGS
@given(st.data())
def test_partitions_replayed_apart_equal_one_replay(data: st.DataObject) -> None:
    # Workers keep a clock per partition (docs/streaming.md, "Time"): each customer's result must
    # depend on its own events only, never on which customers share its partition or on how
    # the partitions' events interleave (here: one replay per partition, fed in turns).
    events = sorted(data.draw(histories()), key=event_order)
    customers = sorted({e.customer_id for e in events})
    partition_of = {c: data.draw(st.integers(0, 2), label=c) for c in customers}
    queues = {p: [e for e in events if partition_of[e.customer_id] == p] for p in range(3)}
    replays = {p: Replay(POLICY) for p in queues}
    outputs: dict[str, list[dict]] = defaultdict(list)
    while any(queues.values()):
        p = data.draw(st.sampled_from([p for p, queue in queues.items() if queue]))
        for output in replays[p].feed(queues[p].pop(0)):
            outputs[output.subject].append(output.document())
    for replay in replays.values():
        for output in replay.advance_to(END):
            outputs[output.subject].append(output.document())
    states = {c: s for r in replays.values() for c, s in r.states.items()}

    whole, whole_outputs = run(events)
    expected: dict[str, list[dict]] = defaultdict(list)
    for output in whole_outputs:
        expected[output.subject].append(output.document())
    assert states == whole.states
    assert outputs == expected


@SETTINGS
@given(st.data())
def test_replay_cut_into_pieces_equals_one_replay(data: st.DataObject) -> None:
    events = sorted(data.draw(histories()), key=event_order)
    k = data.draw(st.integers(0, len(events)))
    low = events[k - 1].at if k else T0
    high = events[k].at if k < len(events) else END
    cut = data.draw(st.integers(low, high))

    first = Replay(POLICY)
    outputs = [o for e in events[:k] for o in first.feed(e)] + first.advance_to(cut)
    second = Replay(POLICY, states=first.states.values())
    outputs += [o for e in events[k:] for o in second.feed(e)] + second.advance_to(END)

    assert dump(second, outputs) == dump(*run(events))


@SETTINGS
@given(histories())
def test_outputs_are_in_time_order_with_gapless_sequences(events: list[Event]) -> None:
    replay, outputs = run(events)
    times = [micros(o.time) for o in outputs]
    assert times == sorted(times)
    for customer in {o.subject for o in outputs}:
        sequences = [int(o.sequence) for o in outputs if o.subject == customer]
        assert sequences == list(range(1, len(sequences) + 1))
        assert replay.states[customer].sequence == len(sequences)
    for state in replay.states.values():
        assert state.next_change_at is None or state.next_change_at > state.clock


@SETTINGS
@given(histories(), st.sampled_from([WINDOWS_ALONE, AT_ONCE]))
def test_skipping_the_expiries_that_decide_nothing_changes_no_output(
        events: list[Event], windows_alone: CompiledPolicy) -> None:
    assert windows_alone.windows_alone
    every_expiry = CompiledPolicy(windows_alone.policy)  # (compiled by mypyc: no copy)
    every_expiry.windows_alone = False  # woken at each expiry that flips a comparison
    skipping, woken = run(events, policy=windows_alone), run(events, policy=every_expiry)
    assert [o.document() for o in skipping[1]] == [o.document() for o in woken[1]]
    # the same decisions; only the instant each customer was last decided at differs
    decided = {c: replace(s, clock=0, next_change_at=None)
               for c, s in sorted(skipping[0].states.items())}
    assert decided == {c: replace(s, clock=0, next_change_at=None)
                       for c, s in sorted(woken[0].states.items())}


@SETTINGS
@given(st.data(), st.sampled_from([POLICY, WINDOWS_ALONE]))
def test_nothing_changes_before_the_wake_up_instant(data: st.DataObject,
                                                    compiled: CompiledPolicy) -> None:
    # The runtime only looks at a customer again at next_change_at; deciding at any earlier
    # instant must therefore emit nothing, or a time-driven change would be reported late.
    replay = Replay(compiled)
    for event in sorted(data.draw(histories()), key=event_order):
        replay.feed(event)
        state = replay.states[event.customer_id]
        wake = state.next_change_at or state.clock + 3 * 365 * MICROS_PER_DAY
        if wake - 1 <= state.clock:
            continue
        for instant in {wake - 1, data.draw(st.integers(state.clock + 1, wake - 1))}:
            assert evaluate(state, compiled, instant)[1] == []
