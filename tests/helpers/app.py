"""The app in this process on a temporary SQLite database or a database URL (lifespan included), driven through
httpx over ASGI."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from rejoinder.config import Settings
from rejoinder.server.app import create_app
from rejoinder.server.ratelimit import ResumeGuard
from rejoinder.service import ConversationService
from rejoinder.service.keys import IssuedKeys, create_keys
from rejoinder.skills import Bot
from rejoinder.store import Store
from tests.helpers.bots import IDENTITY_SECRET
from tests.helpers.clients import start

ALLOWED_ORIGIN = "http://127.0.0.1:8000"  # one of the example shop's allowed origins
# Port 9 (discard) is closed on the test machine: the shop's Integrate calls fail fast and take on_error.
ENVIRON = {"SHOP_BACKEND": "http://127.0.0.1:9", "SHOP_IDENTITY_SECRET": IDENTITY_SECRET}


@dataclass
class Server:
    """A running app, an HTTP client for it, and the keys of each of its bots."""

    app: FastAPI
    client: httpx.AsyncClient
    keys: dict[str, IssuedKeys]

    @property
    def service(self) -> ConversationService:
        service: ConversationService = self.app.state.service
        return service

    @property
    def store(self) -> Store:
        store: Store = self.app.state.store
        return store

    def sdk(self, bot_id: str = "shop", **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys[bot_id].sdk_key}", **headers}

    @staticmethod
    def user_hash(user_id: str, secret: str = IDENTITY_SECRET) -> str:
        """What the shop's backend would give its page for a logged-in user."""
        return hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()

    @staticmethod
    def bearer(session: str, **headers: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {session}", **headers}

    async def start(self, bot_id: str = "shop", **body: Any) -> dict[str, Any]:
        """Start a conversation (by the ``welcome`` event unless told otherwise) and return the answer."""
        response = await start(self.client, self.keys[bot_id].sdk_key, **(body or {"event": "welcome"}))
        assert response.status_code == 201, response.text
        answer: dict[str, Any] = response.json()
        return answer

    async def token_for(self, conversation_id: str, **options: Any) -> str:
        secret, _record = await self.service.issue_token(conversation_id, **options)
        return secret


@asynccontextmanager
async def running(
    database: Path | str,
    bots: Mapping[str, Bot],
    *,
    keys: dict[str, IssuedKeys] | None = None,
    resume_guard: ResumeGuard | None = None,
    client_ip: str = "127.0.0.1",
    **settings: Any,
) -> AsyncIterator[Server]:
    """Start an app (lifespan included) on ``database``, a SQLite file or a database URL, create keys for its bots
    unless given, and stop it on exit.

    ``settings`` are given to the app's :class:`Settings` (quotas, for instance).
    """
    url = database if isinstance(database, str) else f"sqlite:///{database}"
    app = create_app(
        bots,
        store=Store.from_url(url),
        settings=Settings(database_url=url, redis_url=None, **settings),
        environ=ENVIRON,
        resume_guard=resume_guard,
    )
    async with app.router.lifespan_context(app):
        if keys is None:
            now = datetime.now(UTC)
            keys = {bot_id: await create_keys(app.state.store, bot_id, now=now) for bot_id in bots}
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=(client_ip, 50000))
        async with httpx.AsyncClient(transport=transport, base_url="http://rejoinder.test") as client:
            yield Server(app=app, client=client, keys=keys)


Launch = Callable[..., AbstractAsyncContextManager[Server]]
