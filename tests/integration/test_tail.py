"""`tierstream tail` on a real broker: history from the beginning, as JSON, filtered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from kafka import KafkaProducer

from models.outputs import kind_of
from streams.cli.main import main
from tests.example_run import example_run
from tests.integration.harness import create_topics, isolated_settings


@pytest.fixture(params=["structured", "binary"])
def published(kafka_bootstrap: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
              request: pytest.FixtureRequest) -> list:
    """The example outputs on their topics, in either CloudEvents content mode; the environment
    points `tierstream` at them."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    outputs = list(example_run()[1])
    topic = {"tier-changes": settings.topics.tier_changes,
             "churn-warnings": settings.topics.churn_warnings}
    producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
    try:
        for output in outputs:  # binary mode under a prefix of the operator's own
            value, headers = output.kafka_record(binary=request.param == "binary", prefix=PREFIX[
                request.param])
            producer.send(topic[output.topic_kind], key=output.subject.encode(), value=value,
                          headers=headers)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", kafka_bootstrap)
    for name, value in settings.topics.model_dump().items():
        monkeypatch.setenv(f"TIERSTREAM_TOPIC_{name.upper()}", value)
    return outputs


PREFIX = {"structured": "io.github.tierstream", "binary": "com.example.crm"}


def request_mode(events: list[dict]) -> str:
    """Which of the fixture's runs printed these events."""
    return "binary" if events[0]["type"].startswith("com.example.crm.") else "structured"


def tail(capsys: pytest.CaptureFixture[str], *args: str) -> list[dict]:
    assert main(["tail", "--from-beginning", "--json", "--timeout", "20", *args]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_tail_prints_history_as_json_and_filters(published: list,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    everything = tail(capsys, "--limit", str(len(published)))
    assert sorted(e["id"] for e in everything) == sorted(o.id for o in published)
    assert sorted(everything, key=lambda e: e["id"]) == sorted(
        (o.document(PREFIX[request_mode(everything)]) for o in published), key=lambda e: e["id"])

    churn = tail(capsys, "--type", "churn.warning", "--limit", "2")
    assert sorted(e["subject"] for e in churn) == ["alice", "bob"]

    followups = [o.id for o in published if o.type.startswith("tierstream.followup.")]
    shown = tail(capsys, "--type", "followup", "--limit", str(len(followups)))
    assert sorted(e["id"] for e in shown) == sorted(followups) and followups

    carol = tail(capsys, "--customer", "carol", "--tier", "D", "--timeout", "3")
    assert [kind_of(e["type"]) for e in carol] == ["tier.downgrade_warning", "tier.downgraded"]


def test_tail_reads_lines_and_stops_on_its_own(published: list,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["tail", "--from-beginning", "--customer", "alice", "--timeout", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    alice = [o for o in published if o.subject == "alice"]
    assert len(lines) == len(alice) and all("alice" in line for line in lines)
