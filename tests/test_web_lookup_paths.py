"""Customer ids in lookup paths (streams/worker/web.py): any id is one encoded segment, both ways.

The workers' forwarding itself is tested on a real broker in
tests/integration/test_faults_lookups.py; here the encoding, and that aiohttp's client and server
(what faust's web runs on) carry the encoded path unchanged: no dot segment resolved, no `%2F`
turned into a separator."""

from __future__ import annotations

import asyncio

from aiohttp import ClientSession, web
from hypothesis import given
from hypothesis import strategies as st
from yarl import URL

from streams.worker.web import CUSTOMERS, customer_from_path, customer_path

TRICKY = ["a/b", "..", ".", "%", "%2F", "%2E%2E", "100%", "a b", "what?x=1#frag", "客户/42",
          "x/../y", "../health", "/", "//", "+&=;,", "emoji 🎉", "a\\b", "'\"<>", "/" * 128]

ids = st.text(min_size=1, max_size=128)


@given(ids)
def test_any_id_is_one_segment_that_decodes_to_itself(customer_id: str) -> None:
    path = customer_path(customer_id)
    segment = path.removeprefix(CUSTOMERS)
    assert "/" not in segment and segment not in (".", "..")
    assert customer_from_path(path) == customer_id
    assert URL("http://127.0.0.1:1").with_path(path, encoded=True).raw_path == path


def test_paths_that_are_not_one_decodable_segment_name_no_customer() -> None:
    for path in ["/customers/", "/customers/a/b", "/customers/../health", "/customers//x",
                 "/customers/%FF", "/customers/a/"]:
        assert customer_from_path(path) is None, path
    assert customer_from_path("/customers/..") == ".."
    assert customer_from_path("/customers/%2E%2E") == ".."
    assert customer_from_path("/customers/a%2Fb") == "a/b"
    assert customer_from_path("/customers/%252F") == "%2F"


def test_aiohttp_carries_the_encoded_path_to_the_catch_all_route() -> None:
    """As a forwarded lookup goes: aiohttp's client to aiohttp's server, route `{rest:.*}`."""

    async def root(request: web.Request) -> web.Response:
        return web.json_response({"status": "OK"})

    async def customer(request: web.Request) -> web.Response:
        return web.json_response({"id": customer_from_path(request.rel_url.raw_path)})

    async def run() -> dict[str, object]:
        app = web.Application()
        app.router.add_get("/", root)
        app.router.add_get(CUSTOMERS + "{rest:.*}", customer)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        seen = {}
        try:
            async with ClientSession() as session:
                for customer_id in TRICKY:
                    url = URL(f"http://127.0.0.1:{port}").with_path(
                        customer_path(customer_id), encoded=True)
                    async with session.get(url) as response:
                        assert response.status == 200, customer_id
                        seen[customer_id] = (await response.json())["id"]
        finally:
            await runner.cleanup()
        return seen

    assert asyncio.run(run()) == {c: c for c in TRICKY}
