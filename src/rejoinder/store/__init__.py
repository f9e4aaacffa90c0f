"""Persistence: SQLAlchemy Core tables, the async :class:`Store`, and Alembic migrations (SQLite or PostgreSQL)."""

from rejoinder.store.errors import (
    DuplicateClientMessage,
    InvalidCursor,
    StorageFull,
    StoreError,
    StoreUnavailable,
    VersionConflict,
)
from rejoinder.store.records import (
    ApiKeyRecord,
    AuditRecord,
    BotRecord,
    CommittedTurn,
    ConversationRecord,
    MessageRecord,
    NewMessage,
    NewToken,
    SessionRecord,
    TurnWrite,
)
from rejoinder.store.store import Store
from rejoinder.store.urls import InvalidDatabaseURL, normalize_url

__all__ = [
    "ApiKeyRecord",
    "AuditRecord",
    "BotRecord",
    "CommittedTurn",
    "ConversationRecord",
    "DuplicateClientMessage",
    "InvalidCursor",
    "InvalidDatabaseURL",
    "MessageRecord",
    "NewMessage",
    "NewToken",
    "SessionRecord",
    "StorageFull",
    "Store",
    "StoreError",
    "StoreUnavailable",
    "TurnWrite",
    "VersionConflict",
    "normalize_url",
]
