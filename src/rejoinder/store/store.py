"""The store: every read and write the service and the server make, each in one short transaction."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from rejoinder.store.access import Access
from rejoinder.store.conversations import Conversations
from rejoinder.store.skill_versions import SkillVersions
from rejoinder.store.stats import Stats
from rejoinder.store.users import Users


class Store(Conversations, Access, SkillVersions):
    """Conversations, messages, tokens, keys, sessions, bots, skill versions and the audit trail, on SQLite or
    PostgreSQL; console accounts and their sessions in :attr:`users`; activity by hour in :attr:`stats`.

    Every method is one short transaction and returns frozen records (``rejoinder.store.records``).
    """

    def __init__(self, engine: AsyncEngine, *, busy_timeout: float = 5.0) -> None:
        super().__init__(engine, busy_timeout=busy_timeout)
        self.users = Users(self)
        self.stats = Stats(self)
