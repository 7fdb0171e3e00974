"""Relative metrics in the streaming runtime: population reports exchanged through Kafka.

When a partition's event time passes a refresh boundary T (a multiple of the policy's
`relative.refresh` since the epoch), the worker that owns it summarises the partition's
customers' base metric values at T in sketches (rules/sketches.py) and publishes a report to the
compacted population topic, keyed by partition. Each record also carries the partition's
previous report, so a restarted worker finds a complete population even while the partitions
straddle a boundary. Every worker reads the whole topic (`Feed`); a boundary is complete once
every partition has reported it, and its merged sketches become the population each of the
worker's partitions then moves to (engine.refresh, on the partition's next tick). No database is
shared: Kafka carries everything, and a worker needs only the topic to rebuild its view.
"""

from __future__ import annotations

import base64
import json
import logging
import threading
import time
from dataclasses import dataclass

from rules import sketches
from rules.relative import Population
from streams.kafka import clients as kafka_clients
from streams.settings import Settings

log = logging.getLogger("tierstream.population")
REPORTS_KEPT = 2


@dataclass(frozen=True)
class Report:
    """One partition's sketches of each base metric at `boundary`, over `customers` customers."""

    boundary: int
    customers: int
    sketches: dict[str, bytes]


def encode(partition: int, partitions: int, reports: list[Report]) -> bytes:
    """The population topic record of one partition: its latest reports, newest first."""
    return json.dumps({
        "partition": partition, "partitions": partitions,
        "reports": [{"boundary": r.boundary, "customers": r.customers,
                     "sketches": {b: base64.b64encode(s).decode() for b, s in r.sketches.items()}}
                    for r in reports[:REPORTS_KEPT]]}).encode()


def decode(raw: bytes) -> tuple[int, int, list[Report]]:
    """(partition, partitions, reports) of a record; ValueError if it is not one."""
    try:
        record = json.loads(raw)
        reports = [Report(int(r["boundary"]), int(r["customers"]),
                          {b: base64.b64decode(s, validate=True) for b, s in r["sketches"].items()})
                   for r in record["reports"]]
        return int(record["partition"]), int(record["partitions"]), reports
    except (ValueError, KeyError, TypeError, AttributeError) as error:
        raise ValueError(f"not a population report: {type(error).__name__}: {error}") from None


class Reports:
    """Every partition's latest reports and the complete populations they make. Written by the
    feed thread, read by the worker's event loop: all access holds one lock."""

    def __init__(self, partitions: int, bases: tuple[str, ...]) -> None:
        self.partitions, self.bases = partitions, bases
        self._lock = threading.Lock()
        self._by_partition: dict[int, list[Report]] = {}
        # the last two complete boundaries, oldest first, with the reports each was merged from
        self._complete: list[tuple[tuple[Report, ...], Population]] = []

    def add(self, raw: bytes) -> None:
        """Take one record; records of another partition count or other base metrics (a policy
        or topic change) are skipped with a warning, as nothing can merge with them."""
        partition, partitions, reports = decode(raw)
        if partitions != self.partitions or not 0 <= partition < partitions:
            log.warning("population report of partition %s of %s skipped: this worker has %s "
                        "partitions", partition, partitions, self.partitions)
            return
        reports = [r for r in reports if sorted(r.sketches) == sorted(self.bases)]
        with self._lock:
            self._by_partition[partition] = reports
            for report in reports:
                self._complete_at(report.boundary)

    def _complete_at(self, boundary: int) -> None:
        """Merge the boundary's reports once every partition has one; a partition that reports
        the latest boundary again (late events, see the worker) makes a new population."""
        latest = self._complete[-1] if self._complete else None
        if latest is not None and boundary < latest[1].taken_at:
            return
        found = tuple(next((r for r in self._by_partition.get(partition, ())
                            if r.boundary == boundary), None)
                      for partition in range(self.partitions))
        if None in found or (latest is not None and found == latest[0]):
            return
        merged = sketches.population(boundary, {
            base: [report.sketches[base] for report in found if report] for base in self.bases})
        kept = self._complete[:-1] if latest and latest[1].taken_at == boundary else \
            self._complete
        self._complete = [*kept, (found, merged)][-2:]
        log.info("population at %s complete: %s customers in %s partitions", boundary,
                 sum(r.customers for r in found if r), self.partitions)

    def latest(self) -> Population | None:
        with self._lock:
            return self._complete[-1][1] if self._complete else None

    def before(self, population: Population) -> Population | None:
        """The complete population of the boundary before `population`'s, if still known."""
        with self._lock:
            earlier = [p for _, p in self._complete if p.taken_at < population.taken_at]
            return earlier[-1] if earlier else None

    def of(self, partition: int) -> list[Report]:
        """The partition's latest reports as published, newest first."""
        with self._lock:
            return list(self._by_partition.get(partition, ()))

    def boundaries(self, partition: int) -> list[int]:
        return [report.boundary for report in self.of(partition)]

    def publish(self, partition: int, boundary: int, customers: int,
                sketches: dict[str, bytes], again: bool) -> bytes:
        """Take a report of one of this worker's partitions (replacing its latest with
        `again`) and return its record, for the worker to send to the population topic (the
        feed then reads the same record again: no change)."""
        published = self.of(partition)
        record = encode(partition, self.partitions, [Report(boundary, customers, sketches),
                                                     *(published[1:] if again else published)])
        self.add(record)
        log.info("partition %s reported its population at %s: %s customers", partition,
                 boundary, customers)
        return record


class Feed(threading.Thread):
    """Reads the whole population topic into `reports`: `load` up to its end (before the worker
    starts), then `start` follows it in the background for as long as the process lives."""

    def __init__(self, settings: Settings, reports: Reports) -> None:
        super().__init__(name="tierstream-population-feed", daemon=True)
        self.settings, self.reports = settings, reports
        self.consumer = kafka_clients.committed_reader(
            kafka_clients.kafka_python_config(settings), client_id=f"{settings.app_id}-population")

    def load(self) -> None:
        topic = self.settings.topics.population
        ends = kafka_clients.assign_from_beginning(self.consumer, topic,
                                                   self.settings.bootstrap_servers)
        for record in kafka_clients.read_to_end(self.consumer, ends, idle_timeout_s=60):
            self._take(record)

    def run(self) -> None:
        while True:
            try:
                polled = self.consumer.poll(timeout_ms=1000)
            except Exception as error:  # noqa: BLE001 - the feed must outlive broker trouble
                log.warning("population topic unreadable, retrying: %s", error)
                time.sleep(1.0)
                continue
            for records in polled.values():
                for record in records:
                    self._take(record)

    def _take(self, record: object) -> None:
        value = getattr(record, "value", None)
        if value is None:
            return
        try:
            self.reports.add(value)
        except ValueError as error:
            log.error("population topic offset %s: %s", getattr(record, "offset", "?"), error)
