"""Console accounts: who may sign in to ``/dashboard``, with which role, and the sessions they sign in with.

Passwords are hashed with argon2id (argon2-cffi's :class:`PasswordHasher`, memory-hard), off the event loop and
at most ``concurrent_hashes`` at a time per worker, so a flood of sign-ins queues for the hasher instead of
starving every other request. A hash made under older parameters is made again at the next successful sign-in.

Sign-in failures are counted per account and per client IP (IPv6: its /64) in sliding windows (in this process,
or in Redis when the server has one); once either is over its limit, sign-ins wait, right or wrong. A wrong
password, an unknown email and a disabled account are refused alike, after the same work: an unknown email is
verified against a dummy hash.

A session is a random secret in the browser's cookie; the store keeps only its SHA-256. It ends when its user
signs out, after ``idle_timeout`` without a request, at ``lifetime`` after sign-in whatever happens, and when its
user is disabled or has their password reset.

A session found in the store is kept in this process for ``session_recheck`` seconds (5), so that a page makes one
store read (its own), not two. Expiry is judged on every request all the same; signing out, disabling and resetting
a password through this process end the session here at once; done by another worker or the command line, within
``session_recheck`` seconds.

Every change is written with its audit event, naming who made it (:class:`~rejoinder.service.resume.Actor`:
``console:<email>`` for a console user, ``cli`` for the command line).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rejoinder.credentials import (
    CONSOLE_SESSION_ID_PREFIX,
    CONSOLE_SESSION_PREFIX,
    CONSOLE_USER_ID_PREFIX,
    hash_secret,
    new_public_id,
    new_secret,
)
from rejoinder.server.addresses import client_key
from rejoinder.service.errors import (
    AccountExists,
    AccountNotFound,
    InvalidAccount,
    LastOwner,
    SignInRefused,
    SignInThrottled,
)
from rejoinder.service.resume import Actor
from rejoinder.service.shared import utcnow
from rejoinder.store.records import ConsoleSessionRecord, ConsoleUserRecord
from rejoinder.store.users import Users

ROLES: Sequence[str] = ("viewer", "editor", "owner")  # each may do what the ones before it may
MIN_PASSWORD_LENGTH = 12
MAX_PASSWORD_LENGTH = 1024  # what a visitor may make the hasher read
MAX_EMAIL_LENGTH = 254

# Console events concern no one bot: their audit events carry an empty bot id (the admin API, which lists a
# bot's events, never shows them).
CONSOLE_AUDIT_BOT = ""
CLI_ACTOR = Actor(key_id="cli")

# How long a sign-in waits for the hasher before it is answered "busy".
HASH_QUEUE_TIMEOUT = 10.0
# How long a session read from the store is trusted in this process before it is read again: the longest a session
# ended by another worker (or the command line) goes on working here. At most this many are kept.
SESSION_RECHECK_SECONDS = 5.0
RECENT_SESSIONS = 1000


class FailureCounter(Protocol):
    """Failures per key in a sliding window (``rejoinder.server.ratelimit``'s windows are such)."""

    async def retry_after(self, key: str) -> float: ...

    async def add(self, key: str) -> None: ...


@dataclass(frozen=True)
class SignInLimits:
    """Failed sign-ins counted per account (by email) and per client IP."""

    per_account: FailureCounter
    per_ip: FailureCounter

    @classmethod
    def in_memory(
        cls,
        *,
        account_limit: int = 10,
        ip_limit: int = 50,
        window: float = 900.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> SignInLimits:
        from rejoinder.server.ratelimit import MemoryFailureWindow  # the server's windows import the service

        return cls(
            MemoryFailureWindow(account_limit, window, clock=clock),
            MemoryFailureWindow(ip_limit, window, clock=clock),
        )


@dataclass(frozen=True)
class SignedIn:
    """A session just opened: ``secret`` goes into the browser's cookie, and is not kept anywhere else."""

    secret: str
    session: ConsoleSessionRecord
    user: ConsoleUserRecord


@dataclass(frozen=True)
class ConsoleSession:
    """A live session and its user, as a request finds them."""

    session: ConsoleSessionRecord
    user: ConsoleUserRecord


def role_allows(role: str, needed: str) -> bool:
    """Whether ``role`` may do what ``needed`` may (an owner does all an editor does, an editor all a viewer
    does)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def console_actor(user: ConsoleUserRecord, ip: str | None = None, user_agent: str | None = None) -> Actor:
    """How the audit trail names a console user's change."""
    return Actor(key_id=f"console:{user.email}", ip=ip, user_agent=user_agent)


class Accounts:
    """Creating, listing, disabling console users and resetting their passwords; signing in and out; sessions."""

    def __init__(
        self,
        users: Users,
        *,
        limits: SignInLimits,
        hasher: PasswordHasher | None = None,
        idle_timeout: float = 1800,
        lifetime: float = 12 * 3600,
        concurrent_hashes: int = 2,
        session_recheck: float = SESSION_RECHECK_SECONDS,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.users = users
        self.limits = limits
        self.hasher = hasher or PasswordHasher()
        self.idle_timeout = timedelta(seconds=idle_timeout)
        self.lifetime = timedelta(seconds=lifetime)
        self.clock = clock
        # A session's last request is written at most this often: not a write per page view.
        self.touch_every = min(timedelta(seconds=60), self.idle_timeout / 10)
        self._hashing = asyncio.Semaphore(concurrent_hashes)
        self._dummy_hash: str | None = None
        self._recent = RecentSessions(timedelta(seconds=session_recheck), RECENT_SESSIONS)

    # ------------------------------------------------------------------------------------------ accounts

    async def create_user(self, email: str, role: str, password: str, actor: Actor) -> ConsoleUserRecord:
        email = check_email(email)
        check_role(role)
        check_password(password)
        now = self.clock()
        user = ConsoleUserRecord(
            id=new_public_id(CONSOLE_USER_ID_PREFIX),
            email=email,
            password_hash=await self._hash(password),
            role=role,
            created_at=now,
            password_changed_at=now,
            disabled_at=None,
        )
        audit = actor.audit("console_user_created", CONSOLE_AUDIT_BOT, now, user=email, role=role)
        if not await self.users.create(user, audit):
            raise AccountExists(f"There is already a console user {email}.")
        return user

    async def list_users(self) -> list[ConsoleUserRecord]:
        return await self.users.all()

    async def user(self, user_id: str) -> ConsoleUserRecord:
        found = await self.users.get(user_id)
        if found is None:
            raise AccountNotFound("There is no such console user.")
        return found

    async def user_by_email(self, email: str) -> ConsoleUserRecord:
        found = await self.users.by_email(email.strip()) if len(email) <= MAX_EMAIL_LENGTH else None
        if found is None:
            raise AccountNotFound(f"There is no console user {email.strip()}.")
        return found

    async def disable_user(self, user_id: str, actor: Actor) -> ConsoleUserRecord:
        """Disable the account and end its sessions; the last owner who can sign in cannot be disabled."""
        user = await self.user(user_id)
        if user.role == "owner" and user.disabled_at is None and await self.users.count_active_owners() <= 1:
            raise LastOwner(f"{user.email} is the only owner left: make another owner first.")
        audit = actor.audit("console_user_disabled", CONSOLE_AUDIT_BOT, self.clock(), user=user.email)
        disabled = await self.users.disable(user_id, audit)
        self._recent.forget_user(user_id)
        if disabled is None:
            raise AccountNotFound("There is no such console user.")
        return disabled

    async def reset_password(self, user_id: str, password: str, actor: Actor) -> ConsoleUserRecord:
        """Give the account a new password and end its sessions."""
        check_password(password)
        user = await self.user(user_id)
        now = self.clock()
        audit = actor.audit("console_password_reset", CONSOLE_AUDIT_BOT, now, user=user.email)
        changed = await self.users.set_password(user_id, await self._hash(password), now, audit)
        self._recent.forget_user(user_id)
        if changed is None:
            raise AccountNotFound("There is no such console user.")
        return changed

    # ------------------------------------------------------------------------------------------ sessions

    async def sign_in(
        self, email: str, password: str, *, ip: str | None = None, user_agent: str | None = None
    ) -> SignedIn:
        """Open a session for the account with this email and password, or refuse (:class:`SignInRefused`,
        :class:`SignInThrottled`)."""
        normalized = email.strip().lower()[:MAX_EMAIL_LENGTH]
        # Counted by a hash: the counters (in Redis, say) hold no email address.
        account_key = hashlib.sha256(normalized.encode()).hexdigest()
        ip_key = client_key(ip)
        wait = max(
            await self.limits.per_account.retry_after(account_key),
            await self.limits.per_ip.retry_after(ip_key),
        )
        if wait > 0:
            seconds = max(math.ceil(wait), 1)
            raise SignInThrottled(f"Too many failed sign-ins. Try again in {seconds} s.", seconds)
        user = await self.users.by_email(normalized) if len(email) <= MAX_EMAIL_LENGTH else None
        verified = False
        if len(password) <= MAX_PASSWORD_LENGTH:
            stored = user.password_hash if user is not None else await self._dummy()
            verified = await self._verify(stored, password) and user is not None
        if not verified or user is None or user.disabled_at is not None:
            await self.limits.per_account.add(account_key)
            await self.limits.per_ip.add(ip_key)
            raise SignInRefused("The email or password is not right, or the account is disabled.")
        now = self.clock()
        if self.hasher.check_needs_rehash(user.password_hash):
            rehashed = await self.users.set_password(user.id, await self._hash(password), now, None)
            user = rehashed or user
        secret = new_secret(CONSOLE_SESSION_PREFIX)
        session = ConsoleSessionRecord(
            id=new_public_id(CONSOLE_SESSION_ID_PREFIX),
            session_hash=hash_secret(secret),
            user_id=user.id,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.lifetime,
            ended_at=None,
        )
        actor = console_actor(user, ip, user_agent)
        await self.users.open_session(
            session, actor.audit("console_signed_in", CONSOLE_AUDIT_BOT, now, session_id=session.id)
        )
        self._recent.keep(ConsoleSession(session, user), now)
        return SignedIn(secret, session, user)

    async def session(self, secret: str) -> ConsoleSession | None:
        """The live session whose cookie holds ``secret``; None when unknown, ended, idle too long, past its
        lifetime, or its user disabled."""
        if not secret.startswith(CONSOLE_SESSION_PREFIX) or len(secret) > 100:
            return None
        session_hash = hash_secret(secret)
        now = self.clock()
        found = self._recent.get(session_hash, now)
        if found is None or not self._live(found, now):
            # Only the store says a session is over: one kept here that looks over is read again.
            stored = await self.users.session(session_hash)
            if stored is None:
                self._recent.forget(session_hash)
                return None
            found = ConsoleSession(*stored)
            if not self._live(found, now):
                self._recent.forget(session_hash)
                return None
            self._recent.keep(found, now)
        if now - found.session.last_seen_at >= self.touch_every:
            await self.users.touch_session(found.session.id, now)
            found = ConsoleSession(replace(found.session, last_seen_at=now), found.user)
            self._recent.update(found)
        return found

    def _live(self, found: ConsoleSession, now: datetime) -> bool:
        session = found.session
        return (
            session.ended_at is None
            and found.user.disabled_at is None
            and now < session.expires_at
            and now - session.last_seen_at < self.idle_timeout
        )

    async def sign_out(self, found: ConsoleSession, actor: Actor) -> None:
        audit = actor.audit(
            "console_signed_out", CONSOLE_AUDIT_BOT, self.clock(), session_id=found.session.id
        )
        await self.users.end_session(found.session.id, audit)
        self._recent.forget(found.session.session_hash)

    # ------------------------------------------------------------------------------------------ hashing

    async def _hash(self, password: str) -> str:
        async with self._hasher_slot():
            return await asyncio.to_thread(self.hasher.hash, password)

    async def _verify(self, stored: str, password: str) -> bool:
        async with self._hasher_slot():
            return await asyncio.to_thread(_verify, self.hasher, stored, password)

    async def _dummy(self) -> str:
        """A hash of a random password under the current parameters, for emails no account has."""
        if self._dummy_hash is None:
            self._dummy_hash = await self._hash(new_secret(""))
        return self._dummy_hash

    def _hasher_slot(self) -> _Slot:
        return _Slot(self._hashing)


class RecentSessions:
    """Sessions read from the store in the last ``recheck``, by hash: at most ``size``, the least recently used
    dropped first."""

    def __init__(self, recheck: timedelta, size: int) -> None:
        self.recheck = recheck
        self.size = size
        self._kept: OrderedDict[str, tuple[ConsoleSession, datetime]] = OrderedDict()

    def get(self, session_hash: str, now: datetime) -> ConsoleSession | None:
        """The session kept for this hash, unless it was read ``recheck`` ago or more (or the clock went back)."""
        kept = self._kept.get(session_hash)
        if kept is None:
            return None
        found, read_at = kept
        if not read_at <= now < read_at + self.recheck:
            del self._kept[session_hash]
            return None
        self._kept.move_to_end(session_hash)
        return found

    def keep(self, found: ConsoleSession, read_at: datetime) -> None:
        """Keep ``found``, just read from the store at ``read_at``."""
        if self.recheck <= timedelta(0):
            return
        self._kept[found.session.session_hash] = (found, read_at)
        self._kept.move_to_end(found.session.session_hash)
        while len(self._kept) > self.size:
            self._kept.popitem(last=False)

    def update(self, found: ConsoleSession) -> None:
        """Replace a kept session by a newer form of it, as old as the one replaced (a touch is no read)."""
        kept = self._kept.get(found.session.session_hash)
        if kept is not None:
            self._kept[found.session.session_hash] = (found, kept[1])

    def forget(self, session_hash: str) -> None:
        self._kept.pop(session_hash, None)

    def forget_user(self, user_id: str) -> None:
        for session_hash in [h for h, (found, _) in self._kept.items() if found.user.id == user_id]:
            del self._kept[session_hash]

    def __len__(self) -> int:
        return len(self._kept)


class _Slot:
    """One of the hasher's places, waited for at most :data:`HASH_QUEUE_TIMEOUT`."""

    def __init__(self, semaphore: asyncio.Semaphore) -> None:
        self.semaphore = semaphore

    async def __aenter__(self) -> None:
        try:
            await asyncio.wait_for(self.semaphore.acquire(), HASH_QUEUE_TIMEOUT)
        except TimeoutError:
            raise SignInThrottled(
                "The console is busy checking passwords. Try again in a few seconds.", 5
            ) from None

    async def __aexit__(self, *exc: object) -> None:
        self.semaphore.release()


def _verify(hasher: PasswordHasher, stored: str, password: str) -> bool:
    try:
        return hasher.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def check_email(email: str) -> str:
    """The email as stored (trimmed, lowercased), or :class:`InvalidAccount`."""
    email = email.strip().lower()
    local, at, domain = email.rpartition("@")
    if (
        not at
        or not local
        or "." not in domain
        or len(email) > MAX_EMAIL_LENGTH
        or any(c.isspace() for c in email)
    ):
        raise InvalidAccount("Give an email address such as ada@example.com.")
    return email


def check_role(role: str) -> None:
    if role not in ROLES:
        raise InvalidAccount(f"The role must be one of {', '.join(reversed(ROLES))}.")


def check_password(password: str) -> None:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise InvalidAccount(f"The password must have at least {MIN_PASSWORD_LENGTH} characters.")
    if len(password) > MAX_PASSWORD_LENGTH:
        raise InvalidAccount(f"The password must have at most {MAX_PASSWORD_LENGTH} characters.")
