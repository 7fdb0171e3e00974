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
A producer fenced while this worker still takes the partition for its own (a zombie that has not
seen the rebalance yet, or a transaction the broker aborted after TIERSTREAM_TRANSACTION_TIMEOUT_S)
is stopped and the worker asks its group to rebalance: the next assignment starts a new producer,
and the batches dropped meanwhile are read again from the committed offsets. A transaction that
fails with a Kafka error or does not end within that timeout (brokers restarting, leaders and
coordinators moving) is aborted and handled the same way, so a rolling restart of the cluster
does not stop the worker. Any other failure (a bug), the MOST_FAILURES-th failure of a partition
in a row (one that lasts: an ACL, a record too large) and one during the commit (whether the
commit holds is not known, and the Redis view would miss it) still stop the worker (exit 1).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from aiokafka import TopicPartition
from aiokafka.errors import KafkaError, ProducerFenced
from aiokafka.producer.transaction_manager import TransactionState

from streams.worker import faust_fixes

log = logging.getLogger("tierstream.worker")
_ABORTABLE = (TransactionState.IN_TRANSACTION, TransactionState.ABORTABLE_ERROR)
MOST_FAILURES = 5  # transactions of a partition failing in a row: then the worker stops
ABORT_WAIT_S = 5.0
STOP_WAIT_S = 10.0


class Transactions:
    """The transactional producers of the assigned partitions."""

    def __init__(self, app: Any, app_id: str, timeout_s: float) -> None:
        self.app, self.app_id, self.timeout_s = app, app_id, timeout_s
        self.producers: dict[int, Any] = {}
        self.failures: dict[int, int] = {}  # per partition, transactions failed in a row

    def transactional_id(self, partition: int) -> str:
        return f"{self.app_id}-tx-{partition}"

    async def assigned(self, partitions: Iterable[int]) -> None:
        """Stop every producer, then start (and so fence the earlier owners of) one per
        assigned partition: `start` gets the producer id, which ends the open transaction of
        the id's previous producer."""
        await self.stop()
        started: dict[int, Any] = {}
        try:
            for partition in sorted(set(partitions)):
                started[partition] = faust_fixes.transactional_producer(
                    self.app, self.transactional_id(partition), self.timeout_s)
            await asyncio.gather(*(producer.start() for producer in started.values()))
        except BaseException:
            await _stopped(started.values())
            raise
        self.producers = started

    async def stop(self) -> None:
        producers, self.producers = list(self.producers.values()), {}
        await _stopped(producers)

    async def run(self, partition: int, send: Callable[[Any], Awaitable[None]],
                  offsets: Mapping[Any, int], still_ours: Callable[[], bool]) -> bool:
        """Send (`await send(producer)`) and commit, with the input `offsets`, in one
        transaction of the partition's producer, within the transaction timeout; False, with
        nothing committed, when the partition is no longer this worker's (not assigned,
        `still_ours()` false before the commit, or fenced) or the transaction failed with a
        Kafka error or timed out before its commit (fewer than MOST_FAILURES times in a row). Any
        other failure, or one while committing (whether the commit holds is not known), is
        raised."""
        producer = self.producers.get(partition)
        if producer is None:
            return False
        try:
            committed = await asyncio.wait_for(
                self._run(producer, send, offsets, still_ours), self.timeout_s)
        except ProducerFenced:
            log.warning("partition %s's transactional producer was fenced (another worker has "
                        "the partition, or the broker aborted a transaction open longer than "
                        "%s s): its batch is not committed", partition, self.timeout_s)
        except (TimeoutError, KafkaError) as error:
            # A broker failing or moving its leaders or coordinators mid-transaction (a rolling
            # restart): the worker goes on, as Kafka Streams does with a corrupted task.
            self.failures[partition] = failures = self.failures.get(partition, 0) + 1
            if _state(producer) is TransactionState.COMMITTING_TRANSACTION or \
                    failures >= MOST_FAILURES:
                await _stopped([producer])
                raise
            log.warning("partition %s's transaction failed (%r, %s in a row): it is aborted "
                        "and its batch not committed", partition, error, failures)
            await _aborted(producer)
        except BaseException:
            await _aborted(producer)
            raise
        else:
            if committed:
                self.failures.pop(partition, None)
            return committed
        # The partition's batches read since are dropped until the next assignment (a new
        # producer, the table and offsets as the last committed transaction left them).
        if self.producers.get(partition) is producer:
            del self.producers[partition]
        await _stopped([producer])
        if still_ours():
            log.warning("partition %s: the group rebalances to read its input again from the "
                        "last committed offsets", partition)
            await faust_fixes.request_rebalance(self.app)
        return False

    async def _run(self, producer: Any, send: Callable[[Any], Awaitable[None]],
                   offsets: Mapping[Any, int], still_ours: Callable[[], bool]) -> bool:
        await producer.begin_transaction()
        await send(producer)
        if not still_ours():
            await producer.abort_transaction()
            return False
        await producer.send_offsets_to_transaction(
            {TopicPartition(tp.topic, tp.partition): offset for tp, offset in offsets.items()},
            self.app.conf.id)
        await producer.commit_transaction()
        return True


async def _aborted(producer: Any) -> None:
    """Abort the producer's open transaction, if it has one (none when cancelled before its
    begin or after its commit), waiting ABORT_WAIT_S at most: when the broker is what failed,
    the abort fails too, and the id's next producer aborts the transaction anyway."""
    if _state(producer) not in (None, *_ABORTABLE):  # (aiokafka raises outside one)
        return
    try:
        await asyncio.wait_for(producer.abort_transaction(), ABORT_WAIT_S)
    except Exception as error:
        log.warning("abort of a transaction failed: %r", error)


def _state(producer: Any) -> TransactionState | None:
    """aiokafka's transaction state of the producer (None: a stand-in that keeps none)."""
    manager = getattr(producer, "_txn_manager", None)
    return None if manager is None else manager.state


async def _stopped(producers: Iterable[Any]) -> None:
    """Stop the producers, giving up after STOP_WAIT_S on those not stopped by then: a producer
    flushes first, and a transactional batch waits for its leader however long (the id's next
    producer fences one left behind)."""
    stopping = asyncio.gather(*(producer.stop() for producer in producers),
                              return_exceptions=True)
    try:
        await asyncio.wait_for(stopping, STOP_WAIT_S)
    except TimeoutError:
        log.warning("a transactional producer did not stop within %s s: left behind",
                    STOP_WAIT_S)
