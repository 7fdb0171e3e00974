"""Fault suite: lookups of hostile customer ids, on the owner and forwarded (issue 16, item 7).

A customer id is any 1-128 characters (README, "Event contracts"), so `/`, `..`, `%`, `?`, `#`,
spaces and unicode are valid ids. `GET /customers/{id}` takes the id as one percent-encoded path
segment on every worker; a worker that does not own the customer forwards the lookup with the id
encoded again as one segment (streams/worker/web.py). Before, it forwarded the decoded path: `..`
reached the owner's root page (200 `{"status": "OK"}`) and `a/b` a 404.

`harness.http_get` sends the URL it is given as it is (urllib does not encode a path), so the
test encodes each id with `quote(id, safe="")`.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

from kafka.partitioner.default import murmur2

from models.events import parse_event
from rules.decisions import explain
from tests.integration.conftest import FaultRow
from tests.integration.harness import (
    Worker,
    create_topics,
    http_get,
    http_post,
    isolated_settings,
    produce,
    wait_for,
)
from tests.integration.test_faults import policy, replayed, settle, start_worker, verify

# Valid ids that a path or a URL library would take apart: separators, dot segments, escapes
# and percent signs, query and fragment marks, spaces, unicode, and the longest id allowed.
TRICKY = ["a/b", "..", ".", "%", "%2F", "%2E%2E", "100%", "a b", " both ends ", "what?x=1#frag",
          "客户/42", "x/../y", "../health", "..%2F..%2Fhealth", "/", "//", "+&=;,", "emoji 🎉",
          "a\\b", "'\"<>", "/" * 128, "." * 128]

# Paths under /customers/ of no customer (no event was sent yet when they are asked): each is a
# 404 with a JSON body on every worker, never another page of the owner or of the worker asked.
UNKNOWN = ["/customers/..", "/customers/%2E%2E", "/customers/a%2Fb", "/customers/.",
           "/customers/%2E", "/customers/../health", "/customers/%2E%2E%2Fhealth",
           "/customers/a/b", "/customers/", "/customers/%FF"]

# Still no customer once TRICKY's exist: ids next to theirs, and an id with a separator that is
# not encoded (`/customers/a/b` is two segments, not customer `a/b`).
UNKNOWN_NOW = ["/customers/a%2Fb%2F..", "/customers/%2E%2E%2E", "/customers/x/..%2Fy",
               "/customers/a%252Fb", "/customers/a/b", "/customers/a/b/..",
               "/customers/../health", "/customers/%2F%2F%2F", "/customers/", "/customers/%FF"]


def order(n: int, customer_id: str) -> bytes:
    at = datetime.now(UTC) - timedelta(days=3, hours=n)
    return json.dumps({"type": "order_completed", "event_id": f"lookup-{n}",
                       "customer_id": customer_id, "occurred_at": at.isoformat(),
                       "order_id": f"lookup-{n}", "currency": "CNY",
                       "amount": str([80, 1200, 9000, 40000][n % 4])}).encode()


def partitions(worker: Worker) -> set[int] | None:
    """The partitions a worker has, once it is ready (not rebalancing)."""
    try:
        status, body = http_get(f"{worker.url}/health", timeout=5)
    except OSError:  # its web server is not up yet
        return None
    return set(json.loads(body)["partitions"]) if status == 200 else None


def partition_of(customer_id: str, count: int) -> int:
    """The input partition of a customer: the producer's (kafka-python's) murmur2 of the key."""
    return (murmur2(customer_id.encode()) & 0x7FFFFFFF) % count


def assert_404_json(worker: Worker, path: str) -> None:
    status, body = http_get(f"{worker.url}{path}")
    assert status == 404, (worker.url, path, status, body)
    answer = json.loads(body)  # a problem document, not faust's or aiohttp's pages
    assert set(answer) == {"type", "title", "status", "detail"}, (worker.url, path, answer)
    assert answer["status"] == 404, answer


def test_lookups_of_ids_with_slashes_dots_and_unicode_on_both_workers(
        kafka_bootstrap: str, tmp_path: Path, workers: list[Worker],
        fault_row: FaultRow) -> None:
    """Two workers, four partitions: one order for each of 22 hostile ids; every id is looked up
    on both workers (so about half the lookups are forwarded) and answers 200 with its own
    explanation, equal to the replay's; paths of no customer answer 404 JSON on both."""
    settings = isolated_settings(kafka_bootstrap, tmp_path)
    create_topics(settings)
    lines = [order(n, customer_id) for n, customer_id in enumerate(TRICKY)]
    assert [parse_event(line).customer_id for line in lines] == TRICKY  # all valid input
    fault_row.events_in = len(lines)
    pair = [start_worker(settings, tmp_path, name, workers) for name in ("w1", "w2")]
    everything = set(range(settings.partitions))
    assert wait_for(lambda: all(partitions(w) for w in pair)
                      and set.union(*(partitions(w) for w in pair)) == everything)
    owned = {w.url: partitions(w) for w in pair}
    for worker in pair:
        for path in UNKNOWN:
            assert_404_json(worker, path)

    produce(settings, lines)
    expected = replayed(lines)
    verify(settings, expected, settle(settings, expected), fault_row)
    assert {w.url: partitions(w) for w in pair} == owned, "no rebalance since"
    forwarded = {w.url: 0 for w in pair}
    for customer_id in TRICKY:
        state = expected.states[customer_id]
        answer = json.loads(json.dumps(explain(state, policy(), state.clock)))
        encoded = quote(customer_id, safe="")
        for worker in pair:
            if partition_of(customer_id, settings.partitions) not in owned[worker.url]:
                forwarded[worker.url] += 1
            for segment in {encoded, encoded.replace(".", "%2E")}:  # `..` and `%2E%2E` alike
                status, body = http_get(f"{worker.url}/customers/{segment}")
                assert status == 200, (worker.url, customer_id, segment, body)
                got = json.loads(body)
                assert (got["customer_id"], got["tier"]) == (customer_id, state.tier)
                assert got == answer, (worker.url, customer_id)
    assert all(forwarded.values()), f"each worker forwards some lookups: {forwarded}"
    answers = {customer_id: json.loads(json.dumps(explain(s, policy(), s.clock)))
               for customer_id in TRICKY if (s := expected.states[customer_id])}
    for worker in pair:  # a batch: each worker asks the other for the customers it owns
        status, body = http_post(f"{worker.url}/customers:batchGet",
                                 {"ids": [*TRICKY, "nobody"]})
        assert status == 200, (worker.url, body)
        assert json.loads(body) == {"customers": answers, "missing": ["nobody"]}
    for worker in pair:
        for path in UNKNOWN_NOW:
            assert_404_json(worker, path)
        assert http_get(f"{worker.url}/health")[0] == 200
    fault_row.note = (f"{len(TRICKY)} ids with / .. % ? # space unicode; "
                      f"{sum(forwarded.values())} of {2 * len(TRICKY)} lookups forwarded")
