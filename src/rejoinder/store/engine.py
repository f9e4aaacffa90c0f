"""Async engines tuned per database: SQLite in WAL mode with immediate write transactions, pooled PostgreSQL."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Execution option that marks a connection as a writer (SQLite then takes the write lock at BEGIN).
WRITE_OPTION = "rejoinder_write"

POSTGRES_POOL_SIZE = 10


def create_engine(url: sa.URL, *, busy_timeout: float = 5.0, connect_timeout: float = 5.0) -> AsyncEngine:
    """An engine for a URL from :func:`rejoinder.store.urls.normalize_url`."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_engine(url, busy_timeout)
    return create_async_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=POSTGRES_POOL_SIZE,
        pool_pre_ping=True,
        pool_timeout=busy_timeout,
        connect_args={"timeout": connect_timeout},
    )


def writer(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (and pool), with transactions that intend to write."""
    return engine.execution_options(**{WRITE_OPTION: True})


def _sqlite_engine(url: sa.URL, busy_timeout: float) -> AsyncEngine:
    database = url.database or ""
    if not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_async_engine(url, pool_timeout=busy_timeout, connect_args={"timeout": busy_timeout})
    pragmas = (
        f"PRAGMA busy_timeout={int(busy_timeout * 1000)}",
        "PRAGMA synchronous=NORMAL",
        "PRAGMA foreign_keys=ON",
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take transaction control away from the driver: SQLAlchemy's "begin" below decides how to BEGIN.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            _enable_wal(dbapi_connection, cursor, busy_timeout)
            for pragma in pragmas:
                cursor.execute(pragma)
        finally:
            cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: sa.Connection) -> None:
        # A deferred BEGIN that later writes must upgrade its read lock, and two such transactions deadlock
        # (SQLITE_BUSY without waiting). BEGIN IMMEDIATE takes the write lock up front and waits for it.
        # Readers send no BEGIN at all: each statement sees a consistent WAL snapshot on its own.
        if connection.get_execution_options().get(WRITE_OPTION):
            connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def _enable_wal(dbapi_connection: Any, cursor: Any, timeout: float) -> None:
    """Switch the database to WAL (a no-op once it is: the mode is stored in the file).

    The first switch needs an exclusive lock, and SQLite answers "database is locked" at once, without its busy
    handler, when several connections race to make it, as workers starting together on a new file do.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or time.monotonic() > deadline:
                raise
        # Wait without blocking the event loop: the lock holder may be a coroutine on this very loop.
        dbapi_connection.run_async(lambda _driver: asyncio.sleep(0.01))
