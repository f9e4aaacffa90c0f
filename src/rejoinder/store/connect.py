"""Engines tuned per database: SQLite in WAL mode, pooled asyncpg for PostgreSQL.

SQLite gets one synchronous engine, whose connections the store's own threads hold (see ``sqlite_threads``: they
run every call, migrations included, and take the write lock at BEGIN); PostgreSQL an async engine whose pooled
connections run each call in one greenlet (SQLAlchemy's bridge from async to synchronous code).
"""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

# Connections each worker keeps open to PostgreSQL. All of them are kept: connections opened for a burst and closed
# after it (a pool's overflow) cost a new server process and a connection handshake at each burst, which under a
# steady load of many conversations is most turns. A turn holds one only for its two statements.
POSTGRES_POOL_SIZE = 20
# Seconds a PostgreSQL statement may go unanswered before the server counts as unreachable (statements here take
# milliseconds; a migration statement is held to it as well).
POSTGRES_COMMAND_TIMEOUT = 5.0

# Bytes of WAL kept on disk after a checkpoint; the writer also forces a full checkpoint beyond it (SQLite).
WAL_SIZE_LIMIT = 64 * 1024 * 1024


def create_engine(
    url: sa.URL,
    *,
    busy_timeout: float = 5.0,
    connect_timeout: float = 5.0,
    command_timeout: float = POSTGRES_COMMAND_TIMEOUT,
) -> sa.Engine | AsyncEngine:
    """An engine for a URL from :func:`rejoinder.store.urls.normalize_url`: synchronous for SQLite (see
    :func:`create_sqlite_sync_engine`), async for PostgreSQL.

    On PostgreSQL, ``connect_timeout`` bounds opening a connection and ``command_timeout`` each statement: a
    server that stopped answering (hung, or behind a network that drops packets) then costs a request a few
    seconds and a 503, instead of holding it and its pooled connection until the operating system gives up.
    """
    if url.get_backend_name() == "sqlite":
        return create_sqlite_sync_engine(url, busy_timeout=busy_timeout)
    connect_args: dict[str, Any] = {"timeout": connect_timeout, "command_timeout": command_timeout}
    if behind_transaction_pooler(url):
        # Unnamed statements only (a named one would stay on whichever server connection parsed it), none kept.
        connect_args.update(statement_cache_size=0, prepared_statement_name_func=_unnamed)
    engine = create_async_engine(
        url,
        pool_size=POSTGRES_POOL_SIZE,
        max_overflow=0,
        pool_timeout=busy_timeout,
        connect_args=connect_args,
    )
    event.listen(engine.sync_engine, "checkout", _refuse_closed_connection)
    return engine


def behind_transaction_pooler(url: sa.URL) -> bool:
    """Whether the URL reaches PostgreSQL through a pooler in transaction mode (PgBouncer's ``pool_mode =
    transaction``), which it says by turning the prepared statement cache off
    (``?prepared_statement_cache_size=0``).

    Such a pooler gives each transaction whichever server connection is free: a statement prepared in one
    exchange and run in the next must be in one transaction, and nothing may be left on a server connection.
    """
    return url.get_backend_name() == "postgresql" and url.query.get("prepared_statement_cache_size") == "0"


def _unnamed() -> str:
    return ""


def _refuse_closed_connection(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Hand out no pooled connection that the server closed (it restarted, or a proxy reset it).

    Instead of a ping (a round trip on every checkout), ask the driver: its event loop has read the server's
    goodbye or the reset already. The pool then opens a new connection in its place.
    """
    if dbapi_connection.driver_connection.is_closed():
        raise sa.exc.DisconnectionError("the server closed this pooled connection")


def create_sqlite_sync_engine(url: sa.URL, *, busy_timeout: float = 5.0) -> sa.Engine:
    """A synchronous engine on an SQLite file (its directory made if missing), for connections that live in the
    store's own threads."""
    database = url.database or ""
    if not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url.set(drivername="sqlite+pysqlite"),
        poolclass=sa.pool.NullPool,  # each thread keeps its one connection for as long as it runs
        connect_args={"timeout": busy_timeout, "check_same_thread": False},
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        _set_up_sqlite(dbapi_connection, busy_timeout)

    return engine


def _set_up_sqlite(dbapi_connection: Any, busy_timeout: float) -> None:
    # Take transaction control away from the driver: the store decides how and when to BEGIN.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        _enable_wal(cursor, busy_timeout)
        for pragma in (
            f"PRAGMA busy_timeout={int(busy_timeout * 1000)}",
            # Survives a crash of the process (not of the machine): a commit writes the WAL without syncing it.
            "PRAGMA synchronous=NORMAL",
            "PRAGMA foreign_keys=ON",
            # No checkpoint inside a commit: the store's writer thread checkpoints when it has nothing to write.
            "PRAGMA wal_autocheckpoint=0",
            # A WAL that grew under a burst is cut back to this size once it has been checkpointed.
            f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}",
            # Deleted content is overwritten with zeros, not left in free space: an erased conversation is gone.
            "PRAGMA secure_delete=ON",
        ):
            cursor.execute(pragma)
    finally:
        cursor.close()


def _enable_wal(cursor: Any, timeout: float) -> None:
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
        time.sleep(0.01)  # these connections never run on the event loop's thread
