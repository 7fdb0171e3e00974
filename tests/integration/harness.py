"""Running real `tierstream worker` processes against a real broker, and reading what they emit."""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import CoordinatorNotAvailableError
from prometheus_client.parser import text_string_to_metric_families

from models.events import parse_event
from models.outputs import structured
from models.state import CustomerState
from rules.compiled import CompiledPolicy
from rules.replay import Replay, event_order
from streams.cli.policy_diff import changelog_states
from streams.dev.simulate import Population, population_events
from streams.kafka import clients as kafka_clients
from streams.kafka import topics
from streams.settings import TABLE_NAME, Settings, Topics
from streams.view.redis_view import Keys, decode_hash

DEFAULT_POLICY = Path(__file__).resolve().parents[2] / "rules" / "policies" / "default.yaml"


def isolated_settings(bootstrap: str, data_dir: Path, **overrides: object) -> Settings:
    """Settings with topic and group names of their own, so tests never share state.

    A partition counts as idle (and follows the wall clock) after 6 s without an event: long
    enough that a worker busy with other partitions under load does not starve one into it,
    which the idle rule does not guard against yet (docs/streaming.md, "Known limit")."""
    tag = uuid.uuid4().hex[:8]
    names = Topics(**{name: f"{value}-{tag}" for name, value in Topics().model_dump().items()})
    values = {"bootstrap_servers": bootstrap, "app_id": f"tierstream-test-{tag}",
              "partitions": 4, "data_dir": data_dir, "tick_interval_s": 0.5,
              "idle_after_s": 6.0, "topics": names, **overrides}
    return Settings(**values)


def environment(settings: Settings, policy: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIERSTREAM_")}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
                "TIERSTREAM_APP_ID": settings.app_id, "TIERSTREAM_POLICY": str(policy),
                "TIERSTREAM_PARTITIONS": str(settings.partitions),
                "TIERSTREAM_REPLICATION": str(settings.replication),
                "TIERSTREAM_STORE": settings.store,
                "TIERSTREAM_TICK_INTERVAL_S": str(settings.tick_interval_s),
                "TIERSTREAM_IDLE_AFTER_S": str(settings.idle_after_s),
                "TIERSTREAM_LATENESS_S": str(settings.lateness_s),
                "TIERSTREAM_MAX_FUTURE_S": str(settings.max_future_s),
                "TIERSTREAM_PROCESSING_GUARANTEE": settings.processing_guarantee})
    for name, value in settings.topics.model_dump().items():
        env[f"TIERSTREAM_TOPIC_{name.upper()}"] = value
    return env


# what aiokafka logs at WARNING or ERROR each time a broker does not answer
CONNECTION_NOISE = ("Unable connect", "Failed fetch", "Connection lost", "Connection failed",
                    "KafkaTCPTransport", "Metadata refresh", "Cannot send",
                    "Marking the coordinator dead", "Heartbeat failed",
                    "Group Coordinator Request failed")


@dataclass
class Worker:
    """One `tierstream worker` process with its own data dir and log file."""

    settings: Settings
    policy: Path
    workdir: Path
    process: subprocess.Popen | None = None
    starts: int = 0
    logs: list[Path] = field(default_factory=list)
    web_port: int = field(default_factory=lambda: free_port())
    env_overrides: dict[str, str] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Worker:
        self.starts += 1
        log = self.workdir / f"worker-{self.starts}.log"
        self.logs.append(log)
        env = {**environment(self.settings, self.policy), **self.env_overrides}
        env["TIERSTREAM_DATA_DIR"] = str(self.workdir / "data")
        env["TIERSTREAM_WEB_PORT"] = str(self.web_port)
        with log.open("w") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "streams.cli", "worker", "--loglevel", "INFO"],
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
        return self

    def kill(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(timeout=10)

    def pause(self) -> None:
        """SIGSTOP: the worker answers nothing, its heartbeats included, as if frozen."""
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        assert self.process is not None
        os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.kill()

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def log_summary(self, last: int = 40) -> str:
        """Its warnings and errors (at most 60, without the clients' reports of brokers not
        answering) and the last `last` lines of its log."""
        lines = self.log_text().splitlines()
        alarms = [line for line in lines if ("WARNING" in line or "ERROR" in line)
                  and not any(noise in line for noise in CONNECTION_NOISE)]
        return "\n".join([f"exit status {self.process and self.process.poll()}", *alarms[-60:],
                          "-- last lines --", *lines[-last:]])


def new_worker(settings: Settings, tmp_path: Path, name: str, started: list[Worker],
               policy: Path = DEFAULT_POLICY, **env_overrides: str) -> Worker:
    """Start a worker in its own dir under tmp_path; `started` (the `workers` fixture) stops it."""
    workdir = tmp_path / name
    workdir.mkdir()
    worker = Worker(settings, policy, workdir, env_overrides=env_overrides)
    started.append(worker)
    return worker.start()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def http_get(url: str, token: str | None = None, timeout: float = 30.0) -> tuple[int, bytes]:
    """GET with retries while the worker's web server is starting."""
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            body = error.read()
            error.close()
            if error.code != 503 or time.monotonic() > deadline:
                return error.code, body
        except OSError:
            if time.monotonic() > deadline:
                raise
        time.sleep(0.5)


def http_post(url: str, body: object, token: str | None = None) -> tuple[int, bytes]:
    """POST `body` as JSON."""
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers={
        "Content-Type": "application/json",
        **({"Authorization": f"Bearer {token}"} if token else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, error.read()


def create_topics(settings: Settings) -> None:
    results = topics.create(settings)
    assert all(status in ("created", "exists") for _, status in results), results


def produce(settings: Settings, lines: list[bytes], topic: str | None = None) -> None:
    """Send raw event lines keyed by customer id (or by `bad-key` when there is none)."""
    produce_records(settings, [(_key(line), line) for line in lines], topic)


def produce_records(settings: Settings, records: list[tuple[bytes | None, bytes]],
                    topic: str | None = None) -> None:
    """Send (key, value) messages as given, in order."""
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)
    try:
        for key, value in records:
            producer.send(topic or settings.topics.orders, key=key, value=value)
        producer.flush(timeout=30)
    finally:
        producer.close(timeout=10)


def _key(line: bytes) -> bytes:
    try:
        return parse_event(line).customer_id.encode()
    except ValueError:
        return b"bad-key"


@dataclass
class Emitted:
    """Everything the workers wrote, read back from the output topics."""

    events: list[dict] = field(default_factory=list)
    dead_letters: list[tuple[bytes, dict[str, str]]] = field(default_factory=list)
    dead_letter_keys: list[bytes | None] = field(default_factory=list)  # of dead_letters
    tiers: dict[str, dict | None] = field(default_factory=dict)

    @property
    def ids(self) -> set[str]:
        return {e["id"] for e in self.events}


def collect(settings: Settings, until: callable, timeout: float = 90.0,
            quiet: float = 3.0, isolation_level: str = "read_committed") -> Emitted:
    """Read the output topics until `until(emitted)` holds and nothing new came for `quiet` s
    (committed records only, as consumers of exactly-once outputs read, unless told)."""
    names = settings.topics
    consumer = KafkaConsumer(names.tier_changes, names.churn_warnings, names.dead_letters,
                             names.customer_tiers, bootstrap_servers=settings.bootstrap_servers,
                             auto_offset_reset="earliest", enable_auto_commit=False,
                             group_id=None, consumer_timeout_ms=500,
                             isolation_level=isolation_level)
    emitted, deadline, last_new = Emitted(), time.monotonic() + timeout, time.monotonic()
    try:
        while time.monotonic() < deadline:
            for record in consumer:
                last_new = time.monotonic()
                if record.topic == names.dead_letters:
                    headers = {k: v.decode() for k, v in record.headers}
                    emitted.dead_letters.append((record.value, headers))
                    emitted.dead_letter_keys.append(record.key)
                elif record.topic == names.customer_tiers:
                    emitted.tiers[record.key.decode()] = \
                        None if record.value is None else json.loads(record.value)
                else:
                    emitted.events.append(json.loads(structured(record.value, record.headers)))
            if until(emitted) and time.monotonic() - last_new >= quiet:
                return emitted
        return emitted
    finally:
        consumer.close()


def reference(lines: list[bytes], policy: CompiledPolicy, as_of: int
              ) -> tuple[dict[str, CustomerState], list[dict]]:
    """What `tierstream replay --as-of` gives for the same lines: final states and outputs."""
    run = Replay(policy)
    outputs = []
    for event in sorted((parse_event(x) for x in lines if _valid(x)), key=event_order):
        outputs += run.feed(event)
    outputs += run.advance_to(as_of)
    return run.states, [json.loads(o.record()) for o in outputs]


def reference_in_arrival_order(lines: list[bytes], policy: CompiledPolicy, as_of: int
                               ) -> tuple[dict[str, CustomerState], list[dict]]:
    """What the engine gives when each customer's events come in the order of `lines`: an event
    older than its customer's clock is folded in at that clock (docs/engine.md), not at its own
    time as the sorted replay of `reference` has it. Equals `reference` for input in time order;
    it is what a worker gives whose time-driven work never runs ahead of a partition's late
    events (TIERSTREAM_LATENESS_S at least the disorder)."""
    by_customer: dict[str, list] = {}
    for event in (parse_event(x) for x in lines if _valid(x)):
        by_customer.setdefault(event.customer_id, []).append(event)
    states, outputs = {}, []
    for events in by_customer.values():
        run = Replay(policy)
        for event in events:
            outputs += run.feed(event)
        outputs += run.advance_to(as_of)
        states.update(run.states)
    return states, [json.loads(o.record()) for o in outputs]


def table_states(settings: Settings) -> dict[str, CustomerState]:
    """Every customer's state in the workers' table, read from its changelog topic."""
    consumer = KafkaConsumer(**kafka_clients.kafka_python_config(settings), group_id=None,
                             enable_auto_commit=False, isolation_level="read_committed")
    try:
        topic = f"{settings.app_id}-{TABLE_NAME}-changelog"
        ends = kafka_clients.assign_from_beginning(consumer, topic, settings.bootstrap_servers)
        latest = {r.key: r.value for r in kafka_clients.read_to_end(consumer, ends, 30.0)}
    finally:
        consumer.close()
    return {s.customer_id: s for s in changelog_states(latest.values())}


def simulated(customers: int, seed: int) -> list[bytes]:
    """A `tierstream simulate` population in 2021 (long settled by now): orders, refunds,
    cancellations and interactions, several currencies, in time order."""
    population = Population(customers, seed, datetime(2021, 1, 1, tzinfo=UTC), days=400)
    return [json.dumps(event).encode() for event in population_events(population)]


def history(customers: int, seed: int = 7) -> list[bytes]:
    """A deterministic purchase history in 2020-2021 (long settled by now), in time order."""
    rng = random.Random(seed)
    events = []
    for c in range(customers):
        at = datetime(2020, 1, 1, tzinfo=UTC) + timedelta(hours=rng.randrange(24 * 200))
        for n in range(rng.choice([1, 1, 2, 3, 5, 8])):
            at += timedelta(days=rng.randrange(1, 60), minutes=rng.randrange(600))
            events.append((at, {"type": "order_completed", "event_id": f"c{c}-o{n}",
                                "customer_id": f"c{c}", "occurred_at": at.isoformat(),
                                "order_id": f"c{c}-o{n}", "currency": "CNY",
                                "amount": str(rng.choice([80, 300, 1200, 4000, 9000]))}))
    events.sort(key=lambda pair: pair[0])
    return [json.dumps(e).encode() for _, e in events]


def _valid(line: bytes) -> bool:
    try:
        parse_event(line)
    except ValueError:
        return False
    return True


def metric_samples(worker: Worker, name: str) -> list[tuple[dict[str, str], float]]:
    """The samples named `name` (e.g. `tierstream_dead_letters_total`) on a worker's /metrics."""
    text = http_get(f"{worker.url}/metrics")[1].decode()
    return [(sample.labels, sample.value) for family in text_string_to_metric_families(text)
            for sample in family.samples if sample.name == name]


def metric_total(worker: Worker, name: str) -> float:
    return sum(value for _, value in metric_samples(worker, name))


def redis_view(url: str, prefix: str) -> dict[str, dict]:
    """Every customer hash of the Redis view under `prefix`, decoded."""
    keys = Keys(prefix)
    with redis.Redis.from_url(url) as client:
        found = {}
        for key in client.scan_iter(match=keys.customer("*")):
            customer = key.decode().removeprefix(keys.customer(""))
            found[customer] = decode_hash(customer, client.hgetall(key))
        return found


def wait_for(condition: Callable[[], bool], timeout: float = 120.0,
             interval: float = 0.5) -> bool:
    """Poll `condition` every `interval` s until it holds or `timeout` s passed; its last
    answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


def pending_input(settings: Settings) -> int:
    """Input messages past the workers' committed offsets: not yet known to be processed."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    consumer = KafkaConsumer(bootstrap_servers=settings.bootstrap_servers)
    try:
        committed = admin.list_group_offsets(settings.app_id).get(settings.app_id, {})
        ends = consumer.end_offsets([TopicPartition(topic, p) for topic in settings.topics.inputs
                                     for p in range(settings.partitions)])
    finally:
        consumer.close()
        admin.close()
    return sum(end - max(committed[tp].offset if tp in committed else 0, 0)
               for tp, end in ends.items())


def consumer_group_members(settings: Settings) -> int:
    """Members of the workers' group; 0 while its coordinator is not yet available (a broker
    just started)."""
    admin = KafkaAdminClient(bootstrap_servers=settings.bootstrap_servers)
    try:
        group = admin.describe_groups([settings.app_id])[settings.app_id]
        return len(group["members"])
    except CoordinatorNotAvailableError:
        return 0
    finally:
        admin.close()
