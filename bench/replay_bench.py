"""Benchmark of the pure engine through replay on CDNOW (not a test: prints a table).

    python bench/replay_bench.py [--events N] [--policy FILE]

Rows, all measured in this run: reading and validating the events; the engine alone over the
pre-parsed events (one clean timed run, nothing wrapped); `tierstream replay` end to end, timed
as a process by wall clock (start-up, reading, engine and writing the output events included);
an arithmetic-only redo of the engine's evaluations; how many evaluations an event costs
(time-driven wake-ups included) and the state size per customer.

The evaluations are counted in a second, untimed run of the engine with a tracing wrapper (with
the pure-Python build only: compiled modules call each other directly). The
arithmetic-only row redoes that run's evaluations and output events with nothing but the
arithmetic they need, written by hand for this policy's shape in plain Python: per evaluation
the window counts and sums by bisection over the customer's order times, the fixed metrics and
the compiled conditions; per output event its id (UUIDv5), its time and a dict of its fields.
No state, no pydantic, no wake-up instants. It is a re-implementation of part of the engine's
work, for comparison; it says nothing about what another engine could reach.
"""

from __future__ import annotations

import argparse
import gc
import platform
import subprocess
import sys
import tempfile
import time
from bisect import bisect_right
from math import fsum
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models import stored  # noqa: E402
from models.instants import MICROS_PER_DAY, format_instant  # noqa: E402
from models.outputs import (  # noqa: E402
    DEFAULT_TYPE_PREFIX,
    SCHEMA_IDS,
    format_sequence,
    source_of,
)
from rules import decisions  # noqa: E402
from rules.compiled import CompiledPolicy  # noqa: E402
from rules.replay import Replay, event_order  # noqa: E402
from streams import engine_build  # noqa: E402
from streams.cli.files import PRESETS, read_csv  # noqa: E402
from streams.policies import load_policy  # noqa: E402
from tests.datafiles import cdnow_master_path  # noqa: E402

TARGET = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=0, help="first N purchases (0: all)")
    parser.add_argument("--policy", default=str(Path(__file__).parent / "cdnow_policy.yaml"))
    args = parser.parse_args()
    engine_build.check()
    policy = load_policy(args.policy)
    path = cdnow_master_path()

    started = time.perf_counter()
    records = [(line, e) for line, e in read_csv(path, PRESETS["cdnow"])
               if not isinstance(e, Exception)]
    parse_rate = len(records) / (time.perf_counter() - started)
    if args.events:
        records = records[:args.events]
    last_line = records[-1][0].number
    events = sorted((e for _, e in records), key=event_order)
    del records
    # The parsed input is the benchmark's, not the engine's: keep the garbage collector from
    # scanning it again at every full collection (~5% of the engine time on all of CDNOW).
    gc.collect()
    gc.freeze()

    replay = Replay(policy)
    outputs = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for event in events:
        outputs += len(replay.feed(event))
    engine_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started

    # The trace wraps decisions.evaluate, which compiled modules call directly: pure Python only.
    trace = traced(policy, events) if engine_build.build() == "python" else None
    if trace is not None:
        assert sum(emitted for *_, emitted in trace) == outputs, "the traced run differs"
        redo_seconds = redo(policy, events, trace)
    process_seconds, process_outputs = replay_process(path, last_line, args.policy,
                                                      whole=not args.events)

    states = list(replay.states.values())
    state_bytes = sum(len(stored.encode(0, s)) for s in states) / len(states)
    n = len(events)
    table = Table(title=f"replay benchmark: {n:,} CDNOW purchases, policy {policy.name}")
    for column in ("what", "events/s", "note"):
        table.add_column(column, justify="right" if column == "events/s" else "left")
    table.add_row("read + validate (pydantic)", f"{parse_rate:,.0f}", "streams.cli.files.read_csv")
    table.add_row("engine (pure rules)", f"{n / engine_seconds:,.0f}",
                  f"target {TARGET:,}: {'met' if n / engine_seconds >= TARGET else 'NOT met'}")
    table.add_row("engine, per CPU second", f"{n / cpu_seconds:,.0f}",
                  "the same run by process time: less noisy on a shared machine")
    table.add_row("tierstream replay, end to end", f"{n / process_seconds:,.0f}",
                  f"one process, {process_seconds:.1f} s wall clock, {process_outputs:,} "
                  "output events")
    if trace is not None:
        table.add_row("arithmetic-only redo of the same evaluations", f"{n / redo_seconds:,.0f}",
                      f"a partial re-implementation, not a bound; the engine takes "
                      f"{engine_seconds / redo_seconds:.1f}x as long")
        table.add_row("evaluations per event", f"{len(trace) / n:.2f}",
                      "time-driven wake-ups incl.")
        table.add_row("engine time per evaluation",
                      f"{engine_seconds / len(trace) * 1e6:,.1f} us", "")
    table.add_row("output events", f"{outputs:,}", "")
    table.add_row("state per customer", f"{state_bytes:,.0f} B", "as a changelog record "
                  "(models/stored.py)")
    console = Console()
    console.print(table)
    console.print(f"{platform.python_implementation()} {platform.python_version()} on "
                  f"{platform.machine()}, {platform.processor() or 'unknown cpu'}; one core; "
                  f"engine build: {engine_build.build()}")
    if trace is None:
        console.print("Evaluations are counted, and redone, with the pure-Python build only.")


def traced(policy: CompiledPolicy, events: list) -> list[tuple[str, int, int]]:
    """A second, untimed run of the engine: per evaluation the customer, the instant and how
    many output events it emitted."""
    trace: list[tuple[str, int, int]] = []
    evaluate = decisions.evaluate

    def counted(state, policy, t, population=None):  # type: ignore[no-untyped-def]
        result = evaluate(state, policy, t, population)
        trace.append((state.customer_id, t, len(result[1])))
        return result

    decisions.evaluate = counted
    try:
        replay = Replay(policy)
        for event in events:
            replay.feed(event)
    finally:
        decisions.evaluate = evaluate
    return trace


def replay_process(path: Path, last_line: int, policy: str, whole: bool) -> tuple[float, int]:
    """Wall-clock seconds of `tierstream replay` over the same purchases (the file's lines up to
    `last_line`) as one process, and the number of output events it wrote."""
    with tempfile.TemporaryDirectory() as tmp:
        source = path
        if not whole:
            source = Path(tmp) / "events.txt"
            with path.open("rb") as whole_file, source.open("wb") as part:
                for number, line in enumerate(whole_file, start=1):
                    if number > last_line:
                        break
                    part.write(line)
        out = Path(tmp) / "outputs.jsonl"
        command = [sys.executable, "-m", "streams.cli", "replay", str(source),
                   "--format", "cdnow", "--policy", policy, "--out", str(out)]
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True)
        seconds = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
        with out.open("rb") as written:
            return seconds, sum(1 for _ in written)


def redo(policy: CompiledPolicy, events: list, trace: list[tuple[str, int, int]]) -> float:
    """Seconds to redo `trace` (the engine's evaluations, in order, and how many output events
    each emitted) with arithmetic only: see the module docstring. Orders only (as CDNOW)."""
    covered = set(policy.fixed) <= {"orders_total", "purchase_days_total", "tier",
                                     "days_since_last_order", "avg_days_between_orders"} and \
        all(m.kind in ("orders", "revenue") for m in policy.windowed)
    if not covered or policy.modelled or policy.relative:
        raise SystemExit("the arithmetic-only redo covers the metrics of "
                         "bench/cdnow_policy.yaml only")
    # per customer, in time order: order instants, amounts, distinct purchase days so far
    orders: dict[str, tuple[list[int], list[float], list[int]]] = {}
    for event in events:  # sorted by time: each customer's orders in time order
        at, amounts, days = orders.setdefault(event.customer_id, ([], [], []))
        t = event.at
        days.append((days[-1] if days else 0) +
                    (not at or t // MICROS_PER_DAY != at[-1] // MICROS_PER_DAY))
        at.append(t)
        amounts.append(event.amount)
    outputs = 0
    started = time.perf_counter()
    for customer, t, emitted in trace:
        at, amounts, days = orders[customer]
        n = bisect_right(at, t)
        purchase_days = days[n - 1]
        values: dict = {"orders_total": n, "purchase_days_total": purchase_days, "tier": "",
                        "days_since_last_order": (t - at[n - 1]) / MICROS_PER_DAY,
                        "avg_days_between_orders":
                            (at[n - 1] // MICROS_PER_DAY - at[0] // MICROS_PER_DAY)
                            / (purchase_days - 1) if purchase_days > 1 else 0.0}
        for metric in policy.windowed:
            start = bisect_right(at, t - metric.micros, 0, n)
            values[metric.name] = n - start if metric.kind == "orders" else \
                fsum(amounts[start:n])
        tier = policy.eligible(values)
        churn = next((rule for rule, c in policy.churn_conditions if c.holds(values)), None)
        made = [{"specversion": "1.0", "id": decisions.uuid5(
                    f"{policy.name}\n{policy.version}\n{customer}\n{sequence}\n{t}"),
                 "source": source_of(policy.sources, customer),
                 "type": f"{DEFAULT_TYPE_PREFIX}.tier.upgraded", "subject": customer,
                 "time": format_instant(t), "sequence": format_sequence(sequence),
                 "partitionkey": customer, "dataschema": SCHEMA_IDS["tier"],
                 "datacontenttype": "application/json",
                 "data": {"customer_id": customer, "from_tier": None, "to_tier": tier,
                          "policy": {"name": policy.name, "version": policy.version},
                          "rule": churn, "reason": f"qualifies for {tier}: {churn}",
                          "metrics": dict(values)}}
                for sequence in range(emitted)]
        outputs += len(made)
    seconds = time.perf_counter() - started
    assert outputs == sum(emitted for *_, emitted in trace)
    return seconds


if __name__ == "__main__":
    main()
