"""Hypothesis strategies of malformed input messages, each with the dead-letter reason it must get.

A strategy per kind of damage draws a `Malformed` (message key, value bytes, expected reason, and
the field the error message must name). Most damage a valid event drawn by `valid_events`; the
checks are parsing (`models.events.parse_event`), then admission (`rules.admission.admit`: the
currency, the key, the future), as the worker and replay run them.
`corpus()` draws a fixed corpus for the integration tests: each kind's examples come from a
derandomized Hypothesis run, so the same Hypothesis version always gives the same bytes.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta
from typing import Any, NamedTuple

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from models.event_contract import MAX_AMOUNT
from models.events import MAX_EVENT_BYTES

FUTURE = datetime(2150, 1, 1, tzinfo=UTC)  # valid by the contract, far ahead of any wall clock


class Malformed(NamedTuple):
    kind: str
    key: bytes | None
    value: bytes
    reason: str
    field: str | None  # the error message must name it


ids = st.text("abcdefghijklmnopqrstuvwxyz0123456789-", min_size=1, max_size=20)
moments = st.datetimes(datetime(2021, 1, 1), datetime(2021, 12, 31), timezones=st.just(UTC))


@st.composite
def valid_events(draw: st.DrawFn) -> dict[str, Any]:
    """A valid native event of any type (before damage)."""
    base = {"event_id": "bad-" + draw(ids), "customer_id": "bad-" + draw(ids),
            "occurred_at": draw(moments).isoformat()}
    kind = draw(st.sampled_from(["order_completed", "order_refunded", "order_cancelled",
                                 "interaction"]))
    if kind == "interaction":
        return {**base, "type": kind, "kind": draw(st.sampled_from(["visit", "complaint"]))}
    event = {**base, "type": kind, "order_id": draw(ids)}
    if kind != "order_cancelled":
        event.update(amount=draw(st.floats(0, 5000, allow_nan=False)), currency="CNY")
    return event


def _dump(event: dict[str, Any]) -> bytes:
    return json.dumps(event).encode()


def _keyed(event: dict[str, Any], value: bytes, kind: str, reason: str,
           field: str | None) -> Malformed:
    key = event["customer_id"].encode() if isinstance(event.get("customer_id"), str) else None
    return Malformed(kind, key or b"bad-key", value, reason, field)


@st.composite
def truncated(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    raw = _dump(event)
    return _keyed(event, raw[:draw(st.integers(0, len(raw) - 1))], "truncated", "not_json", None)


containers = st.one_of(st.lists(st.integers(), max_size=3),
                       st.dictionaries(ids, st.integers(), max_size=2))
wrong_values = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), containers)
not_amounts = st.one_of(st.booleans(), st.none(), containers,
                        st.text("abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=8))


@st.composite
def wrong_type(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    field = draw(st.sampled_from(["event_id", "customer_id", "occurred_at"]
                                 + (["order_id"] if "order_id" in event else [])
                                 + (["amount"] if "amount" in event else [])))
    # an amount may be an integer or a decimal string, an identifier or timestamp never
    event[field] = draw(not_amounts if field == "amount" else wrong_values)
    return _keyed(event, _dump(event), "wrong_type", "invalid_field", field)


@st.composite
def bad_amount(draw: st.DrawFn) -> Malformed:
    """NaN, infinities, negative and huge amounts, as JSON numbers or decimal strings."""
    event = draw(valid_events().filter(lambda e: "amount" in e))
    amount = draw(st.one_of(st.sampled_from([math.nan, math.inf, -math.inf]),
                            st.floats(max_value=-1e-9, allow_nan=False, allow_infinity=False),
                            st.floats(min_value=MAX_AMOUNT * 1.0001, allow_nan=False,
                                      allow_infinity=False),
                            st.integers(min_value=int(MAX_AMOUNT) + 1)))
    event["amount"] = str(amount) if draw(st.booleans()) else amount
    return _keyed(event, _dump(event), "bad_amount", "invalid_field", "amount")


@st.composite
def bad_timestamp(draw: st.DrawFn) -> Malformed:
    """No offset, not a date, before 1970 or from 2200 on, epoch numbers."""
    event = draw(valid_events())
    at = draw(moments)
    event["occurred_at"] = draw(st.one_of(
        st.just(at.replace(tzinfo=None).isoformat()),
        st.text("abc:-T ", max_size=12),
        st.datetimes(datetime(1, 1, 1), datetime(1969, 12, 31), timezones=st.just(UTC))
        .map(datetime.isoformat),
        st.datetimes(datetime(2200, 1, 2), timezones=st.just(UTC)).map(datetime.isoformat),
        st.integers(0, 2**40), st.just(at.isoformat().replace("+00:00", "+25:00"))))
    return _keyed(event, _dump(event), "bad_timestamp", "invalid_field", "occurred_at")


@st.composite
def oversized(draw: st.DrawFn) -> Malformed:
    """A valid event padded past 64 KiB (with whitespace, so only its size is wrong)."""
    event = draw(valid_events())
    raw = _dump(event)
    padding = MAX_EVENT_BYTES - len(raw) + draw(st.integers(1, 4096))
    return _keyed(event, raw[:-1] + b" " * padding + b"}", "oversized", "oversized", None)


@st.composite
def deeply_nested(draw: st.DrawFn) -> Malformed:
    """Nesting past the JSON parser's depth limit, inside a field or in an extra one."""
    event = draw(valid_events())
    opening, closing = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
    depth = draw(st.integers(300, 50_000 // (len(opening) + 1)))  # stays under 64 KiB
    field = draw(st.sampled_from(["customer_id", "x_extra"]))
    damaged = {**event, field: "NESTED"}
    value = _dump(damaged).replace(b'"NESTED"',
                                   (opening * depth + "1" + closing * depth).encode())
    return _keyed(event, value, "deeply_nested", "not_json", None)


@st.composite
def nested(draw: st.DrawFn) -> Malformed:
    """Shallow nesting where a plain value belongs."""
    event = draw(valid_events())
    field = draw(st.sampled_from(["order_id", "event_id"] if "order_id" in event
                                 else ["event_id"]))
    event[field] = draw(st.recursive(st.lists(st.integers(), min_size=1),
                                     lambda inner: st.lists(inner, min_size=1, max_size=2),
                                     max_leaves=8))
    return _keyed(event, _dump(event), "nested", "invalid_field", field)


INVALID_UTF8 = [b"\xff", b"\xfe\xfe", b"\xc3\x28", b"\x80", b"\xe2\x82", b"\xed\xa0\x80",
                b"\xf8\x88\x80\x80\x80", b"\xc0\xaf"]


@st.composite
def invalid_utf8(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    raw = _dump(event)
    at = draw(st.integers(0, len(raw)))
    bad = draw(st.sampled_from(INVALID_UTF8))
    return _keyed(event, raw[:at] + bad + raw[at:], "invalid_utf8", "not_utf8", None)


CONTROL_CHARACTERS = [chr(c) for c in (*range(0x20), 0x7F, *range(0x80, 0xA0), 0x2028, 0x2029)]


@st.composite
def control_character(draw: st.DrawFn) -> Malformed:
    """A C0 or C1 control character, DEL or a Unicode line or paragraph separator inside an id
    (JSON-escaped, or as raw UTF-8 where JSON allows it); the message key stays the customer id."""
    event = draw(valid_events())
    field = draw(st.sampled_from(["customer_id", "event_id"]
                                 + (["order_id"] if "order_id" in event else [])))
    at = draw(st.integers(0, len(event[field])))
    event[field] = event[field][:at] + draw(st.sampled_from(CONTROL_CHARACTERS)) + \
        event[field][at:]
    value = json.dumps(event, ensure_ascii=draw(st.booleans())).encode()
    return _keyed(event, value, "control_character", "invalid_field", field)


@st.composite
def missing_field(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    field = draw(st.sampled_from(sorted(set(event) - {"type"})))
    del event[field]
    return _keyed(event, _dump(event), "missing_field", "missing_field", field)


@st.composite
def unknown_field(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    field = "x_" + draw(ids)
    event[field] = draw(st.one_of(st.integers(), st.text(max_size=5), st.none()))
    return _keyed(event, _dump(event), "unknown_field", "unknown_field", field)


@st.composite
def unknown_type(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events())
    event["type"] = draw(st.text(min_size=1, max_size=12).filter(
        lambda t: t not in ("order_completed", "order_refunded", "order_cancelled",
                            "interaction", "customer_erased", "track")))
    return _keyed(event, _dump(event), "unknown_type", "unknown_type", None)


@st.composite
def unknown_currency(draw: st.DrawFn) -> Malformed:
    event = draw(valid_events().filter(lambda e: "currency" in e))
    event["currency"] = draw(st.sampled_from(["XAU", "JPY", "GBP", "ZZZ"]))  # no rate
    return _keyed(event, _dump(event), "unknown_currency", "unknown_currency", None)


@st.composite
def wrong_key(draw: st.DrawFn) -> Malformed:
    """A valid event whose message key is not its customer id."""
    event = draw(valid_events())
    key = draw(st.one_of(st.none(), ids.map(str.encode)).filter(
        lambda k: k != event["customer_id"].encode()))
    return Malformed("wrong_key", key, _dump(event), "wrong_key", None)


@st.composite
def future_timestamp(draw: st.DrawFn) -> Malformed:
    """Valid by the contract (before 2200) but far ahead of the wall clock."""
    event = draw(valid_events())
    event["occurred_at"] = (FUTURE + timedelta(days=draw(st.integers(0, 3650)))).isoformat()
    return _keyed(event, _dump(event), "future_timestamp", "future_timestamp", None)


KINDS = {s.__name__: s for s in (truncated, wrong_type, bad_amount, bad_timestamp, oversized,
                                 deeply_nested, nested, invalid_utf8, control_character,
                                 missing_field,
                                 unknown_field, unknown_type, unknown_currency, wrong_key,
                                 future_timestamp)}


def corpus(per_kind: int) -> list[Malformed]:
    """`per_kind` examples of every kind, the same on every run (derandomized Hypothesis)."""
    return [example for strategy in KINDS.values() for example in _draw(strategy(), per_kind)]


def _draw(strategy: st.SearchStrategy[Malformed], count: int) -> list[Malformed]:
    drawn: list[Malformed] = []

    @settings(max_examples=count, derandomize=True, database=None, phases=[Phase.generate],
              deadline=None, suppress_health_check=list(HealthCheck))
    @given(strategy)
    def gather(example: Malformed) -> None:
        drawn.append(example)

    gather()
    return drawn[:count]
