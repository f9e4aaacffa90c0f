"""Console accounts and their sessions: the people who sign in to ``/dashboard`` and the browsers they use.

Every change to an account is written together with its audit event, in one transaction. Disabling an account or
changing its password ends its sessions in that same transaction, so a browser signed in before is out at once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy import exc as sa_exc

from rejoinder.store.database import Database
from rejoinder.store.records import ConsoleSessionRecord, ConsoleUserRecord, NewAudit, as_utc
from rejoinder.store.tables import audit_events, console_sessions, console_users

# The most accounts one listing returns: a console is run by a team, not a crowd.
MAX_LISTED_USERS = 1000


class Users:
    """Console users and sessions, over the shared :class:`Database`."""

    def __init__(self, database: Database) -> None:
        self._database = database

    async def create(self, user: ConsoleUserRecord, audit: NewAudit) -> bool:
        """Store ``user`` (its email lowercased) with ``audit``; False, and nothing written, when the email is
        taken."""
        return await self._database.write(_create, _user_row(user), audit.row())

    async def by_email(self, email: str) -> ConsoleUserRecord | None:
        return await self._database.read(_user_by_email, email.lower())

    async def get(self, user_id: str) -> ConsoleUserRecord | None:
        return await self._database.read(_user_by_id, user_id)

    async def all(self) -> list[ConsoleUserRecord]:
        """Every account (at most :data:`MAX_LISTED_USERS`), oldest first."""
        return await self._database.read(_list_users)

    async def count_active_owners(self) -> int:
        return await self._database.read(_count_active_owners)

    async def disable(self, user_id: str, audit: NewAudit) -> ConsoleUserRecord | None:
        """Disable the account (kept if already disabled) and end its sessions, with ``audit``; None when there is
        no such account."""
        return await self._database.write(_disable, user_id, as_utc(audit.at), audit.row())

    async def set_password(
        self, user_id: str, password_hash: str, at: datetime, audit: NewAudit | None
    ) -> ConsoleUserRecord | None:
        """Replace the password hash. With ``audit`` (a reset) the account's sessions end too; without it (a
        rehash at sign-in, the same password under stronger parameters) they stay."""
        row = audit.row() if audit is not None else None
        return await self._database.write(_set_password, user_id, password_hash, as_utc(at), row)

    async def open_session(self, session: ConsoleSessionRecord, audit: NewAudit) -> None:
        await self._database.write(_open_session, _session_row(session), audit.row())

    async def session(self, session_hash: str) -> tuple[ConsoleSessionRecord, ConsoleUserRecord] | None:
        """The session with this hash and its user, whatever their state (ended, expired, disabled)."""
        return await self._database.read(_session_with_user, session_hash)

    async def touch_session(self, session_id: str, at: datetime) -> None:
        await self._database.write(_touch_session, session_id, as_utc(at))

    async def end_session(self, session_id: str, audit: NewAudit) -> bool:
        """End the session (False when it had ended already), with ``audit``."""
        return await self._database.write(_end_session, session_id, as_utc(audit.at), audit.row())


def _user_row(user: ConsoleUserRecord) -> dict[str, Any]:
    return {
        "id": user.id,
        "email": user.email.lower(),
        "password_hash": user.password_hash,
        "role": user.role,
        "created_at": as_utc(user.created_at),
        "password_changed_at": as_utc(user.password_changed_at),
        "disabled_at": user.disabled_at,
    }


def _session_row(session: ConsoleSessionRecord) -> dict[str, Any]:
    return {
        "id": session.id,
        "session_hash": session.session_hash,
        "user_id": session.user_id,
        "created_at": as_utc(session.created_at),
        "last_seen_at": as_utc(session.last_seen_at),
        "expires_at": as_utc(session.expires_at),
        "ended_at": session.ended_at,
    }


def _user(row: Any) -> ConsoleUserRecord:
    return ConsoleUserRecord(
        id=row.id,
        email=row.email,
        password_hash=row.password_hash,
        role=row.role,
        created_at=row.created_at,
        password_changed_at=row.password_changed_at,
        disabled_at=row.disabled_at,
    )


def _create(conn: sa.Connection, user_row: dict[str, Any], audit_row: dict[str, Any]) -> bool:
    # A savepoint: a taken email rolls back this insert alone, never the writes committed alongside it.
    try:
        with conn.begin_nested():
            conn.execute(console_users.insert(), user_row)
    except sa_exc.IntegrityError:
        return False
    conn.execute(audit_events.insert(), audit_row)
    return True


def _user_by_email(conn: sa.Connection, email: str) -> ConsoleUserRecord | None:
    row = conn.execute(sa.select(console_users).where(console_users.c.email == email)).first()
    return _user(row) if row is not None else None


def _user_by_id(conn: sa.Connection, user_id: str) -> ConsoleUserRecord | None:
    row = conn.execute(sa.select(console_users).where(console_users.c.id == user_id)).first()
    return _user(row) if row is not None else None


def _list_users(conn: sa.Connection) -> list[ConsoleUserRecord]:
    statement = (
        sa.select(console_users)
        .order_by(console_users.c.created_at, console_users.c.email)
        .limit(MAX_LISTED_USERS)
    )
    return [_user(row) for row in conn.execute(statement)]


def _count_active_owners(conn: sa.Connection) -> int:
    statement = (
        sa.select(sa.func.count())
        .select_from(console_users)
        .where(console_users.c.role == "owner", console_users.c.disabled_at.is_(None))
    )
    return int(conn.execute(statement).scalar_one())


def _end_sessions_of(conn: sa.Connection, user_id: str, at: datetime) -> None:
    conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.user_id == user_id, console_sessions.c.ended_at.is_(None))
        .values(ended_at=at)
    )


def _disable(
    conn: sa.Connection, user_id: str, at: datetime, audit_row: dict[str, Any]
) -> ConsoleUserRecord | None:
    conn.execute(
        sa.update(console_users)
        .where(console_users.c.id == user_id, console_users.c.disabled_at.is_(None))
        .values(disabled_at=at)
    )
    user = _user_by_id(conn, user_id)
    if user is None:
        return None
    _end_sessions_of(conn, user_id, at)
    conn.execute(audit_events.insert(), audit_row)
    return user


def _set_password(
    conn: sa.Connection, user_id: str, password_hash: str, at: datetime, audit_row: dict[str, Any] | None
) -> ConsoleUserRecord | None:
    changed = conn.execute(
        sa.update(console_users)
        .where(console_users.c.id == user_id)
        .values(password_hash=password_hash, password_changed_at=at)
    )
    if changed.rowcount == 0:
        return None
    if audit_row is not None:
        _end_sessions_of(conn, user_id, at)
        conn.execute(audit_events.insert(), audit_row)
    return _user_by_id(conn, user_id)


def _open_session(conn: sa.Connection, session_row: dict[str, Any], audit_row: dict[str, Any]) -> None:
    conn.execute(console_sessions.insert(), session_row)
    conn.execute(audit_events.insert(), audit_row)


# A session and its user in one statement: the user's columns as account_<name>.
_SESSION_WITH_USER = sa.select(
    console_sessions, *(column.label(f"account_{column.key}") for column in console_users.c)
).join(console_users, console_users.c.id == console_sessions.c.user_id)


def _session_with_user(
    conn: sa.Connection, session_hash: str
) -> tuple[ConsoleSessionRecord, ConsoleUserRecord] | None:
    row = conn.execute(_SESSION_WITH_USER.where(console_sessions.c.session_hash == session_hash)).first()
    if row is None:
        return None
    session = ConsoleSessionRecord(
        id=row.id,
        session_hash=row.session_hash,
        user_id=row.user_id,
        created_at=row.created_at,
        last_seen_at=row.last_seen_at,
        expires_at=row.expires_at,
        ended_at=row.ended_at,
    )
    user = ConsoleUserRecord(
        id=row.user_id,
        email=row.account_email,
        password_hash=row.account_password_hash,
        role=row.account_role,
        created_at=row.account_created_at,
        password_changed_at=row.account_password_changed_at,
        disabled_at=row.account_disabled_at,
    )
    return session, user


def _touch_session(conn: sa.Connection, session_id: str, at: datetime) -> None:
    conn.execute(
        sa.update(console_sessions).where(console_sessions.c.id == session_id).values(last_seen_at=at)
    )


def _end_session(conn: sa.Connection, session_id: str, at: datetime, audit_row: dict[str, Any]) -> bool:
    ended = conn.execute(
        sa.update(console_sessions)
        .where(console_sessions.c.id == session_id, console_sessions.c.ended_at.is_(None))
        .values(ended_at=at)
    )
    if ended.rowcount == 0:
        return False
    conn.execute(audit_events.insert(), audit_row)
    return True
