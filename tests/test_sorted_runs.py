"""Replay's sort past its memory budget (streams/cli/sorted_runs.py): runs on disk, merged, give the
order of one stable sort of the whole input, and leave no file behind."""

from __future__ import annotations

import random
from pathlib import Path

from rules.replay import event_order
from streams.cli.files import Line
from streams.cli.sorted_runs import SortedEvents
from tests.builders import day, order, touch


def pairs(count: int) -> list:
    rng = random.Random(4)
    events = [order(f"c{rng.randrange(5)}", day(rng.randrange(20)), 10, f"o{n}")
              if n % 3 else touch(f"c{rng.randrange(5)}", day(rng.randrange(20)))
              for n in range(count)]  # many equal instants, and equal keys (same touch twice)
    return [(event, Line("in.jsonl", n, b"{}")) for n, event in enumerate(events, start=1)]


def test_runs_merged_equal_one_stable_sort(tmp_path: Path) -> None:
    given = pairs(1000)
    spilled: list[int] = []
    runs = SortedEvents(run_size=64, directory=tmp_path, on_run=spilled.append)
    for pair in given:
        runs.add(pair)
    assert runs.runs == 15 and spilled == list(range(1, 16)) and runs.count == 1000
    assert list(runs) == sorted(given, key=lambda p: event_order(p[0]))  # events and lines
    assert list(tmp_path.iterdir()) == []  # the runs are gone once read


def test_input_within_one_run_never_touches_the_disk(tmp_path: Path) -> None:
    given = pairs(50)
    runs = SortedEvents(run_size=64, directory=tmp_path)
    for pair in given:
        runs.add(pair)
    assert list(runs) == sorted(given, key=lambda p: event_order(p[0]))
    assert runs.runs == 0 and list(tmp_path.iterdir()) == []
