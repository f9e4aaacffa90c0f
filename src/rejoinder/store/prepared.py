"""A statement for the calls every turn makes: straight to the driver, with SQLAlchemy's SQL and type processing.

SQLAlchemy's execution path (cache lookup, execution context, result object) costs several times what SQLite
spends on a lookup by key or on the few rows a turn writes, and on PostgreSQL more than the statement's own work
in the worker. A :class:`Prepared` statement is compiled once per dialect and run on the raw connection (the
``sqlite3`` one, or asyncpg's, whose own cache keeps it prepared on the server: one round trip a run), with
SQLAlchemy's own SQL and type processors (JSON, UTC timestamps), so values go in and rows come out exactly as
through SQLAlchemy, minus that path. Driver errors are wrapped as SQLAlchemy wraps them, so callers catch the same
exceptions (``IntegrityError`` for a duplicate, "database is locked" as an operational error, a lost connection
as one whose ``connection_invalidated`` is set).

On PostgreSQL only a connection in autocommit mode takes the short path: in a transaction the statement goes
through ``connection.execute``, which begins it (and gives the same answer), so a caller never asks which
database it is on.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import Dialect
from sqlalchemy.util import await_only

Processor = Callable[[Any], Any] | None
Statement = sa.Select[Any] | sa.Update | sa.Insert


class _Compiled:
    def __init__(self, statement: Statement, dialect: Dialect, column_keys: Sequence[str] | None) -> None:
        compiled = statement.compile(dialect=dialect, column_keys=list(column_keys) if column_keys else None)
        if compiled.positiontup is None:
            raise ValueError(f"{dialect.name} does not take positional parameters")
        self.sql = compiled.string
        self.names = list(compiled.positiontup)
        # Values the statement carries itself (the 1 of ``version + 1``); the others must be given.
        self.fixed = {name: bind.value for name, bind in compiled.binds.items() if not bind.required}
        self.binds: list[Processor] = [
            compiled.binds[name].type.dialect_impl(dialect).bind_processor(dialect) for name in self.names
        ]
        # A SELECT's columns, or what an INSERT or UPDATE returns (nothing without RETURNING).
        columns = list(statement.exported_columns)
        self.keys = [str(column.key) for column in columns]
        self.results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in columns
        ]

    def arguments(self, params: Mapping[str, Any]) -> list[Any]:
        return [
            value if process is None else process(value)
            for value, process in zip(
                (params[name] if name in params else self.fixed[name] for name in self.names),
                self.binds,
                strict=True,
            )
        ]

    def row(self, row: Sequence[Any]) -> dict[str, Any]:
        return {
            key: value if process is None else process(value)
            for key, value, process in zip(self.keys, row, self.results, strict=True)
        }


class Prepared:
    """A statement run on the raw SQLite connection with SQLAlchemy's own SQL and value processing, or through
    SQLAlchemy on any other database.

    ``column_keys`` names the columns an INSERT sets (its VALUES list); other statements take their bound
    parameters by name.
    """

    def __init__(self, statement: Statement, *, column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self.column_keys = column_keys
        self._compiled: dict[str, _Compiled] = {}
        self._lock = threading.Lock()

    def first(self, connection: sa.Connection, params: Mapping[str, Any]) -> dict[str, Any] | None:
        """Run once; the first row (selected or returned) as a dict by column key, or None."""
        if _on_asyncpg_alone(connection):
            compiled = self._compile(connection.dialect)
            args = compiled.arguments(params)
            driver = connection.connection.driver_connection
            found = _on_asyncpg(connection, compiled.sql, args, driver.fetchrow(compiled.sql, *args))  # type: ignore[union-attr]
            return None if found is None else compiled.row(tuple(found))
        if connection.dialect.name != "sqlite":
            row = connection.execute(self.statement, dict(params)).first()
            return None if row is None else dict(row._mapping)
        compiled = self._compile(connection.dialect)
        args = compiled.arguments(params)
        driver = connection.connection.driver_connection
        try:
            cursor = driver.execute(compiled.sql, args)  # type: ignore[union-attr]
            try:
                row = cursor.fetchone()
                if row is not None and not isinstance(self.statement, sa.Select):
                    cursor.fetchall()  # a DML statement finishes only once its RETURNING rows are read
            finally:
                cursor.close()
        except sqlite3.Error as error:
            raise _wrapped(compiled.sql, args, error) from error
        return None if row is None else compiled.row(row)

    def execute_many(self, connection: sa.Connection, rows: Iterable[Mapping[str, Any]]) -> None:
        """Run once per row of parameters (an INSERT of several rows)."""
        if connection.dialect.name != "sqlite":
            connection.execute(self.statement, [dict(row) for row in rows])
            return
        compiled = self._compile(connection.dialect)
        args = [compiled.arguments(row) for row in rows]
        driver = connection.connection.driver_connection
        try:
            driver.executemany(compiled.sql, args)  # type: ignore[union-attr]
        except sqlite3.Error as error:
            raise _wrapped(compiled.sql, args, error) from error

    def _compile(self, dialect: Dialect) -> _Compiled:
        compiled = self._compiled.get(dialect.name)
        if compiled is not None:
            return compiled
        with self._lock:
            if dialect.name not in self._compiled:
                self._compiled[dialect.name] = _Compiled(self.statement, dialect, self.column_keys)
            return self._compiled[dialect.name]


def _wrapped(sql: str, args: Any, error: sqlite3.Error) -> sa_exc.StatementError:
    return sa_exc.DBAPIError.instance(sql, args, error, sqlite3.Error)


def _on_asyncpg_alone(connection: sa.Connection) -> bool:
    """Whether ``connection`` is asyncpg's in autocommit mode: no transaction for SQLAlchemy to begin first."""
    return connection.dialect.driver == "asyncpg" and bool(connection.connection.dbapi_connection.autocommit)  # type: ignore[union-attr]


def _on_asyncpg(connection: sa.Connection, sql: str, args: list[Any], call: Any) -> Any:
    """Wait for an asyncpg call (from the synchronous code that runs in SQLAlchemy's greenlet), its errors
    turned into SQLAlchemy's as its own asyncpg dialect turns them; a lost connection is invalidated."""
    adapted = connection.connection.dbapi_connection
    try:
        return await_only(call)
    except Exception as error:
        try:
            adapted._handle_exception(error)  # type: ignore[union-attr]  # raises the DB-API error it stands for
        except connection.dialect.loaded_dbapi.Error as translated:
            lost = connection.dialect.is_disconnect(translated, adapted, None)
            if lost:
                connection.invalidate(translated)
            raise sa_exc.DBAPIError.instance(
                sql,
                args,
                translated,
                connection.dialect.loaded_dbapi.Error,
                connection_invalidated=lost,
                dialect=connection.dialect,
            ) from error
        raise
