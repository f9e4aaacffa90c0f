"""The database behind the store: its engine, the two kinds of transaction, and its schema's lifecycle."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Self

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rejoinder.store import migrate
from rejoinder.store.engine import create_engine, writer
from rejoinder.store.errors import StoreUnavailable, unavailable_as_store_error
from rejoinder.store.urls import normalize_url


class Database:
    """An async engine with short read and write transactions; database errors that mean "try again later"
    come out as :class:`StoreUnavailable`."""

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = 5.0) -> None:
        self.engine = engine
        self._writer = writer(engine)
        self._busy_timeout = busy_timeout
        # SQLite has one writer at a time. Queueing this process's writers here, instead of letting each take a
        # pooled connection and spin in SQLite's busy handler (which sleeps), keeps writes back to back.
        self._write_turn = asyncio.Lock() if engine.dialect.name == "sqlite" else None
        # INSERT … ON CONFLICT is spelled the same on both databases, but built by each dialect's own insert().
        self._insert_on_conflict: Callable[[sa.Table], Any] = (
            postgresql.insert if engine.dialect.name == "postgresql" else sqlite.insert
        )

    @classmethod
    def from_url(cls, url: str, *, busy_timeout: float = 5.0) -> Self:
        """Open a database URL (see :func:`normalize_url`); nothing connects until first use.

        ``busy_timeout``: how long to wait for SQLite's write lock or a free pooled connection before giving up
        with :class:`StoreUnavailable`.
        """
        return cls(create_engine(normalize_url(url), busy_timeout=busy_timeout), busy_timeout=busy_timeout)

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        async with migrate.upgrade_lock(), self._write() as conn:
            await conn.run_sync(migrate.upgrade)

    async def current_revision(self) -> str | None:
        """The migration the database is at, ``None`` before the first upgrade."""
        async with self._read() as conn:
            return await conn.run_sync(migrate.current_revision)

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        try:
            async with self._read() as conn:
                await conn.execute(sa.text("SELECT 1"))
        except (StoreUnavailable, sa_exc.SQLAlchemyError):
            return False
        return True

    async def close(self) -> None:
        await self.engine.dispose()

    @asynccontextmanager
    async def _read(self) -> AsyncIterator[AsyncConnection]:
        async with unavailable_as_store_error(), self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def _write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits when the block ends and rolls back if it raises."""
        if self._write_turn is None:
            async with unavailable_as_store_error(), self._writer.begin() as conn:
                yield conn
            return
        try:
            async with asyncio.timeout(self._busy_timeout):
                await self._write_turn.acquire()
        except TimeoutError:
            raise StoreUnavailable("database busy: no write slot within the busy timeout") from None
        try:
            async with unavailable_as_store_error(), self._writer.begin() as conn:
                yield conn
        finally:
            self._write_turn.release()
