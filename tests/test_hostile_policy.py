"""Hostile policy files through the real command line, in a process capped at 1 GiB of address
space: `policy validate` and `worker --policy` refuse them with exit status 3 and a message naming
file and line, fast, never with a MemoryError or a traceback, and the worker before it opens any
connection (a listening socket stands in for Kafka and Redis and must see none)."""

from __future__ import annotations

import json
import os
import resource
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from rules.policy_file import MAX_POLICY_SIZE
from tests.test_policy_load import GOOD, billion_laughs

ROOT = Path(__file__).resolve().parents[1]
MEMORY = 1 << 30  # the unfixed loader needed 5.5 GB for the billion laughs
EXIT_POLICY = 3


def limited() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))


def tierstream(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "COLUMNS": "400", **env}
    return subprocess.run([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=environment,
                          capture_output=True, text=True, timeout=120, preexec_fn=limited)


HOSTILE = {
    "billion_laughs": (billion_laughs(), ":7: the policy has more than 10,000 YAML values"),
    "deep_yaml": ('name: t\nversion: "1"\nx: ' + "[" * 100_000 + "]" * 100_000 + "\n",
                  ":3: YAML nested more than 50 levels deep"),
    "deep_condition": (GOOD.replace("orders_365d >= 1", json.dumps(
        "(" * 5000 + "orders_365d >= 1" + ")" * 5000), 1),
        ":8: tiers[1].when: the condition is nested 51 levels deep at column 51; the nesting "
        "limit is 50"),
    "oversized": (GOOD + "#" * MAX_POLICY_SIZE, f": the policy file is "
                  f"{len(GOOD) + MAX_POLICY_SIZE:,} bytes, more than the {MAX_POLICY_SIZE:,} "
                  "allowed (1 MiB)"),
}


@pytest.fixture
def files(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    """Each hostile file, and the start of its error message (file and line)."""
    found = {}
    for name, (text, message) in HOSTILE.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        found[name] = (path, f"{path}{message}")
    return found


def refused(result: subprocess.CompletedProcess[str], *messages: str) -> None:
    assert result.returncode == EXIT_POLICY, result.stderr[-2000:]
    for message in messages:
        assert message in " ".join(result.stderr.split()), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "MemoryError" not in result.stderr


def test_policy_validate_refuses_each(files: dict[str, tuple[Path, str]]) -> None:
    result = tierstream("policy", "validate", *(str(path) for path, _ in files.values()))
    refused(result, *(f"invalid {message}" for _, message in files.values()))


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    """A socket that accepts nothing itself: a connection attempt stays queued for the test."""
    with socket.create_server(("127.0.0.1", 0), backlog=16) as server:
        server.setblocking(False)
        yield server


def connected(server: socket.socket) -> bool:
    try:
        server.accept()[0].close()
    except BlockingIOError:
        return False
    return True


def test_worker_refuses_it_before_connecting_to_anything(
        files: dict[str, tuple[Path, str]], listener: socket.socket) -> None:
    address = f"127.0.0.1:{listener.getsockname()[1]}"
    endpoints = {"KAFKA_BOOTSTRAP_SERVERS": address, "TIERSTREAM_REDIS_URL": f"redis://{address}"}
    laughs, laughs_message = files["billion_laughs"]
    refused(tierstream("worker", "--policy", str(laughs), **endpoints),
            f"invalid policy: {laughs_message}")
    deep, deep_message = files["deep_condition"]
    refused(tierstream("worker", **endpoints, TIERSTREAM_POLICY=str(deep)),
            f"invalid policy: {deep_message}")
    assert not connected(listener)
