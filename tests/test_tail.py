"""`tierstream tail` without a broker: type names, filters and the readable line."""

from __future__ import annotations

import pytest
from rich.console import Console

from models.outputs import FollowupData, OutputEvent
from streams.cli.tail import TYPES, Filter, full_types, line, short_type
from tests.example_run import example_run


def outputs() -> tuple[OutputEvent, ...]:
    """The example run's outputs as `tail` reads them from Kafka."""
    return tuple(OutputEvent.model_validate_json(o.record()) for o in example_run()[1])


def first(kind: str) -> OutputEvent:
    return next(o for o in outputs() if o.canonical_type == kind)


def plain(event: OutputEvent) -> str:
    console = Console(width=300, color_system=None)
    with console.capture() as captured:
        console.print(line(event), soft_wrap=True)
    return captured.get().rstrip("\n")


@pytest.mark.parametrize(("name", "expected"), [
    ("upgraded", {"tierstream.tier.upgraded"}),
    ("downgrade_warning", {"tierstream.tier.downgrade_warning"}),
    ("churn.warning", {"tierstream.churn.warning"}),
    ("warning", {"tierstream.churn.warning"}),
    ("recovered", {"tierstream.churn.recovered"}),
    ("tierstream.tier.assigned", {"tierstream.tier.assigned"}),
    ("io.github.tierstream.tier.assigned", {"tierstream.tier.assigned"}),
    ("com.example.crm.churn.warning", {"tierstream.churn.warning"}),
    ("due", {"tierstream.followup.due"}),
    ("followup", {"tierstream.followup.due", "tierstream.followup.overdue",
                  "tierstream.followup.done"}),
    ("churn", {"tierstream.churn.warning", "tierstream.churn.recovered"}),
    ("axis.upgraded", {"tierstream.axis.upgraded"}),
    ("axis", {"tierstream.axis.assigned", "tierstream.axis.upgraded",
              "tierstream.axis.downgraded", "tierstream.axis.downgrade_warning"}),
])
def test_type_names(name: str, expected: set[str]) -> None:
    assert full_types(name) == expected


def test_every_type_has_a_short_name_that_finds_it_alone() -> None:
    for kind in TYPES:
        assert full_types(short_type(kind)) == {kind}


def test_unknown_type_names_the_known_ones() -> None:
    with pytest.raises(ValueError, match="expected one of assigned, upgraded"):
        full_types("promoted")


@pytest.mark.parametrize(("wanted", "expected"), [
    (Filter.of(), None),
    (Filter.of(customers=["alice"]), {"alice"}),
    (Filter.of(customers=["alice", "bob"], types=["churn.warning"]), {"alice", "bob"}),
    (Filter.of(tiers=["D"]), {"carol", "dave"}),           # from D (dave) or to D (carol)
    (Filter.of(types=["downgraded", "downgrade_warning"]), {"carol"}),
    (Filter.of(customers=["erin"], tiers=["A"]), set()),
    (Filter.of(axes=["lifecycle"], tiers=["reactivated"]), set()),
    (Filter.of(axes=["lifecycle"], tiers=["prospect"]), {"carol", "dave"}),
])
def test_filters(wanted: Filter, expected: set[str] | None) -> None:
    shown = [o for o in outputs() if wanted.matches(o)]
    if expected is None:
        assert shown == list(outputs())
    else:
        assert {o.subject for o in shown} == expected


def test_tier_filter_matches_from_or_to() -> None:
    shown = [(o.subject, o.canonical_type, *((o.data.tier,) * 2 if isinstance(o.data, FollowupData)
                                   else (o.data.from_tier, o.data.to_tier)))
             for o in outputs() if Filter.of(tiers=["B"]).matches(o)]
    assert ("alice", "tierstream.tier.upgraded", "C", "B") in shown
    assert ("alice", "tierstream.tier.upgraded", "B", "A") in shown
    assert ("alice", "tierstream.followup.done", "B", "B") in shown  # a follow-up's tier


def test_axis_filter_keeps_one_axis() -> None:
    lifecycle = [o for o in outputs() if Filter.of(axes=["lifecycle"]).matches(o)]
    assert lifecycle and all(o.canonical_type.startswith("tierstream.axis.") for o in lifecycle)
    value = [o for o in outputs() if Filter.of(axes=["tier"]).matches(o)]
    assert len(value) + len(lifecycle) == len(outputs())
    assert not any(o.canonical_type.startswith("tierstream.axis.") for o in value)


def test_axis_line_names_the_axis() -> None:
    text = plain(next(o for o in outputs() if o.canonical_type == "tierstream.axis.downgraded"
                      and o.data.to_class == "at_risk"))
    assert text.split()[2:7] == ["downgrade", "lifecycle", "active", "→", "at_risk"]
    assert "qualifies for at_risk: orders_365d >= 1" in text


def test_follow_up_line_names_the_owner() -> None:
    text = plain(first("tierstream.followup.done"))
    assert text.split()[:4] == ["2026-02-20T07:00:00Z", "alice", "contacted", "B"]
    assert "contacted at 2026-02-20T07:00:00Z, follow-up closed" in text
    assert text.endswith("(owner rep-wang)")


def test_upgrade_line() -> None:
    text = plain(first("tierstream.tier.upgraded"))
    assert text.split()[:5] == ["2026-01-25T02:00:00Z", "alice", "upgrade", "C", "→"]
    assert "qualifies for B: revenue_365d >= 5000.0 || orders_90d >= 3" in text
    assert "(orders_90d=2, revenue_365d=6550)" in text


def test_warning_and_churn_lines() -> None:
    warning = plain(first("tierstream.tier.downgrade_warning"))
    assert warning.split()[1:6] == ["carol", "warning", "C", "→", "D"]
    assert "moves down to D at 2026-01-23T02:00:00Z" in warning
    churn = plain(first("tierstream.churn.warning"))
    assert churn.split()[1:4] == ["alice", "churn", "A"]   # one tier: it did not change
    assert "churn rule overdue holds" in churn


def test_customer_ids_are_not_markup() -> None:
    event = first("tierstream.tier.assigned")
    odd = event.model_copy(update={"subject": "[bold]x[/]"})
    assert "[bold]x[/]" in plain(odd)
