"""The store: every read and write the service and the server make, each in one short transaction."""

from __future__ import annotations

from typing import Self

from rejoinder.store.audit import Audit
from rejoinder.store.bots import Bots
from rejoinder.store.conversations import Conversations
from rejoinder.store.credentials import Credentials
from rejoinder.store.database import Database, WriteFailure
from rejoinder.store.sqlite_threads import SQLiteThreads
from rejoinder.store.turn_stats import TurnStatistics
from rejoinder.store.users import Users


class Store:
    """One database (SQLite or PostgreSQL) and a repository per subject over it.

    ``conversations`` (conversations and their messages), ``credentials`` (tokens, sessions, API keys), ``audit``
    (the audit trail), ``bots`` (bots, their skill changes and versions), ``users`` (console accounts and their
    sessions) and ``turn_stats`` (turn statistics by hour, added up from every server process). Every repository
    call is one short transaction and returns frozen records (``rejoinder.store.records``); the store itself keeps
    the database's lifecycle.
    """

    def __init__(self, database: Database) -> None:
        self.database = database
        self.conversations = Conversations(database)
        self.credentials = Credentials(database)
        self.audit = Audit(database)
        self.bots = Bots(database)
        self.users = Users(database)
        self.turn_stats = TurnStatistics(database)

    @classmethod
    def from_url(cls, url: str, *, busy_timeout: float = 5.0) -> Self:
        """Open a database URL (see :func:`rejoinder.store.normalize_url`); nothing connects until first use.

        ``busy_timeout``: how long to wait for SQLite's write lock or a free pooled connection before giving up
        with :class:`rejoinder.store.StoreUnavailable`.
        """
        return cls(Database.from_url(url, busy_timeout=busy_timeout))

    @property
    def sqlite_threads(self) -> SQLiteThreads | None:
        """The threads that run every call on SQLite (None on PostgreSQL)."""
        return self.database.sqlite_threads

    async def upgrade(self) -> None:
        """Bring the schema to the newest migration (a no-op when it is already there)."""
        await self.database.upgrade()

    async def current_revision(self) -> str | None:
        """The migration the database is at, ``None`` before the first upgrade."""
        return await self.database.current_revision()

    async def ping(self) -> bool:
        """Whether the database answers a trivial query."""
        return await self.database.ping()

    def recent_write_failure(self) -> WriteFailure | None:
        """The last failed write, when it failed recently and no write succeeded since (readiness asks this)."""
        return self.database.recent_write_failure()

    async def close(self) -> None:
        await self.database.close()
