"""The statements every turn makes (:class:`Prepared`) give the same records on both databases: straight to the
driver on SQLite, through SQLAlchemy on PostgreSQL (each test runs on both)."""

from __future__ import annotations

import sqlite3
from datetime import timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from rejoinder.store import DuplicateClientMessage, SessionRecord, Store, VersionConflict
from rejoinder.store.connect import create_sqlite_sync_engine
from rejoinder.store.prepared import Prepared
from rejoinder.store.tables import sessions
from tests.helpers.tables import create_session
from tests.store.factories import NOW, start, turn


async def test_the_conversation_read_for_a_turn_matches_the_general_read(store: Store) -> None:
    await start(
        store,
        "cnv_a",
        client_message_id="m-1",
        state={"variables": {"name": "Zoë", "n": 1.5, "list": [1, None]}},
        user={"id": "u-1", "verified": True},
    )

    conversation, answered = await store.conversations.for_turn("cnv_a", "m-1")

    assert answered
    assert conversation == await store.conversations.get("cnv_a")
    assert conversation is not None and conversation.created_at.tzinfo is not None
    assert await store.conversations.for_turn("cnv_missing", "m-1") == (None, False)


async def test_a_session_found_by_hash_matches_what_was_stored(store: Store) -> None:
    await start(store, "cnv_a")
    created = await create_session(
        store,
        session_id="sid_1",
        session_hash="h" * 64,
        bot_id="shop",
        conversation_id="cnv_a",
        token_id=None,
        now=NOW,
        expires_at=NOW + timedelta(hours=1),
    )

    found = await store.credentials.find_session("h" * 64)

    assert isinstance(found, SessionRecord) and found == created
    assert await store.credentials.find_session("x" * 64) is None


def test_a_driver_error_on_a_hot_read_comes_out_as_sqlalchemy_would_raise_it(tmp_path: Path) -> None:
    engine = create_sqlite_sync_engine(sa.make_url(f"sqlite:///{tmp_path / 'empty.db'}"), busy_timeout=0.1)
    try:
        with engine.connect() as connection, pytest.raises(sa_exc.OperationalError) as raised:
            Prepared(sa.select(sessions).where(sessions.c.id == sa.bindparam("id"))).first(
                connection, {"id": "x"}
            )
    finally:
        engine.dispose()
    # SQLAlchemy's wrapping, which the store reads to tell "unavailable" (locked, full, unreachable) from bugs.
    assert isinstance(raised.value.orig, sqlite3.OperationalError)
    assert "no such table" in str(raised.value.orig)


async def test_a_turn_written_straight_to_the_driver_reads_back_as_written(store: Store) -> None:
    version = await start(store, "cnv_a", client_message_id="m-1")

    committed = await store.conversations.commit_turn(
        turn(
            "cnv_a",
            version=version,
            customer="Grüße 👋",
            client_message_id="m-2",
            replies=["a", "b"],
            pending={"node_id": "ask", "input": "choice"},
            state={"variables": {"name": "Zoë", "n": 1.5}},
            user={"id": "u-1", "verified": True},
        )
    )

    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None
    assert (conversation.version, conversation.last_seq) == (committed.version, committed.messages[-1].seq)
    assert conversation.user == {"id": "u-1", "verified": True}
    assert conversation.state["variables"] == {"name": "Zoë", "n": 1.5}
    stored = await store.conversations.messages_after("cnv_a", after=committed.messages[0].seq - 1)
    assert stored == committed.messages
    assert stored[0].payload == {"text": "Grüße 👋"} and stored[0].created_at == NOW
    assert await store.conversations.turn_by_client_message_id("cnv_a", "m-2") is not None


async def test_a_duplicate_written_straight_to_the_driver_is_refused_as_a_duplicate(
    store: Store,
) -> None:
    version = await start(store, "cnv_a", client_message_id="m-1")

    with pytest.raises(DuplicateClientMessage):
        await store.conversations.commit_turn(turn("cnv_a", version=version, client_message_id="m-1"))
    with pytest.raises(VersionConflict):
        await store.conversations.commit_turn(turn("cnv_a", version=version + 5, client_message_id="m-3"))
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None and conversation.version == version
