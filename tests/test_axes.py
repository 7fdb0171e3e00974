"""Further classifications (policy `axes`) in replay: exact instants, independence from the value
tier, hysteresis, ids, policy errors, and the views that show them."""

from __future__ import annotations

import hashlib
import json
from collections import Counter

import msgspec
import pytest
import yaml
from msgspec.structs import replace

from models import stored
from models.errors import PolicyError
from models.instants import format_instant
from models.outputs import CustomerTier, Output, OutputEvent, tier_fields
from rules.decisions import explain
from rules.partition import Partition
from streams.cli import policy_diff
from streams.policies import load_policy
from streams.view.redis_view import parse_record, tier_record
from tests.builders import US, day, erase, fold, order, policy, replay
from tests.example_run import AS_OF, example_events

LIFECYCLE = """
    name: axes
    version: "1"
    windows: [30d, 365d]
    tiers:
      - {id: A, when: orders_365d >= 3}
      - {id: B}
    axes:
      lifecycle:
        classes:
          - {id: new, when: "orders_total >= 1 && days_since_first_order <= 30.0"}
          - {id: active, when: orders_30d >= 1}
          - {id: quiet, when: orders_total >= 1}
          - {id: prospect}
        downgrade: {grace: 0d, max_steps: 3}
    """


def moves(outputs: list[Output], axis: str | None = None) -> list[tuple[str, str, str | None,
                                                                          str | None]]:
    """(type without `tierstream.`, time, from, to) of each tier move, or of each move on
    `axis`."""
    if axis is None:
        return [(o.type[11:], o.time, o.data.from_tier, o.data.to_tier) for o in outputs
                if o.type.startswith("tierstream.tier.")]
    return [(o.type[11:], o.time, o.data.from_class, o.data.to_class) for o in outputs
            if o.type.startswith("tierstream.axis.") and o.data.axis == axis]


def at(instant: int) -> str:
    return format_instant(instant)


def test_a_class_changes_with_time_alone_at_the_exact_instant() -> None:
    _, outputs = replay([order("c", day(0), 10, "o1"), order("c", day(10), 10, "o2")],
                        policy(LIFECYCLE), until=day(100))
    assert moves(outputs, "lifecycle") == [
        ("axis.assigned", at(day(0)), None, "new"),
        # days_since_first_order <= 30.0 stops holding just after day 30
        ("axis.downgraded", at(day(30) + US), "new", "active"),
        # the order of day 10 leaves the 30-day window at day 40
        ("axis.downgraded", at(day(40)), "active", "quiet")]


def test_the_tier_and_an_axis_change_independently() -> None:
    events = [order("c", day(n), 10, f"o{n}") for n in (0, 50, 60)]
    _, outputs = replay(events, policy(LIFECYCLE), until=day(100))
    assert moves(outputs) == [("tier.assigned", at(day(0)), None, "B"),
                              ("tier.upgraded", at(day(60)), "B", "A")]
    assert moves(outputs, "lifecycle") == [
        ("axis.assigned", at(day(0)), None, "new"),
        ("axis.downgraded", at(day(30) + US), "new", "quiet"),
        ("axis.upgraded", at(day(50)), "quiet", "active"),   # the tier stays B
        ("axis.downgraded", at(day(90)), "active", "quiet")]  # the tier stays A
    upgrade = next(o for o in outputs if o.type == "tierstream.axis.upgraded")
    assert upgrade.data.metrics == {"days_since_first_order": 50.0, "orders_30d": 1,
                                    "orders_total": 2}
    assert upgrade.data.reason == "qualifies for active: orders_30d >= 1"


HYSTERESIS = """
    name: potential
    version: "1"
    windows: [90d]
    tiers:
      - {id: T}
    axes:
      potential:
        classes:
          - {id: high, when: revenue_90d >= 100.0}
          - {id: normal}
        downgrade: {grace: 14d, warn_before: 5d}
    """


def test_an_axis_has_its_own_grace_period_and_warning() -> None:
    _, outputs = replay([order("c", day(0), 150, "o1")], policy(HYSTERESIS), until=day(200))
    assert moves(outputs, "potential") == [
        ("axis.assigned", at(day(0)), None, "high"),
        ("axis.downgrade_warning", at(day(99)), "high", "normal"),   # 5 days ahead
        ("axis.downgraded", at(day(104)), "high", "normal")]          # 14 days after day 90
    warning = next(o for o in outputs if o.type == "tierstream.axis.downgrade_warning")
    assert warning.data.due_at == at(day(104))
    assert moves(outputs) == [("tier.assigned", at(day(0)), None, "T")]


def test_qualifying_again_within_the_grace_period_cancels_the_move() -> None:
    _, outputs = replay([order("c", day(0), 150, "o1"), order("c", day(95), 150, "o2")],
                        policy(HYSTERESIS), until=day(150))
    assert moves(outputs, "potential") == [("axis.assigned", at(day(0)), None, "high")]


def test_ids_are_deterministic_and_unique() -> None:
    events = [order("c", day(n), 10, f"o{n}") for n in (0, 50, 60)]
    first = replay(events, policy(LIFECYCLE), until=day(400))[1]
    again = replay(events, policy(LIFECYCLE), until=day(400))[1]
    assert [o.id for o in first] == [o.id for o in again]
    assert len({o.id for o in first}) == len(first)
    assert [int(o.sequence) for o in first] == list(range(1, len(first) + 1))


def format_1(record: bytes) -> bytes:
    """An output as the envelope's format 1 wrote it: types under `tierstream.`, one source per
    policy, the sequence not padded, no partitionkey and no dataschema (the rest is compared
    byte for byte)."""
    event = json.loads(record)
    assert event["type"].startswith("io.github.tierstream.")
    event["type"] = event["type"].replace("io.github.", "", 1)
    assert event.pop("partitionkey") == event["subject"]
    assert event.pop("dataschema").startswith("urn:tierstream:schema:")
    policy_source, _, customer = event["source"].rpartition("/customers/")
    assert customer == event["subject"]
    event.update(source=policy_source, sequence=str(int(event["sequence"])))
    return msgspec.json.encode(event)


def test_a_policy_without_axes_writes_what_it_wrote_before_axes() -> None:
    # The default policy less its lifecycle axis is the default policy before axes existed
    # (version 2026-12-04); these are the hashes of its outputs and customer-tiers records on the
    # example history as the code before axes wrote them (3fed41c).
    data = yaml.safe_load(load_policy("default").policy.model_dump_json())
    data.pop("axes")
    data["version"] = "2026-12-04"
    run, outputs = replay(example_events(), policy(yaml.safe_dump(data)), until=AS_OF)
    digest = hashlib.sha256(b"\n".join(format_1(o.record()) for o in outputs)).hexdigest()
    assert digest == "5fe501216f032863dd9c2e8b01eb070103e8fdf34afc986b1ba239c85378e3d0"
    records = b"\n".join(CustomerTier.record(s) for _, s in sorted(run.states.items()))
    assert hashlib.sha256(records).hexdigest() == \
        "d3ce385c199e4677a138dd3de4229ec61923c747b12a92c430dbd2bcdec5bdad"


def test_a_place_on_an_axis_the_policy_no_longer_has_is_dropped() -> None:
    state, _ = fold([order("c", day(0), 10, "o1")], policy(LIFECYCLE))
    assert state is not None and [p.axis for p in state.axes] == ["lifecycle"]
    without = policy(LIFECYCLE.split("    axes:")[0])
    state, outputs = fold([order("c", day(1), 10, "o2")], without, state)
    assert state is not None and state.axes == ()
    assert "axes" not in json.loads(CustomerTier.record(state))
    assert not any(o.type.startswith("tierstream.axis.") for o in outputs)


def test_outputs_and_records_write_their_contract() -> None:
    run, outputs = replay([order("c", day(0), 150, "o1")], policy(HYSTERESIS), until=day(200))
    for output in outputs:
        written = output.record()
        assert written == OutputEvent.model_validate_json(written).model_dump_json().encode()
    state = run.states["c"]
    record = CustomerTier.record(state)
    assert record == CustomerTier.from_state(state).model_dump_json().encode()
    assert json.loads(record)["axes"] == {"potential": "normal"}
    assert json.loads(parse_record("c", record).axes) == {"potential": "normal"}
    for written in (state, replace(state, axes=(), tier_since=None)):  # (as the worker offers)
        assert tier_record("c", tier_fields(written)) == \
            parse_record("c", CustomerTier.record(written))
    older = {k: v for k, v in json.loads(record).items() if k != "axes"}  # an older worker's
    assert parse_record("c", json.dumps(older).encode()).axes == "{}"
    assert CustomerTier.model_validate(older).axes == {}


def test_explain_shows_each_axis() -> None:
    run, _ = replay([order("c", day(0), 150, "o1")], policy(HYSTERESIS), until=day(95))
    compiled = policy(HYSTERESIS)
    found = explain(run.states["c"], compiled, day(95))["axes"]
    assert found == {"potential": {"class": "high", "since": at(day(0)),
                                   "eligible_class": "normal",
                                   "reason": "normal is the default class: no condition above "
                                             "it holds",
                                   "downgrade_due": at(day(104))}}


def test_policy_diff_has_a_matrix_per_axis() -> None:
    events = [order("c1", day(0), 10, "a"), order("c2", day(0), 10, "b"),
              order("c2", day(80), 10, "c")]
    without = policy(LIFECYCLE.split("    axes:")[0])
    diff, _ = policy_diff.from_events(events, without, policy(LIFECYCLE), as_of=day(90))
    assert diff.axes == {"lifecycle": {("-", "quiet"): 1, ("-", "active"): 1}}
    assert policy_diff.as_json(diff)["axes"]["lifecycle"] == [
        {"from": "-", "to": "active", "customers": 1}, {"from": "-", "to": "quiet", "customers": 1}]
    state = replay(events, policy(LIFECYCLE), until=day(90))[0].states["c2"]
    live = policy_diff.from_states([state], policy(LIFECYCLE), without, day(200))
    assert live.axes == {"lifecycle": {("active", "-"): 1}}


@pytest.mark.parametrize(("change", "message", "field"), [
    ("axes: {tier: {classes: [{id: x}]}}", "`tier` is the value tier's axis", "axes.tier"),
    ("axes: {life: {classes: [{id: x, when: orders_total >= 1}]}}",
     "the last class (x) is the default class", "axes.life.classes[0].when"),
    ("axes: {life: {classes: [{id: x}, {id: y}]}}", "class x needs a `when` condition",
     "axes.life.classes[0]"),
    ("axes: {life: {classes: [{id: x, when: orders_total >= 1}, {id: x}]}}",
     "x is listed more than once in axes.life.classes", "axes.life.classes[1]"),
    ("axes: {life: {classes: [{id: x, when: ordrs_total >= 1}, {id: y}]}}",
     "did you mean 'orders_total'", "axes.life.classes[0].when"),
])
def test_policy_errors_name_the_axis_field(change: str, message: str, field: str) -> None:
    text = 'name: p\nversion: "1"\ntiers:\n  - {id: T}\n' + change + "\n"
    with pytest.raises(PolicyError) as caught:
        policy(text)
    assert message in str(caught.value)
    assert caught.value.field == field
    assert caught.value.line is not None


def test_a_partition_counts_its_customers_per_class() -> None:
    events = [order("c1", day(0), 10, "a"), order("c2", day(0), 10, "b"),
              order("c2", day(80), 10, "c"), order("c3", day(5), 10, "d"), erase("c3", day(6))]
    run, _ = replay(events, policy(LIFECYCLE), until=day(90))
    counted = +run._customers.classes  # (zero counts left out)
    assert counted == Counter((place.axis, place.name) for state in run.states.values()
                              if state is not None for place in state.axes)
    assert counted == {("lifecycle", "quiet"): 1, ("lifecycle", "active"): 1}
    recovering = Partition(0, policy(LIFECYCLE), {})
    for customer, state in run.states.items():
        raw = stored.encode(0, state)
        recovering.recovered(customer, *stored.peek(raw)[1:])
    assert +recovering.classes == counted
