"""The faust worker: one composition root wiring topics, the customer table, agents and the timer.

Order of effects per event, for at-least-once delivery with nothing lost: the engine computes the
new state and outputs; the outputs are sent; once Kafka has them the table (changelog) is
written and then the event acked (streams/after_delivery.py), while the stream goes on with the
next events; faust commits acked offsets only, once its producer is flushed. A worker killed
anywhere in between reprocesses the event: either the state is still the old one and the same
outputs are produced again with the same ids, or the state already has the event and the engine
ignores it as a duplicate.
"""

from __future__ import annotations

import asyncio
import gc
import json
import logging
import time
from collections import Counter
from typing import Any

import faust
from faust.streams import current_event

from models.errors import ConnectError, InvalidEventError, PolicyEvaluationError
from models.events import MAX_EVENT_BYTES, CustomerErased, parse_event
from models.instants import MICROS_PER_SECOND, to_micros
from models.outputs import CustomerTier, OutputEvent
from models.state import CustomerState, Stored
from rules import sketches
from rules.admission import admit
from rules.compiled import CompiledPolicy
from rules.due_index import DueIndex
from rules.engine import Failed, apply, refresh, stale, wake
from rules.relative import Population
from streams import faust_fixes, kafka_clients, population, topics, web
from streams.after_delivery import AfterDelivery
from rules.clock import PartitionClocks
from streams.metrics import Metrics
from streams.redis_view import RedisView
from streams.settings import TABLE_NAME, Settings
from streams.shutdown import GracefulWorker
from streams.topic_watch import TopicWatch

log = logging.getLogger("tierstream.worker")
REDIS_FLUSH_INTERVAL_S = 0.5
# A dead letter keeps at most this much of the message's value and key, so it always fits under
# Kafka's 1 MB record limit: an input too large to copy is kept truncated, with its size.
DEAD_LETTER_MAX_VALUE = 4 * MAX_EVENT_BYTES  # 256 KiB: whole up to there
DEAD_LETTER_MAX_KEY = 1024
MAX_UNDELIVERED = 1000  # steps per partition waiting for delivery before the stream waits too


def wall_micros() -> int:
    return time.time_ns() // 1000


class Runtime:
    """The worker's moving parts; `app` is the faust application to run."""

    def __init__(self, settings: Settings, policy: CompiledPolicy,
                 metrics: Metrics | None = None) -> None:
        self.settings, self.policy = settings, policy
        self.metrics = metrics or Metrics.create()
        self.ready = False
        self._redis_flush: asyncio.Future | None = None  # the Redis write running, if any
        self.tiers: Counter[str] = Counter()  # customers per tier on this worker's partitions
        self.clocks = PartitionClocks(int(settings.idle_after_s * MICROS_PER_SECOND))
        self.due = DueIndex()
        self.after_delivery = AfterDelivery()
        # customer -> (partition, state) computed but not yet in the table; None: erased
        self.unstored: dict[str, tuple[int, CustomerState | None]] = {}
        self.members: dict[int, set[str]] = {}  # relative metrics: customers per partition
        # Relative metrics: the complete populations read from Kafka, and the one each partition's
        # customers have been moved to (a partition missing here is moved on its next tick).
        self.reports = population.Reports(settings.partitions, policy.relative_bases) \
            if policy.relative else None
        self.moved: dict[int, Population] = {}
        self.late: set[int] = set()  # partitions with events dated before their last report
        self.lateness = int(settings.lateness_s * MICROS_PER_SECOND)
        self.max_future = int(settings.max_future_s * MICROS_PER_SECOND)
        names = settings.topics
        faust_fixes.install()
        self.app = faust.App(
            settings.app_id, broker=f"kafka://{settings.bootstrap_servers}",
            store=settings.store, datadir=str(settings.data_dir),
            topic_partitions=settings.partitions, topic_replication_factor=settings.replication,
            consumer_auto_offset_reset="earliest", processing_guarantee="at_least_once",
            web_enabled=True, web_bind=settings.web_host, web_port=settings.web_port,
            canonical_url=settings.web_url, table_standby_replicas=0,
            broker_credentials=kafka_clients.faust_credentials(settings),
            key_serializer="json", value_serializer="json")
        raw = {"key_serializer": "raw", "value_serializer": "raw"}
        # Inputs and ticks are one stream for one agent: a customer's events and its time-driven
        # work never interleave, so each load-decide-publish-store runs alone.
        self.stream = self.app.topic(*names.inputs, names.ticks, **raw)
        self.ticks = self.app.topic(names.ticks, **raw)
        self.outputs = {kind: self.app.topic(name, **raw) for kind, name in (
            ("tier-changes", names.tier_changes), ("churn-warnings", names.churn_warnings))}
        self.customer_tiers = self.app.topic(names.customer_tiers, **raw)
        self.dead_letters = self.app.topic(names.dead_letters, **raw)
        self.population_topic = self.app.topic(names.population, **raw)
        # Values are JSON bytes (models.state.Stored), parsed per lookup: bytes are not tracked
        # by the garbage collector, parsed states are (docs/streaming.md, "State").
        self.table = self.app.Table(TABLE_NAME, partitions=settings.partitions,
                                    value_type=bytes)
        self.app.agent(self.stream, name="tierstream")(self._process)
        self.app.timer(interval=settings.tick_interval_s)(self._send_ticks)
        self.table.on_recover(self._rebuild_due_index)
        self.app.on_partitions_revoked.connect(self._revoked)
        self.redis = None if settings.redis_url is None else RedisView.from_url(
            settings.redis_url.get_secret_value(), prefix=settings.redis_prefix,
            metrics=self.metrics, kafka=kafka_clients.kafka_python_config(settings),
            topic=names.customer_tiers)  # to rebuild itself when Redis lost its data
        if self.redis is not None:
            self.app.timer(interval=REDIS_FLUSH_INTERVAL_S)(self.redis.flush)
        # missing topics: /health, metric, log; a failed delivery stops the worker
        self.topic_watch = TopicWatch(settings, self.app, self.metrics,
                                      failure=lambda: self.after_delivery.failure)
        web.install(self)

    async def _process(self, stream: Any) -> None:
        # acked by hand, each event after its table writes (streams/after_delivery.py)
        async for event in stream.noack().events():
            self.after_delivery.check()
            partition = event.message.partition
            sent: list[asyncio.Future] = []
            if event.message.topic == self.settings.topics.ticks:
                await self._tick(partition)
            else:
                sent = await self._event(event.message)
            self.after_delivery.then(partition, event, sent, event.ack)
            self.metrics.undelivered.set(self.after_delivery.waiting())
            await self.after_delivery.settle(partition, MAX_UNDELIVERED)

    async def _event(self, message: Any) -> list[asyncio.Future]:
        """Process an input message; the dead letter it was sent as, if any, is returned."""
        started, wall = time.perf_counter(), wall_micros()
        self.clocks.read(message.partition, wall)
        try:
            parsed = parse_event(message.value or b"")
            admit(parsed, self.policy, wall=wall, max_future=self.max_future, key=message.key)
        except InvalidEventError as error:
            return [await self._dead_letter(message, error)]
        partition, customer = message.partition, parsed.customer_id
        t = to_micros(parsed.occurred_at)
        # boundaries before the event (one at its instant comes after it, as in replay); a late
        # event never makes the partition report a boundary it has already passed
        await self._pass_boundary(partition, max(t, self.clocks.watermark(partition) or t) - 1)
        await self._move_to_latest(partition)
        before = self.load(customer)
        if before is not None and before.next_change_at is not None \
                and before.next_change_at <= t:  # woken first, as replay wakes it before t
            await self._wake(partition, customer, before, t)
            before = self.load(customer)
        self.clocks.observe(partition, t, wall)  # as replay's clock, even if the engine refuses
        try:
            state, outputs = apply(before, parsed, self.policy, self.population(partition))
        except PolicyEvaluationError as error:
            return [await self._dead_letter(message, InvalidEventError(str(error),
                                                                      "policy_error"),
                                            parsed.type)]
        except InvalidEventError as error:  # refused: customer_full, conflicting_duplicate
            return [await self._dead_letter(message, error, parsed.type)]
        await self._emit(partition, customer, before, state, outputs,
                         erased=isinstance(parsed, CustomerErased))
        if self.reports is not None and state is not before:
            published = self.reports.of(partition)
            if published and t <= published[0].boundary:
                self.late.add(partition)
        outcome = "stale" if stale(before, parsed, self.policy) else \
            "duplicate" if state is before else "applied"
        self.metrics.events.labels(message.topic, parsed.type, outcome).inc()
        self.metrics.event_time_lag.observe(
            max(wall - to_micros(parsed.occurred_at), 0) / MICROS_PER_SECOND)
        self.metrics.processing.observe(time.perf_counter() - started)
        return []

    async def _tick(self, partition: int) -> None:
        self.clocks.ticked(partition, wall_micros())
        now = self.clocks.now(partition, wall_micros())
        if now is None:
            return
        await self._pass_boundary(partition, now - self.lateness,
                                  again=self.clocks.idle(partition, wall_micros()))
        await self._move_to_latest(partition)
        self.metrics.timer_due.set(await self._advance_due(partition, now - self.lateness))

    async def _advance_due(self, partition: int, now: int) -> int:
        """Let time pass up to `now` for the partition's customers with a change due by then."""
        due_customers = 0
        while (entry := self.due.pop_next(partition, now)) is not None:
            due, customer = entry
            before = self.load(customer)
            if before is None or before.next_change_at != due:
                continue  # stale: re-evaluated or erased since it was scheduled
            due_customers += 1
            await self._wake(partition, customer, before, now)
        return due_customers

    async def _wake(self, partition: int, customer: str, before: CustomerState,
                    now: int) -> None:
        """Let time pass up to `now` for a due customer; a decision the policy fails on is
        dead-lettered and made again later (rules.engine.wake)."""
        state, outputs, failed = wake(before, self.policy, now, self.population(partition))
        dead = [await self._failed_decision(failure) for failure in failed]
        await self._emit(partition, customer, before, state, outputs, also_sent=dead)

    def population(self, partition: int) -> Population | None:
        """The population the partition's customers are decided in (None without relative
        metrics or before the first complete one)."""
        if self.reports is None:
            return None
        return self.moved[partition] if partition in self.moved else self.reports.latest()

    async def _pass_boundary(self, partition: int, horizon: int, again: bool = False) -> None:
        """Once the partition's time reaches a refresh boundary (the latest at or before
        `horizon`) not yet reported, report its population there: what replay snapshots at that
        boundary, after every change due by then and before any later event.

        Events dated before the last report can still come (a partition that followed the wall
        clock while idle, then a backfill; late events): with `again` (the partition is idle
        now) a partition that had such events reports that boundary again, from its customers'
        values as of the boundary, which later orders do not change."""
        if self.reports is None:
            return
        boundary = horizon // self.policy.refresh * self.policy.refresh
        published = self.reports.of(partition)
        if published and boundary <= published[0].boundary:
            if not (again and partition in self.late):
                return
            boundary, published = published[0].boundary, published[1:]
        self.late.discard(partition)
        await self._advance_due(partition, boundary)
        values = [self.policy.base_values(state, boundary) for customer in
                  sorted(self.members.get(partition, ())) if (state := self.load(customer))]
        report = population.Report(boundary, len(values), {
            base: sketches.sketch((v[base] for v in values), self.settings.sketch_k)
            for base in self.policy.relative_bases})
        record = population.encode(partition, self.settings.partitions, [report, *published])
        await (await self.population_topic.send(key=str(partition).encode(), value=record))
        self.reports.add(record)  # the feed will read it again: the same record, no change
        log.info("partition %s reported its population at %s: %s customers", partition,
                 boundary, len(values))

    async def _move_to_latest(self, partition: int) -> None:
        """Move every customer of the partition to the latest complete population, if newer
        than the one they are in (engine.refresh: only changed comparisons decide again)."""
        latest = None if self.reports is None else self.reports.latest()
        if latest is None:
            return
        current = self.moved.get(partition)
        if current is latest:
            return
        # After a restart or rebalance the population the partition's customers were decided in
        # is unknown (the previous one, an earlier report of this boundary, or this one), so
        # every customer is decided again; deciding again in the same population at the same
        # instant changes nothing (tests/test_relative.py).
        known = partition in self.moved
        old = current if known else self.reports.before(latest)
        for customer in sorted(self.members.get(partition, ())):
            before = self.load(customer)
            if before is None:
                continue
            state, outputs, failed = refresh(before, self.policy, old, latest,
                                             changed=None if known else True)
            dead = [await self._failed_decision(failure) for failure in failed]
            await self._emit(partition, customer, before, state, outputs, also_sent=dead)
        self.moved[partition] = latest
        self.metrics.population_taken_at.set(latest.taken_at / MICROS_PER_SECOND)

    async def _send_ticks(self) -> None:
        """One tick per assigned partition, so time-driven work runs inside stream iteration."""
        wall = wall_micros()
        partitions = self.assigned()
        self.clocks.assigned(partitions, wall)
        for partition in partitions:
            await self.ticks.send(key=b"tick", value=str(wall).encode(), partition=partition)

    def assigned(self) -> list[int]:
        assignment = self.app.consumer.assignment() if self.app.consumer else set()
        return sorted(tp.partition for tp in assignment if tp.topic == self.settings.topics.ticks)

    def load(self, customer: str) -> CustomerState | None:
        if customer in self.unstored:
            return self.unstored[customer][1]
        stored = self.table.get(customer)
        return None if stored is None else Stored.model_validate_json(stored).state

    async def _emit(self, partition: int, customer: str, before: CustomerState | None,
                    state: CustomerState | None, outputs: list[OutputEvent],
                    erased: bool = False, also_sent: list[asyncio.Future] | None = None) -> None:
        """Send the outputs and the current-tier record; the table write and the Redis view
        follow once Kafka has them and `also_sent` (dead letters of failed decisions)."""
        key = customer.encode()
        sent = [*(also_sent or ()), *[
            await self.outputs[o.topic_kind].send(key=key, value=o.model_dump_json().encode())
            for o in outputs]]
        record: bytes | None = None
        if erased or (outputs and state is not None):
            record = None if erased or state is None else current_tier(state)
            sent.append(await self.customer_tiers.send(key=key, value=record))
        if state is before and not sent:
            return  # a duplicate: nothing changed
        self._count(before, state)
        self._count_outputs(outputs)
        if state is None:
            self.members.get(partition, set()).discard(customer)
        elif state is not before:
            if self.reports is not None:
                self.members.setdefault(partition, set()).add(customer)
            if before is None or before.next_change_at != state.next_change_at:
                self.due.schedule(partition, state.next_change_at, customer)
        self.unstored[customer] = (partition, state)

        def store() -> None:
            if state is None:
                self.table.pop(customer, None)
            elif state is not before:
                self.table[customer] = Stored(partition=partition,
                                              state=state).model_dump_json().encode()
            held = self.unstored.get(customer)
            if held is not None and held[1] is state:  # else a later state is waiting
                del self.unstored[customer]
            if (outputs or erased) and self.redis is not None:  # derived: written behind
                self.redis.offer(customer, record, before and before.created_at)
                self._flush_redis()

        self.after_delivery.then(partition, current_event(), sent, store)

    def _count(self, before: CustomerState | None, state: CustomerState | None) -> None:
        """Customers per tier: one moves from the tier of `before` to that of `state`."""
        old, new = before and before.tier, state and state.tier
        if old == new:
            return
        for tier, change in ((old, -1), (new, +1)):
            if tier is not None:
                self.tiers[tier] += change
                self.metrics.customers.labels(tier).set(self.tiers[tier])

    def _flush_redis(self, previous: asyncio.Future | None = None) -> None:
        """Write the Redis view right behind the changes, one flush at a time: a change offered
        during a flush goes with the next, started when it ends if it wrote anything (after a
        Redis failure, the timer retries every REDIS_FLUSH_INTERVAL_S)."""
        assert self.redis is not None
        if previous is None:
            if self._redis_flush is not None and not self._redis_flush.done():
                return
        elif previous.cancelled() or previous.exception() is not None or \
                not previous.result() or not self.redis.backlog:
            return
        self._redis_flush = asyncio.ensure_future(self.redis.flush())
        self._redis_flush.add_done_callback(self._flush_redis)

    def _count_outputs(self, outputs: list[OutputEvent]) -> None:
        for output in outputs:
            data = output.data
            self.metrics.transitions.labels(output.type, data.from_tier or "",
                                            data.to_tier or "").inc()
            if output.type == "tierstream.churn.warning":
                self.metrics.churn_warnings.labels(data.rule).inc()

    async def _dead_letter(self, message: Any, error: InvalidEventError,
                           event_type: str = "invalid") -> asyncio.Future:
        headers = [("source_topic", message.topic.encode()),
                   ("source_partition", str(message.partition).encode()),
                   ("source_offset", str(message.offset).encode())]
        key, value = message.key, message.value
        if len(value or b"") > DEAD_LETTER_MAX_VALUE or len(key or b"") > DEAD_LETTER_MAX_KEY:
            headers += [("truncated", b"true"),
                        ("original_value_bytes", str(len(value or b"")).encode()),
                        ("original_key_bytes", str(len(key or b"")).encode())]
            key = None if key is None else key[:DEAD_LETTER_MAX_KEY]
            value = None if value is None else value[:DEAD_LETTER_MAX_VALUE]
        log.warning("dead letter %s[%s]@%s: %s", message.topic, message.partition,
                    message.offset, str(error)[:200])
        self.metrics.events.labels(message.topic, event_type, "dead_letter").inc()
        return await self._send_dead_letter(key, value, error.reason, str(error), headers)

    async def _failed_decision(self, failed: Failed) -> asyncio.Future:
        """A time-driven decision has no input message: its dead letter is keyed by the customer
        and says when the policy failed and how, with the ticks topic as its source."""
        record = failed.record()
        log.error("policy failed to decide customer %s at %s (decided again later): %s",
                  failed.customer_id, record["at"], failed.error)
        return await self._send_dead_letter(
            failed.customer_id.encode(), json.dumps(record).encode(), "policy_error",
            str(failed.error), [("source_topic", self.settings.topics.ticks.encode())])

    async def _send_dead_letter(self, key: bytes | None, value: bytes | None, reason: str,
                                error: str, headers: list[tuple[str, bytes]]) -> asyncio.Future:
        """Send one dead letter with its reason and error headers, and count it."""
        headers = [*headers, ("reason", reason.encode()), ("error", error[:1000].encode())]
        sent = await self.dead_letters.send(key=key, value=value, headers=headers)
        self.metrics.dead_letters.labels(reason).inc()
        return sent

    async def _rebuild_due_index(self) -> None:
        """After recovery: one pass over the recovered customers, not one per tick.

        A partition's clock starts again from the events read after recovery, never from its
        customers' clocks: the table can be ahead of the committed input (states written after
        the last offset commit), and a clock taken from it would let the ticks decide customers
        whose events are still to be read again (docs/streaming.md, "Time")."""
        partitions = set(self.assigned())
        self.due.drop(list(range(self.settings.partitions)))
        self.tiers.clear()
        self.members.clear()
        self.moved.clear()
        for customer, stored in self.table.items():
            record = json.loads(stored)  # the fields needed, not a validated state
            partition, state = record["partition"], record["state"]
            if partition in partitions:
                if self.reports is not None:
                    self.members.setdefault(partition, set()).add(customer)
                self.due.schedule(partition, state.get("next_change_at"), customer)
                if state["tier"] is not None:
                    self.tiers[state["tier"]] += 1
        for tier in self.policy.tier_ids:
            self.metrics.customers.labels(tier).set(self.tiers[tier])
        if not self.ready:  # what lives now (modules, the app) lives on: never scan it again
            gc.freeze()
        self.ready = True

    async def _revoked(self, sender: Any, revoked: set, **_: Any) -> None:
        partitions = {tp.partition for tp in revoked if tp.topic == self.settings.topics.ticks}
        self.after_delivery.forget(partitions)
        self.unstored = {customer: held for customer, held in self.unstored.items()
                         if held[0] not in partitions}
        self.due.drop(partitions)
        self.clocks.forget(partitions)
        for partition in partitions:
            self.members.pop(partition, None)
            self.moved.pop(partition, None)
            self.late.discard(partition)


def current_tier(state: CustomerState) -> bytes:
    """The compacted `customer-tiers` record: what a lookup needs, keyed by customer id."""
    return CustomerTier.from_state(state).model_dump_json().encode()


def run(settings: Settings, policy: CompiledPolicy, loglevel: str = "WARNING") -> None:
    """Check the cluster and the topics, then run a worker until SIGTERM or Ctrl-C."""
    topics.check(settings)
    redis_check(settings)
    runtime = Runtime(settings, policy)
    if runtime.reports is not None:  # the populations so far, before the first event
        feed = population.Feed(settings, runtime.reports)
        feed.load()
        feed.start()
    # SIGTERM stops the worker within shutdown.GRACE_S in every state
    GracefulWorker(runtime.app, loglevel=loglevel, quiet=True).execute_from_commandline()


def redis_check(settings: Settings) -> None:
    """Fail at start, clearly, when Redis is configured but unreachable or refuses us."""
    if settings.redis_url is None:
        return
    import redis

    url = settings.redis_url.get_secret_value()
    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
    except redis.RedisError as error:
        where = url.rsplit("@", 1)[-1]  # never print the password
        raise ConnectError(
            f"cannot use Redis at {where}: {type(error).__name__}: {error}") from None
    finally:
        client.close()
