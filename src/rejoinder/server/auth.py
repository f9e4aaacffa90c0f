"""Who is calling: API keys, sessions, the Origin rules of API.md, and verified user identity.

API keys (``pk_`` SDK key, ``sk_`` secret key) and sessions (``ses_``) are credentials as
:mod:`rejoinder.credentials` spells them, stored only as their SHA-256. Credentials never appear in logs or error
texts; sessions are named by their public id (``sid_…``).
A valid API key is remembered by each server process for ``KEY_CACHE_SECONDS`` after it was read, so revoking
a key in the database takes effect within that time.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import time
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.requests import HTTPConnection

from rejoinder.credentials import (
    KEY_ID_PREFIX,
    SDK_KEY_PREFIX,
    SECRET_KEY_PREFIX,
    SESSION_ID_PREFIX,
    SESSION_PREFIX,
    hash_secret,
    new_public_id,
    new_secret,
)
from rejoinder.server.errors import Problem, problem_for
from rejoinder.service import ConversationService, NewSession, SessionRefused, UnknownBot
from rejoinder.skills.model import Bot, parse_duration
from rejoinder.store import ApiKeyRecord, SessionRecord, Store

log = logging.getLogger("rejoinder.auth")

_KINDS = {SDK_KEY_PREFIX: "sdk", SECRET_KEY_PREFIX: "secret"}

# A key revoked in the database may go on working this long in a server process that has already seen it.
KEY_CACHE_SECONDS = 30.0

sdk_key_scheme = HTTPBearer(
    scheme_name="sdk_key",
    description="The bot's public SDK key `pk_…` (allowed origins only).",
    auto_error=False,
)
secret_key_scheme = HTTPBearer(
    scheme_name="secret_key",
    description="The bot's secret key `sk_…` (servers only, never a browser).",
    auto_error=False,
)
session_scheme = HTTPBearer(
    scheme_name="session",
    description="A session `ses_…` from starting or resuming a conversation.",
    auto_error=False,
)

Credentials = HTTPAuthorizationCredentials | None


# ------------------------------------------------------------------------------------------------ keys


@dataclass(frozen=True)
class IssuedKeys:
    """A bot's new key pair, the only time the secrets are seen."""

    bot_id: str
    sdk_key: str
    secret_key: str


async def create_keys(store: Store, bot_id: str, *, now: datetime) -> IssuedKeys:
    """Create an SDK key and a secret key for ``bot_id``; only their hashes are stored."""
    issued = {}
    for prefix, kind in _KINDS.items():
        secret = new_secret(prefix)
        record = await store.credentials.create_api_key(
            bot_id, kind, hash_secret(secret), new_public_id(KEY_ID_PREFIX), now
        )
        log.info("created %s key %s for bot %s", kind, record.id, bot_id)
        issued[kind] = secret
    return IssuedKeys(bot_id=bot_id, sdk_key=issued["sdk"], secret_key=issued["secret"])


@dataclass(frozen=True)
class KeyCaller:
    """A request authenticated by an API key."""

    bot: Bot
    key: ApiKeyRecord


async def require_sdk_key(
    conn: HTTPConnection, credentials: Annotated[Credentials, Depends(sdk_key_scheme)]
) -> KeyCaller:
    """The SDK key's bot; the request's Origin, when sent, must be one of the bot's allowed origins."""
    caller = await _key_caller(conn, credentials, SDK_KEY_PREFIX)
    check_origin(conn, caller.bot)
    return caller


async def require_secret_key(
    conn: HTTPConnection, credentials: Annotated[Credentials, Depends(secret_key_scheme)]
) -> KeyCaller:
    """The secret key's bot; refused when the request comes from a browser page of another origin."""
    origin = conn.headers.get("origin")
    if origin is not None and not _same_origin(conn, origin):
        raise Problem(
            403,
            "forbidden",
            "The secret key is never accepted from a browser page. Call this API from your server, "
            "and use the SDK key in web pages.",
        )
    return await _key_caller(conn, credentials, SECRET_KEY_PREFIX)


async def _key_caller(conn: HTTPConnection, credentials: Credentials, prefix: str) -> KeyCaller:
    secret = bearer(credentials)
    wanted = "SDK key (pk_…)" if prefix == SDK_KEY_PREFIX else "secret key (sk_…)"
    if not secret.startswith(prefix):
        if secret.startswith((SDK_KEY_PREFIX, SECRET_KEY_PREFIX, SESSION_PREFIX)):
            raise Problem(403, "forbidden", f"This route takes the bot's {wanted}.")
        raise _unauthorized(f"This route takes the bot's {wanted} as `Authorization: Bearer <key>`.")
    key = await _find_key(_store(conn), hash_secret(secret))
    bot = _bot(conn, key.bot_id) if key is not None else None
    if key is None or key.revoked_at is not None or key.kind != _KINDS[prefix] or bot is None:
        raise _unauthorized(
            f"This {wanted} is not valid on this server. Create keys with `rejoinder keys create`."
        )
    return KeyCaller(bot=bot, key=key)


class _KeyCache:
    """Valid keys found by hash in one store, each kept for ``KEY_CACHE_SECONDS`` after it was read.

    Every request takes a key; reading it from the database each time costs a store round trip. Only keys that
    were valid when read are kept, so an unknown key is always looked up.
    """

    def __init__(self) -> None:
        self._found: dict[str, tuple[float, ApiKeyRecord]] = {}

    def get(self, key_hash: str) -> ApiKeyRecord | None:
        entry = self._found.get(key_hash)
        if entry is None or entry[0] <= time.monotonic():
            return None
        return entry[1]

    def put(self, key_hash: str, key: ApiKeyRecord) -> None:
        now = time.monotonic()
        # Keys are few; expired entries are dropped as new ones come so the cache stays that small.
        self._found = {h: entry for h, entry in self._found.items() if entry[0] > now}
        self._found[key_hash] = (now + KEY_CACHE_SECONDS, key)


_key_caches: weakref.WeakKeyDictionary[Store, _KeyCache] = weakref.WeakKeyDictionary()


async def _find_key(store: Store, key_hash: str) -> ApiKeyRecord | None:
    cache = _key_caches.get(store)
    if cache is None:
        cache = _key_caches[store] = _KeyCache()
    key = cache.get(key_hash)
    if key is None:
        key = await store.credentials.find_api_key(key_hash)
        if key is not None and key.revoked_at is None:
            cache.put(key_hash, key)
    return key


# ------------------------------------------------------------------------------------------------ origins


def check_origin(conn: HTTPConnection, bot: Bot) -> None:
    """Refuse a request whose ``Origin`` header is not among the bot's allowed origins (no header is fine)."""
    origin = conn.headers.get("origin")
    if origin is None:
        return
    if _normal_origin(origin) not in {_normal_origin(allowed) for allowed in bot.config.allowed_origins}:
        raise Problem(
            403,
            "origin_not_allowed",
            f"Requests from the origin {origin[:200]!r} are not allowed for this bot. "
            "Add the origin to allowed_origins in the bot's rejoinder.yaml.",
        )


def _normal_origin(origin: str) -> str:
    return origin.strip().rstrip("/").lower()


def _same_origin(conn: HTTPConnection, origin: str) -> bool:
    # The dashboard served by this very server sends its own origin; browsers cannot forge this header.
    host = conn.headers.get("host")
    return host is not None and urlsplit(origin.strip()).netloc.lower() == host.lower()


# ------------------------------------------------------------------------------------------------ sessions


@dataclass(frozen=True)
class SessionCaller:
    """A request authenticated by a session: one bot, one conversation."""

    bot: Bot
    session: SessionRecord

    @property
    def conversation_id(self) -> str:
        return self.session.conversation_id


def new_session(bot: Bot) -> tuple[str, NewSession]:
    """A fresh session secret and what the store keeps of it, valid for the bot's ``sessions.ttl``."""
    secret = new_secret(SESSION_PREFIX)
    session = NewSession(
        id=new_public_id(SESSION_ID_PREFIX),
        session_hash=hash_secret(secret),
        lifetime=parse_duration(bot.config.sessions.ttl),
    )
    return secret, session


async def require_session(
    conn: HTTPConnection, conversation_id: str, credentials: Annotated[Credentials, Depends(session_scheme)]
) -> SessionCaller:
    """The session from ``Authorization: Bearer ses_…``; it must belong to the conversation in the path."""
    return await authenticate_session(conn, bearer(credentials), conversation_id)


async def authenticate_session(
    conn: HTTPConnection, secret: str | None, conversation_id: str
) -> SessionCaller:
    """Check a session secret (from a header, a query parameter or a first frame) against one conversation."""
    if not secret or not secret.startswith(SESSION_PREFIX):
        raise _unauthorized("This route takes a session (ses_…) from starting or resuming the conversation.")
    session = await _store(conn).credentials.find_session(hash_secret(secret))
    try:
        # The same rules as a turn's: known, not ended, not expired, this conversation's.
        bot = _service(conn).authorise(session, conversation_id)
    except SessionRefused as refused:
        problem = problem_for(refused)
        assert problem is not None
        raise problem from None
    assert session is not None
    check_origin(conn, bot)
    return SessionCaller(bot=bot, session=session)


# ------------------------------------------------------------------------------------------------ identity


def verify_user(bot: Bot, user: Mapping[str, Any] | None, environ: Mapping[str, str]) -> dict[str, Any]:
    """The user a conversation records: ``id`` only when ``hash`` = hex HMAC-SHA256(identity secret, id).

    An id the site's backend did not vouch for is dropped (``verified: false``) and the reason logged.
    """
    if not user:
        return {}
    recorded: dict[str, Any] = {"verified": False}
    if user.get("name") is not None:
        recorded["name"] = user["name"]
    user_id, given = user.get("id"), user.get("hash")
    if user_id is None:
        return recorded
    reason = _unverified_reason(bot, str(user_id), given, environ)
    if reason is None:
        recorded.update(id=str(user_id), verified=True)
    else:
        log.info("bot %s: dropped an unverified user id (%s)", bot.id, reason)
    return recorded


def _unverified_reason(bot: Bot, user_id: str, given: Any, environ: Mapping[str, str]) -> str | None:
    if bot.config.identity is None:
        return "the bot has no identity.secret_env"
    secret = environ.get(bot.config.identity.secret_env)
    if not secret:
        return f"the environment variable {bot.config.identity.secret_env} is not set"
    if not isinstance(given, str) or not given:
        return "no hash was given"
    expected = hmac.new(secret.encode(), user_id.encode(), hashlib.sha256).hexdigest()
    # Compared as bytes: compare_digest refuses non-ASCII text, and a hash from a client may be anything.
    if not hmac.compare_digest(expected.encode(), given.strip().lower().encode()):
        return "the hash does not match"
    return None


# ------------------------------------------------------------------------------------------------ helpers


def bearer(credentials: Credentials) -> str:
    if credentials is None:
        raise _unauthorized("Send the credential as `Authorization: Bearer <key or session>`.")
    return credentials.credentials.strip()


def _unauthorized(detail: str) -> Problem:
    return Problem(401, "unauthorized", detail, headers={"WWW-Authenticate": "Bearer"})


def _store(conn: HTTPConnection) -> Store:
    store: Store = conn.app.state.store
    return store


def _bot(conn: HTTPConnection, bot_id: str) -> Bot | None:
    try:
        return _service(conn).bot(bot_id)
    except UnknownBot:
        return None


def _service(conn: HTTPConnection) -> ConversationService:
    service: ConversationService = conn.app.state.service
    return service
