"""Committing turns: atomicity, ordering, optimistic versioning, idempotency lookups, reading history."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from rejoinder.store import (
    DuplicateClientMessage,
    MessageRecord,
    NewMessage,
    Store,
    TurnWrite,
    VersionConflict,
)
from rejoinder.store.tables import messages
from rejoinder.tokens import hash_token
from tests.store.factories import NOW, new_token, start, turn


async def test_first_turn_creates_the_conversation_with_numbered_messages(store: Store) -> None:
    committed = await store.conversations.commit_turn(
        turn("cnv_a", customer="hi", replies=["Hello!", "What's your name?"], user={"id": "u1"})
    )

    assert committed.version == 1
    assert [(m.seq, m.turn_seq, m.sender) for m in committed.messages] == [
        (1, 1, "customer"),
        (2, 1, "bot"),
        (3, 1, "bot"),
    ]
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None
    assert (conversation.version, conversation.last_seq, conversation.status) == (1, 3, "active")
    assert conversation.user == {"id": "u1"}
    assert conversation.state == {"variables": {}}
    assert conversation.created_at == NOW and conversation.created_at.tzinfo is not None
    assert await store.conversations.messages_after("cnv_a") == committed.messages


async def test_later_turns_continue_the_sequence_and_update_the_conversation(store: Store) -> None:
    version = await start(store, "cnv_a", replies=["one", "two"])
    later = NOW + timedelta(minutes=5)
    committed = await store.conversations.commit_turn(
        turn(
            "cnv_a",
            version=version,
            customer="again",
            replies=["three"],
            state={"variables": {"name": "Ada"}},
            status="closed",
            now=later,
        )
    )

    assert committed.version == 2
    assert [(m.seq, m.turn_seq) for m in committed.messages] == [(4, 4), (5, 4)]
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None
    assert (conversation.version, conversation.last_seq, conversation.status) == (2, 5, "closed")
    assert conversation.state == {"variables": {"name": "Ada"}}
    assert (conversation.created_at, conversation.updated_at) == (NOW, later)
    assert conversation.user == {}  # a turn without user keeps the stored one
    assert [m.seq for m in await store.conversations.messages_after("cnv_a")] == [1, 2, 3, 4, 5]


async def test_a_stale_version_is_a_conflict_and_changes_nothing(store: Store) -> None:
    version = await start(store, "cnv_a")
    await store.conversations.commit_turn(turn("cnv_a", version=version, customer="first"))

    with pytest.raises(VersionConflict, match="cnv_a"):
        await store.conversations.commit_turn(turn("cnv_a", version=version, customer="stale"))

    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None and conversation.version == 2
    texts = [m.payload["text"] for m in await store.conversations.messages_after("cnv_a")]
    assert "stale" not in texts


async def test_creating_an_existing_conversation_is_a_conflict(store: Store) -> None:
    await start(store, "cnv_a", customer="original")

    with pytest.raises(VersionConflict, match="already exists"):
        await store.conversations.commit_turn(turn("cnv_a", customer="impostor"))

    assert (await store.conversations.messages_after("cnv_a"))[0].payload["text"] == "original"


async def test_updating_a_missing_conversation_is_a_conflict(store: Store) -> None:
    with pytest.raises(VersionConflict):
        await store.conversations.commit_turn(turn("cnv_missing", version=3))
    assert await store.conversations.get("cnv_missing") is None


async def test_a_duplicate_client_message_id_rolls_back_the_whole_turn(store: Store) -> None:
    version = await start(store, "cnv_a", client_message_id="m-1")
    _, token = new_token()

    with pytest.raises(DuplicateClientMessage, match="m-1"):
        await store.conversations.commit_turn(
            turn("cnv_a", version=version, client_message_id="m-1", replies=["x", "y"], tokens=[token])
        )

    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None and (conversation.version, conversation.last_seq) == (1, 2)
    assert len(await store.conversations.messages_after("cnv_a")) == 2
    assert await store.credentials.find_token_by_hash(token.token_hash) is None
    assert await store.credentials.list_tokens("cnv_a") == []


async def test_a_failure_in_the_last_statement_leaves_nothing_behind(store: Store) -> None:
    version = await start(store, "cnv_a")
    _, token = new_token()
    await store.conversations.commit_turn(turn("cnv_a", version=version, tokens=[token]))
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None

    # The conversation row and the messages are written before the tokens; a token id that already exists
    # makes the last insert fail, and the turn must vanish as a whole.
    with pytest.raises(sa.exc.IntegrityError):
        await store.conversations.commit_turn(
            turn("cnv_a", version=conversation.version, customer="lost", tokens=[token])
        )

    after = await store.conversations.get("cnv_a")
    assert after == conversation
    assert "lost" not in [m.payload["text"] for m in await store.conversations.messages_after("cnv_a")]


async def test_concurrent_turns_on_one_conversation_one_wins_nothing_interleaves(store: Store) -> None:
    version = await start(store, "cnv_a", replies=[])
    contenders = [
        turn("cnv_a", version=version, customer=f"tab {n}", replies=[f"reply {n}.{i}" for i in range(3)])
        for n in range(6)
    ]

    results = await asyncio.gather(
        *(store.conversations.commit_turn(t) for t in contenders), return_exceptions=True
    )

    winners = [r for r in results if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflict) for r in results if r is not winners[0])
    stored = await store.conversations.messages_after("cnv_a")
    assert [m.seq for m in stored] == [1, 2, 3, 4, 5]
    assert stored[1:] == winners[0].messages


async def test_concurrent_creations_of_one_conversation_one_wins(store: Store) -> None:
    contenders = [turn("cnv_a", customer=f"first {n}", state={"n": n}) for n in range(4)]

    results = await asyncio.gather(
        *(store.conversations.commit_turn(t) for t in contenders), return_exceptions=True
    )

    winners = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
    assert len(winners) == 1
    assert all(isinstance(r, VersionConflict) for r in results if isinstance(r, BaseException))
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None and conversation.state == {"n": winners[0]}
    assert [m.payload["text"] for m in await store.conversations.messages_after("cnv_a")] == [
        f"first {winners[0]}",
        "hi there",
    ]


async def test_retrying_losers_all_land_in_order_without_interleaving(store: Store) -> None:
    await start(store, "cnv_a", replies=[])

    async def send(n: int) -> None:
        while True:
            conversation = await store.conversations.get("cnv_a")
            assert conversation is not None
            try:
                await store.conversations.commit_turn(
                    turn(
                        "cnv_a", version=conversation.version, customer=f"c{n}", replies=[f"r{n}a", f"r{n}b"]
                    )
                )
                return
            except VersionConflict:
                await asyncio.sleep(0)

    await asyncio.gather(*(send(n) for n in range(5)))

    stored = await store.conversations.messages_after("cnv_a")
    assert [m.seq for m in stored] == list(range(1, 17))
    for start_index in range(1, 16, 3):  # after the opening message, each turn is 3 contiguous messages
        group = stored[start_index : start_index + 3]
        n = group[0].payload["text"][1:]
        assert [m.payload["text"] for m in group] == [f"c{n}", f"r{n}a", f"r{n}b"]
        assert {m.turn_seq for m in group} == {group[0].seq}
    conversation = await store.conversations.get("cnv_a")
    assert conversation is not None and (conversation.version, conversation.last_seq) == (6, 16)


async def test_idempotency_lookup_returns_the_whole_turn_and_its_pending(store: Store) -> None:
    version = await start(
        store, "cnv_a", client_message_id="m-1", pending={"node": "ask_name", "input": "text"}
    )
    choices = {"node": "menu", "input": "choice", "choices": [{"label": "Yes", "value": "y"}]}
    second = await store.conversations.commit_turn(
        turn("cnv_a", version=version, client_message_id="m-2", replies=["a", "b", "c"], pending=choices)
    )
    await store.conversations.commit_turn(
        turn("cnv_a", version=second.version, client_message_id="m-3", pending=None)
    )
    await start(store, "cnv_b", client_message_id="m-2")  # the same id in another conversation is separate

    found = await store.conversations.turn_by_client_message_id("cnv_a", "m-2")

    assert found is not None
    turn_messages, pending = found
    assert turn_messages == second.messages
    assert [m.payload["text"] for m in turn_messages] == ["hello", "a", "b", "c"]
    assert pending == choices
    last = await store.conversations.turn_by_client_message_id("cnv_a", "m-3")
    assert last is not None and last[1] is None
    assert await store.conversations.turn_by_client_message_id("cnv_a", "never-sent") is None


async def test_history_reads_page_forward_and_take_the_newest(store: Store) -> None:
    secret, token = new_token()
    version = await start(store, "cnv_a", customer="m1", replies=["m2", "m3"], tokens=[token])
    await store.conversations.commit_turn(turn("cnv_a", version=version, customer="m4", replies=["m5", "m6"]))
    other_secret, other_token = new_token()
    await start(store, "cnv_other", customer=None, replies=(), tokens=[other_token])

    async def newest(token_secret: str, count: int) -> list[MessageRecord]:
        return (await store.conversations.token_with_conversation(hash_token(token_secret), history=count))[2]

    assert [m.seq for m in await store.conversations.messages_after("cnv_a", after=2, limit=3)] == [3, 4, 5]
    assert await store.conversations.messages_after("cnv_a", after=6) == []
    assert [m.payload["text"] for m in await newest(secret, 4)] == ["m3", "m4", "m5", "m6"]
    assert [m.seq for m in await newest(secret, 50)] == [1, 2, 3, 4, 5, 6]
    assert await newest(other_secret, 10) == []
    with pytest.raises(ValueError, match="limit"):
        await store.conversations.messages_after("cnv_a", limit=0)


async def test_messages_render_for_the_api(store: Store) -> None:
    buttons = [{"label": "Track", "value": "track"}]
    committed = await store.conversations.commit_turn(
        TurnWrite(
            conversation_id="cnv_a",
            bot_id="shop",
            create=True,
            expected_version=0,
            state={},
            status="active",
            skill_id=None,
            node_id=None,
            messages=[
                NewMessage("bot", "buttons", {"type": "buttons", "text": "Pick one", "buttons": buttons})
            ],
            tokens=[],
            pending={"node": "menu", "input": "choice"},
            now=NOW,
        )
    )
    stored = (await store.conversations.messages_after("cnv_a"))[0]

    assert stored.to_api() == committed.messages[0].to_api()
    assert stored.to_api() == {
        "seq": 1,
        "sender": "bot",
        "type": "buttons",
        "text": "Pick one",
        "buttons": buttons,
        "created_at": "2026-03-01T12:00:00.000Z",
    }


async def test_turns_reject_naive_timestamps(store: Store) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        await store.conversations.commit_turn(turn("cnv_a", now=NOW.replace(tzinfo=None)))


@asynccontextmanager
async def recorded_sql(store: Store) -> AsyncIterator[list[str]]:
    """The statements a store call sends to the database, with literal values as ``?``."""
    statements: list[str] = []

    def record(statement: str) -> None:
        # The store's checkpoint thread runs PRAGMAs whenever the writer is idle: not part of a turn.
        if not statement.lstrip().upper().startswith("PRAGMA"):
            statements.append(re.sub(r"'[^']*'|\b\d+\b", "?", " ".join(statement.split())))

    threads = store.sqlite_threads
    if threads is not None:
        # SQLite: the writer thread sends some statements straight to the driver, which traces them all.
        def trace(callback: Callable[[str], None] | None) -> Callable[[sa.Connection], None]:
            return lambda connection: connection.connection.driver_connection.set_trace_callback(callback)

        await threads.write(trace(record))
        try:
            yield statements
        finally:
            await threads.write(trace(None))
        return

    # PostgreSQL: the store sends the turn's statements straight to asyncpg, which logs every query it runs.
    def log(query: Any) -> None:
        record(query.query)

    def listen(dbapi_connection: Any, *_args: object) -> None:
        dbapi_connection.driver_connection.add_query_logger(log)

    def stop_listening(dbapi_connection: Any, *_args: object) -> None:
        dbapi_connection.driver_connection.remove_query_logger(log)

    sa.event.listen(sa.pool.Pool, "checkout", listen)
    sa.event.listen(sa.pool.Pool, "checkin", stop_listening)
    try:
        yield statements
        await asyncio.sleep(0.05)  # asyncpg calls its query loggers soon after, from the event loop
    finally:
        sa.event.remove(sa.pool.Pool, "checkout", listen)
        sa.event.remove(sa.pool.Pool, "checkin", stop_listening)


async def test_a_turn_in_a_long_conversation_runs_the_same_sql_as_in_a_short_one(store: Store) -> None:
    short_version = await start(store, "cnv_short")
    long_version = await start(store, "cnv_long")
    history = [
        {
            "conversation_id": "cnv_long",
            "seq": seq,
            "turn_seq": seq,
            "sender": "bot",
            "type": "text",
            "payload": {"text": f"old {seq}"},
            "created_at": NOW,
        }
        for seq in range(3, 2003)
    ]

    def fill(connection: sa.Connection) -> None:
        connection.execute(messages.insert(), history)
        connection.exec_driver_sql("UPDATE conversations SET last_seq = 2002 WHERE id = 'cnv_long'")

    await store.database.write(fill)

    async with recorded_sql(store) as short_sql:
        await store.conversations.commit_turn(turn("cnv_short", version=short_version, replies=["a", "b"]))
    async with recorded_sql(store) as long_sql:
        committed = await store.conversations.commit_turn(
            turn("cnv_long", version=long_version, replies=["a", "b"])
        )

    assert [m.seq for m in committed.messages] == [2003, 2004, 2005]
    assert long_sql == short_sql
    touching_messages = [s for s in long_sql if "messages" in s]
    # Messages are only inserted (alone, or in the one statement of the turn's write): the history is never read.
    assert touching_messages and all("INSERT INTO messages" in s for s in touching_messages)
    assert not any("FROM messages" in s for s in long_sql)


async def test_conversation_for_turn_tells_whether_a_client_message_id_was_answered(store: Store) -> None:
    await start(store, "cnv_a", client_message_id="m-1")
    await start(store, "cnv_b", client_message_id="m-2")

    conversation, answered = await store.conversations.for_turn("cnv_a", "m-1")
    assert conversation is not None and conversation.id == "cnv_a" and answered
    assert conversation == await store.conversations.get("cnv_a")
    assert (await store.conversations.for_turn("cnv_a", "m-2"))[1] is False  # another conversation's id
    assert (await store.conversations.for_turn("cnv_a", None))[1] is False
    assert await store.conversations.for_turn("cnv_missing", "m-1") == (None, False)
