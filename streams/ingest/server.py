"""The ingress: POSTed events checked against the input contract and produced to the input
topics, keyed by customer id, before the answer (acks=all): a 2xx means Kafka has them.

- `POST /events`: native or Segment events, one JSON object, a JSON array or NDJSON lines;
  `TIERSTREAM_INGEST_TOKEN` as a bearer token if set.
- `POST /v1/track`, `POST /v1/batch`: Segment's HTTP tracking API (the write key as the basic
  auth user, if `TIERSTREAM_SEGMENT_WRITE_KEY` is set); calls other than e-commerce track calls
  (identify, page, other events) are ignored and counted.
- `POST /webhooks/shopify`: orders/create, orders/cancelled, refunds/create, verified by HMAC
  (`TIERSTREAM_SHOPIFY_SECRET`, required); a webhook id seen lately is answered without producing
  again, and every event id derives from Shopify's ids, so a redelivery is applied once anyway.
- `/health/live`, `/health/ready`, `/metrics`.

A request with any invalid event produces none of them and answers 400 naming each (index,
reason, error); more events waiting for Kafka than TIERSTREAM_INGEST_MAX_PENDING answers 503 with
Retry-After. Errors are RFC 9457 problem documents.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import logging
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from http import HTTPStatus
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

from models.errors import ConnectError, InvalidEventError
from models.event_contract import SEGMENT_INTERACTIONS, SEGMENT_ORDERS
from models.events import Interaction, parse_event
from streams.ingest import shopify
from streams.kafka import clients
from streams.settings import Settings

log = logging.getLogger("tierstream.ingest")
MAX_BODY_BYTES = 4 * 1024 * 1024
RECENT_WEBHOOKS = 100_000  # Shopify webhook ids remembered, to answer a redelivery at once
PROBLEM = "application/problem+json"
Record = tuple[str, bytes, bytes]  # topic, key, value


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
        self.failing = False  # the last send to Kafka failed
        self.producer: KafkaProducer | None = None
        self.orders: dict[str, str] = {}  # Shopify order id -> customer id
        self.recent: OrderedDict[str, None] = OrderedDict()  # Shopify webhook ids
        self.index_topic = f"{settings.app_id}-ingest-shopify-orders"

    # -- start and stop --------------------------------------------------------------------

    def connect(self) -> None:
        """The producer, and the Shopify order index read from its compacted topic (created if
        missing); ConnectError when Kafka cannot be used."""
        config = clients.kafka_python_config(self.settings)
        try:
            self.producer = KafkaProducer(client_id=f"{self.settings.app_id}-ingest", acks="all",
                                          linger_ms=5, max_block_ms=10_000, **config)
        except KafkaError as error:
            raise ConnectError(f"cannot use Kafka at {self.settings.bootstrap_servers}: "
                               f"{type(error).__name__}: {error}") from None
        if self.settings.shopify_secret is not None:
            self._load_index(config)

    def _load_index(self, config: dict[str, Any]) -> None:
        admin = clients.admin(self.settings)
        try:
            admin.create_topics([NewTopic(self.index_topic, 1, self.settings.replication,
                                          topic_configs={"cleanup.policy": "compact"})])
        except TopicAlreadyExistsError:
            pass
        finally:
            admin.close()
        consumer = KafkaConsumer(group_id=None, enable_auto_commit=False, **config)
        try:
            ends = clients.assign_from_beginning(consumer, self.index_topic,
                                                 self.settings.bootstrap_servers)
            for record in clients.read_to_end(consumer, ends, idle_timeout_s=30):
                if record.value is not None:
                    self.orders[record.key.decode()] = record.value.decode()
        finally:
            consumer.close()
        log.info("shopify order index: %d orders from %s", len(self.orders), self.index_topic)

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
            try:
                response = await handler(request)
            except Rejected as rejected:
                if rejected.status == 400 and "errors" in rejected.more:
                    self.events.labels(name, "invalid").inc(len(rejected.more["errors"]))
                self.requests.labels(name, str(rejected.status)).inc()
                raise
            self.requests.labels(name, str(response.status)).inc()
            return response
        return counted

    async def native(self, request: web.Request) -> web.Response:
        self._bearer(request)
        body = await request.read()
        items = _items(body, request.content_type)
        records = self._checked(items)
        await self._produce(records)
        self.events.labels("native", "produced").inc(len(records))
        return web.json_response({"accepted": len(records)}, status=202)

    async def segment_track(self, request: web.Request) -> web.Response:
        self._write_key(request)
        return await self._segment_calls([_json(await request.read())])

    async def segment_batch(self, request: web.Request) -> web.Response:
        self._write_key(request)
        body = _json(await request.read())
        calls = body.get("batch") if isinstance(body, dict) else None
        if not isinstance(calls, list):
            raise Rejected(400, 'a Segment batch is {"batch": [call, ...]}')
        return await self._segment_calls(calls)

    async def _segment_calls(self, calls: list[Any]) -> web.Response:
        wanted = [c for c in calls if isinstance(c, dict) and c.get("type") == "track"
                  and c.get("event") in SEGMENT_ORDERS + SEGMENT_INTERACTIONS]
        ignored = len(calls) - len(wanted)
        records = self._checked([json.dumps(c).encode() for c in wanted])
        await self._produce(records)
        self.events.labels("segment", "produced").inc(len(records))
        self.events.labels("segment", "ignored").inc(ignored)
        return web.json_response({"success": True, "accepted": len(records), "ignored": ignored})

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
        if not isinstance(payload, dict):
            raise Rejected(400, "a Shopify webhook body is a JSON object")
        try:
            events = shopify.events(topic, payload, self.orders)
        except shopify.WebhookError as error:
            raise Rejected(error.status, str(error)) from None
        records = self._checked([json.dumps(e).encode() for e in events])
        if topic == "orders/create":
            order, customer = events[0]["order_id"], events[0]["customer_id"]
            records.append((self.index_topic, order.encode(), customer.encode()))
            self.orders[order] = customer
        await self._produce(records)
        if webhook is not None:
            self.recent[webhook] = None
            while len(self.recent) > RECENT_WEBHOOKS:
                self.recent.popitem(last=False)
        self.events.labels("shopify", "produced").inc(len(events))
        return web.json_response({"accepted": len(events)})

    # -- checks ----------------------------------------------------------------------------

    def _bearer(self, request: web.Request) -> None:
        token = self.settings.ingest_token
        if token is None:
            return
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if not (scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip().encode(), token.get_secret_value().encode())):
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

    def _checked(self, items: list[bytes]) -> list[Record]:
        """Each event's record, or Rejected naming every invalid one."""
        names = self.settings.topics
        records, errors = [], []
        for index, raw in enumerate(items):
            try:
                event = parse_event(raw)
            except InvalidEventError as error:
                errors.append({"index": index, "reason": error.reason, "error": str(error)})
                continue
            topic = names.interactions if isinstance(event, Interaction) else names.orders
            records.append((topic, event.customer_id.encode(), raw))
        if errors:
            raise Rejected(400, f"{len(errors)} of {len(items)} events are invalid; none was "
                                "accepted", errors=errors)
        return records

    async def _produce(self, records: list[Record]) -> None:
        """Send the records and wait for Kafka's acknowledgement of all of them."""
        if self.pending + len(records) > self.settings.ingest_max_pending:
            raise Rejected(503, f"{self.pending} events are waiting for Kafka; retry later",
                           headers={"Retry-After": "1"})
        assert self.producer is not None
        loop = asyncio.get_running_loop()
        waiting = []
        self._pending(len(records))
        try:
            for topic, key, value in records:
                done = loop.create_future()
                sent = self.producer.send(topic, key=key, value=value)
                sent.add_callback(lambda _, done=done: loop.call_soon_threadsafe(_settle, done,
                                                                                 None))
                sent.add_errback(lambda error, done=done: loop.call_soon_threadsafe(
                    _settle, done, error))
                waiting.append(done)
            await asyncio.gather(*waiting)
            self.failing = False
        except KafkaError as error:
            self.failing = True
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
        """200 once connected, until a send fails (and again after one succeeds)."""
        ready = self.producer is not None and not self.failing
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
            return _problem(error.status, error.reason, {})


def _settle(done: asyncio.Future, error: BaseException | None) -> None:
    if done.done():
        return
    if error is None:
        done.set_result(None)
    else:
        done.set_exception(error)


def _problem(status: int, detail: str, headers: dict[str, str], **more: Any) -> web.Response:
    body = {"type": "about:blank", "title": HTTPStatus(status).phrase, "status": status,
            "detail": detail, **more}
    return web.Response(body=json.dumps(body).encode(), status=status, headers=headers,
                        content_type=PROBLEM)


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
    if "ndjson" in content_type or (text[:1] == b"{" and b"\n" in text):
        return [line for line in text.split(b"\n") if line.strip()]
    if text[:1] == b"[":
        events = _json(text)
        return [json.dumps(e, ensure_ascii=False).encode() for e in events]
    return [text]


def run(settings: Settings) -> None:
    """Connect to Kafka, then serve until SIGTERM or Ctrl-C."""
    ingest = Ingest(settings)
    ingest.connect()
    log.warning("tierstream ingest on http://%s:%s", settings.ingest_host, settings.ingest_port)
    web.run_app(ingest.app(), host=settings.ingest_host, port=settings.ingest_port,
                print=None, shutdown_timeout=10)
