"""The sessions table written directly, for sessions a test needs as it stands, not as the product makes them.

The product opens a session only with a start, a resume or a refresh, and ends one when its lifetime is over, its
token is revoked or the conversation is resumed elsewhere: a test that needs one more session, or an ended one right
away, opens or ends it here.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import datetime

import sqlalchemy as sa

from rejoinder.server.auth import new_session
from rejoinder.skills import Bot
from rejoinder.store import SessionRecord, Store
from rejoinder.store.records import as_utc
from rejoinder.store.tables import sessions


async def end_sessions(
    store: Store, now: datetime, *, session_id: str | None = None, conversation_id: str | None = None
) -> int:
    """End the open sessions with this id or of this conversation at ``now``; how many were ended."""
    condition = (
        sessions.c.id == session_id
        if session_id is not None
        else sessions.c.conversation_id == conversation_id
    )
    statement = sa.update(sessions).where(condition, sessions.c.revoked_at.is_(None)).values(revoked_at=now)
    return await store.database.write(_rowcount, statement)


async def create_session(
    store: Store,
    *,
    session_id: str,
    session_hash: str,
    bot_id: str,
    conversation_id: str,
    token_id: str | None,
    now: datetime,
    expires_at: datetime,
) -> SessionRecord:
    """A session of one conversation opened at ``now``, as the product opens one on a start or a resume."""
    record = SessionRecord(
        id=session_id,
        session_hash=session_hash,
        bot_id=bot_id,
        conversation_id=conversation_id,
        token_id=token_id,
        created_at=as_utc(now),
        expires_at=as_utc(expires_at),
        revoked_at=None,
    )
    await store.database.write(_rowcount, sessions.insert().values(asdict(record)))
    return record


async def open_session(
    store: Store, bot: Bot, conversation_id: str, now: datetime
) -> tuple[str, SessionRecord]:
    """A further session of a conversation, valid for the bot's ``sessions.ttl``: its secret and its record."""
    secret, session = new_session(bot)
    record = session.record(bot.id, conversation_id, None, now)
    return secret, await create_session(
        store,
        session_id=record.id,
        session_hash=record.session_hash,
        bot_id=record.bot_id,
        conversation_id=conversation_id,
        token_id=None,
        now=now,
        expires_at=record.expires_at,
    )


def _rowcount(connection: sa.Connection, statement: sa.Executable) -> int:
    return int(connection.execute(statement).rowcount)  # type: ignore[attr-defined]
