"""Conversations and their messages: committing turns, reading history, listing and erasing."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import asdict
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc
from sqlalchemy.dialects import postgresql

from rejoinder.engine.types import STATE_VERSION_KEY
from rejoinder.store.credentials import token_row
from rejoinder.store.database import Database, insert_on_conflict
from rejoinder.store.errors import DuplicateClientMessage, VersionConflict
from rejoinder.store.hourly import count_by_hour
from rejoinder.store.joined import split_conversation, with_conversation
from rejoinder.store.pagination import Keyset, Page, check_limit, decode_cursor, encode_cursor
from rejoinder.store.prepared import Prepared
from rejoinder.store.records import (
    TEXT_SEARCH_WINDOW,
    CommittedTurn,
    ConversationQuery,
    ConversationRecord,
    ConversationSummary,
    HourCount,
    MessageRecord,
    NewAudit,
    NewMessage,
    TurnWrite,
    as_utc,
)
from rejoinder.store.tables import audit_events, conversations, messages, sessions, tokens
from rejoinder.tokens import TokenRecord

_MESSAGE_COLUMNS = [
    messages.c.conversation_id,
    messages.c.seq,
    messages.c.turn_seq,
    messages.c.sender,
    messages.c.type,
    messages.c.payload,
    messages.c.client_message_id,
    messages.c.created_at,
]


# Every column but the serial id, which the database numbers.
_MESSAGE_ROW_KEYS = [column.key for column in messages.c if column.key != "id"]


def _advance_statement(*, with_user: bool) -> sa.Update:
    """The versioned update of a turn, built once: building it per turn costs more than running it."""
    values: dict[str, Any] = {
        "version": conversations.c.version + 1,
        "last_seq": conversations.c.last_seq + sa.bindparam("count", type_=sa.Integer),
        "status": sa.bindparam("status"),
        "state": sa.bindparam("state", type_=conversations.c.state.type),
        "bot_version": sa.bindparam("bot_version"),
        "skill_id": sa.bindparam("skill_id"),
        "node_id": sa.bindparam("node_id"),
        "updated_at": sa.bindparam("updated_at", type_=conversations.c.updated_at.type),
    }
    if with_user:
        values["user"] = sa.bindparam("user", type_=conversations.c.user.type)
    return (
        sa.update(conversations)
        .where(conversations.c.id == sa.bindparam("conversation"))
        .where(conversations.c.version == sa.bindparam("expected"))
        .values(values)
        .returning(conversations.c.version, conversations.c.last_seq)
    )


_ADVANCE = Prepared(_advance_statement(with_user=False))
_ADVANCE_WITH_USER = Prepared(_advance_statement(with_user=True))


def _rows_of(name: str, *columns: sa.ColumnClause[Any]) -> Any:
    """The rows of a JSON array given as parameter ``name`` (``jsonb_to_recordset``), as a table ``name``."""
    document = sa.bindparam(name, type_=postgresql.JSONB)
    return (
        sa.func.jsonb_to_recordset(document).table_valued(*columns).render_derived(name=name, with_types=True)
    )


def _turn_at_once_statement(*, with_user: bool) -> sa.Select[Any]:
    """A turn's write as one statement (PostgreSQL's data-modifying common table expressions): the versioned
    update, then its messages and tokens inserted only if the update found the conversation at its version.

    Messages and tokens come as JSON arrays (parameters ``said`` and ``issued``), so any number of them is one
    parameter each; a message's ``position`` is its offset in the turn.
    """
    advanced = _advance_statement(with_user=with_user).cte("advanced")
    conversation = sa.bindparam("conversation", type_=sa.String)
    now = sa.bindparam("updated_at", type_=messages.c.created_at.type)
    said = _rows_of(
        "said",
        sa.column("position", sa.Integer),
        sa.column("sender", sa.String),
        sa.column("type", sa.String),
        sa.column("payload", postgresql.JSONB),
        sa.column("client_message_id", sa.String),
        sa.column("pending", postgresql.JSONB),
    )
    # Constants written into the SQL: a bound constant used twice in one statement is not given a value twice.
    first = advanced.c.last_seq - sa.bindparam("count", type_=sa.Integer) + sa.literal_column("1")
    new_messages = messages.insert().from_select(
        [*(key for key in _MESSAGE_ROW_KEYS)],
        sa.select(
            conversation,
            first + said.c.position,
            first,
            said.c.sender,
            said.c.type,
            said.c.payload,
            said.c.client_message_id,
            said.c.pending,
            now,
        ).select_from(advanced.join(said, sa.true())),
    )
    issued = _rows_of(
        "issued",
        sa.column("id", sa.String),
        sa.column("token_hash", sa.String),
        sa.column("expires_at", sa.DateTime(timezone=True)),
        sa.column("max_uses", sa.Integer),
    )
    new_tokens = tokens.insert().from_select(
        ["id", "token_hash", "bot_id", "conversation_id", "created_at", "expires_at", "max_uses", "uses"],
        sa.select(
            issued.c.id,
            issued.c.token_hash,
            sa.bindparam("owner", type_=sa.String),
            conversation,
            now,
            issued.c.expires_at,
            issued.c.max_uses,
            sa.literal_column("0"),
        ).select_from(advanced.join(issued, sa.true())),
    )
    return sa.select(advanced.c.version, advanced.c.last_seq).add_cte(
        new_messages.cte("new_messages"), new_tokens.cte("new_tokens")
    )


_TURN_AT_ONCE = Prepared(_turn_at_once_statement(with_user=False))
_TURN_WITH_USER_AT_ONCE = Prepared(_turn_at_once_statement(with_user=True))

# Built once: a fresh insert() per turn costs a cache-key computation every time.
_INSERT_MESSAGES = Prepared(messages.insert(), column_keys=_MESSAGE_ROW_KEYS)
_INSERT_TOKENS = tokens.insert()
_GET_CONVERSATION = sa.select(conversations).where(conversations.c.id == sa.bindparam("conversation"))
_CONVERSATION_FOR_TURN = Prepared(
    sa.select(
        conversations,
        sa.select(messages.c.seq)
        .where(
            messages.c.conversation_id == conversations.c.id,
            messages.c.client_message_id == sa.bindparam("client_message_id"),
        )
        .scalar_subquery()
        .label("answered"),
    ).where(conversations.c.id == sa.bindparam("conversation"))
)
_LAST_MESSAGES = (
    sa.select(*_MESSAGE_COLUMNS)
    .where(messages.c.conversation_id == sa.bindparam("conversation"))
    .order_by(messages.c.seq.desc())
    .limit(sa.bindparam("limit", type_=sa.Integer))
)

_TOKEN_FIELDS = list(TokenRecord.__dataclass_fields__)
_TOKEN_WITH_CONVERSATION = with_conversation(
    tokens, _TOKEN_FIELDS, tokens.c.token_hash == sa.bindparam("token_hash")
)


class Conversations:
    """Conversation rows and their append-only message history."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def started_by_hour(self, bot_id: str, since: datetime) -> list[HourCount]:
        """Conversations of ``bot_id`` created from ``since``, counted by hour (an indexed range)."""
        conditions = [conversations.c.bot_id == bot_id, conversations.c.created_at >= as_utc(since)]
        return await self._database.read(count_by_hour, conversations.c.created_at, conditions)

    async def commit_turn(self, turn: TurnWrite) -> CommittedTurn:
        """Save one turn atomically: the conversation row, its new messages, its tokens (and, for a created
        conversation, the session it is started with).

        The conversation row is updated only if it is still at ``turn.expected_version`` (else
        :class:`VersionConflict`); new messages get the next ``seq`` numbers. Earlier history is never read.
        """
        now = as_utc(turn.now)  # a naive time is refused before anything is sent to the database
        at_once = None if turn.create else _commit_turn_at_once
        return await self._database.write(_commit_turn, turn, now, at_once=at_once)

    async def get(self, conversation_id: str) -> ConversationRecord | None:
        return await self._database.read(_get_conversation, conversation_id)

    async def token_with_conversation(
        self, token_hash: str, *, history: int = 0
    ) -> tuple[TokenRecord | None, ConversationRecord | None, list[MessageRecord]]:
        """The token with this hash, the conversation it opens (None when erased) and, with ``history``, that
        conversation's newest ``history`` messages, oldest first — all in one call."""
        if history:
            check_limit(history)
        return await self._database.read(_token_with_conversation, token_hash, history)

    async def for_turn(
        self, conversation_id: str, client_message_id: str | None
    ) -> tuple[ConversationRecord | None, bool]:
        """The conversation, and whether a message with ``client_message_id`` is already stored — one query."""
        return await self._database.read(_conversation_for_turn, conversation_id, client_message_id)

    async def messages_after(
        self, conversation_id: str, after: int = 0, limit: int = 100
    ) -> list[MessageRecord]:
        """Up to ``limit`` messages with ``seq > after``, oldest first."""
        statement = (
            sa.select(*_MESSAGE_COLUMNS)
            .where(messages.c.conversation_id == conversation_id, messages.c.seq > after)
            .order_by(messages.c.seq)
            .limit(check_limit(limit))
        )
        rows = await self._database.read(_all_rows, statement)
        return [MessageRecord(**row._mapping) for row in rows]

    async def turn_by_client_message_id(
        self, conversation_id: str, client_message_id: str
    ) -> tuple[list[MessageRecord], dict[str, Any] | None] | None:
        """The whole turn that stored ``client_message_id`` and what the bot waited for after it."""
        turn_seq = (
            sa.select(messages.c.turn_seq)
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.client_message_id == client_message_id,
            )
            .scalar_subquery()
        )
        # A turn's messages are contiguous from its turn_seq: the range keeps the scan on the (conversation, seq) key.
        statement = (
            sa.select(*_MESSAGE_COLUMNS, messages.c.pending)
            .where(
                messages.c.conversation_id == conversation_id,
                messages.c.seq >= turn_seq,
                messages.c.turn_seq == turn_seq,
            )
            .order_by(messages.c.seq)
        )
        rows = await self._database.read(_all_rows, statement)
        if not rows:
            return None
        turn = [MessageRecord(**{k: v for k, v in row._mapping.items() if k != "pending"}) for row in rows]
        return turn, rows[0].pending

    async def list(
        self,
        *,
        bot_id: str,
        status: str | None = None,
        updated_after: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> tuple[list[ConversationRecord], str | None]:
        """A page of a bot's conversations, most recently updated first, and the cursor of the next page."""
        statement = (
            sa.select(conversations)
            .where(conversations.c.bot_id == bot_id)
            .order_by(conversations.c.updated_at.desc(), conversations.c.id)
            .limit(check_limit(limit) + 1)
        )
        if status is not None:
            statement = statement.where(conversations.c.status == status)
        if updated_after is not None:
            statement = statement.where(conversations.c.updated_at > as_utc(updated_after))
        if cursor is not None:
            at, last_id = decode_cursor(cursor, datetime, str)
            statement = statement.where(
                sa.or_(
                    conversations.c.updated_at < at,
                    sa.and_(conversations.c.updated_at == at, conversations.c.id > last_id),
                )
            )
        rows = await self._database.read(_all_rows, statement)
        page = [ConversationRecord(**row._mapping) for row in rows[:limit]]
        more = len(rows) > limit
        return page, encode_cursor(page[-1].updated_at, page[-1].id) if more else None

    async def find(
        self, query: ConversationQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[ConversationSummary]:
        """A page of the bot's conversations that ``query`` matches, most recently updated first; ``cursor`` (from
        a page's ``next_cursor`` or ``previous_cursor``) names the page."""
        records, backward = await self._database.read(_find_conversations, query, cursor, limit)
        return _CONVERSATION_KEYSET.page(
            records, lambda c: (c.updated_at, c.id), cursor=cursor, backward=backward, limit=limit
        )

    async def delete(self, conversation_id: str) -> bool:
        """Erase a conversation with its messages, tokens and sessions. False if there was none.

        Its audit events stay (what happened, and when) without the client's IP address and user agent. On
        SQLite the deleted content is zeroed and no older copy of it is left in the WAL.
        """
        return await self._database.write(_delete_conversation, conversation_id, scrub=True)

    async def erase(self, bot_id: str, conversation_id: str, audit: NewAudit) -> bool:
        """:meth:`delete` of one of ``bot_id``'s conversations, recording ``audit`` in the same
        transaction. False, and nothing written, when the bot has no such conversation."""
        return await self._database.write(
            _erase_conversation, bot_id, conversation_id, audit.row(), scrub=True
        )

    async def count_idle(self, bot_id: str, before: datetime) -> int:
        """How many of the bot's conversations were last updated before ``before``."""
        statement = sa.select(sa.func.count()).where(_idle(bot_id, as_utc(before)))
        return int(await self._database.read(_scalar, statement))

    async def purge_idle(self, bot_id: str, before: datetime, limit: int) -> int:
        """Erase (as :meth:`delete` does) at most ``limit`` of the bot's conversations last updated
        before ``before``, oldest first, in one short transaction; returns how many. Call again until it
        answers less than ``limit``: each call holds the writer only for its own batch."""
        return await self._database.write(_purge_idle, bot_id, as_utc(before), check_limit(limit), scrub=True)


# ------------------------------------------------------------------------------------------------ on a connection


def _all_rows(conn: sa.Connection, statement: sa.Executable) -> list[Any]:
    return list(conn.execute(statement).all())


def _commit_turn(conn: sa.Connection, turn: TurnWrite, now: datetime) -> CommittedTurn:
    count = len(turn.messages)
    if turn.create:
        version, last_seq = _create_conversation(conn, turn, now, count)
    else:
        version, last_seq = _advance_conversation(conn, turn, now, count)
    records = _message_records(turn, now, last_seq)
    if records:
        _insert_messages(conn, records, turn.pending)
    if turn.tokens:
        conn.execute(
            _INSERT_TOKENS,
            [token_row(turn.bot_id, turn.conversation_id, token, now) for token in turn.tokens],
        )
    if turn.session is not None:
        conn.execute(sessions.insert().values(asdict(turn.session)))
    return CommittedTurn(version=version, messages=records)


def _commit_turn_at_once(conn: sa.Connection, turn: TurnWrite, now: datetime) -> CommittedTurn:
    """:func:`_commit_turn` of an existing conversation (no session to open) in one statement."""
    params = _advance_params(turn, now)
    params["owner"] = turn.bot_id  # not "bot_id": a parameter named as a column is SET by the nested UPDATE
    params["said"] = [
        {
            "position": position,
            "sender": message.sender,
            "type": message.type,
            "payload": message.payload,
            "client_message_id": message.client_message_id,
            "pending": turn.pending if position == 0 else None,
        }
        for position, message in enumerate(turn.messages)
    ]
    params["issued"] = [
        {
            "id": token.id,
            "token_hash": token.token_hash,
            "expires_at": as_utc(token.expires_at).isoformat(),
            "max_uses": token.max_uses,
        }
        for token in turn.tokens
    ]
    try:
        row = (_TURN_WITH_USER_AT_ONCE if turn.user is not None else _TURN_AT_ONCE).first(conn, params)
    except sa_exc.IntegrityError as error:
        _raise_duplicate(error, turn.messages, turn.conversation_id)
        raise
    if row is None:
        raise _version_conflict(turn)
    return CommittedTurn(version=row["version"], messages=_message_records(turn, now, row["last_seq"]))


def _message_records(turn: TurnWrite, now: datetime, last_seq: int) -> list[MessageRecord]:
    """The turn's messages as stored: numbered up to the conversation's new ``last_seq``."""
    first_seq = last_seq - len(turn.messages) + 1
    return [
        MessageRecord(
            conversation_id=turn.conversation_id,
            seq=first_seq + offset,
            turn_seq=first_seq,
            sender=message.sender,
            type=message.type,
            payload=message.payload,
            client_message_id=message.client_message_id,
            created_at=now,
        )
        for offset, message in enumerate(turn.messages)
    ]


def bot_version_of(state: dict[str, Any]) -> str | None:
    """The bot version a conversation's state says it runs on, kept in a column of its own to be counted."""
    version = state.get(STATE_VERSION_KEY)
    return version if isinstance(version, str) else None


def _create_conversation(conn: sa.Connection, turn: TurnWrite, now: datetime, count: int) -> tuple[int, int]:
    statement = (
        insert_on_conflict(conn, conversations)
        .values(
            id=turn.conversation_id,
            bot_id=turn.bot_id,
            status=turn.status,
            state=turn.state,
            bot_version=bot_version_of(turn.state),
            skill_id=turn.skill_id,
            node_id=turn.node_id,
            version=1,
            last_seq=count,
            user=turn.user or {},
            created_at=now,
            updated_at=now,
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(conversations.c.id)
    )
    if conn.execute(statement).first() is None:
        raise VersionConflict(f"conversation {turn.conversation_id} already exists")
    return 1, count


def _advance_params(turn: TurnWrite, now: datetime) -> dict[str, Any]:
    params: dict[str, Any] = {
        "conversation": turn.conversation_id,
        "expected": turn.expected_version,
        "count": len(turn.messages),
        "status": turn.status,
        "state": turn.state,
        "bot_version": bot_version_of(turn.state),
        "skill_id": turn.skill_id,
        "node_id": turn.node_id,
        "updated_at": now,
    }
    if turn.user is not None:
        params["user"] = turn.user
    return params


def _advance_conversation(conn: sa.Connection, turn: TurnWrite, now: datetime, count: int) -> tuple[int, int]:
    row = (_ADVANCE_WITH_USER if turn.user is not None else _ADVANCE).first(conn, _advance_params(turn, now))
    if row is None:
        raise _version_conflict(turn)
    return row["version"], row["last_seq"]


def _version_conflict(turn: TurnWrite) -> VersionConflict:
    return VersionConflict(
        f"conversation {turn.conversation_id} is no longer at version {turn.expected_version} "
        "(changed or erased since it was read)"
    )


def _insert_messages(
    conn: sa.Connection, records: list[MessageRecord], pending: dict[str, Any] | None
) -> None:
    rows = [
        {
            "conversation_id": record.conversation_id,
            "seq": record.seq,
            "turn_seq": record.turn_seq,
            "sender": record.sender,
            "type": record.type,
            "payload": record.payload,
            "client_message_id": record.client_message_id,
            "pending": pending if index == 0 else None,
            "created_at": record.created_at,
        }
        for index, record in enumerate(records)
    ]
    try:
        _INSERT_MESSAGES.execute_many(conn, rows)
    except sa_exc.IntegrityError as error:
        _raise_duplicate(error, records, records[0].conversation_id)
        raise


def _raise_duplicate(
    error: sa_exc.IntegrityError, said: Sequence[NewMessage | MessageRecord], conversation_id: str
) -> None:
    """Raise :class:`DuplicateClientMessage` when ``error`` is the unique index of client message ids."""
    if "client_message_id" in str(error.orig):
        ids = [message.client_message_id for message in said if message.client_message_id]
        raise DuplicateClientMessage(
            f"conversation {conversation_id} already has a message with "
            f"client_message_id {', '.join(map(repr, ids))}"
        ) from error


def _get_conversation(conn: sa.Connection, conversation_id: str) -> ConversationRecord | None:
    row = conn.execute(_GET_CONVERSATION, {"conversation": conversation_id}).first()
    return ConversationRecord(**row._mapping) if row else None


def _token_with_conversation(
    conn: sa.Connection, token_hash: str, history: int
) -> tuple[TokenRecord | None, ConversationRecord | None, list[MessageRecord]]:
    row = conn.execute(_TOKEN_WITH_CONVERSATION, {"token_hash": token_hash}).first()
    if row is None:
        return None, None, []
    fields, conversation = split_conversation(dict(row._mapping), _TOKEN_FIELDS)
    token = TokenRecord(**fields)
    if conversation is None:
        return token, None, []
    recent = _last_messages(conn, conversation.id, history) if history else []
    return token, conversation, recent


def _conversation_for_turn(
    conn: sa.Connection, conversation_id: str, client_message_id: str | None
) -> tuple[ConversationRecord | None, bool]:
    params = {"conversation": conversation_id, "client_message_id": client_message_id}
    fields = _CONVERSATION_FOR_TURN.first(conn, params)
    if fields is None:
        return None, False
    answered = fields.pop("answered") is not None
    return ConversationRecord(**fields), answered


def _last_messages(conn: sa.Connection, conversation_id: str, limit: int) -> list[MessageRecord]:
    rows = conn.execute(_LAST_MESSAGES, {"conversation": conversation_id, "limit": limit}).all()
    return [MessageRecord(**row._mapping) for row in reversed(rows)]


def _delete_conversation(conn: sa.Connection, conversation_id: str) -> bool:
    return _delete_conversations(conn, [conversation_id]) > 0


def _erase_conversation(
    conn: sa.Connection, bot_id: str, conversation_id: str, audit_row: dict[str, Any]
) -> bool:
    owner = conn.execute(
        sa.select(conversations.c.bot_id).where(conversations.c.id == conversation_id)
    ).scalar()
    if owner != bot_id:
        return False
    _delete_conversations(conn, [conversation_id])
    conn.execute(audit_events.insert(), audit_row)
    return True


def _delete_conversations(conn: sa.Connection, ids: list[str]) -> int:
    """Delete conversations with everything that refers to them; their audit events lose the client's traces."""
    for table in (sessions, tokens, messages):
        conn.execute(sa.delete(table).where(table.c.conversation_id.in_(ids)))
    result = conn.execute(sa.delete(conversations).where(conversations.c.id.in_(ids)))
    conn.execute(
        sa.update(audit_events)
        .where(audit_events.c.conversation_id.in_(ids))
        .values(ip=None, user_agent=None)
    )
    return int(result.rowcount)


def _find_conversations(
    conn: sa.Connection, query: ConversationQuery, cursor: str | None, limit: int
) -> tuple[list[ConversationSummary], bool]:
    statement, backward = _CONVERSATION_KEYSET.select(
        sa.select(*_SUMMARY_COLUMNS).where(*_conversation_conditions(query, conn.dialect.name)), cursor, limit
    )
    return [ConversationSummary(**row._mapping) for row in conn.execute(statement)], backward


_SUMMARY_COLUMNS = [conversations.c[name] for name in ConversationSummary.__dataclass_fields__]


_CONVERSATION_KEYSET = Keyset((conversations.c.updated_at, conversations.c.id), (datetime, str))


def _conversation_conditions(query: ConversationQuery, dialect: str) -> list[sa.ColumnElement[bool]]:
    bot: sa.ColumnElement[str] = conversations.c.bot_id
    if query.text is not None:
        # The text's matches (at most the search window's) drive the query, by primary key: on the bot's index,
        # SQLite would walk every conversation of the bot looking for them. `|| ''` keeps it off that index.
        bot = bot.concat("")
    where = [bot == query.bot_id]
    if query.status is not None:
        where.append(conversations.c.status == query.status)
    if query.skill_id is not None:
        where.append(conversations.c.skill_id == query.skill_id)
    if query.bot_version is not None:
        where.append(conversations.c.bot_version == query.bot_version)
    if query.user_id is not None:
        where.append(conversations.c.user["id"].as_string() == query.user_id)
    if query.updated_after is not None:
        where.append(conversations.c.updated_at > as_utc(query.updated_after))
    if query.conversation_id is not None:
        where.append(conversations.c.id == query.conversation_id)
    if query.token_id is not None:
        owner = sa.select(tokens.c.conversation_id).where(
            tokens.c.id == query.token_id, tokens.c.bot_id == query.bot_id
        )
        where.append(conversations.c.id == owner.scalar_subquery())
    if query.text is not None:
        where.append(conversations.c.id.in_(_customer_wrote(query.text, dialect)))
    return where


def _customer_wrote(text: str, dialect: str) -> sa.Select[Any]:
    """The conversations with a customer message containing ``text`` among the newest messages: the window is a
    range of the messages' primary key, so the search reads at most TEXT_SEARCH_WINDOW rows."""
    newest = sa.select(sa.func.max(messages.c.id)).scalar_subquery()
    said = messages.c.payload["text"].as_string()
    where = [messages.c.id > newest - TEXT_SEARCH_WINDOW, messages.c.sender == "customer"]
    if dialect == "sqlite" and _PLAIN_ASCII.fullmatch(text):
        # Plain ASCII text is in the stored JSON as typed, and SQLite's LIKE ignores ASCII case: this test of the
        # raw row rules out most rows at a third of the cost of extracting their text.
        where.append(sa.cast(messages.c.payload, sa.Text).contains(text, autoescape=True))
    where.append(sa.func.lower(said).contains(text.lower(), autoescape=True))
    return sa.select(messages.c.conversation_id).where(*where)


# Printable ASCII that JSON writes as it is (no quote, no backslash).
_PLAIN_ASCII = re.compile(r"[ !#-\[\]-~]+")


def _idle(bot_id: str, before: datetime) -> sa.ColumnElement[bool]:
    return sa.and_(conversations.c.bot_id == bot_id, conversations.c.updated_at < before)


def _scalar(conn: sa.Connection, statement: sa.Executable) -> Any:
    return conn.execute(statement).scalar_one()


def _purge_idle(conn: sa.Connection, bot_id: str, before: datetime, limit: int) -> int:
    # The (bot_id, updated_at) index finds the oldest first without a scan.
    ids = list(
        conn.execute(
            sa.select(conversations.c.id)
            .where(_idle(bot_id, before))
            .order_by(conversations.c.updated_at)
            .limit(limit)
        ).scalars()
    )
    return _delete_conversations(conn, ids) if ids else 0
