"""Relative metrics on the real broker: two workers share one population through Kafka."""

from __future__ import annotations

import json
import random
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from models.instants import MICROS_PER_SECOND
from streams.policies import load_policy
from tests.integration.harness import (
    Worker,
    collect,
    create_topics,
    http_get,
    isolated_settings,
    produce,
    reference,
)

PARETO = Path(__file__).resolve().parents[2] / "rules" / "policies" / "pareto-abc.yaml"


def recent_history(customers: int, seed: int) -> list[bytes]:
    """Orders over the last eleven months (so the 365-day revenue counts them all), time order."""
    rng = random.Random(seed)
    now = datetime.now(UTC)
    events = []
    for c in range(customers):
        for n in range(rng.choice([1, 1, 2, 3, 5])):
            at = now - timedelta(days=3 + rng.random() * 330)
            events.append((at, {"type": "order_completed", "event_id": f"c{c}-o{n}",
                                "customer_id": f"c{c}", "occurred_at": at.isoformat(),
                                "order_id": f"c{c}-o{n}", "currency": "CNY",
                                "amount": f"{rng.lognormvariate(5, 1.2):.2f}"}))
    events.sort(key=lambda pair: pair[0])
    return [json.dumps(e).encode() for _, e in events]


def population_taken_at(worker: Worker) -> float | None:
    text = http_get(f"{worker.url}/metrics")[1].decode()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    samples = families["tierstream_population_taken_at_seconds"].samples
    return samples[0].value if samples and samples[0].value > 0 else None


@pytest.mark.parametrize("store", ["memory://", "rocksdb://"])
def test_two_workers_place_customers_in_one_population_like_replay(
        kafka_bootstrap: str, tmp_path: Path, store: str) -> None:
    """Each worker reports its partitions' sketches; both merge all four partitions into the
    same population, and after the refresh every customer's Pareto class equals replay's."""
    settings = isolated_settings(kafka_bootstrap, tmp_path, store=store)
    create_topics(settings)
    lines = recent_history(customers=200, seed=3)
    workers = []
    try:
        for name in ("w1", "w2"):
            (tmp_path / name).mkdir()
            workers.append(Worker(settings, PARETO, tmp_path / name).start())
        produce(settings, lines)
        states, replayed = reference(lines, load_policy(PARETO), time.time_ns() // 1000)
        expected = {c: s.tier for c, s in states.items()}
        assert set(Counter(expected.values())) == {"A", "B", "C"}, "a split worth checking"
        emitted = collect(settings, timeout=150, until=lambda e: {
            c: (t or {}).get("tier") for c, t in e.tiers.items()} == expected)
        live = {c: (t or {}).get("tier") for c, t in emitted.tiers.items()}
        wrong = {c: (live.get(c), tier) for c, tier in expected.items() if live.get(c) != tier}
        if wrong:
            who = next(iter(wrong))
            story = [[(e["time"], e["data"]["to_tier"]) for e in events if e["subject"] == who]
                     for events in (emitted.events, replayed)]
            raise AssertionError(f"{len(wrong)} customers differ (live, replay): "
                                 f"{list(wrong.items())[:8]}; {who}: live {story[0]}, "
                                 f"replay {story[1]}; lookup "
                                 f"{http_get(f'{workers[0].url}/customers/{who}')[1][:1500]!r}")
        boundary = time.time_ns() // 1000 // load_policy(PARETO).refresh * \
            load_policy(PARETO).refresh
        for worker in workers:  # both moved to the same, latest population
            assert population_taken_at(worker) == boundary / MICROS_PER_SECOND, \
                worker.log_text()[-3000:]
    finally:
        for worker in workers:
            worker.stop()
