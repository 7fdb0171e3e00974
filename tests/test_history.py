"""Orders older than the largest window plus the redelivery horizon are folded into totals
(rules/history.py): a state stays bounded, every output stays the same to the bit, and an
order event placed before the exact history is refused rather than guessed at."""

from __future__ import annotations

import random
import shutil
from math import fsum
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from models.errors import InvalidEventError
from rules import history
from rules.compiled import CompiledPolicy
from rules.engine import apply
from rules.replay import Replay
from streams.policies import BUILTIN_DIR, load_policy
from tests.builders import cancel, day, fold, order, policy, refund, replay

NEVER_FOLDS = "\nlimits:\n  redelivery_horizon: 36500d\n"
SHORT = policy("""
    name: short
    version: "1"
    currency: CNY
    windows: [30d]
    tiers:
      - id: A
        when: revenue_total >= 100 && orders_30d >= 1
      - id: B
    limits:
      redelivery_horizon: 10d
""")


def shop(customers: int, seed: int) -> list:
    """Three years of orders with awkward amounts, refunds and cancellations."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        at = rng.uniform(0, 60)
        while at < 3 * 365:
            order_id = f"c{c}-{at:.3f}"
            amount = round(rng.lognormvariate(3, 1.2), 2) + 0.1
            events.append(order(f"c{c}", day(at), amount, order_id))
            if rng.random() < 0.15:
                events.append(refund(f"c{c}", day(at + rng.uniform(0, 20)),
                                     round(amount * rng.random(), 2), order_id))
            elif rng.random() < 0.05:
                events.append(cancel(f"c{c}", day(at + rng.uniform(0, 5)), order_id))
            at += rng.expovariate(1 / rng.choice((3, 20, 90)))
    return events


def builtin(name: str, tmp_path: Path, extra: str = "") -> CompiledPolicy:
    shutil.copytree(BUILTIN_DIR / "models", tmp_path / "models", dirs_exist_ok=True)
    path = tmp_path / f"{name}{len(extra)}.yaml"
    path.write_text((BUILTIN_DIR / f"{name}.yaml").read_text() + extra)
    return load_policy(path)


@pytest.mark.parametrize("name", ["default", "predictive", "rfm", "pareto-abc"])
def test_folding_changes_no_output_to_the_bit(name: str, tmp_path: Path) -> None:
    events = shop(40, seed=7)
    folding, outputs = replay(events, builtin(name, tmp_path), until=day(4 * 365))
    exact, expected = replay(events, builtin(name, tmp_path, NEVER_FOLDS), until=day(4 * 365))
    assert [o.document() for o in outputs] == [o.document() for o in expected]
    assert sum(s.folded.orders for s in folding.states.values()) > 500
    assert sum(s.folded.orders for s in exact.states.values()) == 0
    assert max(len(s.orders) for s in folding.states.values()) < \
        max(len(s.orders) for s in exact.states.values()) / 2


def test_a_lifetime_of_orders_keeps_the_state_bounded() -> None:
    run = Replay(SHORT)
    for n in range(50_000):  # four orders a day for 34 years
        run.feed(order("heavy", day(n / 4), 10, f"h{n}"))
    state = run.states["heavy"]
    assert state.folded.orders + len(state.orders) == 50_000
    assert len(state.orders) <= 41 * 4  # 30 days of window, 10 of horizon, the day folding
    assert fsum([*state.folded.revenue, *(o.net for o in state.orders)]) == 500_000
    assert run.take_failed() == []


def test_an_order_event_before_the_exact_history_is_refused() -> None:
    state, _ = fold([order("c", day(0), 80, "old"), order("c", day(100), 30, "new")], SHORT)
    assert state is not None and state.folded.orders == 1 and len(state.orders) == 1
    for late in (order("c", day(0), 80, "old"), order("c", day(1), 5, "another"),
                 refund("c", day(2), 5, "old"), cancel("c", day(3), "old")):
        with pytest.raises(InvalidEventError) as caught:
            apply(state, late, SHORT)
        assert caught.value.reason == "beyond_history"
        assert "limits.redelivery_horizon" in str(caught.value)


def test_a_refund_of_a_folded_order_lowers_the_revenue_at_once_and_once() -> None:
    state, outputs = fold([order("c", day(0), 80, "old"), order("c", day(100), 30, "new")],
                          SHORT)
    assert state is not None and state.tier == "A"
    refunded, outputs = apply(state, refund("c", day(101), 50, "old"), SHORT)
    assert refunded is not None and refunded.tier == "B"  # 110 - 50 < 100, at once
    assert [o.data.metrics["revenue_total"] for o in outputs] == [60.0]
    assert apply(refunded, refund("c", day(101), 50, "old"), SHORT)[1] == []  # redelivered
    later, _ = apply(refunded, order("c", day(200), 1, "newest"), SHORT)  # the refund folds
    assert later is not None and not any(o.order_id == "old" for o in later.orders)
    assert history.revenue(later) == history.partials([80.0, 30.0, -50.0])
    with pytest.raises(InvalidEventError):  # a redelivery after it folded: too late
        apply(later, refund("c", day(101), 50, "old"), SHORT)


def test_a_refund_before_its_completion_moves_to_its_order() -> None:
    state, _ = fold([order("c", day(0), 80, "old"), order("c", day(100), 30, "new"),
                     refund("c", day(101), 50, "late")], SHORT)
    assert state is not None and SHORT.values(state, day(102))["revenue_total"] == 60.0
    completed, _ = apply(state, order("c", day(101), 60, "late"), SHORT)
    assert completed is not None and history.revenue(completed) == (80.0,)
    assert SHORT.values(completed, day(102))["revenue_total"] == 80 + 30 + (60 - 50)


def test_a_folded_order_redelivered_after_its_refund_is_refused_not_counted_again() -> None:
    state, _ = fold([order("c", day(0), 80, "old"), order("c", day(100), 30, "new"),
                     refund("c", day(101), 50, "old")], SHORT)
    with pytest.raises(InvalidEventError) as caught:
        apply(state, order("c", day(0), 80, "old"), SHORT)
    assert caught.value.reason == "beyond_history"


def test_when_a_refund_folds_does_not_change_the_revenue() -> None:
    state, _ = fold([order("c", day(0), 10, "a"), order("c", day(100), 100, "b"),
                     refund("c", day(101), 50, "x")], SHORT)  # x: an order not held
    assert SHORT.values(state, day(102))["revenue_total"] == 10 + 100 - 50
    later, _ = apply(state, order("c", day(300), 1, "c"), SHORT)  # x's refund and b fold
    assert later is not None and not any(o.order_id in ("b", "x") for o in later.orders)
    assert SHORT.values(later, day(301))["revenue_total"] == 10 + 100 - 50 + 1


def test_a_cancellation_after_a_refund_of_a_folded_order_changes_nothing() -> None:
    state, _ = fold([order("c", day(0), 80, "old"), order("c", day(100), 30, "new"),
                     refund("c", day(101), 50, "old")], SHORT)
    cancelled, _ = fold([cancel("c", day(102), "old")], SHORT, state)
    assert SHORT.values(cancelled, day(103))["revenue_total"] == \
        SHORT.values(state, day(103))["revenue_total"] == 60.0


@given(st.lists(st.floats(-1e12, 1e12), max_size=40), st.lists(st.floats(-1e12, 1e12),
                                                               max_size=10))
def test_partials_sum_exactly(folded: list[float], more: list[float]) -> None:
    assert fsum([*history.partials(folded), *more]) == fsum([*folded, *more])


def test_a_refund_of_an_order_never_seen_counts_nowhere_when_it_folds() -> None:
    state, _ = fold([order("c", day(0), 80, "a"), refund("c", day(1), 50, "ghost")], SHORT)
    assert SHORT.values(state, day(2))["revenue_total"] == 80.0  # nothing folded yet
    later, _ = fold([order("c", day(100), 30, "b")], SHORT, state)  # a and the ghost fold
    assert later is not None and later.folded.orders == 1
    assert SHORT.values(later, day(101))["revenue_total"] == 80.0 + 30.0
