"""What the admin API and the server read: conversation lists, erasure, the audit trail, bots, keys, sessions."""

from __future__ import annotations

from datetime import timedelta

import pytest

from rejoinder.store import ConversationRecord, InvalidCursor, NewAudit, Store
from tests.helpers.tables import create_session, end_sessions
from tests.store.factories import BOT, NOW, new_token, start, turn


async def all_pages(store: Store, limit: int, **filters: object) -> list[list[str]]:
    pages: list[list[str]] = []
    cursor = None
    while True:
        page, cursor = await store.conversations.list(bot_id=BOT, limit=limit, cursor=cursor, **filters)  # type: ignore[arg-type]
        pages.append([c.id for c in page])
        if cursor is None:
            return pages


async def seed_conversations(store: Store) -> None:
    """Seven of this bot's conversations (several updated at the same instant), one closed, one of another bot."""
    minutes = {"cnv_1": 1, "cnv_2": 5, "cnv_3": 5, "cnv_4": 5, "cnv_5": 9, "cnv_6": 2, "cnv_7": 9}
    for conversation_id, minute in minutes.items():
        status = "closed" if conversation_id == "cnv_6" else "active"
        await start(store, conversation_id, now=NOW + timedelta(minutes=minute), status=status)
    await start(store, "cnv_other", bot_id="other-bot")


async def test_conversations_page_newest_first_with_stable_ties(store: Store) -> None:
    await seed_conversations(store)

    pages = await all_pages(store, limit=3)

    assert pages == [["cnv_5", "cnv_7", "cnv_2"], ["cnv_3", "cnv_4", "cnv_6"], ["cnv_1"]]


async def test_a_page_that_ends_exactly_has_no_next_cursor(store: Store) -> None:
    await seed_conversations(store)

    assert await all_pages(store, limit=7) == [
        ["cnv_5", "cnv_7", "cnv_2", "cnv_3", "cnv_4", "cnv_6", "cnv_1"]
    ]


async def test_paging_is_not_disturbed_by_conversations_that_move_to_the_top(store: Store) -> None:
    await seed_conversations(store)
    first, cursor = await store.conversations.list(bot_id=BOT, limit=3)
    conversation = await store.conversations.get("cnv_1")
    assert conversation is not None
    await store.conversations.commit_turn(
        turn("cnv_1", version=conversation.version, now=NOW + timedelta(hours=1))
    )
    await start(store, "cnv_new", now=NOW + timedelta(hours=2))

    rest, cursor = await store.conversations.list(bot_id=BOT, limit=10, cursor=cursor)

    assert [c.id for c in first] == ["cnv_5", "cnv_7", "cnv_2"]
    assert [c.id for c in rest] == ["cnv_3", "cnv_4", "cnv_6"]  # cnv_1 moved above the cursor
    assert cursor is None


async def test_conversations_filter_by_status_and_update_time(store: Store) -> None:
    await seed_conversations(store)

    closed, _ = await store.conversations.list(bot_id=BOT, status="closed")
    recent, _ = await store.conversations.list(bot_id=BOT, updated_after=NOW + timedelta(minutes=5))
    active_pages = await all_pages(store, limit=4, status="active")

    assert [c.id for c in closed] == ["cnv_6"]
    assert [c.id for c in recent] == ["cnv_5", "cnv_7"]
    assert active_pages == [["cnv_5", "cnv_7", "cnv_2", "cnv_3"], ["cnv_4", "cnv_1"]]
    assert all(isinstance(c, ConversationRecord) for c in closed)


@pytest.mark.parametrize("cursor", ["garbage!", "", "WzEsMiwzXQ", "WyJub3QgYSBkYXRlIiwiY252XzEiXQ"])
async def test_a_cursor_not_handed_out_is_refused(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidCursor, match="next_cursor"):
        await store.conversations.list(bot_id=BOT, cursor=cursor)


async def test_deleting_a_conversation_erases_its_messages_tokens_and_sessions(store: Store) -> None:
    _, token_a = new_token()
    _, token_b = new_token()
    await start(store, "cnv_a", tokens=[token_a], client_message_id="m-1")
    await start(store, "cnv_b", tokens=[token_b])
    for conversation_id, token_id in (("cnv_a", token_a.id), ("cnv_a", None), ("cnv_b", token_b.id)):
        await create_session(
            store,
            session_id=f"ses_{conversation_id}_{token_id}",
            session_hash=f"hash_{conversation_id}_{token_id}",
            bot_id=BOT,
            conversation_id=conversation_id,
            token_id=token_id,
            now=NOW,
            expires_at=NOW + timedelta(hours=1),
        )
    await store.audit.add(NewAudit(kind="resume", bot_id=BOT, outcome="ok", at=NOW, conversation_id="cnv_a"))

    assert await store.conversations.delete("cnv_a") is True

    assert await store.conversations.get("cnv_a") is None
    assert await store.conversations.messages_after("cnv_a") == []
    assert await store.conversations.turn_by_client_message_id("cnv_a", "m-1") is None
    assert await store.credentials.find_token_by_hash(token_a.token_hash) is None
    assert await store.credentials.list_tokens("cnv_a") == []
    assert await store.credentials.find_session(f"hash_cnv_a_{token_a.id}") is None
    assert await store.credentials.find_session("hash_cnv_a_None") is None
    # The other conversation is untouched, and the audit trail outlives the erasure.
    assert await store.conversations.get("cnv_b") is not None
    assert len(await store.conversations.messages_after("cnv_b")) == 2
    assert await store.credentials.find_session(f"hash_cnv_b_{token_b.id}") is not None
    events, _ = await store.audit.list(conversation_id="cnv_a")
    assert [e.kind for e in events] == ["resume"]
    assert await store.conversations.delete("cnv_a") is False


async def test_audit_events_page_newest_first_and_filter(store: Store) -> None:
    for n in range(5):
        await store.audit.add(
            NewAudit(
                kind="resume",
                bot_id=BOT,
                outcome="ok" if n % 2 == 0 else "token_expired",
                at=NOW + timedelta(seconds=n),
                conversation_id="cnv_a" if n < 3 else "cnv_b",
                token_id=f"tok_{n}",
                ip="203.0.113.7",
                user_agent="Mozilla/5.0",
                detail={"n": n},
            )
        )
    await store.audit.add(NewAudit(kind="resume", bot_id="other-bot", outcome="token_not_found", at=NOW))

    first, cursor = await store.audit.list(bot_id=BOT, limit=2)
    second, cursor2 = await store.audit.list(bot_id=BOT, limit=2, cursor=cursor)
    third, cursor3 = await store.audit.list(bot_id=BOT, limit=2, cursor=cursor2)
    for_a, _ = await store.audit.list(conversation_id="cnv_a")

    assert [e.token_id for e in first + second + third] == ["tok_4", "tok_3", "tok_2", "tok_1", "tok_0"]
    assert cursor3 is None
    newest = first[0]
    assert (newest.at, newest.outcome, newest.ip, newest.user_agent, newest.detail) == (
        NOW + timedelta(seconds=4),
        "ok",
        "203.0.113.7",
        "Mozilla/5.0",
        {"n": 4},
    )
    assert [e.token_id for e in for_a] == ["tok_2", "tok_1", "tok_0"]
    everything, _ = await store.audit.list()
    assert len(everything) == 6 and everything[0].detail is None
    with pytest.raises(InvalidCursor):
        await store.audit.list(cursor="WyJ4Il0")


async def test_upserting_a_bot_keeps_its_creation_time(store: Store) -> None:
    await store.bots.upsert_bot(
        "shop", "Demo shop", "v1", {"allowed_origins": ["http://127.0.0.1:8000"]}, NOW
    )
    later = NOW + timedelta(days=1)
    await store.bots.upsert_bot("shop", None, "v2", {"allowed_origins": []}, later)

    [bot] = await store.bots.list_bots()

    assert bot.id == "shop"
    assert (bot.name, bot.version, bot.config) == (None, "v2", {"allowed_origins": []})
    assert (bot.created_at, bot.updated_at) == (NOW, later)


async def test_api_keys_are_found_by_hash(store: Store) -> None:
    created = await store.credentials.create_api_key(BOT, "sdk", "hash-of-pk", "key_1", NOW)
    await store.credentials.create_api_key(BOT, "secret", "hash-of-sk", "key_2", NOW)

    assert await store.credentials.find_api_key("hash-of-pk") == created
    found = await store.credentials.find_api_key("hash-of-sk")
    assert found is not None and (found.id, found.kind, found.revoked_at) == ("key_2", "secret", None)
    assert await store.credentials.find_api_key("hash-of-nothing") is None


async def test_sessions_are_found_by_hash_with_their_end(store: Store) -> None:
    await start(store, "cnv_a")
    await start(store, "cnv_b")
    expires = NOW + timedelta(hours=12)
    for session_id, conversation_id in (("ses_1", "cnv_a"), ("ses_2", "cnv_a"), ("ses_3", "cnv_b")):
        await create_session(
            store,
            session_id=session_id,
            session_hash=f"h{session_id}",
            bot_id=BOT,
            conversation_id=conversation_id,
            token_id=None,
            now=NOW,
            expires_at=expires,
        )
    found = await store.credentials.find_session("hses_1")
    assert found is not None and (found.conversation_id, found.expires_at, found.revoked_at) == (
        "cnv_a",
        expires,
        None,
    )

    await end_sessions(store, NOW, session_id="ses_2")
    await end_sessions(store, NOW + timedelta(minutes=1), conversation_id="cnv_a")

    ended = await store.credentials.find_session("hses_1")
    assert ended is not None and ended.revoked_at == NOW + timedelta(minutes=1)
    first_ended = await store.credentials.find_session("hses_2")
    assert first_ended is not None and first_ended.revoked_at == NOW
    other = await store.credentials.find_session("hses_3")
    assert other is not None and other.revoked_at is None
    assert await store.credentials.find_session("hses_unknown") is None
