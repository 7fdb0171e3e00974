"""The customers of a partition by the instant time alone could next change them: a heap."""

from __future__ import annotations

import heapq


class DueIndex:
    """A customer decided again keeps its old entry in the heap; the index knows each
    customer's current instant, so such stale entries are passed over without the caller
    reading the customer's state."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, str]] = []
        self._due: dict[str, int] = {}  # each customer's current instant

    def schedule(self, due: int | None, customer: str) -> None:
        """The customer's next instant is now `due` (None: none, or erased)."""
        if due is None:
            self._due.pop(customer, None)
        elif self._due.get(customer) != due:
            self._due[customer] = due
            heapq.heappush(self._heap, (due, customer))

    def pop_next(self, now: int) -> tuple[int, str] | None:
        """The earliest customer due at or before `now`, removed from the index, if any."""
        heap, dues = self._heap, self._due
        while heap and heap[0][0] <= now:
            due, customer = heapq.heappop(heap)
            if dues.get(customer) == due:
                del dues[customer]
                return due, customer
        return None
