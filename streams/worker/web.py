"""HTTP on each worker (the document: `openapi.document`, served at /openapi.json).

- `/health/live` (the process works: 503 only once stuck in a rebalance for LIVE_STALL_S),
  `/health/ready` (and `/health`: 200 once recovered, 503 while recovering, rebalancing or a
  topic is unusable), `/metrics`;
- `GET /customers/{id}` answered by the owning worker, `POST /customers:batchGet` (many ids:
  each owner answers its own), and `GET /tiers/{tier}/customers` (a paged listing, from the Redis
  view).

A customer id is one percent-encoded path segment (`a/b` as `/customers/a%2Fb`, `..` as
`/customers/..` or `/customers/%2E%2E`); a lookup on a worker that does not own the customer is
forwarded to the owner with the id encoded again the same way (customer_path). Every error is
an `application/problem+json` document (RFC 9457).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

import aiohttp
import redis
from faust.web import View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from rules.decisions import explain
from streams import engine_build, http
from streams.worker import openapi

if TYPE_CHECKING:
    from streams.worker.runtime import Runtime

CUSTOMERS = "/customers/"
BATCH = "/customers:batchGet"
BATCH_MAX_IDS = 1000
PAGE_DEFAULT, PAGE_MAX = 100, 1000
FORWARD_TIMEOUT_S = 10.0
# A worker rebalancing (not recovering its table) for this long is stuck, a known faust failure:
# /health/live says so, and the orchestrator restarts it.
LIVE_STALL_S = 300.0
FORWARDED = "X-Tierstream-Forwarded"  # a forwarded batch is never forwarded again


def install(runtime: Runtime) -> None:
    """Register the views on the runtime's faust app."""
    api = Api(runtime)
    for path, handler in (("/health", api.ready), ("/health/ready", api.ready),
                          ("/health/live", api.live), ("/metrics", api.metrics),
                          ("/openapi.json", api.openapi),
                          # Everything under /customers/ comes here, so no path there can reach
                          # another page: the id is read from the raw path (customer_from_path).
                          (CUSTOMERS + "{rest:.*}", api.customer),
                          ("/tiers/{tier}/customers", api.tier_customers)):
        runtime.app.page(path)(_view(handler))

    class BatchGet(View):
        async def post(self, request: Any) -> Any:
            return await api.batch_get(self, request)

    runtime.app.page(BATCH)(BatchGet)


def _view(handler: Any) -> Any:
    """A GET view function for faust (`app.page`) calling `handler`."""
    async def view(web: Any, request: Any, **match: str) -> Any:
        return await handler(web, request, **match)

    view.__name__ = view.__qualname__ = handler.__name__
    return view


class Api:
    """The views of a worker's HTTP API."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime, self.app, self.settings = runtime, runtime.app, runtime.settings
        token = runtime.settings.api_token
        self.token = None if token is None else token.get_secret_value()
        self.stalled_since: float | None = None  # seen rebalancing, not recovering, since

    async def ready(self, web: Any, request: Any) -> Any:
        unusable = self.runtime.topic_watch.problems  # topic -> "missing" or partition count
        ready = self.app.rebalancing is False and self.runtime.ready and not unusable
        status = "ok" if ready else "topics_unusable" if unusable else "starting"
        body = {"status": status, "app_id": self.settings.app_id,
                "partitions": self.runtime.assigned(), "engine": engine_build.build()}
        if unusable:
            body["topics"] = unusable
        return web.json(body, status=200 if ready else 503)

    async def live(self, web: Any, request: Any) -> Any:
        now = time.monotonic()
        if self.app.rebalancing and not self.app.in_recovery:
            self.stalled_since = self.stalled_since or now
        else:
            self.stalled_since = None
        stalled = 0.0 if self.stalled_since is None else now - self.stalled_since
        live = stalled < LIVE_STALL_S
        return web.json({"status": "ok" if live else "stuck_rebalancing",
                         "rebalancing_s": round(stalled, 1)}, status=200 if live else 503)

    async def metrics(self, web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(self.runtime.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    async def openapi(self, web: Any, request: Any) -> Any:
        return web.json(openapi.document())

    def refused(self, web: Any, request: Any) -> Any | None:
        """401 unless the request carries the bearer token (when one is set)."""
        if self.token is None:
            return None
        header = request.headers.get("Authorization", "")
        if http.bearer_matches(header, self.token):
            return None
        given = header.partition(" ")[2].strip()
        challenge = 'Bearer realm="tierstream"' + (', error="invalid_token"' if given else "")
        return problem(web, 401, "a bearer token is required (Authorization: Bearer <token>)"
                       if not given else "the bearer token is not the API's",
                       headers={"WWW-Authenticate": challenge})

    async def forward(self, method: str, url: URL, request: Any, body: bytes | None = None
                      ) -> tuple[int, bytes, str]:
        """The owner's answer, or a 502/504 problem when it cannot give one."""
        headers = {name: value for name, value in request.headers.items()
                   if name.lower() in ("authorization", "accept")}
        if body is not None:
            headers.update({"Content-Type": "application/json", FORWARDED: "1"})
        try:
            async with self.app.http_client.request(
                    method, url, headers=headers, data=body,
                    timeout=aiohttp.ClientTimeout(total=FORWARD_TIMEOUT_S)) as response:
                return response.status, await response.read(), response.content_type
        except TimeoutError:
            return problem_parts(504, f"the owning worker at {url.origin()} did not answer "
                                      f"within {FORWARD_TIMEOUT_S:g} s")
        except aiohttp.ClientError as error:
            return problem_parts(502, f"the owning worker at {url.origin()} could not be "
                                      f"reached: {type(error).__name__}")

    async def customer(self, web: Any, request: Any, **_: str) -> Any:
        if (refused := self.refused(web, request)) is not None:
            return refused
        customer_id = customer_from_path(request.rel_url.raw_path)
        if customer_id is None:
            return problem(web, 404, "no such customer: the id is one path segment, "
                                     "percent-encoded (/ as %2F)")
        unavailable = await self.runtime.topic_watch.lookup_problem()  # no changelog
        if unavailable is not None:
            return problem(web, 503, unavailable)
        owner = owner_url(self.runtime, customer_id)
        if owner is not None and owner != URL(self.settings.web_url):
            status, body, content_type = await self.forward(
                "GET", owner.with_path(customer_path(customer_id), encoded=True), request)
            return web.bytes(body, status=status, content_type=content_type)
        found = self.explained(customer_id)
        return problem(web, 404, f"no customer {customer_id!r}") if found is None \
            else web.json(found)

    def explained(self, customer_id: str) -> dict[str, Any] | None:
        state = self.runtime.load(customer_id)
        return None if state is None else explain(state, self.runtime.policy, state.clock)

    async def batch_get(self, web: Any, request: Any) -> Any:
        """POST {"ids": [...]}: {"customers": {id: lookup}, "missing": [ids]}; each owner
        answers for its customers (one forwarded request per other worker)."""
        if (refused := self.refused(web, request)) is not None:
            return refused
        try:
            ids = json.loads(await request.read())["ids"]
        except (ValueError, KeyError, TypeError):
            ids = None
        if not isinstance(ids, list) or not all(isinstance(i, str) and i for i in ids):
            return problem(web, 400, 'the body is {"ids": [customer id, ...]}: a list of '
                                     'non-empty strings')
        if len(ids) > BATCH_MAX_IDS:
            return problem(web, 413, f"{len(ids)} ids: at most {BATCH_MAX_IDS} a request")
        unavailable = await self.runtime.topic_watch.lookup_problem()
        if unavailable is not None:
            return problem(web, 503, unavailable)
        ids = list(dict.fromkeys(ids))
        here, elsewhere, found = URL(self.settings.web_url), {}, {}
        for customer_id in ids:
            owner = owner_url(self.runtime, customer_id)
            if owner is not None and owner != here:
                elsewhere.setdefault(owner, []).append(customer_id)
            elif (answer := self.explained(customer_id)) is not None:
                found[customer_id] = answer
        if elsewhere and request.headers.get(FORWARDED):  # forwarded here, owned elsewhere
            return problem(web, 503, "the owners of these customers are changing (a "
                                     "rebalance): retry")
        for status, body, content_type in await asyncio.gather(*(
                self.forward("POST", owner.with_path(BATCH), request,
                             json.dumps({"ids": wanted}).encode())
                for owner, wanted in elsewhere.items())):
            if status != 200:  # the owner's problem is the answer
                return web.bytes(body, status=status, content_type=content_type)
            found.update(json.loads(body)["customers"])
        return web.json({"customers": {i: found[i] for i in ids if i in found},
                         "missing": [i for i in ids if i not in found]})

    async def tier_customers(self, web: Any, request: Any, tier: str) -> Any:
        if (refused := self.refused(web, request)) is not None:
            return refused
        policy, view = self.runtime.policy, self.runtime.redis
        if tier not in policy.tier_ids:
            return problem(web, 404, f"no tier {tier!r} in policy {policy.name}; its tiers: "
                                     f"{', '.join(policy.tier_ids)}")
        if view is None:
            return problem(web, 501, "the tier listing reads the Redis view: set "
                                     "TIERSTREAM_REDIS_URL")
        query = request.rel_url.query
        try:
            limit, cursor = int(query.get("limit", PAGE_DEFAULT)), int(query.get("cursor", "0"))
            if not 1 <= limit <= PAGE_MAX or cursor < 0:
                raise ValueError
        except ValueError:
            return problem(web, 400, f"limit is 1 to {PAGE_MAX} (default {PAGE_DEFAULT}) and "
                                     "cursor a next_cursor of an earlier page (0: the first)")
        try:
            customers, after = await view.tier_page(tier, cursor, limit)
        except redis.RedisError as error:
            return problem(web, 503, f"the Redis view is unavailable: {type(error).__name__}")
        return web.json({"tier": tier, "customers": customers,
                         "next_cursor": str(after) if after else None})


def problem_parts(status: int, detail: str) -> tuple[int, bytes, str]:
    """An RFC 9457 problem document: status, body, content type."""
    return status, http.problem(status, detail), http.PROBLEM


def problem(web: Any, status: int, detail: str,
            headers: Mapping[str, str] | None = None) -> Any:
    status, body, content_type = problem_parts(status, detail)
    return web.bytes(body, status=status, content_type=content_type,
                     headers=dict(headers or {}))


def customer_path(customer_id: str) -> str:
    """The encoded path of a customer's lookup: the id as one segment, every reserved character
    and `%` percent-encoded, and `.` too, so that `.` and `..` are not dot segments a client or
    URL library would resolve (to `/customers/` or to `/`, the root page)."""
    return CUSTOMERS + quote(customer_id, safe="").replace(".", "%2E")


def customer_from_path(raw_path: str) -> str | None:
    """The customer id of a raw (still encoded) request path under /customers/, or None when it
    is not exactly one non-empty segment that decodes as UTF-8."""
    segment = raw_path.removeprefix(CUSTOMERS)
    if not segment or "/" in segment:
        return None
    try:
        return unquote(segment, errors="strict")
    except UnicodeDecodeError:
        return None


def owner_url(runtime: Runtime, customer_id: str) -> URL | None:
    """The web URL of the worker owning the customer's partition (inputs are keyed by id)."""
    try:
        topic = runtime.table.changelog_topic.get_topic_name()
        return URL(str(runtime.app.assignor.key_store(topic, customer_id.encode())))
    except KeyError:
        return None
