"""The SDK file served at /sdk/alli.js."""

from __future__ import annotations

import gzip

from rejoinder.server.assets import web_file
from tests.api.conftest import Server


async def test_the_sdk_is_served_as_javascript_with_a_validator(server: Server) -> None:
    answer = await server.client.get("/sdk/alli.js", headers={"Accept-Encoding": "identity"})

    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.content == web_file("sdk", "alli.js")
    assert answer.headers["cache-control"].startswith("public, max-age=")
    again = await server.client.get("/sdk/alli.js", headers={"If-None-Match": answer.headers["etag"]})
    assert again.status_code == 304
    assert again.content == b""


async def test_the_sdk_is_gzipped_for_browsers_that_accept_it(server: Server) -> None:
    async with server.client.stream("GET", "/sdk/alli.js", headers={"Accept-Encoding": "gzip, br"}) as answer:
        wire = b"".join([chunk async for chunk in answer.aiter_raw()])

    assert answer.headers["content-encoding"] == "gzip"
    assert gzip.decompress(wire) == web_file("sdk", "alli.js")
