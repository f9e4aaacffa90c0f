"""The store: every read and write the service and the server make, each in one short transaction."""

from __future__ import annotations

from rejoinder.store.access import Access
from rejoinder.store.conversations import Conversations


class Store(Conversations, Access):
    """Conversations, messages, tokens, keys, sessions, bots and the audit trail, on SQLite or PostgreSQL.

    Every method is one short transaction and returns frozen records (``rejoinder.store.records``).
    """
