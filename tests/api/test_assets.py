"""The SDK file served at /sdk/alli.js."""

from __future__ import annotations

import gzip

import rjsmin

from rejoinder.server.assets import web_file
from tests.helpers.app import Server


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


async def test_head_answers_the_headers_of_get_without_a_body(server: Server) -> None:
    for encoding in ("identity", "gzip"):
        got = await server.client.get("/sdk/alli.js", headers={"Accept-Encoding": encoding})
        head = await server.client.head("/sdk/alli.js", headers={"Accept-Encoding": encoding})

        assert head.status_code == 200
        assert head.content == b""
        for name in ("content-type", "etag", "cache-control", "content-encoding"):
            assert head.headers.get(name) == got.headers.get(name), name
        assert head.headers["content-length"] == got.headers["content-length"]


async def test_the_es_module_is_made_from_the_same_file_and_exports_window_alli(server: Server) -> None:
    source = web_file("sdk", "alli.js")
    for path in ("/sdk/alli.esm.js", "/sdk/alli.esm.min.js"):
        answer = await server.client.get(path, headers={"Accept-Encoding": "identity"})

        assert answer.status_code == 200, path
        assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
        assert source in answer.content
        assert answer.content.rstrip().endswith(b"export default window.Alli;")
        assert (await server.client.head(path)).status_code == 200
    classic = await server.client.get("/sdk/alli.min.js", headers={"Accept-Encoding": "identity"})
    assert classic.content == source


def test_the_sdk_stays_within_its_size_budget() -> None:
    # What a page pays on its first visit, minified and gzipped: at most 30 KB (bench/sdk_size.py shows it).
    minified = rjsmin.jsmin(web_file("sdk", "alli.js").decode()).encode()
    assert len(gzip.compress(minified, compresslevel=9, mtime=0)) <= 30 * 1024
