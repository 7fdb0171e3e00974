"""The corrections to faust in streams/worker/faust_fixes.py, on faust's and aiokafka's own code."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace

from aiokafka.consumer.fetcher import Fetcher, FetchResult
from aiokafka.structs import TopicPartition
from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

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
