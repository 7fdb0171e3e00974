"""Fault suite: topics deleted under a running worker (issue 16, item 3 and the first of item 9).

Part of the fault suite (tests/integration/test_faults.py: same end checks against replay, same
table of cases). Before, a deleted output topic stalled the worker while `/health` said 200,
lookups failed with 500 (a TypeError in faust's `key_partition`), aiokafka logged "Topic ... not
found in cluster metadata" ~1,800 times a second and SIGTERM was ignored; a deleted and recreated
input topic was not read again until a restart (or aiokafka's next metadata refresh, up to five
minutes later). streams/worker/topic_watch.py and streams/worker/shutdown.py say what the worker
does now.

An output topic deleted mid-stream takes the outputs already in it along: the test pauses the
worker (SIGSTOP) just before the deletion, reads everything it emitted so far, and counts those
outputs with the ones read after the topic is back. Each case ends with SIGTERM and expects the
worker to exit within shutdown.GRACE_S.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient

from models.outputs import CHURN_TYPES
from streams.settings import Settings
from streams.worker.shutdown import FORCED_EXIT_STATUS, GRACE_S
from streams.worker.topic_watch import CHECK_INTERVAL_S
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    Emitted,
    Worker,
    collect,
    create_topics,
    http_get,
    isolated_settings,
    metric_samples,
    pending_input,
    produce,
    simulated,
    table_states,
    wait_for,
)
from tests.integration.test_faults import (
    Expected,
    event_line,
    in_phases,
    replayed,
    settle,
    start_worker,
    verify,
)

STOP_MARGIN_S = 5.0  # process teardown after the grace (the watchdog ends it at GRACE_S)


def health(worker: Worker) -> tuple[int, dict]:
    status, body = http_get(f"{worker.url}/health", timeout=0)  # a 503 answers at once
    return status, json.loads(body)


def unusable(worker: Worker) -> dict[str, float]:
    return {labels["topic"]: value
            for labels, value in metric_samples(worker, "tierstream_topic_unusable")}


def delete_topic(settings: Settings, topic: str) -> None:
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        admin.delete_topics([topic])
        assert wait_for(lambda: topic not in admin.list_topics(), timeout=30)
    finally:
        admin.close()


def delete_mid_stream(settings: Settings, worker: Worker, topic: str,
                      part: list[bytes]) -> tuple[Emitted, int]:
    """Send half of `part`; once the worker has emitted something, pause it (SIGSTOP), read all
    it emitted so far (the topic's share goes with the topic), delete the topic, send the other
    half and let the worker go on. Returns what was read and the input then not committed."""
    produce(settings, part[:len(part) // 2])
    collect(settings, until=lambda e: len(e.events) > 0, quiet=0.0, timeout=120)
    os.killpg(worker.process.pid, signal.SIGSTOP)
    try:
        emitted = collect(settings, until=lambda e: True, quiet=2.0, timeout=30)
        delete_topic(settings, topic)
        produce(settings, part[len(part) // 2:])
        pending = pending_input(settings)
    finally:
        os.killpg(worker.process.pid, signal.SIGCONT)
    return emitted, pending


def tier_events(emitted: Emitted) -> list[dict]:
    """The events of the tier-changes topic (churn warnings go to their own)."""
    return [e for e in emitted.events if e["type"] not in CHURN_TYPES]


def with_deleted(before: list[dict], after: Emitted) -> Emitted:
    """What the worker emitted: `after`, read once the topic is back, and the events the
    deleted topic had."""
    return Emitted(events=before + after.events, dead_letters=after.dead_letters,
                   dead_letter_keys=after.dead_letter_keys, tiers=after.tiers)


def waiting_on_missing(settings: Settings, worker: Worker, topic: str) -> None:
    """The worker reports the missing topic: /health 503 naming it, the gauge at 1, a log line
    per check (not per message or per metadata answer), and it waits with input unacked."""
    assert wait_for(lambda: health(worker)[1].get("topics") == {topic: "missing"}, timeout=60), \
        health(worker)
    status, body = health(worker)
    assert status == 503 and body["status"] == "topics_unusable"
    assert unusable(worker)[topic] == 1
    assert {t for t, value in unusable(worker).items() if value} == {topic}
    assert wait_for(lambda: worker.log_text().count("topics not usable") >= 2, timeout=60)
    assert pending_input(settings) > 0, "input after the waiting event must not be acked"


def stop_within_grace(worker: Worker) -> tuple[float, int]:
    """SIGTERM; the seconds until the process exited and its status."""
    started = time.monotonic()
    os.killpg(worker.process.pid, signal.SIGTERM)
    try:
        status = worker.process.wait(timeout=GRACE_S + 30)
    except subprocess.TimeoutExpired:
        worker.kill()
        raise AssertionError(f"no exit {GRACE_S + 30:.0f} s after SIGTERM") from None
    seconds = time.monotonic() - started
    assert seconds <= GRACE_S + STOP_MARGIN_S, f"exited {seconds:.1f} s after SIGTERM"
    return seconds, status


def test_output_topic_deleted_mid_stream_then_recreated(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker],
        fault_row: FaultRow) -> None:
    """tier-changes is deleted while input is in flight: the worker waits (503, gauge, alert
    metric, a log line per check, lookups still answered), and once `tierstream topics create`
    recreates it, goes on by itself; outputs, tiers, table and lookups equal replay."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=100, seed=111)
    fault_row.events_in = len(lines)
    worker = start_worker(settings, tmp_path, "w1", workers)
    topic = settings.topics.tier_changes
    before, pending = delete_mid_stream(settings, worker, topic, lines)
    deleted_at = time.monotonic()
    waiting_on_missing(settings, worker, topic)
    known = sorted(table_states(settings))[:3]
    for customer in known:  # the owner is found although the producer waits for a topic
        assert http_get(f"{worker.url}/customers/{customer}", timeout=0)[0] == 200, customer
    logged = sum(topic in line for line in worker.log_text().splitlines())
    missing_s = time.monotonic() - deleted_at
    create_topics(settings)
    assert http_get(f"{worker.url}/health", timeout=120)[0] == 200
    assert unusable(worker)[topic] == 0
    expected = replayed(lines)
    kept = tier_events(before)
    after = collect(settings, until=lambda e: e.ids | {x["id"] for x in kept} >= expected.ids,
                    timeout=180)
    fault_row.note = (f"{topic.rsplit('-', 1)[0]} missing {missing_s:.0f} s, input pending "
                      f"{pending}; {logged} log lines about it")
    verify(settings, expected, with_deleted(kept, after), fault_row, workers)
    # a line per check and kind of warning, not one per message or per metadata answer
    assert logged <= 4 * (missing_s / 10 + 2), worker.log_text()[-3000:]
    assert stop_within_grace(worker)[1] == 0


def test_sigterm_while_an_output_topic_is_missing(kafka_bootstrap: str, tmp_path: Path,
                                                  workers: list[Worker],
                                                  fault_row: FaultRow) -> None:
    """SIGTERM while the worker waits for a deleted output topic: it exits within the grace
    (its deliveries and faust's flush cannot finish, so the watchdog ends it); started again
    once the topic is recreated, it processes what was not acked: nothing is lost."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=100, seed=112)
    fault_row.events_in = len(lines)
    worker = start_worker(settings, tmp_path, "w1", workers)
    topic = settings.topics.tier_changes
    before, pending = delete_mid_stream(settings, worker, topic, lines)
    waiting_on_missing(settings, worker, topic)
    seconds, status = stop_within_grace(worker)
    assert status == FORCED_EXIT_STATUS
    assert "did not stop within" in worker.log_text()
    fault_row.note = f"input pending {pending}; exit {status} {seconds:.0f} s after SIGTERM"
    create_topics(settings)
    worker.start()
    expected = replayed(lines)
    kept = tier_events(before)
    after = collect(settings, until=lambda e: e.ids | {x["id"] for x in kept} >= expected.ids,
                    timeout=180)
    verify(settings, expected, with_deleted(kept, after), fault_row, workers)
    assert stop_within_grace(worker)[1] == 0


def newcomers(count: int, seed: int) -> list[bytes]:
    """First orders of customers never seen, dated in the last days, in time order."""
    rng, now = random.Random(seed), datetime.now(UTC)
    orders = sorted((now - timedelta(minutes=rng.randrange(60, 3 * 24 * 60)), f"late-{n:03d}")
                    for n in range(count))
    return [event_line("order_completed", name, at, order_id=f"{name}-1", currency="CNY",
                       amount=rng.choice(["80", "800", "3000", "30000"]))
            for at, name in orders]


def test_input_topic_deleted_and_recreated_is_read_again(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker],
        fault_row: FaultRow) -> None:
    """orders is deleted once the worker has settled: /health 503 and the gauge name it; it is
    recreated and new orders are sent to it: the worker logs it and reads them without a
    restart (the watch makes the consumer refresh its metadata, the group rebalances)."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=60, seed=113)
    worker = start_worker(settings, tmp_path, "w1", workers)
    produce(settings, lines)
    settled = replayed(lines)
    settle(settings, settled)
    assert wait_for(lambda: table_states(settings) == settled.states, timeout=90)
    time.sleep(CHECK_INTERVAL_S + 2)  # a topic check has seen the topic's id: the recreated
    # one is told apart by its new id (without, it is picked up as "there but not read")
    topic = settings.topics.orders
    delete_topic(settings, topic)
    assert wait_for(lambda: health(worker)[1].get("topics") == {topic: "missing"}, timeout=60)
    assert unusable(worker)[topic] == 1
    create_topics(settings)
    late = newcomers(20, seed=113)
    produce(settings, late, topic=topic)
    fault_row.events_in = len(lines) + len(late)
    fault_row.note = "orders deleted after settling, recreated; 20 new customers' orders on it"
    expected = Expected(*in_phases([lines, late]))
    emitted = collect(settings, until=lambda e: e.ids >= expected.ids
                      and set(e.tiers) >= set(expected.states), timeout=120)
    verify(settings, expected, emitted, fault_row, workers)
    assert f"input topic {topic} was deleted and recreated" in worker.log_text()
    assert http_get(f"{worker.url}/health", timeout=60)[0] == 200
    assert worker.starts == 1 and stop_within_grace(worker)[1] == 0
