"""Declarative spec cases in tests/spec/<policy>.yaml, run against the shipped policy of that name.

A spec file holds `cases`; each case is one customer's events (customer_id `c`), an `as_of`
instant the replay advances to, and what to `expect` then:

    - name: overdue customer gets a churn warning
      events:
        - {at: 2024-01-01, type: order_completed, order_id: v1, amount: 100}
      as_of: 2024-03-01
      expect:
        tier: B                 # the tier at as_of
        churn: true             # a churn episode is open at as_of
        churn_rule: overdue     # optional: the rule that opened it
        outputs: [tier.assigned, churn.warning]   # optional: every tier and churn output,
                                                  # in order
        followups: [followup.due]   # optional: every follow-up output, in order
        path: [C, B]            # optional: the tiers entered, in order
        axes: {lifecycle: [new, active]}   # optional: the classes entered on each axis named

Event fields are those of the input contract; `at` is the occurred_at (a date is UTC midnight),
event_id defaults to one per position, and order amounts default to the policy currency.

For a policy with relative metrics (`revenue_365d_pct`, `revenue_365d_share_above`) a case may
give the population snapshot the customer is placed in, held fixed for the whole case (no
refreshes), as every base metric's values over the other customers:

      population: {revenue_365d: [5000, 500, 300, 100]}

Without it the replay refreshes on the policy's schedule from its one customer `c`.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml

from models.events import event_from_fields
from models.instants import to_micros
from models.state import CustomerState
from rules.relative import Population
from rules.replay import Replay, event_order
from streams.policies import builtin_policies, load_policy

SPEC_DIR = Path(__file__).parent / "spec"
CUSTOMER = "c"
CASE_KEYS = {"name", "events", "as_of", "expect", "population"}
EXPECT_KEYS = {"tier", "churn", "churn_rule", "outputs", "followups", "path", "axes"}
MOVES = ("tierstream.tier.assigned", "tierstream.tier.upgraded", "tierstream.tier.downgraded")
AXIS_MOVES = ("tierstream.axis.assigned", "tierstream.axis.upgraded",
              "tierstream.axis.downgraded")


def spec_files() -> list[Path]:
    return sorted(SPEC_DIR.glob("*.yaml"))


def spec_cases() -> list[Any]:
    cases = []
    for path in spec_files():
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["cases"]:
            cases.append(pytest.param(path.stem, case, id=f"{path.stem}: {case['name']}"))
    return cases


def instant(value: date | datetime | str) -> datetime:
    """A spec time as an aware datetime: dates are UTC midnight, naive times are UTC."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def build_event(fields: dict[str, Any], position: int, currency: str):
    fields = dict(fields)
    fields["occurred_at"] = instant(fields.pop("at"))
    fields.setdefault("customer_id", CUSTOMER)
    fields.setdefault("event_id", f"event-{position}")
    if fields["type"] in ("order_completed", "order_refunded"):
        fields.setdefault("currency", currency)
    return event_from_fields(fields)


def run_case(policy_name: str, case: dict[str, Any]) -> tuple[CustomerState | None, list]:
    compiled = load_policy(policy_name)
    events = [build_event(fields, i, compiled.policy.currency)
              for i, fields in enumerate(case["events"])]
    as_of = to_micros(instant(case["as_of"]))
    assert all(e.at <= as_of for e in events), "an event is after as_of"
    population = case.get("population")
    replay = Replay(compiled) if population is None else \
        Replay(compiled, population=Population.of(0, population), refreshing=False)
    outputs = [o for e in sorted(events, key=event_order) for o in replay.feed(e)]
    outputs += replay.advance_to(as_of)
    return replay.states.get(CUSTOMER), outputs


@pytest.mark.parametrize(("policy_name", "case"), spec_cases())
def test_spec_case(policy_name: str, case: dict[str, Any]) -> None:
    assert set(case) <= CASE_KEYS and set(case["expect"]) <= EXPECT_KEYS, "unknown spec key"
    expect = case["expect"]
    state, outputs = run_case(policy_name, case)
    assert state is not None
    assert state.tier == expect["tier"]
    assert (state.churn_rule is not None) == expect["churn"]
    if "churn_rule" in expect:
        assert state.churn_rule == expect["churn_rule"]
    kinds = [o.type.removeprefix("tierstream.") for o in outputs]
    if "outputs" in expect:
        assert [k for k in kinds if not k.startswith(("followup.", "axis."))] == \
            expect["outputs"]
    if "followups" in expect:
        assert [k for k in kinds if k.startswith("followup.")] == expect["followups"]
    if "path" in expect:
        assert [o.data.to_tier for o in outputs if o.type in MOVES] == expect["path"]
    for axis, entered in expect.get("axes", {}).items():
        assert [o.data.to_class for o in outputs if o.type in AXIS_MOVES
                and o.data.axis == axis] == entered


@pytest.mark.parametrize("path", builtin_policies(), ids=lambda p: p.stem)
def test_every_shipped_policy_has_spec_cases(path: Path) -> None:
    spec = SPEC_DIR / f"{path.stem}.yaml"
    assert spec.is_file(), f"shipped policy {path.stem} has no spec file {spec}"
    assert yaml.safe_load(spec.read_text(encoding="utf-8"))["cases"]


@pytest.mark.parametrize("path", spec_files(), ids=lambda p: p.stem)
def test_every_spec_file_is_for_a_shipped_policy(path: Path) -> None:
    assert path.stem in {p.stem for p in builtin_policies()}
