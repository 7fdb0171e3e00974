"""The faust worker: one composition root wiring topics, the customer table, the batch path
and the timers.

The worker takes each fetch of its input and tick partitions as one batch (faust_fixes: past
faust's per-message stream) and, per partition, runs the records through the partition's
driver (rules/partition.py), then carries out the effects in this order, for at-least-once
delivery with nothing lost: the outputs, dead letters, `customer-tiers` records and population
reports are sent and delivered; then each changed customer's state is written to the table
(its changelog) once, the Redis view offered the new records, the producer flushed, and the
batch's input offsets committed. While a batch waits for Kafka, the next one is decided on its
states (TableStore.pending), and completes after it. A worker killed anywhere in between reads
the batches not committed again: either a customer's state is still the old one and the same
outputs are produced again with the same ids, or the state already has the event and the engine
ignores it as a duplicate. A batch whose delivery ends after a rebalance began is not stored
(nor any after it): whoever owns its partitions next reads it again.

Under exactly-once (`_batch_in_transactions`) each partition's part of a batch, its input offsets
included, commits in one Kafka transaction (streams/worker/transactions.py) before its states
are written to the table and the Redis view; batches go one at a time.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import heapq
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import faust
from aiokafka.partitioner import murmur2

from models import stored
from models.errors import ConnectError
from models.events import MAX_EVENT_BYTES
from models.instants import MICROS_PER_SECOND
from models.outputs import AxisChange, CustomerTier, Followup, Output, tier_fields
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.partition import TICK, DeadLetter, Effects, Message, Partition
from streams import collector
from streams.kafka import clients as kafka_clients
from streams.kafka import topics
from streams.settings import TABLE_NAME, Settings
from streams.view.redis_view import RedisView, tier_record
from streams.worker import faust_fixes, population, shutdown, web
from streams.worker.metrics import Metrics
from streams.worker.shutdown import GracefulWorker
from streams.worker.topic_watch import TopicWatch
from streams.worker.transactions import Transactions

log = logging.getLogger("tierstream.worker")
REDIS_FLUSH_INTERVAL_S = 0.5
# A dead letter keeps at most this much of the message's value and key, so it always fits under
# Kafka's 1 MB record limit: an input too large to copy is kept truncated, with its size.
DEAD_LETTER_MAX_VALUE = 4 * MAX_EVENT_BYTES  # 256 KiB: whole up to there
DEAD_LETTER_MAX_KEY = 1024
# Records per fetch, so per batch: a batch holds the event loop (lookups, timers) while the
# drivers run, about 0.1 ms a record, and its fixed cost (a delivery round trip, a flush, a
# commit) is a few ms.
BATCH_MAX_RECORDS = 2000

Record = tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]  # key, value, headers


def wall_micros() -> int:
    return time.time_ns() // 1000


class Done(NamedTuple):
    """A partition's part of a batch: its effects, and the fields of the `customer-tiers`
    record of each customer with outputs (models.outputs.tier_fields; None: a tombstone)."""

    partition: int
    effects: Effects
    tiers: dict[str, dict[str, Any] | None]


class InFlight(NamedTuple):
    """A batch whose outputs are sent: `delivered` once Kafka has them all, `completed` once
    it is stored and committed (or dropped)."""

    delivered: asyncio.Future
    completed: asyncio.Future


class TableStore:
    """The customer table as the partition drivers' store: bytes (models/stored.py), parsed per
    read, since bytes are not tracked by the garbage collector and parsed states are
    (docs/streaming.md, "State"). In front of it, the states of batches decided but not stored
    yet (`pending`, None: erased): the next batch is decided while one is delivered."""

    def __init__(self, table: Any) -> None:
        self.table = table
        self.pending: dict[str, CustomerState | None] = {}

    def get(self, customer_id: str) -> CustomerState | None:
        state = self.pending.get(customer_id, _STORED)
        return self.stored(customer_id) if state is _STORED else state

    def stored(self, customer_id: str) -> CustomerState | None:
        value = faust_fixes.read_locally(self.table, customer_id)
        return None if value is None else stored.decode(value)[1]

    def decided(self, states: Mapping[str, CustomerState | None]) -> None:
        self.pending.update(states)

    def written(self, states: Mapping[str, CustomerState | None]) -> None:
        """A batch's states are in the table: forget those no later batch changed since."""
        for customer, state in states.items():
            if self.pending.get(customer, _STORED) is state:
                del self.pending[customer]


_STORED = object()  # TableStore.pending: no pending state, the table has the latest


class Runtime:
    """The worker's moving parts; `app` is the faust application to run."""

    def __init__(self, settings: Settings, policy: CompiledPolicy,
                 metrics: Metrics | None = None) -> None:
        self.settings, self.policy = settings, policy
        self.metrics = metrics or Metrics.create()
        self.ready = False
        self._redis_flush: asyncio.Future | None = None  # the Redis write running, if any
        self.partitions: dict[int, Partition] = {}  # the drivers of the assigned partitions
        self._storing: asyncio.Future | None = None  # a batch writing its states
        self._in_flight: InFlight | None = None  # the batch last sent, completing
        # Relative metrics: the complete populations read from Kafka and this worker's reports
        self.reports = population.Reports(settings.partitions, policy.relative_bases) \
            if policy.relative else None
        names = settings.topics
        faust_fixes.install()
        self.app = faust.App(
            settings.app_id, broker=f"kafka://{settings.bootstrap_servers}",
            store=settings.store, datadir=str(settings.data_dir),
            topic_partitions=settings.partitions, topic_replication_factor=settings.replication,
            consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
            web_enabled=True, web_bind=settings.web_host, web_port=settings.web_port,
            canonical_url=settings.web_url, table_standby_replicas=0,
            broker_credentials=kafka_clients.faust_credentials(settings),
            broker_max_poll_records=BATCH_MAX_RECORDS,
            key_serializer="json", value_serializer="json")
        # Inputs and ticks are one batch per fetch: a partition's events and its time-driven
        # work never interleave, so each load-decide-publish-store runs alone.
        faust_fixes.consume_in_batches(self.app, {*names.inputs, names.ticks}, self._batch,
                                       self._drain)
        self.ticks = self.app.topic(names.ticks, key_serializer="raw", value_serializer="raw")
        self.table = self.app.Table(TABLE_NAME, partitions=settings.partitions,
                                    value_type=bytes,
                                    extra_topic_configs=topics.replicated(settings.replication))
        faust_fixes.restore_in_bulk(self.table)
        self.store = TableStore(self.table)
        self.app.timer(interval=settings.tick_interval_s)(self._send_ticks)
        self.table.on_recover(self._recovered)
        # a fetch unanswered this long means its leader does not answer: half the idle time,
        # and never less than two of faust's long polls (fetch_max_wait_ms 1500)
        self._unanswered_ms = max(settings.idle_after_s * 500, 3000)
        self.transactions = None
        if settings.processing_guarantee == "exactly_once":
            self.transactions = Transactions(self.app, settings.app_id,
                                             settings.transaction_timeout_s)
            faust_fixes.before_recovery(self.app, self._assigning)
        self.app.on_partitions_revoked.connect(self._revoked)
        self.redis = None if settings.redis_url is None else RedisView.from_url(
            settings.redis_url.get_secret_value(), prefix=settings.redis_prefix,
            metrics=self.metrics, kafka=kafka_clients.kafka_python_config(settings),
            topic=names.customer_tiers)  # to rebuild itself when Redis lost its data
        if self.redis is not None:
            self.app.timer(interval=REDIS_FLUSH_INTERVAL_S)(self.redis.flush)
        self.topic_watch = TopicWatch(settings, self.app, self.metrics)  # /health, metric, log
        web.install(self)

    def _partition(self, partition: int) -> Partition:
        settings = self.settings
        return Partition(
            partition, self.policy, self.store,
            lateness=int(settings.lateness_s * MICROS_PER_SECOND),
            idle_after=int(settings.idle_after_s * MICROS_PER_SECOND),
            max_future=int(settings.max_future_s * MICROS_PER_SECOND),
            populations=self.reports, sketch_k=settings.sketch_k)

    async def _batch(self, records: Mapping[Any, Sequence[Any]]) -> None:
        """Decide one fetch of input and tick records and, once the batch before it is
        delivered, send its outputs; the batch then completes (`_complete`) while the next
        fetch is decided. Any failure stops the worker: nothing is sent after a batch not
        delivered, and nothing is committed past a batch not stored."""
        if self.transactions is not None:
            return await self._batch_in_transactions(records)
        started, wall = time.perf_counter(), wall_micros()
        generation = self.app.consumer_generation_id
        previous = self._in_flight
        try:
            done, offsets, count = self._decide(records, wall)
            for item in done:
                self.store.decided(item.effects.states)
            if previous is not None:  # a customer's outputs stay in the order decided
                await asyncio.shield(previous.delivered)
            sent = await self._deliver(done)
        except Exception as error:
            await _stop(error)
        delivered = asyncio.get_running_loop().create_future()
        self._in_flight = InFlight(delivered, asyncio.ensure_future(self._complete(
            previous, delivered, done, sent, offsets, generation, count, started)))
        if previous is not None:  # at most one batch completing while the next is decided
            await asyncio.shield(previous.completed)

    async def _complete(self, previous: InFlight | None, delivered: asyncio.Future,
                        done: list[Done], sent: tuple[list[asyncio.Future], int],
                        offsets: dict[Any, int], generation: int, count: int, started: float
                        ) -> None:
        """Once Kafka has every output of the batch and the batch before has completed, store
        its states and commit its offsets; a batch delivered after a rebalance began is not
        stored (nor any after it): whoever owns its partitions next reads it again."""
        futures, messages = sent
        try:
            try:
                await asyncio.gather(*futures)
            finally:
                self.metrics.undelivered.dec(messages)
            delivered.set_result(None)
            if previous is not None:
                await previous.completed
            if not self._still_ours(generation):
                return
            self._storing = asyncio.get_running_loop().create_future()
            try:
                await self._store_all(done)
                for item in done:
                    self.store.written(item.effects.states)
                if not await faust_fixes.commit(self.app, offsets):
                    log.warning("offsets of a batch not committed (the group rebalanced): "
                                "its input is read again by the partitions' next owner")
            finally:
                self._storing.set_result(None)
                self._storing = None
        except Exception as error:
            await _stop(error)
        self._count(done, count, time.perf_counter() - started)

    async def _drain(self) -> None:
        """The worker stops: the batch still completing, if any, and those it waits for are
        cancelled before faust stops the tables (never committed: read again after the
        restart)."""
        if self._in_flight is not None:
            self._in_flight.completed.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._in_flight.completed
        if self.transactions is not None:
            await self.transactions.stop()

    async def _assigning(self, assigned: set) -> None:
        """Exactly-once: the assigned partitions' producers, before their recovery (fencing
        their previous owners)."""
        assert self.transactions is not None
        await self.transactions.assigned(
            tp.partition for tp in assigned if tp.topic == self.settings.topics.ticks)

    async def _batch_in_transactions(self, records: Mapping[Any, Sequence[Any]]) -> None:
        """Exactly-once: decide a fetch, then commit each partition's part of it in a Kafka
        transaction (streams/worker/transactions.py) and, once committed, write its states to
        the table and offer the Redis view its records; one batch at a time. A partition no
        longer this worker's commits nothing: its next owner reads the batch again."""
        started, wall = time.perf_counter(), wall_micros()
        generation = self.app.consumer_generation_id
        try:
            done, offsets, count = self._decide(records, wall)
            self._storing = asyncio.get_running_loop().create_future()
            try:  # every transaction ends before a revocation may go on (`_revoked`)
                results = await asyncio.gather(*(self._transact(item, offsets, generation)
                                                 for item in done), return_exceptions=True)
            finally:
                self._storing.set_result(None)
                self._storing = None
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        except Exception as error:
            await _stop(error)
        # (what a dropped batch did is counted when its partition's next owner does it again)
        self._count([item for item, result in zip(done, results, strict=True) if result is True],
                    count, time.perf_counter() - started)

    def _still_ours(self, generation: int) -> bool:
        """Whether the batch decided in consumer group `generation` may still be stored: no
        rebalance began since."""
        return self.app.consumer.flow_active and self.app.consumer_generation_id == generation

    async def _transact(self, item: Done, offsets: Mapping[Any, int], generation: int) -> bool:
        assert self.transactions is not None
        out, values = self._records(item), self._encoded(item)
        changelog = self.table.changelog_topic.get_topic_name()
        written: list[Any] = []

        async def send(producer: Any) -> None:
            futures = [future for topic, records in out.items()
                       for future in await self._send(topic, records, producer=producer)]
            logged = await self._send(changelog, self._changelog(values), item.partition,
                                      producer)
            await asyncio.gather(*futures)
            written.extend(await asyncio.gather(*logged))

        count = sum(len(records) for records in out.values()) + len(values)
        self.metrics.undelivered.inc(count)
        try:
            committed = await self.transactions.run(
                item.partition, send,
                {tp: offset for tp, offset in offsets.items() if tp.partition == item.partition},
                lambda: self._still_ours(generation))
        finally:
            self.metrics.undelivered.dec(count)
        self.metrics.transactions.labels("committed" if committed else "dropped").inc()
        if committed:
            self._write(item, values)
            for delivered in written:
                faust_fixes.persisted(self.table, delivered)
        return committed

    def _decide(self, records: Mapping[Any, Sequence[Any]], wall: int
                ) -> tuple[list[Done], dict[Any, int], int]:
        """Run each partition's records through its driver: the input topics' records merged
        in the order they were produced (record timestamp), then a tick if one came."""
        inputs: dict[int, list[Sequence[Any]]] = {}
        offsets, ticks, count = {}, set(), 0
        for tp, fetched in records.items():
            offsets[tp] = fetched[-1].offset + 1
            if tp.topic == self.settings.topics.ticks:
                ticks.add(tp.partition)
            else:
                inputs.setdefault(tp.partition, []).append(fetched)
                count += len(fetched)
        done = []
        for partition in sorted(inputs.keys() | ticks):
            driver = self.partitions.get(partition)
            if driver is None:
                log.warning("partition %s has no driver (not recovered?): starting one with "
                            "no customers known", partition)
                driver = self.partitions[partition] = self._partition(partition)
            items: list[Message | None] = [
                Message(r.topic, r.offset, r.key, r.value)
                for r in heapq.merge(*inputs.get(partition, ()), key=_timestamp)]
            if partition in ticks:  # after the events: their time is the partition's clock
                items.append(TICK)
                if faust_fixes.input_waiting(self.app, self.settings.topics.inputs, partition,
                                             self._unanswered_ms):
                    driver.clocks.busy(partition, wall)  # not idle: input is waiting
            with faust_fixes.writing_partition(self.settings.topics.orders, partition):
                effects = driver.run(items, wall)  # reads from the table's partition
            done.append(Done(partition, effects, {
                customer: None if state is None else tier_fields(state)
                for customer, state in effects.tiers.items()}))
        return done, offsets, count

    async def _deliver(self, done: list[Done]) -> tuple[list[asyncio.Future], int]:
        """Send every output, record and dead letter of the batch: the delivery futures of
        their producer batches, and how many they are."""
        out: dict[str, list[Record]] = {}
        for item in done:
            for topic, records in self._records(item).items():
                out.setdefault(topic, []).extend(records)
        count = sum(len(records) for records in out.values())
        self.metrics.undelivered.inc(count)
        return [future for topic, records in out.items()
                for future in await self._send(topic, records)], count

    def _records(self, done: Done) -> dict[str, list[Record]]:
        """A partition's outputs, `customer-tiers` records, dead letters and population
        reports, by topic."""
        names = self.settings.topics
        binary = self.settings.cloudevents_mode == "binary"
        prefix = self.settings.event_type_prefix
        partition, effects, tiers = done
        out: dict[str, list[Record]] = {}
        for output in effects.outputs:
            value, headers = output.kafka_record(binary, prefix)
            out.setdefault(names.tier_changes if output.topic_kind == "tier-changes"
                           else names.churn_warnings, []).append(
                (output.subject.encode(), value, headers))
        for customer, fields in tiers.items():
            out.setdefault(names.customer_tiers, []).append(
                (customer.encode(), None if fields is None else CustomerTier.written(fields), []))
        for dead in effects.dead_letters:
            out.setdefault(names.dead_letters, []).append(self._dead_letter(dead, partition))
        for record in effects.reports:
            out.setdefault(names.population, []).append((str(partition).encode(), record, []))
        return out

    async def _store_all(self, done: list[Done]) -> None:
        """Write the batch's changed states to the table and send their changelog records,
        then wait for all of them: a revocation waits for this (`_revoked`)."""
        changelog = self.table.changelog_topic.get_topic_name()
        written = []
        for item in done:
            values = self._encoded(item)
            self._write(item, values)
            written += await self._send(changelog, self._changelog(values), item.partition)
        for delivered in await asyncio.gather(*written):
            faust_fixes.persisted(self.table, delivered)

    async def _send(self, topic: str, records: list[Record], partition: int | None = None,
                    producer: Any = None) -> list[asyncio.Future]:
        """Send records in producer batches (with faust's producer unless given another), to
        `partition` or by key as Kafka's default partitioner places them; one delivery future
        per batch."""
        if producer is None:
            producer = faust_fixes.aiokafka_producer(self.app)
        by_partition: dict[int, list[Record]] = {}
        if not records:
            return []
        if partition is not None:
            by_partition[partition] = records
        else:
            partitions = sorted(await producer.partitions_for(topic))
            for record in records:
                by_partition.setdefault(place(record[0], partitions), []).append(record)
        sent = []
        for partition, batch_records in by_partition.items():
            batch = producer.create_batch()
            for key, value, headers in batch_records:
                while batch.append(key=key, value=value, timestamp=None,
                                   headers=headers) is None:  # full: send it, start another
                    sent.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
            sent.append(await producer.send_batch(batch, topic, partition=partition))
        return sent

    def _encoded(self, done: Done) -> dict[str, bytes | None]:
        """The table values of a partition's changed customers (None: erased)."""
        partition = done.partition
        return {customer: None if state is None else stored.encode(partition, state)
                for customer, state in done.effects.states.items()}

    def _changelog(self, values: Mapping[str, bytes | None]) -> list[Record]:
        return [(faust_fixes.changelog_key(self.table, customer), value, [])
                for customer, value in values.items()]

    def _write(self, done: Done, values: Mapping[str, bytes | None]) -> None:
        """Write a partition's changed states to the table (its local store: the changelog
        records are the caller's to send), once per customer, and offer the Redis view the new
        `customer-tiers` records."""
        with faust_fixes.writing_partition(self.settings.topics.orders, done.partition):
            for customer, value in values.items():
                faust_fixes.write_locally(self.table, customer, value)
        effects = done.effects
        if self.redis is not None and effects.tiers:  # derived: written behind
            for customer, fields in done.tiers.items():
                record = None if fields is None else tier_record(customer, fields)
                self.redis.offer(customer, record, effects.erased_created_at.get(customer))
            self._flush_redis()

    def _count(self, done: list[Done], count: int, seconds: float) -> None:
        metrics = self.metrics
        for _, effects, _ in done:
            for (topic, kind, outcome), n in effects.events.items():
                metrics.events.labels(topic, kind, outcome).inc(n)
            for lag in effects.lags:
                metrics.event_time_lag.observe(max(lag, 0) / MICROS_PER_SECOND)
            for dead in effects.dead_letters:
                metrics.dead_letters.labels(dead.reason).inc()
            self._count_outputs(effects.outputs)
        if count:
            metrics.processing.observe(seconds / count)
        due = [d.effects.due_customers for d in done if d.effects.due_customers is not None]
        if due:  # the batch had ticks
            metrics.timer_due.set(sum(due))
        self._set_customers()
        latest = None if self.reports is None else self.reports.latest()
        if latest is not None:
            metrics.population_taken_at.set(latest.taken_at / MICROS_PER_SECOND)

    def _set_customers(self) -> None:
        """The gauges of customers per tier and per class of each axis."""
        drivers = self.partitions.values()
        tiers = sum((driver.tiers for driver in drivers), Counter())
        for tier in self.policy.tier_ids:
            self.metrics.customers.labels(tier).set(tiers[tier])
        classes = sum((driver.classes for driver in drivers), Counter())
        for ladder in self.policy.axes:
            for name in ladder.ids:
                self.metrics.classes.labels(ladder.axis, name).set(classes[ladder.axis, name])

    async def _send_ticks(self) -> None:
        """One tick per assigned partition, so time-driven work runs in the partition's
        batches."""
        wall = wall_micros()
        for partition in self.assigned():
            if (driver := self.partitions.get(partition)) is not None:
                driver.clocks.assigned([partition], wall)
            await self.ticks.send(key=b"tick", value=str(wall).encode(), partition=partition)

    def assigned(self) -> list[int]:
        assignment = self.app.consumer.assignment() if self.app.consumer else set()
        return sorted(tp.partition for tp in assignment if tp.topic == self.settings.topics.ticks)

    def load(self, customer: str) -> CustomerState | None:
        """A customer's state as stored (a lookup never sees one whose outputs are not
        delivered)."""
        return self.store.stored(customer)

    def _flush_redis(self, previous: asyncio.Future | None = None) -> None:
        """Write the Redis view right behind the changes, one flush at a time: a change offered
        during a flush goes with the next, started when it ends if it wrote anything (after a
        Redis failure, the timer retries every REDIS_FLUSH_INTERVAL_S)."""
        assert self.redis is not None
        if previous is None:
            if self._redis_flush is not None and not self._redis_flush.done():
                return
        elif previous.cancelled() or previous.exception() is not None or \
                not previous.result() or not self.redis.backlog:
            return
        self._redis_flush = asyncio.ensure_future(self.redis.flush())
        self._redis_flush.add_done_callback(self._flush_redis)

    def _count_outputs(self, outputs: list[Output]) -> None:
        metrics, counts = self.metrics, Counter[tuple[Any, tuple[str, ...]]]()
        for output in outputs:  # counted first: a labelled child is looked up once per batch
            data = output.data
            if isinstance(data, Followup):
                counts[metrics.followups, (output.type, data.tier, data.channel)] += 1
                continue
            if isinstance(data, AxisChange):
                counts[metrics.axis_moves, (output.type, data.axis, data.from_class or "",
                                            data.to_class)] += 1
                continue
            counts[metrics.transitions, (output.type, data.from_tier or "",
                                         data.to_tier or "")] += 1
            if output.type == "tierstream.churn.warning":
                counts[metrics.churn_warnings, (data.rule,)] += 1
        for (metric, labels), n in counts.items():
            metric.labels(*labels).inc(n)

    def _dead_letter(self, dead: DeadLetter, partition: int) -> Record:
        """The dead-letter record of an input message (its original bytes, truncated to fit,
        and where it came from) or of a failed time-driven decision (keyed by the customer,
        saying when the policy failed and how, with the ticks topic as its source)."""
        if dead.message is None:
            assert dead.failed is not None
            record = dead.failed.record()
            log.error("policy failed to decide customer %s at %s (decided again later): %s",
                      dead.failed.customer_id, record["at"], dead.failed.error)
            key, value = dead.failed.customer_id.encode(), json.dumps(record).encode()
            headers = [("source_topic", self.settings.topics.ticks.encode())]
        else:
            message = dead.message
            headers = [("source_topic", message.topic.encode()),
                       ("source_partition", str(partition).encode()),
                       ("source_offset", str(message.offset).encode())]
            key, value = message.key, message.value
            if len(value or b"") > DEAD_LETTER_MAX_VALUE or \
                    len(key or b"") > DEAD_LETTER_MAX_KEY:
                headers += [("truncated", b"true"),
                            ("original_value_bytes", str(len(value or b"")).encode()),
                            ("original_key_bytes", str(len(key or b"")).encode())]
                key = None if key is None else key[:DEAD_LETTER_MAX_KEY]
                value = None if value is None else value[:DEAD_LETTER_MAX_VALUE]
            log.warning("dead letter %s[%s]@%s: %s", message.topic, partition,
                        message.offset, dead.error[:200])
        return key, value, [*headers, ("reason", dead.reason.encode()),
                            ("error", dead.error[:1000].encode())]

    async def _recovered(self) -> None:
        """After recovery: one driver per assigned partition, its due index and counts built
        in one pass over the recovered customers, not one per tick.

        A partition's clock starts again from the events read after recovery, never from its
        customers' clocks: the table can be ahead of the committed input (states written after
        the last offset commit), and a clock taken from it would let the ticks decide customers
        whose events are still to be read again (docs/streaming.md, "Time")."""
        self.store.pending.clear()  # of batches never stored: read again
        self.partitions = {partition: self._partition(partition)
                           for partition in self.assigned()}
        for customer, value in self.table.items():
            partition, tier, next_change_at, classes = stored.peek(value)
            driver = self.partitions.get(partition)
            if driver is not None:
                driver.recovered(customer, tier, next_change_at, classes)
        self._set_customers()
        if not self.ready:  # what lives now (modules, the app) lives on: never scan it again
            collector.settle()
        self.ready = True

    async def _revoked(self, sender: Any, revoked: set, **_: Any) -> None:
        """A batch storing its states finishes first (its writes and commit belong to this
        generation); one still being delivered is dropped once it sees the flow stopped."""
        if self._storing is not None:
            await asyncio.shield(self._storing)
        for tp in revoked:
            if tp.topic == self.settings.topics.ticks:
                self.partitions.pop(tp.partition, None)


async def _stop(error: Exception) -> None:
    log.exception("batch failed")
    shutdown.request_stop(f"a batch failed ({error!r}): it is not committed; after the restart "
                          f"it is processed again")
    await asyncio.Future()  # until the worker stops: nothing more is sent or committed


def _timestamp(record: Any) -> int:
    return record.timestamp


def place(key: bytes | None, partitions: list[int]) -> int:
    """The partition of `partitions` (sorted) Kafka's default partitioner places a record key
    in; a record without a key (a dead letter of a keyless message) in any, at random."""
    if key is None:
        return random.choice(partitions)
    return partitions[_key_hash(key) % len(partitions)]


@functools.lru_cache(maxsize=1 << 16)
def _key_hash(key: bytes) -> int:
    """aiokafka's murmur2 of a key (~3 us of Python), kept: a customer's outputs and
    `customer-tiers` record of a batch share it."""
    return murmur2(key) & 0x7FFFFFFF


def run(settings: Settings, policy: CompiledPolicy, loglevel: str = "WARNING") -> None:
    """Check the cluster and the topics, then run a worker until SIGTERM or Ctrl-C."""
    topics.check(settings)
    redis_check(settings)
    runtime = Runtime(settings, policy)
    if runtime.reports is not None:  # the populations so far, before the first event
        feed = population.Feed(settings, runtime.reports)
        feed.load()
        feed.start()
    # SIGTERM stops the worker within shutdown.GRACE_S in every state
    with collector.tuned():
        GracefulWorker(runtime.app, loglevel=loglevel, quiet=True).execute_from_commandline()


def redis_check(settings: Settings) -> None:
    """Fail at start, clearly, when Redis is configured but unreachable or refuses us."""
    if settings.redis_url is None:
        return
    import redis

    url = settings.redis_url.get_secret_value()
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        where = url.rsplit("@", 1)[-1]  # never print the password
        raise ConnectError(
            f"cannot use Redis at {where}: {type(error).__name__}: {error}") from None
    finally:
        client.close()
