"""The corrections to faust in streams/worker/faust_fixes.py, on faust's and aiokafka's own code."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import random
from types import SimpleNamespace
from typing import Any

import faust
import pytest
from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import TopicPartition
from faust.exceptions import KeyDecodeError
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread
from faust.types import TP

from streams.worker import faust_fixes

CHANGELOG, ORDERS = TopicPartition("changelog", 0), TopicPartition("orders", 0)


class _State:
    """aiokafka's fetch state of one partition, as far as `FetchResult` reads it."""

    paused = False

    def __init__(self, position: int) -> None:
        self.position = position

    def consumed_to(self, offset: int) -> None:
        self.position = offset


class _Records(list):
    """A fetch response's records of one partition, with the offset after them."""

    next_fetch_offset = 5


class _Fetcher:
    """aiokafka's real `fetched_records` over a buffer this test fills."""

    fetched_records = Fetcher.fetched_records
    _closed = False
    _wait_consume_future = None

    def __init__(self) -> None:
        self._records: dict = {}
        self._subscriptions = SimpleNamespace(reassignment_in_progress=False,
                                              is_assigned=lambda tp: True,
                                              fetch_context=contextlib.nullcontext)
        self.waiter: asyncio.Future | None = None

    def _notify(self, future: asyncio.Future | None) -> None:
        if future is not None and not future.done():
            future.set_result(None)

    def _create_fetch_waiter(self) -> asyncio.Future:
        self.waiter = asyncio.get_running_loop().create_future()
        return self.waiter


def test_pausing_the_last_active_partition_during_a_fetch_hands_over_no_other() -> None:
    """Recovery pauses the changelog partitions while a fetch waits (faust's active set becomes
    empty), then the stream partition's first response after its seek arrives: its records must
    stay buffered in aiokafka, not be handed to faust (which drops them, as the partition is not
    active) with aiokafka's position moved past them."""
    faust_fixes.install()
    fetcher, state = _Fetcher(), _State(5)
    assignment = SimpleNamespace(active=True, state_value=lambda tp: state)
    active = {CHANGELOG}  # faust's live set, shared with the consumer thread

    async def scenario() -> dict:
        fetch = asyncio.ensure_future(AIOKafkaConsumerThread._fetch_records(
            SimpleNamespace(consumer=SimpleNamespace(flow_active=True)),
            SimpleNamespace(_closed=False, _fetcher=fetcher), active, timeout=0.3))
        await asyncio.sleep(0.05)
        active.clear()  # recovery done: changelog paused, stream partitions not resumed yet
        fetcher._records[ORDERS] = FetchResult(
            ORDERS, assignment=assignment, partition_records=_Records(["r5", "r6"]), backoff=0)
        fetcher._notify(fetcher.waiter)
        return await fetch

    assert asyncio.run(scenario()) == {}
    assert state.position == 5 and ORDERS in fetcher._records

    active.add(ORDERS)  # resumed: now the same buffered records are handed over
    fetched = asyncio.run(AIOKafkaConsumerThread._fetch_records(
        SimpleNamespace(consumer=SimpleNamespace(flow_active=True)),
        SimpleNamespace(_closed=False, _fetcher=fetcher), active, timeout=0.3))
    assert fetched == {ORDERS: ["r5", "r6"]}


def _changelog_table(app: faust.App, name: str) -> Any:
    return app.Table(name, value_type=bytes)


def test_the_bulk_restore_leaves_the_store_as_every_record_applied_in_order(monkeypatch) -> None:
    """Keeping only each key's latest record (held across fetches, flushed every RESTORE_HELD
    keys) ends with the store faust's own recovery leaves: the same keys, values, tombstones
    and key partitions; and it reports how far it read."""
    monkeypatch.setattr(faust_fixes, "RESTORE_HELD", 40)
    app = faust.App("restore-test", store="memory://")
    bulk, reference = _changelog_table(app, "bulk"), _changelog_table(app, "reference")
    tp = TP("restore-test-bulk-changelog", 3)
    held = faust_fixes._Latest(SimpleNamespace(tp_to_table={tp: bulk}, app=app), tp, first=0)
    dumps = functools.partial(app.serializers.dumps_key, None, serializer=bulk.key_serializer)
    rng = random.Random(7)
    records = [SimpleNamespace(offset=offset, key=dumps(f"c/{rng.randrange(100)}"),
                               value=None if rng.random() < 0.2 else f"v{offset}".encode())
               for offset in range(400)]
    for start in range(0, len(records), 30):  # as fetched
        held.add(records[start:start + 30])
    assert bulk.data and held.records  # some keys went to the store, others are held
    held.apply()  # stopped at the deadline: the store has all that was read
    assert held.applied == 399 and not held.records
    held.apply(through=402)  # the partition ends in records the read does not return
    held.apply()  # and the read's last flush changes nothing
    assert held.applied == 402
    reference.apply_changelog_batch(  # faust's recovery: every record in order
        [faust_fixes._Event(json.loads(r.key), faust_fixes._Record(tp, r.offset, r.key, r.value))
         for r in records])
    assert dict(bulk.data.items()) == dict(reference.data.items())
    assert 0 < len(bulk.data) < 100  # tombstones took some keys away
    assert bulk.data._key_partition == reference.data._key_partition


def test_changelog_keys_are_written_as_faust_writes_them() -> None:
    app = faust.App("keys-out-test", store="memory://")
    table = _changelog_table(app, "keys")
    for key in ("c/1", "客户 ..%", "a\"b\\c", "tab\tnew\nline", "\u2028", "😀", "\udcff", "",
                "\x7f\x00"):
        assert faust_fixes.changelog_key(table, key) == app.serializers.dumps_key(
            None, key, serializer=table.key_serializer), key


class _ModelKey(faust.Record, namespace="tierstream.test.ModelKey"):
    n: int


def test_the_restore_decodes_keys_as_faust_does() -> None:
    app = faust.App("keys-test", store="memory://")
    table = _changelog_table(app, "keys")
    faust_loads = functools.partial(app.serializers.loads_key, None,
                                    serializer=table.key_serializer)
    load = faust_fixes._key_loader(app, table)
    model = _ModelKey(n=1).dumps(serializer="json")
    for raw in (b'"c/1"', '"客户 ..%"'.encode(), b'"a\\u00e9\\ud83d\\ude00"', b'"\\ud800"', b"17",
                b'[1, "x"]', b'{"k": 1}', b"null", None, model):
        assert load(raw) == faust_loads(raw), raw
    assert isinstance(load(model), _ModelKey)  # faust rebuilds its models
    for raw in (b"\xff", b"not json", b'"unterminated', b"[" * 100_000):
        with pytest.raises(KeyDecodeError):
            faust_loads(raw)
        with pytest.raises(KeyDecodeError):
            load(raw)


def _consumer_app(**states: dict[str, Any]) -> tuple[Any, Any]:
    """An app whose faust consumer's aiokafka consumer has the orders partitions named
    (orders-<n>) with the given fetch state, in aiokafka's own Assignment."""
    from aiokafka.consumer.subscription_state import Assignment

    async def made() -> Assignment:  # (aiokafka makes its futures in a running loop)
        return Assignment([TopicPartition("orders", int(name.split("_")[1]))
                           for name in states])

    assignment = asyncio.run(made())
    for name, values in states.items():
        state = assignment.state_value(TopicPartition("orders", int(name.split("_")[1])))
        if "position" in values:
            state.seek(values.pop("position"))
        for key, value in values.items():
            setattr(state, key, value)
    consumer = SimpleNamespace(_subscription=SimpleNamespace(
        subscription=SimpleNamespace(assignment=assignment)))
    return SimpleNamespace(consumer=SimpleNamespace(_thread=SimpleNamespace(_consumer=consumer))), \
        assignment


def test_input_is_waiting_past_the_position_or_behind_an_unanswered_fetch() -> None:
    import time
    now = int(time.time() * 1000)
    app, _ = _consumer_app(
        orders_0=dict(position=10, highwater=10, lso=10, timestamp=now),   # caught up, answered
        orders_1=dict(position=7, highwater=10, lso=10, timestamp=now),    # records waiting
        orders_2=dict(position=10, highwater=10, lso=10, timestamp=now - 9_000),  # unanswered
        orders_3=dict(position=10, highwater=12, lso=10, timestamp=now))   # open transaction
    waiting = {p for p in range(4) if faust_fixes.input_waiting(app, ["orders"], p, 5_000)}
    assert waiting == {1, 2}
    assert not faust_fixes.input_waiting(app, ["orders"], 9, 5_000)  # not assigned here


def test_recovery_counts_a_changelog_read_past_its_marker_as_read() -> None:
    """Read committed, the last offset of a changelog is a transaction marker: faust's offsets
    never reach it, the consumer's position passes it."""
    app, assignment = _consumer_app(orders_0=dict(position=101), orders_1=dict(position=90))
    recovery = SimpleNamespace(app=app, active_highwaters={TP("orders", 0): 100,
                                                           TP("orders", 1): 100},
                               active_offsets={TP("orders", 0): 99, TP("orders", 1): 89})
    recovery.active_remaining = functools.partial(faust.tables.recovery.Recovery.active_remaining,
                                                  recovery)
    assert faust_fixes._need_recovery_past_markers(recovery)  # partition 1 is 10 behind
    assert recovery.active_offsets == {TP("orders", 0): 100, TP("orders", 1): 89}
    recovery.active_offsets[TP("orders", 1)] = 99  # its last event read, the marker not yet
    assert faust_fixes._need_recovery_past_markers(recovery)
    assignment.state_value(TopicPartition("orders", 1)).seek(101)  # read past the marker
    assert not faust_fixes._need_recovery_past_markers(recovery)
