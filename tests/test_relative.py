"""Relative metrics: `_pct` and `_share_above` placements, loading, no snapshot, refreshes."""

from __future__ import annotations

import numpy as np
import pytest

from models.errors import PolicyError
from models.instants import MICROS_PER_DAY
from rules import relative
from rules.engine import apply, refresh
from rules.relative import Distribution, Population
from rules.replay import Replay
from tests.builders import US, day, order, policy, steps

PARETO = """
    name: pareto
    version: "1"
    windows: [365d]
    relative: {refresh: 7d}
    tiers:
      - id: A
        when: revenue_365d_share_above < 0.8
      - id: B
        when: revenue_365d_share_above < 0.95
      - id: C
    downgrade: {grace: 0d, max_steps: 2}
"""


@pytest.mark.parametrize(("values", "value", "pct", "share_above"), [
    ([10, 20, 30, 40], 40, 0.75, 0.0),          # the top customer has nobody above
    ([10, 20, 30, 40], 10, 0.0, 0.9),           # the lowest has nobody below
    ([10, 20, 30, 40], 25, 0.5, 0.7),           # a value between: placed among them
    ([10, 20, 20, 50], 20, 0.25, 0.5),          # ties: neither below nor above each other
    ([10, 20, 20, 50], 50, 0.75, 0.0),
    ([10, 20, 20, 50], 100, 1.0, 0.0),          # above everyone in the snapshot
    ([7], 7, 0.0, 0.0),                         # a single customer is first and last
    ([0, 0, 0], 0, 0.0, 1.0),                   # nothing to share: nobody is above anything
    ([0, 0, 5], 0, 0.0, 1.0),                   # no revenue when others hold everything
    ([], 3, 0.0, 1.0),                          # an empty population places nobody
])
def test_placements(values: list[float], value: float, pct: float, share_above: float) -> None:
    distribution = Distribution.of(values)
    assert distribution.pct(value) == pytest.approx(pct)
    assert distribution.share_above(value) == pytest.approx(share_above)
    many = [float(v) for v in (value, value)]
    assert list(distribution.place_many("pct", np.array(many))) == [distribution.pct(value)] * 2
    assert list(distribution.place_many("share_above", np.array(many))) == \
        [distribution.share_above(value)] * 2


def test_placements_stay_in_unit_interval() -> None:
    distribution = Distribution.of([0.1] * 10 + [1e12, 3.3])
    for value in (-1.0, 0.0, 0.1, 3.3, 5.0, 1e12, 2e12):
        assert 0.0 <= distribution.pct(value) <= 1.0
        assert 0.0 <= distribution.share_above(value) <= 1.0


def test_parse_names() -> None:
    assert relative.parse("revenue_365d_pct") == ("revenue_365d_pct", "revenue_365d", "pct")
    assert relative.parse("orders_total_share_above") == \
        ("orders_total_share_above", "orders_total", "share_above")
    assert relative.parse("revenue_365d") is None
    assert relative.parse("_pct") is None


@pytest.mark.parametrize(("when", "fragment"), [
    ("revenue_400d_pct > 0.5", "uses window 400d"),
    ("zzz_pct > 0.5", "unknown metric 'zzz'"),
    ("tier_pct > 0.5", "not a numeric metric"),
    ("revenue_365d_pct_pct > 0.5", "not a numeric metric"),
    ("p_alive_pct > 0.5", "needs a fitted model"),
    ("revenue_365d_pct + 1 > 1.0", "does not evaluate"),     # a double, not an int
])
def test_bad_relative_metric_names_line_and_field(when: str, fragment: str) -> None:
    text = PARETO.replace("revenue_365d_share_above < 0.95", when)
    with pytest.raises(PolicyError) as caught:
        policy(text)
    assert fragment in str(caught.value)
    assert caught.value.line == 10 and caught.value.field == "tiers[1].when"


def test_refresh_must_not_be_zero() -> None:
    with pytest.raises(PolicyError) as caught:
        policy(PARETO.replace("refresh: 7d", "refresh: 0d"))
    assert caught.value.field == "relative.refresh"


def test_a_policy_knows_its_relative_metrics_and_their_bases() -> None:
    compiled = policy(PARETO)
    assert [r.name for r in compiled.relative] == ["revenue_365d_share_above"]
    assert compiled.relative_bases == ("revenue_365d",)
    assert compiled.refresh == 7 * MICROS_PER_DAY
    assert policy(PARETO.replace("_share_above", "")).refresh is None


def test_without_a_snapshot_the_customer_reads_as_last() -> None:
    compiled = policy(PARETO)
    state, _ = apply(None, order("c", day(0), 100), compiled)
    assert state is not None and state.tier == "C"
    values = compiled.values(state, day(0))
    assert values["revenue_365d_share_above"] == 1.0 and values["revenue_365d"] == 100.0
    text = PARETO.replace("revenue_365d_share_above < 0.8", "revenue_365d_pct >= 0.0")
    assert policy(text).values(state, day(0))["revenue_365d_pct"] == 0.0


def test_with_a_snapshot_the_customer_is_placed_in_it() -> None:
    compiled = policy(PARETO)
    snapshot = Population.of(day(0), {"revenue_365d": [5000, 500, 300]})
    state, _ = apply(None, order("c", day(1), 6000), compiled, snapshot)
    assert state is not None and state.tier == "A"


def test_replay_refreshes_at_each_boundary_and_holds_between() -> None:
    """Two customers; the small one is C until the first refresh sees it is in the top 80%."""
    compiled = policy(PARETO)
    replay = Replay(compiled)
    outputs = replay.feed(order("big", day(0), 900))     # 2024-01-01, a Monday
    outputs += replay.feed(order("small", day(1), 100))
    assert replay.population is None
    outputs += replay.advance_to(day(9))
    assert replay.population is not None
    assert replay.population.taken_at == day(3)          # Thursday 2024-01-04, 7d since 1970
    assert replay.states["big"].tier == "A" and replay.states["small"].tier == "B"
    moved = [(o.data.customer_id, t, to) for (t, _, _, to), o in
             zip(steps(outputs), outputs, strict=True)]
    assert moved == [("big", day(0), "C"), ("small", day(1), "C"), ("big", day(3), "A"),
                     ("small", day(3), "B")]
    # a big order of `small` between refreshes counts at once against the held snapshot
    replay.feed(order("small", day(11), 5000))
    assert replay.states["small"].tier == "A" and replay.population.taken_at == day(10)
    assert replay.states["big"].tier == "A"
    replay.advance_to(day(17))
    assert replay.population.taken_at == day(17)         # retaken: now `big` is second
    assert replay.states["big"].tier == "B"


def test_deciding_again_in_the_same_population_changes_nothing() -> None:
    """What a worker relies on after a rebalance, when it does not know which population a
    partition's customers were decided in: it decides every one again in the latest one."""
    compiled = policy(PARETO)
    old = Population.of(day(3), {"revenue_365d": [5000, 500, 300]})
    new = Population.of(day(10), {"revenue_365d": [50, 60, 70]})
    state, _ = apply(None, order("c", day(1), 400), compiled, old)
    moved, outputs, _ = refresh(state, compiled, old, new)
    assert moved.tier == "A" and outputs
    again, more, _ = refresh(moved, compiled, None, new, changed=True)
    assert again == moved and more == []


def test_a_customer_decided_after_the_snapshot_is_compared_on_its_value_then() -> None:
    """A worker whose partition ran ahead decides an order of day 20 in the day-3 population
    before the day-10 one is complete; moving to day 10 must look at the value the customer was
    decided on (400 on day 20), not its value on day 10 (nothing yet, the same in both)."""
    compiled = policy(PARETO)
    old = Population.of(day(3), {"revenue_365d": [50, 60]})
    new = Population.of(day(10), {"revenue_365d": [5000, 500, 300]})
    state, _ = apply(None, order("c", day(20), 400), compiled, old)
    assert state.tier == "A"
    moved, _, _ = refresh(state, compiled, old, new)
    assert moved.tier == "B"


def test_relative_time_metric_crosses_the_snapshot_at_its_exact_instant() -> None:
    compiled = policy("""
        name: recency
        version: "1"
        tiers:
          - id: recent
            when: orders_total >= 1 && days_since_last_order_pct < 0.5
          - id: other
    """)
    snapshot = Population.of(0, {"days_since_last_order": [1, 2, 30, 40]})
    replay = Replay(compiled, population=snapshot, refreshing=False)
    outputs = replay.feed(order("c", day(0), 10))
    outputs += replay.advance_to(day(100))
    assert [(t, kind) for t, kind, *_ in steps(outputs)] == \
        [(day(0), "assigned"), (day(2) + US, "downgraded")]
