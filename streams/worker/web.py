"""HTTP on each worker: /health, /metrics, and /customers/{id} answered by the owning worker.

A customer id is one percent-encoded path segment (`a/b` as `/customers/a%2Fb`, `..` as
`/customers/..` or `/customers/%2E%2E`); a lookup on a worker that does not own the customer is
forwarded to the owner with the id encoded again the same way (customer_path)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from rules.decisions import explain
from streams import engine_build

if TYPE_CHECKING:
    from streams.worker.runtime import Runtime


def install(runtime: Runtime) -> None:
    """Register the views on the runtime's faust app."""
    app, settings = runtime.app, runtime.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        unusable = runtime.topic_watch.problems  # topic -> "missing" or its partition count
        ready = app.rebalancing is False and runtime.ready and not unusable
        status = "ok" if ready else "topics_unusable" if unusable else "starting"
        body = {"status": status, "app_id": settings.app_id, "partitions": runtime.assigned(),
                "engine": engine_build.build()}
        if unusable:
            body["topics"] = unusable
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(runtime.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    # Everything under /customers/ comes here, so no path there can reach another page: the id
    # is read from the raw path (customer_from_path), not from the router's decoded match.
    @app.page(CUSTOMERS + "{rest:.*}")
    async def customer(web: Any, request: Any, **_: str) -> Any:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.json({"error": "missing or wrong bearer token"}, status=401)
        customer_id = customer_from_path(request.rel_url.raw_path)
        if customer_id is None:
            return web.json({"error": "no such customer: the id is one path segment, "
                             "percent-encoded (/ as %2F)"}, status=404)
        unavailable = await runtime.topic_watch.lookup_problem()  # the changelog is missing
        if unavailable is not None:
            return web.json({"error": unavailable}, status=503)
        owner = owner_url(runtime, customer_id)
        if owner is not None and owner != URL(settings.web_url):
            async with app.http_client.get(
                    owner.with_path(customer_path(customer_id), encoded=True),
                    headers=request.headers) as response:
                return web.bytes(await response.read(), status=response.status,
                                 content_type=response.content_type)
        state = runtime.load(customer_id)
        if state is None:
            return web.json({"error": f"no customer {customer_id!r}"}, status=404)
        return web.json(explain(state, runtime.policy, state.clock))


CUSTOMERS = "/customers/"


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
