"""Smoke tests of the test/dev Kafka broker (streams.dev.local_kafka) with kafka-python clients."""

from __future__ import annotations

import uuid
from collections import defaultdict
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.serializer import DefaultSerializer

from streams.dev.local_kafka import LocalKafka

# kafka-python 3.0 warns (DeprecationWarning) about plain callables as (de)serializers: pass
# kafka.serializer objects. DefaultSerializer is UTF-8 str <-> bytes both ways.
UTF8 = DefaultSerializer()


def _unique(prefix: str) -> str:
    # Topic and group names are unique, so the tests also run against a shared external broker.
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    # kafka-python 3.0 documents NewTopic as deprecated: the dict form is the current API.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            {topic: {"num_partitions": partitions, "replication_factor": 1}},
            wait_for_metadata=True,
        )
    finally:
        admin.close()


def _partition_count(bootstrap: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        assert topic in admin.list_topics()
        (described,) = admin.describe_topics([topic])
        return len(described["partitions"])
    finally:
        admin.close()


def _produce(bootstrap: str, topic: str, messages: list[tuple[str, str]]) -> dict[str, set[int]]:
    """Send (key, value) pairs, wait for every ack; return the partitions each key went to."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, key_serializer=UTF8, value_serializer=UTF8
    )
    try:
        futures = [(key, producer.send(topic, key=key, value=value)) for key, value in messages]
        producer.flush(timeout=30)
        partitions: dict[str, set[int]] = defaultdict(set)
        for key, future in futures:
            partitions[key].add(future.get(timeout=30).partition)
        return partitions
    finally:
        producer.close(timeout=10)


def _consume(bootstrap: str, topic: str, expected: int) -> list[tuple[str, str, int]]:
    """Read (key, value, partition) from the start of the topic until ``expected`` arrived."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=_unique("smoke-group"),
        auto_offset_reset="earliest",
        consumer_timeout_ms=20_000,
        key_deserializer=UTF8,
        value_deserializer=UTF8,
    )
    records = []
    try:
        for record in consumer:
            records.append((record.key, record.value, record.partition))
            if len(records) >= expected:
                break
    finally:
        consumer.close()
    return records


def _keyed_messages(count: int, keys: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"customer-{i % keys}", f"event-{i:04d}") for i in range(start, start + count)]


def _assert_same(records: list[tuple[str, str, int]], messages: list[tuple[str, str]]) -> None:
    assert len(records) == len(messages)
    assert sorted((k, v) for k, v, _ in records) == sorted(messages)
    by_key: dict[str, list[str]] = defaultdict(list)
    for key, value, _ in records:
        by_key[key].append(value)
    for values in by_key.values():  # one key, one partition: its order is kept
        assert values == sorted(values)


def test_produce_and_consume_keyed_messages(kafka_bootstrap: str) -> None:
    topic = _unique("smoke")
    _create_topic(kafka_bootstrap, topic, partitions=3)
    assert _partition_count(kafka_bootstrap, topic) == 3

    messages = _keyed_messages(100, keys=10)
    partitions = _produce(kafka_bootstrap, topic, messages)
    assert all(len(p) == 1 for p in partitions.values()), "a key went to two partitions"
    assert len(set().union(*partitions.values())) > 1, "10 keys all landed on one partition"

    records = _consume(kafka_bootstrap, topic, expected=len(messages))
    _assert_same(records, messages)
    assert {key for key, _, _ in records} == {f"customer-{i}" for i in range(10)}
    for key, _, partition in records:
        assert partitions[key] == {partition}


def test_kill_and_restart_keeps_topic_and_messages(tmp_path: Path) -> None:
    broker = LocalKafka(workdir=tmp_path / "kafka")
    with broker:
        bootstrap = broker.bootstrap_servers
        topic = _unique("restart")
        _create_topic(bootstrap, topic, partitions=3)
        before = _keyed_messages(30, keys=6)
        _produce(bootstrap, topic, before)  # acks=all, so written to the log before the kill

        broker.kill()
        assert not broker.running
        broker.restart()
        assert broker.running
        assert broker.bootstrap_servers == bootstrap

        assert _partition_count(bootstrap, topic) == 3
        after = _keyed_messages(10, keys=6, start=30)
        _produce(bootstrap, topic, after)
        _assert_same(_consume(bootstrap, topic, expected=40), before + after)
    assert not broker.running
    assert (tmp_path / "kafka" / "kafka.log").is_file()  # a given workdir is kept
