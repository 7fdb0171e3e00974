"""Fault injection on a real broker and Redis: each case ends equal to the replay of its input.

Every case compares, at its end, what the workers left behind with the engine's replay of the
same input (`harness.reference`, or `reference_in_arrival_order` where events come late on
purpose): the set of output event ids (none lost, none extra, a repeated id only ever the same
event), each output's content, the compacted `customer-tiers` record of every customer, every
customer's full state in the table (its changelog), and lookups through `/customers/{id}`.
Counts go to the table printed at the end of the run (conftest.FaultRow). Cases marked `stress`
run only when asked for: `pytest -m stress tests/integration/test_faults.py` (docs/streaming.md).
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path

import pytest
import redis
from kafka import KafkaConsumer, TopicPartition

from models.events import parse_event
from models.outputs import CustomerTier
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.decisions import explain
from rules.replay import Replay, event_order
from streams.dev.local_kafka import LocalKafka
from streams.policies import load_policy
from streams.settings import Settings
from streams.view.redis_view import Keys, version_of
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    DEFAULT_POLICY,
    Emitted,
    Worker,
    collect,
    consumer_group_members,
    create_topics,
    http_get,
    isolated_settings,
    metric_samples,
    metric_total,
    new_worker,
    pending_input,
    produce,
    produce_records,
    redis_view,
    reference,
    reference_in_arrival_order,
    simulated,
    table_states,
    wait_for,
)
from tests.malformed import KINDS, corpus
from tests.redis_server import RedisServer

# faust reads these from the environment: a SIGKILLed worker's group membership expires after
# 10 s instead of 60, so a restarted or surviving worker gets its partitions back that much
# sooner. What happens after the expiry is the same, only the waiting is shorter.
FAILOVER = {"BROKER_SESSION_TIMEOUT": "10", "BROKER_HEARTBEAT_INTERVAL": "1"}


def start_worker(settings: Settings, tmp_path: Path, name: str, workers: list[Worker],
                 **env: str) -> Worker:
    return new_worker(settings, tmp_path, name, workers, **FAILOVER, **env)


@cache
def policy() -> CompiledPolicy:
    return load_policy(DEFAULT_POLICY)


def now() -> int:
    return time.time_ns() // 1000


@dataclass(frozen=True)
class Expected:
    """The replay of a case's input: final states and output events."""

    states: dict[str, CustomerState]
    outputs: list[dict]

    @property
    def ids(self) -> set[str]:
        return {e["id"] for e in self.outputs}


def replayed(lines: list[bytes], how=reference) -> Expected:
    return Expected(*how(lines, policy(), now()))


def dead_lettered(emitted: Emitted) -> set[tuple[str, str]]:
    """The input messages dead-lettered (a redelivered one is dead-lettered again, same place)."""
    return {(h["source_partition"], h["source_offset"]) for _, h in emitted.dead_letters}


def settle(settings: Settings, expected: Expected, dead_letters: int = 0,
           timeout: float = 180.0, row: FaultRow | None = None, since: float | None = None
           ) -> Emitted:
    """Everything emitted once every expected output id and dead letter is there; with `row`,
    its `recovered_s` is the time from `since` (time.monotonic(), the end of the fault) until
    they were."""
    complete: list[float] = []

    def until(emitted: Emitted) -> bool:
        done = emitted.ids >= expected.ids and len(dead_lettered(emitted)) >= dead_letters
        if done and not complete:
            complete.append(time.monotonic())
        return done

    emitted = collect(settings, until=until, timeout=timeout)
    if row is not None and since is not None and complete:
        row.recovered_s = max(complete[0] - since, 0.0)
    return emitted


def verify(settings: Settings, expected: Expected, emitted: Emitted, row: FaultRow,
           workers: list[Worker] = ()) -> None:
    """The end of every case: outputs, current tiers, table and lookups equal the replay's."""
    row.outputs, row.dead_letters = len(emitted.ids), len(dead_lettered(emitted))
    row.duplicate_ids = len(emitted.events) - len(emitted.ids)
    row.guarantee = settings.processing_guarantee
    lost = [e for e in expected.outputs if e["id"] not in emitted.ids]
    extra = [e for e in emitted.events if e["id"] not in expected.ids]
    row.lost = len(lost)
    assert not lost and not extra, (
        f"{len(lost)} lost, {len(extra)} extra; lost {_brief(lost)}; extra {_brief(extra)}")
    if settings.processing_guarantee == "exactly_once":  # (collect reads committed records)
        assert row.duplicate_ids == 0, f"{row.duplicate_ids} outputs seen twice"
    first: dict[str, dict] = {}
    for event in emitted.events:  # a repeated id is only ever the very same event again
        assert first.setdefault(event["id"], event) == event
    assert first == {e["id"]: e for e in expected.outputs}
    assert {c: decided(r) for c, r in emitted.tiers.items()} == \
        {c: decided(json.loads(CustomerTier.record(s))) for c, s in expected.states.items()}
    # The table is written after the outputs: wait for its last writes, then compare it all.
    wait_for(lambda: table_states(settings) == expected.states, timeout=60)
    table = table_states(settings)
    wrong = sorted(c for c in table.keys() | expected.states.keys()
                   if table.get(c) != expected.states.get(c))
    assert not wrong, f"{len(wrong)} customers' table states differ from replay, e.g. " \
        f"{wrong[0]}: table {table.get(wrong[0])!r} replay {expected.states.get(wrong[0])!r}"
    alive = [w for w in workers if w.process is not None and w.process.poll() is None]
    for customer in sorted(expected.states)[:6]:
        for worker in alive:  # any worker answers, forwarding to the owner
            status, body = http_get(f"{worker.url}/customers/{customer}")
            state = expected.states[customer]
            assert status == 200, (worker.url, customer, body)
            assert json.loads(body) == json.loads(json.dumps(
                explain(state, policy(), state.clock))), customer


def in_parts(lines: list[bytes], count: int) -> list[list[bytes]]:
    return [lines[len(lines) * i // count:len(lines) * (i + 1) // count] for i in range(count)]


def during(settings: Settings, part: list[bytes], fault: Callable[[], object]) -> int:
    """Send half of `part`; as soon as the workers emit something new, send the other half and
    inject `fault`. Returns the input then not yet committed by the workers."""
    before = len(collect(settings, until=lambda e: True, quiet=0.0, timeout=5).events)
    produce(settings, part[:len(part) // 2])
    collect(settings, until=lambda e: len(e.events) > before, quiet=0.0, timeout=120)
    produce(settings, part[len(part) // 2:])
    pending = pending_input(settings)
    fault()
    return pending


def decided(record: dict) -> dict:
    """A `customer-tiers` record (or its Redis hash) without `as_of`: written with each output,
    it shows the instant of the last decision with an output, while the state's clock moves on
    with every evaluation."""
    return {k: v for k, v in record.items() if k != "as_of"}


def _brief(events: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(e["subject"], e["type"], e["time"], e["sequence"]) for e in events[:5]]


def outcomes(workers: list[Worker]) -> Counter[str]:
    """Input messages by outcome (applied, duplicate, stale, dead_letter), summed over the
    workers."""
    total: Counter[str] = Counter()
    for worker in workers:
        for labels, value in metric_samples(worker, "tierstream_events_total"):
            total[labels["outcome"]] += int(value)
    return total


# -- 5. duplicate floods ---------------------------------------------------------------------

def test_duplicate_flood(kafka_bootstrap: str, tmp_path: Path, workers: list[Worker],
                         fault_row: FaultRow) -> None:
    """Every event re-sent up to three times in a row, twenty events re-sent 25 times each
    anywhere later in the stream, and the first 300 events re-sent once more at the end: the
    duplicates change nothing and are counted as such (an interaction re-sent once it is older
    than the largest window counts as stale: too old to tell a redelivery from a late one)."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=100, seed=21)
    rng = random.Random(21)
    sent = [copy for line in lines for copy in [line] * rng.choice([1, 1, 1, 2, 3])]
    for line in rng.sample(lines, 20):
        after = sent.index(line) + 1
        for _ in range(25):
            sent.insert(rng.randrange(after, len(sent) + 1), line)
    sent += lines[:300]
    fault_row.events_in = len(sent)
    fault_row.note = f"{len(sent) - len(lines)} re-sends of {len(lines)} events"
    worker = start_worker(settings, tmp_path, "w1", workers)
    produce(settings, sent)
    expected = replayed(lines)
    verify(settings, expected, settle(settings, expected), fault_row, workers)
    # One worker, never restarted: each message was processed exactly once.
    counts = outcomes([worker])
    assert counts["applied"] == len(lines)
    assert counts["duplicate"] + counts.get("stale", 0) == len(sent) - len(lines)


# -- 1. worker SIGKILLed mid-stream, again and again ---------------------------------------------

@pytest.mark.parametrize("store", ["memory://",
                                   pytest.param("rocksdb://", marks=pytest.mark.stress)])
def test_worker_sigkilled_mid_stream_three_times(kafka_bootstrap: str, tmp_path: Path,
                                                 workers: list[Worker], fault_row: FaultRow,
                                                 store: str) -> None:
    """Input in four parts; after each of the first three, SIGKILL the worker as soon as it has
    emitted something new, and start it again at once."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, store=store)
    create_topics(settings)
    lines = simulated(customers=120, seed=31)
    fault_row.events_in = len(lines)
    worker = start_worker(settings, tmp_path, "w1", workers)
    parts = in_parts(lines, 4)

    def restart() -> None:
        worker.kill()
        worker.start()

    pending = [during(settings, part, restart) for part in parts[:3]]
    fault_row.note = f"3 kills; input pending at each: {'/'.join(map(str, pending))}"
    produce(settings, parts[3])
    expected = replayed(lines)
    verify(settings, expected, settle(settings, expected), fault_row, workers)
    assert worker.starts == 4


@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_worker_sigkilled_while_busy(kafka_bootstrap: str, tmp_path: Path,
                                     workers: list[Worker], fault_row: FaultRow,
                                     guarantee: str) -> None:
    """Three times: a block of input sent at once, and the worker SIGKILLed as soon as its
    first outputs of the block reach the broker (uncommitted ones too), while it is still
    deciding and sending the rest. At-least-once may then emit outputs again (the same ids);
    a consumer reading committed records sees each output exactly once under exactly-once."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, processing_guarantee=guarantee)
    create_topics(settings)
    lines = simulated(customers=350, seed=41)
    fault_row.events_in = len(lines)
    worker = start_worker(settings, tmp_path, "w1", workers)
    parts = in_parts(lines, 5)
    produce(settings, parts[0])
    collect(settings, until=lambda e: len(e.events) > 0, quiet=0.0, timeout=120)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        for part in parts[1:4]:
            before = output_offsets(settings, consumer)
            produce(settings, part)
            assert wait_for(lambda n=before: output_offsets(settings, consumer) > n,
                            timeout=120, interval=0.005)
            worker.kill()
            worker.start()
    finally:
        consumer.close()
    restarted = time.monotonic()
    produce(settings, parts[4])
    expected = replayed(lines)
    emitted = settle(settings, expected, row=fault_row, since=restarted)
    # records of aborted transactions: seen only by a consumer reading uncommitted ones
    aborted = len(collect(settings, until=lambda e: len(e.events) >= len(emitted.events),
                          isolation_level="read_uncommitted").events) - len(emitted.events)
    fault_row.note = f"3 kills while busy; {aborted} output records of aborted transactions"
    verify(settings, expected, emitted, fault_row, workers)


@pytest.mark.stress
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_worker_frozen_past_its_session_then_continued(kafka_bootstrap: str, tmp_path: Path,
                                                       workers: list[Worker],
                                                       fault_row: FaultRow,
                                                       guarantee: str) -> None:
    """Two workers; one is frozen (SIGSTOP) mid-stream for longer than its session, so the
    group gives its partitions to the other, which under exactly-once fences its transactional
    producers; then it is continued, a zombie that has not seen the rebalance. Nothing it was
    doing may change the result (under exactly-once none of it commits; under at-least-once
    what it repeats are duplicates), and it rejoins the group.
    The test sends nothing for most of the freeze, and a partition quiet for longer than its
    idle time rightly follows the wall clock: the idle time here is twice the freeze."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, processing_guarantee=guarantee,
                                 idle_after_s=30.0)
    create_topics(settings)
    lines = simulated(customers=150, seed=51)
    fault_row.events_in = len(lines)
    parts = in_parts(lines, 4)
    frozen, _ = (start_worker(settings, tmp_path, name, workers) for name in ("w1", "w2"))
    assert wait_for(lambda: consumer_group_members(settings) == 2, timeout=120)
    produce(settings, parts[0])
    collect(settings, until=lambda e: len(e.events) > 0, quiet=0.0, timeout=120)
    try:
        pending = during(settings, parts[1], frozen.pause)
        time.sleep(1.5 * float(FAILOVER["BROKER_SESSION_TIMEOUT"]))
        produce(settings, parts[2])
    finally:
        frozen.resume()
    continued = time.monotonic()
    produce(settings, parts[3])
    expected = replayed(lines)
    fault_row.note = f"w1 frozen 15 s (session 10 s), then continued; input pending {pending}"
    verify(settings, expected, settle(settings, expected, row=fault_row, since=continued),
           fault_row, workers)
    assert wait_for(lambda: consumer_group_members(settings) == 2, timeout=60)


def output_offsets(settings: Settings, consumer: KafkaConsumer) -> int:
    """The end offsets of the output topics, summed: records of open transactions count."""
    tps = [TopicPartition(topic, p) for topic in (settings.topics.tier_changes,
                                                   settings.topics.churn_warnings)
           for p in range(settings.partitions)]
    return sum(consumer.end_offsets(tps).values())


# -- 6. out of order within the largest window -----------------------------------------------

DISORDER = timedelta(days=30)  # well inside the default policy's largest window, 365 days


def test_events_out_of_order_within_the_largest_window(kafka_bootstrap: str, tmp_path: Path,
                                                       workers: list[Worker],
                                                       fault_row: FaultRow) -> None:
    """Each event comes after events up to 30 days newer, of other customers and its own, with
    TIERSTREAM_LATENESS_S = 30 days as docs/streaming.md prescribes: the result is the engine's
    for that arrival order (a late event folded in at its customer's clock, docs/engine.md), and
    every customer keeps all its orders, as in the sorted replay."""
    settings = isolated_settings(kafka_bootstrap, tmp_path,
                                 lateness_s=DISORDER.total_seconds())
    create_topics(settings)
    lines = simulated(customers=100, seed=41)
    rng = random.Random(41)
    jitter = {line: rng.uniform(0, DISORDER.total_seconds()) for line in lines}
    arrival = sorted(lines, key=lambda line: occurred(line) / 1e6 + jitter[line])
    late_own = sum(1 for i, line in enumerate(arrival)
                   if any(customer(x) == customer(line) and occurred(x) > occurred(line)
                          for x in arrival[max(0, i - 200):i]))
    assert late_own > 20, "the input must have customers whose own events come late"
    fault_row.events_in = len(arrival)
    fault_row.note = f"{late_own} events after a newer one of their customer"
    start_worker(settings, tmp_path, "w1", workers)
    produce(settings, arrival)
    expected = replayed(arrival, how=reference_in_arrival_order)
    verify(settings, expected, settle(settings, expected), fault_row, workers)
    sorted_states, _ = reference(lines, policy(), now())
    assert {c: sorted(s.orders) for c, s in expected.states.items()} == \
        {c: sorted(s.orders) for c, s in sorted_states.items()}


def occurred(line: bytes) -> int:
    return parse_event(line).at


def customer(line: bytes) -> str:
    return parse_event(line).customer_id


# -- 7. older than the largest window --------------------------------------------------------

def test_events_older_than_the_largest_window(kafka_bootstrap: str, tmp_path: Path,
                                              workers: list[Worker],
                                              fault_row: FaultRow) -> None:
    """Once the worker has settled, orders and interactions dated over a year before their
    customers' clocks. docs/engine.md: a late event is evaluated at the customer's clock, never
    in the past; an order inside the largest window plus the redelivery horizon (365 + 30 days)
    is kept (orders_total, revenue_total count it, no window does), one older than that is
    dead-lettered as beyond_history (a redelivery there cannot be told from a new order); an
    interaction older than the largest window is dropped. A stale event of a customer never
    seen starts that customer at its own time."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=100, seed=51)
    worker = start_worker(settings, tmp_path, "w1", workers)
    produce(settings, lines)
    settled = replayed(lines)
    settle(settings, settled)
    assert wait_for(lambda: table_states(settings) == settled.states, timeout=90)
    rng = random.Random(51)
    stale, refused = [], set()
    for n, name in enumerate(rng.sample(sorted(settled.states), 26)):
        behind = 366 + rng.randrange(25) if n % 2 else 400 + rng.randrange(400)
        at = datetime.fromtimestamp(settled.states[name].clock / 1e6, UTC) - \
            timedelta(days=behind)
        if not n % 2:
            refused.add(f"{name}-stale")
        stale += [event_line("order_completed", name, at, order_id=f"{name}-stale",
                             amount="800", currency="CNY"),
                  event_line("interaction", name, at, kind="complaint")]
    stale.append(event_line("order_completed", "newcomer", datetime(2019, 5, 1, tzinfo=UTC),
                            order_id="newcomer-1", amount="30000", currency="CNY"))
    fault_row.events_in = len(lines) + len(stale)
    fault_row.note = "26 orders (13 kept, 13 beyond the horizon), 26 interactions a year+ " \
                     "behind; a new customer from 2019"
    produce(settings, stale)
    expected = Expected(*in_phases([lines, stale]))
    verify(settings, expected, settle(settings, expected, dead_letters=13), fault_row, workers)
    for line in stale:
        event = parse_event(line)
        held = expected.states[event.customer_id].orders
        if event.type == "order_completed":
            assert (event.order_id in {o.order_id for o in held}) == \
                (event.order_id not in refused)
        else:
            assert event.event_id not in {t.event_id for t in
                                          expected.states[event.customer_id].touches}
    assert expected.states["newcomer"].tier == "D", "assigned in 2019, downgraded since"
    changed = {name for name in settled.states
               if expected.states[name].sequence > settled.states[name].sequence}
    assert changed, "some stale orders must change a decision (churn: orders_total, gaps)"
    assert outcomes([worker]) == {"applied": len(lines) + 14, "stale": 26, "dead_letter": 13}
    assert {labels["reason"]: value for labels, value in
            metric_samples(worker, "tierstream_dead_letters_total")} == {"beyond_history": 13}


def event_line(event_type: str, name: str, at: datetime, **fields: str) -> bytes:
    return json.dumps({"event_id": f"{name}-{event_type}-{at:%Y%m%d}", "type": event_type,
                       "customer_id": name, "occurred_at": at.isoformat(), **fields}).encode()


def in_phases(phases: list[list[bytes]]) -> tuple[dict[str, CustomerState], list[dict]]:
    """Replay of input delivered in phases, each sorted, each after time has passed up to now
    for everything before it (what a worker that settled in between has done)."""
    run, outputs = Replay(policy()), []
    for phase in phases:
        for event in sorted(map(parse_event, phase), key=event_order):
            outputs += run.feed(event)
        outputs += run.advance_to(now())
    return run.states, [json.loads(o.record()) for o in outputs]


# -- 8. a generated corpus of malformed input ------------------------------------------------

def test_malformed_corpus_dead_lettered_while_valid_events_match_replay(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker], fault_row: FaultRow) -> None:
    """Six Hypothesis-drawn messages of each kind of damage (tests/malformed.py: truncated JSON,
    wrong types, NaN/inf/huge/negative amounts, bad and future timestamps, oversized, deeply
    nested, invalid UTF-8, missing/unknown fields, unknown type and currency, wrong message
    key) mixed into valid input for two workers: each lands in the dead-letter topic with its
    key, its bytes and its reason, is counted in /metrics, and the workers go on."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = simulated(customers=80, seed=61)
    bad = corpus(per_kind=6)
    rng = random.Random(61)
    records = [(customer(line).encode(), line) for line in lines]
    for message in bad:
        records.insert(rng.randrange(len(records) + 1), (message.key, message.value))
    fault_row.events_in = len(records)
    fault_row.note = f"{len(KINDS)} kinds x 6, two workers"
    started = [start_worker(settings, tmp_path, name, workers) for name in ("w1", "w2")]
    produce_records(settings, records)
    expected = replayed(lines)
    emitted = settle(settings, expected, dead_letters=len(bad))
    verify(settings, expected, emitted, fault_row, workers)
    once: dict[tuple[str, str], tuple[bytes | None, bytes, str]] = {}
    for key, (value, headers) in zip(emitted.dead_letter_keys, emitted.dead_letters,
                                     strict=True):
        assert headers["source_topic"] == settings.topics.orders and headers["error"]
        found = once.setdefault((headers["source_partition"], headers["source_offset"]),
                                (key, value, headers["reason"]))
        assert found == (key, value, headers["reason"]), "a redelivery is dead-lettered alike"
    assert Counter(once.values()) == Counter((m.key, m.value, m.reason) for m in bad)
    errors = {(key, value): headers["error"] for key, (value, headers)
              in zip(emitted.dead_letter_keys, emitted.dead_letters, strict=True)}
    for message in bad:
        assert message.field is None or message.field in errors[message.key, message.value]
    counted: Counter[str] = Counter()
    for worker in started:
        assert worker.process.poll() is None and http_get(f"{worker.url}/health")[0] == 200
        for labels, value in metric_samples(worker, "tierstream_dead_letters_total"):
            counted[labels["reason"]] += int(value)
    assert counted == Counter(headers["reason"] for _, headers in emitted.dead_letters)


# -- 2. the broker stopped and restarted during load -----------------------------------------

@pytest.mark.stress
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_broker_stopped_and_restarted_during_load(tmp_path: Path, workers: list[Worker],
                                                  fault_row: FaultRow, guarantee: str) -> None:
    """A broker of this test's own (the session's is shared): stopped with SIGTERM while the
    worker works through the first third of the input, and later SIGKILLed during the second;
    each time started again on the same port and log dirs."""
    with LocalKafka(workdir=tmp_path / "kafka") as broker:
        settings = isolated_settings(broker.bootstrap_servers, tmp_path,
                                     processing_guarantee=guarantee)
        create_topics(settings)
        lines = simulated(customers=120, seed=71)
        fault_row.events_in = len(lines)
        parts = in_parts(lines, 3)
        start_worker(settings, tmp_path, "w1", workers)

        def outage(stop: Callable[[], None]) -> Callable[[], None]:
            def bounce() -> None:
                stop()
                time.sleep(3)  # down for a while (how long does not matter to the result)
                broker.restart()
            return bounce

        pending = [during(settings, parts[0], outage(broker.stop)),
                   during(settings, parts[1], outage(broker.kill))]
        produce(settings, parts[2])
        fault_row.note = f"SIGTERM, then SIGKILL; input pending: {pending[0]}/{pending[1]}"
        expected = replayed(lines)
        try:
            verify(settings, expected, settle(settings, expected, timeout=240), fault_row,
                   workers)
            assert all(w.process.poll() is None for w in workers), \
                workers[0].log_text()[-3000:]
        finally:
            for worker in workers:  # while their broker is up (else each waits its grace)
                worker.stop()


# -- 3. Redis unavailable for a while --------------------------------------------------------

@pytest.mark.stress
def test_redis_unavailable_during_load(kafka_bootstrap: str, tmp_path: Path,
                                       workers: list[Worker], fault_row: FaultRow) -> None:
    """Redis hangs (SIGSTOP) while the worker works through the second third of the input,
    then refuses the worker's user (ACL off, its connections killed) during the last third;
    processing goes on, and once Redis serves again the view catches up: every customer's hash
    and the tier sets equal the replay."""
    with RedisServer() as server:
        # Between the parts the test waits for the worker to count Redis errors (a hung server
        # times out twice, 2 s each, and the metric is polled): on a loaded machine that can
        # take longer than the harness's 6 s idle time, and a partition idle that long rightly
        # moves to the wall clock before the next part's events come.
        settings = isolated_settings(kafka_bootstrap, tmp_path, idle_after_s=30.0)
        create_topics(settings)
        prefix = f"faults:{settings.app_id}"
        lines = simulated(customers=120, seed=81)
        fault_row.events_in = len(lines)
        parts = in_parts(lines, 3)
        worker = start_worker(settings, tmp_path, "w1", workers, TIERSTREAM_REDIS_URL=server.url,
                              TIERSTREAM_REDIS_PREFIX=prefix)
        with redis.Redis.from_url(server.url) as client:  # the test's own user stays on
            client.acl_setuser("faults", enabled=True, passwords=["+admin-pw"], keys=["*"],
                               channels=["*"], commands=["+@all"])

        def errors() -> float:
            return metric_total(worker, "tierstream_redis_errors_total")

        during(settings, parts[0], lambda: os.kill(server.process.pid, signal.SIGSTOP))
        try:
            produce(settings, parts[1])
            hung = wait_for(lambda: errors() > 0)
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        before = errors()
        with redis.Redis.from_url(f"redis://faults:admin-pw@127.0.0.1:{server.port}/0") as client:
            client.acl_setuser("default", enabled=False, nopass=True, keys=["*"],
                               channels=["*"], commands=["+@all"])
            client.client_kill_filter(_type="normal", skipme=True)
            try:
                produce(settings, parts[2])
                refused = wait_for(lambda: errors() > before, timeout=60)
            finally:
                client.acl_setuser("default", enabled=True, nopass=True, keys=["*"],
                                   channels=["*"], commands=["+@all"])
        fault_row.note = "hang (SIGSTOP), then refused (ACL off)"
        expected = replayed(lines)
        verify(settings, expected, settle(settings, expected), fault_row, workers)
        assert hung and refused, "the worker wrote to Redis while it hung or refused"
        want = {c: {**decided(json.loads(CustomerTier.record(s))),
                    "version": version_of(s.created_at, s.sequence)}
                for c, s in expected.states.items()}
        assert wait_for(lambda: {c: decided(v) for c, v in redis_view(server.url, prefix).items()}
                        == want), worker.log_text()[-3000:]
        with redis.Redis.from_url(server.url) as client:
            for tier in policy().tier_ids:
                members = {m.decode() for m in client.smembers(Keys(prefix).tier(tier))}
                assert members == {c for c, s in expected.states.items() if s.tier == tier}


# -- 4. workers joining and leaving ----------------------------------------------------------

@pytest.mark.stress
@pytest.mark.parametrize("guarantee", ["at_least_once", "exactly_once"])
def test_third_worker_joins_and_one_leaves_during_load(kafka_bootstrap: str, tmp_path: Path,
                                                       workers: list[Worker],
                                                       fault_row: FaultRow,
                                                       guarantee: str) -> None:
    """Two workers on six partitions; a third joins during the first part of the input, the
    first leaves (SIGTERM) during the second: two rebalances under load."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, partitions=6,
                                 processing_guarantee=guarantee)
    create_topics(settings)
    lines = simulated(customers=150, seed=91)
    fault_row.events_in = len(lines)
    parts = in_parts(lines, 3)
    first, _ = (start_worker(settings, tmp_path, name, workers) for name in ("w1", "w2"))
    pending = [during(settings, parts[0], lambda: start_worker(settings, tmp_path, "w3", workers)),
               during(settings, parts[1], first.stop)]
    produce(settings, parts[2])
    fault_row.note = f"join, then leave; input pending: {pending[0]}/{pending[1]}"
    expected = replayed(lines)
    verify(settings, expected, settle(settings, expected, timeout=240), fault_row, workers)
    assert consumer_group_members(settings) == 2
    assert first.process.poll() is not None and all(w.process.poll() is None
                                                    for w in workers[1:])
