"""Instants as integer microseconds since the Unix epoch (UTC), and durations such as `14d`."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from functools import lru_cache

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
MICROS_PER_SECOND = 1_000_000
MICROS_PER_DAY = 86_400 * MICROS_PER_SECOND
_UNITS = {"s": MICROS_PER_SECOND, "m": 60 * MICROS_PER_SECOND, "h": 3_600 * MICROS_PER_SECOND,
          "d": MICROS_PER_DAY, "w": 7 * MICROS_PER_DAY}
DURATION_PATTERN = r"^\d+[smhdw]$"
_DURATION = re.compile(DURATION_PATTERN)


def to_micros(moment: datetime) -> int:
    """Exact microseconds since the epoch of an offset-aware datetime."""
    return (moment - EPOCH) // _MICROSECOND


def from_micros(micros: int) -> datetime:
    return EPOCH + timedelta(microseconds=micros)


def days_between(start: int, end: int) -> float:
    """Days from `start` to `end`, as the time metrics count them."""
    return (end - start) / MICROS_PER_DAY


def format_instant(micros: int) -> str:
    """RFC 3339 in UTC with a `Z`, microseconds only when present."""
    seconds, micros = divmod(micros, MICROS_PER_SECOND)
    day, seconds = divmod(seconds, 86_400)
    minute, seconds = divmod(seconds, 60)
    if micros:
        return f"{_date(day)}T{_CLOCK[minute]}:{seconds:02}.{micros:06}Z"
    return f"{_date(day)}T{_CLOCK[minute]}:{seconds:02}Z"


_CLOCK = [f"{minute // 60:02}:{minute % 60:02}" for minute in range(1_440)]  # "HH:MM" by minute


@lru_cache(maxsize=4096)
def _date(day: int) -> str:
    """The ISO date of a day since the epoch (an instant's date is formatted once per day)."""
    return (EPOCH + timedelta(days=day)).date().isoformat()


def parse_duration(text: str) -> int:
    """`30d` -> microseconds; units s, m, h, d, w."""
    if not _DURATION.match(text):
        raise ValueError(f"duration {text!r} must be a whole number with a unit s, m, h, d or w "
                         "(like 14d)")
    return int(text[:-1]) * _UNITS[text[-1]]
