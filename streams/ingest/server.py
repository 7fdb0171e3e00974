"""The ingress: POSTed events checked against the input contract and produced to the input
topics, keyed by customer id, before the answer (acks=all): a 2xx means Kafka has them.

- `POST /events`: native or Segment events, one JSON object, a JSON array or NDJSON lines;
  `TIERSTREAM_INGEST_TOKEN` as a bearer token if set.
- `POST /v1/track`, `POST /v1/batch`: Segment's HTTP tracking API (the write key as the basic
  auth user, if `TIERSTREAM_SEGMENT_WRITE_KEY` is set); calls other than e-commerce track calls
  (identify, page, other events) are ignored and counted.
- `POST /webhooks/shopify`: orders/create, orders/cancelled, refunds/create, verified by HMAC
  (`TIERSTREAM_SHOPIFY_SECRET`, required); a webhook id seen lately by this process is answered
  without producing again, and every event id derives from Shopify's ids, so a redelivery is
  applied once anyway.
- `/health/live`, `/health/ready`, `/metrics`.

An invalid event goes to the dead-letter topic with its original bytes and why (headers
`source_topic` = `ingest/<source>`, `reason`, `error`), as the worker's dead letters do, and the
answer lists it; the valid ones of the request are produced all the same. Only a body that is no
JSON at all is refused (400). More events waiting for Kafka than TIERSTREAM_INGEST_MAX_PENDING
answers 503 with Retry-After. Errors are RFC 9457 problem documents.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiohttp import web
from kafka import KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    generate_latest,
)

from models.errors import ConnectError, InvalidEventError, RebuildError
from models.event_contract import SEGMENT_INTERACTIONS, SEGMENT_ORDERS
from models.events import Interaction, parse_event
from streams import http
from streams.ingest import shopify
from streams.kafka import clients, topics
from streams.settings import Settings

log = logging.getLogger("tierstream.ingest")
MAX_BODY_BYTES = 4 * 1024 * 1024
RECENT_WEBHOOKS = 100_000  # Shopify webhook ids remembered, to answer a redelivery at once
UNREADY_AFTER_FAILURE_S = 30.0  # /health/ready answers 503 this long after a failed send
Record = tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]  # topic, key, value, headers


class Rejected(Exception):
    """A request answered with a problem: status, detail and more members."""

    def __init__(self, status: int, detail: str, **more: Any) -> None:
        super().__init__(detail)
        self.status, self.detail, self.more = status, detail, more


class Ingest:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.registry = CollectorRegistry()
        self.requests = Counter("tierstream_ingest_requests_total", "HTTP requests by source "
                                "and status", ["source", "status"], registry=self.registry)
        self.events = Counter("tierstream_ingest_events_total", "Events by source and outcome "
                              "(produced, invalid, ignored, duplicate)", ["source", "outcome"],
                              registry=self.registry)
        self.pending_gauge = Gauge("tierstream_ingest_pending_events", "Events sent, waiting "
                                   "for Kafka's acknowledgement", registry=self.registry)
        self.pending = 0
        self.failed_at: float | None = None  # when a send to Kafka last failed
        self.producer: KafkaProducer | None = None
        self.orders: dict[str, str] = {}  # Shopify order id -> customer id
        self.recent: OrderedDict[str, None] = OrderedDict()  # Shopify webhook ids
        self.index_topic = f"{settings.app_id}-ingest-shopify-orders"

    # -- start and stop --------------------------------------------------------------------

    def connect(self) -> None:
        """The producer, and the Shopify order index read from its compacted topic (created if
        missing); ConnectError when Kafka cannot be used."""
        config = clients.kafka_python_config(self.settings)
        with clients.connecting(self.settings):
            self.producer = KafkaProducer(client_id=f"{self.settings.app_id}-ingest", acks="all",
                                          linger_ms=5, max_block_ms=10_000, **config)
        if self.settings.shopify_secret is not None:
            self._load_index(config)

    def _load_index(self, config: dict[str, Any]) -> None:
        """Read the order index to its end, then follow it in a thread (other replicas add
        orders too)."""
        admin = clients.admin(self.settings)
        consumer = None
        try:
            admin.create_topics([NewTopic(self.index_topic, 1, self.settings.replication,
                                          topic_configs={"cleanup.policy": "compact",
                                                         **topics.replicated(
                                                             self.settings.replication)})])
        except TopicAlreadyExistsError:
            pass
        except KafkaError as error:
            raise ConnectError(f"cannot create {self.index_topic}: {type(error).__name__}: "
                               f"{error}") from None
        finally:
            admin.close()
        try:
            consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **config)
            ends = clients.assign_from_beginning(consumer, self.index_topic,
                                                 self.settings.bootstrap_servers)
            for record in clients.read_to_end(consumer, ends, idle_timeout_s=30):
                self._indexed(record)
        except (KafkaError, RebuildError) as error:
            if consumer is not None:
                consumer.close()
            raise ConnectError(f"cannot read {self.index_topic}: {error}") from None
        log.info("shopify order index: %d orders from %s", len(self.orders), self.index_topic)
        threading.Thread(target=self._follow_index, args=(consumer,), daemon=True,
                         name="shopify-order-index").start()

    def _follow_index(self, consumer: KafkaConsumer) -> None:
        while True:
            try:
                for records in consumer.poll(timeout_ms=1000).values():
                    for record in records:
                        self._indexed(record)
            except KafkaError as error:  # the consumer reconnects by itself
                log.warning("following %s: %s", self.index_topic, error)
                time.sleep(1)

    def _indexed(self, record: Any) -> None:
        if record.value is not None:
            self.orders[record.key.decode()] = record.value.decode()

    async def close(self, _: web.Application) -> None:
        if self.producer is not None:
            await asyncio.to_thread(self.producer.close, 10)

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BODY_BYTES, middlewares=[self._problems])
        app.add_routes([
            web.post("/events", self._source("native", self.native)),
            web.post("/v1/track", self._source("segment", self.segment_track)),
            web.post("/v1/batch", self._source("segment", self.segment_batch)),
            web.post("/webhooks/shopify", self._source("shopify", self.shopify)),
            web.get("/health/live", self.live), web.get("/health/ready", self.ready),
            web.get("/metrics", self.metrics)])
        app.on_cleanup.append(self.close)
        return app

    # -- the sources -----------------------------------------------------------------------

    def _source(self, name: str, handler: Callable[[web.Request], Awaitable[web.Response]]
                ) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def counted(request: web.Request) -> web.Response:
            status = 500
            try:
                response = await handler(request)
                status = response.status
                return response
            except Rejected as rejected:
                status = rejected.status
                raise
            except web.HTTPException as error:
                status = error.status
                raise
            finally:
                self.requests.labels(name, str(status)).inc()
        return counted

    async def native(self, request: web.Request) -> web.Response:
        self._bearer(request)
        items = _items(await request.read(), request.content_type)
        answer = await self._ingest("native", items)
        return web.json_response(answer, status=202)

    async def segment_track(self, request: web.Request) -> web.Response:
        self._write_key(request)
        call = _json(await request.read())
        if isinstance(call, dict):
            call.setdefault("type", "track")  # the endpoint says it
        return await self._segment_calls([call])

    async def segment_batch(self, request: web.Request) -> web.Response:
        self._write_key(request)
        body = _json(await request.read())
        calls = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(calls, list):
            raise Rejected(400, 'a Segment batch is {"batch": [call, ...]}')
        return await self._segment_calls(calls)

    async def _segment_calls(self, calls: list[Any]) -> web.Response:
        wanted = [_segment_defaults(c) for c in calls
                  if isinstance(c, dict) and c.get("type") == "track"
                  and c.get("event") in SEGMENT_ORDERS + SEGMENT_INTERACTIONS]
        self.events.labels("segment", "ignored").inc(len(calls) - len(wanted))
        answer = await self._ingest("segment", [json.dumps(c).encode() for c in wanted])
        return web.json_response({"success": True, **answer,
                                  "ignored": len(calls) - len(wanted)})

    async def shopify(self, request: web.Request) -> web.Response:
        secret = self.settings.shopify_secret
        if secret is None:
            raise Rejected(404, "Shopify webhooks are off: set TIERSTREAM_SHOPIFY_SECRET")
        body = await request.read()
        if not shopify.verified(body, request.headers.get("X-Shopify-Hmac-Sha256"),
                                secret.get_secret_value().encode()):
            raise Rejected(401, "the X-Shopify-Hmac-Sha256 header does not sign this body")
        webhook = request.headers.get("X-Shopify-Webhook-Id")
        if webhook is not None and webhook in self.recent:
            self.events.labels("shopify", "duplicate").inc()
            return web.json_response({"accepted": 0, "duplicate": True})
        topic = request.headers.get("X-Shopify-Topic", "")
        payload = _json(body)
        try:
            if not isinstance(payload, dict):
                raise shopify.WebhookError("invalid_field", "the body is no JSON object")
            events = shopify.events(topic, payload, self.orders)
        except shopify.WebhookError as error:
            if error.reason == "unknown_type":  # a subscription tierstream does not use
                self.events.labels("shopify", "ignored").inc()
                return web.json_response({"accepted": 0, "ignored": str(error)})
            # answered 200 all the same: Shopify would retry, then drop the subscription
            await self._send([self._dead_letter("shopify", body, error.reason, str(error))])
            self.events.labels("shopify", "invalid").inc()
            return web.json_response({"accepted": 0, "rejected": [
                {"index": 0, "reason": error.reason, "error": str(error)}]})
        records, rejected = self._checked("shopify", [json.dumps(e).encode() for e in events],
                                          original=body)
        if topic == "orders/create" and not rejected:
            order, customer = events[0]["order_id"], events[0]["customer_id"]
            records.append((self.index_topic, order.encode(), customer.encode(), []))
            self.orders[order] = customer
        await self._send(records)
        if webhook is not None:
            self.recent[webhook] = None
            while len(self.recent) > RECENT_WEBHOOKS:
                self.recent.popitem(last=False)
        self.events.labels("shopify", "produced").inc(len(events) - len(rejected))
        self.events.labels("shopify", "invalid").inc(len(rejected))
        return web.json_response({"accepted": len(events) - len(rejected),
                                  "rejected": rejected})

    async def _ingest(self, source: str, items: list[bytes]) -> dict[str, Any]:
        """Produce the valid events and dead-letter the others; the answer's body."""
        records, rejected = self._checked(source, items)
        await self._send(records)
        self.events.labels(source, "produced").inc(len(items) - len(rejected))
        self.events.labels(source, "invalid").inc(len(rejected))
        return {"accepted": len(items) - len(rejected), "rejected": rejected}

    # -- checks ----------------------------------------------------------------------------

    def _bearer(self, request: web.Request) -> None:
        token = self.settings.ingest_token
        if token is not None and not http.bearer_matches(
                request.headers.get("Authorization", ""), token.get_secret_value()):
            raise Rejected(401, "a bearer token is required (TIERSTREAM_INGEST_TOKEN)",
                           headers={"WWW-Authenticate": 'Bearer realm="tierstream-ingest"'})

    def _write_key(self, request: web.Request) -> None:
        key = self.settings.segment_write_key
        if key is None:
            return
        scheme, _, encoded = request.headers.get("Authorization", "").partition(" ")
        try:
            user = base64.b64decode(encoded, validate=True).decode().partition(":")[0]
        except ValueError:
            user = ""
        if not (scheme.lower() == "basic" and hmac.compare_digest(
                user.encode(), key.get_secret_value().encode())):
            raise Rejected(401, "Segment's write key is required as the basic auth user",
                           headers={"WWW-Authenticate": 'Basic realm="tierstream-ingest"'})

    def _checked(self, source: str, items: list[bytes], original: bytes | None = None
                 ) -> tuple[list[Record], list[dict]]:
        """The records of the events: the valid ones' for the inputs, the others' for the
        dead-letter topic (with `original`, the bytes they were made from, if not their own);
        and what was wrong with each of those."""
        names = self.settings.topics
        records, rejected = [], []
        for index, raw in enumerate(items):
            try:
                event = parse_event(raw)
            except InvalidEventError as error:
                rejected.append({"index": index, "reason": error.reason, "error": str(error)})
                records.append(self._dead_letter(source, original or raw, error.reason,
                                                 str(error)))
                continue
            topic = names.interactions if isinstance(event, Interaction) else names.orders
            records.append((topic, event.customer_id.encode(), raw, []))
        return records, rejected

    def _dead_letter(self, source: str, raw: bytes, reason: str, error: str) -> Record:
        return (self.settings.topics.dead_letters, None, raw,
                [("source_topic", f"ingest/{source}".encode()), ("reason", reason.encode()),
                 ("error", error[:1000].encode())])

    async def _send(self, records: list[Record]) -> None:
        """Send the records and wait for Kafka's acknowledgement of all of them (a failure
        part way leaves some sent: the client's retry repeats them, and the worker applies a
        repeated event once)."""
        if len(records) > self.settings.ingest_max_pending:
            raise Rejected(413, f"{len(records)} records in one request, more than "
                                "TIERSTREAM_INGEST_MAX_PENDING allows waiting for Kafka "
                                f"({self.settings.ingest_max_pending})")
        if self.pending + len(records) > self.settings.ingest_max_pending:
            raise Rejected(503, f"{self.pending} events are waiting for Kafka; retry later",
                           headers={"Retry-After": "1"})
        producer = self.producer
        assert producer is not None
        loop = asyncio.get_running_loop()
        waiting = [loop.create_future() for _ in records]

        def send() -> None:  # in a thread: send() blocks while the producer's buffer is full
            for (topic, key, value, headers), done in zip(records, waiting, strict=True):
                sent = producer.send(topic, key=key, value=value, headers=headers)
                sent.add_callback(lambda _, done=done: loop.call_soon_threadsafe(
                    _settle, done, None))
                sent.add_errback(lambda error, done=done: loop.call_soon_threadsafe(
                    _settle, done, error))

        self._pending(len(records))
        try:
            await asyncio.to_thread(send)
            await asyncio.gather(*waiting)
            self.failed_at = None
        except KafkaError as error:
            self.failed_at = time.monotonic()
            raise Rejected(503, f"Kafka did not take the events: {type(error).__name__}: "
                                f"{error}", headers={"Retry-After": "5"}) from None
        finally:
            self._pending(-len(records))

    def _pending(self, change: int) -> None:
        self.pending += change
        self.pending_gauge.set(self.pending)

    # -- health and metrics ----------------------------------------------------------------

    async def live(self, request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(self, request: web.Request) -> web.Response:
        """200 once connected; 503 for UNREADY_AFTER_FAILURE_S after a send failed (then it
        takes requests again: the next failure starts another such pause)."""
        ready = self.producer is not None and (
            self.failed_at is None
            or time.monotonic() - self.failed_at > UNREADY_AFTER_FAILURE_S)
        return web.json_response({"status": "ok" if ready else "kafka_failing",
                                  "pending": self.pending}, status=200 if ready else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(body=generate_latest(self.registry),
                            content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @web.middleware
    async def _problems(self, request: web.Request,
                        handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                        ) -> web.StreamResponse:
        """Every error as an RFC 9457 problem document."""
        try:
            return await handler(request)
        except Rejected as rejected:
            headers = rejected.more.pop("headers", {})
            return _problem(rejected.status, rejected.detail, headers, **rejected.more)
        except web.HTTPException as error:
            if error.status < 400:
                raise
            return _problem(error.status, error.reason, dict(error.headers))


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _problem(status: int, detail: str, headers: dict[str, str], **more: Any) -> web.Response:
    headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
    return web.Response(body=http.problem(status, detail, **more), status=status,
                        headers=headers, content_type=http.PROBLEM)


def _segment_defaults(call: dict[str, Any]) -> dict[str, Any]:
    """A Segment call with what Segment's API makes optional: `messageId` (a digest of the
    call, so a resend is the same event) and `timestamp` (sentAt or receivedAt, else now)."""
    call = dict(call)
    if not call.get("messageId"):
        digest = hashlib.sha256(json.dumps(call, sort_keys=True).encode()).hexdigest()
        call["messageId"] = f"ingest:{digest[:32]}"
    if not call.get("timestamp"):
        call["timestamp"] = call.get("sentAt") or call.get("receivedAt") or \
            datetime.now(UTC).isoformat()
    return call


def _json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError as error:
        raise Rejected(400, f"the body is not JSON: {error}") from None


def _items(body: bytes, content_type: str) -> list[bytes]:
    """The events of a body: one JSON object, a JSON array of them, or NDJSON lines (each line
    kept as sent)."""
    text = body.strip()
    if not text:
        raise Rejected(400, "the body is empty: send a JSON event, an array of them or NDJSON")
    if "ndjson" not in content_type:
        try:
            whole = json.loads(text)
        except ValueError:
            whole = None  # NDJSON sent as something else, or no JSON: by line
        if isinstance(whole, list):
            return [json.dumps(e, ensure_ascii=False).encode() for e in whole]
        if whole is not None:
            return [text]
    return [line for line in text.split(b"\n") if line.strip()]


def run(settings: Settings) -> None:
    """Connect to Kafka, then serve until SIGTERM or Ctrl-C."""
    ingest = Ingest(settings)
    ingest.connect()
    log.warning("tierstream ingest on http://%s:%s", settings.ingest_host, settings.ingest_port)
    web.run_app(ingest.app(), host=settings.ingest_host, port=settings.ingest_port,
                print=None, shutdown_timeout=10)
