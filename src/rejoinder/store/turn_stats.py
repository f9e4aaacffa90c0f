"""Turn statistics by bot and hour (``turn_stats``): what every server process counted, added up.

Each process adds what it saw since its last flush (:mod:`rejoinder.service.stats`), so a row is the sum over every
process; no turn ever writes here itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.store.database import Database, insert_on_conflict
from rejoinder.store.records import LATENCY_BUCKET_COLUMNS, TurnStats, as_utc
from rejoinder.store.tables import turn_stats

_ADDED = ("turns", "integrate_failures", "rate_limited_resumes", *LATENCY_BUCKET_COLUMNS)


class TurnStatistics:
    """Hourly turn statistics, over the shared :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def add(self, stats: Sequence[TurnStats]) -> None:
        """Add ``stats`` to the stored counts of their bot and hour, in one transaction."""
        if stats:
            await self._database.write(_add_turn_stats, [_stats_row(entry) for entry in stats])

    async def since(self, bot_id: str, since: datetime) -> list[TurnStats]:
        """The bot's stored turn statistics for the hours from ``since``, oldest first."""
        return await self._database.read(_turn_stats, bot_id, as_utc(since))


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
