"""How the engine's processes (the worker, replay) use CPython's garbage collector.

The engine allocates many short-lived containers per event (parsed events, metric values,
states), all freed by reference counting. At CPython's default threshold a young collection
ran every 700 containers allocated and not yet freed, found next to nothing, and took about a
tenth of the engine's time on the peer job's events (bench/peer_bench.py). Inside `tuned` that
threshold is higher. What lives on, such as the worker's modules and app or replay's sorted
events, is left out of all later collections (gc.freeze; reference counting still frees it):
for good with `settle`, while inside with `settled`.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

YOUNG_THRESHOLD = 50_000  # containers allocated and not yet freed between young collections


@contextlib.contextmanager
def tuned() -> Iterator[None]:
    before = gc.get_threshold()
    gc.set_threshold(YOUNG_THRESHOLD, *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)


def settle() -> None:
    gc.freeze()


@contextlib.contextmanager
def settled() -> Iterator[None]:
    settle()
    try:
        yield
    finally:
        gc.unfreeze()
