"""Conversation tokens in the store: lookup by hash, counted uses under races, expiry, revocation."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta

from rejoinder.store import SessionRecord, Store
from rejoinder.store.records import NewAudit
from rejoinder.tokens import TokenOutcome, hash_token, judge
from tests.helpers.tables import create_session
from tests.store.factories import BOT, NOW, new_token, start, turn


async def test_a_token_issued_in_a_turn_is_found_by_the_hash_of_its_secret(store: Store) -> None:
    secret, token = new_token(max_uses=2)
    await start(store, "cnv_a", tokens=[token])

    found = await store.credentials.find_token_by_hash(hash_token(secret))

    assert found is not None
    assert (found.id, found.bot_id, found.conversation_id) == (token.id, BOT, "cnv_a")
    assert (found.created_at, found.expires_at) == (NOW, token.expires_at)
    assert (found.max_uses, found.uses, found.revoked_at, found.last_used_at) == (2, 0, None, None)
    assert judge(found, bot_id=BOT, now=NOW) is TokenOutcome.OK
    assert await store.credentials.find_token_by_hash(hash_token(secret + "x")) is None


async def test_insert_token_returns_what_is_stored(store: Store) -> None:
    await start(store, "cnv_a")
    _, token = new_token(ttl=timedelta(days=2))

    inserted = await store.credentials.insert_token(BOT, "cnv_a", token, NOW)

    assert inserted == await store.credentials.find_token_by_hash(token.token_hash)
    assert await store.credentials.list_tokens("cnv_a") == [inserted]


async def test_consuming_counts_uses_until_the_limit(store: Store) -> None:
    _, token = new_token(max_uses=2)
    await start(store, "cnv_a", tokens=[token])
    used_at = NOW + timedelta(minutes=1)

    assert await store.credentials.spend_token(token.id, used_at)
    assert await store.credentials.spend_token(token.id, used_at)
    assert not await store.credentials.spend_token(token.id, used_at)

    found = await store.credentials.find_token_by_hash(token.token_hash)
    assert found is not None and (found.uses, found.last_used_at) == (2, used_at)
    assert judge(found, bot_id=BOT, now=used_at) is TokenOutcome.USED_UP


async def test_concurrent_consumes_of_a_one_use_token_let_exactly_one_through(store: Store) -> None:
    _, token = new_token(max_uses=1)
    await start(store, "cnv_a", tokens=[token])

    results = await asyncio.gather(*(store.credentials.spend_token(token.id, NOW) for _ in range(8)))

    assert sorted(results) == [False] * 7 + [True]
    found = await store.credentials.find_token_by_hash(token.token_hash)
    assert found is not None and found.uses == 1


async def test_concurrent_consumes_never_exceed_the_limit(store: Store) -> None:
    limited_secret, limited = new_token(max_uses=3)
    _, unlimited = new_token(max_uses=None)
    await start(store, "cnv_a", tokens=[limited, unlimited])

    limited_results = await asyncio.gather(
        *(store.credentials.spend_token(limited.id, NOW) for _ in range(8))
    )
    unlimited_results = await asyncio.gather(
        *(store.credentials.spend_token(unlimited.id, NOW) for _ in range(5))
    )

    assert limited_results.count(True) == 3
    assert all(unlimited_results)
    found = await store.credentials.find_token_by_hash(hash_token(limited_secret))
    assert found is not None and found.uses == 3


async def test_an_expired_token_is_not_consumed(store: Store) -> None:
    _, token = new_token(ttl=timedelta(minutes=10))
    await start(store, "cnv_a", tokens=[token])

    assert not await store.credentials.spend_token(token.id, NOW + timedelta(minutes=10))
    assert await store.credentials.spend_token(token.id, NOW + timedelta(minutes=9, seconds=59))
    found = await store.credentials.find_token_by_hash(token.token_hash)
    assert found is not None and found.uses == 1
    assert judge(found, bot_id=BOT, now=NOW + timedelta(minutes=11)) is TokenOutcome.EXPIRED


async def test_revoking_a_token_blocks_it_and_ends_its_sessions_only(store: Store) -> None:
    _, token = new_token()
    _, other = new_token()
    await start(store, "cnv_a", tokens=[token, other])
    for session_id, token_id in (("ses_1", token.id), ("ses_2", other.id), ("ses_3", None)):
        await create_session(
            store,
            session_id=session_id,
            session_hash=f"hash-{session_id}",
            bot_id=BOT,
            conversation_id="cnv_a",
            token_id=token_id,
            now=NOW,
            expires_at=NOW + timedelta(hours=12),
        )
    revoked_at = NOW + timedelta(minutes=3)

    revoked = await store.credentials.revoke_token(token.id, revoked_at)

    assert revoked is not None and revoked.id == token.id and revoked.revoked_at == revoked_at
    assert judge(revoked, bot_id=BOT, now=revoked_at) is TokenOutcome.REVOKED
    assert not await store.credentials.spend_token(token.id, revoked_at)
    sessions = {s: await store.credentials.find_session(f"hash-{s}") for s in ("ses_1", "ses_2", "ses_3")}
    assert {s: r.revoked_at if r else "missing" for s, r in sessions.items()} == {
        "ses_1": revoked_at,
        "ses_2": None,
        "ses_3": None,
    }
    again = await store.credentials.revoke_token(token.id, revoked_at + timedelta(hours=1))
    assert again is not None and again.revoked_at == revoked_at  # the first revocation stands
    assert await store.credentials.revoke_token("tok_unknown", revoked_at) is None


async def test_list_tokens_shows_a_conversations_tokens_oldest_first(store: Store) -> None:
    _, first = new_token()
    _, second = new_token(max_uses=5)
    _, elsewhere = new_token()
    version = await start(store, "cnv_a", tokens=[first])
    await store.conversations.commit_turn(
        turn("cnv_a", version=version, tokens=[second], now=NOW + timedelta(seconds=1))
    )
    await start(store, "cnv_b", tokens=[elsewhere])

    listed = await store.credentials.list_tokens("cnv_a")

    assert [t.id for t in listed] == [first.id, second.id]
    assert [t.max_uses for t in listed] == [None, 5]
    assert await store.credentials.list_tokens("cnv_none") == []


async def test_a_token_and_its_conversation_are_read_together(store: Store) -> None:
    secret, token = new_token(max_uses=2)
    await start(store, "cnv_a", tokens=[token], user={"name": "Ada"})

    await store.conversations.commit_turn(turn("cnv_a", version=1, customer="more", replies=["one", "two"]))

    found, conversation, history = await store.conversations.token_with_conversation(
        hash_token(secret), history=3
    )

    assert found == await store.credentials.find_token_by_hash(token.token_hash)
    assert conversation == await store.conversations.get("cnv_a")
    assert conversation is not None and conversation.user == {"name": "Ada"}
    assert [message.seq for message in history] == [3, 4, 5]
    assert history == await store.conversations.messages_after("cnv_a", after=2)
    assert (await store.conversations.token_with_conversation(hash_token(secret)))[1:] == (conversation, [])
    assert await store.conversations.token_with_conversation(hash_token(secret + "x"), history=3) == (
        None,
        None,
        [],
    )


def _resume_audit(token_id: str, at: datetime = NOW) -> NewAudit:
    return NewAudit(
        kind="resume",
        bot_id=BOT,
        outcome="ok",
        at=at,
        conversation_id="cnv_a",
        token_id=token_id,
        ip="203.0.113.9",
        user_agent="pytest",
    )


def _session(session_id: str, token_id: str, at: datetime = NOW) -> SessionRecord:
    return SessionRecord(
        id=session_id,
        session_hash=f"hash-{session_id}",
        bot_id=BOT,
        conversation_id="cnv_a",
        token_id=token_id,
        created_at=at,
        expires_at=at + timedelta(hours=12),
        revoked_at=None,
    )


async def test_spending_a_token_counts_the_use_writes_the_audit_and_opens_the_session(store: Store) -> None:
    _, token = new_token(max_uses=1)
    await start(store, "cnv_a", tokens=[token])
    used_at = NOW + timedelta(minutes=1)

    spent = await store.credentials.spend_token(
        token.id,
        used_at,
        audit=_resume_audit(token.id, used_at),
        session=_session("sid_1", token.id, used_at),
    )

    assert spent
    found = await store.credentials.find_token_by_hash(token.token_hash)
    assert found is not None and (found.uses, found.last_used_at) == (1, used_at)
    (event,), _ = await store.audit.list(conversation_id="cnv_a")
    assert (event.kind, event.outcome, event.at, event.token_id) == ("resume", "ok", used_at, token.id)
    assert (event.ip, event.user_agent) == ("203.0.113.9", "pytest")
    assert await store.credentials.find_session("hash-sid_1") == _session("sid_1", token.id, used_at)


async def test_a_token_no_longer_valid_is_not_spent_and_nothing_is_written(store: Store) -> None:
    _, used = new_token(max_uses=1)
    _, expiring = new_token(ttl=timedelta(minutes=10))
    await start(store, "cnv_a", tokens=[used, expiring])
    assert await store.credentials.spend_token(used.id, NOW, audit=_resume_audit(used.id))
    late = NOW + timedelta(minutes=10)

    assert not await store.credentials.spend_token(
        used.id, NOW, audit=_resume_audit(used.id), session=_session("s1", used.id)
    )
    assert not await store.credentials.spend_token(
        expiring.id, late, audit=_resume_audit(expiring.id, late), session=_session("s2", expiring.id, late)
    )

    events, _ = await store.audit.list(conversation_id="cnv_a")
    assert [event.token_id for event in events] == [used.id]  # only the first, successful spend
    assert await store.credentials.find_session("hash-s1") is None
    assert await store.credentials.find_session("hash-s2") is None
    found = await store.credentials.find_token_by_hash(expiring.token_hash)
    assert found is not None and found.uses == 0


async def test_concurrent_spends_of_a_one_use_token_open_exactly_one_session(store: Store) -> None:
    _, token = new_token(max_uses=1)
    await start(store, "cnv_a", tokens=[token])

    results = await asyncio.gather(
        *(
            store.credentials.spend_token(
                token.id, NOW, audit=_resume_audit(token.id), session=_session(f"s{i}", token.id)
            )
            for i in range(8)
        )
    )

    assert sorted(results) == [False] * 7 + [True]
    opened = [await store.credentials.find_session(f"hash-s{i}") for i in range(8)]
    assert [f"s{i}" for i, session in enumerate(opened) if session] == [f"s{results.index(True)}"]
    events, _ = await store.audit.list(conversation_id="cnv_a")
    assert len(events) == 1


async def test_a_session_is_found_with_its_conversation_in_one_read(store: Store) -> None:
    await start(store, "cnv_a", state={"variables": {"name": "Zoë"}}, user={"id": "u-1", "verified": True})
    await start(store, "cnv_b")
    created = await create_session(
        store,
        session_id="ses_1",
        session_hash="hash-ses_1",
        bot_id=BOT,
        conversation_id="cnv_a",
        token_id=None,
        now=NOW,
        expires_at=NOW + timedelta(hours=1),
    )

    session, conversation, duplicate = await store.credentials.session_for_turn("hash-ses_1", None)

    assert session == created == await store.credentials.find_session("hash-ses_1")
    assert conversation is not None and conversation == await store.conversations.get("cnv_a")
    assert duplicate is False
    assert await store.credentials.session_for_turn("hash-unknown", None) == (None, None, False)
