"""Shopify webhooks as native events: signatures, the mapping, and what cannot be keyed."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest

from models.events import OrderCancelled, OrderCompleted, OrderRefunded, event_from_fields
from streams.ingest import shopify

CREATED = {"id": 820982911946154508, "created_at": "2026-03-04T09:00:00-05:00",
           "total_price": "199.65", "currency": "USD", "email": "jon@example.com",
           "customer": {"id": 115310627314723954, "email": "jon@example.com"}}


def test_a_signature_is_the_bodys_hmac_under_the_secret() -> None:
    body = b'{"id": 1}'
    good = base64.b64encode(hmac.new(b"s3cret", body, hashlib.sha256).digest()).decode()
    assert shopify.verified(body, good, b"s3cret")
    assert not shopify.verified(body + b" ", good, b"s3cret")
    assert not shopify.verified(body, good, b"other")
    assert not shopify.verified(body, None, b"s3cret")


def test_orders_cancellations_and_refunds_become_native_events() -> None:
    (created,) = shopify.events("orders/create", CREATED, {})
    event = event_from_fields(created)
    assert isinstance(event, OrderCompleted)
    assert (event.event_id, event.customer_id, event.order_id, event.amount, event.currency) == (
        "shopify:order:820982911946154508", "115310627314723954", "820982911946154508",
        199.65, "USD")
    (cancelled,) = shopify.events("orders/cancelled", {
        **CREATED, "cancelled_at": "2026-03-05T09:00:00-05:00"}, {})
    assert isinstance(event_from_fields(cancelled), OrderCancelled)
    refund = {"id": 9, "order_id": 820982911946154508, "created_at": "2026-03-06T09:00:00Z",
              "transactions": [
                  {"id": 1, "kind": "refund", "status": "success", "amount": "41.94",
                   "currency": "USD"},
                  {"id": 2, "kind": "refund", "status": "failure", "amount": "1.00",
                   "currency": "USD"},
                  {"id": 3, "kind": "sale", "status": "success", "amount": "5.00",
                   "currency": "USD"}]}
    customers = {"820982911946154508": "115310627314723954"}
    (refunded,) = [event_from_fields(e) for e in shopify.events("refunds/create", refund,
                                                                  customers)]
    assert isinstance(refunded, OrderRefunded)
    assert (refunded.event_id, refunded.customer_id, refunded.amount) == (
        "shopify:refund:9:1", "115310627314723954", 41.94)


def test_an_order_without_customer_is_keyed_by_its_email_or_refused() -> None:
    guest = {k: v for k, v in CREATED.items() if k != "customer"}
    assert shopify.events("orders/create", guest, {})[0]["customer_id"] == "jon@example.com"
    with pytest.raises(shopify.WebhookError) as caught:
        shopify.events("orders/create", {k: v for k, v in guest.items() if k != "email"}, {})
    assert caught.value.reason == "missing_field"


@pytest.mark.parametrize(("topic", "payload", "reason", "fragment"), [
    ("products/create", CREATED, "unknown_type", "not handled"),
    ("refunds/create", {"id": 1, "order_id": 5, "created_at": "2026-03-06T09:00:00Z"},
     "unknown_order", "has not seen"),
    ("orders/create", {"id": 1, "customer": {"id": 2}}, "missing_field", "payload without"),
])
def test_webhooks_that_cannot_be_events_say_why(topic: str, payload: dict, reason: str,
                                                fragment: str) -> None:
    with pytest.raises(shopify.WebhookError) as caught:
        shopify.events(topic, payload, {})
    assert caught.value.reason == reason and fragment in str(caught.value)


def test_a_cancellation_goes_to_the_customer_its_order_was_keyed_by() -> None:
    guest = {**{k: v for k, v in CREATED.items() if k != "customer"},
             "cancelled_at": "2026-03-05T09:00:00Z"}
    (cancelled,) = shopify.events("orders/cancelled", guest, {str(CREATED["id"]): "777"})
    assert cancelled["customer_id"] == "777"


@pytest.mark.parametrize("signature", ["not base64 at all", "ünïcödé", ""])
def test_a_malformed_signature_is_not_verified(signature: str) -> None:
    assert not shopify.verified(b"{}", signature, b"s3cret")
