"""Who is signed in to the console, and whether a request that changes something really comes from its pages.

The session cookie holds a random secret (the store keeps its SHA-256). The CSRF token of a session is derived from
that secret (an HMAC), so it needs no storage and dies with the session. Every state-changing request must carry
it, in the form field :data:`CSRF_FIELD` or the header ``X-CSRF-Token``, and must not come from another site
(``Sec-Fetch-Site``, ``Origin``). The sign-in form, which has no session yet, is protected the same way by a
random value in a short-lived cookie of its own, which the form must repeat.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated, cast
from urllib.parse import quote

from fastapi import Depends, Request
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import HTTPConnection
from starlette.responses import Response

from rejoinder.server.errors import CONSOLE_SKILL_UPLOAD
from rejoinder.service.accounts import Accounts, ConsoleSession, console_actor, role_allows
from rejoinder.service.resume import Actor
from rejoinder.store.records import ConsoleUserRecord

PREFIX = "/dashboard"
SESSION_COOKIE = "rejoinder_console"
SIGN_IN_COOKIE = "rejoinder_console_sign_in"  # the sign-in form's own CSRF value
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "x-csrf-token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
MAX_FORM_FIELDS = 50
# The one form that carries a file (the skill upload's, bounded by the server's body limit). Any other form with a
# file is refused, so that no field meant as text arrives as a file.
FILE_FORMS = frozenset({CONSOLE_SKILL_UPLOAD})
SIGN_IN_COOKIE_SECONDS = 3600

_CSRF_CONTEXT = b"rejoinder console csrf"


class ConsoleRefused(Exception):
    """Answered as an HTML page with ``status`` (never a problem document: a person reads it)."""

    def __init__(self, status: int, title: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.title = title
        self.message = message
        self.headers = headers or {}


class SignInRequired(Exception):
    """A page asked for without a live session: answered by a 303 to the sign-in form, which comes back here."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


@dataclass(frozen=True)
class SignedInRequest:
    """What a console page knows of its signed-in user, kept on ``request.state.console``."""

    user: ConsoleUserRecord
    found: ConsoleSession
    csrf_token: str


def accounts(conn: HTTPConnection) -> Accounts:
    return cast("Accounts", conn.app.state.accounts)


def csrf_token_for(secret: str) -> str:
    return hmac.new(secret.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def signed_in(request: Request) -> SignedInRequest | None:
    """The signed-in user of this request, once a role dependency has run."""
    found = getattr(request.state, "console", None)
    return found if isinstance(found, SignedInRequest) else None


def client_of(request: Request) -> tuple[str | None, str | None]:
    """The client's address and user agent, as the audit trail records them."""
    ip = request.client.host if request.client else None
    return ip, (request.headers.get("user-agent") or "")[:500] or None


def actor(request: Request) -> Actor:
    """The audit trail's name for the signed-in user's change (``console:<email>``, address, user agent): give it
    to every service call that audits."""
    state = signed_in(request)
    if state is None:
        raise RuntimeError("actor() needs a console role dependency (viewer, editor, owner) on the route")
    return console_actor(state.user, *client_of(request))


async def form_of(request: Request) -> FormData:
    """The request's form (read once; bounded in fields and files, and the body by the server's body limit)."""
    max_files = 1 if request.url.path in FILE_FORMS else 0
    try:
        return await request.form(max_files=max_files, max_fields=MAX_FORM_FIELDS)
    except StarletteHTTPException as error:
        if error.status_code == 413:
            raise ConsoleRefused(413, "Form too large", "The form is larger than the server takes.") from None
        raise ConsoleRefused(
            400, "Unreadable form", "The form could not be read. Go back and send it again."
        ) from None


def from_this_site(request: Request) -> bool:
    """Whether the browser says the request comes from the console's own pages (or does not say)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None and site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    return origin is None or origin == f"{request.url.scheme}://{request.url.netloc}"


async def check_csrf(request: Request, expected: str) -> None:
    """Refuse (403) a change that does not come from this site or does not carry ``expected``."""
    if not from_this_site(request):
        raise _forged("The request came from another site.")
    given = request.headers.get(CSRF_HEADER)
    if given is None:
        value = (await form_of(request)).get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not given or not hmac.compare_digest(given.encode(), expected.encode()):
        raise _forged("The form's security token is missing or out of date.")


def _forged(reason: str) -> ConsoleRefused:
    return ConsoleRefused(
        403,
        "Request refused",
        f"{reason} Nothing was changed. Reload the page and try again.",
    )


async def _require(request: Request, needed: str) -> ConsoleUserRecord:
    secret = request.cookies.get(SESSION_COOKIE)
    found = await accounts(request).session(secret) if secret else None
    if found is None:
        if request.method not in SAFE_METHODS:
            raise ConsoleRefused(
                403, "Signed out", "Your session has ended: sign in again. Nothing was changed."
            )
        path = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        raise SignInRequired(path)
    assert secret is not None
    csrf = csrf_token_for(secret)
    request.state.console = SignedInRequest(found.user, found, csrf)
    if request.method not in SAFE_METHODS:
        await check_csrf(request, csrf)
    if not role_allows(found.user.role, needed):
        raise ConsoleRefused(
            403, "Not allowed", f"This needs the {needed} role; you are signed in as {found.user.role}."
        )
    return found.user


async def viewer(request: Request) -> ConsoleUserRecord:
    """The signed-in user (any role)."""
    return await _require(request, "viewer")


async def editor(request: Request) -> ConsoleUserRecord:
    """The signed-in user, an editor or an owner."""
    return await _require(request, "editor")


async def owner(request: Request) -> ConsoleUserRecord:
    """The signed-in user, an owner."""
    return await _require(request, "owner")


Viewer = Annotated[ConsoleUserRecord, Depends(viewer)]
Editor = Annotated[ConsoleUserRecord, Depends(editor)]
Owner = Annotated[ConsoleUserRecord, Depends(owner)]


def set_session_cookie(request: Request, response: Response, secret: str, max_age: int) -> None:
    response.set_cookie(
        SESSION_COOKIE,
        secret,
        max_age=max_age,
        path=PREFIX,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def clear_session_cookie(request: Request, response: Response) -> None:
    response.delete_cookie(
        SESSION_COOKIE, path=PREFIX, secure=request.url.scheme == "https", httponly=True, samesite="strict"
    )


def sign_in_token(request: Request, response: Response) -> str:
    """The sign-in form's CSRF value: the one its cookie holds, or a new one set in ``response``."""
    token = request.cookies.get(SIGN_IN_COOKIE)
    if not token or len(token) > 100:
        token = secrets.token_urlsafe(32)
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            max_age=SIGN_IN_COOKIE_SECONDS,
            path=PREFIX,
            secure=request.url.scheme == "https",
            httponly=True,
            samesite="strict",
        )
    return token


def safe_next(value: str | None) -> str:
    """Where to go after signing in: a console path, never another site."""
    if (
        not value
        or len(value) > 2000
        or not (value == PREFIX or value.startswith(PREFIX + "/") or value.startswith(PREFIX + "?"))
        or "//" in value
        or "\\" in value
        or any(ord(c) < 0x20 for c in value)
    ):
        return PREFIX
    return value


def sign_in_url(next_path: str) -> str:
    return f"{PREFIX}/sign-in?next={quote(safe_next(next_path), safe='/')}"
