"""Replay's input in event-time order, in memory or, past a budget, through sorted runs on disk.

Events are sorted by `rules.replay.event_order`. While they number at most `run_size` they are
sorted in memory; beyond, each `run_size` of them is sorted and written (pickled, with its input
line) to a temporary file, and the runs are merged (`heapq.merge`) as replay reads them. Both
sorts are stable, and the merge takes equal keys from earlier runs first, so the order is the
same either way: that of one stable sort of the whole input.
"""

from __future__ import annotations

import heapq
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from operator import itemgetter
from pathlib import Path
from typing import IO, Any

from models.events import Event
from rules.replay import event_order
from streams.cli.files import Line

Pair = tuple[Event, Line]
_key = itemgetter(0)


class SortedEvents:
    """Pairs in event order, once all of them are in (`add`, then iterate once)."""

    def __init__(self, run_size: int, directory: Path | None = None,
                 on_run: Callable[[int], None] = lambda runs: None) -> None:
        self.run_size, self.directory, self.on_run = run_size, directory, on_run
        self.count = 0
        self._buffer: list[tuple[Any, Pair]] = []
        self._runs: list[IO[bytes]] = []
        self._spill_dir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def runs(self) -> int:
        return len(self._runs)

    def add(self, pair: Pair) -> None:
        self._buffer.append((event_order(pair[0]), pair))
        self.count += 1
        if len(self._buffer) >= self.run_size:
            self._spill()

    def __iter__(self) -> Iterator[Pair]:
        self._buffer.sort(key=_key)
        if not self._runs:
            return (pair for _, pair in self._buffer)
        for run in self._runs:
            run.seek(0)
        merged = heapq.merge(*map(_read, self._runs), self._buffer, key=_key)
        return self._closing(pair for _, pair in merged)

    def _spill(self) -> None:
        self._buffer.sort(key=_key)
        if self._spill_dir is None:
            self._spill_dir = tempfile.TemporaryDirectory(prefix="tierstream-replay-",
                                                          dir=self.directory)
        run = tempfile.TemporaryFile(dir=self._spill_dir.name)
        for item in self._buffer:  # one pickle each: a reader keeps no memo of the run
            pickle.dump(item, run, protocol=pickle.HIGHEST_PROTOCOL)
        self._runs.append(run)
        self._buffer = []
        self.on_run(len(self._runs))

    def _closing(self, pairs: Iterable[Pair]) -> Iterator[Pair]:
        try:
            yield from pairs
        finally:
            self.close()

    def close(self) -> None:
        for run in self._runs:
            run.close()
        if self._spill_dir is not None:
            self._spill_dir.cleanup()


def _read(run: IO[bytes]) -> Iterator[tuple[Any, Pair]]:
    while True:
        try:
            yield pickle.load(run)
        except EOFError:
            return
