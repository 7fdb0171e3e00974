"""The workers' HTTP API as its OpenAPI document describes it: lookups one at a time and in
batches, the paged tier listing from the Redis view, health, and RFC 9457 problems."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

from jsonschema import Draft202012Validator

from rules.decisions import explain
from streams.policies import load_policy
from streams.worker import openapi
from tests.integration.harness import (
    collect,
    create_topics,
    history,
    http_get,
    isolated_settings,
    new_worker,
    produce,
    redis_view,
    reference,
    wait_for,
)
from tests.redis_server import RedisServer

TOKEN = "api-token"


def call(url: str, body: object = None, token: str | None = TOKEN, raw: bytes | None = None
         ) -> tuple[int, dict[str, str], bytes]:
    """GET, or POST `body` as JSON (or `raw` bytes): status, headers, body."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={
        **({"Authorization": f"Bearer {token}"} if token else {}),
        **({"Content-Type": "application/json"} if data is not None else {})})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        with error:
            return error.code, dict(error.headers), error.read()


def conforms(name: str, document: object) -> None:
    """`document` is valid against the OpenAPI document's schema `name`."""
    schema = {"$ref": f"#/components/schemas/{name}",
              "components": openapi.document()["components"]}
    Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER
                         ).validate(document)


def assert_problem(answer: tuple[int, dict[str, str], bytes], status: int) -> dict:
    got, headers, body = answer
    assert got == status, (got, body)
    assert headers["Content-Type"].startswith("application/problem+json"), headers
    document = json.loads(body)
    conforms("Problem", document)
    assert document["status"] == status
    return document


def test_lookups_batches_tier_pages_health_and_problems(kafka_bootstrap: str, tmp_path: Path,
                                                       workers) -> None:
    with RedisServer() as server:
        settings = isolated_settings(kafka_bootstrap, tmp_path)
        create_topics(settings)
        prefix = f"test:{settings.app_id}"
        worker = new_worker(settings, tmp_path, "w1", workers, TIERSTREAM_API_TOKEN=TOKEN,
                            TIERSTREAM_REDIS_URL=server.url, TIERSTREAM_REDIS_PREFIX=prefix)
        lines = history(customers=300, seed=5)
        produce(settings, lines)
        policy = load_policy("default")
        states, expected = reference(lines, policy, time.time_ns() // 1000)
        collect(settings, until=lambda e: e.ids >= {x["id"] for x in expected})
        base = worker.url

        # health: ready and live; the document served is the one committed
        assert http_get(f"{base}/health/ready")[0] == 200
        status, _, body = call(f"{base}/health/live", token=None)
        assert status == 200
        conforms("Live", json.loads(body))
        conforms("Ready", json.loads(http_get(f"{base}/health")[1]))
        assert json.loads(http_get(f"{base}/openapi.json")[1]) == openapi.document()

        # one customer, and the problems around it
        customer = sorted(states)[0]
        state = states[customer]
        status, headers, body = call(f"{base}/customers/{customer}")
        assert status == 200 and headers["Content-Type"].startswith("application/json")
        conforms("Customer", json.loads(body))
        assert json.loads(body) == json.loads(json.dumps(explain(state, policy, state.clock)))
        missing = call(f"{base}/customers/{customer}", token=None)
        assert_problem(missing, 401)
        assert missing[1]["WWW-Authenticate"] == 'Bearer realm="tierstream"'
        wrong = call(f"{base}/customers/{customer}", token="not-it")
        assert_problem(wrong, 401)
        assert wrong[1]["WWW-Authenticate"] == 'Bearer realm="tierstream", error="invalid_token"'
        assert_problem(call(f"{base}/customers/nobody"), 404)
        assert_problem(call(f"{base}/customers/a/b"), 404)

        # many customers at once: in request order, unknown ids listed as missing
        wanted = [*sorted(states)[:50], "nobody", sorted(states)[0]]
        status, _, body = call(f"{base}/customers:batchGet", {"ids": wanted})
        assert status == 200, body
        answer = json.loads(body)
        conforms("BatchGetResponse", answer)
        assert list(answer["customers"]) == sorted(states)[:50]
        assert answer["missing"] == ["nobody"]
        for customer_id, found in answer["customers"].items():
            s = states[customer_id]
            assert found == json.loads(json.dumps(explain(s, policy, s.clock)))
        assert_problem(call(f"{base}/customers:batchGet", {"ids": "c1"}), 400)
        assert_problem(call(f"{base}/customers:batchGet", raw=b"{not json"), 400)
        assert_problem(call(f"{base}/customers:batchGet", {"ids": ["c"] * 1001}), 413)
        assert_problem(call(f"{base}/customers:batchGet", {"ids": []}, token=None), 401)

        # every customer of a tier, page by page, as the Redis view has them
        assert wait_for(lambda: len(redis_view(server.url, prefix)) == len(states))
        for tier in policy.tier_ids:
            listed, cursor = [], "0"
            while cursor is not None:
                status, _, body = call(f"{base}/tiers/{tier}/customers?limit=7&cursor={cursor}")
                assert status == 200, body
                page = json.loads(body)
                conforms("TierPage", page)
                listed += page["customers"]
                cursor = page["next_cursor"]
            assert sorted(listed) == sorted(c for c, s in states.items() if s.tier == tier)
        assert_problem(call(f"{base}/tiers/Z/customers"), 404)
        assert_problem(call(f"{base}/tiers/A/customers?limit=0"), 400)
        assert_problem(call(f"{base}/tiers/A/customers?cursor=x"), 400)
