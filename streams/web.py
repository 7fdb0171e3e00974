"""HTTP on each worker: /health, /metrics, and /customers/{id} answered by the owning worker."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from yarl import URL

from rules.decisions import explain

if TYPE_CHECKING:
    from streams.worker import Runtime


def install(runtime: Runtime) -> None:
    """Register the views on the runtime's faust app."""
    app, settings = runtime.app, runtime.settings
    token = settings.api_token.get_secret_value() if settings.api_token else None

    @app.page("/health")
    async def health(web: Any, request: Any) -> Any:
        ready = app.rebalancing is False and runtime.ready
        body = {"status": "ok" if ready else "starting", "app_id": settings.app_id,
                "partitions": runtime.assigned()}
        return web.json(body, status=200 if ready else 503)

    @app.page("/metrics")
    async def metrics(web: Any, request: Any) -> Any:
        return web.bytes(generate_latest(runtime.metrics.registry),
                         content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @app.page("/customers/{customer_id}")
    async def customer(web: Any, request: Any, customer_id: str) -> Any:
        if token is not None and request.headers.get("Authorization") != f"Bearer {token}":
            return web.json({"error": "missing or wrong bearer token"}, status=401)
        owner = owner_url(runtime, customer_id)
        if owner is not None and owner != URL(settings.web_url):
            async with app.http_client.get(owner.with_path(request.path),
                                           headers=request.headers) as response:
                return web.bytes(await response.read(), status=response.status,
                                 content_type=response.content_type)
        state = runtime.load(customer_id)
        if state is None:
            return web.json({"error": f"no customer {customer_id!r}"}, status=404)
        return web.json(explain(state, runtime.policy, state.clock))


def owner_url(runtime: Runtime, customer_id: str) -> URL | None:
    """The web URL of the worker owning the customer's partition (inputs are keyed by id)."""
    try:
        topic = runtime.table.changelog_topic.get_topic_name()
        return URL(str(runtime.app.assignor.key_store(topic, customer_id.encode())))
    except KeyError:
        return None
