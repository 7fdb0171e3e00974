"""Population sketches: merged per-partition KLL sketches against the exact distribution."""

from __future__ import annotations

import numpy as np
import pytest

from rules import sketches
from rules.relative import Distribution
from streams.worker import population
from streams.worker.population import Report, Reports


def split(values: np.ndarray, partitions: int, k: int = sketches.DEFAULT_K) -> list[bytes]:
    return [sketches.sketch(values[p::partitions], k) for p in range(partitions)]


def test_weighted_distribution_counts_each_item_by_its_weight() -> None:
    weighted = Distribution.of([10.0, 20.0, 30.0], [1.0, 2.0, 1.0])
    same = Distribution.of([10.0, 20.0, 20.0, 30.0])
    for value in (5.0, 10.0, 15.0, 20.0, 25.0, 30.0, 35.0):
        assert weighted.pct(value) == same.pct(value)
        assert weighted.share_above(value) == pytest.approx(same.share_above(value))


def test_small_populations_are_placed_exactly() -> None:
    """Up to k values in all, the merged sketch keeps every one: the same as replay's."""
    rng = np.random.default_rng(1)
    values = np.round(rng.lognormal(4.0, 1.2, 900), 2)
    values[:50] = 0.0   # customers without revenue
    merged = sketches.merged(split(values, 4))
    exact = Distribution.of(values)
    probes = np.concatenate([values, values + 0.005, [-1.0, 0.0, 1e9]])
    for kind in ("pct", "share_above"):
        assert np.allclose(merged.place_many(kind, probes), exact.place_many(kind, probes),
                           rtol=0, atol=1e-12)
    assert merged.distinct == exact.distinct


def test_large_populations_within_the_rank_error() -> None:
    """200,000 heavy-tailed values over 8 partitions: |pct error| stays within the documented
    KLL bound. share_above has no such bound and KLL compacts at random (not seedable), so the
    limits here are loose multiples of what 30 runs measured (docs/engine.md): largest share
    error 3.4%, Pareto classes (cuts at 0.80 and 0.95) differing for 1.6% of the customers."""
    rng = np.random.default_rng(7)
    values = np.round(rng.lognormal(4.0, 1.5, 200_000), 2)
    merged = sketches.merged(split(values, 8))
    exact = Distribution.of(values)
    probes = np.quantile(values, np.linspace(0.0, 1.0, 401))
    pct_error = np.abs(merged.place_many("pct", probes) - exact.place_many("pct", probes))
    assert pct_error.max() <= sketches.rank_error()
    share, exact_share = (d.place_many("share_above", values) for d in (merged, exact))
    assert np.abs(share - exact_share).max() <= 0.08

    def pareto(s: np.ndarray) -> np.ndarray:
        return np.digitize(s, [0.80, 0.95])
    assert (pareto(share) != pareto(exact_share)).mean() <= 0.04
    assert merged.count == len(values)


def test_empty_partitions_merge_to_an_empty_population() -> None:
    empty = sketches.merged([sketches.sketch([]), sketches.sketch([])])
    assert empty.pct(5.0) == 0.0 and empty.share_above(5.0) == 1.0


def report(boundary: int, values: list[float], bases: tuple[str, ...] = ("revenue_365d",)
           ) -> Report:
    return Report(boundary, len(values), {b: sketches.sketch(values) for b in bases})


def record(partition: int, *reports: Report, partitions: int = 2) -> bytes:
    return population.encode(partition, partitions, list(reports))


def test_a_boundary_is_complete_once_every_partition_reported_it() -> None:
    reports = Reports(2, ("revenue_365d",))
    reports.add(record(0, report(100, [1.0, 2.0])))
    assert reports.latest() is None
    reports.add(record(1, report(100, [3.0])))
    latest = reports.latest()
    assert latest is not None and latest.taken_at == 100
    assert latest.distributions["revenue_365d"].values == (1.0, 2.0, 3.0)


def test_partitions_straddling_a_boundary_keep_the_complete_one() -> None:
    """Each record keeps the partition's previous report, so a worker reading the compacted
    topic afresh still finds the last boundary every partition has reported."""
    reports = Reports(2, ("revenue_365d",))
    reports.add(record(0, report(200, [5.0]), report(100, [1.0])))
    reports.add(record(1, report(100, [3.0])))
    assert reports.latest().taken_at == 100
    reports.add(record(1, report(200, [6.0]), report(100, [3.0])))
    latest = reports.latest()
    assert latest.taken_at == 200 and reports.before(latest).taken_at == 100
    assert [r.boundary for r in reports.of(0)] == [200, 100]


def test_reports_that_cannot_merge_are_skipped() -> None:
    reports = Reports(2, ("revenue_365d",))
    reports.add(record(0, report(100, [1.0]), partitions=3))          # another partition count
    reports.add(record(1, report(100, [1.0], ("orders_total",))))     # another policy's bases
    reports.add(record(1, report(100, [1.0])))
    assert reports.latest() is None   # partition 0 has not reported for this worker's layout
    assert reports.of(1)[0].boundary == 100


@pytest.mark.parametrize("raw", [b"", b"{}", b'{"partition": 0, "partitions": 2, "reports": '
                                 b'[{"boundary": 1, "customers": 0, "sketches": {"x": "*"}}]}'])
def test_garbage_is_not_a_report(raw: bytes) -> None:
    with pytest.raises(ValueError, match="not a population report"):
        population.decode(raw)


def test_a_boundary_reported_again_replaces_its_population() -> None:
    """Late events make a partition report its latest boundary again: a new population at the
    same instant; reading the same record twice changes nothing."""
    reports = Reports(2, ("revenue_365d",))
    reports.add(record(0, report(100, [])))
    reports.add(record(1, report(100, [3.0])))
    first = reports.latest()
    reports.add(record(1, report(100, [3.0])))
    assert reports.latest() is first
    reports.add(record(0, report(100, [1.0, 2.0])))
    again = reports.latest()
    assert again is not first and again.taken_at == 100
    assert again.distributions["revenue_365d"].values == (1.0, 2.0, 3.0)
    assert reports.before(again) is None
