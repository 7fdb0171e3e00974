"""Benchmark of the streaming pipeline beside the ceiling and the references of its own stack (not a
test: prints a table). Every row is measured in this run, on one broker, so the ratios hold on a
noisy machine.

    python bench/pipeline_bench.py [--customers N] [--recovery-customers N] [--timer-customers N]

Rows: the raw aiokafka consume + JSON decode ceiling; for reference, faust's per-message path,
which the worker does not take: a faust no-op agent (the worker's app settings and iteration, no
work) and a faust agent doing only the least I/O of a tier worker (one table write and one
message sent per event); `tierstream worker` end to end with one and with two
workers (events/s per worker, and the speed-up), and an estimate of the speed-up the machine
allows: its cores over the cores the one-worker row kept busy, broker and Redis included (they
share the machine); one worker's capacity for first orders of new customers (a burst sent at once)
and the p50/p99 event-to-output latency of such orders sent at half that capacity (broker append
time of the input to broker append time of its tier event, LogAppendTime on both topics); the pure
engine through replay of the same events; state bytes per customer in the table changelog;
changelog recovery time of a worker for many customers; and how fast the timers re-evaluate due
customers with no new events.

A local Apache Kafka broker is started from Maven jars (streams/dev/local_kafka.py) unless
KAFKA_BOOTSTRAP_SERVERS is set; a local redis-server serves the Redis view when one is installed
(the pipeline rows then include it). Results and the machine: docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import ConfigResource, ConfigResourceType, NewTopic
from prometheus_client.parser import text_string_to_metric_families
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.events import parse_event  # noqa: E402
from models.outputs import kind_of  # noqa: E402
from rules.replay import Replay, event_order  # noqa: E402
from streams import engine_build  # noqa: E402
from streams.dev.local_kafka import LocalKafka  # noqa: E402
from streams.kafka import clients as kafka_clients  # noqa: E402
from streams.policies import load_policy  # noqa: E402
from streams.settings import Settings, Topics  # noqa: E402
from tests.integration.harness import (  # noqa: E402
    Worker,
    create_topics,
    free_port,
    history,
    http_get,
)
from tests.redis_server import RedisServer  # noqa: E402

DEFAULT_POLICY = ROOT / "rules" / "policies" / "default.yaml"
TIMER_POLICY = Path(__file__).resolve().parent / "timer_policy.yaml"
PARTITIONS = 4
console = Console()


class Bench:
    """One broker, one input topic of generated history, and fresh apps measured against it."""

    def __init__(self, bootstrap: str, redis_url: str | None, workdir: Path) -> None:
        self.bootstrap, self.redis_url, self.workdir = bootstrap, redis_url, workdir
        self.tag = uuid.uuid4().hex[:6]
        self.orders = f"bench-orders-{self.tag}"
        self.rows: list[tuple[str, str, str]] = []

    def row(self, what: str, value: str, note: str = "") -> None:
        self.rows.append((what, value, note))
        console.print(f"[bold]{what}[/]: {value}  [dim]{note}[/]")

    def settings(self, name: str, **overrides: object) -> Settings:
        """A fresh app reading the shared input topic, with outputs and state of its own."""
        names = Topics(**{field: f"{value}-{self.tag}-{name}"
                          for field, value in Topics().model_dump().items()})
        names = names.model_copy(update={"orders": self.orders})
        values = {"bootstrap_servers": self.bootstrap, "app_id": f"bench-{self.tag}-{name}",
                  "partitions": PARTITIONS, "data_dir": self.workdir / name, "topics": names,
                  "tick_interval_s": 1.0, "idle_after_s": 5.0, **overrides}
        settings = Settings(**values)
        create_topics(settings)
        return settings

    def worker(self, settings: Settings, policy: Path, name: str) -> Worker:
        workdir = self.workdir / f"{settings.app_id}-{name}"
        workdir.mkdir(parents=True)
        env = {"TIERSTREAM_REDIS_URL": self.redis_url} if self.redis_url else {}
        return Worker(settings, policy, workdir, env_overrides=env)


# -- input ---------------------------------------------------------------------------------------

def produce(bootstrap: str, topic: str, records: Iterator[tuple[bytes, bytes]],
            rate: float | None = None, partition: Callable[[int], int] | None = None) -> int:
    """Send (key, value) records, at `rate` per second if given; the count sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=256 * 1024,
                             max_request_size=4 * 1024 * 1024)
    started, sent = time.perf_counter(), 0
    try:
        for sent, (key, value) in enumerate(records, 1):
            if rate is not None:
                delay = started + sent / rate - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
            producer.send(topic, key=key, value=value,
                          partition=None if partition is None else partition(sent))
        producer.flush()
    finally:
        producer.close()
    return sent


def keyed(lines: list[bytes]) -> Iterator[tuple[bytes, bytes]]:
    for line in lines:
        yield json.loads(line)["customer_id"].encode(), line


def log_append_time(bootstrap: str, *topic_names: str) -> None:
    """Timestamps set by the broker when it appends: latency from the broker's one clock."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, name,
                                            configs={"message.timestamp.type": "LogAppendTime"})
                             for name in topic_names])
    finally:
        admin.close()


def read_all(bootstrap: str, topic: str, timeout_s: float = 10.0) -> list:
    """Every record of `topic` from the beginning to its end now."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        ends = kafka_clients.assign_from_beginning(consumer, topic, bootstrap)
        return list(kafka_clients.read_to_end(consumer, ends, idle_timeout_s=timeout_s))
    finally:
        consumer.close()


# -- the ceiling and the references ---------------------------------------------------------------

def raw_aiokafka(bootstrap: str, topic: str, expected: int) -> float:
    """events/s of aiokafka getmany + json.loads over the whole topic, no other work."""
    from aiokafka import AIOKafkaConsumer

    async def consume() -> float:
        consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=None,
                                    auto_offset_reset="earliest", enable_auto_commit=False)
        await consumer.start()
        try:
            seen, first = 0, None
            while seen < expected:
                batches = await consumer.getmany(timeout_ms=1000, max_records=10_000)
                first = first or time.perf_counter()
                for records in batches.values():
                    for record in records:
                        json.loads(record.value)
                    seen += len(records)
            return expected / (time.perf_counter() - first)
        finally:
            await consumer.stop()

    return asyncio.run(consume())


NOOP_AGENT = """
import json, os, sys, time
import faust
from streams.worker import faust_fixes
faust_fixes.install()
bootstrap, topic = os.environ["BENCH_BOOTSTRAP"], os.environ["BENCH_TOPIC"]
datadir = os.environ["BENCH_DIR"]
expected = int(os.environ["BENCH_EXPECTED"])
app = faust.App(f"bench-noop-{os.getpid()}", broker=f"kafka://{bootstrap}", store="memory://",
                datadir=datadir, consumer_auto_offset_reset="earliest", web_enabled=False,
                web_port=int(os.environ["BENCH_WEB_PORT"]),
                processing_guarantee="at_least_once", key_serializer="json",
                value_serializer="json")
io = os.environ.get("BENCH_IO") == "1"
# declared in both modes, so that the two faust references differ only in the work per event
table = app.Table("bench-io", partitions=int(os.environ["BENCH_PARTITIONS"]))
out = app.topic(os.environ["BENCH_OUT"], key_serializer="raw", value_serializer="raw")
first, seen = None, 0

@app.agent(app.topic(topic, key_serializer="raw", value_serializer="raw"))
async def noop(stream):
    global first, seen
    async for event in stream.events():
        first = first or time.perf_counter()
        seen += 1
        if io:  # the least a tier worker does per event: a table write and one output sent
            table[event.key.decode()] = {"seen": seen}
            await out.send(key=event.key, value=event.value)
        if seen == expected:
            print(json.dumps({"rate": expected / (time.perf_counter() - first)}), flush=True)
            os._exit(0)

app.main()
"""


def faust_reference(bootstrap: str, topic: str, expected: int, workdir: Path, io: bool = False
                    ) -> float:
    """events/s of a faust agent with the worker's app settings that does nothing per event,
    or with `io` only a table write and one message sent per event (delivery not awaited)."""
    out = f"{topic}-io-out"
    if io:
        admin = KafkaAdminClient(bootstrap_servers=bootstrap)
        admin.create_topics([NewTopic(out, PARTITIONS, 1)])
        admin.close()
    env = {**os.environ, "BENCH_BOOTSTRAP": bootstrap, "BENCH_TOPIC": topic,
           "BENCH_EXPECTED": str(expected), "BENCH_DIR": str(workdir),
           "BENCH_PARTITIONS": str(PARTITIONS), "BENCH_IO": "1" if io else "0",
           "BENCH_OUT": out, "BENCH_WEB_PORT": str(free_port())}
    result = subprocess.run([sys.executable, "-c", NOOP_AGENT, "worker", "--loglevel", "warn"],
                            capture_output=True, text=True, timeout=900, cwd=ROOT, env=env)
    # faust redirects stdout into its log, so the answer can be on either stream
    found = re.search(r'\{"rate": [0-9.e+]+\}', result.stdout + result.stderr)
    if found is None:
        raise RuntimeError(f"faust no-op agent failed:\n{result.stderr[-3000:]}")
    return json.loads(found.group())["rate"]


# -- the worker ----------------------------------------------------------------------------------

def events_processed(worker: Worker) -> float:
    text = http_get(f"{worker.url}/metrics")[1].decode()
    return sum(sample.value for family in text_string_to_metric_families(text)
               if family.name == "tierstream_events" for sample in family.samples
               if sample.name == "tierstream_events_total")


def busy_cpu_seconds() -> float:
    """CPU seconds the whole machine has spent busy (user, system, interrupts) since boot."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq = map(int, fields[:7])
    return (user + nice + system + irq + softirq) / os.sysconf("SC_CLK_TCK")


def measured(counts: Callable[[], list[float]], expected: float, what: str,
             since: tuple[float, float] | None = None) -> tuple[float, float, float]:
    """events/s from the moment every counter in `counts()` is above zero (start-up and
    rebalances are over) until their sum reaches `expected`, the machine's busy cores over
    that time, broker and Redis included, and the events done before it. `since`
    (perf_counter, busy CPU seconds) is when the events began to be sent, for counters that go
    from zero to done in one step."""
    first, deadline = None, time.monotonic() + 1800
    while time.monotonic() < deadline:
        done = counts()
        now = time.perf_counter()
        if all(done) and first is None:
            first, first_done, first_busy = now, sum(done), busy_cpu_seconds()
            if since is not None and first_done >= expected:
                first, first_done, first_busy = since[0], 0, since[1]
        if sum(done) >= expected:
            seconds = max(now - first, 0.001)
            return ((expected - first_done) / seconds,
                    (busy_cpu_seconds() - first_busy) / seconds, first_done)
        time.sleep(0.2)
    raise RuntimeError(f"{what} did not process {expected:,.0f} events in time")


def pipeline(bench: Bench, workers: int, expected: int
             ) -> tuple[float, float, float, list[Worker]]:
    """events/s, busy cores and events read before every worker read (see `measured`) of
    `workers` tierstream workers over the input; the workers are left running."""
    # Partitions keep to event time: one that has read all its input does not move to the wall
    # clock (every customer's changes up to today, at once) while the others still read theirs.
    settings = bench.settings(f"pipeline{workers}", idle_after_s=1e9)
    running = [bench.worker(settings, DEFAULT_POLICY, f"w{n}").start() for n in range(workers)]
    rate, busy, before = measured(lambda: [events_processed(w) for w in running], expected,
                                  f"{workers} worker(s)")
    return rate, busy, before, running


def stop(workers: list[Worker]) -> None:
    for worker in workers:
        worker.stop()


def settle(bootstrap: str, settings: Settings, quiet_s: float) -> None:
    """Wait until the app's outputs stop growing for `quiet_s`: after a catch-up the partitions
    go idle, move to the wall clock and every customer's time-driven changes come due at once."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for topic in (
            settings.topics.tier_changes, settings.topics.churn_warnings)
            for p in range(PARTITIONS)]
        ends, since = None, time.monotonic()
        while time.monotonic() - since < quiet_s:
            time.sleep(1.0)
            now = consumer.end_offsets(partitions)
            if now != ends:
                ends, since = now, time.monotonic()
    finally:
        consumer.close()


def first_orders(prefix: str, count: int, rate: float | None = None
                 ) -> Iterator[tuple[bytes, bytes]]:
    """First orders of `count` new customers, placed now (spaced by `rate` per second if given):
    each one emits a `tier.assigned`, a `customer-tiers` record and a changelog record."""
    now = datetime.now(UTC)
    for n in range(count):
        customer = f"{prefix}-{n}"
        at = now + timedelta(seconds=n / rate) if rate else now
        yield customer.encode(), json.dumps({
            "type": "order_completed", "event_id": f"{customer}-o", "customer_id": customer,
            "occurred_at": at.isoformat(), "order_id": f"{customer}-o", "currency": "CNY",
            "amount": "300"}).encode()


def first_order_capacity(bench: Bench, worker: Worker, count: int) -> float:
    """events/s of a settled worker over a burst of `count` first orders sent at once: its
    capacity for the events the latency probe sends."""
    settle(bench.bootstrap, worker.settings, quiet_s=2 * worker.settings.idle_after_s + 2)
    before, began = events_processed(worker), (time.perf_counter(), busy_cpu_seconds())
    produce(bench.bootstrap, bench.orders, first_orders(f"cap-{bench.tag}", count))
    return measured(lambda: [events_processed(worker) - before], count, "the worker",
                    since=began)[0]


def latency(bench: Bench, worker: Worker, rate: float, seconds: float) -> tuple[float, float]:
    """p50 and p99 (ms) from an input's broker append time to its tier event's, for first
    orders of new customers sent at `rate` to a worker with nothing else to do."""
    settings = worker.settings
    settle(bench.bootstrap, settings, quiet_s=2 * settings.idle_after_s + 2)
    log_append_time(bench.bootstrap, bench.orders, settings.topics.tier_changes)
    before = {r.key for r in read_all(bench.bootstrap, settings.topics.tier_changes, 2.0)}
    prefix = f"lat-{bench.tag}"
    produce(bench.bootstrap, bench.orders, first_orders(prefix, int(rate * seconds), rate),
            rate=rate)
    sent = {r.key: r.timestamp for r in read_all(bench.bootstrap, bench.orders, 2.0)
            if r.key and r.key.startswith(f"{prefix}-".encode())}
    deadline, delays = time.monotonic() + 120, []
    while time.monotonic() < deadline:
        outputs = [r for r in read_all(bench.bootstrap, settings.topics.tier_changes, 2.0)
                   if r.key not in before and r.key in sent]
        delays = sorted(r.timestamp - sent[r.key] for r in outputs)
        if len(delays) >= len(sent):
            break
        time.sleep(1.0)
    if len(delays) < len(sent):
        raise RuntimeError(f"only {len(delays)} of {len(sent)} latency probes answered")
    return delays[len(delays) // 2], delays[int(len(delays) * 0.99)]


def state_bytes(bench: Bench, settings: Settings) -> tuple[float, list]:
    """Mean size of the latest changelog value per customer, and those records."""
    latest = {r.key: r for r in read_all(bench.bootstrap, settings.changelog_topic, 5.0)}
    records = [r for r in latest.values() if r.value is not None]
    return sum(len(r.value) for r in records) / len(records), records


def engine_rate(lines: list[bytes]) -> float:
    """events/s of the pure engine over the same events, parsed beforehand (replay's core)."""
    policy = load_policy(DEFAULT_POLICY)
    events = sorted((parse_event(line) for line in lines), key=event_order)
    replay = Replay(policy)
    started = time.perf_counter()
    for event in events:
        replay.feed(event)
    return len(events) / (time.perf_counter() - started)


def until_ready(worker: Worker, timeout_s: float = 1800) -> float:
    """Seconds from now until the worker answers /health with 200."""
    started = time.perf_counter()
    while http_get(f"{worker.url}/health", timeout=timeout_s)[0] != 200:
        if time.perf_counter() - started > timeout_s:
            raise RuntimeError("worker not ready in time")
        time.sleep(0.2)
    return time.perf_counter() - started


def recovery(bench: Bench, template: list, customers: int) -> tuple[float, float]:
    """Seconds from start to ready of a worker with an empty table, and of one whose table
    changelog holds `customers` customers (real states of the pipeline run, renamed)."""
    empty = bench.worker(bench.settings("empty"), DEFAULT_POLICY, "w0")
    empty.start()
    empty_s = until_ready(empty)
    empty.stop()
    settings = bench.settings("recovery")

    def states() -> Iterator[tuple[bytes, bytes]]:
        for n in range(customers):
            record = template[n % len(template)]
            stored = json.loads(record.value)
            customer = f"rec-{n}"
            stored["state"]["customer_id"] = customer
            stored["partition"] = n % PARTITIONS
            yield json.dumps(customer).encode(), json.dumps(stored).encode()

    admin = KafkaAdminClient(bootstrap_servers=bench.bootstrap)
    try:  # as the worker would create it, so its start finds it filled
        admin.create_topics([NewTopic(settings.changelog_topic, PARTITIONS, 1,
                                      topic_configs={"cleanup.policy": "compact"})])
    finally:
        admin.close()
    with console.status(f"writing {customers:,} customers to the changelog"):
        produce(bench.bootstrap, settings.changelog_topic, states(),
                partition=lambda n: (n - 1) % PARTITIONS)
    worker = bench.worker(settings, DEFAULT_POLICY, "w0").start()
    try:
        return empty_s, until_ready(worker)
    finally:
        worker.stop()


def timers(bench: Bench, customers: int) -> float:
    """Customers re-evaluated per second by the timers alone: `customers` each with one order
    that leaves the 30-day window while their partitions are idle, all due at once when the
    partitions follow the wall clock."""
    settings = bench.settings("timers", topics=Topics(**{
        field: f"{value}-{bench.tag}-timers" for field, value in Topics().model_dump().items()}))
    log_append_time(bench.bootstrap, settings.topics.tier_changes)
    start = datetime.now(UTC) - timedelta(days=30, seconds=90)

    def orders() -> Iterator[tuple[bytes, bytes]]:
        for n in range(customers):
            customer = f"due-{n}"
            at = start + timedelta(seconds=60 * n / customers)
            yield customer.encode(), json.dumps({
                "type": "order_completed", "event_id": f"{customer}-o", "customer_id": customer,
                "occurred_at": at.isoformat(), "order_id": f"{customer}-o", "currency": "CNY",
                "amount": "100"}).encode()

    produce(bench.bootstrap, settings.topics.orders, orders())
    worker = bench.worker(settings, TIMER_POLICY, "w0").start()
    try:
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            records = read_all(bench.bootstrap, settings.topics.tier_changes, 2.0)
            downgrades = [r.timestamp for r in records
                          if kind_of(json.loads(r.value)["type"]) == "tier.downgraded"]
            if len(downgrades) >= customers:
                span_s = (max(downgrades) - min(downgrades)) / 1000
                return customers / max(span_s, 0.001)
            time.sleep(2.0)
        raise RuntimeError("the timers did not downgrade every customer in time")
    finally:
        worker.stop()


# -- the run -------------------------------------------------------------------------------------

@contextlib.contextmanager
def services() -> Iterator[tuple[str, str | None]]:
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            with console.status("starting a local Apache Kafka broker"):
                # Kafka's default initial rebalance delay (the test broker has none): both
                # workers of the two-worker row join the group's first generation, so neither
                # reads alone before a rebalance splits the partitions it has half read.
                bootstrap = stack.enter_context(LocalKafka(heap="1g", extra_properties={
                    "group.initial.rebalance.delay.ms": "3000"})).bootstrap_servers
        redis_url = None
        if shutil.which("redis-server"):
            redis_url = stack.enter_context(RedisServer()).url
        yield bootstrap, redis_url


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--customers", type=int, default=20_000,
                        help="customers in the generated history, about 3.3 orders each")
    parser.add_argument("--capacity-orders", type=int, default=20_000,
                        help="first orders of new customers sent at once to measure the "
                             "worker's capacity for them")
    parser.add_argument("--latency-seconds", type=float, default=20.0,
                        help="how long first orders are sent at half that capacity for the "
                             "latency")
    parser.add_argument("--recovery-customers", type=int, default=1_000_000,
                        help="customers in the changelog a worker recovers; 0 skips the rows")
    parser.add_argument("--timer-customers", type=int, default=20_000,
                        help="customers due at once for the timer row; 0 skips it")
    args = parser.parse_args()
    engine_build.check()

    with services() as (bootstrap, redis_url), tempfile.TemporaryDirectory() as tmp:
        bench = Bench(bootstrap, redis_url, Path(tmp))
        lines = history(args.customers)
        n = len(lines)
        with console.status(f"producing {n:,} order events"):
            bench.settings("input")
            produce(bootstrap, bench.orders, keyed(lines))
        bench.row("input", f"{n:,} events", f"{args.customers:,} customers, {PARTITIONS} "
                  f"partitions, Redis view {'on' if redis_url else 'off'}")

        raw = raw_aiokafka(bootstrap, bench.orders, n)
        bench.row("raw aiokafka consume + json", f"{raw:,.0f} events/s", "ceiling")
        noop = faust_reference(bootstrap, bench.orders, n, Path(tmp) / "noop")
        bench.row("faust no-op agent", f"{noop:,.0f} events/s",
                  "reference: faust's per-message path, no work")
        io = faust_reference(bootstrap, bench.orders, n, Path(tmp) / "io", io=True)
        bench.row("faust agent: table write + 1 send", f"{io:,.0f} events/s",
                  "reference: faust's per-message path with the least I/O a tier worker does "
                  "per event")

        one, busy, _, running = pipeline(bench, 1, n)
        bench.row("tierstream, 1 worker", f"{one:,.0f} events/s",
                  f"{one / raw:.0%} of the raw consumer; {busy:.2f} cores busy")
        size, template = state_bytes(bench, running[0].settings)
        stop(running)
        # the same worker again, now following the wall clock when idle, as first orders of
        # today need: it catches up with today before they are sent
        running = [bench.worker(running[0].settings.model_copy(update={"idle_after_s": 5.0}),
                                DEFAULT_POLICY, "w0-now").start()]
        until_ready(running[0])  # restored; its partitions go idle and catch up, then settle
        capacity = first_order_capacity(bench, running[0], args.capacity_orders)
        bench.row("tierstream, 1 worker, first orders", f"{capacity:,.0f} events/s",
                  f"{args.capacity_orders:,} sent at once; each emits a tier event and "
                  "a customer-tiers, a changelog and a Redis record")
        p50, p99 = latency(bench, running[0], capacity / 2, args.latency_seconds)
        bench.row("event to output at half capacity", f"p50 {p50:,.0f} ms, p99 {p99:,.0f} ms",
                  f"{capacity / 2:,.0f} first orders/s; broker append times")
        stop(running)
        two, busy_two, alone, running = pipeline(bench, 2, n)
        stop(running)
        cpus = os.cpu_count() or 1
        bench.row("tierstream, 2 workers", f"{two / 2:,.0f} events/s per worker",
                  f"{two / one:.2f}x one worker (target 1.6x); {busy_two:.2f} cores busy; "
                  f"{alone / n:.0%} of the input read before both read")
        bench.row("speed-up this machine allows (estimate)", f"{cpus / busy:.2f}x",
                  f"{cpus} cores / {busy:.2f} kept busy by one worker's run (broker, Redis and "
                  "benchmark included), if all of it grew with the events")
        engine = engine_rate(lines)
        bench.row("pure engine (replay core)", f"{engine:,.0f} events/s",
                  "the same events, parsed beforehand")
        bench.row("state per customer", f"{size:,.0f} B", "changelog record (models/stored.py)")
        if args.timer_customers:
            rate = timers(bench, args.timer_customers)
            bench.row("due customers re-evaluated by timers", f"{rate:,.0f} customers/s",
                      f"{args.timer_customers:,} due at once, no new events")
        if args.recovery_customers:
            empty_s, full_s = recovery(bench, template, args.recovery_customers)
            bench.row("worker start to ready", f"{empty_s:,.1f} s, empty table",
                      "the broker's initial rebalance delay (3 s) included")
            per_s = args.recovery_customers / max(full_s - empty_s, 0.001)
            bench.row(f"changelog recovery, {args.recovery_customers:,} customers",
                      f"{full_s:,.1f} s to ready", f"{per_s:,.0f} customers/s")

    table = Table(title="tierstream pipeline benchmark (every row from this run)")
    for column in ("what", "result", "note"):
        table.add_column(column)
    for row in bench.rows:
        table.add_row(*row)
    console.print(table)
    console.print(f"{platform.python_implementation()} {platform.python_version()} on "
                  f"{platform.machine()}, {os.cpu_count()} cpus; {n:,} events; engine build: "
                  f"{engine_build.build()}")


if __name__ == "__main__":
    main()
