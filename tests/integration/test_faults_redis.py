"""Fault injection: Redis loses its data mid-stream, and the workers rebuild the view by themselves.

Part of the fault suite (tests/integration/test_faults.py: same end checks against replay, same
table of cases). Redis keeps nothing across a restart here (no RDB, no AOF), so SIGKILL and a
restart on the same port is what a crashed Redis without persistence, a FLUSHALL or a failover
to an empty replica look like to the workers.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import redis

from models.outputs import CustomerTier
from streams.view.redis_view import Keys, version_of
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    Worker,
    create_topics,
    isolated_settings,
    metric_total,
    produce,
    redis_view,
    simulated,
    wait_for,
)
from tests.integration.test_faults import (
    Expected,
    decided,
    during,
    event_line,
    in_parts,
    in_phases,
    policy,
    settle,
    start_worker,
    verify,
)
from tests.redis_server import RedisServer


def newcomers(count: int, seed: int) -> list[bytes]:
    """First orders of customers never seen, dated in the last days (so nothing about them is
    due before the end of the test), in time order."""
    rng, now = random.Random(seed), datetime.now(UTC)
    orders = sorted((now - timedelta(minutes=rng.randrange(60, 3 * 24 * 60)), f"new-{n:03d}")
                    for n in range(count))
    return [event_line("order_completed", name, at, order_id=f"{name}-1", currency="CNY",
                       amount=rng.choice(["80", "800", "3000", "30000"]))
            for at, name in orders]


def test_redis_restarted_empty_during_load(kafka_bootstrap: str, tmp_path: Path,
                                           workers: list[Worker], fault_row: FaultRow) -> None:
    """Two workers settle a population into the view; then, while first orders of new customers
    come in, Redis is SIGKILLed, stays down for a third of them and comes back empty on the same
    port. The settled customers get no change after that, so only a rebuild brings them back:
    the workers find the view's generation gone, count the reset, one of them rebuilds the
    whole view from customer-tiers, and the view equals replay: every hash field and every tier
    set."""
    with RedisServer() as server:
        settings = isolated_settings(kafka_bootstrap, tmp_path)
        create_topics(settings)
        prefix = f"faults:{settings.app_id}"
        lines, extra = simulated(customers=120, seed=83), newcomers(150, seed=83)
        fault_row.events_in = len(lines) + len(extra)
        started = [start_worker(settings, tmp_path, name, workers,
                                TIERSTREAM_REDIS_URL=server.url, TIERSTREAM_REDIS_PREFIX=prefix)
                   for name in ("w1", "w2")]
        produce(settings, lines)
        settled = Expected(*in_phases([lines]))
        settle(settings, settled)
        assert wait_for(lambda: set(redis_view(server.url, prefix)) == set(settled.states))
        # Each worker has seen the view's generation (and so can tell when it is gone).
        assert wait_for(lambda: all("redis view generation" in w.log_text() for w in started))

        def crash() -> None:
            server.kill()  # SIGKILL; nothing is persisted

        parts = in_parts(extra, 3)
        pending = during(settings, parts[0], crash)
        produce(settings, parts[1])  # while Redis is down
        server.start()  # empty, on the same port
        produce(settings, parts[2])
        fault_row.note = f"SIGKILL, restart empty; input pending at the kill: {pending}"

        expected = Expected(*in_phases([lines, extra]))
        verify(settings, expected, settle(settings, expected), fault_row, workers)
        want = {c: {**decided(json.loads(CustomerTier.record(s))),
                    "version": version_of(s.created_at, s.sequence)}
                for c, s in expected.states.items()}
        assert wait_for(lambda: {c: decided(v) for c, v in redis_view(server.url, prefix).items()}
                        == want), "\n".join(w.log_text()[-3000:] for w in started)
        with redis.Redis.from_url(server.url) as client:
            for tier in policy().tier_ids:
                members = {m.decode() for m in client.smembers(Keys(prefix).tier(tier))}
                assert members == {c for c, s in expected.states.items() if s.tier == tier}
        # Each worker counted the reset once; the generation is rebuilt.
        assert [metric_total(w, "tierstream_redis_view_resets_total") for w in started] == [1, 1]
        assert wait_for(lambda: all(metric_total(w, "tierstream_redis_view_rebuilding") == 0
                                    for w in started))
        assert all(w.process.poll() is None for w in started)
