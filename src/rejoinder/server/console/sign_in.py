"""Signing in to the console and out of it."""

from __future__ import annotations

import hmac

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from rejoinder.server.console.pages import Flash, render
from rejoinder.server.console.session import (
    CSRF_FIELD,
    PREFIX,
    SESSION_COOKIE,
    SIGN_IN_COOKIE,
    ConsoleRefused,
    Viewer,
    accounts,
    actor,
    clear_session_cookie,
    client_of,
    form_of,
    from_this_site,
    safe_next,
    set_session_cookie,
    sign_in_token,
    signed_in,
)
from rejoinder.service.errors import SignInRefused, SignInThrottled

router = APIRouter()


def _form_page(
    request: Request, next_path: str, *, email: str = "", error: str | None = None, status: int = 200
) -> Response:
    response = Response()  # collects the sign-in cookie, when a new one is made
    token = sign_in_token(request, response)
    flashes = [Flash("error", error)] if error else []
    page = render(
        request,
        "sign_in.html",
        {"next": next_path, "email": email, "sign_in_token": token, "flashes": flashes},
        status=status,
    )
    for name, value in response.raw_headers:
        if name == b"set-cookie":
            page.raw_headers.append((name, value))
    return page


@router.get(PREFIX + "/sign-in")
async def sign_in_form(request: Request, next: str | None = None) -> Response:
    secret = request.cookies.get(SESSION_COOKIE)
    if secret and await accounts(request).session(secret) is not None:
        return RedirectResponse(safe_next(next), status_code=303)
    return _form_page(request, safe_next(next))


@router.post(PREFIX + "/sign-in")
async def sign_in(request: Request) -> Response:
    form = await form_of(request)
    expected = request.cookies.get(SIGN_IN_COOKIE, "")
    given = str(form.get(CSRF_FIELD) or "")
    if (
        not from_this_site(request)
        or not expected
        or not hmac.compare_digest(given.encode(), expected.encode())
    ):
        raise ConsoleRefused(
            403,
            "Request refused",
            "The sign-in form is out of date or came from another site. Reload it and try again.",
        )
    email = str(form.get("email") or "")[:320]
    password = str(form.get("password") or "")
    next_path = safe_next(str(form.get("next") or ""))
    ip, user_agent = client_of(request)
    service = accounts(request)
    try:
        done = await service.sign_in(email, password, ip=ip, user_agent=user_agent)
    except SignInThrottled as refused:
        page = _form_page(request, next_path, email=email, error=str(refused), status=429)
        page.headers["Retry-After"] = str(max(int(refused.retry_after), 1))
        return page
    except SignInRefused as refused:
        return _form_page(request, next_path, email=email, error=str(refused), status=401)
    response = RedirectResponse(next_path, status_code=303)
    set_session_cookie(request, response, done.secret, int(service.lifetime.total_seconds()))
    response.delete_cookie(SIGN_IN_COOKIE, path=PREFIX)
    return response


@router.post(PREFIX + "/sign-out")
async def sign_out(request: Request, user: Viewer) -> Response:
    state = signed_in(request)
    assert state is not None and state.user == user
    await accounts(request).sign_out(state.found, actor(request))
    response = RedirectResponse(PREFIX + "/sign-in", status_code=303)
    clear_session_cookie(request, response)
    return response
