"""Plain frozen records that cross the store's boundary (never ORM or Row objects)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

_RESERVED_API_KEYS = frozenset({"seq", "sender", "type", "created_at", "pending"})


def as_utc(moment: datetime) -> datetime:
    """``moment`` in UTC; a naive datetime is refused rather than guessed at."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment!r}: pass a timezone-aware datetime")
    return moment.astimezone(UTC)


def iso_z(moment: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix and millisecond precision, as the API shows times."""
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class ConversationRecord:
    id: str
    bot_id: str
    status: str
    state: dict[str, Any]
    skill_id: str | None
    node_id: str | None
    version: int
    last_seq: int
    user: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    bot_version: str | None = (
        None  # the bot version it runs on (also in ``state``), NULL before migration 0004
    )


@dataclass(frozen=True)
class ConversationSummary:
    """A conversation as a list shows it: its record without the state (variables and all), which a list never
    needs and which is most of what a row costs to read."""

    id: str
    bot_id: str
    status: str
    skill_id: str | None
    node_id: str | None
    last_seq: int
    user: dict[str, Any]
    created_at: datetime
    updated_at: datetime


# The largest message seq the store can hold: its columns are 32-bit INTEGER.
MAX_SEQ = 2**31 - 1


@dataclass(frozen=True)
class MessageRecord:
    conversation_id: str
    seq: int
    turn_seq: int  # seq of the first message of the turn that made this one
    sender: str
    type: str
    payload: dict[str, Any]
    client_message_id: str | None
    created_at: datetime

    def to_api(self) -> dict[str, Any]:
        """The API's message item: ``{seq, sender, type, text, buttons?, …, created_at}``."""
        item: dict[str, Any] = {"seq": self.seq, "sender": self.sender, "type": self.type}
        item["text"] = self.payload.get("text", "")
        item.update((k, v) for k, v in self.payload.items() if k not in _RESERVED_API_KEYS)
        item["created_at"] = iso_z(self.created_at)
        return item


@dataclass(frozen=True)
class NewMessage:
    sender: str  # customer | bot | system
    type: str
    payload: dict[str, Any]
    client_message_id: str | None = None


@dataclass(frozen=True)
class NewToken:
    """A token to store: its public id and the SHA-256 of its secret."""

    id: str
    token_hash: str
    expires_at: datetime
    max_uses: int | None


@dataclass(frozen=True)
class TurnWrite:
    """Everything one turn changes, committed together by ``Store.conversations.commit_turn``."""

    conversation_id: str
    bot_id: str
    create: bool
    expected_version: int  # ignored on create (a new conversation starts at version 1)
    state: dict[str, Any]
    status: str
    skill_id: str | None
    node_id: str | None
    messages: list[NewMessage]
    tokens: list[NewToken]
    pending: dict[str, Any] | None  # what the bot waits for after this turn
    now: datetime
    user: dict[str, Any] | None = None  # None keeps the stored user on update
    session: SessionRecord | None = None  # opened with a created conversation, in the same transaction


@dataclass(frozen=True)
class CommittedTurn:
    version: int
    messages: list[MessageRecord] = field(default_factory=list)


@dataclass(frozen=True)
class NewAudit:
    """An audit event to write (an :class:`AuditRecord` before the store numbers it)."""

    kind: str
    bot_id: str
    outcome: str
    at: datetime
    conversation_id: str | None = None
    token_id: str | None = None
    ip: str | None = None
    user_agent: str | None = None
    detail: dict[str, Any] | None = None

    def row(self) -> dict[str, Any]:
        return {**asdict(self), "at": as_utc(self.at)}


@dataclass(frozen=True)
class AuditRecord:
    id: int
    at: datetime
    kind: str
    bot_id: str
    conversation_id: str | None
    token_id: str | None
    ip: str | None
    user_agent: str | None
    outcome: str
    detail: dict[str, Any] | None


@dataclass(frozen=True)
class BotRecord:
    id: str
    name: str | None
    version: str
    config: dict[str, Any]
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class ApiKeyRecord:
    id: str
    bot_id: str
    kind: str  # sdk | secret
    key_hash: str
    created_at: datetime
    revoked_at: datetime | None
    last_used_at: datetime | None = None  # to within a minute


@dataclass(frozen=True)
class SessionRecord:
    id: str
    session_hash: str
    bot_id: str
    conversation_id: str
    token_id: str | None
    created_at: datetime
    expires_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True)
class ConsoleUserRecord:
    """A person who signs in to the console; ``role`` is owner, editor or viewer."""

    id: str
    email: str
    password_hash: str = field(repr=False)
    role: str
    created_at: datetime
    password_changed_at: datetime
    disabled_at: datetime | None


@dataclass(frozen=True)
class ConsoleSessionRecord:
    """A signed-in browser, known by the SHA-256 of its cookie's secret."""

    id: str
    session_hash: str
    user_id: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None


@dataclass(frozen=True)
class ConversationQuery:
    """Which of a bot's conversations a list shows; every field given narrows it.

    ``text``: conversations with a customer message containing it (case-insensitive for ASCII letters), among the
    store's newest :data:`TEXT_SEARCH_WINDOW` messages — a bounded search, however large the history.
    """

    bot_id: str
    status: str | None = None
    skill_id: str | None = None
    bot_version: str | None = None
    user_id: str | None = None
    updated_after: datetime | None = None
    conversation_id: str | None = None
    token_id: str | None = None
    text: str | None = None


# How many of the newest messages a text search reads (at most), whatever the database holds.
TEXT_SEARCH_WINDOW = 10_000

TokenStatus = Literal["active", "revoked", "expired", "used_up"]


@dataclass(frozen=True)
class TokenQuery:
    """Which of a bot's tokens a list shows; ``status`` is judged at ``now`` (revoked before expired before used
    up, as a resume judges them)."""

    bot_id: str
    now: datetime
    conversation_id: str | None = None
    status: TokenStatus | None = None


# The key of an audit event's detail that names who acted: an API key's id, or ``console:<email>``.
AUDIT_ACTOR_KEY = "key_id"


@dataclass(frozen=True)
class AuditQuery:
    """Which of a bot's audit events a list shows. ``actor``: who acted, as the event's detail names them
    (:data:`AUDIT_ACTOR_KEY`). ``since`` inclusive, ``until`` exclusive."""

    bot_id: str
    conversation_id: str | None = None
    kind: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


# Upper bounds (milliseconds) of the turn-latency buckets kept per bot and hour; a last bucket holds the slower.
LATENCY_BOUNDS_MS = (25, 50, 100, 250, 500, 1000, 2500, 5000, 10000)
LATENCY_BUCKET_COLUMNS = (*(f"latency_le_{bound}ms" for bound in LATENCY_BOUNDS_MS), "latency_over")


@dataclass(frozen=True)
class TurnStats:
    """What server processes counted for a bot in the hour starting at ``hour``; the store adds these up."""

    bot_id: str
    hour: datetime
    turns: int = 0
    integrate_failures: int = 0
    rate_limited_resumes: int = 0
    latency: tuple[int, ...] = (0,) * len(LATENCY_BUCKET_COLUMNS)  # turns per bucket of LATENCY_BOUNDS_MS


@dataclass(frozen=True)
class HourCount:
    """How many of something began in the hour starting at ``hour`` (``outcome`` for resumes, else None)."""

    hour: datetime
    count: int
    outcome: str | None = None
