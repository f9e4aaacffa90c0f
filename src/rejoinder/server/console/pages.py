"""How console pages are made and answered: the templates, ``render``, the security headers, the static files,
and the HTML answers to refusals and to the server's problem documents."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

import jinja2
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.datastructures import Headers, MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rejoinder.server.console.session import PREFIX, ConsoleRefused, SignInRequired, sign_in_url, signed_in
from rejoinder.server.errors import PROBLEM_MEDIA_TYPE
from rejoinder.service.accounts import role_allows

# Nothing on a console page comes from another host, runs inline, or may be framed.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; frame-ancestors 'none'; "
    "form-action 'self'; base-uri 'none'"
)
STATIC_CACHE_SECONDS = 300
# A problem document longer than this is passed on as it is (the server's are a few hundred bytes).
MAX_PROBLEM_BYTES = 16 * 1024
# How a console page words the problems whose API wording speaks of the API; others keep their title and detail.
_PAGE_PROBLEMS = {
    404: ("Page not found", "There is no page at this address in the console."),
    405: ("Not allowed here", "This address does not take this kind of request."),
}
_STATIC_TYPES = {
    ".css": "text/css; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".svg": "image/svg+xml",
}


@dataclass(frozen=True)
class NavItem:
    label: str
    path: str
    role: str = "viewer"  # the least role that sees the link


NAV: tuple[NavItem, ...] = (
    NavItem("Overview", PREFIX),
    NavItem("Conversations", f"{PREFIX}/conversations"),
    NavItem("Tokens", f"{PREFIX}/tokens"),
    NavItem("Audit", f"{PREFIX}/audit"),
    NavItem("Skills", f"{PREFIX}/skills"),
    NavItem("Keys", f"{PREFIX}/keys", role="owner"),
    NavItem("Users", f"{PREFIX}/users", role="owner"),
)


@dataclass(frozen=True)
class Flash:
    """A message at the top of a page; ``kind`` is ``notice`` (done) or ``error`` (not done)."""

    kind: str
    text: str


templates = jinja2.Environment(
    loader=jinja2.PackageLoader("rejoinder.server.console", "templates"),
    auto_reload=False,  # the templates are the package's: no need to look at their files on every page
    autoescape=True,
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render(
    request: Request,
    template: str,
    context: Mapping[str, Any] | None = None,
    *,
    status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> HTMLResponse:
    """The page ``template`` with ``context``, plus what every page shows: ``user`` (None when signed out),
    ``csrf_token``, ``nav`` (the links the user's role sees, the current one marked), ``flashes`` (empty unless
    given) and ``static`` (the URL of a static file)."""
    state = signed_in(request)
    user = state.user if state is not None else None
    path = request.url.path.rstrip("/") or "/"
    nav = [
        {"label": item.label, "path": item.path, "current": _is_current(item.path, path)}
        for item in NAV
        if user is not None and role_allows(user.role, item.role)
    ]
    values: dict[str, Any] = {
        "user": user,
        "csrf_token": state.csrf_token if state is not None else "",
        "nav": nav,
        "flashes": [],
        "static": static_url,
        **(context or {}),
    }
    return HTMLResponse(templates.get_template(template).render(values), status_code=status, headers=headers)


def _is_current(item: str, path: str) -> bool:
    return path == item if item == PREFIX else path == item or path.startswith(item + "/")


def static_url(name: str) -> str:
    return f"{PREFIX}/static/{name}?v={_static(name).etag}"


# ------------------------------------------------------------------------------------------------ static files


@dataclass(frozen=True)
class _StaticFile:
    body: bytes
    media_type: str
    etag: str


@cache
def _static(name: str) -> _StaticFile:
    """A file of ``web/console/``, read once; KeyError for any other name."""
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or suffix not in _STATIC_TYPES:
        raise KeyError(name)
    try:
        body = resources.files("rejoinder").joinpath("web", "console", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        raise KeyError(name) from None
    return _StaticFile(body, _STATIC_TYPES[suffix], hashlib.sha256(body).hexdigest()[:16])


static_router = APIRouter(include_in_schema=False)


@static_router.get(PREFIX + "/static/{name}")
async def static_file(name: str) -> Response:
    try:
        found = _static(name)
    except KeyError:
        return Response("Not found", status_code=404, media_type="text/plain")
    return Response(
        found.body,
        media_type=found.media_type,
        headers={"Cache-Control": f"public, max-age={STATIC_CACHE_SECONDS}", "ETag": f'"{found.etag}"'},
    )


# ------------------------------------------------------------------------------------------------ answers


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ConsoleRefused)
    return render(
        request,
        "error.html",
        {"title": exc.title, "message": exc.message},
        status=exc.status,
        headers=exc.headers,
    )


async def _sign_in_required(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, SignInRequired)
    return RedirectResponse(sign_in_url(exc.next_path), status_code=303)


def install_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ConsoleRefused, _refused)
    app.add_exception_handler(SignInRequired, _sign_in_required)


class ConsoleHeaders:
    """ASGI middleware: the console's security headers on every answer under ``/dashboard``, and ``no-store``
    on every one but the static files (which set their own caching)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path == PREFIX or path.startswith(PREFIX + "/")):
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                headers["X-Content-Type-Options"] = "nosniff"
                headers["Referrer-Policy"] = "same-origin"
                headers["X-Frame-Options"] = "DENY"
                if "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _in_console(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")


class ConsoleHtmlProblems:
    """ASGI middleware: a problem document answered under ``/dashboard`` to a browser's request for a page (one
    that accepts ``text/html``) becomes the console's error page, with the same status and headers
    (``Retry-After``, ``Allow``). Any other client, such as the live transcript's script, gets the problem
    document."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or not _in_console(scope.get("path", ""))
            or "text/html" not in Headers(scope=scope).get("accept", "")
        ):
            await self.app(scope, receive, send)
            return
        problem: Message | None = None  # a problem's start, held until its body is known
        passing = False  # a problem too long to be one of ours: passed on as it is
        body = bytearray()

        async def send_problem_as_page(message: Message) -> None:
            nonlocal problem, passing
            if problem is None or passing:
                if message["type"] == "http.response.start" and _is_problem(message):
                    problem = message
                else:
                    await send(message)
                return
            body.extend(message.get("body", b""))
            more = bool(message.get("more_body", False))
            if len(body) > MAX_PROBLEM_BYTES:
                passing = True
                await send(problem)
                await send({"type": "http.response.body", "body": bytes(body), "more_body": more})
            elif not more:
                await _send_page(scope, problem, bytes(body), send)

        await self.app(scope, receive, send_problem_as_page)


def _is_problem(start: Message) -> bool:
    return Headers(raw=start["headers"]).get("content-type", "").startswith(PROBLEM_MEDIA_TYPE)


async def _send_page(scope: Scope, start: Message, body: bytes, send: Send) -> None:
    """The console's error page for the problem document ``body`` answered with ``start``; the document as it
    is when it cannot be read."""
    try:
        problem = json.loads(body)
        title, message = str(problem["title"]), str(problem["detail"])
    except (ValueError, KeyError, TypeError):
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    status = int(start["status"])
    title, message = _PAGE_PROBLEMS.get(status, (title, message))
    page = render(Request(scope), "error.html", {"title": title, "message": message}, status=status)
    headers = MutableHeaders(raw=list(start["headers"]))
    headers["content-type"] = "text/html; charset=utf-8"
    headers["content-length"] = str(len(page.body))
    await send({"type": "http.response.start", "status": status, "headers": headers.raw})
    await send({"type": "http.response.body", "body": bytes(page.body)})
