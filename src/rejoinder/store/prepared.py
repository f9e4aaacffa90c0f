"""Hot SELECTs compiled once and run straight on the SQLite driver, for the reads every request makes.

SQLAlchemy's execution path (cache lookup, execution context, result object) costs several times what SQLite
spends answering a lookup by key. A :class:`Prepared` statement keeps SQLAlchemy's SQL and its own type
processors (JSON, UTC timestamps), so rows come out exactly as through SQLAlchemy, minus that path.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect

Processor = Callable[[Any], Any] | None


class _Compiled:
    def __init__(self, statement: sa.Select[Any], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not take positional parameters")
        self.sql = compiled.string
        self.names = list(compiled.positiontup)
        self.binds: list[Processor] = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        columns = list(statement.selected_columns)
        self.keys = [str(column.key) for column in columns]
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]


class Prepared:
    """A SELECT whose first row is read on the raw SQLite connection, with SQLAlchemy's own processing."""

    def __init__(self, statement: sa.Select[Any]) -> None:
        self.statement = statement
        self._compiled: _Compiled | None = None
        self._lock = threading.Lock()

    def first(self, connection: sa.Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """The first row as a dict by column key, or None."""
        compiled = self._compiled or self._compile(connection.dialect)
        args = [
            value if process is None else process(value)
            for value, process in zip((params[name] for name in compiled.names), compiled.binds, strict=True)
        ]
        driver = connection.connection.driver_connection
        try:
            cursor = driver.execute(compiled.sql, args)  # type: ignore[union-attr]
            try:
                row = cursor.fetchone()
            finally:
                cursor.close()
        except sqlite3.Error as error:
            # Wrapped as SQLAlchemy wraps it, so "database is locked" and the like still read as unavailable.
            raise sa_exc.DBAPIError.instance(compiled.sql, args, error, sqlite3.Error) from error
        if row is None:
            return None
        return {
            key: value if process is None else process(value)
            for key, value, process in zip(compiled.keys, row, compiled.results, strict=True)
        }

    def _compile(self, dialect: Dialect) -> _Compiled:
        with self._lock:
            if self._compiled is None:
                self._compiled = _Compiled(self.statement, dialect)
            return self._compiled
