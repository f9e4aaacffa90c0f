"""The audit trail: who did what to which conversation, and when."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.store.database import Database
from rejoinder.store.hourly import count_by_hour
from rejoinder.store.pagination import Keyset, Page, check_limit, decode_cursor, encode_cursor
from rejoinder.store.records import AUDIT_ACTOR_KEY, AuditQuery, AuditRecord, HourCount, NewAudit, as_utc
from rejoinder.store.tables import audit_events


class Audit:
    """Audit events, written alone or (by the other repositories) in the transaction of what they record."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def resumes_by_hour(self, bot_id: str, since: datetime) -> list[HourCount]:
        """Resume attempts on ``bot_id`` from ``since`` (``resume`` events), counted by hour and outcome (an
        indexed range)."""
        conditions = [
            audit_events.c.bot_id == bot_id,
            audit_events.c.kind == "resume",
            audit_events.c.at >= as_utc(since),
        ]
        return await self._database.read(count_by_hour, audit_events.c.at, conditions, audit_events.c.outcome)

    async def add(self, event: NewAudit) -> None:
        await self._database.write(_execute, audit_events.insert(), event.row())

    async def list(
        self,
        *,
        bot_id: str | None = None,
        conversation_id: str | None = None,
        limit: int = 100,
        cursor: str | None = None,
    ) -> tuple[list[AuditRecord], str | None]:
        """A page of audit events, newest first, and the cursor of the next page."""
        statement = sa.select(audit_events).order_by(audit_events.c.id.desc()).limit(check_limit(limit) + 1)
        if bot_id is not None:
            statement = statement.where(audit_events.c.bot_id == bot_id)
        if conversation_id is not None:
            statement = statement.where(audit_events.c.conversation_id == conversation_id)
        if cursor is not None:
            (last_id,) = decode_cursor(cursor, int)
            statement = statement.where(audit_events.c.id < last_id)
        rows = await self._database.read(_all_rows, statement)
        page = [AuditRecord(**row._mapping) for row in rows[:limit]]
        return page, encode_cursor(page[-1].id) if len(rows) > limit else None

    async def find(
        self, query: AuditQuery, *, limit: int = 100, cursor: str | None = None
    ) -> Page[AuditRecord]:
        """A page of the bot's audit events that ``query`` matches, newest first; ``cursor`` (from a page's
        ``next_cursor`` or ``previous_cursor``) names the page."""
        statement, backward = _KEYSET.select(
            sa.select(audit_events).where(*_audit_conditions(query)), cursor, limit
        )
        rows = await self._database.read(_all_rows, statement)
        records = [AuditRecord(**row._mapping) for row in rows]
        return _KEYSET.page(records, lambda e: (e.id,), cursor=cursor, backward=backward, limit=limit)


_KEYSET = Keyset((audit_events.c.id,), (int,))


def _audit_conditions(query: AuditQuery) -> list[sa.ColumnElement[bool]]:
    where = [audit_events.c.bot_id == query.bot_id]
    if query.conversation_id is not None:
        where.append(audit_events.c.conversation_id == query.conversation_id)
    if query.kind is not None:
        where.append(audit_events.c.kind == query.kind)
    if query.actor is not None:
        where.append(audit_events.c.detail[AUDIT_ACTOR_KEY].as_string() == query.actor)
    if query.since is not None:
        where.append(audit_events.c.at >= as_utc(query.since))
    if query.until is not None:
        where.append(audit_events.c.at < as_utc(query.until))
    return where


# ------------------------------------------------------------------------------------------------ on a connection


def _execute(conn: sa.Connection, statement: sa.Executable, params: dict[str, Any] | None = None) -> None:
    conn.execute(statement, params)


def _all_rows(conn: sa.Connection, statement: sa.Executable) -> list[Any]:
    return list(conn.execute(statement).all())
