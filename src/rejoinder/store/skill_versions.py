"""Skill versions: every upload or deletion of a skill through the admin API, and every bot version it made.

A change is a row of ``skill_versions`` (numbered per skill: 1, 2, …; a deletion is a version too). Each bot
version a conversation may run on is kept whole in ``bot_versions`` (every skill as JSON), so a conversation
that began on an older version can be finished on it by any worker, after any restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rejoinder.skills.loader import bot_version
from rejoinder.skills.model import Bot, BotConfig, Skill
from rejoinder.store.engine import writer
from rejoinder.store.errors import StoreError, StoreUnavailable, is_unavailable
from rejoinder.store.tables import UTCDateTime, metadata


def _json() -> sa.types.TypeEngine[Any]:
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


skill_versions = sa.Table(
    "skill_versions",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("skill_id", sa.String, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("definition", _json(), nullable=True),  # the parsed skill; NULL for a deletion
    sa.Column("source", sa.Text, nullable=True),  # the text as uploaded
    sa.Column("media_type", sa.String, nullable=True),  # application/yaml or application/json
    sa.Column("bot_version", sa.String, nullable=False),  # the bot version this change made
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.UniqueConstraint("bot_id", "skill_id", "version"),
    sa.Index(None, "bot_id", "id"),
)

bot_versions = sa.Table(
    "bot_versions",
    metadata,
    sa.Column("bot_id", sa.String, primary_key=True),
    sa.Column("version", sa.String, primary_key=True),
    sa.Column("skills", _json(), nullable=False),  # {skill id: skill as JSON}
    sa.Column("created_at", UTCDateTime(), nullable=False),
)


# Where a conversation's stored state records the bot version it runs on.
STATE_VERSION_KEY = "bot_version"


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


def skills_json(skills: Mapping[str, Skill]) -> dict[str, Any]:
    """Skills as stored: the JSON of each model, by id."""
    return {skill_id: skill.model_dump(mode="json", by_alias=True) for skill_id, skill in skills.items()}


def bot_from_json(config: BotConfig, version: str, skills: Mapping[str, Any]) -> Bot:
    """A stored bot version, run with the bot's current settings."""
    parsed = {skill_id: Skill.model_validate(data) for skill_id, data in skills.items()}
    return Bot(config=config, skills=parsed, version=version)


def compose(directory_bot: Bot, changes: Mapping[str, SkillVersionRecord]) -> Bot:
    """The bot's own skills overlaid with its newest changes: an upload adds or replaces, a deletion removes."""
    skills = dict(directory_bot.skills)
    for skill_id, change in changes.items():
        if change.definition is None:
            skills.pop(skill_id, None)
        else:
            skills[skill_id] = Skill.model_validate(change.definition)
    return Bot(config=directory_bot.config, skills=skills, version=bot_version(directory_bot.config, skills))


class SkillVersions:
    """The history of each bot's skill changes, and the bot versions they made."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._writer = writer(engine)

    async def heads(self) -> dict[str, int]:
        """The id of each bot's newest change: it moves whenever the bot's skills change."""
        statement = sa.select(skill_versions.c.bot_id, sa.func.max(skill_versions.c.id)).group_by(
            skill_versions.c.bot_id
        )
        async with self._read() as conn:
            rows = (await conn.execute(statement)).all()
        return {bot_id: int(head) for bot_id, head in rows}

    async def current(self, bot_id: str) -> tuple[int, dict[str, SkillVersionRecord]]:
        """The bot's head and the newest change of every skill ever changed (deletions included)."""
        newest = (
            sa.select(sa.func.max(skill_versions.c.id))
            .where(skill_versions.c.bot_id == bot_id)
            .group_by(skill_versions.c.skill_id)
        )
        statement = sa.select(skill_versions).where(skill_versions.c.id.in_(newest))
        async with self._read() as conn:
            rows = (await conn.execute(statement)).all()
        changes = {row.skill_id: SkillVersionRecord(**row._mapping) for row in rows}
        return max((change.id for change in changes.values()), default=0), changes

    async def history(self, bot_id: str, skill_id: str) -> list[SkillVersionRecord]:
        """Every version of one skill, oldest first."""
        statement = (
            sa.select(skill_versions)
            .where(skill_versions.c.bot_id == bot_id, skill_versions.c.skill_id == skill_id)
            .order_by(skill_versions.c.version)
        )
        async with self._read() as conn:
            rows = (await conn.execute(statement)).all()
        return [SkillVersionRecord(**row._mapping) for row in rows]

    async def record(self, change: SkillChange, *, expected_head: int, now: datetime) -> SkillVersionRecord:
        """Store a change made on top of the bot as of ``expected_head``, and the bot version it makes.

        Raises :class:`SkillsChanged` when another change was stored since (by this or another worker).
        """
        bot_id = change.bot.id
        async with self._write() as conn:
            if conn.dialect.name == "postgresql":
                await conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _lock_key(bot_id)})
            head = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.max(skill_versions.c.id), 0)).where(
                    skill_versions.c.bot_id == bot_id
                )
            )
            if head != expected_head:
                raise SkillsChanged(f"the skills of bot {bot_id!r} changed meanwhile")
            version = await conn.scalar(
                sa.select(sa.func.coalesce(sa.func.max(skill_versions.c.version), 0)).where(
                    skill_versions.c.bot_id == bot_id, skill_versions.c.skill_id == change.skill_id
                )
            )
            await self._insert_snapshot(conn, change.bot, now)
            row: dict[str, Any] = {
                "bot_id": bot_id,
                "skill_id": change.skill_id,
                "version": int(version or 0) + 1,
                "deleted": change.skill is None,
                "definition": change.skill.model_dump(mode="json", by_alias=True) if change.skill else None,
                "source": change.source,
                "media_type": change.media_type,
                "bot_version": change.bot.version,
                "created_at": _utc(now),
            }
            new_id = await conn.scalar(skill_versions.insert().values(row).returning(skill_versions.c.id))
        return SkillVersionRecord(id=int(new_id), **row)

    async def save_bot(self, bot: Bot, now: datetime) -> None:
        """Keep ``bot``'s version (a no-op when it is already kept)."""
        async with self._write() as conn:
            await self._insert_snapshot(conn, bot, now)

    async def find_bot(self, config: BotConfig, version: str) -> Bot | None:
        """A kept version of the bot with these settings, or None."""
        statement = sa.select(bot_versions.c.skills).where(
            bot_versions.c.bot_id == config.id, bot_versions.c.version == version
        )
        async with self._read() as conn:
            skills = await conn.scalar(statement)
        return None if skills is None else bot_from_json(config, version, skills)

    async def _insert_snapshot(self, conn: AsyncConnection, bot: Bot, now: datetime) -> None:
        insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
        statement = (
            insert(bot_versions)
            .values(bot_id=bot.id, version=bot.version, skills=skills_json(bot.skills), created_at=_utc(now))
            .on_conflict_do_nothing(index_elements=["bot_id", "version"])
        )
        await conn.execute(statement)

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with _unavailable_as_store_error(), self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        async with _unavailable_as_store_error(), self._writer.begin() as conn:
            yield conn


@asynccontextmanager
async def _unavailable_as_store_error() -> AsyncIterator[None]:
    try:
        yield
    except StoreError:
        raise
    except Exception as error:
        if is_unavailable(error):
            raise StoreUnavailable(f"database unavailable: {error}") from error
        raise


def _lock_key(bot_id: str) -> int:
    return int.from_bytes(
        hashlib.sha256(f"rejoinder-skills:{bot_id}".encode()).digest()[:8], "big", signed=True
    )


def _utc(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC)
