"""Erasing a conversation, revoking a token and refreshing a session: each is all done or not done at all."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from rejoinder.service import Actor, ConversationService, NewSession
from rejoinder.skills import load_bot
from rejoinder.store import SessionRecord, Store
from tests.helpers.shop_backend import SHOP_DIR

ADMIN = Actor(key_id="key_1", ip="127.0.0.1", user_agent="pytest")


class Failed(Exception):
    pass


class _FailingConnection:
    """A connection that fails the statement ``fails`` picks, after running the ones before it."""

    def __init__(self, conn: sa.Connection, fails: Callable[[Any], bool]) -> None:
        self._conn = conn
        self._fails = fails

    def execute(self, statement: Any, *args: Any, **kwargs: Any) -> Any:
        if self._fails(statement):
            raise Failed(str(statement))
        return self._conn.execute(statement, *args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


def fail_writes_at(store: Store, monkeypatch: pytest.MonkeyPatch, fails: Callable[[Any], bool]) -> None:
    write = store.database.write

    async def failing(work: Any, *args: Any, **kwargs: Any) -> Any:
        def failing_work(conn: sa.Connection, *inner: Any) -> Any:
            return work(_FailingConnection(conn, fails), *inner)

        return await write(failing_work, *args, **kwargs)

    monkeypatch.setattr(store.database, "write", failing)


def writes_to(table: str, kind: type[Any]) -> Callable[[Any], bool]:
    return lambda statement: isinstance(statement, kind) and statement.table.name == table


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'one.db'}")
    await store.upgrade()
    yield store
    await store.close()


@pytest.fixture
async def service(store: Store) -> AsyncIterator[ConversationService]:
    shop = load_bot(SHOP_DIR)
    service = ConversationService(store, {shop.id: shop}, environ={})
    yield service
    await service.aclose()


async def session_of(store: Store, session_hash: str) -> SessionRecord:
    found = await store.credentials.find_session(session_hash)
    assert found is not None
    return found


async def test_an_erase_that_fails_at_its_audit_event_leaves_the_conversation_whole(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await service.start("shop", event="welcome")
    _, token = await service.issue_token(started.conversation_id)
    fail_writes_at(store, monkeypatch, writes_to("audit_events", sa.Insert))

    with pytest.raises(Failed):
        await service.erase_conversation("shop", started.conversation_id, ADMIN)

    monkeypatch.undo()
    assert await store.conversations.get(started.conversation_id) is not None
    assert [t.id for t in await store.credentials.list_tokens(started.conversation_id)] == [token.id]
    await service.erase_conversation("shop", started.conversation_id, ADMIN)
    assert await store.conversations.get(started.conversation_id) is None
    audit, _ = await store.audit.list(bot_id="shop", limit=10)
    assert [event.kind for event in audit] == ["conversation_erased"]


async def test_a_revoke_that_fails_at_its_audit_event_leaves_the_token_and_its_sessions_valid(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await service.start("shop", event="welcome")
    secret, token = await service.issue_token(started.conversation_id)
    await service.resume("shop", secret, session=NewSession("sid_1", "hash-ses_1", timedelta(hours=1)))
    fail_writes_at(store, monkeypatch, writes_to("audit_events", sa.Insert))

    with pytest.raises(Failed):
        await service.revoke_token("shop", token.id, ADMIN)

    monkeypatch.undo()
    [kept] = await store.credentials.list_tokens(started.conversation_id)
    assert kept.revoked_at is None
    assert (await session_of(store, "hash-ses_1")).revoked_at is None
    revoked = await service.revoke_token("shop", token.id, ADMIN)
    assert revoked.revoked_at is not None
    assert (await session_of(store, "hash-ses_1")).revoked_at is not None


async def test_a_refresh_that_fails_ending_the_old_session_opens_no_new_one(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await service.start("shop", event="welcome")
    secret, _ = await service.issue_token(started.conversation_id)
    await service.resume("shop", secret, session=NewSession("sid_old", "hash-old", timedelta(hours=1)))
    old = await session_of(store, "hash-old")
    fail_writes_at(store, monkeypatch, writes_to("sessions", sa.Update))

    with pytest.raises(Failed):
        await service.refresh_session(old, NewSession("sid_new", "hash-new", timedelta(hours=1)))

    monkeypatch.undo()
    assert await store.credentials.find_session("hash-new") is None
    assert (await session_of(store, "hash-old")).revoked_at is None
    fresh = await service.refresh_session(old, NewSession("sid_new", "hash-new", timedelta(hours=1)))
    assert fresh.conversation_id == started.conversation_id and fresh.token_id == old.token_id
    assert (await session_of(store, "hash-old")).revoked_at is not None


async def test_a_start_commits_its_conversation_and_session_in_one_store_call(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    for name in ("read", "write"):
        original = getattr(store.database, name)

        def counted(work: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(work.__name__)
            return _original(work, *args, **kwargs)

        monkeypatch.setattr(store.database, name, counted)

    started = await service.start(
        "shop", event="welcome", session=NewSession("sid_1", "hash-ses_1", timedelta(hours=1))
    )

    assert calls == ["_commit_turn"]
    monkeypatch.undo()
    opened = await session_of(store, "hash-ses_1")
    assert started.session == opened
    assert (opened.id, opened.conversation_id, opened.token_id) == ("sid_1", started.conversation_id, None)
    assert opened.expires_at == opened.created_at + timedelta(hours=1)
    assert service.authorise(opened, started.conversation_id).id == "shop"


async def test_a_start_that_fails_opening_its_session_leaves_neither_conversation_nor_session(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_writes_at(store, monkeypatch, writes_to("sessions", sa.Insert))

    with pytest.raises(Failed):
        await service.start(
            "shop", event="welcome", session=NewSession("sid_1", "hash-ses_1", timedelta(hours=1))
        )

    monkeypatch.undo()
    assert await store.credentials.find_session("hash-ses_1") is None
    listed, _ = await store.conversations.list(bot_id="shop")
    assert listed == []
