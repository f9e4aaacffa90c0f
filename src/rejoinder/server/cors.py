"""CORS for the server: the client API answers every origin, the rest only the bots' allowed origins.

The client API (``/v1/conversations…`` and ``/v1/widget``) checks the ``Origin`` of each request against the bot
of its key or session and refuses a stranger with ``403 origin_not_allowed``, naming the origin to add. For a page
to read that answer, the browser must be let through the preflight and shown the answer: so these routes carry
CORS headers for any origin. This opens nothing: they take no cookies (``Access-Control-Allow-Credentials`` is
never sent) and every one of them refuses an origin its bot does not allow. Every other route (admin, operations)
keeps CORS for the allowed origins only.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

# Routes that check the Origin themselves, against the bot of the key or session. ``/v1/conversations`` is also
# the admin API's list, which refuses any page of another origin than the server's own.
_CLIENT_PATH = re.compile(
    r"^/v1/(?:widget|conversations(?:/resume|/[^/]+/messages|/[^/]+/session/refresh)?)$"
)

_METHODS = ["GET", "POST"]
_HEADERS = ["Authorization", "Content-Type"]
_EXPOSED = ["Retry-After"]
_MAX_AGE = 600


class ServerCors:
    """Two CORS policies on one app, chosen by path."""

    def __init__(self, app: ASGIApp, allowed_origins: Iterable[str]) -> None:
        self.client = CORSMiddleware(
            app,
            allow_origins=["*"],
            allow_methods=_METHODS,
            allow_headers=_HEADERS,
            expose_headers=_EXPOSED,
            max_age=_MAX_AGE,
        )
        self.other = CORSMiddleware(
            app,
            allow_origins=sorted(set(allowed_origins)),
            allow_methods=_METHODS,
            allow_headers=_HEADERS,
            expose_headers=_EXPOSED,
            max_age=_MAX_AGE,
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and is_client_path(scope["path"]):
            await self.client(scope, receive, send)
        else:
            await self.other(scope, receive, send)


def is_client_path(path: str) -> bool:
    """Whether ``path`` is a route of the client API (which checks the Origin against its bot)."""
    return _CLIENT_PATH.match(path) is not None
