"""Conversation tokens: format, hashing and the verification rules of API.md.

A token is ``rjt_`` followed by 43 URL-safe base64 characters (256 random bits from :mod:`secrets`).
Only its SHA-256 is stored; lookups are by hash, so no secret is ever compared character by character.
A token has a separate public id (``tok_…``) that logs, audits and the admin API use instead.
"""

from __future__ import annotations

import enum
import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

TOKEN_PREFIX = "rjt_"
_TOKEN_BYTES = 32
_TOKEN_RE = re.compile(r"^rjt_[A-Za-z0-9_-]{43}$")


@dataclass(frozen=True)
class NewToken:
    """A freshly minted token: the secret for the skill, the id and hash for storage."""

    secret: str
    token_id: str
    token_hash: str


def hash_token(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_token_id() -> str:
    return "tok_" + secrets.token_hex(12)


def mint() -> NewToken:
    secret = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
    return NewToken(secret=secret, token_id=new_token_id(), token_hash=hash_token(secret))


def is_well_formed(secret: object) -> bool:
    return isinstance(secret, str) and _TOKEN_RE.fullmatch(secret) is not None


class TokenOutcome(enum.StrEnum):
    """Every way a resume by token can end; the value is the API's problem type (or ``ok``)."""

    OK = "ok"
    MALFORMED = "token_malformed"
    NOT_FOUND = "token_not_found"
    EXPIRED = "token_expired"
    REVOKED = "token_revoked"
    USED_UP = "token_used_up"

    @property
    def http_status(self) -> int:
        return {"ok": 200, "token_malformed": 400, "token_not_found": 404}.get(self.value, 410)


@dataclass(frozen=True)
class TokenRecord:
    """A stored token's metadata (never the secret)."""

    id: str
    bot_id: str
    conversation_id: str
    created_at: datetime
    expires_at: datetime
    max_uses: int | None
    uses: int
    revoked_at: datetime | None
    last_used_at: datetime | None


def judge(record: TokenRecord | None, *, bot_id: str, now: datetime) -> TokenOutcome:
    """Apply API.md's outcome table to a looked-up token. Another bot's token is indistinguishable from none."""
    if record is None or record.bot_id != bot_id:
        return TokenOutcome.NOT_FOUND
    if record.revoked_at is not None:
        return TokenOutcome.REVOKED
    if record.expires_at <= now:
        return TokenOutcome.EXPIRED
    if record.max_uses is not None and record.uses >= record.max_uses:
        return TokenOutcome.USED_UP
    return TokenOutcome.OK
