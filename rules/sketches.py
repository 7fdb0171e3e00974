"""Mergeable sketches of base metric values, from which the streaming runtime builds populations.

Each partition summarises its customers' values of every base metric in a KLL quantile sketch
(Apache DataSketches); the sketches of all partitions merge into one per base, and the merged
sketch's retained items, each weighted by the number of customers it stands for, form the
`Distribution` that relative metrics are placed in, with the same methods as replay's exact one.

Why KLL: `<metric>_pct` is a rank, and KLL bounds the rank error (normalised, 99% confidence:
`rank_error(k)`, 0.07% at the default k = 4000) whatever the values look like; its retained
items with their weights also give the sums above a value that `_share_above` needs (no bound
there: measured, docs/engine.md); and while the merged sketch has seen no more than k values it
keeps them all, so a population of up to k customers is placed exactly as replay places it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from datasketches import kll_doubles_sketch

from rules.relative import Distribution, Population

DEFAULT_K = 4000


def rank_error(k: int = DEFAULT_K) -> float:
    """The bound on |sketched pct - exact pct| (99% confidence) for a sketch of parameter k."""
    return float(kll_doubles_sketch.get_normalized_rank_error(k, False))


def sketch(values: Iterable[float], k: int = DEFAULT_K) -> bytes:
    """The serialised sketch of `values` (one partition's customers, one base metric)."""
    summary = kll_doubles_sketch(k)
    for value in values:
        summary.update(float(value))
    return bytes(summary.serialize())


def merged(parts: Iterable[bytes]) -> Distribution:
    """The distribution of the union of the partitions summarised by `parts`."""
    summary: kll_doubles_sketch | None = None
    for part in parts:
        one = kll_doubles_sketch.deserialize(part)
        if summary is None:
            summary = one
        else:
            summary.merge(one)
    if summary is None or summary.is_empty():
        return Distribution.of([])
    # The weight of each retained item from the sketch's own ranks: iterating a merged sketch
    # yields the right items but wrong weights (datasketches 5.2: they sum to far less than n).
    items = sorted({item for item, _ in summary})
    ranks = np.asarray(summary.get_cdf(items, True)[:-1])
    weights = np.rint(np.diff(ranks, prepend=0.0) * summary.n)
    return Distribution.of(items, weights)


def population(taken_at: int, parts: Mapping[str, Iterable[bytes]]) -> Population:
    """The population at `taken_at` from every partition's sketch of each base metric."""
    return Population(taken_at, {base: merged(sketches) for base, sketches in parts.items()})
