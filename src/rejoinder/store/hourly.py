"""Counting rows by the UTC hour of a timestamp, grouped in the database: what crosses the boundary is one row per
hour (and key), whatever the number of rows counted."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.store.records import HourCount


def count_by_hour(
    conn: sa.Connection,
    column: sa.ColumnElement[Any],
    conditions: list[sa.ColumnElement[bool]],
    by: sa.ColumnElement[Any] | None = None,
) -> list[HourCount]:
    """Rows matching ``conditions`` counted by the hour of ``column`` (and by ``by``, given as the outcome)."""
    hour = _hour_of(conn, column).label("hour")
    keys: list[sa.ColumnElement[Any]] = [hour] if by is None else [hour, by]
    statement = sa.select(*keys, sa.func.count().label("n")).where(*conditions).group_by(*keys)
    return [
        HourCount(_as_hour(row.hour), int(row.n), None if by is None else row[1])
        for row in conn.execute(statement).all()
    ]


def _hour_of(conn: sa.Connection, column: sa.ColumnElement[Any]) -> sa.ColumnElement[Any]:
    """The start of the UTC hour of a timestamp column, as each database spells it."""
    if conn.dialect.name == "postgresql":
        return sa.func.date_trunc("hour", sa.func.timezone("UTC", column))
    return sa.func.strftime("%Y-%m-%d %H:00:00", column)  # SQLite keeps naive UTC text


def _as_hour(value: Any) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)
