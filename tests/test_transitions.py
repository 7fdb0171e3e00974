"""Tier and churn transitions over time: upgrades, downgrade hysteresis, churn episodes, ids."""

from __future__ import annotations

from functools import cache

import pytest

from models.errors import InvalidEventError
from models.outputs import Output
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.engine import advance, apply
from rules.replay import Replay
from streams.policies import load_policy
from tests.builders import (
    US,
    cancel,
    day,
    erase,
    fold,
    micros,
    order,
    policy,
    refund,
    replay,
    short,
    steps,
    touch,
)

DEFAULT = load_policy("default")


@cache
def ladder(grace: str = "14d", max_steps: int = 1, warn_before: str = "7d",
           window: str = "90d") -> CompiledPolicy:
    """Tiers by revenue in one window: A >= 300, B >= 200, C >= 100, else D."""
    return policy(f"""
        name: ladder
        version: "1"
        windows: [{window}]
        tiers:
          - id: A
            when: revenue_{window} >= 300.0
          - id: B
            when: revenue_{window} >= 200.0
          - id: C
            when: revenue_{window} >= 100.0
          - id: D
        downgrade:
          grace: {grace}
          max_steps: {max_steps}
          warn_before: {warn_before}
        """)


CHURN = policy("""
    name: churn
    version: "1"
    windows: [30d]
    tiers:
      - id: A
    churn:
      - id: quiet
        when: orders_total >= 1 && days_since_last_order > 30.0
      - id: complaining
        when: interactions_complaint_30d >= 2
    """)


def tier_steps(outputs: list[Output]) -> list[tuple]:
    return [s for s in steps(outputs) if not s[1].startswith("churn.")]


def churn_steps(outputs: list[Output]) -> list[tuple[int, str, str]]:
    return [(micros(o.time), short(o.type), o.data.churn_rule) for o in outputs
            if o.type.startswith("tierstream.churn.")]


# --- first assignment and upgrades -------------------------------------------------------------

# (case, events, expected (instant, type, from, to) steps)
UPGRADES = [
    ("first order assigns its tier", [order("c", day(0), 150)],
     [(day(0), "assigned", None, "C")]),
    ("first event without an order assigns the default tier", [touch("c", day(0))],
     [(day(0), "assigned", None, "D")]),
    ("big first order assigns the top tier", [order("c", day(0), 500)],
     [(day(0), "assigned", None, "A")]),
    ("upgrade at once", [order("c", day(0), 150), order("c", day(1), 60)],
     [(day(0), "assigned", None, "C"), (day(1), "upgraded", "C", "B")]),
    ("upgrade skipping tiers", [touch("c", day(0)), order("c", day(1), 500)],
     [(day(0), "assigned", None, "D"), (day(1), "upgraded", "D", "A")]),
    ("no change, no output", [order("c", day(0), 150), order("c", day(1), 10)],
     [(day(0), "assigned", None, "C")]),
]


@pytest.mark.parametrize(("events", "expected"), [row[1:] for row in UPGRADES],
                         ids=[row[0] for row in UPGRADES])
def test_assignment_and_upgrades(events: list, expected: list) -> None:
    _, outputs = replay(events, ladder(), until=day(2))
    assert steps(outputs) == expected


def test_upgrade_explains_itself() -> None:
    _, outputs = replay([order("c", day(0), 150), order("c", day(1), 60)], ladder())
    upgrade = outputs[-1]
    assert upgrade.type == "tierstream.tier.upgraded"
    assert (upgrade.subject, upgrade.time, upgrade.sequence) == \
        ("c", "2024-01-02T00:00:00Z", "00000000000000000002")
    assert upgrade.source == "/tierstream/policies/ladder/customers/c"
    assert upgrade.partitionkey == "c"
    assert upgrade.dataschema == "urn:tierstream:schema:tier-change:2"
    assert upgrade.data.rule == "B"
    assert "revenue_90d >= 200.0" in upgrade.data.reason
    assert upgrade.data.metrics == {"revenue_90d": 210.0}
    assert (upgrade.data.policy.name, upgrade.data.policy.version) == ("ladder", "1")


# --- downgrade hysteresis ----------------------------------------------------------------------

A_THEN_B = [order("c", day(0), 500, "o1"), refund("c", day(5), 250, "o1")]      # B from day 5
A_THEN_C = [order("c", day(0), 500, "o1"), refund("c", day(5), 380, "o1")]      # C from day 5
A_THEN_D = [order("c", day(0), 500, "o1"), refund("c", day(5), 450, "o1")]      # D from day 5

# (case, policy, events, replay until, expected steps)
DOWNGRADES = [
    ("downgrade after grace, warned warn_before earlier", ladder(), A_THEN_B, day(40),
     [(day(0), "assigned", None, "A"), (day(12), "downgrade_warning", "A", "B"),
      (day(19), "downgraded", "A", "B")]),
    ("nothing before the warning is due", ladder(), A_THEN_B, day(12) - US,
     [(day(0), "assigned", None, "A")]),
    ("no warning without warn_before", ladder(warn_before="0d"), A_THEN_B, day(40),
     [(day(0), "assigned", None, "A"), (day(19), "downgraded", "A", "B")]),
    ("grace 0d drops at once, step by step", ladder("0d", 1, "0d"), A_THEN_D, day(40),
     [(day(0), "assigned", None, "A"), (day(5), "downgraded", "A", "B"),
      (day(5), "downgraded", "B", "C"), (day(5), "downgraded", "C", "D")]),
    ("grace 0d with a big step drops in one", ladder("0d", 3, "0d"), A_THEN_D, day(40),
     [(day(0), "assigned", None, "A"), (day(5), "downgraded", "A", "D")]),
    ("max_steps 1 walks down over two grace periods", ladder(max_steps=1), A_THEN_C, day(40),
     [(day(0), "assigned", None, "A"), (day(12), "downgrade_warning", "A", "B"),
      (day(19), "downgraded", "A", "B"), (day(26), "downgrade_warning", "B", "C"),
      (day(33), "downgraded", "B", "C")]),
    ("max_steps 2 jumps in one grace period", ladder(max_steps=2), A_THEN_C, day(40),
     [(day(0), "assigned", None, "A"), (day(12), "downgrade_warning", "A", "C"),
      (day(19), "downgraded", "A", "C")]),
    ("never below the eligible tier", ladder(max_steps=3), A_THEN_B, day(40),
     [(day(0), "assigned", None, "A"), (day(12), "downgrade_warning", "A", "B"),
      (day(19), "downgraded", "A", "B")]),
    ("warn_before equal to grace warns at scheduling", ladder("7d", 1, "7d"), A_THEN_B,
     day(40), [(day(0), "assigned", None, "A"), (day(5), "downgrade_warning", "A", "B"),
               (day(12), "downgraded", "A", "B")]),
    ("warn_before above grace warns at scheduling", ladder("7d", 1, "10d"), A_THEN_B, day(40),
     [(day(0), "assigned", None, "A"), (day(5), "downgrade_warning", "A", "B"),
      (day(12), "downgraded", "A", "B")]),
    ("warn_before >= grace warns again when the next grace period starts",
     ladder("7d", 1, "10d"), A_THEN_C, day(40),
     [(day(0), "assigned", None, "A"), (day(5), "downgrade_warning", "A", "B"),
      (day(12), "downgraded", "A", "B"), (day(12), "downgrade_warning", "B", "C"),
      (day(19), "downgraded", "B", "C")]),
    ("eligible tier falling further keeps the first due date", ladder(max_steps=3),
     [*A_THEN_B, refund("c", day(10), 130, "o1")], day(40),
     [(day(0), "assigned", None, "A"), (day(12), "downgrade_warning", "A", "C"),
      (day(19), "downgraded", "A", "C")]),
    ("cancellation starts the downgrade", ladder(grace="0d", warn_before="0d"),
     [order("c", day(0), 150, "o1"), order("c", day(1), 100, "o2"), cancel("c", day(3), "o2")],
     day(40), [(day(0), "assigned", None, "C"), (day(1), "upgraded", "C", "B"),
               (day(3), "downgraded", "B", "C")]),
]


@pytest.mark.parametrize(("compiled", "events", "until", "expected"),
                         [row[1:] for row in DOWNGRADES], ids=[row[0] for row in DOWNGRADES])
def test_downgrade_hysteresis(compiled: CompiledPolicy, events: list, until: int,
                              expected: list) -> None:
    _, outputs = replay(events, compiled, until=until)
    assert steps(outputs) == expected


def test_warning_says_when_the_downgrade_is_due() -> None:
    _, outputs = replay(A_THEN_B, ladder(), until=day(40))
    warning = outputs[1]
    assert warning.data.due_at == "2024-01-20T00:00:00Z"   # day 19
    assert warning.time == "2024-01-13T00:00:00Z"          # day 12


def test_qualifying_again_during_grace_cancels_the_downgrade() -> None:
    events = [*A_THEN_B, order("c", day(13), 100, "o2")]   # warned at 12, A again at 13
    _, outputs = replay(events, ladder(), until=day(40))
    assert steps(outputs) == [(day(0), "assigned", None, "A"),
                              (day(12), "downgrade_warning", "A", "B")]


def test_cancelled_downgrade_then_a_new_grace_period_starts_fresh() -> None:
    events = [*A_THEN_B, order("c", day(13), 100, "o2"), refund("c", day(15), 100, "o2")]
    run, outputs = replay(events, ladder(), until=day(29) - US)
    assert steps(outputs) == [(day(0), "assigned", None, "A"),
                              (day(12), "downgrade_warning", "A", "B"),
                              (day(22), "downgrade_warning", "A", "B")]
    assert outputs[-1].data.due_at == "2024-01-30T00:00:00Z"  # day 15 + 14, not day 19
    assert steps(run.advance_to(day(29))) == [(day(29), "downgraded", "A", "B")]


def test_upgrade_during_grace_clears_the_scheduled_downgrade() -> None:
    events = [order("c", day(0), 250, "o1"), refund("c", day(2), 100, "o1"),
              order("c", day(4), 200, "o2")]                # B, C-eligible, then A
    run, outputs = replay(events, ladder(), until=day(40))
    assert steps(outputs) == [(day(0), "assigned", None, "B"), (day(4), "upgraded", "B", "A")]
    assert run.states["c"].downgrade_due is None


@pytest.mark.parametrize(("compiled", "until", "expected"), [
    (ladder("0d", 1, "0d", window="30d"), day(60),
     [(day(0), "assigned", None, "C"), (day(30), "downgraded", "C", "D")]),
    (ladder("0d", 1, "0d", window="30d"), day(30) - US, [(day(0), "assigned", None, "C")]),
    (DEFAULT, day(400),
     [(day(0), "assigned", None, "C"), (day(372), "downgrade_warning", "C", "D"),
      (day(379), "downgraded", "C", "D")]),
], ids=["at order time + window", "not a microsecond earlier", "default policy, after grace"])
def test_window_forgetting_an_order_downgrades_without_an_event(
        compiled: CompiledPolicy, until: int, expected: list) -> None:
    _, outputs = replay([order("c", day(0), 150)], compiled, until=until)
    assert steps(outputs) == expected


# --- churn episodes ----------------------------------------------------------------------------

def test_one_warning_per_episode_and_recovery_when_no_rule_holds() -> None:
    events = [order("c", day(0), 10, "o1"),
              touch("c", day(35)), touch("c", day(40)), touch("c", day(45)),
              order("c", day(50), 10, "o2")]
    _, outputs = replay(events, CHURN, until=day(200))
    assert churn_steps(outputs) == [(day(30) + US, "churn.warning", "quiet"),
                                    (day(50), "churn.recovered", "quiet"),
                                    (day(80) + US, "churn.warning", "quiet")]


def test_episode_stays_open_while_any_rule_holds_and_closes_by_time() -> None:
    events = [order("c", day(0), 10, "o1"),                 # quiet from day 30
              touch("c", day(32), "complaint"), touch("c", day(33), "complaint"),
              order("c", day(40), 10, "o2")]                # quiet ends, complaining still holds
    _, outputs = replay(events, CHURN, until=day(200))
    assert churn_steps(outputs) == [(day(30) + US, "churn.warning", "quiet"),
                                    (day(62), "churn.recovered", "quiet"),  # day 32 + 30d
                                    (day(70) + US, "churn.warning", "quiet")]


def test_churn_warning_explains_itself() -> None:
    _, outputs = replay([order("c", day(0), 10)], CHURN, until=day(31))
    warning = outputs[-1]
    assert warning.type == "tierstream.churn.warning"
    assert (warning.data.rule, warning.data.churn_rule) == ("quiet", "quiet")
    assert warning.data.metrics["orders_total"] == 1
    assert warning.data.metrics["days_since_last_order"] > 30.0
    assert warning.data.from_tier == warning.data.to_tier == "A"


KEY_ACCOUNT = [order("k", day(25 * i), 4000) for i in range(6)]  # A from day 125, avg gap 25d


def test_key_account_silent_fires_the_first_microsecond_after_60_days() -> None:
    run, outputs = replay(KEY_ACCOUNT, DEFAULT, until=day(185))
    assert steps(outputs) == [(day(0), "assigned", None, "C"), (day(25), "upgraded", "C", "B"),
                              (day(125), "upgraded", "B", "A")]
    warning = run.advance_to(day(185) + US)
    assert churn_steps(warning) == [(day(185) + US, "churn.warning", "key_account_silent")]
    assert warning[0].data.metrics["tier"] == "A"
    assert run.states["k"].churn_rule == "key_account_silent"


def test_overdue_uses_three_times_the_average_gap() -> None:
    events = [order("o", day(10 * i), 100) for i in range(3)]  # avg gap 10d: overdue after 30d
    run, outputs = replay(events, DEFAULT, until=day(50))
    assert churn_steps(outputs) == []
    warning = run.advance_to(day(50) + US)
    assert churn_steps(warning) == [(day(50) + US, "churn.warning", "overdue")]
    assert warning[0].data.metrics["avg_days_between_orders"] == 10.0


def test_overdue_needs_two_orders() -> None:
    _, outputs = replay([order("o", day(0), 100)], DEFAULT, until=day(1000))
    assert churn_steps(outputs) == []


def test_a_new_order_recovers_an_overdue_customer() -> None:
    events = [*(order("o", day(10 * i), 100) for i in range(3)), order("o", day(70), 100)]
    _, outputs = replay(events, DEFAULT, until=day(70))
    assert churn_steps(outputs) == [(day(50) + US, "churn.warning", "overdue"),
                                    (day(70), "churn.recovered", "overdue")]


# --- conditions that read the tier itself ------------------------------------------------------

SOFT_LANDING = policy("""
    name: soft-landing
    version: "1"
    windows: [365d]
    tiers:
      - id: A
        when: revenue_365d >= 1000.0
      - id: B                       # key accounts that stop qualifying land on B first
        when: tier == "A" || revenue_365d >= 500.0
      - id: C
        when: orders_365d >= 1
      - id: D
    downgrade: {grace: 14d, max_steps: 1, warn_before: 0d}
    """)
LANDED = [order("c", day(0), 1000, "o1"), refund("c", day(5), 800, "o1")]  # B-eligible from 5


def test_a_move_that_changes_eligibility_starts_the_next_grace_period_at_once() -> None:
    # Once in B, `tier == "A"` is false: the customer is eligible for C only, so a new grace
    # period starts at the downgrade instant, exactly as if the eligibility had changed by time.
    _, outputs = replay(LANDED, SOFT_LANDING, until=day(400))
    assert steps(outputs) == [(day(0), "assigned", None, "A"), (day(19), "downgraded", "A", "B"),
                              (day(33), "downgraded", "B", "C"),
                              (day(379), "downgraded", "C", "D")]


def test_an_event_no_condition_reads_changes_no_decision() -> None:
    _, quiet = replay(LANDED, SOFT_LANDING, until=day(400))
    _, visited = replay([*LANDED, touch("c", day(20))], SOFT_LANDING, until=day(400))
    assert steps(visited) == steps(quiet)


# --- the time machine --------------------------------------------------------------------------

SCENARIOS = {
    "ladder walk": (ladder(), [*A_THEN_C, order("c", day(60), 500, "o2")]),
    "churn": (CHURN, [order("c", day(0), 10, "o1"), touch("c", day(10), "complaint"),
                      touch("c", day(11), "complaint"), order("c", day(20), 10, "o2")]),
    "key account": (DEFAULT, KEY_ACCOUNT),
}


@pytest.mark.parametrize("name", SCENARIOS)
def test_next_change_is_always_after_the_clock(name: str) -> None:
    compiled, events = SCENARIOS[name]
    state: CustomerState | None = None
    for event in events:
        state, _ = apply(state, event, compiled)
        assert state is not None
        assert state.next_change_at is None or state.next_change_at > state.clock
        while state.next_change_at is not None and state.next_change_at < day(500):
            before = state.next_change_at
            state, _ = advance(state, compiled, before)
            assert state.clock == before
            assert state.next_change_at is None or state.next_change_at > state.clock


def test_advance_before_the_next_change_does_nothing() -> None:
    state, _ = fold(A_THEN_B, ladder())
    assert state is not None and state.next_change_at == day(12)
    assert advance(state, ladder(), day(12) - US) == (state, [])


def test_advance_runs_every_change_due_up_to_now() -> None:
    state, _ = fold(A_THEN_C, ladder())
    assert state is not None
    state, outputs = advance(state, ladder(), day(40))
    assert [s[1] for s in steps(outputs)] == ["downgrade_warning", "downgraded",
                                              "downgrade_warning", "downgraded"]
    assert state.tier == "C"


# --- output ids and sequences ------------------------------------------------------------------

def test_output_ids_are_deterministic() -> None:
    compiled, events = SCENARIOS["ladder walk"]
    _, first = replay(events, compiled, until=day(200))
    _, again = replay(events, compiled, until=day(200))
    assert [o.document() for o in first] == [o.document() for o in again]
    assert len({o.id for o in first}) == len(first)


def test_output_ids_differ_by_customer_and_policy_version() -> None:
    _, mine = replay([order("c", day(0), 150)], ladder())
    _, theirs = replay([order("d", day(0), 150)], ladder())
    newer = policy(ladder().policy.model_dump_json().replace('"version":"1"', '"version":"2"'))
    _, versioned = replay([order("c", day(0), 150)], newer)
    assert len({mine[0].id, theirs[0].id, versioned[0].id}) == 3


def test_sequence_strictly_increases_per_customer() -> None:
    events = [*A_THEN_C, *(order("x", day(d), 120, f"x{d}") for d in (0, 3, 50))]
    _, outputs = replay(events, ladder(), until=day(300))
    for customer in ("c", "x"):
        sequences = [int(o.sequence) for o in outputs if o.subject == customer]
        assert sequences == list(range(1, len(sequences) + 1))


# --- erasure and replay ------------------------------------------------------------------------

def test_erasure_returns_none() -> None:
    state, _ = fold(A_THEN_B, ladder())
    assert apply(state, erase("c", day(6)), ladder()) == (None, [])
    assert apply(None, erase("c", day(6)), ladder()) == (None, [])


def test_erased_customer_gets_no_more_time_driven_events() -> None:
    run, outputs = replay([*A_THEN_B, erase("c", day(6))], ladder(), until=day(400))
    assert steps(outputs) == [(day(0), "assigned", None, "A")]
    assert run.states == {}


def test_customer_returning_after_erasure_starts_a_new_history() -> None:
    events = [order("c", day(0), 150, "o1"), erase("c", day(1)), order("c", day(2), 150, "o2")]
    _, outputs = replay(events, ladder(), until=day(3))
    assert [(int(o.sequence), short(o.type)) for o in outputs] == [(1, "assigned"),
                                                                   (1, "assigned")]
    assert outputs[0].id != outputs[1].id


def test_rejected_event_does_not_lose_outputs_due_before_it() -> None:
    # Replay.feed lets time pass for every customer before applying the event; if the event is
    # then rejected, the transitions that time produced must still reach the caller.
    run = Replay(DEFAULT)
    seen = run.feed(order("x", day(0), 100))
    with pytest.raises(InvalidEventError):
        seen += run.feed(order("y", day(400), 10, currency="JPY"))
    seen += run.advance_to(day(400))
    assert run.states["x"].tier == "D"
    assert [step for _, step, _, _ in steps(seen)] == ["assigned", "downgrade_warning",
                                                       "downgraded"]
