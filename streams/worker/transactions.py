"""Exactly-once (TIERSTREAM_PROCESSING_GUARANTEE=exactly_once): each partition's part of a batch
(its outputs, `customer-tiers` records, dead letters, population reports, changelog records and
the input offsets it read up to) commits in one Kafka transaction, or not at all.

One transactional producer per input partition, with the transactional id
`<app_id>-tx-<partition>`: whoever is assigned a partition starts a producer with its id, and
Kafka then fences every earlier producer of that id (a worker that lost the partition and does
not know yet: its next commit fails with ProducerFenced) and ends the transaction it left open.
That happens before the tables recover and the partitions are sought to their committed offsets
(faust_fixes.before_recovery), so the new owner reads the changelog and the offsets as the last
committed transaction left them. This is how Kafka Streams ran exactly-once before KIP-447
(`exactly_once`, one producer per task): aiokafka's TxnOffsetCommit carries no group generation,
so the group cannot fence a zombie; the transactional id does.

The producers of one assignment live until the next: at each assignment all are stopped and those
of the new one started, so a producer fenced while the partition was away is never used again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import ProducerFenced

from streams.worker import faust_fixes

log = logging.getLogger("tierstream.worker")


class Transactions:
    """The transactional producers of the assigned partitions."""

    def __init__(self, app: Any, app_id: str, timeout_s: float) -> None:
        self.app, self.app_id, self.timeout_s = app, app_id, timeout_s
        self.producers: dict[int, Any] = {}

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-tx-{partition}"

    async def assigned(self, partitions: Iterable[int]) -> None:
        """Stop every producer, then start (and so fence the earlier owners of) one per
        assigned partition."""
        await self.stop()
        started = await asyncio.gather(*(self._start(p) for p in sorted(set(partitions))))
        self.producers = dict(started)

    async def _start(self, partition: int) -> tuple[int, Any]:
        producer = faust_fixes.transactional_producer(
            self.app, self.transactional_id(partition), self.timeout_s)
        await producer.start()
        # the producer id comes with the first transaction; getting it is what fences the
        # earlier owners and ends their open transaction
        await producer.begin_transaction()
        await producer.abort_transaction()
        return partition, producer

    async def stop(self) -> None:
        producers, self.producers = list(self.producers.values()), {}
        await asyncio.gather(*(producer.stop() for producer in producers))

    async def run(self, partition: int, send: Callable[[Any], Awaitable[None]],
                  offsets: Mapping[Any, int], still_ours: Callable[[], bool]) -> bool:
        """Send (`await send(producer)`) and commit, with the input `offsets`, in one
        transaction of the partition's producer; False, with nothing committed, when the
        partition is no longer this worker's (not assigned, `still_ours()` false before the
        commit, or fenced). Any other failure aborts the transaction and is raised."""
        producer = self.producers.get(partition)
        if producer is None:
            return False
        await producer.begin_transaction()
        try:
            await send(producer)
            if not still_ours():
                await producer.abort_transaction()
                return False
            await producer.send_offsets_to_transaction(
                {TopicPartition(tp.topic, tp.partition): offset for tp, offset in offsets.items()},
                self.app.conf.id)
            await producer.commit_transaction()
        except ProducerFenced:
            log.warning("partition %s's producer was fenced (the partition is another worker's "
                        "now): its batch is not committed", partition)
            self.producers.pop(partition, None)
            return False
        except BaseException:
            with contextlib.suppress(Exception):  # (a failed abort: the timeout ends it)
                await asyncio.wait_for(asyncio.shield(producer.abort_transaction()),
                                       self.timeout_s)
            raise
        return True
