"""`tierstream simulate` to a real broker: every record lands on its topic, keyed by customer."""

from __future__ import annotations

import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from kafka import KafkaConsumer

from streams.cli import simulate_job
from streams.cli.main import main
from streams.dev.simulate import Population
from tests.integration.harness import create_topics, environment, isolated_settings


def test_simulate_sends_orders_and_interactions_to_their_topics(
        kafka_bootstrap: str, tmp_path: Path, monkeypatch, capsys) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    for name, value in environment(settings, Path("default")).items():
        monkeypatch.setenv(name, value)
    assert main(["simulate", "--customers", "40", "--seed", "5", "--start", "2024-01-01",
                 "--days", "365", "--malformed", "0.05", "--duplicates", "0.05"]) == 0
    assert "failed sends" not in capsys.readouterr().err

    population = Population(40, 5, datetime(2024, 1, 1, tzinfo=UTC), 365)
    names = {"orders": settings.topics.orders, "interactions": settings.topics.interactions}
    expected = Counter((names[r.topic], r.key, r.value)
                       for r in simulate_job.records(population, 0.05, 0.05, live=False))
    assert read_all(settings.bootstrap_servers, list(names.values()),
                    sum(expected.values())) == expected


def read_all(bootstrap: str, topics: list[str], count: int, timeout: float = 60.0) -> Counter:
    """(topic, key, value) of every record on the topics, once `count` arrived or at timeout."""
    consumer = KafkaConsumer(*topics, bootstrap_servers=bootstrap, group_id=None,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             consumer_timeout_ms=1000)
    received: Counter = Counter()
    deadline = time.monotonic() + timeout
    try:
        while sum(received.values()) < count and time.monotonic() < deadline:
            for record in consumer:
                received[(record.topic, record.key, record.value)] += 1
    finally:
        consumer.close()
    return received
