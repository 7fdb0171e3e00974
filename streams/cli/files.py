"""Reads events from JSONL and CSV files, keeping every rejected line with its reason.

CSV rows become events through a column mapping: `field=column` pairs naming, for each event
field, the CSV column (header name or 0-based index) that holds it. Missing fields fall back to
the layout's defaults; a row without an event id gets `<file name>:<line>`, and an order without
an order id uses its event id. The `cdnow` preset reads the CDNOW master file (whitespace
separated: customer id, date YYYYMMDD, number of CDs, dollars; no header) as USD orders.

Shop exports write an order as one row per line item: the first row has the order's fields, the
rows after it repeat its order id and leave the amount blank (or repeat it). Such rows of a
completed order (order id mapped from a column) are one order: the first row's, with the other
rows' bytes in its record (so a rejected order keeps all of them). A row of another type or
another amount is an event of its own. A timestamp without an offset, or a date
alone, is read in the layout's `timezone` (`--timezone`; without one it is refused).
"""

from __future__ import annotations

import base64
import csv
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from models.errors import InvalidEventError
from models.events import Event, OrderCompleted, event_from_fields, parse_event


@dataclass(frozen=True)
class Line:
    """Where an input record came from, with its original bytes."""

    source: str
    number: int
    raw: bytes

    def dead_letter(self, error: InvalidEventError) -> dict[str, Any]:
        """The dead-letter record: origin, reason, message and the original line."""
        record: dict[str, Any] = {"source": self.source, "line": self.number,
                                  "reason": error.reason, "error": str(error)}
        try:
            record["raw"] = self.raw.decode()
        except UnicodeDecodeError:
            record["raw_base64"] = base64.b64encode(self.raw).decode()
        return record


@dataclass(frozen=True)
class CsvLayout:
    """How CSV columns map to event fields."""

    columns: dict[str, str | int] = field(default_factory=dict)
    defaults: dict[str, str] = field(default_factory=lambda: {"type": "order_completed"})
    header: bool | None = True       # None: the first row is a header if no cell is a number
    delimiter: str | None = ","        # None: any run of whitespace
    date_format: str | None = None     # strptime format of occurred_at
    timezone: str | None = None        # of timestamps without an offset (date_format: UTC)

    def mapped(self, names: list[str] | None) -> dict[str, str | int]:
        """Event field -> column: the layout's columns, else the header's names."""
        return self.columns or {name: name for name in names or ()}

    @functools.cached_property
    def zone(self) -> tzinfo | None:
        return None if self.timezone is None else time_zone(self.timezone)


PRESETS = {
    "cdnow": CsvLayout(columns={"customer_id": 0, "occurred_at": 1, "amount": 3},
                       defaults={"type": "order_completed", "currency": "USD"},
                       header=None, delimiter=None, date_format="%Y%m%d"),
}
Record = tuple[Line, Event | InvalidEventError]
OnBytes = Callable[[int], None]


def read_jsonl(path: Path, on_bytes: OnBytes = lambda _: None) -> Iterator[Record]:
    for line in _lines(path, on_bytes):
        try:
            yield line, parse_event(line.raw)
        except InvalidEventError as error:
            yield line, error


def read_csv(path: Path, layout: CsvLayout, on_bytes: OnBytes = lambda _: None
             ) -> Iterator[Record]:
    names: list[str] | None = None
    pending: tuple[Line, Event | InvalidEventError, str | None] | None = None  # its order id
    for line in _lines(path, on_bytes):
        order_id = None
        try:
            cells = _split(line.raw.decode(), layout.delimiter)
            if names is None and _is_header(cells, layout.header):
                names = [c.strip() for c in cells]
                continue
            fields = _fields(cells, names, layout, f"{path.name}:{line.number}")
            order_id = fields.get("order_id") if "order_id" in layout.mapped(names) \
                and fields.get("type") == "order_completed" else None
            if pending is not None and order_id is not None and order_id == pending[2] \
                    and _line_item(fields, pending[1]):
                first, record, _ = pending  # a line item of the order before: part of it
                pending = Line(first.source, first.number, first.raw + b"\n" + line.raw), \
                    record, order_id
                continue
            if "occurred_at" in fields:
                fields["occurred_at"] = _instant(fields["occurred_at"], layout.date_format,
                                                 layout.zone)
            record: Event | InvalidEventError = event_from_fields(fields)
        except InvalidEventError as error:
            record = error
        except ValueError as error:  # includes UnicodeDecodeError
            record = InvalidEventError(str(error), "invalid_row")
        if pending is not None:
            yield pending[0], pending[1]
        pending = line, record, order_id
    if pending is not None:
        yield pending[0], pending[1]


def _line_item(fields: dict[str, Any], order: Event | InvalidEventError) -> bool:
    """Whether a row of an order's id, after the order's row, is a line item of it: no amount,
    or the order's own (exports that repeat the order's fields on every row)."""
    amount = fields.get("amount")
    if amount is None:
        return True
    try:
        return isinstance(order, OrderCompleted) and float(amount) == order.amount
    except ValueError:
        return False


def _lines(path: Path, on_bytes: OnBytes) -> Iterator[Line]:
    """The non-blank lines of a file, numbered from 1, without their line ending."""
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            on_bytes(len(raw))
            raw = raw.rstrip(b"\r\n")
            if raw.strip():
                yield Line(str(path), number, raw)


def _is_header(cells: list[str], header: bool | None) -> bool:
    if header is None:
        return not any(c.strip().replace(".", "", 1).isdigit() for c in cells)
    return header


def _split(line: str, delimiter: str | None) -> list[str]:
    if delimiter is None:
        return line.split()
    return next(csv.reader(io.StringIO(line), delimiter=delimiter))


def _fields(cells: list[str], names: list[str] | None, layout: CsvLayout,
            fallback_id: str) -> dict[str, Any]:
    by_name = dict(zip(names, cells, strict=False)) if names else {}
    mapping = layout.mapped(names)
    fields: dict[str, Any] = dict(layout.defaults)
    for target, column in mapping.items():
        if isinstance(column, int):
            if column >= len(cells):
                raise ValueError(f"row has {len(cells)} columns, column {column} "
                                 f"({target}) is missing")
            value = cells[column]
        elif column in by_name:
            value = by_name[column]
        else:
            raise ValueError(f"column {column!r} ({target}) is not in the header")
        if value != "":
            fields[target] = value.strip()
    fields.setdefault("event_id", fallback_id)
    if fields.get("type", "").startswith("order_"):
        fields.setdefault("order_id", fields["event_id"])
    return fields


@functools.lru_cache(maxsize=4096)  # files repeat their dates: parsing them is slow
def _instant(text: str, date_format: str | None, zone: tzinfo | None) -> datetime | str:
    """occurred_at as read: by `date_format`, or ISO 8601 (the event contract checks it); one
    without an offset is in `zone` (date_format: UTC by default)."""
    try:
        moment = datetime.strptime(text, date_format) if date_format else \
            datetime.fromisoformat(text.replace("z", "Z"))
    except ValueError:
        if date_format:
            raise ValueError(f"occurred_at: {text!r} does not match the date format "
                             f"{date_format!r}") from None
        return text  # the contract's own error
    if moment.tzinfo is not None:
        return moment
    if zone is None and not date_format:
        raise InvalidEventError(f"occurred_at: {text!r} has no time zone offset: give "
                                "--timezone (e.g. --timezone Asia/Shanghai or UTC) to read it "
                                "as local time", "invalid_field")
    return moment.replace(tzinfo=zone or UTC)


def time_zone(name: str) -> tzinfo:
    """An IANA time zone (or UTC), or ValueError naming it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name!r}: use an IANA name such as "
                         "Asia/Shanghai, Europe/Berlin or UTC") from None


def parse_columns(spec: str) -> dict[str, str | int]:
    """`customer_id=cust,amount=3` -> {"customer_id": "cust", "amount": 3}."""
    mapping: dict[str, str | int] = {}
    for pair in filter(None, (p.strip() for p in spec.split(","))):
        target, sep, column = pair.partition("=")
        if not sep or not target or not column:
            raise ValueError(f"column mapping {pair!r} must look like field=column")
        mapping[target.strip()] = int(column) if column.strip().isdigit() else column.strip()
    return mapping


def csv_layout(file_format: str, columns: dict[str, str | int] | None,
               date_format: str | None, timezone: str | None = None) -> CsvLayout | None:
    """The CSV layout of a `--format`, changed by `--columns`, `--date-format` and `--timezone`;
    None: as is."""
    if not columns and not date_format and not timezone:
        return None
    if timezone is not None:
        time_zone(timezone)  # refused now, not on every row
    base = PRESETS.get(file_format, CsvLayout())
    return CsvLayout(columns=columns or base.columns, defaults=base.defaults, header=base.header,
                     delimiter=base.delimiter, date_format=date_format or base.date_format,
                     timezone=timezone)
