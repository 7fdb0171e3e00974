"""Steps that wait for Kafka to have what was sent before them, without holding up the stream.

The changelog must never hold a state whose outputs Kafka does not have: a worker killed after
writing it would reprocess the event, find it applied already, and never send those outputs.
Awaiting each event's delivery before its table write kept that order at the cost of one
produce round trip per event (docs/benchmarks.md). Instead the worker sends an event's outputs
and goes on with the next event; the table write and the event's ack wait here, queued per
partition in processing order, and run as soon as everything sent before them, in that
partition, has been delivered. faust commits only acked offsets (and flushes its producer
first), so no input offset is committed before the state it made is in the changelog; a worker
killed with steps still queued reprocesses those events and sends the same outputs, with the
same ids, again.

A step that runs from a delivery callback runs outside the stream, so faust's current event
(which picks the changelog partition and the RocksDB partition of a table write) is set to the
event the step belongs to, as if it had run right away.
"""

from __future__ import annotations

import asyncio
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from faust.streams import _current_event


@dataclass(slots=True)
class _Step:
    event: Any
    sent: list[asyncio.Future]
    run: Callable[[], Any]


class AfterDelivery:
    """Per partition, steps in processing order, each run once its own sends and everything
    before it are delivered. A failed delivery stops its partition's queue and is raised by
    `check`."""

    def __init__(self) -> None:
        self.queues: dict[int, deque[_Step]] = {}
        self.failure: BaseException | None = None

    def then(self, partition: int, event: Any, sent: list[asyncio.Future],
             run: Callable[[], Any]) -> None:
        """Run `run` in `event`'s context once `sent` and the partition's earlier steps are done."""
        queue = self.queues.setdefault(partition, deque())
        queue.append(_Step(event, sent, run))
        for future in sent:
            if not future.done():
                future.add_done_callback(lambda _, p=partition: self._run(p))
        self._run(partition)

    def waiting(self) -> int:
        return sum(len(queue) for queue in self.queues.values())

    async def settle(self, partition: int, limit: int) -> None:
        """Wait until at most `limit` steps of the partition are queued (backpressure while
        Kafka is slow or away)."""
        while (queue := self.queues.get(partition)) and len(queue) > limit and \
                self.failure is None:
            await asyncio.wait(queue[0].sent)
            self._run(partition)
        self.check()

    def check(self) -> None:
        if self.failure is not None:
            raise self.failure

    def forget(self, partitions: Iterable[int]) -> None:
        """Drop the steps of revoked partitions: their events were never acked, so whoever
        owns the partition next reprocesses them."""
        for partition in partitions:
            self.queues.pop(partition, deque()).clear()

    def _run(self, partition: int) -> None:
        queue = self.queues.get(partition)
        while queue and self.failure is None and all(f.done() for f in queue[0].sent):
            step = queue[0]
            for future in step.sent:
                error = RuntimeError("a send was cancelled") if future.cancelled() \
                    else future.exception()
                if error is not None:
                    self.failure = error
                    return
            queue.popleft()
            token = _current_event.set(weakref.ref(step.event))
            try:
                step.run()
            except Exception as error:  # a table write that failed: stop like a failed send
                self.failure = error
            finally:
                _current_event.reset(token)
