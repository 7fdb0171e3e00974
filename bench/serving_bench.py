"""How long until a tier change is readable from Redis and from the HTTP API (prints a table).

    python bench/serving_bench.py [--customers N]

Starts a local Apache Kafka, a redis-server and one worker, then sends one order per customer
(each one a first tier assignment) at a modest rate and measures, per customer, the time from
the producer's acknowledgement to (a) the tier in the Redis view and (b) the tier from
GET /customers/{id}. Needs Java 17, Maven and Debian's redis-server, like the integration tests.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import redis
from kafka import KafkaProducer
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from streams.local_kafka import LocalKafka  # noqa: E402
from streams.redis_view import Keys  # noqa: E402
from tests.integration.harness import Worker, create_topics, http_get, isolated_settings  # noqa: E402
from tests.redis_server import RedisServer  # noqa: E402

POLICY = Path(__file__).resolve().parent.parent / "rules" / "policies" / "default.yaml"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=50)
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
            to_redis, to_http = measure(settings, worker, server.url, prefix, args.customers)
        finally:
            worker.stop()
    table = Table(title=f"event to readable tier, {args.customers} customers, one worker")
    for column in ("path", "p50 ms", "p99 ms", "max ms"):
        table.add_column(column, justify="left" if column == "path" else "right")
    for name, samples in (("Kafka ack -> Redis view", to_redis),
                          ("Kafka ack -> GET /customers/{id}", to_http)):
        ordered = sorted(samples)
        table.add_row(name, f"{statistics.median(ordered) * 1e3:,.1f}",
                      f"{ordered[int(0.99 * (len(ordered) - 1))] * 1e3:,.1f}",
                      f"{ordered[-1] * 1e3:,.1f}")
    Console().print(table)


def measure(settings, worker: Worker, url: str, prefix: str, customers: int
            ) -> tuple[list[float], list[float]]:
    producer = KafkaProducer(bootstrap_servers=settings.bootstrap_servers)
    client = redis.Redis.from_url(url)
    keys, to_redis, to_http = Keys(prefix), [], []
    try:
        for n in range(customers):
            customer = f"bench-{n}"
            event = {"type": "order_completed", "event_id": f"b{n}", "customer_id": customer,
                     "occurred_at": "2026-01-01T00:00:00Z", "order_id": f"o{n}",
                     "amount": 100, "currency": "CNY"}
            producer.send(settings.topics.orders, key=customer.encode(),
                          value=json.dumps(event).encode()).get(timeout=30)
            acked = time.perf_counter()
            in_redis = in_http = None
            while in_redis is None or in_http is None:
                if in_redis is None and client.hget(keys.customer(customer), "tier"):
                    in_redis = time.perf_counter() - acked
                if in_http is None and http_get(f"{worker.url}/customers/{customer}",
                                                timeout=0)[0] == 200:
                    in_http = time.perf_counter() - acked
                time.sleep(0.002)
            to_redis.append(in_redis)
            to_http.append(in_http)
    finally:
        producer.close()
        client.close()
    return to_redis, to_http


if __name__ == "__main__":
    main()
