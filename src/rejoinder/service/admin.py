"""What an operator reads: a bot's conversations (filtered, searched, paged), one conversation whole (transcript,
variables, position, tokens, audit trail), the bot's tokens and its audit trail, also as CSV.

Every read is bounded: pages by ``limit``, a text search by the store's window of newest messages, an export by
:data:`EXPORT_ROWS`. What an operator changes (issue, revoke, erase) is in :mod:`.resume`.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from rejoinder.credentials import CONVERSATION_ID_PREFIX, PUBLIC_ID_DIGITS, TOKEN_ID_PREFIX
from rejoinder.engine import STATE_VERSION_KEY, ConversationState
from rejoinder.service.errors import ConversationNotFound, ServiceError
from rejoinder.service.shared import ServiceParts
from rejoinder.store import AuditRecord, ConversationRecord, MessageRecord
from rejoinder.store.pagination import Page
from rejoinder.store.records import (
    AUDIT_ACTOR_KEY,
    AuditQuery,
    ConversationQuery,
    ConversationSummary,
    TokenQuery,
    TokenStatus,
    iso_z,
)
from rejoinder.tokens import TokenRecord

# The longest search an operator may type: a text search reads a bounded window whatever its length, but a
# pattern is compared with every message in it.
MAX_SEARCH_CHARS = 200
# The most rows one CSV export holds; a longer trail is exported in parts with since/until.
EXPORT_ROWS = 100_000
_EXPORT_BATCH = 500

_CONVERSATION_ID = re.compile(f"{CONVERSATION_ID_PREFIX}{PUBLIC_ID_DIGITS}")
_TOKEN_ID = re.compile(f"{TOKEN_ID_PREFIX}{PUBLIC_ID_DIGITS}")

AUDIT_CSV_COLUMNS = (
    "id",
    "at",
    "kind",
    "outcome",
    "actor",
    "conversation_id",
    "token_id",
    "ip",
    "user_agent",
)
# A spreadsheet runs a cell that starts with one of these as a formula: such text is exported with a quote first.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass(frozen=True)
class ConversationFilters:
    """The filters of a conversations list; ``search`` is a conversation id or a token id (exact), or else text
    the customer wrote (see :class:`rejoinder.store.records.ConversationQuery`)."""

    status: str | None = None
    skill_id: str | None = None
    bot_version: str | None = None
    user_id: str | None = None
    updated_after: datetime | None = None
    search: str | None = None


@dataclass(frozen=True)
class TokenFilters:
    """The filters of a tokens list; ``status`` is judged when the list is read."""

    conversation_id: str | None = None
    status: TokenStatus | None = None


@dataclass(frozen=True)
class AuditFilters:
    """The filters of an audit trail (see :class:`rejoinder.store.records.AuditQuery`)."""

    conversation_id: str | None = None
    kind: str | None = None
    actor: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True)
class ConversationView:
    """One conversation as an operator reads it: a stretch of its transcript, its variables and position."""

    conversation: ConversationRecord
    bot_version: str | None
    variables: dict[str, Any]
    waiting: str | None
    pending: dict[str, Any] | None  # what the bot waits for now, on the version the conversation runs on
    messages: list[MessageRecord]
    next_after: int | None  # the seq to read on from, when the transcript goes on past these messages


def audit_actor(event: AuditRecord) -> str | None:
    """Who made an audited change: the API key or console user its detail names; None for a customer's act."""
    named = (event.detail or {}).get(AUDIT_ACTOR_KEY)
    return named if isinstance(named, str) else None


class AdminReads(ServiceParts):
    """An operator's reads of one bot's conversations, tokens and audit trail."""

    async def list_conversations(
        self, bot_id: str, filters: ConversationFilters, *, limit: int = 50, cursor: str | None = None
    ) -> Page[ConversationSummary]:
        """A page of the bot's conversations, most recently updated first (a bad ``cursor``: InvalidCursor)."""
        return await self.store.conversations.find(
            _conversation_query(bot_id, filters), limit=limit, cursor=cursor
        )

    async def conversation_of(self, bot_id: str | None, conversation_id: str) -> ConversationRecord:
        """The bot's conversation ``conversation_id``; another bot's is missing alike (``bot_id`` None: any
        bot's)."""
        conversation = await self.store.conversations.get(conversation_id)
        if conversation is None or bot_id not in (None, conversation.bot_id):
            raise ConversationNotFound(f"The bot has no conversation {conversation_id!r}.")
        return conversation

    async def view_conversation(
        self, bot_id: str | None, conversation_id: str, *, after: int = 0, limit: int = 500
    ) -> ConversationView:
        """The conversation with up to ``limit`` of its messages after ``after``, its variables and position."""
        conversation = await self.conversation_of(bot_id, conversation_id)
        messages = await self.store.conversations.messages_after(conversation_id, after, limit)
        saved = {k: v for k, v in conversation.state.items() if k in ConversationState.__dataclass_fields__}
        more = bool(messages) and messages[-1].seq < conversation.last_seq
        return ConversationView(
            conversation=conversation,
            bot_version=conversation.state.get(STATE_VERSION_KEY),
            variables=saved.get("variables", {}),
            waiting=saved.get("waiting"),
            pending=await self.pending(conversation),
            messages=messages,
            next_after=messages[-1].seq if more else None,
        )

    async def messages_since(
        self, bot_id: str, conversation_id: str, *, after: int, limit: int = 100
    ) -> list[MessageRecord]:
        """The bot's conversation's messages after ``after`` (ConversationNotFound once it is erased)."""
        await self.conversation_of(bot_id, conversation_id)
        return await self.store.conversations.messages_after(conversation_id, after, limit)

    async def conversation_tokens(self, bot_id: str, conversation_id: str) -> list[TokenRecord]:
        """Every token of the bot's conversation, oldest first (metadata: a token's secret is never stored)."""
        await self.conversation_of(bot_id, conversation_id)
        return await self.store.credentials.list_tokens(conversation_id)

    async def list_tokens(
        self, bot_id: str, filters: TokenFilters, *, limit: int = 50, cursor: str | None = None
    ) -> Page[TokenRecord]:
        """A page of the bot's tokens, newest first; ``status`` is judged now."""
        return await self.store.credentials.find_tokens(
            _token_query(bot_id, filters, self.clock()), limit=limit, cursor=cursor
        )

    async def list_audit(
        self, bot_id: str, filters: AuditFilters, *, limit: int = 100, cursor: str | None = None
    ) -> Page[AuditRecord]:
        """A page of the bot's audit events, newest first."""
        return await self.store.audit.find(_audit_query(bot_id, filters), limit=limit, cursor=cursor)

    async def export_audit(
        self, bot_id: str, filters: AuditFilters, *, rows: int = EXPORT_ROWS
    ) -> AsyncIterator[str]:
        """The audit events the filters match as CSV text, newest first, a batch of lines at a time: one store
        read per batch, never the whole trail in memory, at most ``rows`` events."""
        query = _audit_query(bot_id, filters)
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(AUDIT_CSV_COLUMNS)
        yield _drain(buffer)
        cursor: str | None = None
        left = rows
        while left > 0:
            page = await self.store.audit.find(query, limit=min(_EXPORT_BATCH, left), cursor=cursor)
            for event in page.items:
                writer.writerow([_cell(value) for value in _audit_row(event)])
            left -= len(page.items)
            yield _drain(buffer)
            if page.next_cursor is None:
                return
            cursor = page.next_cursor


# ------------------------------------------------------------------------------------------------ the lists' queries


def _conversation_query(bot_id: str, filters: ConversationFilters) -> ConversationQuery:
    return ConversationQuery(
        bot_id=bot_id,
        status=filters.status,
        skill_id=filters.skill_id,
        bot_version=filters.bot_version,
        user_id=filters.user_id,
        updated_after=filters.updated_after,
        **_search_terms(filters.search),
    )


def _token_query(bot_id: str, filters: TokenFilters, now: datetime) -> TokenQuery:
    return TokenQuery(bot_id=bot_id, now=now, conversation_id=filters.conversation_id, status=filters.status)


def _audit_query(bot_id: str, filters: AuditFilters) -> AuditQuery:
    return AuditQuery(
        bot_id=bot_id,
        conversation_id=filters.conversation_id,
        kind=filters.kind,
        actor=filters.actor,
        since=filters.since,
        until=filters.until,
    )


def _search_terms(search: str | None) -> dict[str, str]:
    """What a search box's text asks for: a conversation id or token id exactly, or else words in the transcript."""
    text = (search or "").strip()
    if not text:
        return {}
    if len(text) > MAX_SEARCH_CHARS:
        raise ServiceError(f"A search is at most {MAX_SEARCH_CHARS} characters; this one has {len(text)}.")
    if _CONVERSATION_ID.fullmatch(text):
        return {"conversation_id": text}
    if _TOKEN_ID.fullmatch(text):
        return {"token_id": text}
    return {"text": text}


def _audit_row(event: AuditRecord) -> list[Any]:
    return [
        event.id,
        iso_z(event.at),
        event.kind,
        event.outcome,
        audit_actor(event),
        event.conversation_id,
        event.token_id,
        event.ip,
        event.user_agent,
    ]


def _cell(value: Any) -> Any:
    if isinstance(value, str) and value.startswith(_FORMULA_STARTS):
        return "'" + value
    return value


def _drain(buffer: io.StringIO) -> str:
    text = buffer.getvalue()
    buffer.seek(0)
    buffer.truncate()
    return text
