"""The schema as SQLAlchemy Core tables. Migrations must produce exactly this (a test compares them)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

from rejoinder.store.records import LATENCY_BUCKET_COLUMNS

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the database gives back.

    SQLite has no time zones: values are stored as naive UTC and get their ``tzinfo`` back on the way out.
    """

    impl = sa.DateTime
    cache_ok = True

    def __init__(self) -> None:
        super().__init__(timezone=True)

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: the store only takes timezone-aware datetimes")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _json() -> sa.types.TypeEngine[Any]:
    # none_as_null: Python None is SQL NULL, not the JSON text 'null'.
    return sa.JSON(none_as_null=True).with_variant(postgresql.JSONB(none_as_null=True), "postgresql")


# SQLite only auto-increments an INTEGER PRIMARY KEY (the rowid alias), not a BIGINT one.
_SERIAL = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

bots = sa.Table(
    "bots",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("name", sa.String, nullable=True),
    sa.Column("version", sa.String, nullable=False),
    sa.Column("config", _json(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
)

conversations = sa.Table(
    "conversations",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("status", sa.String, nullable=False),
    sa.Column("state", _json(), nullable=False),
    sa.Column(
        "bot_version", sa.String, nullable=True
    ),  # the state's bot version, to count conversations by it
    sa.Column("skill_id", sa.String, nullable=True),
    sa.Column("node_id", sa.String, nullable=True),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("last_seq", sa.Integer, nullable=False),
    sa.Column("user", _json(), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("status IN ('active', 'closed')", name="status"),
    sa.Index(None, "bot_id", "updated_at", "id"),
    sa.Index(None, "status"),
    sa.Index(None, "bot_id", "bot_version", "status"),
    sa.Index(None, "bot_id", "created_at"),  # conversations started, counted by hour
)

messages = sa.Table(
    "messages",
    metadata,
    sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("conversation_id", sa.String, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
    sa.Column("turn_seq", sa.Integer, nullable=False),
    sa.Column("sender", sa.String, nullable=False),
    sa.Column("type", sa.String, nullable=False),
    sa.Column("payload", _json(), nullable=False),
    sa.Column("client_message_id", sa.String, nullable=True),
    sa.Column("pending", _json(), nullable=True),  # only on a turn's first message
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.CheckConstraint("sender IN ('customer', 'bot', 'system')", name="sender"),
    sa.UniqueConstraint("conversation_id", "seq"),
    sa.UniqueConstraint("conversation_id", "client_message_id"),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("token_hash", sa.String, nullable=False, unique=True),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("conversation_id", sa.String, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("max_uses", sa.Integer, nullable=True),
    sa.Column("uses", sa.Integer, nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Index(None, "conversation_id"),
    sa.Index(None, "bot_id", "created_at", "id"),
)

audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", _SERIAL, primary_key=True, autoincrement=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("conversation_id", sa.String, nullable=True),  # no foreign key: the trail outlives an erasure
    sa.Column("token_id", sa.String, nullable=True),
    sa.Column("ip", sa.String, nullable=True),
    sa.Column("user_agent", sa.String, nullable=True),
    sa.Column("outcome", sa.String, nullable=False),
    sa.Column("detail", _json(), nullable=True),
    sa.Index(None, "bot_id", "id"),
    sa.Index(None, "conversation_id", "id"),
    sa.Index(None, "bot_id", "kind", "at"),  # resumes by outcome, counted by hour
)

api_keys = sa.Table(
    "api_keys",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("kind", sa.String, nullable=False),
    sa.Column("key_hash", sa.String, nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("kind IN ('sdk', 'secret')", name="kind"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("session_hash", sa.String, nullable=False, unique=True),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("conversation_id", sa.String, sa.ForeignKey("conversations.id"), nullable=False),
    sa.Column("token_id", sa.String, sa.ForeignKey("tokens.id"), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index(None, "conversation_id"),
    sa.Index(None, "token_id"),
)

# Skills uploaded through the admin API: every change, and every bot version a conversation may run on.
skill_versions = sa.Table(
    "skill_versions",
    metadata,
    sa.Column(
        "id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    ),
    sa.Column("bot_id", sa.String, nullable=False),
    sa.Column("skill_id", sa.String, nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("deleted", sa.Boolean, nullable=False),
    sa.Column("definition", _json(), nullable=True),  # the parsed skill; NULL for a deletion
    sa.Column("source", sa.Text, nullable=True),  # the text as uploaded
    sa.Column("media_type", sa.String, nullable=True),  # application/yaml or application/json
    sa.Column("bot_version", sa.String, nullable=False),  # the bot version this change made
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("changed_by", sa.String, nullable=True),  # who: a key id or console:<email>; NULL before 0004
    sa.UniqueConstraint("bot_id", "skill_id", "version"),
    sa.Index(None, "bot_id", "id"),
)

bot_versions = sa.Table(
    "bot_versions",
    metadata,
    sa.Column("bot_id", sa.String, primary_key=True),
    sa.Column("version", sa.String, primary_key=True),
    sa.Column("skills", _json(), nullable=False),  # {skill id: skill as JSON}
    sa.Column("created_at", UTCDateTime(), nullable=False),
)

# People who sign in to the console (/dashboard). The email is stored lowercased, so it is unique whatever its case.
console_users = sa.Table(
    "console_users",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("email", sa.String, nullable=False, unique=True),
    sa.Column("password_hash", sa.String, nullable=False),
    sa.Column("role", sa.String, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("password_changed_at", UTCDateTime(), nullable=False),
    sa.Column("disabled_at", UTCDateTime(), nullable=True),
    sa.CheckConstraint("role IN ('owner', 'editor', 'viewer')", name="role"),
)

# A signed-in browser. Only the SHA-256 of the cookie's secret is kept; the CSRF token is derived from the secret.
console_sessions = sa.Table(
    "console_sessions",
    metadata,
    sa.Column("id", sa.String, primary_key=True),
    sa.Column("session_hash", sa.String, nullable=False, unique=True),
    sa.Column("user_id", sa.String, sa.ForeignKey("console_users.id"), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("last_seen_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Column("ended_at", UTCDateTime(), nullable=True),
    sa.Index(None, "user_id"),
)

# What each server process saw in an hour, added to its row once a minute (never a write per turn): turns run,
# Integrate calls that failed, resumes refused by the rate limit, and turn latency as counts per bucket
# (records.LATENCY_BOUNDS_MS).
turn_stats = sa.Table(
    "turn_stats",
    metadata,
    sa.Column("bot_id", sa.String, primary_key=True),
    sa.Column("hour", UTCDateTime(), primary_key=True),
    sa.Column("turns", sa.BigInteger, nullable=False),
    sa.Column("integrate_failures", sa.BigInteger, nullable=False),
    sa.Column("rate_limited_resumes", sa.BigInteger, nullable=False),
    *(sa.Column(name, sa.BigInteger, nullable=False) for name in LATENCY_BUCKET_COLUMNS),
)
