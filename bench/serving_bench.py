"""How long until a tier change is readable from Redis and from the HTTP API (prints a table).

    python bench/serving_bench.py [--samples N] [--warmup N] [--poll-ms MS]

Starts a local Apache Kafka, a redis-server and one worker, then sends one order per customer
(each one a first tier assignment), one at a time: the next order is sent once the previous one
is readable. Customers alternate between two sets: one is polled only in the Redis view, the
other only with GET /customers/{id}, so neither latency includes the other's polling. A sample is
the time from the producer's acknowledgement to the first poll that sees the tier; polls are
`--poll-ms` apart, so a sample overstates the latency by up to one poll interval plus the poll's
own time. The first `--warmup` customers are not counted. A percentile is printed only when at
least 10 samples lie above it (p99 needs 1,000). Needs Java 17, Maven and Debian's redis-server,
like the integration tests.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import redis
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.dev.local_kafka import LocalKafka  # noqa: E402
from streams.view.redis_view import Keys  # noqa: E402
from tests.integration.harness import Worker, create_topics, http_get, isolated_settings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

POLICY = Path(__file__).resolve().parent.parent / "rules" / "policies" / "default.yaml"
PERCENTILES = (0.5, 0.9, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=3000, help="samples per path")
    parser.add_argument("--warmup", type=int, default=20, help="customers sent first, not counted")
    parser.add_argument("--poll-ms", type=float, default=1.0, help="pause between polls")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, LocalKafka() as kafka, RedisServer() as server:
        settings = isolated_settings(kafka.bootstrap_servers, Path(tmp))
        create_topics(settings)
        prefix = "bench:v1"
        worker = Worker(settings, POLICY, Path(tmp), env_overrides={
            "TIERSTREAM_REDIS_URL": server.url, "TIERSTREAM_REDIS_PREFIX": prefix})
        worker.start()
        try:
            http_get(f"{worker.url}/health", timeout=120)
            started = time.monotonic()
            to_redis, to_http = measure(settings, worker, server.url, prefix, args)
            seconds = time.monotonic() - started
        finally:
            worker.stop()
    table = Table(title=f"Kafka ack to readable tier: one worker, one first order at a time, "
                        f"polled every {args.poll_ms:g} ms ({seconds:,.0f} s)")
    columns = ("path", "n", *(f"p{p * 100:g} ms" for p in PERCENTILES), "max ms")
    for column in columns:
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, samples in (("Redis view (HGET)", to_redis),
                          ("GET /customers/{id}", to_http)):
        ordered = sorted(samples)
        table.add_row(name, f"{len(ordered):,}",
                      *(ms(percentile(ordered, p)) for p in PERCENTILES), ms(ordered[-1]))
    Console().print(table)


def percentile(ordered: list[float], p: float) -> float | None:
    """Nearest-rank percentile, or None when fewer than 10 samples lie above it."""
    rank = max(math.ceil(round(p * len(ordered), 9)), 1)
    return ordered[rank - 1] if len(ordered) - rank >= 10 else None


def ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:,.1f}"


def measure(settings, worker: Worker, url: str, prefix: str, args: argparse.Namespace
            ) -> tuple[list[float], list[float]]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    client = redis.Redis.from_url(url)
    keys, pause = Keys(prefix), args.poll_ms / 1e3
    samples: dict[str, list[float]] = {"redis": [], "http": []}

    def in_redis(customer: str) -> bool:
        return bool(client.hget(keys.customer(customer), "tier"))

    def in_http(customer: str) -> bool:
        return http_get(f"{worker.url}/customers/{customer}", timeout=0)[0] == 200

    try:
        for n in range(args.warmup + 2 * args.samples):
            customer = f"bench-{n}"
            path = "redis" if n % 2 == 0 else "http"
            readable = in_redis if path == "redis" else in_http
            event = {"type": "order_completed", "event_id": f"b{n}", "customer_id": customer,
                     "occurred_at": "2026-01-01T00:00:00Z", "order_id": f"o{n}",
                     "amount": 100, "currency": "CNY"}
            producer.send(settings.topics.orders, key=customer.encode(),
                          value=json.dumps(event).encode()).get(timeout=30)
            acked = time.perf_counter()
            while not readable(customer):
                if time.perf_counter() - acked > 60:
                    raise SystemExit(f"{customer} not readable via {path} after 60 s")
                time.sleep(pause)
            if n >= args.warmup:
                samples[path].append(time.perf_counter() - acked)
    finally:
        producer.close()
        client.close()
    return samples["redis"], samples["http"]


if __name__ == "__main__":
    main()
