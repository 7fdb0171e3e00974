"""`tierstream replay` with the shipped pareto-abc policy over CDNOW equals an exact offline Pareto
split of 365-day revenue at the same refresh instant, customer by customer."""

from __future__ import annotations

import json
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from math import fsum
from pathlib import Path

import pytest

from streams.cli.main import main
from tests.datafiles import cdnow_master_path, cdnow_slice_path
from tests.test_cdnow_replay import purchases

YEAR = timedelta(days=365)


def pareto_split(lines: list[str], as_of: datetime) -> dict[str, str]:
    """A: customers ranked above hold under 80% of the year's revenue; B under 95%; C the rest.

    Customers with equal revenue share a class; sums are taken from the top down, one customer
    at a time, as the population snapshot takes them.
    """
    revenue: dict[str, list[float]] = defaultdict(list)
    for line in lines:
        customer, date, _cds, dollars = line.split()
        when = datetime.strptime(date, "%Y%m%d").replace(tzinfo=UTC)
        if when <= as_of:
            revenue[str(int(customer))] += [float(dollars)] if when > as_of - YEAR else []
    year = {customer: fsum(amounts) for customer, amounts in revenue.items()}
    ranked = sorted(year.values(), reverse=True)
    total = 0.0
    for value in ranked:
        total += value
    above, share_above, index = 0.0, {}, 0
    while index < len(ranked):
        value = ranked[index]
        share_above[value] = above / total
        while index < len(ranked) and ranked[index] == value:
            above += value
            index += 1
    return {customer: "A" if share_above[value] < 0.8 else "B" if share_above[value] < 0.95
            else "C" for customer, value in year.items()}


def replay_tiers(tmp_path: Path, source: Path, as_of: str) -> dict[str, str]:
    states = tmp_path / "states.jsonl"
    status = main(["replay", str(source), "--format", "cdnow", "--policy", "pareto-abc",
                   "--as-of", as_of, "--out", str(tmp_path / "out.jsonl"),
                   "--state-out", str(states)])
    assert status == 0
    rows = [json.loads(line) for line in states.read_text().splitlines()]
    return {str(int(r["customer_id"])): r["tier"] for r in rows}


def check(tmp_path: Path, source: Path, lines: list[str], as_of: str) -> Counter[str]:
    # as_of is a refresh boundary of the policy's 7d schedule (a Thursday), where the snapshot
    # is retaken from every customer's exact revenue: the split must be exact there
    moment = datetime.fromisoformat(as_of).replace(tzinfo=UTC)
    assert (moment - datetime(1970, 1, 1, tzinfo=UTC)).days % 7 == 0
    expected = pareto_split(lines, moment)
    got = replay_tiers(tmp_path, source, as_of)
    differing = {c: (got.get(c), expected[c]) for c in expected if got.get(c) != expected[c]}
    assert not differing, f"{len(differing)} customers differ, e.g. {list(differing.items())[:5]}"
    assert set(got) == set(expected)
    return Counter(got.values())


@pytest.mark.parametrize("as_of", ["1997-10-02", "1998-01-01"])
def test_slice_matches_offline_pareto_split(tmp_path: Path, as_of: str) -> None:
    moment = datetime.fromisoformat(as_of).replace(tzinfo=UTC)
    lines = purchases(cdnow_slice_path(), until=moment)
    source = tmp_path / "slice.txt"
    source.write_text("\n".join(lines) + "\n")
    sizes = check(tmp_path, source, lines, as_of)
    assert set(sizes) == {"A", "B", "C"}


@pytest.mark.slow
def test_full_cdnow_matches_offline_pareto_split(tmp_path: Path) -> None:
    path = cdnow_master_path()
    sizes = check(tmp_path, path, purchases(path), "1998-07-02")
    assert sum(sizes.values()) == 23_570
    assert sizes == {"A": 3070, "B": 2645, "C": 17855}
