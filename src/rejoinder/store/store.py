"""The store: every read and write the service and the server make, each in one short transaction."""

from __future__ import annotations

from rejoinder.store.access import Access
from rejoinder.store.conversations import Conversations
from rejoinder.store.skill_versions import SkillVersions


class Store(Conversations, Access, SkillVersions):
    """Conversations, messages, tokens, keys, sessions, bots, skill versions and the audit trail, on SQLite or
    PostgreSQL.

    Every method is one short transaction and returns frozen records (``rejoinder.store.records``).
    """
