"""The database behind the store: where each call runs, the two kinds of transaction, and the schema's lifecycle.

A store call is a plain function of a synchronous SQLAlchemy connection (``work(connection, *args)``). On SQLite it
runs whole on the store's own threads (:mod:`rejoinder.store.sqlite_threads`: one hand-off per call, writes committed
in groups) with a synchronous engine, migrations included; on PostgreSQL it runs on a pooled asyncpg connection
in one greenlet (what ``AsyncConnection.run_sync`` does, with the checkout and checkin inside). This module, :mod:`~rejoinder.store.connect`, :mod:`~rejoinder.store.prepared`
and :mod:`~rejoinder.store.migrate` are the only ones that know which database it is.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Self, TypeVar

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.util import greenlet_spawn

from rejoinder.store import migrate
from rejoinder.store.connect import behind_transaction_pooler, create_engine
from rejoinder.store.errors import StoreUnavailable, unavailable_as_store_error
from rejoinder.store.sqlite_threads import SQLiteThreads
from rejoinder.store.urls import normalize_url

T = TypeVar("T")

# A write that failed this recently, with none succeeding since, makes the store not ready.
WRITE_FAILURE_MEMORY = 30.0


@dataclass(frozen=True)
class WriteFailure:
    """The last write that failed for want of the database, and when (``time.monotonic()``)."""

    error: StoreUnavailable
    at: float


def insert_on_conflict(connection: sa.Connection, table: sa.Table) -> Any:
    """``INSERT … ON CONFLICT`` is spelled the same on both databases, but built by each dialect's own insert()."""
    return (postgresql.insert if connection.dialect.name == "postgresql" else sqlite.insert)(table)


def advisory_lock(connection: sa.Connection, key: int) -> None:
    """Make other transactions that take the lock on ``key`` wait until this one ends.

    PostgreSQL needs an advisory lock for that; on SQLite every write transaction already holds the one write lock
    from its BEGIN IMMEDIATE.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})


class Database:
    """Short read and write transactions; database errors that mean "try again later" come out as
    :class:`StoreUnavailable`."""

    def __init__(self, engine: sa.Engine | AsyncEngine, *, busy_timeout: float = 5.0) -> None:
        """``engine`` from :func:`rejoinder.store.connect.create_engine`: SQLite's synchronous engine, which the
        store's own threads use, or PostgreSQL's async one."""
        self._postgres: AsyncEngine | None = None
        self._sqlite: SQLiteThreads | None = None
        self._write_failure: WriteFailure | None = None
        self._statements_alone = True  # whether a call may run outside an explicit transaction
        self._postgres_autocommit: AsyncEngine | None = None
        if isinstance(engine, AsyncEngine):
            self._postgres = engine
            self._statements_alone = not behind_transaction_pooler(engine.url)
            # The same pool, its connections in autocommit mode while checked out from here.
            self._postgres_autocommit = engine.execution_options(isolation_level="AUTOCOMMIT")
        else:
            self._sqlite = SQLiteThreads(engine, busy_timeout=busy_timeout)

    @classmethod
    def from_url(cls, url: str, *, busy_timeout: float = 5.0) -> Self:
        """Open a database URL (see :func:`normalize_url`); nothing connects until first use.

        ``busy_timeout``: how long to wait for SQLite's write lock or a free pooled connection before giving up
        with :class:`StoreUnavailable`.
        """
        return cls(create_engine(normalize_url(url), busy_timeout=busy_timeout), busy_timeout=busy_timeout)

    @property
    def sqlite_threads(self) -> SQLiteThreads | None:
        """The threads that run this store's calls on SQLite (None on PostgreSQL)."""
        return self._sqlite

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        async with migrate.upgrade_lock():
            await self.write(migrate.upgrade, solo=True)

    async def current_revision(self) -> str | None:
        """The migration the database is at, ``None`` before the first upgrade."""
        return await self.read(migrate.current_revision)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            await self.read(_select_one)
        except (StoreUnavailable, sa_exc.SQLAlchemyError):
            return False
        return True

    def recent_write_failure(self, within: float = WRITE_FAILURE_MEMORY) -> WriteFailure | None:
        """The last failed write, when it failed less than ``within`` seconds ago and no write succeeded since.

        A database that answers reads may still refuse every write (a full disk): readiness asks this too.
        """
        failure = self._write_failure
        if failure is None or time.monotonic() - failure.at > within:
            return None
        return failure

    async def close(self) -> None:
        if self._sqlite is not None:
            await asyncio.to_thread(self._sqlite.close)
            self._sqlite.engine.dispose()
        if self._postgres is not None:
            await self._postgres.dispose()

    async def read(self, work: Callable[..., T], *args: Any) -> T:
        """``work(connection, *args)`` outside any write transaction; each statement sees a consistent snapshot.

        On PostgreSQL no transaction is opened around it (no BEGIN and ROLLBACK, two round trips saved), and a
        read that finds its pooled connection dead (the server restarted since it was last used) is run once
        more on a new one.
        """
        async with unavailable_as_store_error():
            if self._sqlite is not None:
                return await self._sqlite.read(work, *args)
            try:
                return await self._autocommit(work, *args)
            except sa_exc.DBAPIError as error:
                if not error.connection_invalidated:
                    raise
            return await self._autocommit(work, *args)

    async def write(
        self,
        work: Callable[..., T],
        *args: Any,
        solo: bool = False,
        scrub: bool = False,
        at_once: Callable[..., T] | None = None,
    ) -> T:
        """``work(connection, *args)`` in a transaction that commits when it returns and rolls back if it raises.

        On SQLite the write lock is taken at BEGIN (BEGIN IMMEDIATE), so a transaction that reads before it
        writes never deadlocks with another; ``scrub`` (a write that erases) then empties the WAL at once.

        ``at_once``: the same write as one statement (data-modifying common table expressions), which
        PostgreSQL runs atomically on its own; it is run there instead of ``work``, in one round trip where
        ``work`` would take a BEGIN, each statement and a COMMIT.
        """
        try:
            async with unavailable_as_store_error():
                if self._sqlite is not None:
                    result = await self._sqlite.write(work, *args, solo=solo, scrub=scrub)
                elif at_once is not None:
                    result = await self._autocommit(at_once, *args)
                else:
                    result = await greenlet_spawn(
                        _in_transaction, self._postgres_engine().sync_engine, work, args
                    )
        except StoreUnavailable as error:
            self._write_failure = WriteFailure(error, time.monotonic())
            raise
        self._write_failure = None
        return result

    async def _autocommit(self, work: Callable[..., T], *args: Any) -> T:
        """``work`` on a pooled PostgreSQL connection in autocommit mode: each statement is its own transaction.

        Behind a pooler in transaction mode, in a transaction instead: the statement must be prepared and run on
        the same server connection (see :func:`~rejoinder.store.connect.behind_transaction_pooler`).
        """
        if not self._statements_alone:
            return await greenlet_spawn(_in_transaction, self._postgres_engine().sync_engine, work, args)
        assert self._postgres_autocommit is not None
        return await greenlet_spawn(_alone, self._postgres_autocommit.sync_engine, work, args)

    def _postgres_engine(self) -> AsyncEngine:
        assert self._postgres is not None  # either engine is set, never both
        return self._postgres


# A PostgreSQL call runs whole (checkout, statements, checkin) in one greenlet, where ``run_sync`` runs only the
# statements: one switch to and from the event loop's side per call instead of three.


def _alone(engine: sa.Engine, work: Callable[..., T], args: tuple[Any, ...]) -> T:
    with engine.connect() as connection:
        return work(connection, *args)


def _in_transaction(engine: sa.Engine, work: Callable[..., T], args: tuple[Any, ...]) -> T:
    with engine.begin() as connection:
        return work(connection, *args)


def _select_one(connection: sa.Connection) -> None:
    connection.execute(sa.text("SELECT 1"))
