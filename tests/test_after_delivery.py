"""The worker's delivery queue: per partition, steps run in order once what was sent before them
is delivered, each in its own event's context, and a failed send stops the partition."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
from faust.streams import current_event

from streams.after_delivery import AfterDelivery


class Event:
    def __init__(self, name: str) -> None:
        self.name = name


def run(body: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(body())


def test_steps_wait_for_every_earlier_send_of_their_partition() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        queue, ran = AfterDelivery(), []
        first, second, other = loop.create_future(), loop.create_future(), loop.create_future()
        a, b, c, d = Event("a"), Event("b"), Event("c"), Event("d")
        queue.then(0, a, [first], lambda: ran.append(("a", current_event().name)))
        queue.then(0, b, [second], lambda: ran.append(("b", current_event().name)))
        queue.then(0, c, [], lambda: ran.append(("c", current_event().name)))
        queue.then(1, d, [other], lambda: ran.append(("d", current_event().name)))
        second.set_result(None)   # b's own send is done, but a's is not
        other.set_result(None)
        await asyncio.sleep(0)
        assert ran == [("d", "d")] and queue.waiting() == 3
        first.set_result(None)
        await asyncio.sleep(0)
        assert ran == [("d", "d"), ("a", "a"), ("b", "b"), ("c", "c")]
        assert queue.waiting() == 0
        assert current_event() is None

    run(body)


def test_a_step_with_nothing_pending_runs_at_once() -> None:
    async def body() -> None:
        queue, ran = AfterDelivery(), []
        queue.then(3, Event("a"), [], lambda: ran.append("a"))
        assert ran == ["a"]

    run(body)


def test_a_failed_send_stops_its_partition_and_is_raised() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        queue, ran = AfterDelivery(), []
        failed = loop.create_future()
        queue.then(0, Event("a"), [failed], lambda: ran.append("a"))
        queue.then(0, Event("b"), [], lambda: ran.append("b"))
        failed.set_exception(OSError("broker gone"))
        await asyncio.sleep(0)
        assert ran == []
        with pytest.raises(OSError, match="broker gone"):
            queue.check()
        with pytest.raises(OSError, match="broker gone"):
            await queue.settle(0, 0)

    run(body)


def test_settle_waits_until_the_partition_is_short_enough() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        queue, ran = AfterDelivery(), []
        sends = [loop.create_future() for _ in range(5)]
        for i, sent in enumerate(sends):
            queue.then(0, Event(str(i)), [sent], lambda i=i: ran.append(i))
        for i, sent in enumerate(sends):
            loop.call_later(0.01 * (i + 1), sent.set_result, None)
        await queue.settle(0, 2)
        assert ran == [0, 1, 2] and queue.waiting() == 2
        await queue.settle(0, 0)
        assert ran == [0, 1, 2, 3, 4]

    run(body)


def test_forgotten_partitions_never_run_their_steps() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        queue, ran = AfterDelivery(), []
        sent = loop.create_future()
        queue.then(2, Event("a"), [sent], lambda: ran.append("a"))
        queue.forget([2])
        sent.set_result(None)
        await asyncio.sleep(0)
        assert ran == [] and queue.waiting() == 0

    run(body)


def test_settle_returns_when_its_partition_is_revoked_meanwhile() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        queue = AfterDelivery()
        sends = [loop.create_future() for _ in range(3)]
        for sent in sends:
            queue.then(0, Event("x"), [sent], lambda: None)
        loop.call_later(0.01, queue.forget, [0])
        loop.call_later(0.02, sends[0].set_result, None)
        await asyncio.wait_for(queue.settle(0, 0), timeout=5)
        assert queue.waiting() == 0

    run(body)
