"""The admin API of an app in this process serving two small bots, "chat" and "other", with their keys."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from rejoinder.config import Settings
from rejoinder.server.app import create_app, load_bots
from rejoinder.service.keys import create_keys
from rejoinder.store import Store
from tests.helpers.bots import TALK_SKILL, write_bot
from tests.helpers.clients import bearer, say, start

# Hands the conversation over to ``talk``.
HANDOFF_SKILL = """\
id: handoff
triggers: {events: [handoff]}
start: go
nodes:
  go: {type: jump, skill: talk}
"""


def write_admin_bots(root: Path) -> Path:
    """The bots "chat" (talk and handoff) and "other" (talk) under ``root``, both allowing http://shop.example."""
    for bot_id, skills in (
        ("chat", {"talk": TALK_SKILL, "handoff": HANDOFF_SKILL}),
        ("other", {"talk": TALK_SKILL}),
    ):
        write_bot(root / bot_id, f'id: {bot_id}\nallowed_origins: ["http://shop.example"]\n', skills)
    return root


@dataclass
class Api:
    """The app, a client of it, and the keys of "chat" (and the secret key of "other")."""

    app: Any
    store: Store
    http: httpx.AsyncClient
    secret_key: str
    sdk_key: str
    other_secret_key: str

    @property
    def admin(self) -> dict[str, str]:
        return bearer(self.secret_key)

    async def start(self, event: str = "hello") -> tuple[str, str]:
        answer = await start(self.http, self.sdk_key, event=event)
        assert answer.status_code == 201, answer.text
        return answer.json()["conversation_id"], answer.json()["session"]

    async def say(self, conversation_id: str, session: str, text: str, message_id: str) -> httpx.Response:
        return await say(self.http, conversation_id, session, text, message_id)

    async def resume(self, token: str) -> httpx.Response:
        return await self.http.post(
            "/v1/conversations/resume",
            json={"token": token},
            headers=bearer(self.sdk_key),
        )

    async def put_skill(
        self, skill_id: str, text: str, content_type: str = "application/yaml"
    ) -> httpx.Response:
        return await self.http.put(
            f"/v1/skills/{skill_id}", content=text, headers=self.admin | {"content-type": content_type}
        )


@asynccontextmanager
async def running_admin_api(bots_root: Path, database: Path) -> AsyncIterator[Api]:
    """An app serving the bots "chat" and "other" on ``database``, started and stopped like a server."""
    url = f"sqlite:///{database}"
    store = Store.from_url(url)
    bots = load_bots([bots_root / "chat", bots_root / "other"])
    app = create_app(bots, store=store, settings=Settings(database_url=url))
    async with app.router.lifespan_context(app):
        now = datetime.now(UTC)
        keys, other = await create_keys(store, "chat", now=now), await create_keys(store, "other", now=now)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            yield Api(app, store, http, keys.secret_key, keys.sdk_key, other.secret_key)
