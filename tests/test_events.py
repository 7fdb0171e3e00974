"""Input event contract (design section 3): what parse_event accepts and why it rejects the rest;
its fast way for plainly valid native events accepts only what the contract does, alike."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from models import event_contract, events
from models.errors import InvalidEventError, TierEngineError
from models.events import (
    MAX_EVENT_BYTES,
    CustomerErased,
    Interaction,
    OrderCancelled,
    OrderCompleted,
    OrderRefunded,
    event_from_fields,
    parse_event,
)
from models.instants import to_micros

MIDNIGHT = to_micros(datetime(2024, 1, 1, tzinfo=UTC))

ORDER = {"event_id": "e-1", "type": "order_completed", "customer_id": "c-1",
         "occurred_at": "2024-01-01T00:00:00Z", "order_id": "o-1", "amount": "19.99",
         "currency": "CNY"}


def with_(**changes: Any) -> dict[str, Any]:
    """ORDER with some fields replaced; a value of ... removes the field."""
    fields = {**ORDER, **changes}
    return {k: v for k, v in fields.items() if v is not ...}


def segment(event: str, **properties: Any) -> dict[str, Any]:
    return {"type": "track", "event": event, "messageId": "msg-1", "userId": "user-1",
            "timestamp": "2024-01-01T08:00:00+08:00", "anonymousId": "anon-9",
            "context": {"library": {"name": "analytics.js"}},
            "properties": {"order_id": "o-9", **properties}}


def as_json(fields: dict[str, Any]) -> str:
    return json.dumps(fields, ensure_ascii=False)


VALID = [
    # (case, raw input, expected class, expected fields; occurred_at as epoch micros)
    ("decimal string amount", as_json(ORDER), OrderCompleted,
     {"event_id": "e-1", "customer_id": "c-1", "order_id": "o-1", "amount": 19.99,
      "currency": "CNY", "occurred_at": MIDNIGHT}),
    ("integer amount", as_json(with_(amount=42)), OrderCompleted, {"amount": 42.0}),
    ("float amount", as_json(with_(amount=0.5)), OrderCompleted, {"amount": 0.5}),
    ("zero amount", as_json(with_(amount="0")), OrderCompleted, {"amount": 0.0}),
    ("largest amount", as_json(with_(amount="1000000000000")), OrderCompleted,
     {"amount": 1e12}),
    ("positive offset", as_json(with_(occurred_at="2024-01-01T08:00:00+08:00")),
     OrderCompleted, {"occurred_at": MIDNIGHT}),
    ("negative offset", as_json(with_(occurred_at="2023-12-31T19:00:00-05:00")),
     OrderCompleted, {"occurred_at": MIDNIGHT}),
    ("microseconds", as_json(with_(occurred_at="2024-01-01T00:00:00.000001+00:00")),
     OrderCompleted, {"occurred_at": MIDNIGHT + 1}),
    ("unicode customer id", as_json(with_(customer_id="客户-7")), OrderCompleted,
     {"customer_id": "客户-7"}),
    ("128-char event id", as_json(with_(event_id="e" * 128)), OrderCompleted,
     {"event_id": "e" * 128}),
    ("refund", as_json(with_(type="order_refunded", amount="5")), OrderRefunded,
     {"order_id": "o-1", "amount": 5.0}),
    ("cancellation", as_json(with_(type="order_cancelled", amount=..., currency=...)),
     OrderCancelled, {"order_id": "o-1"}),
    ("interaction with score", as_json({"event_id": "i-1", "type": "interaction",
                                        "customer_id": "c-1", "kind": "survey", "score": 9,
                                        "occurred_at": "2024-01-01T00:00:00Z"}),
     Interaction, {"kind": "survey", "score": 9.0}),
    ("interaction of an open-set kind", as_json(
        {"event_id": "i-2", "type": "interaction", "customer_id": "c-1",
         "kind": "live_chat", "occurred_at": "2024-01-01T00:00:00Z"}),
     Interaction, {"kind": "live_chat", "score": None}),
    ("erasure", as_json({"event_id": "x-1", "type": "customer_erased", "customer_id": "c-1",
                         "occurred_at": "2024-01-01T00:00:00Z"}), CustomerErased,
     {"customer_id": "c-1"}),
    ("segment completed, revenue", as_json(segment("Order Completed", revenue="30.50",
                                                   currency="EUR", products=[{"sku": "x"}])),
     OrderCompleted, {"event_id": "msg-1", "customer_id": "user-1", "order_id": "o-9",
                      "amount": 30.5, "currency": "EUR", "occurred_at": MIDNIGHT}),
    ("segment completed, total only", as_json(segment("Order Completed", total=12)),
     OrderCompleted, {"amount": 12.0, "currency": "USD"}),
    ("segment numeric ids, lower-case currency", as_json({
        **segment("Order Completed", total=12, currency="cny", order_id=9001),
        "userId": 42, "messageId": 7}),
     OrderCompleted, {"customer_id": "42", "order_id": "9001", "event_id": "7",
                      "currency": "CNY", "amount": 12.0}),
    ("segment refund of products", as_json(segment(
        "Order Refunded", products=[{"sku": "a", "price": 10, "quantity": 2}, {"price": "2.5"}])),
     OrderRefunded, {"amount": 22.5, "currency": "USD"}),
    ("segment full refund", as_json(segment("Order Refunded")),
     OrderRefunded, {"order_id": "o-9", "amount": None, "currency": None}),
    ("native full refund", as_json({
        "type": "order_refunded", "event_id": "e1", "customer_id": "c1", "order_id": "o1",
        "occurred_at": "2026-01-05T10:00:00Z"}),
     OrderRefunded, {"amount": None, "currency": None}),
    ("segment product viewed", as_json(segment("Product Viewed", product_id="p-1")),
     Interaction, {"kind": "product_viewed", "customer_id": "user-1", "event_id": "msg-1"}),
    ("segment checkout started, no properties", as_json(
        {k: v for k, v in segment("Checkout Started").items() if k != "properties"}),
     Interaction, {"kind": "checkout_started"}),
    ("segment revenue wins over total", as_json(segment("Order Completed", revenue=10,
                                                        total=12, currency="CNY")),
     OrderCompleted, {"amount": 10.0, "currency": "CNY"}),
    ("segment refunded", as_json(segment("Order Refunded", revenue=3, currency="USD")),
     OrderRefunded, {"event_id": "msg-1", "order_id": "o-9", "amount": 3.0}),
    ("segment cancelled", as_json(segment("Order Cancelled")), OrderCancelled,
     {"event_id": "msg-1", "customer_id": "user-1", "order_id": "o-9",
      "occurred_at": MIDNIGHT}),
]


@pytest.mark.parametrize(("raw", "kind", "expected"), [case[1:] for case in VALID],
                         ids=[case[0] for case in VALID])
def test_valid_events_parse(raw: str, kind: type, expected: dict[str, Any]) -> None:
    event = parse_event(raw)
    assert type(event) is kind
    seen = {name: event.at if name == "occurred_at" else getattr(event, name)
            for name in expected}
    assert seen == expected


@pytest.mark.parametrize("raw", [case[1] for case in VALID], ids=[case[0] for case in VALID])
def test_bytes_and_str_parse_alike(raw: str) -> None:
    assert parse_event(raw.encode()) == parse_event(raw)


def test_fields_may_be_native_python_values() -> None:
    event = event_from_fields(with_(amount=Decimal("19.99"),
                                    occurred_at=datetime(2024, 1, 1, 8, tzinfo=timezone(
                                        timedelta(hours=8)))))
    assert isinstance(event, OrderCompleted)
    assert (event.amount, event.at) == (19.99, MIDNIGHT)


def test_event_at_the_size_limit_is_accepted() -> None:
    raw = as_json(ORDER)
    padded = raw + " " * (MAX_EVENT_BYTES - len(raw.encode()))
    assert len(padded.encode()) == MAX_EVENT_BYTES
    assert parse_event(padded) == parse_event(raw)


def nested(depth: int) -> str:
    return as_json(with_(order_id=...))[:-1] + ', "order_id": ' + "[" * depth + "]" * depth + "}"


MALFORMED = [
    # (case, raw input, reason, fragment of the message)
    ("not JSON", b"{order: 1}", "not_json", "Invalid JSON"),
    ("truncated JSON", as_json(ORDER)[:-5], "not_json", "Invalid JSON"),
    ("invalid UTF-8", b'{"event_id": "\xff\xfe"}', "not_utf8", "UTF-8"),
    ("oversized", as_json(ORDER) + " " * MAX_EVENT_BYTES, "oversized", str(MAX_EVENT_BYTES)),
    ("oversized by one byte", as_json(ORDER) + " " * (MAX_EVENT_BYTES - len(as_json(ORDER)) + 1),
     "oversized", str(MAX_EVENT_BYTES)),
    ("deeply nested", nested(5000), "not_json", "recursion limit"),
    ("nested in a field", nested(3), "invalid_field", "order_id"),
    ("JSON array", "[1, 2]", "invalid_field", "object"),
    ("JSON null", "null", "invalid_field", "object"),
    ("unknown type", as_json(with_(type="order_shipped")), "unknown_type", "'order_shipped'"),
    ("missing type", as_json(with_(type=...)), "missing_type", "'type' is missing"),
    ("missing order_id", as_json(with_(order_id=...)), "missing_field", "order_id"),
    ("missing occurred_at", as_json(with_(occurred_at=...)), "missing_field", "occurred_at"),
    ("missing currency", as_json(with_(currency=...)), "missing_field", "currency"),
    ("extra field", as_json(with_(coupon="SPRING")), "unknown_field", "coupon"),
    ("amount on a cancellation", as_json(with_(type="order_cancelled", currency=...)),
     "unknown_field", "amount"),
    ("negative amount", as_json(with_(amount=-0.01)), "invalid_field", "amount"),
    ("negative decimal string", as_json(with_(amount="-5")), "invalid_field", "amount"),
    ("NaN literal", as_json(ORDER).replace('"19.99"', "NaN"), "invalid_field", "amount"),
    ("NaN string", as_json(with_(amount="NaN")), "invalid_field", "amount"),
    ("Infinity literal", as_json(ORDER).replace('"19.99"', "Infinity"), "invalid_field",
     "amount"),
    ("Infinity string", as_json(with_(amount="Infinity")), "invalid_field", "amount"),
    ("huge amount", as_json(with_(amount=1e12 + 1)), "invalid_field", "amount"),
    ("huge decimal string", as_json(with_(amount="2e12")), "invalid_field", "amount"),
    ("boolean amount", as_json(with_(amount=True)), "invalid_field", "not a boolean"),
    ("amount as words", as_json(with_(amount="twelve")), "invalid_field", "amount"),
    ("timestamp without offset", as_json(with_(occurred_at="2024-01-01T00:00:00")),
     "invalid_field", "occurred_at"),
    ("date without time", as_json(with_(occurred_at="2024-01-01")), "invalid_field",
     "occurred_at"),
    ("timestamp in year 2500", as_json(with_(occurred_at="2500-01-01T00:00:00Z")),
     "invalid_field", "occurred_at"),
    ("timestamp before 1970", as_json(with_(occurred_at="1969-12-31T23:59:59Z")),
     "invalid_field", "occurred_at"),
    ("lowercase currency", as_json(with_(currency="cny")), "invalid_field", "currency"),
    ("four-letter currency", as_json(with_(currency="CNYY")), "invalid_field", "currency"),
    ("empty customer_id", as_json(with_(customer_id="")), "invalid_field", "customer_id"),
    ("numeric customer_id", as_json(with_(customer_id=7)), "invalid_field", "customer_id"),
    ("129-char event_id", as_json(with_(event_id="e" * 129)), "invalid_field", "event_id"),
    ("interaction kind with spaces", as_json({"event_id": "i", "type": "interaction",
                                              "customer_id": "c", "kind": "Email Open",
                                              "occurred_at": "2024-01-01T00:00:00Z"}),
     "invalid_field", "kind"),
    ("segment without revenue or total", as_json(segment("Order Completed")),
     "missing_field", "properties.revenue"),
    ("segment other event", as_json(segment("Signed Up")), "invalid_field", "event"),
    ("segment negative revenue", as_json(segment("Order Completed", revenue=-3)),
     "invalid_field", "properties.revenue"),
    ("segment unknown currency", as_json(segment("Order Refunded", total=3, currency="dollars")),
     "invalid_field", "properties.currency"),
    ("segment product without price", as_json(segment("Order Completed", products=[{"sku": "x"}])),
     "missing_field", "properties.products.0.price"),
    ("refund amount without currency", as_json({
        "type": "order_refunded", "event_id": "e1", "customer_id": "c1", "order_id": "o1",
        "occurred_at": "2026-01-05T10:00:00Z", "amount": 5}), "missing_field", "amount and"),
    ("segment without userId", as_json({k: v for k, v in segment("Order Cancelled").items()
                                        if k != "userId"}), "missing_field", "userId"),
]


@pytest.mark.parametrize(("raw", "reason", "fragment"), [case[1:] for case in MALFORMED],
                         ids=[case[0] for case in MALFORMED])
def test_malformed_events_are_rejected_with_a_reason(raw: str | bytes, reason: str,
                                                     fragment: str) -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(raw)
    assert caught.value.reason == reason
    assert fragment in str(caught.value)


def test_rejections_are_value_errors_under_the_root() -> None:
    with pytest.raises(InvalidEventError) as caught:
        event_from_fields(with_(amount=-1))
    assert isinstance(caught.value, ValueError)
    assert isinstance(caught.value, TierEngineError)


def test_message_names_every_bad_field_and_the_value() -> None:
    with pytest.raises(InvalidEventError) as caught:
        parse_event(as_json(with_(amount=-1, currency="cny")))
    message = str(caught.value)
    assert "amount" in message and "(got -1)" in message
    assert "currency" in message and "(got 'cny')" in message


def test_str_with_a_lone_surrogate_is_rejected_not_crashed() -> None:
    # A consumer decoding with errors="surrogateescape" hands parse_event such a str; bad input
    # must become an InvalidEventError (dead letter), never an unexpected exception.
    raw = as_json(ORDER).replace("c-1", "c-\udcff")
    with pytest.raises(InvalidEventError) as caught:
        parse_event(raw)
    assert caught.value.reason == "not_utf8"


# Ids are written to logs, headers, Redis keys and terminals: a control character in one could
# forge a log line or hide what an operator sees. C0 and C1 controls, DEL and the Unicode line and
# paragraph separators are refused in every id; `/`, `..`, `%`, spaces and other unicode are not.
CONTROL = [("\n", "U+000A (line feed)"), ("\x00", "U+0000 (NUL)"), ("\r", "U+000D"),
           ("\t", "U+0009 (tab)"), ("\x1b", "U+001B (escape)"), ("\x1f", "U+001F"),
           ("\x7f", "U+007F (DEL)"), ("\x85", "U+0085"), ("\x9f", "U+009F"),
           ("\u2028", "U+2028 (line separator)"), ("\u2029", "U+2029 (paragraph separator)")]


@pytest.mark.parametrize("field", ["customer_id", "event_id", "order_id"])
@pytest.mark.parametrize(("char", "named"), CONTROL, ids=[hex(ord(c)) for c, _ in CONTROL])
def test_control_characters_in_ids_are_rejected_naming_field_and_character(
        field: str, char: str, named: str) -> None:
    for ensure_ascii in (True, False):  # escaped in the JSON, or raw UTF-8 where JSON allows it
        raw = json.dumps(with_(**{field: f"a{char}b"}), ensure_ascii=ensure_ascii)
        with pytest.raises(InvalidEventError) as caught:
            parse_event(raw)
        message = str(caught.value)
        assert caught.value.reason == "invalid_field", message
        assert message.startswith(f"{field}: must not contain control characters: {named}")
        assert char not in message  # shown escaped, so the message itself is one clean line


def test_control_characters_in_segment_ids_are_rejected() -> None:
    for field in ("messageId", "userId"):
        with pytest.raises(InvalidEventError) as caught:
            parse_event(as_json({**segment("Order Cancelled"), field: "u\n1"}))
        assert caught.value.reason == "invalid_field" and field in str(caught.value)


@pytest.mark.parametrize("customer_id", ["a/b", "..", ".", "%2F", "100%", "a b", "客户 42",
                                         "emoji 🎉", "\u00a0nbsp", "tab\\t", "é\u0301",
                                         "right-to-left \u05d0"])
def test_ids_with_slashes_dots_spaces_and_unicode_stay_valid(customer_id: str) -> None:
    assert parse_event(as_json(with_(customer_id=customer_id))).customer_id == customer_id
    assert parse_event(as_json(with_(event_id=customer_id))).event_id == customer_id


def test_csv_fields_with_control_characters_are_rejected_too() -> None:
    with pytest.raises(InvalidEventError) as caught:
        event_from_fields(with_(customer_id="c\r\n1"))
    assert caught.value.reason == "invalid_field" and "U+000D" in str(caught.value)


# The fast way (models/events.py) against the contract: whatever it accepts, pydantic accepts as
# the same event. Inputs near the edges of every field, in JSON written by hand so that keys can
# repeat, come in any order and carry any escapes.

VALID_FIELDS = {"event_id": st.sampled_from(["e-1", "客户 7", "x" * 128, "🎉/.."]),
                "customer_id": st.sampled_from(["c-1", "a b", "\u00a0"]),
                "order_id": st.sampled_from(["o-1", "%2F"]),
                "occurred_at": st.builds(
                    lambda day, second, digits, offset: (
                        f"{day.isoformat()}T{second // 3600:02}:{second // 60 % 60:02}:"
                        f"{second % 60:02}{digits}{offset}"),
                    st.dates(date(1969, 12, 31), date(2200, 1, 1)), st.integers(0, 86_399),
                    st.sampled_from(["", ".0", ".000001", ".999999"]),
                    st.sampled_from(["Z", "+00:00", "-12:30", "+14:00", "+05:45"])),
                "amount": st.one_of(st.floats(0, 1e12), st.integers(0, 10**12),
                                    st.decimals(0, 10**12, places=2).map(str)),
                "currency": st.sampled_from(["CNY", "USD"]),
                "kind": st.sampled_from(["visit", "email_open", "a" * 32]),
                "score": st.one_of(st.none(), st.floats(-1e6, 1e6))}
EDGES = {"id": st.one_of(st.sampled_from(["", "x" * 129, "a\nb", "a\u0085", "\u2028", 7]),
                         st.text(max_size=4),
                         st.text(st.characters(codec="utf-8"), min_size=127, max_size=129)),
         "occurred_at": st.sampled_from([
             "2024-01-01T00:00:00.1234567Z", "2024-01-01t00:00:00z", "2024-01-01 00:00:00Z",
             "2024-01-01T00:00:00", "2024-01-01", "2024-02-30T00:00:00Z",
             "2024-01-01T24:00:00Z", "2024-01-01T23:59:60Z", "2024-01-01T00:00:00+24:00",
             "2024-01-01T00:00:00+23:59", "2024-01-01T00:00:00-00:00",
             "2024-01-01T00:00:00+0800", "2024-01-01T00:00:00+08", "1970-01-01T00:00:00Z",
             "1969-12-31T23:59:59.999999Z", "1970-01-01T08:00:00+08:01",
             "2199-12-31T23:59:59.999999Z", "2200-01-01T00:00:00Z", "2199-12-31T20:00:00-04:00",
             "0000-01-01T00:00:00Z", "2024-01-01T00:00:00.Z", "２０２４-01-01T00:00:00Z",
             "2024-01-01T00:00:00Z\n", "2024-01-01T00:00:00+05:60", 1704067200]),
         "occurred_at_digits": st.builds(
             lambda year, fields, fraction, sign: (
                 f"{year:04}-{fields[0]:02}-{fields[1]:02}T{fields[2]:02}:{fields[3]:02}:"
                 f"{fields[4]:02}{fraction}{sign}{fields[5]:02}:{fields[6]:02}"),
             st.integers(1969, 2200), st.lists(st.integers(0, 99), min_size=7, max_size=7),
             st.sampled_from(["", ".5", ".000001"]), st.sampled_from("+-")),
         "amount": st.one_of(
             st.floats(allow_nan=False, allow_infinity=False), st.integers(-5, 10**13),
             st.sampled_from(["1000000000000", "1000000000000.1", "007", "1.", ".5", "1e3",
                              " 5", "5 ", "+5", "-0", "1_000", "١٢", "99999999999999999999",
                              "0.1000000000000000055511", "NaN", "inf", True, None, [], {}]),
             st.text(max_size=3)),
         "currency": st.one_of(st.sampled_from(["cny", "CN", "CNYY", "ÄBC", "CNY\n", 1]),
                               st.text(max_size=4)),
         "kind": st.one_of(st.sampled_from(["a" * 33, "Visit", "_x", "9a", "a-b", "a\n", ""]),
                           st.text(max_size=4)),
         "score": st.one_of(st.floats(allow_nan=False, allow_infinity=False),
                            st.sampled_from([1e6, -1e6, 1000001, "5", True]))}
NAMED = {"order_completed": ("order_id", "amount", "currency"),
         "order_refunded": ("order_id", "amount", "currency"),
         "order_cancelled": ("order_id",), "interaction": ("kind", "score"),
         "customer_erased": ()}


@st.composite
def raw_events(draw: st.DrawFn) -> bytes:
    """A native event of any type, most fields valid, some at or past an edge, now and then one
    missing, extra or repeated, keys in any order, text escaped or not."""
    kind = draw(st.sampled_from([*NAMED, "order_shipped"]))
    names = ["event_id", "customer_id", "occurred_at", *NAMED.get(kind, ())]
    names = [n for n in names if draw(st.integers(0, 30))]
    if draw(st.integers(0, 4)) == 0:
        names += draw(st.lists(st.sampled_from([*VALID_FIELDS, "coupon"]), max_size=2))
    pairs = [("type", kind)]
    for name in names:
        edge = EDGES.get("id" if name.endswith("_id") else name, st.just("x"))
        if name == "occurred_at":  # any digits in every field of the timestamp, or other forms
            edge = st.one_of(edge, EDGES["occurred_at_digits"])
        valid = VALID_FIELDS.get(name, st.just("x"))
        pairs.append((name, draw(edge if draw(st.integers(0, 9)) == 0 else valid)))
    pairs = draw(st.permutations(pairs))
    ascii_only = draw(st.booleans())
    body = ", ".join(f"{json.dumps(k)}: {json.dumps(v, ensure_ascii=ascii_only)}"
                     for k, v in pairs)
    return ("{" + body + "}").encode("utf-8", "surrogatepass")


def _by_contract(raw: bytes) -> events.Event:
    return events.held(event_contract.validate_json(raw.decode()))


SHARP = [*(as_json(with_(amount=amount)) for amount in (
    "", "1.", ".5", "1e3", "+5", " 5", "١٢", "1000000000000.1", "99999999999999999999")),
    *(as_json({"event_id": "i", "type": "interaction", "customer_id": "c", "kind": kind,
               "occurred_at": "2024-01-01T00:00:00Z"}) for kind in ("", "Visit", "a" * 33)),
    as_json(with_(currency="CNY\n")), as_json(with_(occurred_at="2200-01-01T00:00:00Z")),
    *(as_json(with_(occurred_at=f"2024-01-01T00:00:00{offset}"))
      for offset in ("+05:60", "-00:99", "+24:00", "+99:00")),
    as_json(with_(occurred_at="2024-01-01T24:00:00Z"))]


@settings(max_examples=3000, deadline=None)
@given(raw_events())
@example(as_json(ORDER).encode())
def test_the_fast_way_accepts_only_what_the_contract_accepts_and_alike(raw: bytes) -> None:
    fast = events._plain(raw)
    if fast is not None:
        assert _by_contract(raw) == fast


@pytest.mark.parametrize("raw", SHARP)
def test_the_fast_way_at_sharp_edges(raw: str) -> None:
    fast = events._plain(raw.encode())
    if fast is not None:
        assert _by_contract(raw.encode()) == fast


PLAIN = [as_json(ORDER), as_json(with_(amount=42)), as_json(with_(amount=0.5)),
         as_json(with_(occurred_at="2024-01-01T08:00:00.25+08:00", type="order_refunded")),
         as_json(with_(type="order_cancelled", amount=..., currency=...)),
         as_json({"event_id": "i", "type": "interaction", "customer_id": "c", "kind": "visit",
                  "occurred_at": "2024-01-01T00:00:00Z", "score": -2}),
         as_json({"event_id": "x", "type": "customer_erased", "customer_id": "c",
                  "occurred_at": "2024-01-01T00:00:00Z"})]


@pytest.mark.parametrize("raw", PLAIN)
def test_plain_native_events_take_the_fast_way(raw: str) -> None:
    assert events._plain(raw.encode()) == _by_contract(raw.encode())


@pytest.mark.parametrize(("products", "amount"), [([], None), ([{"price": 3, "quantity": 2}], 6.0)])
def test_segment_refund_products_give_its_amount_and_none_a_full_refund(products: list,
                                                                        amount: float | None
                                                                        ) -> None:
    event = parse_event(as_json(segment("Order Refunded", products=products)))
    assert isinstance(event, OrderRefunded) and event.amount == amount


def test_segment_products_are_not_read_where_the_amount_is_given() -> None:
    odd = [{"sku": "x", "price": -5, "quantity": 0.5}]  # a discount line, a fraction
    event = parse_event(as_json(segment("Order Completed", revenue=10, products=odd)))
    assert isinstance(event, OrderCompleted) and event.amount == 10.0
    viewed = parse_event(as_json(segment("Product Viewed", products=odd)))
    assert isinstance(viewed, Interaction)
