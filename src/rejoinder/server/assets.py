"""Static files shipped in the wheel: the JavaScript SDK at ``/sdk/alli.js`` and as an ES module.

The file is read and gzipped once per process. Answers carry a strong ETag (a hash of the content) and a short
cache lifetime, so that pages pick up a new SDK within minutes of an upgrade and otherwise revalidate cheaply.
``HEAD`` answers the same headers without the body (caches and uptime checks use it).

The ES module (``/sdk/alli.esm.js``) is made from the same file when it is first asked for: the classic script
defines ``window.Alli``; the module runs it and exports that object, so both names give the very same ``Alli``.
The ``.min`` names of Alli's guides serve the same bytes.
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from functools import cache
from importlib import resources

from fastapi import APIRouter, Request
from fastapi.responses import Response

SDK_CACHE_SECONDS = 300
MEDIA_TYPE = "text/javascript; charset=utf-8"

# The module's own URL tells the SDK which server it came from (a module has no document.currentScript).
ESM_PROLOGUE = b"const __rejoinderModuleUrl = import.meta.url;\n"
ESM_EPILOGUE = b"\nexport default window.Alli;\n"

router = APIRouter(include_in_schema=False)


@dataclass(frozen=True)
class Asset:
    """A file's bytes, its gzipped bytes and its ETag."""

    body: bytes
    gzipped: bytes
    etag: str
    media_type: str

    @classmethod
    def of(cls, body: bytes, media_type: str) -> Asset:
        digest = hashlib.sha256(body).hexdigest()[:20]
        return cls(body, gzip.compress(body, compresslevel=9, mtime=0), f'"{digest}"', media_type)

    def response(self, request: Request, cache_seconds: int) -> Response:
        headers = {
            "ETag": self.etag,
            "Cache-Control": f"public, max-age={cache_seconds}",
            "Vary": "Accept-Encoding",
            "X-Content-Type-Options": "nosniff",
            # The SDK is loaded by other sites' pages.
            "Cross-Origin-Resource-Policy": "cross-origin",
        }
        if self.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = self.body
        if "gzip" in request.headers.get("accept-encoding", ""):
            headers["Content-Encoding"] = "gzip"
            body = self.gzipped
        if request.method == "HEAD":
            headers["Content-Length"] = str(len(body))
            return Response(media_type=self.media_type, headers=headers)
        return Response(body, media_type=self.media_type, headers=headers)


def web_file(*parts: str) -> bytes:
    """The bytes of a file under ``rejoinder/web/``."""
    return resources.files("rejoinder").joinpath("web", *parts).read_bytes()


@cache
def sdk() -> Asset:
    """The SDK file, loaded once per process."""
    return Asset.of(web_file("sdk", "alli.js"), MEDIA_TYPE)


@cache
def sdk_module() -> Asset:
    """The SDK as an ES module whose default export is ``window.Alli``, made from the same file."""
    return Asset.of(ESM_PROLOGUE + web_file("sdk", "alli.js") + ESM_EPILOGUE, MEDIA_TYPE)


@router.api_route("/sdk/alli.js", methods=["GET", "HEAD"])
@router.api_route("/sdk/alli.min.js", methods=["GET", "HEAD"])
async def alli_js(request: Request) -> Response:
    return sdk().response(request, SDK_CACHE_SECONDS)


@router.api_route("/sdk/alli.esm.js", methods=["GET", "HEAD"])
@router.api_route("/sdk/alli.esm.min.js", methods=["GET", "HEAD"])
async def alli_esm_js(request: Request) -> Response:
    return sdk_module().response(request, SDK_CACHE_SECONDS)
