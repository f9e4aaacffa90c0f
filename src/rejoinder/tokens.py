"""Conversation tokens: minting, hashing, the reference skills hold, and the verification rules of API.md.

A token is a credential (:mod:`rejoinder.credentials`): ``rjt_`` and 256 random bits, stored only as its SHA-256.
A token has a separate public id (``tok_…``) that logs, audits and the admin API use instead.

A skill never holds the secret: ``generate_token()`` gives it a :class:`TokenRef`, the text ``tokref-tok_…``.
Whatever the skill does with that text (stores it, nests it, concatenates, replaces, slices it) can only yield
text derived from the public reference. The secret takes the reference's place in one spot only: the bytes of an
outgoing Integrate request (:func:`reveal`), during the turn that minted the token.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from random import Random

from rejoinder.credentials import (
    PUBLIC_ID_DIGITS,
    SECRET_CHARACTERS,
    SECRET_LENGTH,
    STRONG_RANDOM,
    TOKEN_ID_PREFIX,
    TOKEN_PREFIX,
    hash_secret,
    new_public_id,
    new_secret,
)

REF_PREFIX = "tokref-"
_SECRET_IN_TEXT = re.compile(f"{TOKEN_PREFIX}{SECRET_CHARACTERS}{{{SECRET_LENGTH}}}")
# Only URL-unreserved characters, so that URL-encoding, JSON and header values carry a reference unchanged.
_REF_IN_TEXT = re.compile(f"{REF_PREFIX}({TOKEN_ID_PREFIX}{PUBLIC_ID_DIGITS})")


@dataclass(frozen=True)
class MintedToken:
    """A freshly minted token: its secret, known to the turn that minted it, and the id and hash the store keeps."""

    secret: str
    token_id: str
    token_hash: str


def hash_token(secret: str) -> str:
    """The SHA-256 a token is stored and looked up by."""
    return hash_secret(secret)


def mint(source: Random = STRONG_RANDOM) -> MintedToken:
    secret = new_secret(TOKEN_PREFIX, source)
    token_id = new_public_id(TOKEN_ID_PREFIX, source)
    return MintedToken(secret=secret, token_id=token_id, token_hash=hash_token(secret))


def is_well_formed(secret: object) -> bool:
    return isinstance(secret, str) and _SECRET_IN_TEXT.fullmatch(secret) is not None


class TokenRef(str):
    """What ``generate_token()`` returns: the text ``tokref-tok_…``, naming a token by its public id only."""

    __slots__ = ()

    def __new__(cls, token_id: str) -> TokenRef:
        return super().__new__(cls, REF_PREFIX + token_id)

    @property
    def token_id(self) -> str:
        return self[len(REF_PREFIX) :]


def reveal(text: str, minted: Mapping[str, str]) -> str:
    """``text`` with every reference to a token of ``minted`` (secret by token id) replaced by its secret.

    References to other tokens (one minted in an earlier turn, or a made-up one) stay as they are.
    """
    if not minted or REF_PREFIX not in text:
        return text
    return _REF_IN_TEXT.sub(lambda found: minted.get(found[1], found[0]), text)


def conceal(text: str, minted: Mapping[str, str]) -> str:
    """The reverse of :func:`reveal`: each secret of ``minted`` found in ``text`` becomes its reference again."""
    if not minted or TOKEN_PREFIX not in text:
        return text
    references = {secret: REF_PREFIX + token_id for token_id, secret in minted.items()}
    return _SECRET_IN_TEXT.sub(lambda found: references.get(found[0], found[0]), text)


def referenced_ids(text: str) -> set[str]:
    """The token ids that ``text`` refers to."""
    return set(_REF_IN_TEXT.findall(text)) if REF_PREFIX in text else set()


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
