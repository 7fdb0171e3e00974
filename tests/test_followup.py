"""Follow-up cadence (rules/followup.py) in replay, at exact instants."""

from __future__ import annotations

import pytest

from models.errors import PolicyError
from models.instants import format_instant
from models.outputs import Output
from rules.decisions import explain
from rules.replay import Replay
from tests.builders import day, order, policy, replay, touch

PLANS = policy("""
    name: plans
    version: "1"
    windows: [365d]
    tiers:
      - {id: A, when: orders_365d >= 3}
      - {id: B, when: orders_365d >= 1}
      - {id: D}
    followup:
      contacts: [call, visit]
      tiers:
        A: {every: 14d, escalate_after: 7d}
        B: {every: 30d, channel: automated}
    """)


def followups(outputs: list[Output]) -> list[tuple[str, str, str, str | None, str | None]]:
    """(type without `tierstream.followup.`, time, due_at, last contact, owner) of each."""
    return [(o.type.rsplit(".", 1)[1], o.time, o.data.due_at, o.data.last_contact_at,
             o.data.owner) for o in outputs if o.type.startswith("tierstream.followup.")]


def at(n: float) -> str:
    return format_instant(day(n))


def key_account(*more: object) -> list:
    return [order("k", day(0), 10, f"o{i}") for i in range(3)] + list(more)


def test_a_key_account_falls_due_exactly_a_cadence_after_its_last_contact() -> None:
    _, outputs = replay(key_account(touch("k", day(2), "call", owner="rep-1"),
                                    touch("k", day(26), "visit", owner="rep-2")),
                        PLANS, until=day(60))
    assert followups(outputs) == [
        ("due", at(16), at(16), at(2), "rep-1"),
        ("overdue", at(23), at(16), at(2), "rep-1"),
        ("done", at(26), at(16), at(26), "rep-2"),
        ("due", at(40), at(40), at(26), "rep-2"),
        ("overdue", at(47), at(40), at(26), "rep-2")]
    done = next(o for o in outputs if o.type == "tierstream.followup.done")
    assert (done.data.tier, done.data.cadence, done.data.channel) == ("A", "14d", "personal")


def test_an_interaction_that_does_not_count_changes_nothing() -> None:
    counted, outputs = replay(key_account(), PLANS, until=day(30))
    opened, more = replay(key_account(touch("k", day(10), "email_open")), PLANS, until=day(30))
    assert followups(more) == followups(outputs) == [("due", at(14), at(14), None, None),
                                                     ("overdue", at(21), at(14), None, None)]
    assert opened.states["k"].contact_at is None


def test_a_move_up_after_a_long_silence_makes_the_follow_up_due_at_once() -> None:
    # B's follow-up would fall due at day 45, 30 days after the call; A's was 14 days after it
    events = [order("u", day(0), 10, "o0"), touch("u", day(15), "call"),
              order("u", day(20), 10, "o1"), order("u", day(40), 10, "o2")]
    _, outputs = replay(events, PLANS, until=day(41))
    moved = [o.type for o in outputs if o.time == at(40)]
    assert moved == ["tierstream.tier.upgraded", "tierstream.followup.due"]
    assert followups(outputs) == [("due", at(40), at(40), at(15), None)]


def test_a_move_to_another_tier_closes_the_open_follow_up_and_plans_the_new_one() -> None:
    # open under C (90d, from first seen at day 0); up to A (14d) at day 100: A's is due at
    # once; down to C again once the orders leave the window: C's is due at once too
    ladder = policy("""
        name: ladder
        version: "1"
        windows: [30d]
        tiers:
          - {id: A, when: orders_30d >= 2}
          - {id: C}
        followup:
          contacts: [call]
          tiers:
            A: {every: 14d, escalate_after: 7d}
            C: {every: 90d, channel: automated}
        """)
    events = [order("m", day(0), 10, "o0"), order("m", day(99), 10, "o1"),
              order("m", day(100), 10, "o2")]
    run, outputs = replay(events, ladder, until=day(140))
    assert [(o.type.removeprefix("tierstream."), o.time, getattr(o.data, "channel", None))
            for o in outputs] == [
        ("tier.assigned", at(0), None), ("followup.due", at(90), "automated"),
        ("tier.upgraded", at(100), None), ("followup.due", at(100), "personal"),
        ("followup.overdue", at(107), "personal"),
        ("tier.downgraded", format_instant(day(129)), None),
        ("followup.due", format_instant(day(129)), "automated")]
    assert run.states["m"].followup_due == day(129)


def test_a_move_to_a_tier_without_a_plan_closes_the_follow_up() -> None:
    run, outputs = replay([order("d", day(0), 10)], PLANS, until=day(800))
    assert followups(outputs) == [("due", at(30), at(30), None, None)]
    assert outputs[-1].type == "tierstream.tier.downgraded" and outputs[-1].data.to_tier == "D"
    state = run.states["d"]
    assert (state.followup_due, state.next_change_at) == (None, None)


def test_redelivered_and_late_contacts_close_nothing_twice() -> None:
    call = touch("k", day(18), "call", event_id="call-1")
    _, once = replay(key_account(call), PLANS, until=day(35))
    run = Replay(PLANS)
    outputs = []
    for event in key_account(call, call, touch("k", day(17), "visit")):
        outputs += run.feed(event)
    outputs += run.advance_to(day(35))
    assert followups(outputs) == followups(once) == [
        ("due", at(14), at(14), None, None), ("done", at(18), at(14), at(18), None),
        ("due", at(32), at(32), at(18), None)]


def test_days_since_last_contact_wakes_a_customer_when_it_crosses() -> None:
    quiet = policy("""
        name: quiet
        version: "1"
        tiers:
          - {id: A, when: days_since_last_contact < 30.0 && orders_total >= 1}
          - {id: B}
        followup:
          contacts: [call]
          tiers:
            B: {every: 1000d}
        """)
    _, outputs = replay([order("q", day(0), 10), touch("q", day(1), "call")], quiet,
                        until=day(60))
    assert [(o.type, o.time) for o in outputs] == [
        ("tierstream.tier.assigned", at(0)), ("tierstream.tier.downgraded", at(31))]
    _, outputs = replay([order("q", day(0), 10)], quiet, until=day(60))
    assert [(o.type, o.time) for o in outputs] == [  # none: counted from first seen
        ("tierstream.tier.assigned", at(0)), ("tierstream.tier.downgraded", at(30))]


@pytest.mark.parametrize(("plans", "error"), [
    ("{E: {every: 14d}}", "follow-up plan for E, which is not a tier"),
    ("{A: {every: 0d}}", "every must be longer than zero"),
    ("{A: {every: 7d, escalate_after: 0d}}", "leave it out"),
    ("{A: {every: 14d, channel: sms}}", "channel"),
])
def test_a_plan_the_policy_cannot_follow_is_refused(plans: str, error: str) -> None:
    with pytest.raises(PolicyError, match=error):
        policy(f"""
            name: bad
            version: "1"
            tiers:
              - {{id: A, when: orders_total >= 1}}
              - {{id: B}}
            followup:
              contacts: [call]
              tiers: {plans}
            """)


def test_a_lookup_shows_the_open_follow_up_or_when_the_next_falls_due() -> None:
    run, _ = replay(key_account(), PLANS, until=day(15))
    shown = explain(run.states["k"], PLANS, day(15))["followup"]
    assert shown == {"cadence": "14d", "channel": "personal", "open": True, "overdue": False,
                     "due_at": at(14), "last_contact_at": None, "owner": None}
    run, _ = replay(key_account(touch("k", day(20), "call", owner="rep-1")), PLANS,
                    until=day(21))
    shown = explain(run.states["k"], PLANS, day(21))["followup"]
    assert (shown["open"], shown["due_at"], shown["owner"]) == (False, at(34), "rep-1")


def test_contacts_count_only_the_kinds_that_count_and_are_forgotten_with_their_window() -> None:
    engaged = policy("""
        name: engaged
        version: "1"
        windows: [30d]
        tiers:
          - {id: A, when: contacts_30d >= 2}
          - {id: B}
        followup:
          contacts: [call, visit]
          tiers: {A: {every: 30d}}
        """)
    events = [order("e", day(0), 10), touch("e", day(1), "call"),
              touch("e", day(2), "email_open"), touch("e", day(3), "visit")]
    _, outputs = replay(events, engaged, until=day(40))
    assert [(o.type, o.time) for o in outputs if o.type.startswith("tierstream.tier.")] == [
        ("tierstream.tier.assigned", at(0)), ("tierstream.tier.upgraded", at(3)),
        ("tierstream.tier.downgraded", at(31))]  # the call leaves the window


@pytest.mark.parametrize("metric", ["contacts_30d >= 1", "days_since_last_contact < 30.0",
                                    "days_since_last_contact_pct < 0.5"])
def test_a_contact_metric_needs_the_follow_up_contacts(metric: str) -> None:
    with pytest.raises(PolicyError, match="needs the policy's `followup.contacts`"):
        policy(f"""
            name: bad
            version: "1"
            windows: [30d]
            tiers:
              - {{id: A, when: "{metric}"}}
              - {{id: B}}
            """)


SILENCE = policy("""
    name: silence
    version: "1"
    tiers:
      - {id: quiet, when: "days_since_last_visit > 60.0"}
      - {id: seen}
    """)


def test_days_since_the_last_interaction_of_a_kind_wake_a_customer_where_they_cross() -> None:
    _, outputs = replay([order("v", day(0), 10), touch("v", day(10), "visit"),
                         touch("v", day(20), "email_open")], SILENCE, until=day(100))
    assert [(o.type, o.time) for o in outputs] == [  # (`>`: the first µs past 60 days)
        ("tierstream.tier.assigned", at(0)),
        ("tierstream.tier.upgraded", format_instant(day(70) + 1))]
    _, outputs = replay([order("n", day(0), 10)], SILENCE, until=day(100))
    assert outputs[-1].time == format_instant(day(60) + 1)  # none: from when first seen


def test_a_late_interaction_of_a_kind_counts_only_if_it_is_the_latest() -> None:
    run = Replay(SILENCE)
    for event in [order("v", day(0), 10), touch("v", day(50), "visit"),
                  touch("v", day(40), "visit"), touch("v", day(50), "visit")]:
        run.feed(event)
    assert run.states["v"].latest == (("visit", day(50)),)
