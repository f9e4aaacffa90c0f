"""Bots: the definition each server last recorded, and every change of their skills with the bot versions it made.

A skill change (an upload or deletion through the admin API) is a row of ``skill_versions`` (numbered per skill: 1, 2, …; a deletion is a version too). Each bot
version a conversation may run on is kept whole in ``bot_versions`` (every skill as JSON), so a conversation
that began on an older version can be finished on it by any worker, after any restart.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.skills.model import Bot, Skill
from rejoinder.skills.stored import skills_json
from rejoinder.store.database import Database, advisory_lock, insert_on_conflict
from rejoinder.store.errors import StoreError
from rejoinder.store.records import BotRecord, as_utc
from rejoinder.store.tables import bot_versions, bots, skill_versions


class SkillsChanged(StoreError):
    """The bot's skills changed since they were read; read them again and redo the change."""


@dataclass(frozen=True)
class SkillVersionRecord:
    id: int
    bot_id: str
    skill_id: str
    version: int
    deleted: bool
    definition: dict[str, Any] | None
    source: str | None
    media_type: str | None
    bot_version: str
    created_at: datetime


@dataclass(frozen=True)
class SkillChange:
    """An upload (``skill`` and its ``source``) or a deletion (``skill`` None) that makes ``bot`` the newest."""

    bot: Bot
    skill_id: str
    skill: Skill | None
    source: str | None = None
    media_type: str | None = None


class Bots:
    """Each bot's recorded definition, the history of its skill changes, and the bot versions they made."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def upsert_bot(
        self, bot_id: str, name: str | None, version: str, config: dict[str, Any], now: datetime
    ) -> None:
        """Record a bot's current definition (created once, updated on every change)."""
        await self._database.write(_upsert_bot, bot_id, name, version, config, as_utc(now))

    async def list_bots(self) -> list[BotRecord]:
        """Every bot a server has recorded, by id."""
        rows = await self._database.read(_all_rows, sa.select(bots).order_by(bots.c.id))
        return [BotRecord(**row._mapping) for row in rows]

    async def heads(self) -> dict[str, int]:
        """The id of each bot's newest change: it moves whenever the bot's skills change."""
        statement = sa.select(skill_versions.c.bot_id, sa.func.max(skill_versions.c.id)).group_by(
            skill_versions.c.bot_id
        )
        rows = await self._database.read(_all_rows, statement)
        return {bot_id: int(head) for bot_id, head in rows}

    async def current(self, bot_id: str) -> tuple[int, dict[str, SkillVersionRecord]]:
        """The bot's head and the newest change of every skill ever changed (deletions included)."""
        newest = (
            sa.select(sa.func.max(skill_versions.c.id))
            .where(skill_versions.c.bot_id == bot_id)
            .group_by(skill_versions.c.skill_id)
        )
        statement = sa.select(skill_versions).where(skill_versions.c.id.in_(newest))
        rows = await self._database.read(_all_rows, statement)
        changes = {row.skill_id: SkillVersionRecord(**row._mapping) for row in rows}
        return max((change.id for change in changes.values()), default=0), changes

    async def history(self, bot_id: str, skill_id: str) -> list[SkillVersionRecord]:
        """Every version of one skill, oldest first."""
        statement = (
            sa.select(skill_versions)
            .where(skill_versions.c.bot_id == bot_id, skill_versions.c.skill_id == skill_id)
            .order_by(skill_versions.c.version)
        )
        rows = await self._database.read(_all_rows, statement)
        return [SkillVersionRecord(**row._mapping) for row in rows]

    async def record(self, change: SkillChange, *, expected_head: int, now: datetime) -> SkillVersionRecord:
        """Store a change made on top of the bot as of ``expected_head``, and the bot version it makes.

        Raises :class:`SkillsChanged` when another change was stored since (by this or another worker).
        """
        new_id, row = await self._database.write(_record, change, expected_head, as_utc(now))
        return SkillVersionRecord(id=int(new_id), **row)

    async def save_bot(self, bot: Bot, now: datetime) -> None:
        """Keep ``bot``'s version (a no-op when it is already kept)."""
        await self._database.write(_insert_snapshot, bot, as_utc(now))

    async def find_bot_skills(self, bot_id: str, version: str) -> dict[str, Any] | None:
        """The skills (as JSON, by id) of a kept version of the bot, or None."""
        statement = sa.select(bot_versions.c.skills).where(
            bot_versions.c.bot_id == bot_id, bot_versions.c.version == version
        )
        skills: dict[str, Any] | None = await self._database.read(_scalar, statement)
        return skills


# ------------------------------------------------------------------------------------------------ on a connection


def _all_rows(conn: sa.Connection, statement: sa.Executable) -> list[Any]:
    return list(conn.execute(statement).all())


def _scalar(conn: sa.Connection, statement: sa.Executable) -> Any:
    return conn.scalar(statement)


def _record(
    conn: sa.Connection, change: SkillChange, expected_head: int, now: datetime
) -> tuple[int, dict[str, Any]]:
    bot_id = change.bot.id
    advisory_lock(conn, _lock_key(bot_id))
    head = conn.scalar(
        sa.select(sa.func.coalesce(sa.func.max(skill_versions.c.id), 0)).where(
            skill_versions.c.bot_id == bot_id
        )
    )
    if head != expected_head:
        raise SkillsChanged(f"the skills of bot {bot_id!r} changed meanwhile")
    version = conn.scalar(
        sa.select(sa.func.coalesce(sa.func.max(skill_versions.c.version), 0)).where(
            skill_versions.c.bot_id == bot_id, skill_versions.c.skill_id == change.skill_id
        )
    )
    _insert_snapshot(conn, change.bot, now)
    row: dict[str, Any] = {
        "bot_id": bot_id,
        "skill_id": change.skill_id,
        "version": int(version or 0) + 1,
        "deleted": change.skill is None,
        "definition": change.skill.model_dump(mode="json", by_alias=True) if change.skill else None,
        "source": change.source,
        "media_type": change.media_type,
        "bot_version": change.bot.version,
        "created_at": now,
    }
    new_id = conn.scalar(skill_versions.insert().values(row).returning(skill_versions.c.id))
    return int(new_id), row


def _insert_snapshot(conn: sa.Connection, bot: Bot, now: datetime) -> None:
    statement = (
        insert_on_conflict(conn, bot_versions)
        .values(bot_id=bot.id, version=bot.version, skills=skills_json(bot.skills), created_at=now)
        .on_conflict_do_nothing(index_elements=["bot_id", "version"])
    )
    conn.execute(statement)


def _lock_key(bot_id: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"rejoinder-skills:{bot_id}".encode()).digest()[:8], "big", signed=True
    )


def _upsert_bot(
    conn: sa.Connection, bot_id: str, name: str | None, version: str, config: dict[str, Any], now: datetime
) -> None:
    insert = insert_on_conflict(conn, bots).values(
        id=bot_id, name=name, version=version, config=config, created_at=now, updated_at=now
    )
    conn.execute(
        insert.on_conflict_do_update(
            index_elements=["id"],
            set_={"name": name, "version": version, "config": config, "updated_at": now},
        )
    )
