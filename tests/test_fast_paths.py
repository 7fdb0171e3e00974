"""The engine's fast paths equal the general ones: conditions compiled to Python agree with CEL,
time comparisons behind a settled part need no wake-up, a window changes when forgetting an
order first flips a comparison, output ids are UUIDv5, outputs go to the partitions Kafka's
default partitioner picks."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime

import cel
import pytest
from aiokafka.partitioner import DefaultPartitioner
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models.instants import MICROS_PER_DAY, days_between, format_instant, to_micros
from models.state import CustomerState, Order
from rules import horizon, metrics
from rules.compiled import CompiledPolicy
from rules.conditions import FLIPS_PASSED, Condition
from rules.decisions import _NAMESPACE, uuid5
from rules.engine import advance, apply
from rules.native import compile_first, compile_predicate
from streams.worker import runtime
from tests.builders import T0, day, order, policy

NATIVE = [
    "orders_90d >= 3",
    "revenue_365d >= 500.0 && orders_365d >= 6",
    "revenue_365d >= 100.0 || orders_90d >= 3",
    "orders_365d >= 1.0",
    "6 <= orders_365d",
    "revenue_365d < -1.5e2",
    "orders_90d != 0x2",
    'tier == "A" && (days_since_last_order > 60.0 || orders_90d == 2)',
    "tier != 'B' || tier < \"C\"",
    "revenue_365d > revenue_30d && orders_total >= 2",
    "((orders_90d >= 3))",
    "orders_total >= 2 && days_since_last_order > 3.0 * avg_days_between_orders",
    "(revenue_30d + revenue_365d) / 2.0 >= 100.0 || -revenue_30d < -50.0",
    "orders_90d + orders_365d * 2 > 5 && (days_since_last_order - 1.5) / -0.5 < 2.0",
]
CEL_ONLY = [
    "revenue_30d / revenue_365d > 0.5",
    "orders_90d / 2 > 1",
    "revenue_30d / 0.0 > 1.0",
    "orders_90d % 2 == 0",
    "orders_90d >= 3u",
    "!(orders_90d >= 3)",
    "int(days_since_last_order) > 14",
    'tier == "A\\n"',
    "orders_90d >= 3 ? true : false",
    "tier in ['A', 'B']",
    "size(tier) > 0",
]
VALUES = st.fixed_dictionaries({
    "orders_90d": st.integers(0, 8), "orders_365d": st.integers(0, 8),
    "orders_total": st.integers(0, 8),
    "revenue_365d": st.sampled_from([0.0, 99.99, 100.0, 150.0, 500.0, 1e9, -150.0]),
    "revenue_30d": st.sampled_from([0.0, 100.0, 150.0]),
    "days_since_last_order": st.sampled_from([0.0, 60.0, 60.000001, 0.1 + 0.2]),
    "avg_days_between_orders": st.sampled_from([0.0, 20.0, 20.000001, 0.3, 1e308]),
    "tier": st.sampled_from(["", "A", "B", "C"]),
})


@pytest.mark.parametrize("source", CEL_ONLY)
def test_other_shapes_stay_with_cel(source: str) -> None:
    assert compile_predicate(source) is None


@settings(max_examples=200, deadline=None)
@given(values=VALUES)
def test_native_equals_cel(values: dict) -> None:
    for source in NATIVE:
        native = compile_predicate(source)
        assert native is not None, source
        program = cel.compile(source)
        expected = program.execute({v: values[v] for v in program.variables()})
        assert native(values) is expected, (source, values)


@settings(max_examples=200, deadline=None)
@given(values=VALUES, picked=st.lists(st.sampled_from(NATIVE), max_size=4))
def test_the_first_condition_that_holds_is_found_in_one_call_as_in_cel(
        values: dict, picked: list[str]) -> None:
    programs = [cel.compile(source) for source in picked]
    expected = next((i for i, p in enumerate(programs)
                     if p.execute({v: values[v] for v in p.variables()})), len(picked))
    first = compile_first(picked)
    assert first is not None and first(values) == expected


def test_a_policy_with_a_condition_cel_alone_evaluates_decides_condition_by_condition() -> None:
    tiers = policy("""
        name: mixed
        version: "1"
        currency: USD
        windows: [90d]
        tiers:
          - {id: A, when: "orders_90d % 2 == 1"}
          - {id: B, when: "orders_90d >= 2"}
          - {id: C}
        """)
    assert tiers.tier._first is None  # (one condition is CEL only)
    assert [tiers.eligible({"orders_90d": n}) for n in range(4)] == [2, 0, 1, 0]


@settings(max_examples=100, deadline=None)
@given(values=VALUES, growing=st.floats(0.0, 1.0))
def test_native_time_gaps_equal_cel(values: dict, growing: float) -> None:
    for source in NATIVE + ["int(days_since_last_order) > 14 || days_since_last_order < 0.3"]:
        gaps = Condition(source, "tiers[0].when").timed
        if not gaps:
            continue
        context = {v: values[v] for v in gaps.variables}
        context |= {f"_growth_{v}": growing for v in gaps.time_variables}
        assert gaps.native is not None
        assert gaps.native(context) == gaps.program.execute(context), source


SETTLED = [
    "orders_total >= 2 && days_since_last_order > 3.0 * avg_days_between_orders",
    'tier == "A" && days_since_last_order > 60.0 || revenue_365d >= 500.0',
    "(orders_90d >= 3 || tier == 'B') && days_since_last_order < 30.0 && orders_total != 1",
    "orders_90d >= 3 && revenue_30d > 0.0 || orders_365d == 0 && days_since_last_order > 1.0",
    "orders_90d >= 3 ? days_since_last_order > 1.0 : false",
]


@settings(max_examples=200, deadline=None)
@given(values=VALUES, later=st.sampled_from([0.0, 0.5, 29.0, 61.0, 1e6]))
def test_a_settled_condition_does_not_change_with_time(values: dict, later: float) -> None:
    for source in SETTLED:
        condition = Condition(source, "churn[0].when")
        assert condition.steady is not None
        if condition.steady.holds(values):
            moved = values | {"days_since_last_order": later}
            assert condition.holds(moved) == condition.holds(values), (source, values)


def test_settled_conditions_need_no_wake_up() -> None:
    overdue = Condition("orders_total >= 2 && days_since_last_order > 3.0 * "
                        "avg_days_between_orders", "churn[0].when")
    values = {"orders_total": 1, "days_since_last_order": 0.0, "avg_days_between_orders": 0.0}
    anchors = {"days_since_last_order": T0}  # the last order: 0.0 days at T0
    assert overdue.next_flip(values, anchors, T0) is None
    values.update(orders_total=2, avg_days_between_orders=1.0)
    # `>`: false on the crossing itself, true a microsecond after
    assert overdue.next_flip(values, anchors, T0) == day(3) + 1

    either = Condition("revenue_total > 50.0 || days_since_last_order > 10.0", "tiers[0].when")
    values = {"revenue_total": 60.0, "days_since_last_order": 0.0}
    assert either.next_flip(values, anchors, T0) is None
    values["revenue_total"] = 10.0
    assert either.next_flip(values, anchors, T0) == day(10) + 1


def test_a_condition_changes_at_the_flip_that_changes_it_not_at_every_flip() -> None:
    overdue = Condition("days_since_last_order > 30.0 && days_since_last_order >= 3.0 * "
                        "avg_days_between_orders", "churn[0].when")
    anchors = {"days_since_last_order": day(-5)}  # the last order 5 days before T0
    values = {"days_since_last_order": 5.0, "avg_days_between_orders": 20.0}
    assert overdue.next_flip(values, anchors, T0) == day(55)  # 60 days: `>=` on the crossing
    values["avg_days_between_orders"] = 2.0  # then `> 30.0` decides, a microsecond after day 30
    assert overdue.next_flip(values, anchors, T0) == day(25) + 1
    # a comparison the gaps cannot solve is looked at daily: FLIPS_PASSED days, then again
    daily = Condition("days_since_last_order > 30.0 && "
                      "days_since_last_order * days_since_last_order > 1600.0", "churn[0].when")
    assert daily.timed.daily
    assert daily.next_flip(values, anchors, T0) == day(FLIPS_PASSED)
    # it holds a day later (40.5 days): found there, then placed at its first instant
    assert daily.next_flip(values | {"days_since_last_order": 39.5}, {
        "days_since_last_order": day(-39.5)}, T0) == day(0.5) + 1


@settings(max_examples=200, deadline=None)
@given(avg=st.floats(0.0, 40.0), since=st.floats(0.0, 90.0),
       limit=st.integers(1, 120 * MICROS_PER_DAY))
def test_a_walk_given_a_limit_answers_the_same_before_it(avg: float, since: float,
                                                         limit: int) -> None:
    """next_change passes the earliest other candidate as `limit`: the walk may stop past it,
    so only an answer before it must be exact."""
    overdue = Condition("days_since_last_order > 30.0 && days_since_last_order > 3.0 * "
                        "avg_days_between_orders", "churn[0].when")
    values = {"days_since_last_order": since, "avg_days_between_orders": avg}
    anchors = {"days_since_last_order": T0 - int(since * MICROS_PER_DAY)}
    exact = overdue.next_flip(values, anchors, T0)
    limited = overdue.next_flip(values, anchors, T0, T0 + limit)
    if exact is not None and exact < T0 + limit:
        assert limited == exact
    else:
        assert limited is None or limited >= T0 + limit


@pytest.mark.parametrize("name", ["", "cdnow\n1\ncustomer\n0\n1\ntier.assigned\nNone\nC\nC\n5",
                                  "ü" * 70])
def test_output_ids_are_uuid5(name: str) -> None:
    for n in range(64):  # every variant digit (8, 9, a, b) among them
        assert uuid5(f"{name}{n}") == str(uuid.uuid5(_NAMESPACE, f"{name}{n}"))


@settings(max_examples=150, deadline=None)
@given(count=st.tuples(st.sampled_from(["<", "<=", ">", ">="]),
                       st.sampled_from(["0", "1", "2", "2.5", "3", "4.0", "-1"])),
       total=st.tuples(st.sampled_from(["<", "<=", ">", ">="]),
                       st.sampled_from(["0.0", "0.3", "0.6", "100.0", "250.5", "400.0", "1e3"])),
       placed=st.lists(st.tuples(st.integers(0, 40),
                                 st.sampled_from([0.0, 0.1, 0.2, 0.3, 50.0, 100.0, 250.5])),
                       min_size=1, max_size=8))
def test_a_window_changes_at_the_first_expiry_that_flips_a_comparison(
        count: tuple[str, str], total: tuple[str, str], placed: list) -> None:
    # the worked-out instant of a count and the bisected one of a sum equal trying every expiry
    policy = compiled(f"orders_30d {count[0]} {count[1]} || revenue_30d {total[0]} {total[1]}")
    orders = tuple(Order(f"o{i}", day(at), amount, 0.0, False, ())
                   for i, (at, amount) in enumerate(sorted(placed)))
    t = orders[-1].at
    state = CustomerState(customer_id="c", created_at=orders[0].at, clock=t, orders=orders)
    for metric in policy.windowed:
        assert metric.name in policy.floors  # the fast paths under test
        checks = policy.thresholds[metric.name]
        expiries = sorted({o.at + metric.micros for o in orders if o.at + metric.micros > t})
        expected = next((at for at in expiries if compared(metric, checks, state, at)
                         != compared(metric, checks, state, t)), None)
        seen = metrics.window(metric, state, metrics.counted_orders(state, t), t)
        assert horizon._window_change(metric, policy, seen, t) == expected


def compared(metric: metrics.Windowed, checks: tuple, state: CustomerState, at: int
             ) -> list[bool]:
    value = metrics.window(metric, state, metrics.counted_orders(state, at), at).value
    return [compare(value, number) for compare, number in checks]


def compiled(condition: str) -> CompiledPolicy:
    return policy(f"""
        name: windows
        version: "1"
        currency: CNY
        windows: [30d]
        tiers:
          - id: A
            when: {condition}
          - id: B
    """)


@settings(max_examples=400, deadline=None)
@given(amounts=st.lists(st.floats(0, 1e6) | st.sampled_from([0.1, 0.2, 0.3, 0.7]),
                        min_size=1, max_size=12),
       picks=st.lists(st.tuples(st.sampled_from([">=", ">", "<", "<="]), st.integers(0, 12),
                                st.sampled_from([0.0, -1e-9, 1e-9, 0.1])), min_size=1, max_size=3))
def test_a_sum_flips_after_the_fewest_oldest_amounts_forgotten(amounts: list[float],
                                                                picks: list) -> None:
    # thresholds at (or a hair off) the sums left after forgetting k amounts: where the running
    # sums that locate the flip may round the other way than the fsum that decides it
    left = [math.fsum(amounts[k:]) for k in range(len(amounts) + 1)]
    checks = tuple((horizon._OPERATORS[op], left[min(k, len(amounts))] + off)
                   for op, k, off in picks)
    value = left[0]
    now = [compare(value, number) for compare, number in checks]
    expected = next((k for k in range(1, len(amounts) + 1)
                     if [compare(left[k], number) for compare, number in checks] != now),
                    len(amounts) + 1)
    assert horizon._sum_flip(amounts, value, checks) == expected


@settings(max_examples=500, deadline=None)
@given(st.datetimes(timezones=st.just(UTC)) | st.datetimes(timezones=st.just(UTC)).map(
    lambda moment: moment.replace(microsecond=0)))
def test_an_instant_is_written_as_rfc3339_utc(moment: datetime) -> None:
    spec = "seconds" if moment.microsecond == 0 else "microseconds"
    assert format_instant(to_micros(moment)) == \
        moment.isoformat(timespec=spec).replace("+00:00", "Z")


@settings(max_examples=300, deadline=None)
@given(op=st.sampled_from([">", ">=", "<", "<="]),
       number=st.floats(0.5, 5000.0).map(lambda x: round(x, 3)),
       since=st.integers(0, 2000 * MICROS_PER_DAY))
@example(op=">=", number=3853.111, since=155887631621882)  # computed 41 us late
@example(op=">", number=1299.0, since=88399298833535)  # computed 2 us late
@example(op=">=", number=1476.1, since=39021546011438)  # computed 11 us late
def test_a_time_condition_wakes_at_the_first_instant_it_changes(op: str, number: float,
                                                               since: int) -> None:
    # over years the gaps' floats can place a crossing microseconds late: never woken late
    condition = Condition(f"days_since_first_order {op} {number!r}", "tiers[0].when")
    anchors = {"days_since_first_order": T0 - since}

    def holds(instant: int) -> bool:
        return condition.holds({"days_since_first_order": days_between(T0 - since, instant)})

    now = holds(T0)
    flip = condition.next_flip({"days_since_first_order": days_between(T0 - since, T0)},
                               anchors, T0)
    if op in (">", ">="):  # it only grows: a `>` that holds now holds for good
        assert (flip is None) == now
    else:
        assert (flip is None) == (not now)
    if flip is not None:
        assert holds(flip) != now and holds(flip - 1) == now


def test_a_window_expiry_that_decides_nothing_wakes_no_one() -> None:
    # orders_90d >= 3 stops holding 90 days after the first order, but revenue_365d keeps the
    # customer in B until the big order leaves the year: the customer is woken then, not before
    grading = policy("""
        name: grading
        version: "1"
        currency: CNY
        windows: [90d, 365d]
        tiers:
          - {id: B, when: "revenue_365d >= 5000.0 || orders_90d >= 3"}
          - {id: C, when: "orders_365d >= 1"}
          - {id: D}
        downgrade: {grace: 0d, max_steps: 3, warn_before: 0d}
    """)
    assert grading.windows_alone
    state = None
    for n, amount in enumerate((6000.0, 10.0, 10.0)):
        state, _ = apply(state, order("c", day(n), amount), grading)
    assert state is not None and state.tier == "B"
    assert state.next_change_at == day(365)  # the 6,000 order forgotten: down to C
    state, outputs = advance(state, grading, day(365))
    assert [(o.type, o.data.to_tier) for o in outputs] == [("tierstream.tier.downgraded", "C")]
    # with a time metric in a condition, the walks over time decide where to wake
    assert not policy("""
        name: with-time
        version: "1"
        currency: CNY
        windows: [90d]
        tiers:
          - {id: B, when: "orders_90d >= 3 && days_since_last_order < 30.0"}
          - {id: D}
    """).windows_alone


@given(st.binary(max_size=40) | st.none(), st.integers(1, 64))
def test_outputs_are_placed_as_kafkas_default_partitioner_places_them(key: bytes | None,
                                                                       count: int) -> None:
    partitions = list(range(count))
    if key is None:  # (a dead letter of a keyless message) anywhere
        assert runtime.place(key, partitions) in partitions
    else:
        assert runtime.place(key, partitions) == DefaultPartitioner()(key, partitions, partitions)
