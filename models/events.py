"""Input events as the engine holds them (frozen msgspec structs, the instant in microseconds),
parsed from JSON (`parse_event`) or from fields.

What is accepted, and why the rest is refused, is the pydantic contract of
models/event_contract.py: every event here passed it. A native event whose fields are plainly
valid takes a faster way: msgspec decodes it and a few exact checks follow, which accept only
what the contract accepts and give the same event (tests/test_events.py compares the two on
generated input). Anything else (Segment calls, other timestamp forms, every invalid input)
goes through pydantic, which says why an input is refused.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, ClassVar

import msgspec

from models import event_contract as contract
from models.errors import InvalidEventError
from models.instants import to_micros

MAX_EVENT_BYTES = 64 * 1024


class _Fact(msgspec.Struct, frozen=True):
    event_id: str
    customer_id: str
    at: int  # occurred_at, in microseconds since the epoch
    type: ClassVar[str]


class OrderCompleted(_Fact, frozen=True):
    type: ClassVar[str] = "order_completed"
    order_id: str
    amount: float
    currency: str


class OrderRefunded(_Fact, frozen=True):
    type: ClassVar[str] = "order_refunded"
    order_id: str
    amount: float | None  # None: a full refund, the rest of the order
    currency: str | None


class OrderCancelled(_Fact, frozen=True):
    type: ClassVar[str] = "order_cancelled"
    order_id: str


class Interaction(_Fact, frozen=True):
    type: ClassVar[str] = "interaction"
    kind: str
    score: float | None = None
    owner: str | None = None  # who made the contact (a sales rep), if said


class CustomerErased(_Fact, frozen=True):
    type: ClassVar[str] = "customer_erased"


OrderEvent = OrderCompleted | OrderRefunded | OrderCancelled
Event = OrderCompleted | OrderRefunded | OrderCancelled | Interaction | CustomerErased
_HELD: dict[str, type[Event]] = {kind.type: kind for kind in (
    OrderCompleted, OrderRefunded, OrderCancelled, Interaction, CustomerErased)}


def parse_event(raw: bytes | str) -> Event:
    """Validate one JSON event (native or Segment) or raise InvalidEventError saying why."""
    if isinstance(raw, str):
        try:
            raw = raw.encode()
        except UnicodeEncodeError as error:
            raise InvalidEventError(f"not valid Unicode: character {error.start} is a lone "
                                    "surrogate", reason="not_utf8") from None
    if len(raw) > MAX_EVENT_BYTES:
        raise InvalidEventError(f"event is {len(raw)} bytes, more than the {MAX_EVENT_BYTES} "
                                "allowed", reason="oversized")
    try:
        text = raw.decode()
    except UnicodeDecodeError as error:
        raise InvalidEventError(f"not UTF-8: byte {error.start} is invalid",
                                reason="not_utf8") from None
    event = _plain(raw)
    return event if event is not None else held(contract.validate_json(text))


def event_from_fields(fields: dict[str, Any]) -> Event:
    """Validate an event given as a mapping (CSV rows, tests)."""
    return held(contract.validate_python(fields))


def held(event: contract.Event) -> Event:
    """The event the engine holds for a validated native event of the contract."""
    fields = dict(vars(event))  # dict(event) first asks the model for `keys`, slowly
    fields["at"] = to_micros(fields.pop("occurred_at"))
    return _HELD[fields.pop("type")](**fields)


# The fast way: only what the contract surely accepts, or None.

_Id = Annotated[str, msgspec.Meta(min_length=1, max_length=contract.MAX_ID_LENGTH)]
_Amount = Annotated[float, msgspec.Meta(ge=0, le=contract.MAX_AMOUNT)] | str
_Score = Annotated[float, msgspec.Meta(ge=-contract.MAX_SCORE, le=contract.MAX_SCORE)] | None
# fullmatch, as the contract's patterns match: no trailing line feed either
_CURRENCY = re.compile(contract.CURRENCY)
_KIND = re.compile(contract.INTERACTION_KIND)
_DECIMAL = re.compile(contract.DECIMAL)
# RFC 3339 in the one form datetime.fromisoformat and pydantic read alike: a `T`, every field in
# range (fromisoformat takes an offset of 05:60 as 06:00, and Python versions differ on 24:00;
# the day of the month is left to it), at most microseconds, an offset in hours and minutes or Z.
_TIMESTAMP = re.compile(r"[0-9]{4}-(?:0[1-9]|1[0-2])-(?:0[1-9]|[12][0-9]|3[01])"
                        r"T(?:[01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](?:\.[0-9]{1,6})?"
                        r"(?:Z|[+-](?:[01][0-9]|2[0-3]):[0-5][0-9])")
_EARLIEST, _LATEST = to_micros(contract.EARLIEST), to_micros(contract.LATEST)


class _Plain(msgspec.Struct, frozen=True, forbid_unknown_fields=True, tag_field="type"):
    event_id: _Id
    customer_id: _Id
    occurred_at: str
    # each kind's `event(at)`: the held event, or None unless the contract surely accepts it


class _PlainOrder(_Plain, frozen=True, tag="order_completed"):
    makes: ClassVar[type[OrderCompleted] | type[OrderRefunded]] = OrderCompleted
    order_id: _Id
    amount: _Amount
    currency: str

    def event(self, at: int) -> Event | None:
        amount = _amount(self.amount)
        if amount is None or _CURRENCY.fullmatch(self.currency) is None or \
                contract.CONTROL.search(self.order_id) is not None:
            return None
        return self.makes(self.event_id, self.customer_id, at, self.order_id, amount,
                          self.currency)


class _PlainRefund(_PlainOrder, frozen=True, tag="order_refunded"):
    makes = OrderRefunded


class _PlainCancel(_Plain, frozen=True, tag="order_cancelled"):
    order_id: _Id

    def event(self, at: int) -> Event | None:
        if contract.CONTROL.search(self.order_id) is not None:
            return None
        return OrderCancelled(self.event_id, self.customer_id, at, self.order_id)


class _PlainInteraction(_Plain, frozen=True, tag="interaction"):
    kind: str
    score: _Score = None
    owner: _Id | None = None

    def event(self, at: int) -> Event | None:
        if _KIND.fullmatch(self.kind) is None or \
                self.owner is not None and contract.CONTROL.search(self.owner) is not None:
            return None
        return Interaction(self.event_id, self.customer_id, at, self.kind, self.score,
                           self.owner)


class _PlainErasure(_Plain, frozen=True, tag="customer_erased"):
    def event(self, at: int) -> Event | None:
        return CustomerErased(self.event_id, self.customer_id, at)


_DECODER = msgspec.json.Decoder(_PlainOrder | _PlainRefund | _PlainCancel | _PlainInteraction
                                | _PlainErasure)


def _plain(raw: bytes) -> Event | None:
    try:
        plain = _DECODER.decode(raw)
    except (msgspec.DecodeError, RecursionError):  # msgspec.ValidationError is a DecodeError
        return None
    if contract.CONTROL.search(plain.event_id + plain.customer_id) is not None or \
            _TIMESTAMP.fullmatch(plain.occurred_at) is None:
        return None
    try:
        at = to_micros(datetime.fromisoformat(plain.occurred_at))
    except ValueError:
        return None
    return plain.event(at) if _EARLIEST <= at < _LATEST else None


def _amount(amount: float | str) -> float | None:
    if isinstance(amount, float):
        return amount
    if _DECIMAL.fullmatch(amount) is None:
        return None
    value = float(amount)
    return value if value <= contract.MAX_AMOUNT else None
