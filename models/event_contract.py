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
    model_validator,
)
from pydantic_core import PydanticCustomError

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
    """A refund of `amount`, or without one a full refund: what is left of the order."""

    model_config = ConfigDict(json_schema_extra={
        "dependentRequired": {"amount": ["currency"], "currency": ["amount"]}})
    type: Literal["order_refunded"] = "order_refunded"
    order_id: Identifier
    amount: Amount | None = None
    currency: Currency | None = None

    @model_validator(mode="after")
    def _amount_in_a_currency(self) -> OrderRefunded:
        nulls = [f for f in ("amount", "currency")
                 if getattr(self, f) is None and f in self.model_fields_set]
        if nulls:
            raise ValueError(f"{nulls[0]} is null: a full refund leaves amount and currency "
                             "out")
        if (self.amount is None) != (self.currency is None):
            raise PydanticCustomError("missing", "amount and currency go together: both for a "
                                                 "partial refund, neither for a full one")
        return self


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


def _id_text(value: Any) -> Any:
    """Segment sends ids as numbers too (`userId: 42`): read as their decimal text."""
    return str(value) if isinstance(value, int) and not isinstance(value, bool) else value


SegmentId = Annotated[Identifier, BeforeValidator(_id_text)]
SegmentCurrency = Annotated[Currency, BeforeValidator(
    lambda value: value.upper() if isinstance(value, str) else value)]


class SegmentProduct(BaseModel):
    """A product of an order, read only when the order's amount is its products' sum."""

    model_config = ConfigDict(frozen=True, extra="allow")

    price: Amount
    quantity: Annotated[int, Field(ge=1, le=1_000_000)] = 1


_PRODUCTS: TypeAdapter[list[SegmentProduct]] = TypeAdapter(list[SegmentProduct])


class SegmentProperties(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow")

    order_id: SegmentId | None = None
    revenue: Amount | None = None
    total: Amount | None = None
    currency: SegmentCurrency = "USD"
    products: list[Any] | None = None  # (read as SegmentProduct where needed)


# Segment e-commerce spec v2 events that are not orders: interactions of the kind named so.
SEGMENT_INTERACTIONS = ("Products Searched", "Product List Viewed", "Product List Filtered",
                        "Promotion Viewed", "Promotion Clicked", "Product Clicked",
                        "Product Viewed", "Product Added", "Product Removed", "Cart Viewed",
                        "Checkout Started", "Checkout Step Viewed", "Checkout Step Completed",
                        "Payment Info Entered", "Order Updated", "Coupon Entered",
                        "Coupon Applied", "Coupon Denied", "Coupon Removed",
                        "Product Added to Wishlist", "Product Removed from Wishlist",
                        "Wishlist Product Added to Cart", "Product Shared", "Cart Shared",
                        "Product Reviewed")
SEGMENT_ORDERS = ("Order Completed", "Order Refunded", "Order Cancelled")
SegmentEvent = Literal[SEGMENT_ORDERS + SEGMENT_INTERACTIONS]  # type: ignore[valid-type]


class SegmentTrack(BaseModel):
    """A Segment e-commerce spec v2 track call: an order's, or an interaction of the kind the
    event names (`Product Viewed` -> `product_viewed`); other Segment fields are ignored."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    type: Literal["track"]
    event: SegmentEvent
    messageId: SegmentId
    userId: SegmentId
    timestamp: Timestamp
    properties: SegmentProperties = SegmentProperties()

    def to_native(self) -> Event:
        props = self.properties
        common = {"event_id": self.messageId, "customer_id": self.userId,
                  "occurred_at": self.timestamp}
        if self.event in SEGMENT_INTERACTIONS:
            return Interaction(**common, kind=segment_kind(self.event))
        if props.order_id is None:
            raise InvalidEventError(f"Segment {self.event!r} needs properties.order_id",
                                    reason="missing_field")
        common["order_id"] = props.order_id
        if self.event == "Order Cancelled":
            return OrderCancelled(**common)
        amount = props.revenue if props.revenue is not None else props.total
        if amount is None and props.products:  # (an empty list: none given)
            try:
                products = _PRODUCTS.validate_python(props.products)
            except ValidationError as error:
                raise InvalidEventError("Segment {!r} without revenue or total: {}".format(
                    self.event, describe(error, "properties.products")),
                    reason=_reason(error)) from None
            amount = sum(p.price * p.quantity for p in products)
        if self.event == "Order Refunded":  # neither: a full refund
            return OrderRefunded(**common) if amount is None else \
                OrderRefunded(**common, amount=amount, currency=props.currency)
        if amount is None:
            raise InvalidEventError(f"Segment {self.event!r} needs properties.revenue, "
                                    "properties.total or properties.products",
                                    reason="missing_field")
        return OrderCompleted(**common, amount=amount, currency=props.currency)


def segment_kind(event: str) -> str:
    """`Product Added to Wishlist` -> `product_added_to_wishlist`."""
    return event.lower().replace(" ", "_")


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


def describe(error: ValidationError, within: str = "") -> str:
    """One line per problem: `field: what was wrong (got value)`; `within` names where the
    validated value is."""
    parts = []
    for item in error.errors(include_url=False):
        location = ".".join(str(p) for p in (*filter(None, [within]), *item["loc"])
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
