"""Activity by hour, for the console's Overview: conversations started, resumes by outcome, and the turn statistics
server processes add up in ``turn_stats``.

Every read is one indexed range over a bot and a time window, grouped by hour in the database, so what crosses the
boundary is at most one row per hour (and outcome) whatever the traffic was.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.store.database import Database, insert_on_conflict
from rejoinder.store.records import LATENCY_BUCKET_COLUMNS, HourCount, TurnStats, as_utc
from rejoinder.store.tables import audit_events, conversations, turn_stats

_ADDED = ("turns", "integrate_failures", "rate_limited_resumes", *LATENCY_BUCKET_COLUMNS)


class Stats:
    """Hourly activity, over the shared :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add_turn_stats(self, stats: Sequence[TurnStats]) -> None:
        """Add ``stats`` to the stored counts of their bot and hour, in one transaction: each process adds what it
        saw since its last flush, so the rows are sums over every process."""
        if stats:
            await self._database.write(_add_turn_stats, [_stats_row(entry) for entry in stats])

    async def turn_stats(self, bot_id: str, since: datetime) -> list[TurnStats]:
        """The bot's stored turn statistics for the hours from ``since``, oldest first."""
        return await self._database.read(_turn_stats, bot_id, as_utc(since))

    async def conversations_started(self, bot_id: str, since: datetime) -> list[HourCount]:
        """Conversations of ``bot_id`` created from ``since``, counted by hour."""
        return await self._database.read(
            _count_by_hour,
            conversations.c.created_at,
            [conversations.c.bot_id == bot_id, conversations.c.created_at >= as_utc(since)],
            None,
        )

    async def resumes(self, bot_id: str, since: datetime) -> list[HourCount]:
        """Resume attempts on ``bot_id`` from ``since`` (its audit trail's ``resume`` events), counted by hour and
        outcome."""
        return await self._database.read(
            _count_by_hour,
            audit_events.c.at,
            [
                audit_events.c.bot_id == bot_id,
                audit_events.c.kind == "resume",
                audit_events.c.at >= as_utc(since),
            ],
            audit_events.c.outcome,
        )


def _stats_row(stats: TurnStats) -> dict[str, Any]:
    if len(stats.latency) != len(LATENCY_BUCKET_COLUMNS):
        raise ValueError(f"{len(stats.latency)} latency buckets; the table has {len(LATENCY_BUCKET_COLUMNS)}")
    return {
        "bot_id": stats.bot_id,
        "hour": as_utc(stats.hour),
        "turns": stats.turns,
        "integrate_failures": stats.integrate_failures,
        "rate_limited_resumes": stats.rate_limited_resumes,
        **dict(zip(LATENCY_BUCKET_COLUMNS, stats.latency, strict=True)),
    }


def _hour_of(conn: sa.Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The start of the UTC hour of a timestamp column, as each database spells it."""
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc("hour", sa.func.timezone("UTC", column))
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)  # SQLite keeps naive UTC text


def _as_hour(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


# ------------------------------------------------------------------------------------------------ on a connection


def _add_turn_stats(conn: sa.Connection, rows: list[dict[str, Any]]) -> None:
    insert = insert_on_conflict(conn, turn_stats)
    statement = insert.on_conflict_do_update(
        index_elements=["bot_id", "hour"],
        set_={name: turn_stats.c[name] + insert.excluded[name] for name in _ADDED},
    )
    for row in rows:
        conn.execute(statement, row)


def _turn_stats(conn: sa.Connection, bot_id: str, since: datetime) -> list[TurnStats]:
    rows = conn.execute(
        sa.select(turn_stats)
        .where(turn_stats.c.bot_id == bot_id, turn_stats.c.hour >= since)
        .order_by(turn_stats.c.hour)
    ).all()
    return [
        TurnStats(
            bot_id=row.bot_id,
            hour=row.hour,
            turns=row.turns,
            integrate_failures=row.integrate_failures,
            rate_limited_resumes=row.rate_limited_resumes,
            latency=tuple(row._mapping[name] for name in LATENCY_BUCKET_COLUMNS),
        )
        for row in rows
    ]


def _count_by_hour(
    conn: sa.Connection,
    column: sa.ColumnElement[Any],
    conditions: list[sa.ColumnElement[bool]],
    by: sa.ColumnElement[Any] | None,
) -> list[HourCount]:
    hour = _hour_of(conn, column).label("hour")
    keys: list[sa.ColumnElement[Any]] = [hour] if by is None else [hour, by]
    statement = sa.select(*keys, sa.func.count().label("n")).where(*conditions).group_by(*keys)
    return [
        HourCount(_as_hour(row.hour), int(row.n), None if by is None else row[1])
        for row in conn.execute(statement).all()
    ]
