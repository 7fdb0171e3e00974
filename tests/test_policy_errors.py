"""A condition that fails at run time (a policy bug) never loses a customer: in replay and in the
worker, a failed time-driven decision is dead-lettered and made again a day later, and an event
the policy fails on is dead-lettered with its line (the worker's side: tests/integration)."""

from __future__ import annotations

import io
import json

from rich.progress import Progress

from rules.engine import apply, wake
from rules.replay import Replay
from streams.cli import replay_job
from streams.cli.files import Line
from tests.builders import FAILING_POLICY, day, order, policy, raw, touch

FAILING = policy(FAILING_POLICY)  # fails from day 30, once the first order left the window


def test_a_failed_time_driven_decision_is_made_again_later_and_later() -> None:
    replay = Replay(FAILING)
    replay.feed(order("p", day(0), 100, "o1"))
    state = replay.states["p"]
    assert state.next_change_at == day(30)

    woken, outputs, failed = wake(state, FAILING, day(200))
    # after 1, 2, 4, ... 64 days, then every 64
    assert [f.at for f in failed] == [day(n) for n in (30, 31, 33, 37, 45, 61, 93, 157)]
    assert outputs == [] and woken.next_change_at == day(221) and woken.failures == 8
    assert "division by zero" in str(failed[0].error) and failed[0].customer_id == "p"
    assert woken.tier == "A"
    # a decision made resets the count
    later, _ = apply(woken, order("p", day(201), 100, "o2"), FAILING)
    assert later.failures == 0 and later.next_change_at == day(231)


def test_replay_keeps_the_customer_and_reports_each_failure() -> None:
    replay = Replay(FAILING)
    replay.feed(order("p", day(0), 100, "o1"))
    assert replay.advance_to(day(40)) == []
    assert [f.at for f, event in replay.take_failed() if event is None] == \
        [day(n) for n in (30, 31, 33, 37)]
    replay.feed(order("p", day(45), 100, "o2"))  # woken up to the order first, then it counts
    assert [f.at for f, _ in replay.take_failed()] == [day(45)]
    assert replay.states["p"].orders[-1].order_id == "o2"
    assert replay.states["p"].next_change_at == day(75)
    assert replay.states["p"].failures == 0


def test_replay_job_dead_letters_failed_decisions_and_events() -> None:
    events = [order("p", day(0), 100, "o1"), touch("p", day(31)), order("p", day(33), 10, "o2")]
    records = [(Line("in.jsonl", n, raw(e)), e)
               for n, e in enumerate(events, start=1)]
    sinks = replay_job.Sinks(out=io.StringIO(), dead_letters=io.StringIO())
    summary = replay_job.run(iter(records), FAILING, sinks, day(33), Progress(disable=True),
                             wall=None, max_future=0)
    assert isinstance(sinks.dead_letters, io.StringIO)
    dead = [json.loads(line) for line in sinks.dead_letters.getvalue().splitlines()]
    # woken at day 30 and 31 (failed; next try after two days), then the interaction at day 31
    # fails on its own, then day 33 fails and the order at day 33 is applied
    assert [(d["source"], d.get("at", d.get("line")), d["reason"]) for d in dead] == [
        ("time", "2024-01-31T00:00:00Z", "policy_error"),
        ("time", "2024-02-01T00:00:00Z", "policy_error"),
        ("in.jsonl", 2, "policy_error"),
        ("time", "2024-02-03T00:00:00Z", "policy_error")]
    assert summary.failed_decisions == 3 and summary.events == 2
    assert summary.rejected == {"policy_error": 1}


def test_replay_keeps_customers_whose_population_refresh_fails() -> None:
    relative = policy(FAILING_POLICY.replace(
        "    when: orders_30d >= 1\n",
        "    when: orders_30d >= 1 && days_since_last_order_pct >= 0.0\n")
        + "relative:\n  refresh: 1d\n")
    replay = Replay(relative)
    replay.feed(order("p", day(0), 100, "o1"))
    replay.feed(order("q", day(0), 200, "o2"))
    replay.advance_to(day(31) + 1)  # refreshes every day: those after day 30 fail
    failed = [(f.customer_id, f.at) for f, event in replay.take_failed()]
    assert failed and all(event_at >= day(30) for _, event_at in failed)
    assert {customer for customer, _ in failed} == {"p", "q"}
    assert set(replay.states) == {"p", "q"}
