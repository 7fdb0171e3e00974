"""`tierstream replay`: history files in, tier events out, through the pure engine, no broker.

Replay sorts the events by event time: in memory while they fit half the memory it may take
(`run_size`), else in sorted runs on disk merged as it reads them (streams/cli/sorted_runs.py),
so an input larger than memory replays too. Progress goes to stderr: rich's bar on a terminal,
else a plain line every few seconds (`LineProgress`).
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from models.errors import InvalidEventError
from models.instants import format_instant
from models.outputs import DEFAULT_TYPE_PREFIX, Output
from rules.compiled import CompiledPolicy
from rules.replay import Replay
from streams import collector, engine_build
from streams.cli.files import PRESETS, CsvLayout, Line, Record, read_csv, read_jsonl
from streams.cli.sorted_runs import SortedEvents

# Memory a replay needs per input line sorted in memory: the parsed event with its line, and its
# customer's state. Measured, when replay sorted everything in memory, as the peak RSS
# (getrusage ru_maxrss of a child `tierstream replay FILE --out /dev/null`) less that of a
# one-line replay (105 MiB):
#   JSONL from `tierstream simulate`, 177 B a line: 2,040 B a line at 96k lines (17 MB),
#     2,058 B at 387k lines (68 MB); 11.6 bytes of memory per input byte;
#   CDNOW (`--format cdnow`), 28 B a line: 2,479 B a line at 70k lines (1.95 MB), 2,490 B at
#     279k lines (the file four times over with other customer ids); 89-92 per input byte.
# Memory follows lines (events and customers), not bytes: the larger per-line figure, rounded up.
MEMORY_PER_LINE = 2_500
MIN_RUN = 10_000  # events sorted in memory however little memory is left
PROGRESS_INTERVAL_S = 5.0    # off a terminal, a progress line on stderr this often
progress_clock: Callable[[], float] = time.monotonic  # the progress lines' clock (tests fake it)


@dataclass
class Summary:
    """What a replay did, for the closing table."""

    lines: int = 0
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    outputs: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    classes: Counter[tuple[str, str]] = field(default_factory=Counter)  # (axis, class)
    churn_open: int = 0
    failed_decisions: int = 0  # time-driven decisions a policy condition failed on
    runs: int = 0  # sorted runs written to disk (0: sorted in memory)
    seconds: float = 0.0


@dataclass
class Sinks:
    out: IO[str]
    dead_letters: IO[str] | None = None
    state_out: IO[str] | None = None
    type_prefix: str = DEFAULT_TYPE_PREFIX  # of the outputs' types (TIERSTREAM_EVENT_TYPE_PREFIX)


@dataclass(frozen=True)
class Memory:
    """An amount of memory, and what it is, for messages ("available (MemAvailable ...)")."""

    bytes: int
    source: str


def run_size(available: Memory | None, per_line: int = MEMORY_PER_LINE) -> int | None:
    """How many events replay sorts in memory: those that fit half of `available` (the rest is
    for the customers' states); None (no limit) when the memory is unknown."""
    if available is None:
        return None
    return max(available.bytes // 2 // per_line, MIN_RUN)


def available_memory(root: Path = Path("/")) -> Memory | None:
    """The memory this process may still take: MemAvailable (/proc/meminfo), or the headroom
    under a memory limit of its cgroup (v2 memory.max, v1 memory.limit_in_bytes, less the
    usage without reclaimable page cache) where smaller. None: unknown (not Linux)."""
    found: list[Memory] = []
    meminfo = _read(root / "proc/meminfo") or ""
    if match := re.search(r"^MemAvailable:\s+(\d+) kB", meminfo, re.MULTILINE):
        found.append(Memory(int(match[1]) * 1024, "available (MemAvailable in /proc/meminfo)"))
    for line in (_read(root / "proc/self/cgroup") or "").splitlines():
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2, mounted alone or, in hybrid mode, under unified/
            for mount in ("sys/fs/cgroup", "sys/fs/cgroup/unified"):
                found += _cgroup_headroom(root, mount, path, "memory.max", "memory.current",
                                          "inactive_file")
        elif "memory" in controllers.split(","):  # v1
            found += _cgroup_headroom(root, "sys/fs/cgroup/memory", path,
                                      "memory.limit_in_bytes", "memory.usage_in_bytes",
                                      "total_inactive_file")
    return min(found, key=lambda memory: memory.bytes, default=None)


def _cgroup_headroom(root: Path, mount: str, path: str, limit_file: str, usage_file: str,
                     cache: str) -> list[Memory]:
    """Limit less usage of the cgroup at `path` and of each of its ancestors that has a limit."""
    found = []
    directory = root / mount / path.strip("/")
    while True:
        limit, usage = _read(directory / limit_file), _read(directory / usage_file)
        # v2 writes "max" for no limit, v1 a number near 2**63
        if limit and usage and limit.strip().isdigit() and int(limit) < 1 << 60:
            stat = _read(directory / "memory.stat") or ""
            reclaimable = re.search(rf"^{cache} (\d+)$", stat, re.MULTILINE)
            used = int(usage) - (int(reclaimable[1]) if reclaimable else 0)
            found.append(Memory(max(int(limit) - used, 0), f"available under the "
                                f"{format_size(int(limit))} limit in /{directory.relative_to(root)}"
                                f"/{limit_file}"))
        if directory == root / mount:
            return found
        directory = directory.parent


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def format_size(size: float) -> str:
    """1536 -> "1.5 KiB"."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(size) < 1024:
            return f"{size:.0f} B" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"


def parse_size(text: str) -> int:
    """"500M", "8G", "8GiB", "8gb", "1048576" -> bytes; K, M, G, T are powers of 1024."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(?:([KMGT])(?:i?B)?|B)?\s*", text, re.IGNORECASE)
    if match is None:
        raise ValueError(f"{text!r} is not a size such as 500M, 8G or 8GiB")
    power = "BKMGT".index((match[2] or "B").upper())
    return int(float(match[1]) * 1024 ** power)


def read_inputs(paths: list[Path], file_format: str, layout: CsvLayout | None,
                progress: Progress | LineProgress) -> Iterator[Record]:
    """Every record of every file, in file order; progress counts bytes read."""
    total = sum(p.stat().st_size for p in paths)
    task = progress.add_task("reading", total=total, unit="bytes")
    for path in paths:
        kind = _format_of(path, file_format)
        advance = lambda n: progress.advance(task, n)  # noqa: E731
        if kind == "jsonl":
            yield from read_jsonl(path, advance)
        else:
            yield from read_csv(path, layout or PRESETS.get(kind) or CsvLayout(), advance)


def _format_of(path: Path, file_format: str) -> str:
    if file_format != "auto":
        return file_format
    return "csv" if path.suffix.lower() in (".csv", ".tsv") else "jsonl"


def run(records: Iterator[Record], policy: CompiledPolicy, sinks: Sinks, as_of: int | None,
        progress: Progress | LineProgress, wall: int | None, max_future: int,
        in_memory: int | None = None, spill_dir: Path | None = None) -> Summary:
    """Sort the valid events by event time, replay them, write outputs, rejects and states.

    Events are admitted as a worker admits them (rules/admission.py), with no message key:
    those dated more than `max_future` after `wall` are rejected as future timestamps. Past
    `in_memory` events (None: no limit), they are sorted in runs on disk, under `spill_dir`
    (None: the system's temporary directory).
    """
    started = time.perf_counter()
    summary = Summary()
    events = SortedEvents(in_memory or 1 << 62, spill_dir, on_run=_runs_shown(progress))
    with contextlib.closing(events), collector.tuned():
        return _replay(records, events, policy, sinks, as_of, progress, wall, max_future,
                       summary, started)


def _runs_shown(progress: Progress | LineProgress) -> Callable[[int], None]:
    """Progress of the sorted runs written, a task shown from the first run on."""
    task: list[int] = []

    def show(runs: int) -> None:
        if not task:
            task.append(progress.add_task("sorted runs", total=None, unit="runs"))
        progress.update(task[0], completed=runs)
    return show


def _replay(records: Iterator[Record], events: SortedEvents, policy: CompiledPolicy,
            sinks: Sinks, as_of: int | None, progress: Progress | LineProgress,
            wall: int | None, max_future: int, summary: Summary, started: float) -> Summary:
    for line, record in records:
        summary.lines += 1
        if isinstance(record, InvalidEventError):
            _reject(line, record, summary, sinks)
        else:
            events.add((record, line))
    summary.runs = events.runs
    with collector.settled():  # the events read and sorted live until the replay ends
        replay = Replay(policy, wall=wall, max_future=max_future)
        task = progress.add_task("replaying", total=events.count, unit="events")
        for number, (event, line) in enumerate(events, start=1):
            try:
                _write(replay.feed(event), summary, sinks)
            except InvalidEventError as error:  # not admitted (unknown currency, future timestamp)
                _reject(line, error, summary, sinks)
                continue
            summary.events += not _failed(replay, line, summary, sinks)
            if number % 1000 == 0:
                progress.update(task, completed=number)
    progress.update(task, completed=events.count)
    end = _end_instant(replay, as_of)
    if end is not None:
        _write(replay.advance_to(end), summary, sinks)
        _failed(replay, None, summary, sinks)
        _finish(replay, policy, end, summary, sinks)
    summary.seconds = time.perf_counter() - started
    return summary


def _end_instant(replay: Replay, as_of: int | None) -> int | None:
    if as_of is not None and replay.clock is not None and as_of < replay.clock:
        raise ValueError(f"--as-of {format_instant(as_of)} is before the last event "
                         f"({format_instant(replay.clock)})")
    return as_of if as_of is not None else replay.clock


def _reject(line: Line, error: InvalidEventError, summary: Summary, sinks: Sinks) -> None:
    summary.rejected[error.reason] += 1
    if sinks.dead_letters is not None:
        sinks.dead_letters.write(json.dumps(line.dead_letter(error), ensure_ascii=False) + "\n")


def _failed(replay: Replay, line: Line | None, summary: Summary, sinks: Sinks) -> bool:
    """Dead-letter what was not decided, as a worker does: the line of the event just fed (the
    policy failed on it, or the engine refused it), or for a time-driven decision the customer
    and the instant. True if the event itself failed."""
    event_failed = False
    for failed, event in replay.take_failed():
        if event is not None:
            assert line is not None
            error = failed.error if isinstance(failed.error, InvalidEventError) else \
                InvalidEventError(str(failed.error), "policy_error")
            _reject(line, error, summary, sinks)
            event_failed = True
            continue
        summary.failed_decisions += 1
        if sinks.dead_letters is not None:
            record = {"source": "time", **failed.record()}
            sinks.dead_letters.write(json.dumps(record, ensure_ascii=False) + "\n")
    return event_failed


def _write(outputs: list[Output], summary: Summary, sinks: Sinks) -> None:
    for output in outputs:
        summary.outputs[output.type.removeprefix("tierstream.")] += 1
        sinks.out.write(output.record(sinks.type_prefix).decode() + "\n")


def _finish(replay: Replay, policy: CompiledPolicy, end: int, summary: Summary,
            sinks: Sinks) -> None:
    for customer in sorted(replay.states):
        state = replay.states[customer]
        summary.tiers[state.tier or "-"] += 1
        summary.classes.update(state.classes().items())
        summary.churn_open += state.churn_rule is not None
        if sinks.state_out is not None:
            since = None if state.tier_since is None else format_instant(state.tier_since)
            line = {"customer_id": customer, "tier": state.tier, "tier_since": since,
                    "churn": state.churn_rule is not None, "churn_rule": state.churn_rule,
                    "as_of": format_instant(end),
                    **({"axes": {p.axis: {"class": p.name, "since": format_instant(p.since)}
                                 for p in state.axes}} if policy.axes else {}),
                    "metrics": policy.values(state, end, replay.population)}
            sinks.state_out.write(json.dumps(line, ensure_ascii=False) + "\n")


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:>10}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


def progress_for(console: Console) -> Progress | LineProgress:
    """rich's bar on a terminal; else a plain line every PROGRESS_INTERVAL_S seconds."""
    if console.is_terminal:
        return progress_bar(console)
    return LineProgress(console.file, prefix="replay: ")


@dataclass
class _Task:
    description: str
    total: float | None
    unit: str
    started: float
    completed: float = 0

    def line(self, now: float) -> str:
        """"reading 40.0 MiB of 100.0 MiB (40.0%), 8.0 MiB/s, about 8s left"."""
        def show(n: float) -> str:
            return format_size(n) if self.unit == "bytes" else f"{n:,.0f}"
        unit = "" if self.unit == "bytes" else f" {self.unit}".rstrip()
        text = f"{self.description} {show(self.completed)}"
        if self.total:
            text += f" of {show(self.total)}{unit} ({self.completed / self.total:.1%})"
        else:
            text += unit
        elapsed = now - self.started
        if elapsed > 0 and self.completed:
            rate = self.completed / elapsed
            text += f", {show(rate)}{unit}/s"
            if self.total and self.completed < self.total:
                text += f", about {_duration((self.total - self.completed) / rate)} left"
        return text


def _duration(seconds: float) -> str:
    """Whole seconds as "8s", "2m05s" or "1h02m"."""
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


class LineProgress:
    """Progress as a plain line on `stream` at most every `interval` seconds (default
    PROGRESS_INTERVAL_S), for a stderr that is not a terminal (a log, a pipe, CI). It offers
    the part of rich's Progress that replay uses; a task with `unit="bytes"` shows sizes."""

    def __init__(self, stream: IO[str], prefix: str = "", interval: float | None = None,
                 clock: Callable[[], float] | None = None) -> None:
        """`interval`, `clock`: default PROGRESS_INTERVAL_S and progress_clock (at creation)."""
        self._stream, self._prefix = stream, prefix
        self._clock = clock or progress_clock
        self._interval = PROGRESS_INTERVAL_S if interval is None else interval
        self._tasks: list[_Task] = []
        self._last = self._clock()

    def __enter__(self) -> LineProgress:
        return self

    def __exit__(self, *_: object) -> None:
        return None

    def add_task(self, description: str, total: float | None = None, unit: str = "",
                 **_: Any) -> int:
        self._tasks.append(_Task(description, total, unit, self._clock()))
        return len(self._tasks) - 1

    def advance(self, task: int, advance: float = 1) -> None:
        self._tasks[task].completed += advance
        self._tick(task)

    def update(self, task: int, completed: float | None = None, **_: Any) -> None:
        if completed is not None:
            self._tasks[task].completed = completed
        self._tick(task)

    def _tick(self, task: int) -> None:
        now = self._clock()
        if now - self._last >= self._interval:
            self._last = now
            print(self._prefix + self._tasks[task].line(now), file=self._stream, flush=True)


def summary_document(summary: Summary, policy: CompiledPolicy) -> dict[str, Any]:
    """The summary as `replay --json` writes it."""
    return {"policy": {"name": policy.name, "version": policy.version},
            "customers": {tier: summary.tiers[tier] for tier in policy.tier_ids}
            | ({"-": summary.tiers["-"]} if summary.tiers["-"] else {}),
            "axes": {ladder.axis: {name: summary.classes[ladder.axis, name]
                                   for name in ladder.ids} for ladder in policy.axes},
            "open_churn_episodes": summary.churn_open, "outputs": dict(sorted(
                summary.outputs.items())),
            "lines": summary.lines, "events": summary.events,
            "rejected": dict(summary.rejected.most_common()),
            "failed_decisions": summary.failed_decisions, "sorted_runs": summary.runs,
            "seconds": round(summary.seconds, 3), "engine": engine_build.build()}


def summary_table(summary: Summary, policy: CompiledPolicy) -> Table:
    table = Table(title=f"replay with policy {policy.name} {policy.version}", show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    customers = sum(summary.tiers.values())
    for tier in (*policy.tier_ids, "-"):
        if summary.tiers[tier] or tier != "-":
            share = f" ({summary.tiers[tier] / customers:.1%})" if customers else ""
            table.add_row(f"customers in {tier}", f"{summary.tiers[tier]}{share}")
    table.add_row("open churn episodes", str(summary.churn_open), end_section=True)
    for ladder in policy.axes:
        for name in ladder.ids:
            count = summary.classes[ladder.axis, name]
            share = f" ({count / customers:.1%})" if customers else ""
            table.add_row(f"{ladder.axis} {name}", f"{count}{share}")
        table.rows[-1].end_section = True
    kinds = ["tier.assigned", "tier.upgraded", "tier.downgraded", "tier.downgrade_warning",
             "churn.warning", "churn.recovered"]
    kinds += sorted(kind for kind in summary.outputs if kind.startswith(("followup.", "axis.")))
    for kind in kinds:
        table.add_row(kind, str(summary.outputs[kind]))
    table.rows[-1].end_section = True
    table.add_row("lines read", str(summary.lines))
    table.add_row("events applied", str(summary.events))
    rejected = ", ".join(f"{r} {n}" for r, n in summary.rejected.most_common())
    table.add_row("lines rejected", f"{sum(summary.rejected.values())}"
                  + (f" ({rejected})" if rejected else ""))
    if summary.failed_decisions:
        table.add_row("time-driven decisions failed (policy_error)",
                      str(summary.failed_decisions))
    if summary.runs:
        table.add_row("sorted on disk", f"{summary.runs} runs")
    rate = summary.events / summary.seconds if summary.seconds else 0.0
    table.add_row("time", f"{summary.seconds:.2f} s ({rate:,.0f} events/s, engine build: "
                  f"{engine_build.build()})")
    return table
