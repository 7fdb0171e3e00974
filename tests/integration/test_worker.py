"""`tierstream worker` on a real Apache Kafka broker: live results equal a replay of the input."""

from __future__ import annotations

import json
import time
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from models.events import parse_event
from models.instants import format_instant
from streams.cli import policy_diff
from streams.cli.main import main
from streams.policies import load_policy
from tests.builders import FAILING_POLICY
from tests.integration.harness import (
    collect,
    consumer_group_members,
    create_topics,
    environment,
    history,
    http_get,
    isolated_settings,
    metric_samples,
    new_worker,
    produce,
    reference,
)
from tests.integration.test_faults import FAILOVER

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "events.jsonl"
DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "policies" / "default.yaml"


def now() -> int:
    return time.time_ns() // 1000


def test_events_in_tier_events_out_and_bad_input_dead_lettered(kafka_bootstrap: str,
                                                               tmp_path: Path, workers,
                                                               monkeypatch, capsys) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    erase = (b'{"type": "customer_erased", "event_id": "erase-carol", "customer_id": "carol", '
             b'"occurred_at": "2026-06-01T00:00:00Z"}')
    lines = [*EXAMPLES.read_bytes().splitlines(), erase]
    worker = new_worker(settings, tmp_path, "w1", workers)
    produce(settings, lines)
    states, expected = reference(lines, load_policy(DEFAULT), now())
    emitted = collect(settings, until=lambda e: len(e.events) >= len(expected)
                      and len(e.dead_letters) >= 4)
    missing = [e for e in expected if e["id"] not in emitted.ids]
    extra = [e for e in emitted.events if e["id"] not in {x["id"] for x in expected}]
    assert not missing and not extra, [(e["subject"], e["type"], e["time"])
                                       for e in missing + extra]
    by_id = {e["id"]: e for e in emitted.events}
    for event in expected:
        assert by_id[event["id"]] == event
    reasons = sorted(h["reason"] for _, h in emitted.dead_letters)
    assert reasons == ["invalid_field", "invalid_field", "not_json", "unknown_type"]
    raw, headers = next((v, h) for v, h in emitted.dead_letters if h["reason"] == "not_json")
    assert raw in lines and headers["source_topic"] == settings.topics.orders
    assert {"source_partition", "source_offset", "error"} <= headers.keys()
    assert emitted.tiers.pop("carol") is None, "erasure leaves a tombstone"
    assert "carol" not in states
    assert {c: t["tier"] for c, t in emitted.tiers.items()} == \
        {c: s.tier for c, s in states.items()}
    # The worker kept going after the bad lines: every valid customer got its events.
    assert worker.process.poll() is None
    status, body = http_get(f"{worker.url}/customers/alice")
    assert status == 200, body
    alice = json.loads(body)
    assert alice["tier"] == states["alice"].tier and alice["churn"] is True
    assert alice["reason"].startswith("qualifies for A") and alice["recent"][0]["type"]
    assert alice["metrics"]["orders_365d"] == 7
    assert http_get(f"{worker.url}/customers/nobody")[0] == 404
    assert http_get(f"{worker.url}/health")[0] == 200
    status, text = http_get(f"{worker.url}/metrics")
    families = {f.name: f for f in text_string_to_metric_families(text.decode())}
    outcomes: dict[str, float] = {}
    for sample in families["tierstream_events"].samples:
        if sample.name == "tierstream_events_total":
            outcome = sample.labels["outcome"]
            outcomes[outcome] = outcomes.get(outcome, 0) + sample.value
    # 25 valid lines (one a redelivery) and the erasure; 4 malformed lines
    assert outcomes == {"applied": 26, "duplicate": 1, "dead_letter": 4}
    dead = {s.labels["reason"]: s.value for s in families["tierstream_dead_letters"].samples
            if s.name == "tierstream_dead_letters_total"}
    assert dead == {"invalid_field": 2, "not_json": 1, "unknown_type": 1}
    assert "tierstream_processing_seconds" in families
    # The what-if against the live table equals the one on the replayed states.
    stricter = tmp_path / "stricter.yaml"
    stricter.write_text(DEFAULT.read_text(encoding="utf-8").replace(
        "orders_365d >= 6", "orders_365d >= 8"), encoding="utf-8")
    for name, value in environment(settings, DEFAULT).items():
        monkeypatch.setenv(name, value)
    at = now()
    assert main(["policy", "diff", str(DEFAULT), str(stricter), "--live", "--json",
                 "--as-of", format_instant(at)]) == 0
    live = json.loads(capsys.readouterr().out)
    offline = policy_diff.from_states(states.values(), load_policy(DEFAULT),
                                      load_policy(stricter), at)
    assert live == policy_diff.as_json(offline)
    assert {"from": "A", "to": "B", "customers": 1} in live["matrix"]  # alice: 7 orders < 8


def test_downgrade_and_churn_warning_with_no_new_events(kafka_bootstrap: str, tmp_path: Path,
                                                        workers) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = history(customers=30)
    new_worker(settings, tmp_path, "w1", workers)
    produce(settings, lines)
    _, expected = reference(lines, load_policy(DEFAULT), now())
    emitted = collect(settings, until=lambda e: len(e.events) >= len(expected))
    kinds = {e["type"] for e in emitted.events}
    assert {"io.github.tierstream.tier.downgraded", "io.github.tierstream.churn.warning"} <= kinds
    last_input = max(to_micros_of(line) for line in lines)
    timed = [e for e in emitted.events if e["time"] > format_instant(last_input)]
    assert timed, "time-driven changes after the last event must happen without new events"
    assert emitted.ids == {e["id"] for e in expected}


def test_two_workers_split_partitions_and_match_replay(kafka_bootstrap: str, tmp_path: Path,
                                                       workers) -> None:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = history(customers=80, seed=11)
    new_worker(settings, tmp_path, "w1", workers)
    new_worker(settings, tmp_path, "w2", workers)
    produce(settings, lines)
    states, expected = reference(lines, load_policy(DEFAULT), now())
    emitted = collect(settings, until=lambda e: len(e.events) >= len(expected))
    assert consumer_group_members(settings) == 2
    assert all(w.process.poll() is None for w in workers)
    assert emitted.ids == {e["id"] for e in expected}
    assert {c: (t["tier"], t["churn"]) for c, t in emitted.tiers.items()} == \
        {c: (s.tier, s.churn_rule is not None) for c, s in states.items()}
    # Either worker answers for every customer: the owner's table, routed by partition.
    for customer in sorted(states)[:12]:
        for worker in workers:
            status, body = http_get(f"{worker.url}/customers/{customer}")
            assert status == 200, (worker.url, customer, body)
            assert json.loads(body)["tier"] == states[customer].tier


def test_worker_killed_mid_stream_loses_nothing(kafka_bootstrap: str, tmp_path: Path,
                                               workers) -> None:
    """400 customers, the worker SIGKILLed while it works through the first half; restarted,
    its whole table comes back in bulk (RocksDB is killed three times in test_faults.py)."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = history(customers=400, seed=5)
    worker = new_worker(settings, tmp_path, "w1", workers, **FAILOVER)
    half = len(lines) // 2
    produce(settings, lines[:half])
    collect(settings, until=lambda e: len(e.events) > 0, quiet=0.0)
    worker.kill()  # while the first half is being processed
    produce(settings, lines[half:])
    worker.start()
    states, expected = reference(lines, load_policy(DEFAULT), now())
    emitted = collect(settings, until=lambda e: e.ids >= {x["id"] for x in expected}, timeout=150)
    missing = [(e["subject"], e["type"], e["time"]) for e in expected if e["id"] not in emitted.ids]
    extra = [(e["subject"], e["type"], e["time"]) for e in emitted.events
             if e["id"] not in {x["id"] for x in expected}]
    if missing or extra:
        who = missing[0][0] if missing else extra[0][0]
        mine = [(e["type"], e["time"], e["sequence"], e["data"].get("to_tier")) for e in
                emitted.events if e["subject"] == who]
        theirs = [(e["type"], e["time"], e["sequence"], e["data"].get("to_tier")) for e in expected
                  if e["subject"] == who]
        raise AssertionError(f"{len(missing)} missing, {len(extra)} extra; {who}: live {mine} "
                             f"replay {theirs}; extra {extra[:5]}")
    duplicates = len(emitted.events) - len(emitted.ids)
    by_id = {}
    for event in emitted.events:  # a duplicate is only ever the very same event again
        assert by_id.setdefault(event["id"], event) == event
    assert {c: (t["tier"], t["churn"], t["sequence"]) for c, t in emitted.tiers.items()} == \
        {c: (s.tier, s.churn_rule is not None, s.sequence) for c, s in states.items()}
    restart = worker.logs[-1].read_text(errors="replace")
    assert "changelog records of" in restart  # in bulk, none record by record
    assert "Restoring state from changelog topics" not in restart
    print(f"{duplicates} duplicate outputs after the kill")


def to_micros_of(line: bytes) -> int:
    return parse_event(line).at


def test_policy_failing_on_a_due_customer_dead_letters_and_keeps_it(
        kafka_bootstrap: str, tmp_path: Path, workers) -> None:
    # The partitions follow event time only (no idle switch to the wall clock during the test).
    settings = isolated_settings(kafka_bootstrap, tmp_path, idle_after_s=3600.0)
    create_topics(settings)
    policy = tmp_path / "failing.yaml"
    policy.write_text(FAILING_POLICY)
    first = {"type": "order_completed", "event_id": "e1", "customer_id": "p",
             "occurred_at": "2026-01-01T00:00:00Z", "order_id": "o1", "amount": 100,
             "currency": "CNY"}
    later = {**first, "event_id": "e2", "order_id": "o2", "occurred_at": "2026-02-15T00:00:00Z"}
    lines = [json.dumps(first).encode(), json.dumps(later).encode()]
    worker = new_worker(settings, tmp_path, "w1", workers, policy=policy)
    produce(settings, lines)
    compiled = load_policy(policy)
    states, expected = reference(lines, compiled, parse_event(lines[1]).at)
    # days 30, 31, 33, 37 and 45 after the first order: tried again after 1, 2, 4, 8 days
    days = ["2026-01-31T00:00:00Z", *(f"2026-02-{d:02d}T00:00:00Z" for d in (1, 3, 7, 15))]
    emitted = collect(settings, until=lambda e: len(e.dead_letters) >= len(days))
    # each failed decision dead-lettered once, in order
    failures = [json.loads(value) for value, _ in emitted.dead_letters]
    assert [f["at"] for f in failures] == days
    assert {(f["customer_id"], f["reason"]) for f in failures} == {("p", "policy_error")}
    assert {h["reason"] for _, h in emitted.dead_letters} == {"policy_error"}
    assert set(emitted.dead_letter_keys) == {b"p"}
    # the later order was not lost: the worker's result equals replay's
    assert [e["id"] for e in emitted.events] == [e["id"] for e in expected]
    status, body = http_get(f"{worker.url}/customers/p")
    assert status == 200 and json.loads(body)["metrics"]["orders_30d"] == 1, body
    assert states["p"].orders[-1].order_id == "o2"
    samples = dict((labels["reason"], value) for labels, value in
                   metric_samples(worker, "tierstream_dead_letters_total"))
    assert samples == {"policy_error": len(days)}
