"""The worker's outputs on a real broker, read by the official CloudEvents SDK (its Kafka
protocol binding) in structured and in binary content mode."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from cloudevents.core.bindings.kafka import (
    KafkaMessage,
    from_kafka_event,
    to_binary_event,
    to_structured_event,
)
from kafka import KafkaConsumer

from models.outputs import structured
from streams.policies import load_policy
from tests.integration.harness import (
    create_topics,
    isolated_settings,
    new_worker,
    produce,
    reference,
)

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"


def read_outputs(settings, expected: int, timeout: float = 90.0) -> list:
    """The raw records of both output topics, once there are `expected` of them."""
    consumer = KafkaConsumer(settings.topics.tier_changes, settings.topics.churn_warnings,
                             bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=500)
    records, deadline = [], time.monotonic() + timeout
    try:
        while len(records) < expected and time.monotonic() < deadline:
            records += list(consumer)
        return records
    finally:
        consumer.close()


@pytest.mark.parametrize("mode", ["structured", "binary"])
def test_the_sdk_reads_every_output_in_either_mode(kafka_bootstrap: str, tmp_path: Path,
                                                   workers, mode: str) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = EXAMPLES.read_bytes().splitlines()
    new_worker(settings, tmp_path, "w1", workers, TIERSTREAM_CLOUDEVENTS_MODE=mode)
    produce(settings, lines)
    _, expected = reference(lines, load_policy("default"), time.time_ns() // 1000)
    records = read_outputs(settings, len(expected))
    by_id = {event["id"]: event for event in expected}
    assert sorted(by_id) == sorted(json.loads(structured(r.value, r.headers))["id"]
                                   for r in records)
    for record in records:
        headers = dict(record.headers)
        assert len(headers) == len(record.headers)  # no header repeated
        message = KafkaMessage(headers=headers, key=record.key, value=record.value)
        event = from_kafka_event(message)
        want = by_id[event.get_id()]
        assert record.key.decode() == want["subject"]
        attributes = event.get_attributes()
        assert {**attributes, "time": want["time"]} == \
            {k: v for k, v in want.items() if k != "data"}
        assert event.get_time().isoformat().replace("+00:00", "Z") == want["time"]
        assert event.get_data() == want["data"]
        # The SDK writes the same record back: the same key, headers and content.
        if mode == "binary":
            assert set(headers) == {f"ce_{k}" for k in want if k not in
                                    ("data", "datacontenttype")} | {"content-type"}
            again = to_binary_event(event)
            assert again.headers["content-type"] == b"application/json"
            assert {k: v for k, v in again.headers.items() if k != "ce_time"} == \
                {k: v for k, v in headers.items() if k != "ce_time"}
        else:
            assert headers == {"content-type": b"application/cloudevents+json"}
            again = to_structured_event(event)
            assert again.headers == headers
            assert json.loads(again.value) == json.loads(record.value)
        assert again.key == want["subject"]
        assert json.loads(structured(record.value, record.headers)) == want
