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
    MAX_SEQ,
    ApiKeyRecord,
    AuditRecord,
    BotRecord,
    CommittedTurn,
    ConversationRecord,
    MessageRecord,
    NewAudit,
    NewMessage,
    NewToken,
    SessionRecord,
    TurnWrite,
)
from rejoinder.store.store import Store
from rejoinder.store.urls import InvalidDatabaseURL, normalize_url

__all__ = [
    "MAX_SEQ",
    "ApiKeyRecord",
    "AuditRecord",
    "BotRecord",
    "CommittedTurn",
    "ConversationRecord",
    "DuplicateClientMessage",
    "InvalidCursor",
    "InvalidDatabaseURL",
    "MessageRecord",
    "NewAudit",
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
