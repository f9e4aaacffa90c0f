"""The demo shop's pages: the shop (with the chat), the login page (without) and the account page (resumes it).

Templates live in ``rejoinder/web/demo/`` and are rendered by Jinja2 with autoescaping; values that go into
inline scripts pass through ``tojson``, which escapes them for a ``<script>`` element. Every page carries a
Content-Security-Policy whose only inline scripts are the page's own, marked with a fresh nonce.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, PackageLoader, select_autoescape

from rejoinder.demo.backend import ORDERS, VISITOR_COOKIE, ShopBackend

# What the account page sends as the customer once the chat is back: the skill's wait_login question goes on.
RESUME_MESSAGE = "RESUME"
MAX_NAME_LENGTH = 40
STATIC_FILES = {"shop.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}
_LOOPBACK_NAMES = {"127.0.0.1", "localhost", "[::1]"}
_HOST = re.compile(r"^(?:[A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::\d{1,5})?$")


@dataclass(frozen=True)
class SiteSettings:
    """What the pages need: the bot's SDK key and the address the demo was announced at."""

    sdk_key: str
    public_base: str  # e.g. http://127.0.0.1:8000, without a trailing slash


@cache
def templates() -> Environment:
    return Environment(
        loader=PackageLoader("rejoinder", "web/demo"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )


@cache
def static_file(name: str) -> bytes:
    return resources.files("rejoinder").joinpath("web", "demo", name).read_bytes()


def content_security_policy(nonce: str, host: str | None, secure: bool = False) -> str:
    """Only this server's scripts and the page's own nonce-marked inline scripts; no framing, no outside calls."""
    connect = "'self'"
    if host is not None and _HOST.match(host):
        connect += f" {'wss' if secure else 'ws'}://{host}"
    return "; ".join(
        [
            "default-src 'self'",
            f"script-src 'self' 'nonce-{nonce}'",
            "style-src 'self'",
            "img-src 'self' data:",
            f"connect-src {connect}",
            "base-uri 'none'",
            "form-action 'self'",
            "object-src 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _visitor_id(request: Request) -> str | None:
    value = request.cookies.get(VISITOR_COOKIE)
    return value if value and len(value) <= 128 else None


def _set_visitor(response: Response, request: Request, visitor_id: str) -> None:
    """The visitor cookie: random, unreadable by scripts, not sent along with other sites' requests."""
    response.set_cookie(
        VISITOR_COOKIE,
        visitor_id,
        path="/demo",
        httponly=True,
        samesite="lax",
        secure=request.url.scheme == "https",
    )


def site_router(settings: SiteSettings, shop: ShopBackend) -> APIRouter:
    """The pages of the demo shop."""
    router = APIRouter(include_in_schema=False)
    public = urlsplit(settings.public_base)

    def page(request: Request, template: str, status: int = 200, **context: Any) -> Response:
        nonce = secrets.token_urlsafe(18)
        visitor_id = _visitor_id(request)
        visitor = shop.visitor(visitor_id)
        html = (
            templates()
            .get_template(template)
            .render(nonce=nonce, sdk_key=settings.sdk_key, name=visitor.name if visitor else None, **context)
        )
        response = HTMLResponse(html, status_code=status)
        response.headers.update(
            {
                "Content-Security-Policy": content_security_policy(
                    nonce, request.headers.get("host"), request.url.scheme == "https"
                ),
                "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "same-origin",
                "Cache-Control": "no-store",  # the account page may carry a conversation token
            }
        )
        if visitor_id is None:
            _set_visitor(response, request, shop.new_visitor_id())
        return response

    def elsewhere(request: Request) -> Response | None:
        """A redirect to the announced address when the page was opened by another loopback name.

        The visitor cookie belongs to one host name; the login link the bot sends uses the announced one.
        """
        host = request.headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        shown = f"[{name}]" if ":" in name else name
        if host.lower() == public.netloc.lower() or shown not in _LOOPBACK_NAMES:
            return None
        target = settings.public_base + request.url.path
        if request.url.query:
            target += "?" + request.url.query
        return RedirectResponse(target, status_code=307)

    @router.get("/")
    async def root() -> Response:
        return RedirectResponse("/demo/", status_code=307)

    @router.get("/demo")
    async def demo_root() -> Response:
        return RedirectResponse("/demo/", status_code=307)

    @router.get("/demo/")
    async def shop_page(request: Request) -> Response:
        return elsewhere(request) or page(request, "shop.html")

    @router.get("/demo/login")
    async def login_page(request: Request) -> Response:
        return elsewhere(request) or page(
            request, "login.html", waiting=shop.waiting_token(_visitor_id(request))
        )

    @router.post("/demo/login")
    async def log_in(request: Request) -> Response:
        origin = request.headers.get("origin")
        if origin is not None and urlsplit(origin).netloc.lower() != request.headers.get("host", "").lower():
            return page(request, "login.html", status=403, error="Log in from the shop's own login page.")
        fields = parse_qs((await request.body()).decode("utf-8", "replace"))
        name = " ".join(fields.get("name", [""])[0].split())
        if not name or len(name) > MAX_NAME_LENGTH:
            error = f"Type a name of 1 to {MAX_NAME_LENGTH} characters."
            return page(request, "login.html", status=400, error=error, typed=name[:MAX_NAME_LENGTH])
        visitor_id = _visitor_id(request) or shop.new_visitor_id()
        shop.log_in(visitor_id, name)
        response = RedirectResponse("/demo/account", status_code=303)
        if _visitor_id(request) is None:
            _set_visitor(response, request, visitor_id)
        return response

    @router.get("/demo/account")
    async def account_page(request: Request) -> Response:
        redirect = elsewhere(request)
        if redirect is not None:
            return redirect
        visitor_id = _visitor_id(request)
        visitor = shop.visitor(visitor_id)
        logged_in = visitor is not None and visitor.name is not None
        token = shop.take_token(visitor_id) if logged_in else None
        return page(
            request,
            "account.html",
            logged_in=logged_in,
            token=token,
            waiting=token is None and shop.waiting_token(visitor_id),
            resumed=token is None and visitor is not None and visitor.resumed is not None,
            orders=ORDERS if logged_in else (),
            resume_message=RESUME_MESSAGE,
        )

    @router.get("/demo/static/{name}")
    async def static(name: str) -> Response:
        media_type = STATIC_FILES.get(name)
        if media_type is None:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            static_file(name),
            media_type=media_type,
            headers={"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"},
        )

    return router
