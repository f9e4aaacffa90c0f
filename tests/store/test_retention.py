"""Retention: conversations idle past their bot's retention are erased in short batches, by the store, the server's
background purge and ``rejoinder db purge``."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from rejoinder.cli import app as cli
from rejoinder.config import Settings, get_settings
from rejoinder.retention import purge_bot
from rejoinder.server.app import create_app
from rejoinder.skills import load_bot
from rejoinder.skills.model import BotConfig
from rejoinder.store import NewAudit, Store
from tests.helpers.shop_backend import SHOP_DIR
from tests.store.factories import new_token, start, turn

NOW = datetime.now(UTC)  # `rejoinder db purge` measures idleness from the real time
OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=10)
CUTOFF = NOW - timedelta(days=30)


async def seed(store: Store) -> None:
    """Three old conversations of the shop (one with a token and an audit trail), one recent, one old of another bot."""
    _secret, token = new_token()
    await start(store, "cnv_old_1", now=OLD, tokens=[token])
    await start(store, "cnv_old_2", now=OLD + timedelta(hours=1))
    await start(store, "cnv_old_3", now=OLD + timedelta(hours=2))
    await start(store, "cnv_recent", now=RECENT)
    await start(store, "cnv_other", now=OLD, bot_id="other")
    await store.audit.add(
        NewAudit(
            kind="resume", bot_id="shop", outcome="ok", at=OLD, conversation_id="cnv_old_1", ip="203.0.113.1"
        )
    )


async def remaining(store: Store) -> list[str]:
    shop, _ = await store.conversations.list(bot_id="shop")
    other, _ = await store.conversations.list(bot_id="other")
    return sorted(c.id for c in shop + other)


async def test_purging_erases_only_the_bots_idle_conversations_a_batch_at_a_time(store: Store) -> None:
    await seed(store)
    assert await store.conversations.count_idle("shop", CUTOFF) == 3
    batches: list[int] = []

    erased = await purge_bot(store, "shop", CUTOFF, batch=2, pause=0, progress=batches.append)

    assert erased == 3 and batches == [2, 1]
    assert await remaining(store) == ["cnv_other", "cnv_recent"]
    assert await store.conversations.messages_after("cnv_old_1") == []
    audit, _ = await store.audit.list(conversation_id="cnv_old_1")
    assert [(event.kind, event.ip) for event in audit] == [("resume", None)]
    assert await store.conversations.count_idle("shop", CUTOFF) == 0


def test_a_retention_is_a_duration_of_at_least_an_hour() -> None:
    assert BotConfig(id="shop", retention="30d").retention == "30d"
    assert BotConfig(id="shop").retention is None
    for bad in ("10m", "soon", "0d"):
        with pytest.raises(ValidationError, match=r"retention|duration"):
            BotConfig(id="shop", retention=bad)


async def test_the_server_purges_in_the_background(tmp_path: Path) -> None:
    shop = load_bot(SHOP_DIR)
    kept = shop.model_copy(update={"config": shop.config.model_copy(update={"retention": "1h"})})
    url = f"sqlite:///{tmp_path / 'purge.db'}"
    store = Store.from_url(url)
    await store.upgrade()
    await seed(store)  # every conversation is days old, past an hour's retention
    app = create_app(
        {"shop": kept}, store=store, settings=Settings(database_url=url, redis_url=None, purge_interval=0.2)
    )
    async with app.router.lifespan_context(app):
        deadline = time.monotonic() + 10  # the first pass runs at start; a busy machine gets plenty more
        for _ in range(200):
            if await remaining(store) == ["cnv_other"] or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.05)
        assert await remaining(store) == ["cnv_other"]  # the other bot is not served here
        await store.conversations.commit_turn(
            turn("cnv_new", now=datetime.now(UTC))
        )  # a new conversation is kept
        await asyncio.sleep(0.5)
        assert "cnv_new" in await remaining(store)


# ------------------------------------------------------------------------------------------------ the command


@pytest.fixture
def database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Store]:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", url)
    get_settings.cache_clear()
    store = Store.from_url(url)

    async def prepare() -> None:
        await store.upgrade()
        await seed(store)
        await store.bots.upsert_bot("shop", "Shop", "v1", {"id": "shop", "retention": "30d"}, NOW)
        await store.bots.upsert_bot("other", None, "v1", {"id": "other"}, NOW)
        await store.close()

    asyncio.run(prepare())
    yield store
    get_settings.cache_clear()


def purge(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["db", "purge", *args])
    return result.exit_code, result.stdout, result.stderr


def remaining_now(store: Store) -> list[str]:
    async def read() -> list[str]:
        try:
            return await remaining(store)
        finally:
            await store.close()

    return asyncio.run(read())


def test_db_purge_erases_each_bots_conversations_past_its_retention(database: Store) -> None:
    code, out, _ = purge("--dry-run")
    assert code == 0, out
    assert "shop: would erase 3 conversations idle for over 30d" in out
    assert "other: no retention set" in out
    assert len(remaining_now(database)) == 5

    code, out, _ = purge()

    assert code == 0, out
    assert "shop: erased 3 conversations idle for over 30d" in out
    assert remaining_now(database) == ["cnv_other", "cnv_recent"]


def test_db_purge_older_than_applies_to_bots_without_a_retention(database: Store) -> None:
    code, out, _ = purge("--bot", "other", "--older-than", "20d")

    assert code == 0, out
    assert "other: erased 1 conversations idle for over 20d" in out
    assert "cnv_other" not in remaining_now(database)


def test_db_purge_refuses_an_unknown_bot_or_duration(database: Store) -> None:
    code, _, err = purge("--bot", "nobody")
    assert code == 1 and "no bot 'nobody'" in err and "shop" in err
    code, _, err = purge("--older-than", "soon")
    assert code == 1 and "--older-than" in err and "duration" in err
