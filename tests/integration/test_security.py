"""SCRAM authentication against a real broker: right credentials work, wrong ones fail clearly."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from streams.dev.local_kafka import LocalKafka
from tests.integration.harness import Worker, collect, environment, isolated_settings, produce

USER, PASSWORD = "tierstream", "s3cret-scram-pw"
DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "policies" / "default.yaml"


@pytest.fixture(scope="module")
def scram_broker() -> Iterator[LocalKafka]:
    with LocalKafka(scram_users={USER: PASSWORD}) as broker:
        yield broker


def sasl_env(broker: LocalKafka, settings, password: str) -> dict[str, str]:
    env = environment(settings, DEFAULT)
    env.update({"KAFKA_BOOTSTRAP_SERVERS": broker.sasl_bootstrap_servers,
                "TIERSTREAM_KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
                "TIERSTREAM_KAFKA_SASL_MECHANISM": "SCRAM-SHA-256",
                "TIERSTREAM_KAFKA_USERNAME": USER, "TIERSTREAM_KAFKA_PASSWORD": password})
    return env


def tierstream(env: dict[str, str], *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


def test_right_credentials_create_topics_and_run_a_worker(scram_broker: LocalKafka,
                                                          tmp_path: Path) -> None:
    settings = isolated_settings(scram_broker.bootstrap_servers, tmp_path)
    env = sasl_env(scram_broker, settings, PASSWORD)
    created = tierstream(env, "topics", "create")
    assert created.returncode == 0, created.stderr
    worker = Worker(settings, DEFAULT, tmp_path)
    worker.env_overrides = env
    worker.start()
    try:
        line = json.dumps({"type": "order_completed", "event_id": "e1", "customer_id": "c1",
                           "occurred_at": "2025-01-01T00:00:00Z", "order_id": "o1",
                           "amount": 30000, "currency": "CNY"}).encode()
        produce(settings, [line])  # through the broker's plaintext listener
        emitted = collect(settings, until=lambda e: len(e.events) >= 1, timeout=60)
        assert [e["type"] for e in emitted.events][:1] == ["io.github.tierstream.tier.assigned"], \
            worker.log_text()[-2000:]
    finally:
        worker.stop()


def test_wrong_password_fails_with_a_clear_error(scram_broker: LocalKafka, tmp_path: Path
                                                 ) -> None:
    """`topics create` and `worker`, run side by side: each waits out kafka-python's bootstrap
    timeout (30 s) before it gives up."""
    settings = isolated_settings(scram_broker.bootstrap_servers, tmp_path)
    env = sasl_env(scram_broker, settings, "not-the-password")
    with ThreadPoolExecutor() as pool:
        results = list(pool.map(lambda command: tierstream(env, *command),
                                [("topics", "create"), ("worker",)]))
    for result in results:
        assert result.returncode == 4, result.args + [result.stdout + result.stderr]  # unavailable
        assert f"as '{USER}'" in result.stderr and "SASL" in result.stderr, result.stderr
        assert "not-the-password" not in result.stdout + result.stderr
