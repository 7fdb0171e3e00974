"""`tierstream replay`'s guards: admission, the memory it sorts in, progress lines off a
terminal."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.progress import Progress

from streams.cli import replay_job
from streams.cli.files import Line
from streams.cli.replay_job import (
    MEMORY_PER_LINE,
    MIN_RUN,
    LineProgress,
    Memory,
    available_memory,
    format_size,
    parse_size,
    run_size,
)
from streams.policies import load_policy
from tests.builders import day, order, raw

GIB = 1 << 30


def test_replay_admits_events_as_a_worker_does() -> None:
    # dated after the wall clock plus the tolerance: rejected, and dead-lettered with its line
    events = [order("c1", day(1), "10.00"), order("c1", day(3), "10.00"),
              order("c2", day(1), "10.00", currency="ZZZ")]
    records = iter([(Line("events.jsonl", n, raw(e)), e) for n, e in enumerate(events, 1)])
    sinks = replay_job.Sinks(out=io.StringIO(), dead_letters=io.StringIO())
    summary = replay_job.run(records, load_policy("default"), sinks, None,
                             Progress(disable=True), wall=day(2), max_future=0)
    assert summary.rejected == {"future_timestamp": 1, "unknown_currency": 1}
    assert isinstance(sinks.dead_letters, io.StringIO)
    rejected = [json.loads(x) for x in sinks.dead_letters.getvalue().splitlines()]
    assert sorted((x["line"], x["reason"]) for x in rejected) == [
        (2, "future_timestamp"), (3, "unknown_currency")]


MEMINFO = "MemTotal:       24683584 kB\nMemFree:  1000 kB\nMemAvailable:    8388608 kB\n"


def test_events_sorted_in_memory_fit_half_the_memory_and_never_fewer_than_a_floor() -> None:
    assert run_size(Memory(8 * GIB, "x")) == 8 * GIB // 2 // MEMORY_PER_LINE
    assert run_size(Memory(1000, "x")) == MIN_RUN
    assert run_size(None) is None  # memory unknown: no limit


def fake_system(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_available_memory_is_mem_available_without_a_cgroup_limit(tmp_path: Path) -> None:
    root = fake_system(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "4:memory:/jobs/a\n0::/\n",
        "sys/fs/cgroup/memory/jobs/a/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/jobs/a/memory.usage_in_bytes": "153632768\n",
        "sys/fs/cgroup/unified/memory.max": "max\n",
        "sys/fs/cgroup/unified/memory.current": "153632768\n",
    })
    assert available_memory(root) == Memory(8 * GIB, "available (MemAvailable in /proc/meminfo)")


def test_available_memory_respects_a_cgroup_v2_limit(tmp_path: Path) -> None:
    root = fake_system(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "0::/job\n",
        "sys/fs/cgroup/job/memory.max": f"{2 * GIB}\n",
        "sys/fs/cgroup/job/memory.current": f"{GIB + GIB // 2}\n",
        # reclaimable page cache is not counted as used
        "sys/fs/cgroup/job/memory.stat": f"anon 1000\ninactive_file {GIB // 2}\n",
    })
    assert available_memory(root) == Memory(
        GIB, "available under the 2.0 GiB limit in /sys/fs/cgroup/job/memory.max")


def test_available_memory_respects_a_limit_on_a_parent_cgroup(tmp_path: Path) -> None:
    root = fake_system(tmp_path, {
        "proc/meminfo": MEMINFO,
        "proc/self/cgroup": "11:cpu,memory:/pod/container\n",
        "sys/fs/cgroup/memory/pod/container/memory.limit_in_bytes": "9223372036854771712\n",
        "sys/fs/cgroup/memory/pod/container/memory.usage_in_bytes": "1000\n",
        "sys/fs/cgroup/memory/pod/memory.limit_in_bytes": f"{GIB}\n",
        "sys/fs/cgroup/memory/pod/memory.usage_in_bytes": f"{GIB // 4}\n",
    })
    assert available_memory(root) == Memory(
        GIB - GIB // 4,
        "available under the 1.0 GiB limit in /sys/fs/cgroup/memory/pod/memory.limit_in_bytes")


def test_available_memory_is_unknown_without_proc(tmp_path: Path) -> None:
    assert available_memory(tmp_path) is None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_line_progress_writes_a_line_per_interval_with_amounts_percent_and_rate() -> None:
    stream, clock = io.StringIO(), Clock()
    with LineProgress(stream, prefix="replay: ", interval=5.0, clock=clock) as progress:
        reading = progress.add_task("reading", total=100 * 2**20, unit="bytes")
        clock.now += 4.9
        progress.advance(reading, 40 * 2**20)
        assert stream.getvalue() == ""  # not yet 5 s
        clock.now += 0.1
        progress.advance(reading, 0)
        clock.now += 1.0
        progress.advance(reading, 60 * 2**20)  # within 5 s of the last line
        replaying = progress.add_task("replaying", total=2_000_000, unit="events")
        clock.now += 20.0
        progress.update(replaying, completed=100_000)
        clock.now += 5.0
        progress.update(replaying, completed=2_000_000)
        counting = progress.add_task("counting")  # no total, no unit
        clock.now += 5.0
        progress.advance(counting, 3)
    assert stream.getvalue().splitlines() == [
        "replay: reading 40.0 MiB of 100.0 MiB (40.0%), 8.0 MiB/s, about 8s left",
        "replay: replaying 100,000 of 2,000,000 events (5.0%), 5,000 events/s, "
        "about 6m20s left",
        "replay: replaying 2,000,000 of 2,000,000 events (100.0%), 80,000 events/s",
        "replay: counting 3, 1/s",
    ]


def test_sizes_read_and_shown_in_powers_of_1024() -> None:
    assert [parse_size(s) for s in ("500M", "8G", "8GiB", "8gb", "1.5k", "1048576", "2 TB")] == [
        500 * 2**20, 8 * GIB, 8 * GIB, 8 * GIB, 1536, 2**20, 2 * 2**40]
    for bad in ("", "lots", "8X", "-1G", "1.G"):
        with pytest.raises(ValueError, match="is not a size"):
            parse_size(bad)
    assert [format_size(n) for n in (0, 1023, 1536, 14 * GIB, 3 * 2**40)] == [
        "0 B", "1023 B", "1.5 KiB", "14.0 GiB", "3.0 TiB"]
