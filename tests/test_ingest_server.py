"""The ingress without a broker: bodies, checks, dead letters, backpressure and answers, against
a fake producer (tests/integration/test_ingest.py runs it against a real one)."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from kafka.errors import KafkaTimeoutError

from models.events import parse_event
from streams.ingest import server
from streams.settings import Settings


class Sent:
    """kafka-python's future of a send, done at once: with `error`, failed."""

    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def add_callback(self, callback: Any) -> Sent:
        if self.error is None:
            callback(None)
        return self

    def add_errback(self, errback: Any) -> Sent:
        if self.error is not None:
            errback(self.error)
        return self


class FakeProducer:
    def __init__(self) -> None:
        self.records: list[tuple[str, bytes | None, bytes, list]] = []
        self.error: Exception | None = None

    def send(self, topic: str, *, key: bytes | None, value: bytes, headers: list) -> Sent:
        self.records.append((topic, key, value, headers))
        return Sent(self.error)

    def close(self, timeout: float) -> None:
        pass


def order(event_id: str, customer: str = "c1", **more: Any) -> dict:
    return {"type": "order_completed", "event_id": event_id, "customer_id": customer,
            "occurred_at": "2026-03-01T10:00:00Z", "order_id": event_id, "amount": "10",
            "currency": "CNY", **more}


def run(settings: Settings, requests: Any) -> tuple[Any, FakeProducer]:
    """Run `requests(client)` against an ingress on a fake producer."""
    ingest = server.Ingest(settings)
    ingest.producer = producer = FakeProducer()

    async def main() -> Any:
        async with TestClient(TestServer(ingest.app())) as client:
            return await requests(client)
    return asyncio.run(main()), producer


def test_bodies_of_one_event_an_array_or_ndjson(tmp_path) -> None:
    pretty = json.dumps(order("e1"), indent=2).encode()
    array = json.dumps([order("e2"), order("e3", "c2")]).encode()
    ndjson = b"\n".join(json.dumps(order(f"e{i}")).encode() for i in (4, 5))

    async def requests(client: TestClient) -> list:
        answers = []
        for body, kind in ((pretty, "application/json"), (array, "application/json"),
                           (ndjson, "application/x-ndjson"), (ndjson, "text/plain")):
            response = await client.post("/events", data=body,
                                         headers={"Content-Type": kind})
            answers.append((response.status, await response.json()))
        return answers

    answers, producer = run(Settings(), requests)
    assert answers == [(202, {"accepted": n, "rejected": []}) for n in (1, 2, 2, 2)]
    assert [(t, k, parse_event(v).event_id) for t, k, v, _ in producer.records] == [
        ("orders", b"c1", "e1"), ("orders", b"c1", "e2"), ("orders", b"c2", "e3"),
        ("orders", b"c1", "e4"), ("orders", b"c1", "e5"), ("orders", b"c1", "e4"),
        ("orders", b"c1", "e5")]
    assert producer.records[0][2] == pretty.strip()  # the bytes as sent


def test_invalid_events_go_to_the_dead_letters_with_their_bytes_and_reason() -> None:
    bad = b'{"type": "order_completed", "event_id": "e2"}'

    async def requests(client: TestClient) -> Any:
        response = await client.post("/events", data=json.dumps(order("e1")).encode() + b"\n"
                                     + bad, headers={"Content-Type": "application/x-ndjson"})
        return response.status, await response.json()

    (status, answer), producer = run(Settings(), requests)
    assert status == 202 and answer["accepted"] == 1
    assert [(r["index"], r["reason"]) for r in answer["rejected"]] == [(1, "missing_field")]
    topic, key, value, headers = producer.records[1]
    assert (topic, key, value) == ("dead-letters", None, bad)
    assert dict(headers)["source_topic"] == b"ingest/native"
    assert dict(headers)["reason"] == b"missing_field"


@pytest.mark.parametrize(("pending", "events", "status"), [(0, 3, 413), (2, 1, 503)])
def test_backpressure(pending: int, events: int, status: int) -> None:
    async def requests(client: TestClient) -> Any:
        response = await client.post("/events", data=json.dumps(
            [order(f"e{i}") for i in range(events)]).encode())
        return response.status, dict(response.headers), await response.json()

    settings = Settings(ingest_max_pending=2)
    ingest = server.Ingest(settings)
    ingest.producer, ingest.pending = FakeProducer(), pending

    async def main() -> Any:
        async with TestClient(TestServer(ingest.app())) as client:
            return await requests(client)
    got, headers, problem = asyncio.run(main())
    assert got == status and problem["status"] == status
    assert headers["Content-Type"].startswith("application/problem+json")
    assert ("Retry-After" in headers) == (status == 503)


def test_a_failing_kafka_answers_503_and_makes_the_ingress_unready_for_a_while() -> None:
    async def requests(client: TestClient) -> Any:
        before = (await client.get("/health/ready")).status
        response = await client.post("/events", data=json.dumps(order("e1")).encode())
        after = (await client.get("/health/ready")).status
        return before, response.status, after

    ingest = server.Ingest(Settings())
    ingest.producer = producer = FakeProducer()
    producer.error = KafkaTimeoutError("no broker")

    async def main() -> Any:
        async with TestClient(TestServer(ingest.app())) as client:
            return await requests(client)
    assert asyncio.run(main()) == (200, 503, 503)
    ingest.failed_at -= server.UNREADY_AFTER_FAILURE_S + 1  # later: ready to try again
    assert asyncio.run(main())[0] == 200


def test_segment_calls_auth_and_what_is_ignored() -> None:
    key = "write-key"
    basic = {"Authorization": "Basic " + base64.b64encode(f"{key}:".encode()).decode()}
    bare = {"event": "Product Viewed", "userId": "u1", "properties": {"product_id": "p"}}

    async def requests(client: TestClient) -> Any:
        refused = await client.post("/v1/track", json=bare)
        track = await client.post("/v1/track", json=bare, headers=basic)
        again = await client.post("/v1/track", json=bare, headers=basic)
        batch = await client.post("/v1/batch", json={"batch": [
            {**bare, "type": "track"}, {"type": "identify", "userId": "u1"},
            {"type": "track", "event": "Signed Up", "userId": "u1"},
            {"type": "track", "event": "Order Completed", "userId": "u1",
             "properties": {"total": 5}}]}, headers=basic)
        return (refused.status, refused.headers.get("WWW-Authenticate"),
                await track.json(), await again.json(), await batch.json())

    (status, challenge, track, again, batch), producer = run(
        Settings(segment_write_key=key), requests)
    assert (status, challenge) == (401, 'Basic realm="tierstream-ingest"')
    assert track == again == {"success": True, "accepted": 1, "rejected": [], "ignored": 0}
    first, second = (parse_event(r[2]) for r in producer.records[:2])
    assert first.event_id == second.event_id  # the same call, the same id: applied once
    assert first.kind == "product_viewed" and producer.records[0][0] == "interactions"
    assert batch["accepted"] == 1 and batch["ignored"] == 2
    assert [r["reason"] for r in batch["rejected"]] == ["missing_field"]  # no order_id
