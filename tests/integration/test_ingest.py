"""`tierstream ingest` on a real broker: native, Segment and Shopify events in, each on its input
topic keyed by customer id; invalid requests refused whole and saying why."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from models.events import Interaction, OrderCancelled, OrderCompleted, OrderRefunded, parse_event
from tests.integration.harness import create_topics, environment, free_port, isolated_settings

TOKEN, WRITE_KEY, SECRET = "ingest-token", "segment-key", "shopify-secret"


class Ingest:
    def __init__(self, url: str, process: subprocess.Popen) -> None:
        self.url, self.process = url, process

    def post(self, path: str, body: bytes, **headers: str) -> tuple[int, dict, dict]:
        request = urllib.request.Request(self.url + path, data=body, headers=headers,
                                         method="POST")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:
                return response.status, dict(response.headers), json.loads(response.read())
        except urllib.error.HTTPError as error:
            with error:
                return error.code, dict(error.headers), json.loads(error.read())


@pytest.fixture
def ingest(kafka_bootstrap: str, tmp_path: Path) -> Iterator[tuple[Ingest, object]]:
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    port = free_port()
    env = {**environment(settings, Path("default")), "TIERSTREAM_INGEST_PORT": str(port),
           "TIERSTREAM_INGEST_TOKEN": TOKEN, "TIERSTREAM_SEGMENT_WRITE_KEY": WRITE_KEY,
           "TIERSTREAM_SHOPIFY_SECRET": SECRET}
    log = (tmp_path / "ingest.log").open("w")
    process = subprocess.Popen([sys.executable, "-m", "streams.cli", "ingest"], env=env,
                               stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health/ready", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, \
                (tmp_path / "ingest.log").read_text()
            time.sleep(0.3)
        yield Ingest(url, process), settings
    finally:
        process.terminate()
        process.wait(timeout=30)
        log.close()


def read_inputs(settings, expected: int) -> list:
    return read_topic(settings, settings.topics.orders, expected, settings.topics.interactions)


def read_topic(settings, topic: str, expected: int, *more: str) -> list:
    consumer = KafkaConsumer(topic, *more,
                             bootstrap_servers=settings.bootstrap_servers, group_id=None,
                             auto_offset_reset="earliest", consumer_timeout_ms=2000)
    try:
        records, deadline = [], time.monotonic() + 60
        while len(records) < expected and time.monotonic() < deadline:
            records += list(consumer)
        time.sleep(1)
        return records + list(consumer)
    finally:
        consumer.close()


def order(event_id: str, customer: str, amount: str = "100.00") -> dict:
    return {"type": "order_completed", "event_id": event_id, "customer_id": customer,
            "occurred_at": "2026-03-01T10:00:00+08:00", "order_id": f"o-{event_id}",
            "amount": amount, "currency": "CNY"}


def signed(body: bytes, secret: str = SECRET) -> str:
    return base64.b64encode(hmac.new(secret.encode(), body, hashlib.sha256).digest()).decode()


def test_events_of_every_source_land_on_their_input_keyed_by_customer(ingest) -> None:
    server, settings = ingest
    bearer = {"Authorization": f"Bearer {TOKEN}", "Content-Type": "application/json"}
    # native: one event, an array, NDJSON
    assert server.post("/events", json.dumps(order("n1", "alice")).encode(), **bearer)[0] == 202
    status, _, body = server.post("/events", json.dumps(
        [order("n2", "bob"), {"type": "interaction", "event_id": "n3", "customer_id": "bob",
                              "occurred_at": "2026-03-02T10:00:00Z", "kind": "call"}]).encode(),
        **bearer)
    assert (status, body) == (202, {"accepted": 2, "rejected": []})
    ndjson = b"\n".join(json.dumps(order(f"n{i}", "carol")).encode() for i in (4, 5)) + b"\n"
    assert server.post("/events", ndjson, **{**bearer, "Content-Type": "application/x-ndjson"}
                       )[2] == {"accepted": 2, "rejected": []}
    # the invalid ones dead-lettered and named, the valid one produced; without the token, 401
    status, _, body = server.post("/events", json.dumps(
        [order("n6", "dave"), {**order("n7", "dave"), "amount": "-1"}, {"type": "x"}]).encode(),
        **bearer)
    assert status == 202 and body["accepted"] == 1
    assert [(e["index"], e["reason"]) for e in body["rejected"]] == [
        (1, "invalid_field"), (2, "unknown_type")]
    status, headers, problem = server.post("/events", json.dumps(order("n8", "erin")).encode())
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    assert headers["Content-Type"].startswith("application/problem+json") and \
        problem["status"] == 401
    pretty = json.dumps(order("n9", "erin"), indent=2).encode()  # one object over lines
    assert server.post("/events", pretty, **bearer)[2] == {"accepted": 1, "rejected": []}

    # Segment: a batch with calls that are not e-commerce track calls, ignored
    basic = {"Authorization": "Basic " + base64.b64encode(f"{WRITE_KEY}:".encode()).decode()}
    track = {"type": "track", "event": "Product Viewed", "messageId": "s1", "userId": 42,
             "timestamp": "2026-03-03T10:00:00Z", "properties": {"product_id": "p1"}}
    batch = {"batch": [track, {"type": "identify", "userId": 42, "traits": {}},
                       {**track, "event": "Order Completed", "messageId": "s2",
                        "properties": {"order_id": 9, "total": 30, "currency": "cny"}},
                       {**track, "event": "Signed Up", "messageId": "s3"}]}
    status, _, body = server.post("/v1/batch", json.dumps(batch).encode(), **basic)
    assert (status, body) == (200, {"success": True, "accepted": 2, "rejected": [],
                                    "ignored": 2})
    assert server.post("/v1/track", json.dumps(track).encode())[0] == 401
    bare = {"event": "Checkout Started", "userId": "gina", "properties": {}}  # no type, id, time
    assert server.post("/v1/track", json.dumps(bare).encode(), **basic)[2]["accepted"] == 1

    # Shopify: an order, its refund (keyed by the order's customer), a cancellation
    created = {"id": 5001, "created_at": "2026-03-04T09:00:00-05:00", "total_price": "59.90",
               "currency": "USD", "customer": {"id": 777}, "email": "frank@example.com"}
    refund = {"id": 61, "order_id": 5001, "created_at": "2026-03-05T09:00:00-05:00",
              "transactions": [{"id": 71, "kind": "refund", "status": "success",
                                "amount": "10.00", "currency": "USD"}]}
    cancelled = {**created, "id": 5002, "cancelled_at": "2026-03-06T09:00:00-05:00"}
    for topic, payload, webhook in (("orders/create", created, "w1"),
                                    ("refunds/create", refund, "w2"),
                                    ("orders/cancelled", cancelled, "w3"),
                                    ("orders/create", created, "w1")):  # redelivered
        body = json.dumps(payload).encode()
        status, _, answer = server.post("/webhooks/shopify", body, **{
            "X-Shopify-Topic": topic, "X-Shopify-Webhook-Id": webhook,
            "X-Shopify-Hmac-Sha256": signed(body), "Content-Type": "application/json"})
        assert status == 200, answer
    body = json.dumps(created).encode()
    assert server.post("/webhooks/shopify", body, **{
        "X-Shopify-Topic": "orders/create", "X-Shopify-Hmac-Sha256": signed(body, "wrong")}
    )[0] == 401
    unknown = json.dumps({**refund, "id": 62, "order_id": 9999}).encode()
    status, _, answer = server.post("/webhooks/shopify", unknown, **{
        "X-Shopify-Topic": "refunds/create", "X-Shopify-Hmac-Sha256": signed(unknown)})
    assert status == 200 and answer["rejected"][0]["reason"] == "unknown_order"
    status, _, answer = server.post("/webhooks/shopify", b"{}", **{
        "X-Shopify-Topic": "products/create", "X-Shopify-Hmac-Sha256": signed(b"{}")})
    assert status == 200 and "not handled" in answer["ignored"]

    dead = read_topic(settings, settings.topics.dead_letters, expected=3)
    reasons = sorted((dict(r.headers)["source_topic"], dict(r.headers)["reason"]) for r in dead)
    assert reasons == [(b"ingest/native", b"invalid_field"), (b"ingest/native", b"unknown_type"),
                       (b"ingest/shopify", b"unknown_order")]
    assert any(r.value == unknown for r in dead)  # the original bytes

    records = read_inputs(settings, expected=13)
    events = [(r.topic, r.key.decode(), parse_event(r.value)) for r in records]
    assert all(key == event.customer_id for _, key, event in events)
    assert all((topic == settings.topics.interactions) == isinstance(event, Interaction)
               for topic, _, event in events)
    assert sorted(e.event_id for _, _, e in events) == sorted(
        ["n1", "n2", "n3", "n4", "n5", "n6", "n9", "s1", "s2", "shopify:order:5001",
         "shopify:refund:61:71", "shopify:cancel:5002"] + [
            e.event_id for _, _, e in events if e.event_id.startswith("ingest:")])
    assert [e.kind for _, _, e in events if e.event_id.startswith("ingest:")] == \
        ["checkout_started"]
    by_id = {e.event_id: e for _, _, e in events}
    assert by_id["s1"] == Interaction("s1", "42", by_id["s1"].at, "product_viewed")
    assert isinstance(by_id["s2"], OrderCompleted) and by_id["s2"].currency == "CNY"
    assert isinstance(by_id["shopify:refund:61:71"], OrderRefunded)
    assert by_id["shopify:refund:61:71"].customer_id == "777"
    assert isinstance(by_id["shopify:cancel:5002"], OrderCancelled)
    metrics = urllib.request.urlopen(server.url + "/metrics", timeout=10).read().decode()
    assert 'tierstream_ingest_events_total{outcome="duplicate",source="shopify"} 1.0' in metrics
    assert 'tierstream_ingest_events_total{outcome="invalid",source="native"} 2.0' in metrics
