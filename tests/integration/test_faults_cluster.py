"""Fault cases on a three-broker KRaft cluster (streams.dev.local_kafka.LocalKafkaCluster):
every topic replicated three times with min.insync.replicas 2, the topics created as `tierstream
topics create --replication 3` creates them, under both processing guarantees. Each case ends
as every fault case does (test_faults.verify: outputs, `customer-tiers`, table and lookups equal
the replay; under exactly-once no output seen twice by a read_committed consumer) and records
the time from the end of the fault until every output was emitted.

The cluster is shared by the module's cases (each has its own topics and group) and is whole
again (three brokers in sync) at the start of each.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.producer.future import FutureRecordMetadata

from models.events import parse_event
from streams.dev.local_kafka import BROKER_SESSION_TIMEOUT_MS, LocalKafka, LocalKafkaCluster
from streams.settings import Settings
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    Worker,
    collect,
    create_topics,
    isolated_settings,
    produce,
    simulated,
    wait_for,
)
from tests.integration.test_faults import in_parts, replayed, settle, start_worker, verify

pytestmark = pytest.mark.stress
GUARANTEES = ["at_least_once", "exactly_once"]
SESSION_TIMEOUT_S = BROKER_SESSION_TIMEOUT_MS / 1000


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafkaCluster]:
    with LocalKafkaCluster(workdir=tmp_path_factory.mktemp("cluster")) as started:
        yield started


@pytest.fixture
def whole(cluster: LocalKafkaCluster) -> LocalKafkaCluster:
    """The cluster with every broker running and every partition's replicas in sync."""
    for node in cluster.nodes:
        node.resume()
        if not node.running:
            node.restart()
    assert wait_for(lambda: not under_replicated(cluster), timeout=60), "cluster not whole"
    return cluster


def cluster_settings(cluster: LocalKafkaCluster, tmp_path: Path, guarantee: str) -> Settings:
    settings = isolated_settings(cluster.bootstrap_servers, tmp_path, replication=3,
                                 processing_guarantee=guarantee, idle_after_s=10.0)
    create_topics(settings)
    return settings


def admin(cluster: LocalKafkaCluster) -> KafkaAdminClient:
    return KafkaAdminClient(bootstrap_servers=cluster.bootstrap_servers,
                            request_timeout_ms=10_000)


def partitions(cluster: LocalKafkaCluster, topics: list[str]) -> list[dict]:
    client = admin(cluster)
    try:
        return [p for topic in client.describe_topics(topics) for p in topic["partitions"]]
    finally:
        client.close()


def under_replicated(cluster: LocalKafkaCluster) -> int:
    client = admin(cluster)
    try:
        names = client.list_topics()
        return sum(len(p["isr_nodes"]) < len(p["replica_nodes"])
                   for topic in client.describe_topics(names) for p in topic["partitions"])
    except Exception:  # noqa: BLE001 - a broker not answering yet: not whole
        return -1
    finally:
        client.close()


def busiest_leader(cluster: LocalKafkaCluster, settings: Settings) -> LocalKafka:
    """The broker leading the most partitions of the orders topic and the table's changelog."""
    leaders = Counter(p["leader_id"] for p in partitions(
        cluster, [settings.topics.orders, settings.changelog_topic]))
    return cluster.node(leaders.most_common(1)[0][0])


@contextlib.contextmanager
def flowing(settings: Settings, lines: list[bytes], seconds: float) -> Iterator[None]:
    """Produce `lines` evenly over `seconds` in a thread while the body runs (the producer
    retries through broker failures: acks=all, idempotent); at the end, wait for the rest.

    kafka-python's idempotent producer can fail for good when a broker dies under its producer
    id request ("Fatal Error handling request InitProducerIdRequest"): every send after that
    fails in its future, silently. Then a new producer sends again, in order, every line not
    known delivered (a line sent twice is a duplicate event, which changes nothing)."""
    errors: list[BaseException] = []

    def feed() -> None:
        def new() -> KafkaProducer:
            return KafkaProducer(bootstrap_servers=settings.bootstrap_servers, linger_ms=5)

        def send(line: bytes) -> None:
            sent.append((line, producer.send(
                settings.topics.orders, key=parse_event(line).customer_id.encode(), value=line)))

        def again() -> None:  # a new producer for every line not known delivered
            nonlocal producer, sent
            producer.close(timeout=0)
            undelivered = [line for line, future in sent if not future.succeeded()]
            producer, sent = new(), []
            for line in undelivered:
                send(line)

        producer, sent = new(), []
        try:
            step = seconds / max(len(lines), 1)
            began = time.monotonic()
            for i, line in enumerate(lines):
                time.sleep(max(0.0, began + i * step - time.monotonic()))
                if _failed(sent):
                    again()
                sent = [(x, f) for x, f in sent if not f.succeeded()]
                send(line)
            for _ in range(5):
                producer.flush(timeout=120)
                if not _failed(sent):
                    break
                again()
            else:
                raise AssertionError("the input feed could not deliver its lines in 5 tries")
        except BaseException as error:  # noqa: BLE001 - raised in the test's thread
            errors.append(error)
        finally:
            producer.close(timeout=10)

    thread = threading.Thread(target=feed, name="input-feed", daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join(timeout=seconds + 180)
    assert not thread.is_alive(), "the input feed hung"
    if errors:
        raise errors[0]


def _failed(sent: list[tuple[bytes, FutureRecordMetadata]]) -> bool:
    """Whether a send of the feed failed (in kafka-python a failed future is done)."""
    return any(future.failed() for _, future in sent)


def run_case(cluster: LocalKafkaCluster, tmp_path: Path, workers: list[Worker],
             row: FaultRow, guarantee: str, seed: int, flow_s: float,
             fault: Callable[[Settings], None]) -> None:
    """Input in three parts: the first gets the worker going, the second flows for `flow_s`
    while the fault runs (longer than the fault: a pause in the input longer than the idle time
    would move the partitions to the wall clock before the third part), the third follows once
    the fault is over; then the case is verified. Partitions count as idle after 10 s without
    an event (not 6 as elsewhere): leaders move within a few broker session timeouts."""
    settings = cluster_settings(cluster, tmp_path, guarantee)
    lines = simulated(customers=100, seed=seed)
    row.events_in = len(lines)
    parts = in_parts(lines, 3)
    start_worker(settings, tmp_path, "w1", workers)
    produce(settings, parts[0])
    collect(settings, until=lambda e: len(e.events) > 0, quiet=0.0, timeout=120)
    with flowing(settings, parts[1], flow_s):
        fault(settings)
    over = time.monotonic()
    produce(settings, parts[2])
    expected = replayed(lines)
    verify(settings, expected, settle(settings, expected, timeout=240, row=row, since=over),
           row, workers)


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_leader_of_input_and_changelog_killed(whole: LocalKafkaCluster, tmp_path: Path,
                                              workers: list[Worker], fault_row: FaultRow,
                                              guarantee: str) -> None:
    """The broker leading the most input and changelog partitions is SIGKILLed while events
    flow; the others take over its partitions; it comes back after the input is in."""
    killed: list[LocalKafka] = []

    def fault(settings: Settings) -> None:
        node = busiest_leader(whole, settings)
        node.kill()
        killed.append(node)

    run_case(whole, tmp_path, workers, fault_row, guarantee, 111, 8.0, fault)
    fault_row.note = f"broker {killed[0].node_id} SIGKILLed, back after the input"
    killed[0].restart()


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_rolling_restart_of_all_brokers(whole: LocalKafkaCluster, tmp_path: Path,
                                        workers: list[Worker], fault_row: FaultRow,
                                        guarantee: str) -> None:
    """Each broker in turn stopped (SIGTERM) and started again while events flow, the next
    only once every partition is back in sync, as an operator rolls a cluster."""
    def fault(settings: Settings) -> None:
        for node in whole.nodes:
            node.restart()
            assert wait_for(lambda: not under_replicated(whole), timeout=90, interval=0.2)

    run_case(whole, tmp_path, workers, fault_row, guarantee, 121, 40.0, fault)
    fault_row.note = "brokers 1, 2, 3 restarted in turn"


@pytest.mark.parametrize("guarantee", GUARANTEES)
def test_broker_cut_off_longer_than_its_session(whole: LocalKafkaCluster, tmp_path: Path,
                                                workers: list[Worker], fault_row: FaultRow,
                                                guarantee: str) -> None:
    """The busiest leader stopped (SIGSTOP: it answers nothing, as if partitioned away) for
    four times the broker session timeout (longer than the partitions' idle time), so the
    controller fences it and moves its
    leaders, then continued; it catches up and rejoins."""
    paused: list[LocalKafka] = []

    def fault(settings: Settings) -> None:
        node = busiest_leader(whole, settings)
        node.pause()
        paused.append(node)
        time.sleep(2 * SESSION_TIMEOUT_S)
        node.resume()

    run_case(whole, tmp_path, workers, fault_row, guarantee, 131, 12.0, fault)
    fault_row.note = f"broker {paused[0].node_id} stopped {2 * SESSION_TIMEOUT_S:.0f} s"


def test_topics_created_replicated_three_times(whole: LocalKafkaCluster, tmp_path: Path,
                                               workers: list[Worker]) -> None:
    """`topics create --replication 3` and the worker's changelog: three replicas, and
    min.insync.replicas 2 on each topic itself (not only as the cluster's default)."""
    settings = cluster_settings(whole, tmp_path, "at_least_once")
    start_worker(settings, tmp_path, "w1", workers)
    produce(settings, simulated(customers=5, seed=141))
    names = [*settings.topics.model_dump().values(), settings.changelog_topic]
    assert wait_for(lambda: len(partitions(whole, [settings.changelog_topic])) > 0)
    assert all(len(p["replica_nodes"]) == 3 for p in partitions(whole, names))
    client = admin(whole)
    try:
        described = client.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, name) for name in names])
    finally:
        client.close()
    for name in names:
        config = described["topic"][name]["min.insync.replicas"]
        assert (config["value"], config["config_source"]) == ("2", "DYNAMIC_TOPIC_CONFIG"), name
