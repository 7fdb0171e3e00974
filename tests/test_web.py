"""The workers' API without a broker: what a lookup answers when the owning worker cannot."""

from __future__ import annotations

import asyncio
import json
import socket
from types import SimpleNamespace

import aiohttp
import pytest
from aiohttp import web
from yarl import URL

from streams.settings import Settings
from streams.worker import web as api


async def ask(url: str) -> tuple[int, dict, str]:
    """Api.forward of a lookup to `url`: status, problem document, content type."""
    async with aiohttp.ClientSession() as session:
        runtime = SimpleNamespace(app=SimpleNamespace(http_client=session), settings=Settings())
        request = SimpleNamespace(headers={"Authorization": "Bearer t", "Host": "elsewhere"})
        status, body, content_type = await api.Api(runtime).forward("GET", URL(url), request)
    return status, json.loads(body), content_type


def test_an_owner_that_cannot_be_reached_is_a_502_problem() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed once the block ends
    status, problem, content_type = asyncio.run(ask(f"http://127.0.0.1:{port}/customers/a"))
    assert (status, content_type) == (502, "application/problem+json")
    assert problem["status"] == 502 and "could not be reached" in problem["detail"]


def test_an_owner_that_does_not_answer_in_time_is_a_504_problem(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api, "FORWARD_TIMEOUT_S", 0.2)

    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(1)
        return web.Response(text="late")

    async def main() -> tuple[int, dict, str]:
        app = web.Application()
        app.router.add_get("/customers/a", slow)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        try:
            port = runner.addresses[0][1]
            return await ask(f"http://127.0.0.1:{port}/customers/a")
        finally:
            await runner.cleanup()

    status, problem, content_type = asyncio.run(main())
    assert (status, content_type) == (504, "application/problem+json")
    assert "did not answer within 0.2 s" in problem["detail"]
