"""The input event contract (design section 3): pydantic models of the native order and
interaction events and of the Segment adapter, their JSON Schema, and why an input is refused.

The engine holds the events as models/events.py defines them; every one of them is valid here.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    WithJsonSchema,
)

from models.errors import InvalidEventError

MAX_ID_LENGTH = 128
MAX_AMOUNT = 1e12
MAX_SCORE = 1e6
# Patterns, whole-string: a decimal-string amount, a currency, an interaction kind.
DECIMAL = r"[0-9]+(\.[0-9]+)?"
CURRENCY = r"[A-Z]{3}"
INTERACTION_KIND = r"[a-z][a-z0-9_]{0,31}"
EARLIEST = datetime.fromisoformat("1970-01-01T00:00:00+00:00")
LATEST = datetime.fromisoformat("2200-01-01T00:00:00+00:00")


# C0 controls (NUL, tab, newline, ...), DEL, C1 controls and the Unicode line and paragraph
# separators: never part of an id, and in a log line, a header or a terminal they forge lines.
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_CONTROL_NAMES = {"\x00": "NUL", "\t": "tab", "\n": "line feed", "\r": "carriage return",
                  "\x1b": "escape", "\x7f": "DEL", "\x85": "next line",
                  "\u2028": "line separator", "\u2029": "paragraph separator"}


def _no_control_characters(value: str) -> str:
    found = CONTROL.search(value)
    if found:
        char = found.group()
        name = _CONTROL_NAMES.get(char, "control character")
        raise ValueError(f"must not contain control characters: U+{ord(char):04X} ({name}) at "
                         f"index {found.start()}")
    return value


Identifier = Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH, json_schema_extra={
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f\\u2028\\u2029]*$"}),
    AfterValidator(_no_control_characters)]


def _not_bool(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("amount must be a number or a decimal string, not a boolean")
    return value


# The published schema (tierstream schema) also names the decimal strings the parser accepts.
_AMOUNT_SCHEMA = {"anyOf": [{"type": "number", "minimum": 0, "maximum": MAX_AMOUNT},
                            {"type": "string", "pattern": f"^{DECIMAL}$"}],
                  "description": "a number or decimal string, 0 to 1e12"}
Amount = Annotated[float, BeforeValidator(_not_bool),
                   Field(ge=0, le=MAX_AMOUNT, allow_inf_nan=False),
                   WithJsonSchema(_AMOUNT_SCHEMA, mode="validation")]
Currency = Annotated[str, Field(pattern=f"^{CURRENCY}$")]
InteractionKind = Annotated[str, Field(pattern=f"^{INTERACTION_KIND}$")]


def _plausible(moment: datetime) -> datetime:
    if not EARLIEST <= moment < LATEST:
        raise ValueError(f"timestamp {moment.isoformat()} is outside 1970-01-01..2200-01-01")
    return moment


def _text_or_datetime(value: Any) -> Any:
    if not isinstance(value, str | datetime):
        raise ValueError("timestamp must be an RFC 3339 string with an offset")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_text_or_datetime), AfterValidator(_plausible),
                      Field(description="RFC 3339 with an offset, 1970-01-01 to 2200-01-01",
                            json_schema_extra={"pattern": "([Zz]|[+-][0-9]{2}:[0-9]{2})$"})]


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    event_id: Identifier
    customer_id: Identifier
    occurred_at: Timestamp


class OrderCompleted(_Event):
    type: Literal["order_completed"] = "order_completed"
    order_id: Identifier
    amount: Amount
    currency: Currency


class OrderRefunded(_Event):
    type: Literal["order_refunded"] = "order_refunded"
    order_id: Identifier
    amount: Amount
    currency: Currency


class OrderCancelled(_Event):
    type: Literal["order_cancelled"] = "order_cancelled"
    order_id: Identifier


class Interaction(_Event):
    type: Literal["interaction"] = "interaction"
    kind: InteractionKind
    score: Annotated[float, Field(allow_inf_nan=False, ge=-MAX_SCORE, le=MAX_SCORE)] | None = None
    owner: Identifier | None = None  # who made the contact (a sales rep): follow-ups name it


class CustomerErased(_Event):
    type: Literal["customer_erased"] = "customer_erased"


class SegmentProperties(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    order_id: Identifier
    revenue: Amount | None = None
    total: Amount | None = None
    currency: Currency = "USD"


class SegmentTrack(BaseModel):
    """A Segment e-commerce spec v2 track call for an order; other Segment fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["track"]
    event: Literal["Order Completed", "Order Refunded", "Order Cancelled"]
    messageId: Identifier
    userId: Identifier
    timestamp: Timestamp
    properties: SegmentProperties

    def to_native(self) -> OrderEvent:
        props = self.properties
        common = {"event_id": self.messageId, "customer_id": self.userId,
                  "occurred_at": self.timestamp, "order_id": props.order_id}
        if self.event == "Order Cancelled":
            return OrderCancelled(**common)
        amount = props.revenue if props.revenue is not None else props.total
        if amount is None:
            raise InvalidEventError(f"Segment {self.event!r} needs properties.revenue or "
                                    "properties.total", reason="missing_field")
        model = OrderCompleted if self.event == "Order Completed" else OrderRefunded
        return model(**common, amount=amount, currency=props.currency)


OrderEvent = OrderCompleted | OrderRefunded | OrderCancelled
Event = OrderCompleted | OrderRefunded | OrderCancelled | Interaction | CustomerErased
_Wire = Annotated[Event | SegmentTrack, Field(discriminator="type")]
_ADAPTER: TypeAdapter[Any] = TypeAdapter(_Wire)
EVENT_TYPES = ("order_completed", "order_refunded", "order_cancelled", "interaction",
               "customer_erased")


def json_schema() -> dict[str, Any]:
    """The JSON Schema (validation mode) of what `parse_event` accepts: native or Segment."""
    return _ADAPTER.json_schema()


def validate_json(text: str) -> Event:
    """The native event of one JSON event (native or Segment), or InvalidEventError saying why."""
    try:
        return _native(_ADAPTER.validate_json(text))
    except ValidationError as error:
        raise InvalidEventError(describe(error), reason=_reason(error)) from None


def validate_python(fields: dict[str, Any]) -> Event:
    """The native event of an event given as a mapping (CSV rows, tests)."""
    try:
        return _native(_ADAPTER.validate_python(fields))
    except ValidationError as error:
        raise InvalidEventError(describe(error), reason=_reason(error)) from None


def _native(event: Event | SegmentTrack) -> Event:
    return event.to_native() if isinstance(event, SegmentTrack) else event


def describe(error: ValidationError) -> str:
    """One line per problem: `field: what was wrong (got value)`."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in item["loc"]
                            if p not in EVENT_TYPES and p not in ("track", "function-after"))
        got = item.get("input")
        shown = "" if item["type"] in ("missing", "json_invalid") or isinstance(got, dict) \
            else f" (got {_short(got)})"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "union_tag_invalid":
            msg = (f"unknown event type {got.get('type')!r}; expected one of "
                   f"{', '.join(EVENT_TYPES)} or a Segment 'track' call")
            shown = ""
        elif item["type"] == "union_tag_not_found":
            msg = "field 'type' is missing"
        parts.append(f"{location + ': ' if location else ''}{msg}{shown}")
    return "; ".join(parts)


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _reason(error: ValidationError) -> str:
    kinds = {item["type"] for item in error.errors(include_url=False)}
    for kind, reason in (("json_invalid", "not_json"), ("union_tag_invalid", "unknown_type"),
                         ("union_tag_not_found", "missing_type"), ("missing", "missing_field"),
                         ("extra_forbidden", "unknown_field")):
        if kind in kinds:
            return reason
    return "invalid_field"
