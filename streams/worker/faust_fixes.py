"""Every touch of faust-streaming's internals, for the 0.15 series it was written for
(`install` refuses another): two corrections that at-least-once delivery depends on, the
worker's batch path past faust's per-message stream, and the table's restore in bulk.

1. `Recovery.on_recovery_completed` resumes the stream partitions and only then seeks them back to
their committed offsets. The consumer keeps fetching stream partitions while the tables recover
from their changelogs, so after a restart that had a changelog to read (always with `memory://`)
the fetcher can hand the agent those early records in the window between resume and seek; the
read offsets then get tangled with the seek and a block of input records is skipped for good:
found by the SIGKILL test (about one restart in three lost a block of one partition's events;
with this fix, none in repeated runs). The fix seeks first and resumes after, the order faust's
own `_resume_streams` was given in faust-streaming PR #217.

2. The fetcher hands aiokafka faust's live set of active partitions (`Consumer._active_partitions`,
shared with the consumer thread), and aiokafka's `Fetcher.fetched_records` takes an empty
collection to mean every partition (`if partitions and tp not in partitions`). faust only starts
a fetch while the set is non-empty, but one is usually still waiting (up to 1 s) when recovery
pauses the changelog partitions and the set becomes empty. The next fetch response then makes
aiokafka hand over, and move its position past, the buffered records of every partition, stream
partitions included; faust's `getmany` drops them since they are not active. Before the seek of
(1) that is harmless, but the block from the committed offset on is gone for good, without any
log, when the response is the stream partition's first one after that seek and the main thread
has not resumed it yet (a window that grows when the machine is loaded), and at any moment for a
partition with no committed offset yet (a worker killed before its first commit: aiokafka's
`seek_to_committed` then seeks nothing); once a later record of that partition is processed,
faust's read-offset gap logic even commits past the block. That was the rare SIGKILL-test failure
on `memory://` (`rocksdb://` with its data dir reads no changelog, so no fetch is waiting then).
robinhood/faust PR #69 named this race (a reference to the active set, paused to empty during a
fetch) and fixed it with a lock that faust-streaming no longer has. The fix gives aiokafka a view
of the live set that is never empty-means-all, so aiokafka only takes records of partitions that
are active at that moment; a partition paused after that is always seeked before it resumes.

3. The batch path (`consume_in_batches`): the worker takes what the fetcher fetched of its
input and tick partitions as one batch per fetch, before faust turns each record into a message
and an event for a stream (faust's per-message path cost more than all of the worker's own work,
docs/benchmarks.md). The batch's topics stay subscribed through faust (assignment, recovery
pauses and seeks are faust's), its records never reach faust's acks, and the worker commits
their offsets itself once the batch is stored (streams/worker/runtime.py). Records fetched while the
flow is stopped (a rebalance began) are left to faust's `getmany`, which seeks back to the
committed offsets, as it does with its own. Table writes go to the table's local store
(`write_locally`) while the worker sends their changelog records itself, in producer batches
(faust's one buffered send per table write cost a fifth of the worker's time); RocksDB is then
told the offset it holds (`persisted`), as faust's own delivery callback does. A batch completes
after the handler returns (the next fetch is decided meanwhile), so when the worker stops, the
handler's `drain` runs right after faust stops the fetcher and before it stops the tables.

4. Restore in bulk (`restore_in_bulk`): faust recovers a table by reading its changelog
through the group consumer and turning every record into a message and an event before it
reaches the store: about 2,000 customers/s on the peer job's 50,000 (docs/benchmarks.md). For a
table marked so, once faust has worked out where reading would start and end, a consumer of its
own reads each changelog partition up to faust's highwater and hands each key's latest record to
the store's `apply_changelog_batch` (the same call faust's recovery ends in, so the memory store
learns each key's partition and RocksDB its persisted offsets), and faust is told how far each
partition is read. faust waits for this step at most its request timeout and then stops
recovering for good, so the read stops after half of it and leaves the rest, if any, to faust's
own recovery, record by record. A rebalance during the read cancels it: what it applied is, for
each key, a record the changelog holds for it, and the next recovery reads again from faust's
offsets.

5. Exactly-once (streams/worker/transactions.py): every consumer faust creates reads committed
records only (under at-least-once nothing is transactional, so that changes nothing), and its
recovery counts a changelog partition read past its highwater (then a transaction's marker,
never an event) as read. A hook runs at each assignment before the tables start to recover
(`before_recovery`): there the partitions' transactional producers are started, which fences
their previous owners and ends their open transactions before the changelogs and committed
offsets are read. The producers are built as faust builds its own (`transactional_producer`).

6. Reaching into the clients (the rest of this module): aiokafka's client asks for metadata
again as soon as an answer comes while a queued batch's topic is missing (~1,800 requests and log
lines a second), so `install` makes it wait its retry backoff between refreshes, as the Java
client does; the topic watch (streams/worker/topic_watch.py) has faust's consumer refresh its
metadata and asks what the producer's metadata knows; the worker's stop signals start its
watchdog (streams/worker/shutdown.py).

Everything else is faust's code as is.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import operator
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from collections.abc import Set as AbstractSet
from json.encoder import encode_basestring_ascii
from types import SimpleNamespace
from typing import Any, cast

import aiokafka
import faust
import msgspec
from aiokafka.client import AIOKafkaClient
from faust.app.base import App
from faust.streams import _current_event
from faust.tables.manager import TableManager
from faust.tables.recovery import Recovery
from faust.transport.consumer import Consumer
from faust.transport.drivers.aiokafka import (
    AIOKafkaConsumerThread,
    credentials_to_aiokafka_auth,
    server_list,
)
from faust.utils import json as faust_json

WRITTEN_FOR = "0.15."
BatchHandler = Callable[[Mapping[Any, Sequence[Any]]], Awaitable[None]]


async def _on_recovery_completed(self: Recovery, generation_id: int = 0) -> None:
    consumer = self.app.consumer
    self.log.info("Restore complete!")
    await self.app.on_rebalance_complete.send()
    self._set_recovery_ended()
    callbacks = [asyncio.ensure_future(table.on_recovery_completed(
        self.actives_for_table[table], self.standbys_for_table[table]))
        for table in self.tables.values()]
    if callbacks:
        await asyncio.wait(callbacks)
    assignment = consumer.assignment()
    if self.app.consumer_generation_id != generation_id:
        self.log.warning("Recovery rebalancing again app id %s param %s",
                         self.app.consumer_generation_id, generation_id)
        return
    if assignment:  # seek before resume: nothing fetched before the seek may reach the agent
        self.log.info("Seek stream partitions to committed offsets.")
        await self._wait(consumer.perform_seek(),
                         timeout=self.app.conf.broker_request_timeout)
    consumer.resume_partitions({tp for tp in assignment if not self._is_changelog_tp(tp)})
    self.completed.set()
    self.app.flow_control.resume()
    consumer.resume_flow()
    await cast(Any, self.app)._fetcher.maybe_start()
    self.tables.on_actives_ready()
    if not self.app.assignor.assigned_standbys():
        self.tables.on_standbys_ready()
    self.app.on_rebalance_end()
    self.log.info("Worker ready")


class _ActivePartitions:
    """The live active set as aiokafka's `fetched_records` reads it: `tp in view` asks the live
    set at the moment aiokafka would take tp's records, and the view is never empty (an empty
    collection means "all partitions" to aiokafka, but "none" to faust)."""

    __slots__ = ("tps",)

    def __init__(self, tps: AbstractSet[Any]) -> None:
        self.tps = tps

    def __bool__(self) -> bool:
        return True

    def __contains__(self, tp: object) -> bool:
        return tp in self.tps


_fetch_records = AIOKafkaConsumerThread._fetch_records


async def _fetch_active_records(self: AIOKafkaConsumerThread, consumer: Any,
                                active_partitions: Any, timeout: float | None = None,
                                max_records: int | None = None) -> Any:
    if active_partitions is not None:  # None: a client-only app, which reads everything
        active_partitions = _ActivePartitions(active_partitions)
    return await _fetch_records(self, consumer, active_partitions, timeout=timeout,
                                max_records=max_records)


_wait_next_records = Consumer._wait_next_records
_BATCHES = "_tierstream_batches"


async def _wait_next_records_in_batches(self: Consumer, timeout: float) -> Any:
    records, active = await _wait_next_records(self, timeout)
    batches = getattr(self.app, _BATCHES, None)
    if not records or batches is None or not self.flow_active:
        return records, active
    topics, handler, _ = batches
    ours = {tp: records.pop(tp) for tp in [tp for tp in records if tp.topic in topics]
            if active is None or tp in active}
    if ours:
        await handler(ours)
    return records, active


def consume_in_batches(app: faust.App, topics: AbstractSet[str], handler: BatchHandler,
                       drain: Callable[[], Awaitable[None]]) -> None:
    """Subscribe `topics` and hand `handler` each fetch's records of them (aiokafka
    ConsumerRecords by TopicPartition); it runs in the fetcher, so the next fetch waits. When
    the worker stops, `drain` runs once the fetcher has stopped and before the tables do: the
    work the handler left running must end there."""
    for topic in topics:
        # acks=False: faust's monitor would take topics it never sees acked for stalled streams
        app.topics.add(app.topic(topic, key_serializer="raw", value_serializer="raw",
                                 acks=False))
    setattr(app, _BATCHES, (frozenset(topics), handler, drain))


_stop_fetcher = App._stop_fetcher


async def _stop_fetcher_and_batches(self: App) -> None:
    await _stop_fetcher(self)
    batches = getattr(self, _BATCHES, None)
    if batches is not None:
        await batches[2]()


class _StandIn:
    """An event of a partition, as far as faust's table writes read one."""

    def __init__(self, topic: str, partition: int) -> None:
        self.message = SimpleNamespace(topic=topic, partition=partition)


@contextlib.contextmanager
def writing_partition(topic: str, partition: int) -> Iterator[None]:
    """Table writes inside go to `partition` (faust picks the changelog and RocksDB partition
    from the event being processed, here a stand-in for one of the partition's records)."""
    event = _StandIn(topic, partition)
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def read_locally(table: Any, key: str) -> bytes | None:
    """A key's value in the table's local store (faust's Table.get, without its per-read
    sensor calls)."""
    return table.data.get(key)


def write_locally(table: Any, key: str, value: bytes | None) -> None:
    """Set (None: delete) a key in the table's local store only, inside `writing_partition`;
    its changelog record (`changelog_key`, `value`) is the caller's to send."""
    if value is None:
        table.data.pop(key, None)
    else:
        table.data[key] = value


def changelog_key(table: Any, key: str) -> bytes:
    """The changelog record key of a table key, as faust writes it. A JSON key of no declared
    type that is a string (a customer id) is what faust's JSON codec writes for it when that is
    the standard library's (not orjson or simplejson, which faust would use if installed): the
    string escaped to ASCII, quoted. faust's registry and codec around that took 90% of the
    time."""
    if _STDLIB_JSON and type(key) is str and table.key_type is None \
            and table.key_serializer == "json":
        return encode_basestring_ascii(key).encode()
    return table.app.serializers.dumps_key(table.key_type, key, serializer=table.key_serializer)


_STDLIB_JSON = faust_json.orjson is None and faust_json.json is json


def persisted(table: Any, metadata: Any) -> None:
    """The changelog holds the local store's writes up to the batch that `metadata` (a
    delivered changelog batch: its first offset) belongs to; at most that batch is read again
    at a RocksDB restart."""
    table.data.set_persisted_offset(metadata.topic_partition, metadata.offset)


def aiokafka_producer(app: faust.App) -> Any:
    """faust's aiokafka producer, for producer batches (`create_batch`, `send_batch`)."""
    return app.producer._ensure_producer()


_build_offsets = Recovery._build_offsets
_BULK = "_tierstream_restore_in_bulk"
RESTORE_CHUNK = 10_000  # the most records one fetch of the restore returns
RESTORE_HELD = 50_000  # the most keys of a partition held before they go to the store
_OFFSET = operator.attrgetter("offset")
_KEY = operator.attrgetter("key")


def restore_in_bulk(table: Any) -> None:
    """Recover `table` from its changelog with a consumer of its own, not record by record."""
    setattr(table, _BULK, True)


async def _build_offsets_restoring_in_bulk(self: Recovery, consumer: Any, tps: Any,
                                           destination: Any, title: str) -> None:
    await _build_offsets(self, consumer, tps, destination, title)
    if title != "active":
        return
    ends = self.active_highwaters  # the last offset of each changelog partition
    todo = {tp: (destination[tp] + 1, ends[tp]) for tp in tps
            if getattr(self.tp_to_table.get(tp), _BULK, False) and ends.get(tp) is not None
            and destination[tp] < ends[tp]}
    if todo:
        read = await _read_changelogs(self, todo)
        for tp, last in read.items():  # (a Counter: `update` would add)
            destination[tp] = last


class _Record:
    """A changelog record as a store's `apply_changelog_batch` reads one."""

    __slots__ = ("tp", "partition", "offset", "key", "value")

    def __init__(self, tp: Any, offset: int, key: bytes, value: bytes | None) -> None:
        self.tp, self.partition, self.offset, self.key, self.value = \
            tp, tp.partition, offset, key, value


class _Event:
    """Its event: the key as the table's key serializer reads it."""

    __slots__ = ("key", "value", "message")

    def __init__(self, key: Any, record: _Record) -> None:
        self.key, self.value, self.message = key, record.value, record


class _Latest:
    """The latest record read of each key of one changelog partition, not yet in the store.

    A store ends up holding each key's latest record whatever came before it, so only that one
    is decoded and applied: a customer written many times since the last compaction costs one
    key decoded and one event built, not one per record. They go to the store in offset order,
    as faust's recovery applies them, and the last record read is always among them, so RocksDB
    still learns the partition's last offset as persisted."""

    def __init__(self, recovery: Recovery, tp: Any, first: int) -> None:
        self.tp, self.table = tp, recovery.tp_to_table[tp]
        self.loads = _key_loader(recovery.app, self.table)
        self.records: dict[bytes, Any] = {}
        self.read = self.applied = first - 1  # the last offset read, and in the store

    def add(self, records: Sequence[Any]) -> None:
        if records:
            self.records.update(zip(map(_KEY, records), records, strict=True))
            self.read = records[-1].offset
            if len(self.records) >= RESTORE_HELD:
                self.apply()

    def apply(self, through: int | None = None) -> None:
        """Hand the held records to the store; `through`: the partition is read up to there."""
        if self.records:
            tp, loads = self.tp, self.loads
            self.table.apply_changelog_batch(
                [_Event(loads(r.key), _Record(tp, r.offset, r.key, r.value))
                 for r in sorted(self.records.values(), key=_OFFSET)])
            self.records.clear()
            self.applied = self.read
        if through is not None:
            self.applied = through


def _key_loader(app: faust.App, table: Any) -> Callable[[bytes | None], Any]:
    """faust's decoding of the table's keys. For JSON keys of no declared type that are strings
    (a customer id), that is the string the JSON holds: faust's registry and codec around it,
    which leave a string as it is, took two thirds of the time. Anything else goes through
    faust's whole path, errors included. (Assumes faust's own registry and "json" codec, which
    tierstream never replaces.)"""
    loads = functools.partial(app.serializers.loads_key, table.key_type,
                              serializer=table.key_serializer)
    if table.key_type is not None or table.key_serializer != "json":
        return loads

    def load(raw: bytes | None) -> Any:
        try:
            return _JSON_STRING.decode(raw)  # type: ignore[arg-type]
        except Exception:  # None, bad UTF-8 or JSON, not a string: faust's answer
            return loads(raw)

    return load


_JSON_STRING = msgspec.json.Decoder(str)


async def _read_changelogs(self: Recovery, todo: Mapping[Any, tuple[int, int]]
                           ) -> dict[Any, int]:
    """Read each changelog partition from its first to its last offset into its table, for at
    most half of faust's request timeout (the limit faust waits for this step); the last offset
    applied of each partition, from which faust's own recovery reads the rest, if any."""
    app, clock = self.app, asyncio.get_running_loop().time
    conf, started = app.conf, clock()
    deadline = started + conf.broker_request_timeout / 2
    reader = aiokafka.AIOKafkaConsumer(
        client_id=f"{conf.broker_client_id}-restore",
        bootstrap_servers=server_list(app.transport.url, app.transport.default_port),
        request_timeout_ms=int(conf.broker_request_timeout * 1000), enable_auto_commit=False,
        auto_offset_reset="none", isolation_level="read_committed",  # never skip a record
        max_partition_fetch_bytes=8 << 20, fetch_max_bytes=64 << 20,
        **credentials_to_aiokafka_auth(conf.broker_credentials, conf.ssl_context))
    partitions = {aiokafka.TopicPartition(tp.topic, tp.partition): tp for tp in todo}
    latest = {tp: _Latest(self, tp, first) for tp, (first, _) in todo.items()}
    count = 0
    try:
        await reader.start()
        reader.assign(list(partitions))
        for ours, tp in partitions.items():
            reader.seek(ours, todo[tp][0])
        left = set(partitions)
        while left and clock() < deadline:
            fetched = await reader.getmany(*left, timeout_ms=1000, max_records=RESTORE_CHUNK)
            for ours, records in fetched.items():
                last = todo[partitions[ours]][1]
                if records and records[-1].offset > last:  # written since faust looked
                    records = [r for r in records if r.offset <= last]
                latest[partitions[ours]].add(records)
                count += len(records)
            for ours in list(left):
                tp = partitions[ours]
                if await reader.position(ours) > todo[tp][1]:
                    left.discard(ours)
                    latest[tp].apply(through=todo[tp][1])
        for held in latest.values():  # what was read goes to the store, done or not
            held.apply()
    finally:
        await reader.stop()
    rest = sum(last - latest[tp].applied for tp, (_, last) in todo.items())
    self.log.info("Restored %s changelog records of %s partitions in %.2f s%s", count, len(todo),
                  clock() - started, f"; {rest} left to faust's recovery" if rest else "")
    return {tp: held.applied for tp, held in latest.items()}


_force_metadata_update = AIOKafkaClient.force_metadata_update


def _force_metadata_update_after_backoff(self: AIOKafkaClient) -> Any:
    """aiokafka's force_metadata_update, but a refresh asked for within the client's retry
    backoff (retry_backoff_ms, 100 ms) of the last one starts when the backoff has passed, as
    the Java client's metadata refresh backoff does. aiokafka's sender asks for one each time it
    has a batch for a partition without a leader and waits for nothing else, so with a topic
    deleted under a queued batch it asked the broker for metadata ~1,800 times a second (half a
    core, and as many log lines) for as long as the topic was missing."""
    if self._md_update_fut is None:
        wait = self.cluster._last_refresh_ms / 1000 + self._retry_backoff - time.time()
        if wait > 0:
            self._md_update_fut = self._loop.create_future()
            self._loop.call_later(wait, _wake_synchronizer, self)
            return asyncio.shield(self._md_update_fut)
    return _force_metadata_update(self)


def _wake_synchronizer(client: AIOKafkaClient) -> None:
    if not client._md_update_waiter.done():
        client._md_update_waiter.set_result(None)


def install_metadata_backoff() -> None:
    AIOKafkaClient.force_metadata_update = _force_metadata_update_after_backoff


async def refresh_consumer_metadata(app: faust.App) -> None:
    """Have faust's consumer (in its own thread) fetch the cluster's metadata now."""
    thread = app.consumer._thread
    client = thread._ensure_consumer()._client

    async def refresh() -> None:
        await client.force_metadata_update()

    await thread.call_thread(refresh)


def _partition_state(app: faust.App, topic: str, partition: int) -> Any:
    """aiokafka's state of an assigned partition in faust's consumer (its thread's; what is read
    of it here are plain values, each read once), or None."""
    consumer = getattr(app.consumer._thread, "_consumer", None) if app.consumer else None
    subscription = None if consumer is None else consumer._subscription.subscription
    assignment = None if subscription is None else subscription.assignment
    if assignment is None:
        return None
    return assignment.state_value(aiokafka.TopicPartition(topic, partition))


def input_waiting(app: faust.App, topics: Iterable[str], partition: int,
                  stale_ms: float) -> bool:
    """Whether input of `partition` of the `topics` may be waiting for this worker: the last
    fetch answer for one is older than `stale_ms` (its leader unreachable) or showed records
    past the consumer's position."""
    now_ms = int(time.time() * 1000)  # (as aiokafka's fetcher stamps its answers)
    for topic in topics:
        state = _partition_state(app, topic, partition)
        if state is None or state.paused:
            continue
        answered, position = state.timestamp, state._position
        if answered is None or now_ms - answered >= stale_ms:
            return True
        end = state.lso if state.lso is not None and state.lso >= 0 else state.highwater
        if position is not None and end is not None and position < end:
            return True
    return False


async def request_rebalance(app: faust.App) -> None:
    """Have faust's consumer rejoin its group (in its own thread): a new assignment. Waits at
    most 10 s for the thread: one busy with a rebalance may be waiting for the caller."""
    thread = app.consumer._thread

    async def rejoin() -> None:
        thread._ensure_consumer()._coordinator.request_rejoin()

    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(thread.call_thread(rejoin), 10)


def started_producer(app: faust.App) -> Any:
    """faust's aiokafka producer once started, else None."""
    return getattr(app.producer, "_producer", None)


def has_metadata(producer: Any, topic: str) -> bool:
    """Whether the aiokafka producer's metadata has the topic's partitions."""
    return producer._metadata.partitions_for_topic(topic) is not None


def worker_signalling(on_stop_signal: Callable[[], None]) -> type[faust.Worker]:
    """faust's Worker, calling `on_stop_signal` first on SIGTERM and SIGINT."""

    class Signalling(faust.Worker):
        def _on_sigterm(self) -> None:
            on_stop_signal()
            super()._on_sigterm()

        def _on_sigint(self) -> None:
            on_stop_signal()
            super()._on_sigint()

    return Signalling


async def commit(app: faust.App, offsets: Mapping[Any, int]) -> bool:
    """Commit the offsets (the next offset to read, per TopicPartition) of batch records."""
    return await app.consumer._commit(offsets)


_create_worker_consumer = AIOKafkaConsumerThread._create_worker_consumer


def _create_worker_consumer_reading_committed(self: AIOKafkaConsumerThread,
                                              transport: Any) -> aiokafka.AIOKafkaConsumer:
    """faust's consumer, with the isolation level it gives a transactional app: a batch of
    inputs, its changelog records and its committed offsets are one transaction under
    exactly-once, and an aborted one must be read by no one."""
    consumer = self.consumer
    consumer.in_transaction = True  # (read by faust only to pick the isolation level here)
    try:
        return _create_worker_consumer(self, transport)
    finally:
        consumer.in_transaction = False


_need_recovery = Recovery.need_recovery


def _need_recovery_past_markers(self: Recovery) -> bool:
    """faust's check, with a changelog partition its consumer has read past the highwater
    counted as read to there. Read committed, the highwater faust waits for is a transaction's
    marker, never an event (faust's own `detect_aborted_tx` runs only in its exactly-once mode);
    it matters when the restore in bulk leaves the rest to faust's recovery."""
    offsets = self.active_offsets
    for tp, highwater in self.active_highwaters.items():
        if highwater is not None and offsets[tp] is not None and offsets[tp] < highwater:
            state = _partition_state(self.app, tp.topic, tp.partition)
            position = None if state is None else state._position
            if position is not None and position > highwater:
                offsets[tp] = highwater
    return _need_recovery(self)


_BEFORE_RECOVERY = "_tierstream_before_recovery"
_tables_on_rebalance = TableManager.on_rebalance


async def _tables_on_rebalance_after_hook(self: TableManager, assigned: Any, revoked: Any,
                                          newly_assigned: Any, generation_id: int = 0) -> None:
    hook = getattr(self.app, _BEFORE_RECOVERY, None)
    if hook is not None:
        await hook(assigned)
    await _tables_on_rebalance(self, assigned, revoked, newly_assigned, generation_id)


def before_recovery(app: faust.App, hook: Callable[[AbstractSet[Any]], Awaitable[None]]
                    ) -> None:
    """Await `hook(assigned TopicPartitions)` at each assignment, before the tables start to
    recover and before the stream partitions are sought to their committed offsets."""
    setattr(app, _BEFORE_RECOVERY, hook)


def transactional_producer(app: faust.App, transactional_id: str,
                           transaction_timeout_s: float) -> aiokafka.AIOKafkaProducer:
    """An aiokafka producer configured as faust configures its own (servers, credentials,
    timeouts), transactional."""
    producer = app.producer
    settings = {**producer._settings_default(), **producer._settings_auth(),
                "acks": "all", "enable_idempotence": True}
    return aiokafka.AIOKafkaProducer(
        **settings, transactional_id=transactional_id,
        transaction_timeout_ms=int(transaction_timeout_s * 1000))


def install() -> None:
    if not faust.__version__.startswith(WRITTEN_FOR):
        raise RuntimeError(f"streams/worker/faust_fixes.py was written for faust-streaming "
                           f"{WRITTEN_FOR}x, this is {faust.__version__}: check each fix "
                           f"against its code before allowing it")
    Recovery.on_recovery_completed = _on_recovery_completed
    AIOKafkaConsumerThread._fetch_records = _fetch_active_records
    Consumer._wait_next_records = _wait_next_records_in_batches
    Recovery._build_offsets = _build_offsets_restoring_in_bulk
    App._stop_fetcher = _stop_fetcher_and_batches
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer_reading_committed
    TableManager.on_rebalance = _tables_on_rebalance_after_hook
    Recovery.need_recovery = _need_recovery_past_markers
    install_metadata_backoff()
