"""The Redis view's generation marker: an emptied Redis is found, counted and rebuilt by itself.

Against real redis-servers (and the session broker where the rebuild reads `customer-tiers`):
a view that has seen a generation and then finds it gone counts a reset and rebuilds the whole
view from the topic; two views (two workers) rebuild once between them; a failed rebuild is tried
again; and what keeps a live view right while a rebuild writes older records into it.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import redis

from streams.view.redis_view import REBUILT_LUA, Keys, RebuildResult, RedisView, rebuild
from streams.worker.metrics import Metrics
from tests.integration.test_redis_view import (
    DAY,
    T0,
    assert_consistent,
    compacted_topic,
    history,
    offer_each,
    record,
    snapshot,
    with_view,
)
from tests.redis_server import RedisServer


async def flush_until(views: list[RedisView], condition: Callable[[], bool],
                      timeout: float = 60.0) -> None:
    """Flush every view (as the workers' timer does) until `condition` holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, [(v.generation, v.rebuilt, v.resets) for v in views]
        for view in views:
            await view.flush()
        await asyncio.sleep(0.05)


def mark_rebuilt(url: str, prefix: str) -> RebuildResult:
    """What a rebuild does at its end: mark the current generation rebuilt."""
    keys = Keys(prefix)
    with redis.Redis.from_url(url) as client:
        token = client.hget(keys.generation(), "token")
        client.register_script(REBUILT_LUA)(keys=[keys.generation(), keys.rebuild_lock()],
                                            args=[token, ""])
    return RebuildResult()


def sample(metrics: Metrics, name: str) -> float | None:
    return metrics.registry.get_sample_value(name)


def test_redis_restarted_empty_is_counted_and_rebuilt_from_the_topic(
        kafka_bootstrap: str) -> None:
    changes = history()
    topic = compacted_topic(kafka_bootstrap, changes)
    metrics, prefix = Metrics.create(), "tierstream-generation:v1"
    with RedisServer() as server:
        async def body() -> tuple[dict, dict]:
            view = RedisView.from_url(server.url, prefix=prefix, metrics=metrics,
                                      kafka={"bootstrap_servers": kafka_bootstrap},
                                      topic=topic, check_interval_s=0.0)
            try:
                # No marker yet (a new Redis): rebuilt from the topic, not counted as a reset.
                await flush_until([view], lambda: view.rebuilt)
                assert (view.resets, view.rebuilds) == (0, 1)
                first, before = view.generation, snapshot(server.url, prefix)
                server.kill()
                server.start()  # empty, on the same port
                view.offer("c9", record("c9", 1, T0 + 9))  # a live change after the restart
                await flush_until([view], lambda: view.resets == 1 and view.rebuilt)
                assert view.generation != first and view.rebuilds == 2
                assert view.backlog == 0
                return before, snapshot(server.url, prefix)
            finally:
                await view.aclose()
        before, after = asyncio.run(body())
    customers, tiers = after
    assert sorted(customers) == ["c0", "c1", "c2", "c3", "c4", "c9"]
    assert {c: r for c, r in customers.items() if c != "c9"} == before[0]
    assert_consistent(customers, tiers)
    assert sample(metrics, "tierstream_redis_view_resets_total") == 1
    assert sample(metrics, "tierstream_redis_view_rebuilding") == 0


def test_one_view_rebuilds_while_the_others_wait(redis_url: str,
                                                 new_prefix: Callable[[], str]) -> None:
    prefix, gate, calls = new_prefix(), threading.Event(), []

    def held() -> RebuildResult:
        calls.append(threading.current_thread().name)
        gate.wait(60)
        return mark_rebuilt(redis_url, prefix)
    metrics = [Metrics.create(), Metrics.create()]

    async def body() -> list[RedisView]:
        views = [RedisView.from_url(redis_url, prefix=prefix, metrics=m, rebuilder=held,
                                    check_interval_s=0.0) for m in metrics]
        try:
            await flush_until(views, lambda: all(v.generation for v in views) and bool(calls))
            for _ in range(5):  # more checks while the rebuild is held
                for view in views:
                    await view.flush()
            assert calls == ["tierstream-redis-rebuild"]
            assert not any(v.rebuilt for v in views)
            assert [sample(m, "tierstream_redis_view_rebuilding") for m in metrics] == [1, 1]
            gate.set()
            await flush_until(views, lambda: all(v.rebuilt for v in views))
            return views
        finally:
            gate.set()
            for view in views:
                await view.aclose()
    views = asyncio.run(body())
    assert len(calls) == 1 and sorted(v.rebuilds for v in views) == [0, 1]
    assert [v.resets for v in views] == [0, 0]
    assert views[0].generation == views[1].generation
    assert [sample(m, "tierstream_redis_view_rebuilding") for m in metrics] == [0, 0]
    with redis.Redis.from_url(redis_url) as client:
        assert not client.exists(Keys(prefix).rebuild_lock())


def test_a_failed_rebuild_is_tried_again(redis_url: str,
                                         new_prefix: Callable[[], str]) -> None:
    prefix, outcomes = new_prefix(), [RuntimeError("broker away"), None]

    def flaky() -> RebuildResult:
        failure = outcomes.pop(0)
        if failure is not None:
            raise failure
        return mark_rebuilt(redis_url, prefix)

    async def body(view: RedisView) -> RedisView:
        await flush_until([view], lambda: view.rebuilt)
        return view
    view = with_view(redis_url, prefix, body, rebuilder=flaky, check_interval_s=0.0, retry_s=0.0)
    assert outcomes == [] and view.rebuilds == 1


def test_a_view_without_a_rebuilder_counts_the_reset_and_waits(redis_url: str) -> None:
    metrics, prefix = Metrics.create(), "tierstream-generation-manual:v1"
    with RedisServer() as server:
        async def body(view: RedisView) -> RedisView:
            view.offer("a", record("a", 1))
            await flush_until([view], lambda: view.generation is not None)
            mark_rebuilt(server.url, prefix)  # `tierstream redis rebuild`, run by an operator
            await flush_until([view], lambda: view.rebuilt)
            server.restart()  # empty
            await flush_until([view], lambda: view.resets == 1)
            assert not view.rebuilt and view.rebuilds == 0
            assert sample(metrics, "tierstream_redis_view_rebuilding") == 1
            mark_rebuilt(server.url, prefix)
            await flush_until([view], lambda: view.rebuilt)
            return view
        view = with_view(server.url, prefix, body, metrics=metrics, check_interval_s=0.0)
    assert view.resets == 1
    assert sample(metrics, "tierstream_redis_view_resets_total") == 1
    assert sample(metrics, "tierstream_redis_view_rebuilding") == 0


def test_an_erasure_with_its_incarnation_keeps_an_older_record_out(
        redis_url: str, new_prefix: Callable[[], str]) -> None:
    """The worker erases with the erased state's `created_at`: into an emptied Redis that leaves
    the erased marker, so the rebuild's older record does not bring the customer back (without
    it, the erasure finds nothing to erase and leaves nothing)."""
    known, unknown = new_prefix(), new_prefix()
    for prefix, created_at in ((known, T0), (unknown, None)):
        async def erase(view: RedisView, created_at: int | None = created_at) -> None:
            view.offer("x", None, created_at)
            await view.flush()
        with_view(redis_url, prefix, erase)
        offer_each(redis_url, prefix, [("x", record("x", 3, T0, tier="gold"))])  # the rebuild's
    assert snapshot(redis_url, known) == ({}, {})
    assert sorted(snapshot(redis_url, unknown)[0]) == ["x"]


def test_rebuild_keeps_a_new_incarnation_after_a_tombstone_without_its_record(
        kafka_bootstrap: str, redis_url: str, new_prefix: Callable[[], str]) -> None:
    """Compaction can leave a tombstone whose record is gone, followed by the customer's next
    incarnation; a live view already holds that one, and the rebuild keeps it."""
    newer = record("x", 1, T0 + DAY, tier="gold")
    topic = compacted_topic(kafka_bootstrap, [("x", None), ("x", newer), ("y", None)])
    prefix = new_prefix()
    offer_each(redis_url, prefix, [("x", newer), ("y", record("y", 2, T0, tier="silver"))])
    with redis.Redis.from_url(redis_url) as client:
        result = rebuild({"bootstrap_servers": kafka_bootstrap}, topic, client, prefix=prefix)
    customers, tiers = snapshot(redis_url, prefix)
    assert sorted(customers) == ["x"] and customers["x"]["created_at"] == T0 + DAY
    assert tiers == {"gold": {"x"}}
    assert (result.read, result.erased, result.skipped) == (3, 1, 1)
