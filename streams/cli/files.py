"""Reads events from JSONL and CSV files, keeping every rejected line with its reason.

CSV rows become events through a column mapping: `field=column` pairs naming, for each event
field, the CSV column (header name or 0-based index) that holds it. Missing fields fall back to
the layout's defaults; a row without an event id gets `<file name>:<line>`, and an order without
an order id uses its event id. The `cdnow` preset reads the CDNOW master file (whitespace
separated: customer id, date YYYYMMDD, number of CDs, dollars; no header) as USD orders.
"""

from __future__ import annotations

import base64
import csv
import functools
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from models.errors import InvalidEventError
from models.events import Event, event_from_fields, parse_event


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
    date_format: str | None = None     # strptime format for dates without offset, read as UTC


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
    for line in _lines(path, on_bytes):
        try:
            cells = _split(line.raw.decode(), layout.delimiter)
            if names is None and _is_header(cells, layout.header):
                names = [c.strip() for c in cells]
                continue
            fields = _fields(cells, names, layout, f"{path.name}:{line.number}")
            yield line, event_from_fields(fields)
        except InvalidEventError as error:
            yield line, error
        except ValueError as error:  # includes UnicodeDecodeError
            yield line, InvalidEventError(str(error), "invalid_row")


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
    mapping = layout.columns or {name: name for name in by_name}
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
    if layout.date_format and "occurred_at" in fields:
        fields["occurred_at"] = _date(fields["occurred_at"], layout.date_format)
    return fields


@functools.lru_cache(maxsize=4096)  # files repeat their dates: strptime is slow
def _date(text: str, date_format: str) -> datetime:
    try:
        moment = datetime.strptime(text, date_format)
    except ValueError:
        raise ValueError(f"occurred_at: {text!r} does not match the date format "
                         f"{date_format!r}") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


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
               date_format: str | None) -> CsvLayout | None:
    """The CSV layout of a `--format`, changed by `--columns` / `--date-format`; None: as is."""
    if not columns and not date_format:
        return None
    base = PRESETS.get(file_format, CsvLayout())
    return CsvLayout(columns=columns or base.columns, defaults=base.defaults, header=base.header,
                     delimiter=base.delimiter, date_format=date_format or base.date_format)
