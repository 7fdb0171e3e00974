"""Workers write the Redis view: readable once a change is emitted, nothing lost in an outage."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import redis

from streams.policies import load_policy
from streams.view.redis_view import Keys
from tests.integration.harness import (
    Worker,
    collect,
    create_topics,
    environment,
    history,
    http_get,
    isolated_settings,
    metric_total,
    produce,
    redis_view,
    reference,
    wait_for,
)
from tests.redis_server import RedisServer

DEFAULT = Path(__file__).resolve().parents[2] / "rules" / "policies" / "default.yaml"
PASSWORD = "redis-pw"
TOKEN = "api-token"


def test_view_follows_the_stream_through_a_redis_outage(kafka_bootstrap: str,
                                                        tmp_path: Path) -> None:
    with RedisServer(password=PASSWORD) as server:
        settings = isolated_settings(kafka_bootstrap, tmp_path)
        create_topics(settings)
        prefix = f"test:{settings.app_id}"
        worker = Worker(settings, DEFAULT, tmp_path, env_overrides={
            "TIERSTREAM_REDIS_URL": server.url, "TIERSTREAM_REDIS_PREFIX": prefix,
            "TIERSTREAM_API_TOKEN": TOKEN})
        lines = history(customers=400, seed=3)
        try:
            worker.start()
            produce(settings, lines)
            collect(settings, until=lambda e: len(e.events) > 10, quiet=0.0)
            os.kill(server.process.pid, signal.SIGSTOP)  # Redis hangs while events keep flowing
            states, expected = reference(lines, load_policy(DEFAULT), time.time_ns() // 1000)
            emitted = collect(settings, until=lambda e: e.ids >= {x["id"] for x in expected})
            assert emitted.ids == {x["id"] for x in expected}, "processing went on without Redis"
            assert wait_for(lambda: metric_total(worker, "tierstream_redis_errors_total") > 0)
            assert metric_total(worker, "tierstream_redis_backlog_records") > 0
            os.kill(server.process.pid, signal.SIGCONT)
            want = {c: (s.tier, s.sequence) for c, s in states.items()}
            assert wait_for(lambda: {c: (v["tier"], v["sequence"]) for c, v in
                                     redis_view(server.url, prefix).items()} == want), \
                worker.log_text()[-2000:]
            customer = sorted(states)[0]
            assert http_get(f"{worker.url}/customers/{customer}")[0] == 401
            status, body = http_get(f"{worker.url}/customers/{customer}", token=TOKEN)
            assert status == 200 and json.loads(body)["tier"] == states[customer].tier
            produce(settings, [json.dumps({
                "type": "customer_erased", "event_id": "erase-1", "customer_id": customer,
                "occurred_at": datetime.now(UTC).isoformat()}).encode()])
            assert wait_for(lambda: customer not in redis_view(server.url, prefix)), [
                line for line in http_get(f"{worker.url}/metrics")[1].decode().splitlines()
                if ("redis" in line or "erased" in line) and not line.startswith("#")]
            assert http_get(f"{worker.url}/customers/{customer}", token=TOKEN)[0] == 404
            del states[customer]
            want.pop(customer)
        finally:
            worker.stop()
        with redis.Redis.from_url(server.url) as client:
            tier_a = {m.decode() for m in client.smembers(Keys(prefix).tier("A"))}
        assert tier_a == {c for c, s in states.items() if s.tier == "A"}

        rebuilt = f"{prefix}:rebuilt"
        env = {**environment(settings, DEFAULT), "TIERSTREAM_REDIS_URL": server.url}
        result = subprocess.run([sys.executable, "-m", "streams.cli", "redis", "rebuild",
                                 "--prefix", rebuilt], env=env, capture_output=True, text=True,
                                timeout=120, check=False)
        assert result.returncode == 0, result.stderr
        assert {c: (v["tier"], v["sequence"]) for c, v in redis_view(server.url, rebuilt).items()} \
            == want

        wrong = {**env, "TIERSTREAM_REDIS_URL": server.url.replace(PASSWORD, "wrong")}
        refused = subprocess.run([sys.executable, "-m", "streams.cli", "worker"], env=wrong,
                                 capture_output=True, text=True, timeout=60, check=False)
        assert refused.returncode == 4 and "cannot use Redis" in refused.stderr
        assert "wrong" not in refused.stderr.replace("wrong password", "")
