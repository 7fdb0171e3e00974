"""While a worker runs: every topic it needs is there, with its partition count, or it says so.

`tierstream worker` checks the topics once at start (streams/kafka/topics.py). A topic deleted later
used to stall the worker silently: a send to a missing topic waits in aiokafka for its metadata
(up to faust's producer request timeout, 20 minutes by default) and an output already queued
waits for delivery, so the stream stopped while `/health` said 200; aiokafka's producer asked
the broker for metadata in a tight loop and logged "Topic ... not found in cluster metadata" for
each answer (megabytes a minute); and once the producer tracked the missing topic, its metadata
no longer covered the table's changelog, so every lookup failed with a TypeError in faust's
`key_partition`.

Every CHECK_INTERVAL_S the watch describes the topics (an admin client, in a thread) and:

- reports each topic the worker needs (the eight of `tierstream topics create` and the table's
  changelog) that is missing or has another partition count, in `/health` (503, naming it), in
  the gauge `tierstream_topic_unusable{topic}` and in one log line per check;
- keeps aiokafka's repeated warnings about a missing topic to one line per topic and interval
  (LogLimit), with the count of the lines left out, and makes aiokafka wait its retry backoff
  (100 ms) between metadata requests (faust_fixes.install: its sender asked again as soon
  as an answer came, ~1,800 times a second, half a core);
- keeps the producer's metadata covering every topic the worker writes to, so lookups and
  queued outputs never depend on which topics were sent to last;
- picks up an input topic deleted and recreated: the consumer dropped it from the group's
  subscription when it disappeared and would notice it back only at its next metadata refresh
  (up to 5 minutes), so the watch makes the consumer refresh at once; the group rebalances and
  the new topic is read from its start (it has no committed offsets). If the topic id changed
  while the consumer kept the topic assigned (no rebalance since the last check: it never saw
  the topic gone), its read offsets belong to the old topic, so the worker stops (request_stop)
  and its restart reads the new topic;

Processing itself is left as it is: while an output topic is missing, the batch with an output
for it waits in its delivery, nothing is fetched or committed past it, and it goes on once the
topic is back (`tierstream topics create` recreates it); no input is skipped. Outputs waiting
longer than the producer request timeout fail the batch, which stops the worker (exit status
1, streams/worker/runtime.py); its restart processes the batch again.
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from kafka.errors import KafkaError

from models.errors import ConnectError
from streams.kafka import clients as kafka_clients
from streams.kafka import topics
from streams.settings import Settings
from streams.worker import faust_fixes, shutdown
from streams.worker.metrics import Metrics

log = logging.getLogger("tierstream.topics")
CHECK_INTERVAL_S = 10.0
LOOKUP_METADATA_WAIT_S = 5.0

# Log lines repeated per message or per metadata answer while a topic is missing: at most one
# per topic and interval goes through (logger name, pattern whose first group is the topic).
REPEATED = (
    ("aiokafka.cluster", r"Topic (\S+) not found in cluster metadata"),
    ("aiokafka.cluster", r"Topic (\S+) is not available during auto-create"),
    ("aiokafka.cluster", r"Error fetching metadata for topic (\S+):"),
    ("aiokafka.producer.sender",
     r"Got error produce response on topic-partition TopicPartition\(topic='([^']+)'"),
    ("faust.topics", r"_on_published error for message topic (\S+) "),
    # faust's producer buffer (table writes) waiting for a missing changelog: 10 pairs a second
    ("faust.transport.producer", r"(producer buffer full) size"),
    ("faust.transport.producer", r"(producer flush took) "),
)


@dataclass(frozen=True)
class Needed:
    """A topic the worker needs, with its partition count and what it is for."""

    name: str
    partitions: int
    role: str


def needed(settings: Settings) -> list[Needed]:
    """The topics of `tierstream topics create` and the table's changelog (faust creates it)."""
    return [*(Needed(spec.name, spec.partitions, spec.role.split(":")[0])
              for spec in topics.specs(settings)),
            Needed(settings.changelog_topic, settings.partitions, "changelog")]


def problems(wanted: Iterable[Needed], found: dict[str, tuple[int, str | None]]
             ) -> dict[str, str]:
    """What is wrong with each needed topic: missing, or another partition count."""
    wrong = {}
    for topic in wanted:
        have = found.get(topic.name)
        if have is None:
            wrong[topic.name] = "missing"
        elif have[0] != topic.partitions:
            wrong[topic.name] = f"has {have[0]} partitions, needs {topic.partitions}"
    return wrong


class LogLimit(logging.Filter):
    """Lets through the first line about a topic, then none for `interval` seconds; the next one
    after that says how many were left out."""

    def __init__(self, pattern: str, interval: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.pattern, self.interval, self.clock = re.compile(pattern), interval, clock
        self.seen: dict[str, tuple[float, int]] = {}  # topic -> (last let through, left out)
        self._lock = threading.Lock()  # the consumer logs from a thread of its own

    def filter(self, record: logging.LogRecord) -> bool:
        match = self.pattern.match(record.getMessage())
        if match is None:
            return True
        now = self.clock()
        with self._lock:
            last, left_out = self.seen.get(match.group(1), (None, 0))
            if last is not None and now - last < self.interval:
                self.seen[match.group(1)] = (last, left_out + 1)
                return False
            self.seen[match.group(1)] = (now, 0)
        if left_out:
            record.msg = (f"{record.getMessage()} ({left_out} more like it in the last "
                          f"{now - last:.0f} s not logged)")
            record.args = ()
        return True


_installed: list[tuple[logging.Logger, LogLimit]] = []


def install_log_limits(interval: float = CHECK_INTERVAL_S) -> None:
    """Put a LogLimit on each logger of REPEATED (once per process)."""
    if _installed:
        return
    for name, pattern in REPEATED:
        limit = LogLimit(pattern, interval)
        logging.getLogger(name).addFilter(limit)
        _installed.append((logging.getLogger(name), limit))


class TopicWatch:
    """The periodic topic check of one worker (see the module's docstring)."""

    def __init__(self, settings: Settings, app: Any, metrics: Metrics,
                 interval: float = CHECK_INTERVAL_S) -> None:
        self.settings, self.app, self.metrics = settings, app, metrics
        self.needed = needed(settings)
        self.inputs = (*settings.topics.inputs, settings.topics.ticks)
        self.problems: dict[str, str] = {}  # what /health reports: topic -> what is wrong
        self.ids: dict[str, str | None] = {}  # last topic id seen of each input topic
        self._rebalanced = False  # partitions revoked since the last check
        self._admin: Any = None
        for topic in self.needed:
            metrics.topic_unusable.labels(topic.name).set(0)
        install_log_limits(interval)
        app.timer(interval=interval)(self.check)
        app.on_partitions_revoked.connect(self._revoked)

    async def _revoked(self, sender: Any, revoked: set, **_: Any) -> None:
        self._rebalanced = True

    async def check(self) -> None:
        try:
            found = await in_thread(self._describe)
        except ConnectError as error:  # the broker is away: nothing to say about the topics
            log.warning("cannot check the topics: %s", error)
            return
        try:
            self.update(found)
            await self._pick_up(found)
            self._track(found)
        except Exception:  # the watch must go on (a bug here must not stop processing)
            log.exception("topic check failed")

    def update(self, found: dict[str, tuple[int, str | None]]) -> None:
        """Report the topics' problems: gauge, /health, one log line per check."""
        wrong = problems(self.needed, found)
        for topic in self.needed:
            self.metrics.topic_unusable.labels(topic.name).set(1 if topic.name in wrong else 0)
        if wrong:
            log.error("topics not usable: %s. /health answers 503 until they are back "
                      "(`tierstream topics create` recreates them); a batch with an output "
                      "for a missing topic waits, and nothing past it is committed",
                      "; ".join(f"{self._role(name)} {name} {problem}"
                                for name, problem in sorted(wrong.items())))
        elif self.problems:
            log.warning("topics usable again: %s", ", ".join(sorted(self.problems)))
        self.problems = wrong

    def _role(self, name: str) -> str:
        return next(topic.role for topic in self.needed if topic.name == name)

    async def _pick_up(self, found: dict[str, tuple[int, str | None]]) -> None:
        """Make the consumer read an input topic that was deleted and recreated."""
        rebalanced, self._rebalanced = self._rebalanced, False
        for name in self.inputs:
            old, new = self.ids.get(name), found.get(name, (0, None))[1]
            if new is None:
                continue  # missing (reported), or a broker without topic ids
            self.ids[name] = new
            dropped = self._dropped(name)
            if old is not None and old != new:
                if not (dropped or rebalanced):
                    shutdown.request_stop(
                        f"input topic {name} was deleted and recreated (topic id {new}, was "
                        f"{old}) without the consumer noticing: its read offsets belong to the "
                        f"old topic; the restart reads the new one from its committed offsets")
                    continue
                log.warning("input topic %s was deleted and recreated (topic id %s, was %s): "
                            "reading the new topic from its start", name, new, old)
            if dropped and name not in self.problems:
                await self._refresh_consumer(name)

    def _dropped(self, name: str) -> bool:
        """Whether this worker reads partitions of the other inputs but none of `name`."""
        try:
            assignment = self.app.consumer.assignment()
        except Exception:  # noqa: BLE001 - not started yet: nothing to tell
            return False
        topics_read = {tp.topic for tp in assignment}
        return name not in topics_read and any(t in topics_read for t in self.inputs)

    async def _refresh_consumer(self, name: str) -> None:
        """Have the consumer (in its own thread) fetch metadata now: a topic back in it makes
        the group rebalance and assign it."""
        log.warning("input topic %s is there but not read by this worker: refreshing the "
                    "consumer's metadata so that the group assigns it", name)
        await asyncio.wait_for(faust_fixes.refresh_consumer_metadata(self.app), timeout=30)

    def _track(self, found: dict[str, tuple[int, str | None]]) -> None:
        """Make the producer's metadata cover every topic the worker writes to. aiokafka fetches
        metadata of all topics until the first send that waits for a topic's metadata, and from
        then on only of the topics sent to since: the changelog (which lookups need) and topics
        with outputs still queued would drop out of it."""
        producer = self._producer()
        if producer is None:
            return
        for topic in self.needed:
            if topic.name in found and topic.role != "input":
                producer.client.add_topic(topic.name)

    def _producer(self) -> Any:
        return faust_fixes.started_producer(self.app)

    async def lookup_problem(self) -> str | None:
        """Why a lookup cannot be answered now (None: it can): the changelog decides which
        worker owns a customer."""
        changelog = self.settings.changelog_topic
        if changelog in self.problems:
            return (f"topic {changelog} (the table's changelog) is {self.problems[changelog]}: "
                    f"lookups are answered again once it is back")
        producer = self._producer()
        if producer is None or faust_fixes.has_metadata(producer, changelog):
            return None
        try:  # metadata not fetched yet (or the changelog just went): fetch it
            await asyncio.wait_for(producer.client.add_topic(changelog),
                                   timeout=LOOKUP_METADATA_WAIT_S)
        except (TimeoutError, KafkaError):
            pass
        if not faust_fixes.has_metadata(producer, changelog):
            return f"no metadata for topic {changelog} (the table's changelog): is it missing?"
        return None

    def _describe(self) -> dict[str, tuple[int, str | None]]:
        """Partition count and topic id of every topic of the cluster (blocking)."""
        try:
            if self._admin is None:
                self._admin = kafka_clients.admin(self.settings)
            described = topics.existing(self._admin)
        except ConnectError:
            if self._admin is not None:
                self._admin.close()
            self._admin = None
            raise
        return {name: (len(d["partitions"]), d.get("topic_id"))
                for name, d in described.items()}


async def in_thread(call: Callable[[], Any]) -> Any:
    """`call()` in a daemon thread of its own: a check blocked on an unreachable broker never
    holds up the process's exit (asyncio.to_thread's pool threads are joined at exit)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def settle(result: Any, error: BaseException | None) -> None:
        if done.done():
            return
        if error is not None:
            done.set_exception(error)
        else:
            done.set_result(result)

    def run() -> None:
        try:
            result, error = call(), None
        except BaseException as failed:  # noqa: BLE001 - handed to the awaiting task
            result, error = None, failed
        try:
            loop.call_soon_threadsafe(settle, result, error)
        except RuntimeError:  # the loop is closed: nobody waits any more
            pass

    threading.Thread(target=run, name="tierstream-topic-check", daemon=True).start()
    return await done
