"""The demo app in this process (lifespan included), driven through httpx over ASGI like a browser on the shop."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx
from fastapi import FastAPI

from rejoinder.config import Settings
from rejoinder.demo import SIGNING_SECRET_ENV, create_demo_app, demo_bot, demo_origins
from rejoinder.demo.backend import ShopBackend
from rejoinder.service.keys import IssuedKeys, create_keys
from rejoinder.store import Store

PORT = 8000
BASE = f"http://127.0.0.1:{PORT}"
# Nothing listens on port 9: the bot's Integrate calls fail fast in these in-process tests.
SELF_BASE = "http://127.0.0.1:9"


@dataclass
class Demo:
    """The demo app, a client of it that comes from its own page, and its keys."""

    app: FastAPI
    client: httpx.AsyncClient
    keys: IssuedKeys

    @property
    def shop(self) -> ShopBackend:
        shop: ShopBackend = self.app.state.demo_shop
        return shop

    def sdk(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.keys.sdk_key}", "Origin": BASE}


@asynccontextmanager
async def running_demo(directory: Path) -> AsyncIterator[Demo]:
    """The demo app on a fresh SQLite file in ``directory``, as ``rejoinder demo`` would serve it on port 8000."""
    url = f"sqlite:///{directory / 'demo.db'}"
    bot = demo_bot(
        origins=demo_origins("127.0.0.1", PORT),
        allow_hosts=["127.0.0.1"],
        signing_secret_env=SIGNING_SECRET_ENV,
    )
    store = Store.from_url(url)
    await store.upgrade()
    keys = await create_keys(store, bot.id, now=datetime.now(UTC))
    app = create_demo_app(
        bot,
        store=store,
        settings=Settings(database_url=url, redis_url=None),
        sdk_key=keys.sdk_key,
        public_base=BASE,
        self_base=SELF_BASE,
        environ={},
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False, client=("127.0.0.1", 50000))
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as client:
            yield Demo(app=app, client=client, keys=keys)
