"""`tierstream topics create|describe` against a real broker: idempotent, loud on mismatches."""

from __future__ import annotations

import json
from pathlib import Path

from kafka.admin import ConfigResource, ConfigResourceType, KafkaAdminClient

from streams.cli.main import main
from streams.kafka import topics
from tests.integration.harness import environment, isolated_settings


def test_create_is_idempotent_and_describe_lists_partitions(kafka_bootstrap: str, tmp_path: Path,
                                                            monkeypatch, capsys) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=3)
    for name, value in environment(settings, Path("default")).items():
        monkeypatch.setenv(name, value)
    assert main(["topics", "create"]) == 0
    assert "created" in capsys.readouterr().out
    assert main(["topics", "create"]) == 0
    assert "created" not in capsys.readouterr().out
    assert [status for _, status in topics.describe(settings)] == \
        ["3 partitions"] * 7 + ["1 partition"]   # the population topic has one
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")  # -b wins over it
    assert main(["topics", "describe", "--json", "-b", kafka_bootstrap]) == 0
    described = json.loads(capsys.readouterr().out)
    assert described["bootstrap_servers"] == kafka_bootstrap
    assert [(t["topic"], t["status"]) for t in described["topics"]] == [
        (spec.name, status) for spec, status in topics.describe(settings)]
    admin = KafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    try:
        resource = ConfigResource(ConfigResourceType.TOPIC, settings.topics.customer_tiers)
        described = admin.describe_configs([resource])
    finally:
        admin.close()
    assert "'cleanup.policy'" in repr(described) and "compact" in repr(described), described


def test_partition_mismatch_is_reported(kafka_bootstrap: str, tmp_path: Path) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=2)
    topics.create(settings)
    wider = settings.model_copy(update={"partitions": 4})
    statuses = {spec.name: status for spec, status in topics.create(wider)}
    assert statuses.pop(settings.topics.population) == "exists"   # one partition at any count
    assert all(s.startswith("MISMATCH: has 2 partitions") for s in statuses.values())
