"""Customers by the instant time alone could next change them: a heap per partition."""

from __future__ import annotations

import heapq
from collections.abc import Iterable


class DueIndex:
    """Due instants per partition (replay uses one partition). A customer decided again keeps
    its old entry in the heap; the index knows each customer's current instant, so such stale
    entries are passed over without the caller reading the customer's state."""

    def __init__(self) -> None:
        self._heaps: dict[int, list[tuple[int, str]]] = {}
        self._due: dict[int, dict[str, int]] = {}  # per partition: each customer's instant

    def schedule(self, partition: int, due: int | None, customer: str) -> None:
        """The customer's next instant is now `due` (None: none, or erased)."""
        dues = self._due.setdefault(partition, {})
        if due is None:
            dues.pop(customer, None)
        elif dues.get(customer) != due:
            dues[customer] = due
            heapq.heappush(self._heaps.setdefault(partition, []), (due, customer))

    def pop_next(self, partition: int, now: int) -> tuple[int, str] | None:
        """The earliest customer due at or before `now`, removed from the index, if any."""
        heap, dues = self._heaps.get(partition), self._due.get(partition)
        while heap and heap[0][0] <= now:
            due, customer = heapq.heappop(heap)
            if dues is not None and dues.get(customer) == due:
                del dues[customer]
                return due, customer
        return None

    def drop(self, partitions: Iterable[int]) -> None:
        for partition in partitions:
            self._heaps.pop(partition, None)
            self._due.pop(partition, None)
