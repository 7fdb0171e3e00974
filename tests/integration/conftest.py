"""Integration tests: real Kafka and Redis, from KAFKA_BOOTSTRAP_SERVERS / REDIS_URL or started."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from streams.local_kafka import LocalKafka
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, so mark only the ones under here.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka broker: $KAFKA_BOOTSTRAP_SERVERS, else a session LocalKafka."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalKafka() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: $REDIS_URL, else a session redis-server on a free port."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url
