"""Memory and time of `tierstream replay` and of one worker over a large generated history (not a
test: prints a table).

    python bench/scale_bench.py --customers 1000000 --events 10000000 --rows replay
    python bench/scale_bench.py --customers 1000000 --events 2000000 --rows worker

The input: `--events` order events of `--customers` customers (each event's customer drawn
uniformly), instants spread uniformly over 2024-2025, in time order, written once as JSONL.
`replay` runs `tierstream replay` on the file as a process (its outputs to /dev/null): wall
clock and peak RSS. `worker` produces the file to a local Apache Kafka broker (4 partitions) and
runs one `tierstream worker` (memory store, no Redis) until it has processed every event: its
rate, its peak RSS and its RSS at the end. Both use the shipped default policy.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import pipeline_bench  # noqa: E402

from streams.dev.local_kafka import LocalKafka  # noqa: E402
from tests.integration.harness import Worker, create_topics, isolated_settings  # noqa: E402

POLICY = ROOT / "rules" / "policies" / "default.yaml"
BEGIN, END = np.datetime64("2024-01-01T00:00:00", "s"), np.datetime64("2026-01-01T00:00:00", "s")
AMOUNTS = np.array([80, 300, 1200, 4000, 9000])
CHUNK = 1_000_000
console = Console(stderr=True)


def generate(path: Path, customers: int, events: int, seed: int) -> None:
    """`events` order events in time order, one JSON line each."""
    rng = np.random.default_rng(seed)
    seconds = np.sort(rng.integers(0, int((END - BEGIN).astype(int)), size=events))
    with path.open("w") as out:
        for start in range(0, events, CHUNK):
            at = np.datetime_as_string(BEGIN + seconds[start:start + CHUNK], unit="s")
            who = rng.integers(0, customers, size=len(at))
            amount = rng.choice(AMOUNTS, size=len(at))
            out.writelines(
                f'{{"type":"order_completed","event_id":"e{n}","customer_id":"c{c}",'
                f'"occurred_at":"{a}Z","order_id":"o{n}","currency":"CNY","amount":{m}}}\n'
                for n, a, c, m in zip(range(start, start + len(at)), at, who.tolist(),
                                      amount.tolist(), strict=True))


def replay(path: Path, events: int) -> list[str]:
    """`tierstream replay` as a process: events/s wall clock and its peak RSS."""
    began = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, "-m", "streams.cli", "replay", "--policy", str(POLICY), "--out",
         os.devnull, str(path)], cwd=ROOT, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - began
    summary = process.stderr.read() if process.stderr else ""
    if status:
        raise RuntimeError(f"replay failed:\n{summary[-3000:]}")
    return ["tierstream replay", f"{events / seconds:,.0f}", f"{seconds:,.0f}",
            f"{usage.ru_maxrss / 1024:,.0f}", "-", summary.strip().splitlines()[-1][:100]]


def lines_keyed(path: Path) -> Iterator[tuple[bytes, bytes]]:
    with path.open("rb") as lines:
        for line in lines:
            start = line.index(b'"customer_id":"') + 15
            yield line[start:line.index(b'"', start)], line.rstrip(b"\n")


def worker(path: Path, events: int, workdir: Path) -> list[str]:
    """One worker over the file produced to Kafka: events/s, peak and final RSS."""
    with LocalKafka(heap="1g") as kafka:
        settings = isolated_settings(kafka.bootstrap_servers, workdir / "data",
                                     idle_after_s=1e9, tick_interval_s=1.0)
        create_topics(settings)
        began = time.perf_counter()
        sent = pipeline_bench.produce(kafka.bootstrap_servers, settings.topics.orders,
                                      lines_keyed(path))
        console.log(f"produced {sent:,} events in {time.perf_counter() - began:.0f} s")
        (workdir / "w0").mkdir()
        process = Worker(settings, POLICY, workdir / "w0").start()
        try:
            pipeline_bench.until_ready(process)
            began, done, shown = time.perf_counter(), 0.0, 0.0
            while done < events:
                if process.process.poll() is not None:
                    raise RuntimeError(f"the worker exited:\n{process.log_text()[-3000:]}")
                time.sleep(2)
                done = pipeline_bench.events_processed(process)
                if time.perf_counter() - shown > 30:
                    shown = time.perf_counter()
                    console.log(f"{done:,.0f} events, RSS {rss(process.process.pid, 'VmRSS')}")
            seconds = time.perf_counter() - began
            peak, now = rss(process.process.pid, "VmHWM"), rss(process.process.pid, "VmRSS")
        finally:
            process.stop()
    return ["tierstream worker", f"{events / seconds:,.0f}", f"{seconds:,.0f}", peak, now,
            "memory store, no Redis"]


def rss(pid: int, field: str) -> str:
    """A memory figure of /proc/<pid>/status (VmRSS now, VmHWM the peak), in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return f"{int(line.split()[1]) / 1024:,.0f}"
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "),
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--rows", default="replay,worker", help="comma-separated: replay, worker")
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    rows = args.rows.split(",")
    if unknown := set(rows) - {"replay", "worker"}:
        parser.error(f"unknown rows {sorted(unknown)}")
    table = Table(title=f"{args.events:,} order events of {args.customers:,} customers, "
                        "2024-2025, default policy")
    for column in ("what", "events/s", "seconds", "peak RSS MiB", "RSS at end MiB", "note"):
        table.add_column(column, justify="left" if column in ("what", "note") else "right")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.jsonl"
        began = time.perf_counter()
        generate(path, args.customers, args.events, args.seed)
        console.log(f"generated {path.stat().st_size / 2**30:.1f} GiB in "
                    f"{time.perf_counter() - began:.0f} s")
        for row in rows:
            console.log(f"row: {row}")
            table.add_row(*(replay(path, args.events) if row == "replay"
                            else worker(path, args.events, Path(tmp))))
    Console().print(table)


if __name__ == "__main__":
    main()
