"""Customers by the instant time alone could next change them: a heap per partition."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DueIndex:
    """Due instants per partition (replay uses one partition). Entries can go stale when a
    customer is decided again or erased, so callers compare with the stored state."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}

    def schedule(self, partition: int, due: int | None, customer: str) -> None:
        if due is not None:
            heapq.heappush(self._heaps.setdefault(partition, []), (due, customer))

    def pop_next(self, partition: int, now: int) -> tuple[int, str] | None:
        """The earliest entry due at or before `now`, removed from the index, if any."""
        heap = self._heaps.get(partition)
        return heapq.heappop(heap) if heap and heap[0][0] <= now else None

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._heaps.pop(partition, None)
