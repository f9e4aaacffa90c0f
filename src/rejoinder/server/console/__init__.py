"""The operator's console at ``/dashboard``: server-rendered pages for people with an account (``rejoinder users``).

Writing a console page
----------------------
A page is a route on an ``APIRouter`` of its own module here, included in :data:`router` below, and a template in
``templates/`` that extends ``base.html``::

    from rejoinder.server.console import Editor, actor, form_of, render

    @router.post("/dashboard/tokens/{token_id}/revoke")
    async def revoke(request: Request, token_id: str, user: Editor) -> Response:
        await state.service(request).revoke_token(bot_id, token_id, actor(request))
        return RedirectResponse("/dashboard/tokens?notice=revoked", status_code=303)

- **Who may**: the dependencies :func:`viewer`, :func:`editor` and :func:`owner` (or the ``Annotated`` forms
  ``Viewer``, ``Editor``, ``Owner``) return the signed-in :class:`~rejoinder.store.records.ConsoleUserRecord`
  whose role is at least that one. Without a live session a GET is redirected (303) to the sign-in form, which
  comes back afterwards; any other method is refused (403). A role too low is refused (403).
- **CSRF** is checked by those same dependencies on every POST, PUT, PATCH and DELETE: the form must carry the
  token (``{{ csrf_field(csrf_token) }}`` from ``_macros.html``) or the request the header ``X-CSRF-Token``,
  and must not come from another site. A refusal is an HTML 403 page and nothing runs.
- **Pages**: ``render(request, "page.html", {...}, status=200)`` adds ``user``, ``csrf_token``, ``nav``,
  ``flashes`` (a list of :class:`Flash`, shown by ``base.html``) and ``static``. Forms are read with
  ``await form_of(request)`` (bounded; already read when CSRF was checked).
- **Audit**: give ``actor(request)`` (``console:<email>``, address, user agent) to every service call that
  audits, so the trail says who made the change.
- Templates: ``base.html`` (blocks ``title``, ``content``), ``_macros.html`` (``csrf_field(token)``,
  ``flash_messages(flashes)``), ``error.html``, ``sign_in.html``, ``overview.html``, ``users.html``,
  ``keys.html`` (with ``key_revoke.html`` and ``key_secrets.html``), the Skills pages' (``skills.html``,
  ``skill.html``, ``skill_source.html``, ``skill_upload.html``, partials in ``_skills.html``).
  Static files (CSS, JS) live in ``rejoinder/web/console/`` and are linked with ``{{ static("console.css") }}``.

Every answer under ``/dashboard`` carries a strict Content-Security-Policy (nothing from another host, no inline
script or style), ``nosniff``, ``Referrer-Policy: same-origin`` and, but for static files, ``no-store``. A problem
document the server answers there (an unknown page's 404, a 503 when the database is down or the server busy) is
shown to a browser as ``error.html``; a script that asks for JSON gets the problem document.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from redis.asyncio import Redis

from rejoinder.config import Settings
from rejoinder.server.console import audit, conversations, keys, overview, sign_in, skills, tokens, users
from rejoinder.server.console.live import LiveStreams
from rejoinder.server.console.pages import (
    ConsoleHeaders,
    ConsoleHtmlProblems,
    Flash,
    install_handlers,
    render,
    static_router,
)
from rejoinder.server.console.session import (
    CSRF_FIELD,
    SESSION_COOKIE,
    Editor,
    Owner,
    Viewer,
    accounts,
    actor,
    editor,
    form_of,
    owner,
    signed_in,
    viewer,
)
from rejoinder.server.ratelimit import RedisFailureWindow, redis_client
from rejoinder.service.accounts import Accounts, SignInLimits
from rejoinder.store import Store

__all__ = [
    "CSRF_FIELD",
    "SESSION_COOKIE",
    "ConsoleHeaders",
    "ConsoleHtmlProblems",
    "Editor",
    "Flash",
    "Owner",
    "Viewer",
    "accounts",
    "accounts_for",
    "actor",
    "editor",
    "form_of",
    "install",
    "owner",
    "render",
    "router",
    "signed_in",
    "viewer",
]

router = APIRouter(include_in_schema=False)
router.include_router(static_router)
router.include_router(sign_in.router)
router.include_router(overview.router)
router.include_router(users.router)
router.include_router(conversations.router)
router.include_router(tokens.router)
router.include_router(audit.router)
router.include_router(keys.router)
router.include_router(skills.router)


def install(app: FastAPI) -> None:
    """Add the console's routes, the HTML answers to its refusals and the count of live transcripts to ``app``."""
    app.include_router(router)
    app.state.console_live = LiveStreams()
    install_handlers(app)


def accounts_for(store: Store, settings: Settings) -> tuple[Accounts, Redis | None]:
    """The accounts service for ``settings``: failed sign-ins counted in Redis when it is configured (shared by
    every worker), else in this process; and the Redis client to close at shutdown."""
    redis: Redis | None = None
    if settings.redis_url:
        redis = redis_client(settings.redis_url)
        window = settings.console_sign_in_window
        limits = SignInLimits(
            RedisFailureWindow(
                redis,
                settings.console_sign_in_failures_per_account,
                window,
                prefix="rejoinder:console-sign-in:account:",
            ),
            RedisFailureWindow(
                redis,
                settings.console_sign_in_failures_per_ip,
                window,
                prefix="rejoinder:console-sign-in:ip:",
            ),
        )
    else:
        limits = SignInLimits.in_memory(
            account_limit=settings.console_sign_in_failures_per_account,
            ip_limit=settings.console_sign_in_failures_per_ip,
            window=settings.console_sign_in_window,
        )
    service = Accounts(
        store.users,
        limits=limits,
        idle_timeout=settings.console_idle_timeout,
        lifetime=settings.console_session_lifetime,
        concurrent_hashes=settings.console_password_hashes,
    )
    return service, redis
