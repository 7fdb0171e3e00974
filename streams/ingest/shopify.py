"""Shopify webhooks (orders/create, orders/cancelled, refunds/create) as native events.

A webhook is verified by its `X-Shopify-Hmac-SHA256` header, the base64 HMAC-SHA256 of the raw
body under the app's secret. Event ids derive from Shopify's own ids, so a webhook delivered
twice gives the same event and the worker applies it once. A refund's payload names its order
but not the customer: the ingress keeps the customer of each order created (`customers`, from a
compacted topic, streams/ingest/server.py) to key it.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

TOPICS = ("orders/create", "orders/cancelled", "refunds/create")


class WebhookError(ValueError):
    """A webhook that cannot become an event, and why (a dead letter's reason)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def verified(body: bytes, signature: str | None, secret: bytes) -> bool:
    if not signature:
        return False
    expected = base64.b64encode(hmac.new(secret, body, hashlib.sha256).digest())
    return hmac.compare_digest(expected, signature.strip().encode("utf-8", "replace"))


def customer_of(order: dict[str, Any]) -> str:
    """The customer id of an order: its customer's id, else its email."""
    customer = order.get("customer") or {}
    found = customer.get("id") or order.get("email") or customer.get("email")
    if found in (None, ""):
        raise WebhookError("missing_field", f"order {order.get('id')} names no customer "
                                            "(customer.id or email): it cannot be keyed")
    return str(found)


def events(topic: str, payload: dict[str, Any], customers: dict[str, str]) -> list[dict]:
    """The native events of one webhook; `customers` maps order ids to customer ids (refunds)."""
    if topic not in TOPICS:
        raise WebhookError("unknown_type", f"webhook topic {topic!r} is not handled; "
                                           f"subscribe to {', '.join(TOPICS)}")
    try:
        if topic == "orders/create":
            order_id = str(payload["id"])
            return [{"type": "order_completed", "event_id": f"shopify:order:{order_id}",
                     "customer_id": customer_of(payload), "occurred_at": payload["created_at"],
                     "order_id": order_id, "amount": str(payload["total_price"]),
                     "currency": payload["currency"]}]
        if topic == "orders/cancelled":
            order_id = str(payload["id"])
            return [{"type": "order_cancelled", "event_id": f"shopify:cancel:{order_id}",
                     "customer_id": customers.get(order_id) or customer_of(payload),
                     "occurred_at": payload.get("cancelled_at") or payload["updated_at"],
                     "order_id": order_id}]
        order_id = str(payload["order_id"])
        customer = customers.get(order_id)
        if customer is None:
            raise WebhookError("unknown_order", f"refund {payload.get('id')} of order "
                                                f"{order_id}, whose orders/create webhook "
                                                "the ingress has not seen: its customer is "
                                                "unknown")
        refunds = [t for t in payload.get("transactions") or ()
                   if t.get("kind") == "refund" and t.get("status", "success") == "success"]
        return [{"type": "order_refunded",
                 "event_id": f"shopify:refund:{payload['id']}:{t.get('id', n)}",
                 "customer_id": customer,
                 "occurred_at": t.get("processed_at") or payload["created_at"],
                 "order_id": order_id, "amount": str(t["amount"]), "currency": t["currency"]}
                for n, t in enumerate(refunds)]
    except (KeyError, TypeError) as error:
        raise WebhookError("missing_field", f"{topic} payload without {error}") from None
