"""Prometheus metrics of a worker, created against an injected registry (never the global one)."""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    ProcessCollector,
)

LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
LAG_BUCKETS_S = (0.1, 0.5, 1.0, 5.0, 15.0, 60.0, 300.0, 900.0, 3600.0, 21600.0, 86400.0)


@dataclass(frozen=True)
class Metrics:
    """Every metric a worker exports; names carry their unit."""

    registry: CollectorRegistry
    events: Counter
    dead_letters: Counter
    processing: Histogram
    event_time_lag: Histogram
    transitions: Counter
    churn_warnings: Counter
    followups: Counter
    customers: Gauge
    classes: Gauge
    axis_moves: Counter
    timer_due: Gauge
    population_taken_at: Gauge
    redis_errors: Counter
    redis_backlog: Gauge
    undelivered: Gauge
    redis_resets: Counter
    redis_rebuilding: Gauge
    topic_unusable: Gauge
    transactions: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = None) -> Metrics:
        r = registry or CollectorRegistry()
        ProcessCollector(registry=r)  # process_*: CPU seconds, resident memory, open fds
        GCCollector(registry=r)  # python_gc_*: collections and objects collected per generation
        return cls(
            registry=r,
            events=Counter("tierstream_events_total", "Input messages by topic, event type and "
                           "outcome (applied, duplicate, stale, dead_letter)",
                           ["topic", "type", "outcome"], registry=r),
            dead_letters=Counter("tierstream_dead_letters_total",
                                 "Messages sent to the dead-letter topic, by reason",
                                 ["reason"], registry=r),
            processing=Histogram("tierstream_processing_seconds",
                                 "Time to process one input message, averaged over its batch "
                                 "(one sample per batch): decided, outputs delivered, states "
                                 "stored, offsets committed",
                                 buckets=LATENCY_BUCKETS_S, registry=r),
            event_time_lag=Histogram("tierstream_event_time_lag_seconds",
                                     "Wall clock minus occurred_at when an event is processed",
                                     buckets=LAG_BUCKETS_S, registry=r),
            transitions=Counter("tierstream_tier_transitions_total",
                                "Tier events by type and from/to tier",
                                ["type", "from_tier", "to_tier"], registry=r),
            churn_warnings=Counter("tierstream_churn_warnings_total",
                                   "Churn warnings opened, by rule", ["rule"], registry=r),
            followups=Counter("tierstream_followups_total", "Follow-up events by type, tier "
                              "and channel", ["type", "tier", "channel"], registry=r),
            customers=Gauge("tierstream_customers", "Customers per tier on this worker's "
                            "partitions", ["tier"], registry=r),
            classes=Gauge("tierstream_axis_customers", "Customers per class of each of the "
                          "policy's further axes on this worker's partitions",
                          ["axis", "class"], registry=r),
            axis_moves=Counter("tierstream_axis_transitions_total", "Axis events by type, axis "
                               "and from/to class", ["type", "axis", "from_class", "to_class"],
                               registry=r),
            timer_due=Gauge("tierstream_timer_due_customers",
                            "Customers due for time-driven work at the last tick", registry=r),
            population_taken_at=Gauge(
                "tierstream_population_taken_at_seconds",
                "Boundary (Unix time) of the population relative metrics are placed in; "
                "relative policies only", registry=r),
            redis_errors=Counter("tierstream_redis_errors_total",
                                 "Failed writes to the Redis view", registry=r),
            redis_backlog=Gauge("tierstream_redis_backlog_records",
                                "Tier records waiting to be written to Redis", registry=r),
            undelivered=Gauge("tierstream_undelivered_messages",
                              "Messages of the batch in hand waiting for delivery (its table "
                              "writes and offset commit wait for them)",
                              registry=r),
            redis_resets=Counter("tierstream_redis_view_resets_total",
                                 "Times this worker found the Redis view emptied (its generation "
                                 "marker gone or replaced): Redis restarted empty, was flushed or "
                                 "failed over", registry=r),
            redis_rebuilding=Gauge("tierstream_redis_view_rebuilding",
                                   "1 while the Redis view's generation is not rebuilt from "
                                   "customer-tiers yet (by this worker or another)", registry=r),
            topic_unusable=Gauge("tierstream_topic_unusable",
                                 "1 while a topic this worker needs is missing or has another "
                                 "partition count than it needs (streams/worker/topic_watch.py), "
                                 "else 0; checked every 10 s", ["topic"], registry=r),
            transactions=Counter("tierstream_transactions_total",
                                 "Kafka transactions of partitions' batches under exactly-once, "
                                 "by outcome: committed, or dropped (a rebalance began, or the "
                                 "producer was fenced: read again by the partition's next "
                                 "owner)", ["outcome"], registry=r),
        )
