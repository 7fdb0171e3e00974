"""`tierstream simulate`: the synthetic stream paced, stamped and sent to Kafka or a JSONL file."""

from __future__ import annotations

import contextlib
import itertools
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import BinaryIO, Protocol

from rich.console import Console
from rich.table import Table

from models.instants import MICROS_PER_DAY, from_micros, to_micros
from streams.cli import replay_job
from streams.dev.simulate import Population, Record, population_events, to_record, with_noise
from streams.settings import Settings

HELP = """\
Simulate an e-commerce population: big spenders, regulars, occasional and one-time
buyers and customers drifting away, with refunds, cancellations, complaints (as
interactions), visits, surveys and seasonality (a winter peak, a Singles' Day bump).

Orders go to the orders topic and interactions to the interactions topic, keyed by
customer id (TIERSTREAM_* and KAFKA_BOOTSTRAP_SERVERS; run `tierstream topics create`
first), or to a JSONL file with --out. Each customer's events are in event-time order.
The same --seed, --customers, --start and --days give the same events. A summary goes
to stderr; Ctrl-C stops early, flushes what was sent and prints it.

Time: by default the events span --days of event time ending at today's UTC midnight
and are sent as fast as possible; --rate only slows the sending down. With --live each
event is stamped with the wall-clock time it is sent instead: the simulated history is
compressed into the run (the gaps between a customer's orders become gaps between
sends), which suits feeding running workers.

examples:
  tierstream simulate --out events.jsonl && tierstream replay events.jsonl
  tierstream simulate --customers 2000 --malformed 0.01 --duplicates 0.02
  tierstream simulate --live --rate 50
"""
MAX_NOISE = 0.5


def population(customers: int, seed: int, start: int | None, days: float,
               now: datetime) -> Population:
    """The population asked for; without a start, the span ends at `now`'s UTC midnight."""
    if customers <= 0 or days <= 0:
        raise ValueError(f"--customers and --days must be more than 0 (got {customers}, {days})")
    if start is None:
        midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return Population(customers, seed, midnight - timedelta(days=days), days)
    return Population(customers, seed, from_micros(start), days)


def check_noise(malformed: float, duplicates: float) -> None:
    for name, share in (("--malformed", malformed), ("--duplicates", duplicates)):
        if not 0.0 <= share <= MAX_NOISE:
            raise ValueError(f"{name} {share} must be a fraction from 0 to {MAX_NOISE}")


@contextlib.contextmanager
def open_sink(out: str | None, settings: Callable[[], Settings] = Settings
              ) -> Iterator[tuple[Sink, str]]:
    """A JSONL file (`-`: stdout) or, without `out`, Kafka; with a name for the summary."""
    if out is None:
        chosen = settings()
        yield KafkaSink(chosen), chosen.bootstrap_servers
    elif out == "-":
        yield FileSink(sys.stdout.buffer), "stdout"
    else:
        with open(out, "wb") as file:
            yield FileSink(file), out


class Sink(Protocol):
    def send(self, record: Record) -> None: ...
    def close(self) -> None: ...


class FileSink:
    """One value per line; the topic is not kept (replay reads every event type from one file)."""

    def __init__(self, out: BinaryIO) -> None:
        self.out = out

    def send(self, record: Record) -> None:
        self.out.write(record.value + b"\n")

    def close(self) -> None:
        self.out.flush()


class KafkaSink:
    """Orders and interactions to their topics, keyed by customer id; counts failed sends."""

    def __init__(self, settings: Settings) -> None:
        from kafka import KafkaProducer

        from streams.kafka import clients as kafka_clients
        with kafka_clients.connecting(settings):
            self.producer = KafkaProducer(client_id=f"{settings.app_id}-simulate", linger_ms=20,
                                          **kafka_clients.kafka_python_config(settings))
        self.topics = {"orders": settings.topics.orders,
                       "interactions": settings.topics.interactions}
        self.failed = 0

    def send(self, record: Record) -> None:
        future = self.producer.send(self.topics[record.topic], key=record.key, value=record.value)
        future.add_errback(self._count_failure)

    def _count_failure(self, error: Exception) -> None:
        self.failed += 1

    def close(self) -> None:
        self.producer.flush(timeout=60)
        self.producer.close(timeout=10)


@dataclass
class Summary:
    """What a simulation sent, for the closing table."""

    kinds: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    interrupted: bool = False
    failed: int = 0

    @property
    def sent(self) -> int:
        return sum(self.kinds.values())


def records(population: Population, malformed: float, duplicates: float, live: bool,
            limit: int | None = None,
            clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Iterator[Record]:
    """The stream, at most `limit` records; in live mode each event is stamped with the clock
    when it is made."""
    events: Iterable[dict] = population_events(population)
    if live:
        events = ({**event, "occurred_at": clock().isoformat()} for event in events)
    noise = random.Random(f"{population.seed}:noise")
    return itertools.islice(with_noise(map(to_record, events), malformed, duplicates, noise),
                            limit)


def paced(items: Iterable[Record], rate: float | None,
          clock: Callable[[], float] = time.monotonic,
          sleep: Callable[[float], None] = time.sleep) -> Iterator[Record]:
    """At most `rate` items per second on average (None or 0: no limit). It waits before
    taking the next item, so an item made on demand (a live event's timestamp) is made at its
    send time; the price is one wait of 1/rate at the end, to find that nothing is left."""
    iterator, started = iter(items), clock()
    for number in itertools.count():
        if rate:
            delay = started + number / rate - clock()
            if delay > 0:
                sleep(delay)
        item = next(iterator, None)
        if item is None:
            return
        yield item


def run(stream: Iterable[Record], sink: Sink, population: Population, live: bool,
        err: Console) -> Summary:
    """Send every record; Ctrl-C stops early. The sink is always flushed and closed."""
    summary, started = Summary(), time.perf_counter()
    start = to_micros(population.start)
    with replay_job.progress_bar(err) as progress:
        # a live run has no simulated span to measure progress by, so it counts records
        task = progress.add_task("simulating", total=None if live else population.days)
        try:
            for record in stream:
                sink.send(record)
                summary.kinds[record.kind] += 1
                if summary.sent % 500 == 0:
                    done = summary.sent if live else (record.at - start) / MICROS_PER_DAY
                    progress.update(task, completed=done)
        except KeyboardInterrupt:
            summary.interrupted = True
        finally:
            sink.close()
    summary.failed = getattr(sink, "failed", 0)
    summary.seconds = time.perf_counter() - started
    return summary


def summary_table(summary: Summary, destination: str) -> Table:
    title = f"simulated to {destination}" + (" (interrupted)" if summary.interrupted else "")
    table = Table(title=title, show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    valid = {k: n for k, n in summary.kinds.items()
             if not k.startswith("malformed/") and k != "duplicate"}
    for kind, count in sorted(valid.items()):
        table.add_row(kind, str(count))
    if table.rows:
        table.rows[-1].end_section = True
    malformed = {k.removeprefix("malformed/"): n for k, n in summary.kinds.items()
                 if k.startswith("malformed/")}
    detail = ", ".join(f"{k} {n}" for k, n in sorted(malformed.items()))
    table.add_row("malformed", f"{sum(malformed.values())}" + (f" ({detail})" if detail else ""))
    table.add_row("duplicates", str(summary.kinds["duplicate"]))
    if summary.failed:
        table.add_row("[red]failed sends[/]", str(summary.failed))
    rate = summary.sent / summary.seconds if summary.seconds else 0.0
    table.add_row("records sent", str(summary.sent))
    table.add_row("time", f"{summary.seconds:.2f} s ({rate:,.0f} records/s)")
    return table
