"""Benchmark of the pure engine through replay on CDNOW (not a test: prints a table).

    python bench/replay_bench.py [--events N] [--policy FILE]

Rows, all measured in this run: reading and validating the events (the ceiling set by pydantic),
the engine alone over pre-parsed events, and replay end to end; plus how many evaluations an
event costs (time-driven wake-ups included) and the state size per customer.
"""

from __future__ import annotations

import argparse
import gc
import platform
import sys
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rules import decisions  # noqa: E402
from rules.replay import Replay, event_order  # noqa: E402
from streams.files import PRESETS, read_csv  # noqa: E402
from streams.policies import load_policy  # noqa: E402
from tests.datafiles import cdnow_master_path  # noqa: E402

TARGET = 50_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=0, help="first N purchases (0: all)")
    parser.add_argument("--policy", default=str(Path(__file__).parent / "cdnow_policy.yaml"))
    args = parser.parse_args()
    policy = load_policy(args.policy)
    path = cdnow_master_path()

    started = time.perf_counter()
    events = [e for _, e in read_csv(path, PRESETS["cdnow"]) if not isinstance(e, Exception)]
    parse_rate = len(events) / (time.perf_counter() - started)
    if args.events:
        events = events[:args.events]
    events.sort(key=event_order)
    # The parsed input is the benchmark's, not the engine's: keep the garbage collector from
    # scanning it again at every full collection (~5% of the engine time on all of CDNOW).
    gc.collect()
    gc.freeze()

    evaluations = 0
    evaluate = decisions.evaluate

    def counted(*a):  # type: ignore[no-untyped-def]
        nonlocal evaluations
        evaluations += 1
        return evaluate(*a)

    decisions.evaluate = counted
    replay = Replay(policy)
    outputs = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for event in events:
        outputs += len(replay.feed(event))
    engine_seconds = time.perf_counter() - started
    cpu_seconds = time.process_time() - cpu_started
    decisions.evaluate = evaluate

    states = list(replay.states.values())
    state_bytes = sum(len(s.model_dump_json()) for s in states) / len(states)
    n = len(events)
    table = Table(title=f"replay benchmark: {n:,} CDNOW purchases, policy {policy.name}")
    for column in ("what", "events/s", "note"):
        table.add_column(column, justify="right" if column == "events/s" else "left")
    table.add_row("read + validate (pydantic)", f"{parse_rate:,.0f}", "ceiling of input")
    table.add_row("engine (pure rules)", f"{n / engine_seconds:,.0f}",
                  f"target {TARGET:,}: {'met' if n / engine_seconds >= TARGET else 'NOT met'}")
    table.add_row("engine, per CPU second", f"{n / cpu_seconds:,.0f}",
                  "the same run by process time: less noisy on a shared machine")
    table.add_row("replay end to end", f"{1 / (1 / parse_rate + engine_seconds / n):,.0f}", "")
    table.add_row("evaluations per event", f"{evaluations / n:.2f}", "time-driven wake-ups incl.")
    table.add_row("engine time per evaluation", f"{engine_seconds / evaluations * 1e6:,.1f} us", "")
    table.add_row("output events", f"{outputs:,}", "")
    table.add_row("state per customer", f"{state_bytes:,.0f} B", "JSON, as in a changelog")
    console = Console()
    console.print(table)
    console.print(f"{platform.python_implementation()} {platform.python_version()} on "
                  f"{platform.machine()}, {platform.processor() or 'unknown cpu'}; one core")


if __name__ == "__main__":
    main()
