"""How the engine's processes (the worker, replay) use CPython's garbage collector.

The engine allocates many short-lived containers per event (parsed events, metric values,
states), all freed by reference counting. At CPython's default threshold a young collection
ran every 700 containers allocated and not yet freed, found next to nothing, and took about a
tenth of the engine's time on the peer job's events (bench/peer_bench.py). `tune` raises that
threshold; `settle` moves every object alive now out of all later collections (gc.freeze) once
a process holds its long-lived objects, which reference counting still frees.
"""

from __future__ import annotations

import gc

YOUNG_THRESHOLD = 50_000  # containers allocated and not yet freed between young collections


def tune() -> None:
    gc.set_threshold(YOUNG_THRESHOLD, *gc.get_threshold()[1:])


def settle() -> None:
    gc.freeze()
