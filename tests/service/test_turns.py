"""The turn service on a real SQLite store, with the example shop bot and its real (local) backend."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from rejoinder.service import (
    ConversationNotFound,
    ConversationService,
    CustomerMessage,
    NewSession,
    SessionRefused,
    TokenRefused,
)
from rejoinder.skills import load_bot
from rejoinder.skills.model import Bot
from rejoinder.store import Store
from rejoinder.tokens import TokenOutcome, hash_token
from tests.helpers.shop_backend import SHOP_DIR, running_backend
from tests.helpers.tables import create_session, end_sessions


@pytest.fixture(scope="module")
def shop() -> Bot:
    return load_bot(SHOP_DIR)


@pytest.fixture
def backend() -> Iterator[tuple[str, Any]]:
    with running_backend() as running:
        yield running


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'turns.db'}")
    await store.upgrade()
    yield store
    await store.close()


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
async def service(store: Store, shop: Bot, backend: tuple[str, Any]) -> AsyncIterator[ConversationService]:
    service = ConversationService(store, {shop.id: shop}, environ={"SHOP_BACKEND": backend[0]}, clock=Clock())
    yield service
    await service.aclose()


def texts(outcome: Any) -> list[str]:
    return [m.payload["text"] for m in outcome.messages]


async def test_login_and_resume_story(
    service: ConversationService, store: Store, backend: tuple[str, Any]
) -> None:
    _, shop_state = backend
    started = await service.start("shop", event="orders")
    assert any("need to log in first" in t for t in texts(started))
    assert started.pending == {"node": "wait_login", "input": "text"}
    [(conversation_ref, token)] = shop_state.tokens.items()
    assert conversation_ref == started.conversation_id
    assert token.startswith("rjt_")

    # The token is stored hashed only, and its secret is not kept in the conversation's variables.
    record = await store.credentials.find_token_by_hash(hash_token(token))
    assert record is not None and record.conversation_id == started.conversation_id
    conversation = await store.conversations.get(started.conversation_id)
    assert conversation is not None and token not in str(conversation.state)

    shop_state.logged_in[conversation_ref] = "Ann"  # the customer logs in on the shop's own page
    resumed = await service.resume("shop", token, ip="127.0.0.1", user_agent="pytest")
    assert resumed.conversation_id == started.conversation_id
    assert [m.seq for m in resumed.messages] == [m.seq for m in started.messages]
    assert resumed.pending == {"node": "wait_login", "input": "text"}

    answered = await service.send(resumed.conversation_id, text="RESUME", client_message_id="m1")
    assert answered.messages[0].sender == "customer" and answered.messages[0].payload["text"] == "RESUME"
    assert texts(answered)[1] == "Welcome back, Ann! You're logged in."
    assert "A-1001 (shipped)" in texts(answered)[2]
    seqs = [m.seq for m in answered.messages]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert seqs[0] == started.messages[-1].seq + 1


async def test_same_client_message_id_is_answered_from_the_first_time(service: ConversationService) -> None:
    started = await service.start("shop", event="welcome")
    first = await service.send(started.conversation_id, text="opening hours", client_message_id="c-1")
    again = await service.send(started.conversation_id, text="opening hours", client_message_id="c-1")
    assert again.replayed and not first.replayed
    assert [m.seq for m in again.messages] == [m.seq for m in first.messages]
    history = await service.history(started.conversation_id)
    assert sum(1 for m in history if m.sender == "customer") == 1


async def test_concurrent_turns_on_one_conversation_never_interleave(service: ConversationService) -> None:
    started = await service.start("shop", event="welcome")
    outcomes = await asyncio.gather(
        *(
            service.send(started.conversation_id, text=f"hello {i}", client_message_id=f"c{i}")
            for i in range(8)
        )
    )
    history = await service.history(started.conversation_id, limit=1000)
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    for outcome in outcomes:  # each turn's messages are contiguous: nothing of another turn in between
        seqs = [m.seq for m in outcome.messages]
        assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert sum(1 for m in history if m.sender == "customer") == 8


async def test_a_failed_commit_leaves_no_token_behind(
    service: ConversationService, store: Store, backend: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken_commit(turn: Any) -> Any:
        raise RuntimeError("disk full")

    monkeypatch.setattr(store.conversations, "commit_turn", broken_commit)
    with pytest.raises(RuntimeError):
        await service.start("shop", event="orders")
    [token] = backend[1].tokens.values()  # the backend got it, but the turn did not commit…
    assert (
        await store.credentials.find_token_by_hash(hash_token(token)) is None
    )  # …so the token never existed


async def test_backend_down_routes_to_on_error(store: Store, shop: Bot) -> None:
    service = ConversationService(store, {shop.id: shop}, environ={"SHOP_BACKEND": "http://127.0.0.1:9"})
    try:
        outcome = await service.start("shop", event="orders")
    finally:
        await service.aclose()
    assert "logging in is not possible right now" in texts(outcome)[-1]
    assert outcome.pending is None and outcome.errors


async def test_token_outcomes(service: ConversationService, store: Store) -> None:
    started = await service.start("shop", event="welcome")
    clock: Clock = service.clock  # type: ignore[assignment]

    with pytest.raises(TokenRefused) as malformed:
        await service.resume("shop", "not-a-token")
    assert malformed.value.outcome is TokenOutcome.MALFORMED

    with pytest.raises(TokenRefused) as unknown:
        await service.resume("shop", "rjt_" + "A" * 43)
    assert unknown.value.outcome is TokenOutcome.NOT_FOUND

    once, _ = await service.issue_token(started.conversation_id, ttl="1h", uses=1)
    await service.resume("shop", once)
    with pytest.raises(TokenRefused) as used_up:
        await service.resume("shop", once)
    assert used_up.value.outcome is TokenOutcome.USED_UP

    short, _ = await service.issue_token(started.conversation_id, ttl="15m")
    clock.now += timedelta(minutes=16)
    with pytest.raises(TokenRefused) as expired:
        await service.resume("shop", short)
    assert expired.value.outcome is TokenOutcome.EXPIRED

    revoked, meta = await service.issue_token(started.conversation_id)
    await store.credentials.revoke_token(meta.id, clock.now)
    with pytest.raises(TokenRefused) as was_revoked:
        await service.resume("shop", revoked)
    assert was_revoked.value.outcome is TokenOutcome.REVOKED

    audit, _ = await store.audit.list(conversation_id=started.conversation_id)
    assert {a.outcome for a in audit} >= {"ok", "token_used_up", "token_expired", "token_revoked"}
    assert all(once not in str(a) for a in audit)


async def test_another_bots_token_is_not_found(service: ConversationService, shop: Bot) -> None:
    started = await service.start("shop", event="welcome")
    token, _ = await service.issue_token(started.conversation_id)
    other = shop.model_copy(update={"config": shop.config.model_copy(update={"id": "other"})})
    service.add_bot(other)
    with pytest.raises(TokenRefused) as refused:
        await service.resume("other", token)
    assert refused.value.outcome is TokenOutcome.NOT_FOUND


async def test_unknown_conversation(service: ConversationService) -> None:
    with pytest.raises(ConversationNotFound):
        await service.send("cnv_missing", text="hi")


async def test_a_message_sent_again_on_a_session_makes_its_outside_call_once(
    service: ConversationService, store: Store, backend: tuple[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, shop_state = backend
    started = await service.start("shop", event="orders")
    [(conversation_ref, token)] = shop_state.tokens.items()
    shop_state.logged_in[conversation_ref] = "Ann"
    session = NewSession("sid_1", "hash-ses_1", timedelta(hours=1))
    resumed = await service.resume("shop", token, ip="127.0.0.1", user_agent="pytest", session=session)
    calls: list[Any] = []
    perform = service.http.perform

    async def counted(call: Any, policy: Any) -> Any:
        calls.append(call)
        return await perform(call, policy)

    monkeypatch.setattr(service.http, "perform", counted)
    message = CustomerMessage(text="RESUME", client_message_id="m1")

    first = await service.turn("hash-ses_1", resumed.conversation_id, message)
    again = await service.turn("hash-ses_1", resumed.conversation_id, message)

    assert len(calls) == 1
    assert "A-1001 (shipped)" in texts(first)[2]
    assert again.replayed and [m.seq for m in again.messages] == [m.seq for m in first.messages]
    history = await service.history(started.conversation_id, limit=1000)
    assert [m.payload["text"] for m in history if m.sender == "customer"] == ["RESUME"]


async def test_turns_sent_at_once_on_one_session_take_one_turn_each(
    service: ConversationService, store: Store
) -> None:
    started = await service.start("shop", event="welcome")
    now = service.clock()
    await create_session(
        store,
        session_id="sid_1",
        session_hash="hash-ses_1",
        bot_id="shop",
        conversation_id=started.conversation_id,
        token_id=None,
        now=now,
        expires_at=now + timedelta(hours=1),
    )

    await asyncio.gather(
        *(
            service.turn(
                "hash-ses_1",
                started.conversation_id,
                CustomerMessage(text=f"hello {i}", client_message_id=f"c{i}"),
            )
            for i in range(6)
        )
    )

    history = await service.history(started.conversation_id, limit=1000)
    assert [m.seq for m in history] == list(range(1, len(history) + 1))
    assert sorted(m.payload["text"] for m in history if m.sender == "customer") == [
        f"hello {i}" for i in range(6)
    ]


async def test_a_turn_makes_two_store_calls_a_read_and_a_write(
    service: ConversationService, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    started = await service.start("shop", event="welcome")
    now = service.clock()
    await create_session(
        store,
        session_id="sid_1",
        session_hash="hash-ses_1",
        bot_id="shop",
        conversation_id=started.conversation_id,
        token_id=None,
        now=now,
        expires_at=now + timedelta(hours=1),
    )
    calls: list[str] = []
    for name in ("read", "write"):
        original = getattr(store.database, name)

        def counted(work: Any, *args: Any, _original: Any = original, **kwargs: Any) -> Any:
            calls.append(work.__name__)
            return _original(work, *args, **kwargs)

        monkeypatch.setattr(store.database, name, counted)

    outcome = await service.turn(
        "hash-ses_1", started.conversation_id, CustomerMessage(text="hi", client_message_id="m1")
    )

    assert outcome.messages[0].payload == {"text": "hi"}
    assert calls == ["_session_for_turn", "_commit_turn"]


async def test_a_turn_on_a_session_refuses_an_ended_expired_or_foreign_session(
    service: ConversationService, store: Store
) -> None:
    started = await service.start("shop", event="welcome")
    other = await service.start("shop", event="welcome")
    now = service.clock()
    for number, (conversation_id, lifetime) in enumerate(
        [
            (started.conversation_id, timedelta(hours=1)),
            (started.conversation_id, timedelta(0)),
            (other.conversation_id, timedelta(hours=1)),
        ]
    ):
        await create_session(
            store,
            session_id=f"sid_{number}",
            session_hash=f"hash-ses_{number}",
            bot_id="shop",
            conversation_id=conversation_id,
            token_id=None,
            now=now,
            expires_at=now + lifetime,
        )
    await end_sessions(store, now, session_id="sid_0")
    message = CustomerMessage(text="hi", client_message_id="m1")

    refusals = []
    for session_hash in ("hash-ses_0", "hash-ses_1", "hash-ses_2", "hash-unknown"):
        with pytest.raises(SessionRefused) as refused:
            await service.turn(session_hash, started.conversation_id, message)
        refusals.append((refused.value.code, str(refused.value).split(".")[0]))

    assert refusals == [
        ("unauthorized", "This session has ended"),
        ("unauthorized", "This session has expired"),
        ("forbidden", "This session belongs to another conversation"),
        ("unauthorized", "This session is not known"),
    ]
    assert [m.sender for m in await service.history(started.conversation_id)] == ["bot"] * len(
        started.messages
    )


async def test_skill_errors_are_logged_by_kind_and_node_never_with_what_the_customer_typed(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "card"
    (root / "skills").mkdir(parents=True)
    (root / "rejoinder.yaml").write_text("id: card\n")
    (root / "skills" / "main.yaml").write_text(
        """\
id: main
triggers: {default: true}
start: ask
nodes:
  ask: {type: question, text: "Your card number?", save_to: card, next: parse}
  parse: {type: assign, set: {digits: "int(card)"}, next: ask}
"""
    )
    bot = load_bot(root)
    service = ConversationService(store, {bot.id: bot}, clock=Clock())
    try:
        started = await service.start(bot.id, text="hello")
        with caplog.at_level("WARNING", logger="rejoinder"):
            outcome = await service.send(
                started.conversation_id, text="4111 1111 1111 1111", client_message_id="m"
            )
    finally:
        await service.aclose()

    assert any("4111" in error for error in outcome.errors)  # the designer still sees the whole message
    logged = [record.getMessage() for record in caplog.records]
    assert any("skill error: expression at node 'parse'" in line for line in logged), logged
    assert not any("4111" in line for line in logged), logged
