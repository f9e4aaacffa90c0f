"""Who may reach a conversation: its tokens, the sessions opened with them, and the bots' API keys."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from rejoinder.store.database import Database
from rejoinder.store.joined import split_conversation, with_conversation
from rejoinder.store.pagination import Keyset, Page
from rejoinder.store.prepared import Prepared
from rejoinder.store.records import (
    ApiKeyRecord,
    ConversationRecord,
    NewAudit,
    NewToken,
    SessionRecord,
    TokenQuery,
    TokenStatus,
    as_utc,
)
from rejoinder.store.tables import api_keys, audit_events, messages, sessions, tokens
from rejoinder.tokens import TokenRecord

# What listing a bot's keys shows at most (rotations add keys; the newest matter).
MAX_API_KEYS_LISTED = 500

_TOKEN_COLUMNS = [tokens.c[name] for name in TokenRecord.__dataclass_fields__]

# One use of a token, counted only while it is still valid; built once like the turn's statements.
_CONSUME_TOKEN = (
    sa.update(tokens)
    .where(
        tokens.c.id == sa.bindparam("token_id"),
        tokens.c.revoked_at.is_(None),
        tokens.c.expires_at > sa.bindparam("now", type_=tokens.c.expires_at.type),
        sa.or_(tokens.c.max_uses.is_(None), tokens.c.uses < tokens.c.max_uses),
    )
    .values(uses=tokens.c.uses + 1, last_used_at=sa.bindparam("now", type_=tokens.c.last_used_at.type))
)
_FIND_SESSION = Prepared(sa.select(sessions).where(sessions.c.session_hash == sa.bindparam("session_hash")))
_SESSION_FIELDS = list(SessionRecord.__dataclass_fields__)
_SESSION_WITH_CONVERSATION = with_conversation(
    sessions, _SESSION_FIELDS, sessions.c.session_hash == sa.bindparam("session_hash")
)
# A turn's one read: the session, its conversation, and whether the client's message id is stored there already.
_SESSION_FOR_TURN = Prepared(
    _SESSION_WITH_CONVERSATION.add_columns(
        sa.select(messages.c.seq)
        .where(
            messages.c.conversation_id == sessions.c.conversation_id,
            messages.c.client_message_id == sa.bindparam("client_message_id"),
        )
        .scalar_subquery()
        .label("answered")
    )
)


class Credentials:
    """Conversation tokens, the sessions they open, and API keys."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def insert_token(
        self,
        bot_id: str,
        conversation_id: str,
        token: NewToken,
        now: datetime,
        *,
        audit: NewAudit | None = None,
    ) -> TokenRecord:
        """Store a token issued outside a turn (the admin API), with its ``audit`` event in the same transaction."""
        now = as_utc(now)
        audit_row = audit.row() if audit is not None else None
        await self._database.write(_insert_token, token_row(bot_id, conversation_id, token, now), audit_row)
        return TokenRecord(
            id=token.id,
            bot_id=bot_id,
            conversation_id=conversation_id,
            created_at=now,
            expires_at=as_utc(token.expires_at),
            max_uses=token.max_uses,
            uses=0,
            revoked_at=None,
            last_used_at=None,
        )

    async def find_token_by_hash(self, token_hash: str) -> TokenRecord | None:
        row = await self._database.read(
            _first, sa.select(*_TOKEN_COLUMNS).where(tokens.c.token_hash == token_hash)
        )
        return TokenRecord(**row._mapping) if row else None

    async def spend_token(
        self,
        token_id: str,
        now: datetime,
        *,
        audit: NewAudit | None = None,
        session: SessionRecord | None = None,
    ) -> bool:
        """Count one use, only if the token is still valid at ``now`` (concurrent calls never overspend it), and
        only then write ``audit`` and create ``session`` — all in one transaction. False, and nothing written,
        when the token is no longer valid."""
        params = {"token_id": token_id, "now": as_utc(now)}
        audit_row = audit.row() if audit is not None else None
        session_row = _as_row(session) if session is not None else None
        return await self._database.write(
            _spend_token, params, audit_row, session_row, at_once=_spend_token_at_once
        )

    async def list_tokens(self, conversation_id: str) -> list[TokenRecord]:
        statement = (
            sa.select(*_TOKEN_COLUMNS)
            .where(tokens.c.conversation_id == conversation_id)
            .order_by(tokens.c.created_at, tokens.c.id)
        )
        rows = await self._database.read(_all_rows, statement)
        return [TokenRecord(**row._mapping) for row in rows]

    async def revoke_token(self, token_id: str, now: datetime) -> TokenRecord | None:
        """Revoke a token (idempotent) and end the sessions opened with it. None if there is no such token."""
        row = await self._database.write(_revoke_token, token_id, as_utc(now))
        return TokenRecord(**row._mapping) if row else None

    async def find_tokens(
        self, query: TokenQuery, *, limit: int = 50, cursor: str | None = None
    ) -> Page[TokenRecord]:
        """A page of the bot's tokens that ``query`` matches (metadata only), newest first."""
        statement, backward = _TOKEN_KEYSET.select(
            sa.select(*_TOKEN_COLUMNS).where(*_token_conditions(query)), cursor, limit
        )
        rows = await self._database.read(_all_rows, statement)
        records = [TokenRecord(**row._mapping) for row in rows]
        return _TOKEN_KEYSET.page(
            records, lambda t: (t.created_at, t.id), cursor=cursor, backward=backward, limit=limit
        )

    async def create_api_key(
        self, bot_id: str, kind: str, key_hash: str, key_id: str, now: datetime
    ) -> ApiKeyRecord:
        record = ApiKeyRecord(
            id=key_id, bot_id=bot_id, kind=kind, key_hash=key_hash, created_at=as_utc(now), revoked_at=None
        )
        await self._database.write(_execute, api_keys.insert().values(_as_row(record)))
        return record

    async def find_api_key(self, key_hash: str) -> ApiKeyRecord | None:
        row = await self._database.read(_first, sa.select(api_keys).where(api_keys.c.key_hash == key_hash))
        return ApiKeyRecord(**row._mapping) if row else None

    async def create_api_keys(self, keys: Sequence[ApiKeyRecord], audit: NewAudit | None = None) -> None:
        """Store new API keys (their hashes), with ``audit`` in the same transaction."""
        rows = [_as_row(replace(key, created_at=as_utc(key.created_at))) for key in keys]
        await self._database.write(_insert_api_keys, rows, audit.row() if audit is not None else None)

    async def list_api_keys(self, bot_id: str) -> list[ApiKeyRecord]:
        """The bot's API keys, newest first (at most ``MAX_API_KEYS_LISTED``)."""
        statement = (
            sa.select(api_keys)
            .where(api_keys.c.bot_id == bot_id)
            .order_by(api_keys.c.created_at.desc(), api_keys.c.id)
            .limit(MAX_API_KEYS_LISTED)
        )
        rows = await self._database.read(_all_rows, statement)
        return [ApiKeyRecord(**row._mapping) for row in rows]

    async def get_api_key(self, key_id: str) -> ApiKeyRecord | None:
        row = await self._database.read(_first, sa.select(api_keys).where(api_keys.c.id == key_id))
        return ApiKeyRecord(**row._mapping) if row else None

    async def revoke_api_key(self, key_id: str, now: datetime, audit: NewAudit) -> ApiKeyRecord | None:
        """Make a key stop at ``now`` (a retiring one too) and record ``audit``, in one transaction. None, and
        nothing written, when it had stopped already."""
        return await self._database.write(_revoke_api_key, key_id, as_utc(now), audit.row())

    async def rotate_api_key(
        self, key_id: str, retires_at: datetime, new: ApiKeyRecord, audit: NewAudit
    ) -> ApiKeyRecord | None:
        """Make an active key stop at ``retires_at``, store ``new`` and record ``audit``, in one transaction; the
        old key as it is now. None, and nothing written, when the key was not active (revoked or retiring)."""
        new_row = _as_row(replace(new, created_at=as_utc(new.created_at)))
        return await self._database.write(_rotate_api_key, key_id, as_utc(retires_at), new_row, audit.row())

    async def note_api_key_used(self, key_id: str, at: datetime) -> None:
        """Record that a key was used at ``at`` (an earlier moment never overwrites a later one)."""
        used = api_keys.c.last_used_at
        statement = (
            api_keys.update()
            .where(api_keys.c.id == key_id, sa.or_(used.is_(None), used < as_utc(at)))
            .values(last_used_at=as_utc(at))
        )
        await self._database.write(_execute, statement)

    async def find_session(self, session_hash: str) -> SessionRecord | None:
        fields = await self._database.read(_find_session, session_hash)
        return SessionRecord(**fields) if fields else None

    async def session_for_turn(
        self, session_hash: str, client_message_id: str | None
    ) -> tuple[SessionRecord | None, ConversationRecord | None, bool]:
        """A session, its conversation (None once erased) and whether a message with ``client_message_id`` is
        stored in it already — the one read of a turn."""
        params = {"session_hash": session_hash, "client_message_id": client_message_id}
        row = await self._database.read(_session_for_turn, params)
        if row is None:
            return None, None, False
        answered = row.pop("answered") is not None
        session, conversation = split_conversation(row, _SESSION_FIELDS)
        return SessionRecord(**session), conversation, answered and conversation is not None

    async def replace_session(self, old_session_id: str, new: SessionRecord, now: datetime) -> None:
        """Open ``new`` and end the session ``old_session_id`` in one transaction."""
        await self._database.write(_replace_session, old_session_id, _as_row(new), as_utc(now))

    async def revoke_bot_token(self, bot_id: str, token_id: str, audit: NewAudit) -> TokenRecord | None:
        """Revoke one of ``bot_id``'s tokens (idempotent), end the sessions opened with it and record ``audit``
        (for the token's conversation), all in one transaction. None, and nothing written, if the bot has no
        such token."""
        row = await self._database.write(_revoke_bot_token, bot_id, token_id, audit)
        return TokenRecord(**row._mapping) if row else None


def token_row(bot_id: str, conversation_id: str, token: NewToken, now: datetime) -> dict[str, Any]:
    """The ``tokens`` row of a token issued at ``now`` (in a turn or by the admin API)."""
    return {
        "id": token.id,
        "token_hash": token.token_hash,
        "bot_id": bot_id,
        "conversation_id": conversation_id,
        "created_at": now,
        "expires_at": as_utc(token.expires_at),
        "max_uses": token.max_uses,
        "uses": 0,
    }


_TOKEN_KEYSET = Keyset((tokens.c.created_at, tokens.c.id), (datetime, str))


def _token_conditions(query: TokenQuery) -> list[sa.ColumnElement[bool]]:
    where = [tokens.c.bot_id == query.bot_id]
    if query.conversation_id is not None:
        where.append(tokens.c.conversation_id == query.conversation_id)
    if query.status is not None:
        where.append(_token_status(query.status, as_utc(query.now)))
    return where


def _token_status(status: TokenStatus, now: datetime) -> sa.ColumnElement[bool]:
    """The tokens in ``status`` at ``now``, judged in the order a resume judges them."""
    revoked = tokens.c.revoked_at.is_not(None)
    expired = tokens.c.expires_at <= now
    used_up = sa.and_(tokens.c.max_uses.is_not(None), tokens.c.uses >= tokens.c.max_uses)
    if status == "revoked":
        return revoked
    if status == "expired":
        return sa.and_(sa.not_(revoked), expired)
    if status == "used_up":
        return sa.and_(sa.not_(revoked), sa.not_(expired), used_up)
    return sa.and_(sa.not_(revoked), sa.not_(expired), sa.not_(used_up))


def _as_row(record: ApiKeyRecord | SessionRecord) -> dict[str, Any]:
    return {name: getattr(record, name) for name in record.__dataclass_fields__}


# ------------------------------------------------------------------------------------------------ on a connection


def _execute(conn: sa.Connection, statement: sa.Executable, params: dict[str, Any] | None = None) -> None:
    conn.execute(statement, params)


def _first(
    conn: sa.Connection, statement: sa.Executable, params: dict[str, Any] | None = None
) -> sa.Row[Any] | None:
    return conn.execute(statement, params).first()


def _all_rows(conn: sa.Connection, statement: sa.Executable) -> list[Any]:
    return list(conn.execute(statement).all())


def _insert_api_keys(
    conn: sa.Connection, rows: list[dict[str, Any]], audit_row: dict[str, Any] | None
) -> None:
    conn.execute(api_keys.insert(), rows)
    if audit_row is not None:
        conn.execute(audit_events.insert(), audit_row)


def _revoke_api_key(
    conn: sa.Connection, key_id: str, now: datetime, audit_row: dict[str, Any]
) -> ApiKeyRecord | None:
    still_valid = sa.or_(api_keys.c.revoked_at.is_(None), api_keys.c.revoked_at > now)
    changed = conn.execute(
        sa.update(api_keys).where(api_keys.c.id == key_id, still_valid).values(revoked_at=now)
    )
    if changed.rowcount != 1:
        return None
    conn.execute(audit_events.insert(), audit_row)
    return _api_key(conn, key_id)


def _rotate_api_key(
    conn: sa.Connection, key_id: str, retires_at: datetime, new_row: dict[str, Any], audit_row: dict[str, Any]
) -> ApiKeyRecord | None:
    retiring = (
        sa.update(api_keys)
        .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=retires_at)
    )
    if conn.execute(retiring).rowcount != 1:
        return None
    conn.execute(api_keys.insert(), new_row)
    conn.execute(audit_events.insert(), audit_row)
    return _api_key(conn, key_id)


def _api_key(conn: sa.Connection, key_id: str) -> ApiKeyRecord | None:
    row = conn.execute(sa.select(api_keys).where(api_keys.c.id == key_id)).first()
    return ApiKeyRecord(**row._mapping) if row else None


def _find_session(conn: sa.Connection, session_hash: str) -> dict[str, Any] | None:
    return _FIND_SESSION.first(conn, {"session_hash": session_hash})  # read on every request with a session


def _insert_token(conn: sa.Connection, token_row: dict[str, Any], audit_row: dict[str, Any] | None) -> None:
    conn.execute(tokens.insert().values(token_row))
    if audit_row is not None:
        conn.execute(audit_events.insert(), audit_row)


def _session_for_turn(conn: sa.Connection, params: dict[str, Any]) -> dict[str, Any] | None:
    return _SESSION_FOR_TURN.first(conn, params)  # read on every turn


def _replace_session(
    conn: sa.Connection, old_session_id: str, new_row: dict[str, Any], now: datetime
) -> None:
    conn.execute(sessions.insert(), new_row)
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.id == old_session_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )


def _revoke_bot_token(conn: sa.Connection, bot_id: str, token_id: str, audit: NewAudit) -> sa.Row[Any] | None:
    if conn.execute(sa.select(tokens.c.bot_id).where(tokens.c.id == token_id)).scalar() != bot_id:
        return None
    row = _revoke_token(conn, token_id, as_utc(audit.at))
    if row is not None:
        conn.execute(audit_events.insert(), replace(audit, conversation_id=row.conversation_id).row())
    return row


def _spend_token(
    conn: sa.Connection,
    params: dict[str, Any],
    audit_row: dict[str, Any] | None,
    session_row: dict[str, Any] | None,
) -> bool:
    if conn.execute(_CONSUME_TOKEN, params).rowcount != 1:
        return False
    if audit_row is not None:
        conn.execute(audit_events.insert(), audit_row)
    if session_row is not None:
        conn.execute(sessions.insert(), session_row)
    return True


def _spend_token_at_once(
    conn: sa.Connection,
    params: dict[str, Any],
    audit_row: dict[str, Any] | None,
    session_row: dict[str, Any] | None,
) -> bool:
    """:func:`_spend_token` as one statement (data-modifying CTEs): the audit event and the session are inserted
    only if the use was counted."""
    statement = _spend_statement(
        tuple(audit_row) if audit_row is not None else (),
        tuple(session_row) if session_row is not None else (),
    )
    values = dict(params)
    values.update({f"audit_{key}": value for key, value in (audit_row or {}).items()})
    values.update({f"session_{key}": value for key, value in (session_row or {}).items()})
    return statement.first(conn, values) is not None


@functools.cache
def _spend_statement(audit_keys: tuple[str, ...], session_keys: tuple[str, ...]) -> Prepared:
    """The statement of :func:`_spend_token_at_once` for rows with these columns (built once per shape).

    Its parameters are the rows' columns prefixed ``audit_`` and ``session_``: a parameter named as a column of
    ``tokens`` would be SET by the nested UPDATE.
    """
    spent = _CONSUME_TOKEN.returning(tokens.c.id).cte("spent")
    writes = [
        table.insert()
        .from_select(
            list(keys),
            sa.select(*(sa.bindparam(f"{prefix}{key}", type_=table.c[key].type) for key in keys)).select_from(
                spent
            ),
        )
        .cte(f"new_{prefix}row")
        for table, prefix, keys in (
            (audit_events, "audit_", audit_keys),
            (sessions, "session_", session_keys),
        )
        if keys
    ]
    return Prepared(sa.select(spent.c.id).add_cte(*writes))


def _revoke_token(conn: sa.Connection, token_id: str, now: datetime) -> sa.Row[Any] | None:
    conn.execute(
        sa.update(tokens).where(tokens.c.id == token_id, tokens.c.revoked_at.is_(None)).values(revoked_at=now)
    )
    conn.execute(
        sa.update(sessions)
        .where(sessions.c.token_id == token_id, sessions.c.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return conn.execute(sa.select(*_TOKEN_COLUMNS).where(tokens.c.id == token_id)).first()
