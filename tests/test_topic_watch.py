"""The topic watch of streams/worker/topic_watch.py and the stop watchdog of
streams/worker/shutdown.py, without a broker (tests/integration/test_faults_topics.py runs them
against one)."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
import time
from types import SimpleNamespace

from aiokafka.client import AIOKafkaClient

from streams.settings import Settings
from streams.worker import faust_fixes, shutdown, topic_watch
from streams.worker.metrics import Metrics
from streams.worker.topic_watch import LogLimit, Needed, TopicWatch, needed, problems

SETTINGS = Settings(partitions=6, app_id="app")


def test_needed_topics_are_those_of_topics_create_and_the_changelog() -> None:
    wanted = {topic.name: topic for topic in needed(SETTINGS)}
    assert set(wanted) == {"orders", "interactions", "tierstream-ticks", "tier-changes",
                           "churn-warnings", "customer-tiers", "dead-letters",
                           "tierstream-population", "app-customers-changelog"}
    assert wanted["tierstream-population"].partitions == 1
    assert wanted["app-customers-changelog"] == Needed("app-customers-changelog", 6, "changelog")
    assert wanted["orders"].role == "input" and wanted["tier-changes"].role == "output"


def test_problems_name_missing_topics_and_wrong_partition_counts() -> None:
    wanted = [Needed("a", 4, "input"), Needed("b", 4, "output"), Needed("c", 1, "internal")]
    found = {"a": (4, "id-a"), "c": (3, "id-c"), "other": (9, None)}
    assert problems(wanted, found) == {"b": "missing", "c": "has 3 partitions, needs 1"}
    assert problems(wanted, {"a": (4, None), "b": (4, None), "c": (1, None)}) == {}


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("aiokafka.cluster", logging.ERROR, __file__, 1, message, args, None)


def test_log_limit_lets_one_line_per_topic_and_interval_through_and_counts_the_rest() -> None:
    clock = _Clock()
    limit = LogLimit(r"Topic (\S+) not found in cluster metadata", 10.0, clock)
    lines = []
    for _ in range(1000):  # what aiokafka logged in a fraction of a second
        for topic in ("a", "b"):
            record = _record("Topic %s not found in cluster metadata", topic)
            if limit.filter(record):
                lines.append(record.getMessage())
        clock.now += 0.001
    assert lines == ["Topic a not found in cluster metadata",
                     "Topic b not found in cluster metadata"]
    clock.now += 10.0
    record = _record("Topic %s not found in cluster metadata", "a")
    assert limit.filter(record)
    assert record.getMessage() == \
        "Topic a not found in cluster metadata (999 more like it in the last 11 s not logged)"
    assert limit.filter(_record("something else about %s", "a"))


def test_log_limits_are_installed_on_aiokafkas_and_fausts_loggers() -> None:
    topic_watch.install_log_limits()
    for name, _ in topic_watch.REPEATED:
        assert any(isinstance(f, LogLimit) for f in logging.getLogger(name).filters), name


def test_a_metadata_refresh_asked_for_right_after_one_waits_for_the_retry_backoff() -> None:
    """aiokafka's sender asks for a refresh in a loop while a queued batch's topic is missing;
    each must not reach the broker at once (it made ~1,800 requests and log lines a second)."""
    faust_fixes.install_metadata_backoff()

    async def body() -> None:
        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=100)
        client.cluster._last_refresh_ms = time.time() * 1000  # refreshed just now
        waited = client.force_metadata_update()
        assert not client._md_update_waiter.done(), "the refresh must wait for the backoff"
        await asyncio.wait_for(asyncio.shield(client._md_update_waiter), timeout=10)
        assert client.force_metadata_update() is not None  # the same pending refresh
        waited.cancel()

        client = AIOKafkaClient(bootstrap_servers="127.0.0.1:9", retry_backoff_ms=100)
        client.cluster._last_refresh_ms = time.time() * 1000 - 1000  # a second ago
        client.force_metadata_update().cancel()
        assert client._md_update_waiter.done(), "an overdue refresh starts at once"

    asyncio.run(body())


class _App:
    """What TopicWatch uses of a faust app before the worker runs."""

    def __init__(self) -> None:
        self.producer = SimpleNamespace(_producer=None)
        self.on_partitions_revoked = SimpleNamespace(connect=lambda receiver: None)

    def timer(self, interval: float) -> object:
        return lambda function: function


def test_problems_show_in_the_gauge_and_refuse_lookups_while_the_changelog_is_missing() -> None:
    metrics = Metrics.create()
    watch = TopicWatch(SETTINGS, _App(), metrics)
    found = {topic.name: (topic.partitions, "id") for topic in needed(SETTINGS)}

    def gauge(topic: str) -> float:
        return metrics.registry.get_sample_value("tierstream_topic_unusable", {"topic": topic})

    watch.update(found)
    assert watch.problems == {} and gauge("tier-changes") == 0
    assert asyncio.run(watch.lookup_problem()) is None
    del found["tier-changes"], found["app-customers-changelog"]
    watch.update(found)
    assert watch.problems == {"tier-changes": "missing", "app-customers-changelog": "missing"}
    assert gauge("tier-changes") == 1 and gauge("orders") == 0
    assert "app-customers-changelog" in asyncio.run(watch.lookup_problem())


def test_the_watchdog_ends_a_process_that_does_not_stop_within_the_grace() -> None:
    code = "from streams.worker import shutdown; shutdown.arm(0.5); import time; time.sleep(120)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == shutdown.FORCED_EXIT_STATUS
    assert "did not stop within 0.5 s of the stop signal" in done.stderr
