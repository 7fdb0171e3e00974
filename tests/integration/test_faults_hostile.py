"""Hostile input on a real broker: no message, customer or record may stop a worker.

Cases of the fault suite (their rows join the table of tests/integration/test_faults.py), each
ending equal to the replay of its valid input.
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from models.events import parse_event
from rules.replay import event_order
from streams.policies import load_policy
from streams.worker.runtime import DEAD_LETTER_MAX_VALUE
from streams.worker.shutdown import GRACE_S
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    DEFAULT_POLICY,
    Worker,
    collect,
    create_topics,
    http_get,
    isolated_settings,
    metric_samples,
    new_worker,
    produce,
    produce_records,
    reference,
    simulated,
)
from tests.integration.test_faults import (
    FAILOVER,
    Expected,
    customer,
    dead_lettered,
    now,
    replayed,
    settle,
    start_worker,
    verify,
)
from tests.integration.test_faults_topics import stop_within_grace


def test_oversized_input_dead_lettered_truncated_and_acked(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], fault_row: FaultRow) -> None:
    """Messages of ~1 MB (value, and a key of 200 KB) among valid input for two workers: each is
    dead-lettered in a form that fits (its first bytes, its sizes, topic, partition and offset),
    counted as `oversized`, and acked, so a rebalance afterwards stalls nothing and the worker
    that leaves stops on SIGTERM."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=60, seed=83)
    first, later = lines[:len(lines) // 2], lines[len(lines) // 2:]
    huge_value = b'{"type": "order_completed", "pad": "' + b"x" * 1_000_000 + b'"}'
    huge_key = b"k" * 200_000
    records = [(customer(line).encode(), line) for line in first]
    records.insert(len(records) // 3, (b"c-huge", huge_value))
    records.insert(2 * len(records) // 3, (huge_key, b'{"type": "interaction"}'))
    fault_row.events_in = len(records) + len(later)
    w1, w2 = (start_worker(settings, tmp_path, name, workers) for name in ("w1", "w2"))
    produce_records(settings, records)
    # Once both are dead-lettered, the rest of the input goes in and w1 leaves at once: w2
    # takes over every partition and must stall on none (partitions never sit idle meanwhile).
    so_far = collect(settings, until=lambda e: len(dead_lettered(e)) >= 2, quiet=0.0,
                     timeout=120)
    counted: Counter[str] = Counter()
    for worker in (w1, w2):
        for labels, value in metric_samples(worker, "tierstream_dead_letters_total"):
            counted[labels["reason"]] += int(value)
    assert counted == Counter(headers["reason"] for _, headers in so_far.dead_letters)
    assert counted["oversized"] >= 1, counted
    produce(settings, later)
    seconds, _ = stop_within_grace(w1)
    assert seconds < GRACE_S, f"w1 took {seconds:.0f} s to stop after SIGTERM"
    fault_row.note = f"SIGTERM of w1 after the oversized input took {seconds:.1f} s"
    expected = replayed(lines)
    emitted = settle(settings, expected, dead_letters=2)
    verify(settings, expected, emitted, fault_row, workers)

    letters = {headers["original_value_bytes"]: (key, value, headers) for key, (value, headers)
               in zip(emitted.dead_letter_keys, emitted.dead_letters, strict=True)}
    key, value, headers = letters[str(len(huge_value))]
    assert key == b"c-huge" and value == huge_value[:DEAD_LETTER_MAX_VALUE]
    assert headers["reason"] == "oversized" and headers["truncated"] == "true"
    assert {"source_topic", "source_partition", "source_offset"} <= headers.keys()
    key, value, headers = letters[str(len(b'{"type": "interaction"}'))]
    assert headers["original_key_bytes"] == str(len(huge_key)) and len(key) < len(huge_key)
    assert http_get(f"{w2.url}/health")[0] == 200 and w2.process.poll() is None


def test_customer_with_50000_orders_is_bounded_and_the_rest_flows(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], fault_row: FaultRow) -> None:
    """One customer sends 50,000 orders among a shop's normal traffic, with a policy bound of
    200 items per customer: its first 200 apply, every later one is dead-lettered as
    customer_full with its bytes and counted, and every other customer equals replay."""
    policy_file = tmp_path / "bounded.yaml"
    policy_file.write_text(DEFAULT_POLICY.read_text() + "limits:\n  customer_items: 200\n")
    bounded = load_policy(policy_file)
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    start = datetime(2021, 1, 1, tzinfo=UTC)
    heavy = [json.dumps({"type": "order_completed", "event_id": f"h{n}", "customer_id": "heavy",
                         "occurred_at": (start + timedelta(minutes=10 * n)).isoformat(),
                         "order_id": f"ho{n}", "amount": 10, "currency": "CNY"}).encode()
             for n in range(50_000)]
    lines = sorted(simulated(customers=60, seed=89) + heavy,
                   key=lambda line: event_order(parse_event(line)))
    fault_row.events_in = len(lines)
    worker = new_worker(settings, tmp_path, "w1", workers, policy=policy_file, **FAILOVER)
    produce(settings, lines)
    expected = Expected(*reference(lines, bounded, now()))
    emitted = settle(settings, expected, dead_letters=50_000 - 200, timeout=600)
    verify(settings, expected, emitted, fault_row, workers)
    assert len(expected.states["heavy"].orders) == 200
    reasons = Counter(headers["reason"] for _, headers in emitted.dead_letters)
    assert set(reasons) == {"customer_full"} and len(dead_lettered(emitted)) == 50_000 - 200
    assert set(emitted.dead_letter_keys) == {b"heavy"}
    counted = {labels["reason"]: value for labels, value in
               metric_samples(worker, "tierstream_dead_letters_total")}
    assert counted == {"customer_full": reasons["customer_full"]}
    assert worker.process.poll() is None and http_get(f"{worker.url}/health")[0] == 200
    fault_row.note = "policy bound 200 items; 49,800 dead-lettered as customer_full"


def test_conflicting_redeliveries_dead_lettered_never_applied(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], fault_row: FaultRow) -> None:
    """Orders re-sent with other content, among a shop's traffic: the same event id with another
    amount, and the same order id under a new event id with another amount. Each is dead-lettered
    as conflicting_duplicate with its bytes and counted; nothing is applied twice or dropped
    silently, and the result equals replay."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=60, seed=97)
    orders = [i for i, line in enumerate(lines) if b'"order_completed"' in line][:40:4]
    conflicts = []
    for n, i in enumerate(orders):
        event = json.loads(lines[i])
        event["amount"] = str(float(event["amount"]) + 1000)
        if n % 2:  # the same order again under a new event id (sorting after the first)
            event["event_id"] += "-again"
        conflicts.append((i, json.dumps(event).encode()))
    sent = list(lines)
    for i, line in reversed(conflicts):
        sent.insert(i + 1, line)  # right behind the original: same instant, so never late
    fault_row.events_in = len(sent)
    worker = start_worker(settings, tmp_path, "w1", workers)
    produce(settings, sent)
    expected = replayed(sent)
    emitted = settle(settings, expected, dead_letters=len(conflicts))
    verify(settings, expected, emitted, fault_row, workers)
    assert Counter(h["reason"] for _, h in emitted.dead_letters) == \
        {"conflicting_duplicate": len(conflicts)}
    assert {value for value, _ in emitted.dead_letters} == {line for _, line in conflicts}
    counted = {labels["reason"]: value for labels, value in
               metric_samples(worker, "tierstream_dead_letters_total")}
    assert counted == {"conflicting_duplicate": len(conflicts)}
    fault_row.note = f"{len(conflicts)} orders re-sent with another amount"
