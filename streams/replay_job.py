"""`tierstream replay`: history files in, tier events out, through the pure engine, no broker."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from models.errors import InvalidEventError
from models.events import Event
from models.instants import format_instant
from models.outputs import OutputEvent
from rules.compiled import CompiledPolicy
from rules.replay import Replay, event_order
from streams.files import PRESETS, CsvLayout, Line, Record, read_csv, read_jsonl


@dataclass
class Summary:
    """What a replay did, for the closing table."""

    lines: int = 0
    events: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    outputs: Counter[str] = field(default_factory=Counter)
    tiers: Counter[str] = field(default_factory=Counter)
    churn_open: int = 0
    failed_decisions: int = 0  # time-driven decisions a policy condition failed on
    seconds: float = 0.0


@dataclass
class Sinks:
    out: IO[str]
    dead_letters: IO[str] | None = None
    state_out: IO[str] | None = None


def read_inputs(paths: list[Path], file_format: str, layout: CsvLayout | None,
                progress: Progress) -> Iterator[Record]:
    """Every record of every file, in file order; progress counts bytes read."""
    total = sum(p.stat().st_size for p in paths)
    task = progress.add_task("reading", total=total)
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
        progress: Progress, wall: int | None, max_future: int) -> Summary:
    """Sort the valid events by event time, replay them, write outputs, rejects and states.

    Events are admitted as a worker admits them (rules/admission.py), with no message key:
    those dated more than `max_future` after `wall` are rejected as future timestamps.
    """
    started = time.perf_counter()
    summary = Summary()
    events: list[tuple[Event, Line]] = []
    for line, record in records:
        summary.lines += 1
        if isinstance(record, InvalidEventError):
            _reject(line, record, summary, sinks)
        else:
            events.append((record, line))
    events.sort(key=lambda pair: event_order(pair[0]))
    replay = Replay(policy, wall=wall, max_future=max_future)
    task = progress.add_task("replaying", total=len(events))
    for number, (event, line) in enumerate(events, start=1):
        try:
            _write(replay.feed(event), summary, sinks)
        except InvalidEventError as error:  # not admitted (unknown currency, future timestamp)
            _reject(line, error, summary, sinks)
            continue
        summary.events += not _failed(replay, line, summary, sinks)
        if number % 1000 == 0:
            progress.update(task, completed=number)
    progress.update(task, completed=len(events))
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
    """Dead-letter what the policy failed to decide (reason policy_error), as a worker does: the
    line of the event just fed, or for a time-driven decision the customer and the instant (it
    is decided again a day later). True if the event itself failed."""
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
            record = {"source": "time", "customer_id": failed.customer_id,
                      "at": format_instant(failed.at), "reason": "policy_error",
                      "error": str(failed.error)}
            sinks.dead_letters.write(json.dumps(record, ensure_ascii=False) + "\n")
    return event_failed


def _write(outputs: list[OutputEvent], summary: Summary, sinks: Sinks) -> None:
    for output in outputs:
        summary.outputs[output.type.removeprefix("tierstream.")] += 1
        sinks.out.write(output.model_dump_json() + "\n")


def _finish(replay: Replay, policy: CompiledPolicy, end: int, summary: Summary,
            sinks: Sinks) -> None:
    for customer in sorted(replay.states):
        state = replay.states[customer]
        summary.tiers[state.tier or "-"] += 1
        summary.churn_open += state.churn_rule is not None
        if sinks.state_out is not None:
            since = None if state.tier_since is None else format_instant(state.tier_since)
            line = {"customer_id": customer, "tier": state.tier, "tier_since": since,
                    "churn": state.churn_rule is not None, "churn_rule": state.churn_rule,
                    "as_of": format_instant(end),
                    "metrics": policy.values(state, end, replay.population)}
            sinks.state_out.write(json.dumps(line, ensure_ascii=False) + "\n")


def progress_bar(console: Console) -> Progress:
    return Progress(TextColumn("{task.description:>10}"), BarColumn(),
                    TextColumn("{task.percentage:>5.1f}%"), TimeRemainingColumn(),
                    console=console, transient=True, disable=not console.is_terminal)


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
    for kind in ("tier.assigned", "tier.upgraded", "tier.downgraded",
                 "tier.downgrade_warning", "churn.warning", "churn.recovered"):
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
    rate = summary.events / summary.seconds if summary.seconds else 0.0
    table.add_row("time", f"{summary.seconds:.2f} s ({rate:,.0f} events/s)")
    return table
