"""The Redis view against a real redis-server: ordering, erasure, an outage, rebuild from Kafka."""

from __future__ import annotations

import asyncio
import io
import json
import random
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from kafka import KafkaAdminClient, KafkaProducer
from rich.console import Console
from rich.progress import Progress

from streams.view.redis_view import (
    InvalidTierRecordError,
    Keys,
    RedisView,
    decode_hash,
    parse_record,
    rebuild,
    version_of,
)
from streams.worker.metrics import Metrics
from tests.redis_server import RedisServer, free_port

T0 = 1_577_836_800_000_000  # 2020-01-01T00:00:00Z in microseconds
DAY = 86_400_000_000
TIERS = ("bronze", "silver", "gold")


def record(customer: str, sequence: int, created_at: int = T0, tier: str | None = None,
           churn_rule: str | None = None) -> bytes:
    """A `customer-tiers` value as the worker writes it, plus `created_at`."""
    return json.dumps({
        "customer_id": customer, "tier": tier or TIERS[sequence % len(TIERS)],
        "since": "2020-02-01T00:00:00Z", "churn": churn_rule is not None,
        "churn_rule": churn_rule, "sequence": sequence,
        "as_of": f"2020-03-{1 + sequence % 28:02d}T00:00:00Z", "created_at": created_at,
    }).encode()


@pytest.fixture
def prefix(new_prefix: Callable[[], str]) -> str:
    return new_prefix()


def with_view(url: str, prefix: str, body: Callable[[RedisView], Awaitable[Any]],
              **options: Any) -> Any:
    """Run `body(view)` on a fresh event loop with a view (and client) closed afterwards."""
    async def main() -> Any:
        view = RedisView.from_url(url, prefix=prefix, **options)
        try:
            return await body(view)
        finally:
            await view.aclose()
    return asyncio.run(main())


def offer_each(url: str, prefix: str, changes: list[tuple[str, bytes | None]]) -> None:
    """Write every change with its own flush, so Redis sees them in exactly this order."""
    async def body(view: RedisView) -> None:
        for customer, value in changes:
            view.offer(customer, value)
            assert await view.flush() == 1
    with_view(url, prefix, body)


def snapshot(url: str, prefix: str) -> tuple[dict[str, dict], dict[str, set[str]]]:
    """Every customer hash (decoded) and every tier set under `prefix`."""
    keys = Keys(prefix)
    customers, tiers = {}, {}
    with redis.Redis.from_url(url, decode_responses=True) as client:
        for key in client.scan_iter(match=keys.customer("*"), count=1000):
            customer = key.removeprefix(keys.customer(""))
            customers[customer] = decode_hash(customer, client.hgetall(key))
        for key in client.scan_iter(match=keys.tier("*"), count=1000):
            tiers[key.removeprefix(keys.tier(""))] = client.smembers(key)
    return customers, tiers


def assert_consistent(customers: dict[str, dict], tiers: dict[str, set[str]]) -> None:
    """Each customer is in exactly the set of its tier, and the sets hold nobody else."""
    members = [c for ids in tiers.values() for c in ids]
    assert sorted(members) == sorted(c for c, r in customers.items() if r["tier"]), tiers
    for customer, stored in customers.items():
        assert customer in tiers.get(stored["tier"], set()), (customer, stored, tiers)


def history() -> list[tuple[str, bytes | None]]:
    """Per customer, in order: records of growing sequence; c1 erased, then seen anew."""
    changes: list[tuple[str, bytes | None]] = []
    for c in range(6):
        changes += [(f"c{c}", record(f"c{c}", seq, T0 + c)) for seq in range(1, 2 + c % 4)]
    changes += [("c1", None), ("c3", record("c3", 9, T0 + 3, churn_rule="no_orders_90d")),
                ("c5", None), ("c1", record("c1", 1, T0 + 30 * DAY, tier="gold"))]
    return changes


@pytest.mark.parametrize(("value", "complaint"), [
    (b"not json", "not JSON"), (b"[1]", "expected the JSON object"),
    (record("other", 1), "the key must be the customer id"),
    ({**json.loads(record("x", 1)), "sequence": True}, "'sequence' is True, expected int"),
    ({**json.loads(record("x", 1)), "created_at": -1}, "expected a non-negative integer"),
    ({k: v for k, v in json.loads(record("x", 1)).items() if k != "created_at"},
     "'created_at' is None, expected int"),
])
def test_a_record_not_in_the_customer_tiers_shape_is_rejected(value: Any, complaint: str) -> None:
    with pytest.raises(InvalidTierRecordError, match=complaint) as caught:
        parse_record("x", value)
    assert isinstance(caught.value, ValueError)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_write_order_ends_with_the_newest_version(redis_url: str, prefix: str,
                                                      seed: int) -> None:
    newest = {"a": (T0, 4), "b": (T0 + DAY, 2), "c": (T0 + 2 * DAY, 7)}
    changes = [(c, record(c, seq, created)) for c, (created, last) in newest.items()
               for seq in range(last + 1)]
    changes += [("b", record("b", 9, T0 - DAY))]  # an older incarnation, however high its sequence
    random.Random(seed).shuffle(changes)

    offer_each(redis_url, prefix, changes)

    customers, tiers = snapshot(redis_url, prefix)
    assert {c: (r["created_at"], r["sequence"]) for c, r in customers.items()} == newest
    assert customers["c"]["version"] == version_of(T0 + 2 * DAY, 7)
    assert customers["c"]["tier"] == TIERS[7 % 3] and customers["c"]["churn"] is False
    assert_consistent(customers, tiers)


def test_one_flush_of_coalesced_offers_equals_one_flush_each(
        redis_url: str, new_prefix: Callable[[], str]) -> None:
    changes, first, second = history(), new_prefix(), new_prefix()
    offer_each(redis_url, first, changes)

    async def coalesced(view: RedisView) -> int:
        for customer, value in changes:
            view.offer(customer, value)
        assert view.backlog == 6  # one pending change per customer
        return await view.flush()
    assert with_view(redis_url, second, coalesced) == 6

    assert snapshot(redis_url, first) == snapshot(redis_url, second)


def test_awkward_customer_ids_round_trip_through_one_batch(redis_url: str, prefix: str) -> None:
    """A flush writes its batch as one JSON argument of one script call: quotes, backslashes,
    brackets and non-ASCII ids reach Redis as the keys and set members they are."""
    ids = ['say "hi"', "back\\slash", "[1,2]", "{x}", "客户-7", "emoji 🙂", "tab-free é"]

    async def body(view: RedisView) -> int:
        for i, customer in enumerate(ids):
            view.offer(customer, record(customer, 1 + i))
        return await view.flush()
    assert with_view(redis_url, prefix, body) == len(ids)

    customers, tiers = snapshot(redis_url, prefix)
    assert {c: r["sequence"] for c, r in customers.items()} == \
        {c: 1 + i for i, c in enumerate(ids)}
    assert_consistent(customers, tiers)


def test_erasure_removes_the_customer_and_a_late_older_record_does_not_resurrect_it(
        redis_url: str, prefix: str) -> None:
    offer_each(redis_url, prefix, [("x", record("x", 3, tier="gold")),
                                   ("y", record("y", 1, tier="gold"))])
    offer_each(redis_url, prefix, [("x", None)])  # another worker: it never saw x's record

    async def late(view: RedisView) -> tuple[int, dict | None]:
        view.offer("x", record("x", 2, tier="silver"))  # from the previous owner, delayed
        written = await view.flush()
        return written, await view.lookup("x")
    assert with_view(redis_url, prefix, late) == (1, None)
    offer_each(redis_url, prefix, [("x", record("x", 4, tier="silver"))])  # same incarnation

    customers, tiers = snapshot(redis_url, prefix)
    assert "x" not in customers and tiers == {"gold": {"y"}}
    with redis.Redis.from_url(redis_url) as client:
        assert 0 < client.ttl(Keys(prefix).erased("x")) <= 7 * 86400

    offer_each(redis_url, prefix, [("x", record("x", 1, T0 + DAY, tier="bronze"))])  # seen anew
    customers, tiers = snapshot(redis_url, prefix)
    assert customers["x"]["tier"] == "bronze" and tiers == {"gold": {"y"}, "bronze": {"x"}}


def test_erasure_of_a_record_still_in_the_backlog(redis_url: str, prefix: str) -> None:
    offer_each(redis_url, prefix, [("x", record("x", 1, tier="silver"))])

    async def body(view: RedisView) -> dict | None:
        view.offer("x", record("x", 2, tier="gold"))
        view.offer("x", None)
        await view.flush()
        view.offer("x", record("x", 2, tier="gold"))
        await view.flush()
        return await view.lookup("x")
    assert with_view(redis_url, prefix, body) is None
    assert snapshot(redis_url, prefix) == ({}, {})


def test_redis_outage_loses_nothing(redis_url: str) -> None:
    metrics = Metrics.create()
    changes = [(f"c{i}", record(f"c{i}", seq, T0 + i)) for seq in (1, 2) for i in range(1200)]
    changes += [("c7", None)]
    prefix = "tierstream-outage:v1"
    with RedisServer() as server:
        async def body(view: RedisView) -> None:
            view.offer("before", record("before", 1))
            assert await view.flush() == 1
            server.stop()
            for customer, value in changes:
                view.offer(customer, value)
            assert await view.flush() == 0  # does not raise
            assert await view.flush() == 0
            assert (view.errors, view.backlog) == (2, 1200)
            assert metrics.registry.get_sample_value("tierstream_redis_errors_total") == 2
            assert metrics.registry.get_sample_value("tierstream_redis_backlog_records") == 1200
            server.restart()  # empty: this server keeps nothing across a restart
            assert await view.flush() == 1200
            assert view.backlog == 0 and view.dropped == 0
            assert metrics.registry.get_sample_value("tierstream_redis_backlog_records") == 0
        with_view(server.url, prefix, body, metrics=metrics, batch_size=500)
        customers, tiers = snapshot(server.url, prefix)
    assert len(customers) == 1199 and "c7" not in customers
    assert all(r["sequence"] == 2 for r in customers.values())
    assert_consistent(customers, tiers)


def test_backlog_over_its_cap_drops_the_oldest() -> None:
    async def body(view: RedisView) -> None:
        for i in range(10):
            view.offer(f"c{i}", record(f"c{i}", 1))
        view.offer("c0", record("c0", 2))  # offered again: now the newest
        for i in range(10, 15):
            view.offer(f"c{i}", record(f"c{i}", 1))
        assert await view.flush() == 0  # nobody listens on that port: counted, not raised
        assert (view.backlog, view.dropped, view.errors) == (10, 5, 1)
        assert view.pending() == ["c6", "c7", "c8", "c9", "c0", *(f"c{i}" for i in range(10, 15))]
    with_view(f"redis://127.0.0.1:{free_port()}/0", "tierstream-cap:v1", body, max_backlog=10)


def compacted_topic(bootstrap: str, messages: list[tuple[str, bytes | None]]) -> str:
    """A new compacted topic holding `messages` (key = customer id), in order."""
    topic = f"customer-tiers-{uuid.uuid4().hex[:8]}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics({topic: {"num_partitions": 2, "replication_factor": 1,
                                     "configs": {"cleanup.policy": "compact"}}},
                            wait_for_metadata=True)
    finally:
        admin.close()
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    try:
        for customer, value in messages:
            producer.send(topic, key=customer.encode(), value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    return topic


def test_rebuild_from_the_compacted_topic_equals_the_live_view(
        kafka_bootstrap: str, redis_url: str, new_prefix: Callable[[], str]) -> None:
    changes = history()
    topic = compacted_topic(kafka_bootstrap, [*changes, ("c0", b"not json")])
    live, rebuilt = new_prefix(), new_prefix()
    offer_each(redis_url, live, changes)

    output = io.StringIO()
    kafka = {"bootstrap_servers": kafka_bootstrap}
    with redis.Redis.from_url(redis_url) as client:
        with Progress(console=Console(file=output, width=100)) as progress:
            first = rebuild(kafka, topic, client, prefix=rebuilt, progress=progress, batch_size=4)
        again = rebuild(kafka, topic, client, prefix=rebuilt)

    assert (first.read, first.invalid, first.erased) == (len(changes) + 1, 1, 2)
    assert first.applied == len(changes) - 2 and first.skipped == 0
    assert (again.applied, again.erased, again.skipped) == (0, 0, len(changes))
    assert snapshot(redis_url, rebuilt) == snapshot(redis_url, live)
    customers, tiers = snapshot(redis_url, rebuilt)
    assert sorted(customers) == ["c0", "c1", "c2", "c3", "c4"]
    assert customers["c1"]["created_at"] == T0 + 30 * DAY and customers["c3"]["churn"] is True
    assert_consistent(customers, tiers)
    assert f"records of {topic}" in output.getvalue()
