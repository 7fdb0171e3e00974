"""The bundled example history (examples/events.jsonl) replayed through the default policy."""

from __future__ import annotations

import functools
from pathlib import Path

from models.errors import InvalidEventError
from models.events import Event, parse_event
from models.outputs import Output
from rules.replay import Replay
from streams.policies import load_policy
from tests.builders import micros, replay

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "events.jsonl"
AS_OF = micros("2026-12-31T00:00:00+00:00")


def example_lines() -> list[bytes]:
    return EXAMPLES.read_bytes().splitlines()


def _parsed(line: bytes) -> Event | None:
    try:
        return parse_event(line)
    except InvalidEventError:
        return None


def example_events() -> list[Event]:
    """The example history's valid events."""
    return [e for e in map(_parsed, example_lines()) if e is not None]


@functools.cache
def example_run() -> tuple[Replay, tuple[Output, ...]]:
    """What `tierstream replay examples/events.jsonl --as-of 2026-12-31` computes."""
    run, outputs = replay(example_events(), load_policy("default"), until=AS_OF)
    return run, tuple(outputs)
