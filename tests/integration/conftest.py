"""Integration tests: real Kafka and Redis, from KAFKA_BOOTSTRAP_SERVERS / REDIS_URL or started."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path

import pytest
import redis

from streams.dev.local_kafka import LocalKafka
from tests.integration.harness import Worker
from tests.redis_server import RedisServer

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, so mark only the ones under here.
    for item in items:
        if HERE in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka broker: $KAFKA_BOOTSTRAP_SERVERS, else a session LocalKafka."""
    external = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalKafka() as broker:
        yield broker.bootstrap_servers


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """URL of a Redis server: $REDIS_URL, else a session redis-server on a free port."""
    external = os.environ.get("REDIS_URL")
    if external:
        yield external
        return
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def new_prefix(redis_url: str) -> Iterator[Callable[[], str]]:
    """Key prefixes of the test's own in the shared Redis, their keys deleted afterwards."""
    names: list[str] = []

    def new() -> str:
        names.append(f"tierstream-test-{uuid.uuid4().hex[:8]}:v1")
        return names[-1]
    yield new
    with redis.Redis.from_url(redis_url) as client:
        for name in names:
            for key in client.scan_iter(match=f"{name}:*", count=1000):
                client.delete(key)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo
                              ) -> Iterator[None]:
    """A failed case's report ends with what its workers logged (CI keeps only the report)."""
    report = yield
    if report.failed and call.when == "call":
        for worker in item.funcargs.get("workers", []) if hasattr(item, "funcargs") else []:
            report.sections.append((f"worker {worker.workdir.name}", worker.log_summary()))
    return report


@pytest.fixture
def workers() -> Iterator[list[Worker]]:
    """Workers started by the test (harness.new_worker), stopped at its end."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.stop()


@dataclass
class FaultRow:
    """One line of the fault-injection table: what went in, what came out, what went wrong."""

    guarantee: str = ""                # the workers' processing guarantee
    events_in: int | None = None       # input messages produced (re-sends and malformed included)
    dead_letters: int | None = None    # distinct input messages dead-lettered
    outputs: int | None = None         # distinct output event ids
    lost: int | None = None            # replay's output ids the workers never emitted
    duplicate_ids: int | None = None   # outputs emitted more than once (always identical)
    result: str = "not run"
    seconds: float = 0.0               # of the test itself, without session fixtures
    recovered_s: float | None = None   # from the end of the fault to every output emitted
    note: str = ""                     # what the fault was, e.g. input pending at each kill


FAULT_ROWS: dict[str, FaultRow] = {}


@pytest.fixture
def fault_row(request: pytest.FixtureRequest) -> FaultRow:
    """The table row of this fault case; the test fills in its counts."""
    return FAULT_ROWS.setdefault(request.node.nodeid, FaultRow())


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    row = FAULT_ROWS.get(report.nodeid)
    if row is None:
        return
    if report.when == "call":
        row.seconds = report.duration
    if hasattr(report, "wasxfail"):
        row.result = "xfail" if report.skipped else "XPASS"
    elif report.failed:
        row.result = f"FAILED ({report.when})" if report.when != "call" else "FAILED"
    elif report.when == "call":
        row.result = report.outcome


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if not FAULT_ROWS:
        return
    names = [f.name for f in fields(FaultRow)]
    header = ["case", *(n.replace("_", " ") for n in names)]
    rows = [[nodeid.split("::", 1)[-1], *(_cell(getattr(row, n)) for n in names)]
            for nodeid, row in FAULT_ROWS.items()]
    widths = [max(len(line[i]) for line in [header, *rows]) for i in range(len(header))]
    left = {0, len(header) - 1}  # case and note; the counts are right-aligned
    terminalreporter.write_sep("=", "fault-injection cases")
    for line in [header, *rows]:
        terminalreporter.write_line("  ".join(
            cell.ljust(width) if i in left else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(line, widths, strict=True))).rstrip())


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)
