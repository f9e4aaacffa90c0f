"""The store's tables read and written directly, for what the product does there only by rules a test cannot wait for.

A session ends when its lifetime is over, its token is revoked or the conversation is resumed elsewhere: a test
that needs an ended session right away ends it here.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from rejoinder.store import Store
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
    async with store.engine.begin() as connection:
        return (await connection.execute(statement)).rowcount
