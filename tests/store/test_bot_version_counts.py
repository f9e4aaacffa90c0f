"""Conversations counted by the bot version they run on: kept in a column on every write, filled in by migration
0004 for conversations begun before it, and counted from its index."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command

from rejoinder.store import Store
from rejoinder.store.migrate import alembic_config
from rejoinder.store.tables import conversations

NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'rejoinder.db'}"
    make: Callable[[], str] = request.getfixturevalue("make_postgres_url")
    return make()


def _upgrade_to(revision: str) -> Callable[[sa.Connection], None]:
    def upgrade(connection: sa.Connection) -> None:
        config = alembic_config()
        config.attributes["connection"] = connection
        command.upgrade(config, revision)

    return upgrade


def _conversation(
    conversation_id: str, bot_id: str, status: str, state: dict[str, object]
) -> dict[str, object]:
    return {
        "id": conversation_id,
        "bot_id": bot_id,
        "status": status,
        "state": state,
        "skill_id": None,
        "node_id": None,
        "version": 1,
        "last_seq": 0,
        "user": {},
        "created_at": NOW,
        "updated_at": NOW,
    }


async def test_migration_fills_the_column_from_the_state_and_counts_come_from_it(fresh_url: str) -> None:
    store = Store.from_url(fresh_url)
    try:
        await store.database.write(_upgrade_to("0003"), solo=True)
        rows = [
            _conversation("cnv_1", "shop", "active", {"bot_version": "aaa"}),
            _conversation("cnv_2", "shop", "closed", {"bot_version": "aaa"}),
            _conversation("cnv_3", "shop", "active", {"bot_version": "bbb"}),
            _conversation("cnv_4", "other", "active", {"bot_version": "aaa"}),
            _conversation("cnv_5", "shop", "active", {"bot_version": 7}),  # not a version: not counted
            _conversation("cnv_6", "shop", "active", {}),
        ]
        # Written as the code before 0004 wrote them: no bot_version column named.
        await store.database.write(lambda conn: conn.execute(conversations.insert(), rows))
        await store.upgrade()

        assert await store.bots.conversations_per_version("shop", limit=10) == [("aaa", 2, 1), ("bbb", 1, 1)]
        assert await store.bots.conversations_per_version("shop", limit=1) == [("aaa", 2, 1)]
        assert await store.bots.conversations_per_version("other", limit=10) == [("aaa", 1, 1)]
        conversation = await store.conversations.get("cnv_3")
        assert conversation is not None and conversation.bot_version == "bbb"
    finally:
        await store.close()
