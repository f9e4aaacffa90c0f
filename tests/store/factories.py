"""Small builders for store tests: turns, tokens, a fixed clock."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from rejoinder.store import NewMessage, NewToken, Store, TurnWrite
from rejoinder.tokens import hash_token

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
BOT = "shop"


def turn(
    conversation_id: str,
    *,
    version: int = 0,
    customer: str | None = "hello",
    client_message_id: str | None = None,
    replies: Sequence[str] = ("hi there",),
    tokens: Sequence[NewToken] = (),
    pending: dict[str, Any] | None = None,
    state: dict[str, Any] | None = None,
    status: str = "active",
    now: datetime = NOW,
    user: dict[str, Any] | None = None,
    bot_id: str = BOT,
) -> TurnWrite:
    """A turn: an optional customer message, then the bot's replies. ``version=0`` creates the conversation."""
    messages = []
    if customer is not None:
        messages.append(NewMessage("customer", "text", {"text": customer}, client_message_id))
    messages += [NewMessage("bot", "text", {"text": text}) for text in replies]
    return TurnWrite(
        conversation_id=conversation_id,
        bot_id=bot_id,
        create=version == 0,
        expected_version=version,
        state=state if state is not None else {"variables": {}},
        status=status,
        skill_id="greet",
        node_id="ask",
        messages=messages,
        tokens=list(tokens),
        pending=pending,
        now=now,
        user=user,
    )


def new_token(*, ttl: timedelta = timedelta(hours=1), max_uses: int | None = None) -> tuple[str, NewToken]:
    """A token's secret and what the store keeps of it."""
    secret = "rjt_" + secrets.token_urlsafe(32)
    return secret, NewToken(
        id="tok_" + secrets.token_hex(6),
        token_hash=hash_token(secret),
        expires_at=NOW + ttl,
        max_uses=max_uses,
    )


async def start(store: Store, conversation_id: str, **kwargs: Any) -> int:
    """Create a conversation with one turn; returns its version."""
    return (await store.conversations.commit_turn(turn(conversation_id, **kwargs))).version
