"""Real CDNOW purchases replayed end to end, checked against the policy evaluated by hand."""

from __future__ import annotations

import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from math import fsum
from pathlib import Path

import pytest

from streams.cli.main import main
from tests.datafiles import cdnow_master_path, cdnow_slice_path

POLICY = """
name: cdnow-check
version: "1"
currency: USD
windows: [30d, 90d, 365d]
tiers:
  - id: A
    when: revenue_365d >= 500.0 && orders_365d >= 6
  - id: B
    when: revenue_365d >= 100.0 || orders_90d >= 3
  - id: C
    when: orders_365d >= 1
  - id: D
downgrade: {grace: 0d, max_steps: 1}
churn:
  - id: overdue
    when: purchase_days_total >= 2 && days_since_last_order > 3.0 * avg_days_between_orders
  - id: key_account_silent
    when: tier == "A" && days_since_last_order > 60.0
"""
DAY = timedelta(days=1)


def by_hand(lines: list[str], as_of: datetime) -> dict[str, tuple[str, bool]]:
    """Each customer's tier and churn flag at `as_of`, computed without the engine."""
    orders: dict[str, list[tuple[datetime, float]]] = defaultdict(list)
    for line in lines:
        customer, date, _cds, dollars = line.split()
        when = datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC)
        if when <= as_of:
            orders[customer].append((when, float(dollars)))
    result = {}
    for customer, bought in orders.items():
        year = [amount for when, amount in bought if as_of - 365 * DAY < when <= as_of]
        quarter = [amount for when, amount in bought if as_of - 90 * DAY < when <= as_of]
        revenue_365d, orders_365d, orders_90d = fsum(year), len(year), len(quarter)
        if revenue_365d >= 500.0 and orders_365d >= 6:
            tier = "A"
        elif revenue_365d >= 100.0 or orders_90d >= 3:
            tier = "B"
        else:
            tier = "C" if orders_365d >= 1 else "D"
        days = {when for when, _ in bought}  # CDNOW dates are UTC midnights: one per day
        first, last = min(days), max(days)
        since_last = (as_of - last) / DAY
        average_gap = (last - first) / DAY / (len(days) - 1) if len(days) > 1 else 0.0
        churn = (len(days) >= 2 and since_last > 3.0 * average_gap) or \
            (tier == "A" and since_last > 60.0)
        result[str(int(customer))] = (tier, churn)
    return result


def replay(tmp_path: Path, source: Path, as_of: str) -> dict[str, tuple[str, bool]]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    states = tmp_path / "states.jsonl"
    status = main(["replay", str(source), "--format", "cdnow", "--policy", str(policy),
                   "--as-of", as_of, "--out", str(tmp_path / "out.jsonl"),
                   "--state-out", str(states)])
    assert status == 0
    rows = [json.loads(line) for line in states.read_text().splitlines()]
    return {str(int(r["customer_id"])): (r["tier"], r["churn"]) for r in rows}


def purchases(path: Path, until: datetime | None = None) -> list[str]:
    lines = [line for line in path.read_text().splitlines() if line.split()[:1] != ["customer_id"]]
    return [line for line in lines if until is None
            or datetime.strptime(line.split()[1], "%Y%m%d").replace(tzinfo=UTC) <= until]


@pytest.mark.parametrize("as_of", ["1997-09-30", "1998-01-01", "1998-07-01"])
def test_slice_matches_hand_evaluation(tmp_path: Path, as_of: str) -> None:
    moment = datetime.fromisoformat(as_of).replace(tzinfo=UTC)
    lines = purchases(cdnow_slice_path(), until=moment)
    source = tmp_path / "slice.txt"
    source.write_text("\n".join(lines) + "\n")
    expected = by_hand(lines, moment)
    assert len(expected) > 20
    assert replay(tmp_path, source, as_of) == expected


@pytest.mark.slow
def test_full_cdnow_matches_hand_evaluation(tmp_path: Path) -> None:
    path = cdnow_master_path()
    moment = datetime(1998, 7, 1, tzinfo=UTC)
    expected = by_hand(purchases(path), moment)
    assert len(expected) == 23_570
    got = replay(tmp_path, path, "1998-07-01")
    differing = {c: (got.get(c), expected.get(c)) for c in got.keys() | expected.keys()
                 if got.get(c) != expected.get(c)}
    assert not differing, f"{len(differing)} customers differ, e.g. {list(differing.items())[:5]}"
    tiers = {tier for tier, _ in expected.values()}
    assert tiers == {"A", "B", "C", "D"}
