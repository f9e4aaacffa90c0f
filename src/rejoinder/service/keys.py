"""A bot's API keys: create a pair, list them, revoke one, rotate one; and whether a key is valid now.

Only a key's SHA-256 is stored, so a key is named by its public id (``key_…``) and its secret is seen once, when it
is made. A key's ``revoked_at`` is the moment it stops working: in the past, it is revoked; in the future, it is
retiring (a rotation gave it an overlap so that both the old and the new key work until then).

Authentication asks :meth:`Keys.find`, which remembers each valid key it read for ``KEY_CACHE_SECONDS``: a key
revoked or rotated through this worker stops at once (or at its retirement) here, and on every other worker within
``KEY_CACHE_SECONDS``. Every change is written with its audit event, naming who made it (:class:`Actor`).

A key's ``last_used_at`` is kept to within ``LAST_USED_PRECISION``: when a worker reads a key whose stored moment is
older than that, it writes the new one in the background. So a busy key costs each worker at most one write a
minute, and a request never waits for it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from rejoinder.credentials import (
    KEY_ID_PREFIX,
    SDK_KEY_PREFIX,
    SECRET_KEY_PREFIX,
    hash_secret,
    new_public_id,
    new_secret,
)
from rejoinder.service.errors import InvalidOverlap, KeyInUse, KeyNotActive, KeyNotFound
from rejoinder.service.resume import Actor
from rejoinder.service.shared import utcnow
from rejoinder.store import Store
from rejoinder.store.records import ApiKeyRecord, iso_z

log = logging.getLogger("rejoinder.keys")

KIND_PREFIXES = {"sdk": SDK_KEY_PREFIX, "secret": SECRET_KEY_PREFIX}

# A key revoked on another worker may go on working here this long after this worker read it.
KEY_CACHE_SECONDS = 10.0
LAST_USED_PRECISION = timedelta(minutes=1)
DEFAULT_OVERLAP = timedelta(hours=24)
MAX_OVERLAP = timedelta(days=30)


@dataclass(frozen=True)
class IssuedKeys:
    """A bot's new key pair, the only time the secrets are seen."""

    bot_id: str
    sdk_key: str
    secret_key: str
    sdk_record: ApiKeyRecord
    secret_record: ApiKeyRecord


@dataclass(frozen=True)
class RotatedKey:
    """A rotation: the new key (its secret seen only now) and the old one, retiring at ``retired.revoked_at``."""

    secret: str
    key: ApiKeyRecord
    retired: ApiKeyRecord


def is_usable(key: ApiKeyRecord, now: datetime) -> bool:
    """Whether ``key`` authenticates at ``now``: never revoked, or retiring later."""
    return key.revoked_at is None or key.revoked_at > now


def key_status(key: ApiKeyRecord, now: datetime) -> str:
    """``active``, ``retiring`` (works until ``revoked_at``) or ``revoked``."""
    if key.revoked_at is None:
        return "active"
    return "retiring" if key.revoked_at > now else "revoked"


def key_summary(key: ApiKeyRecord, now: datetime) -> dict[str, Any]:
    """What the admin API and ``rejoinder keys --json`` show of a key (never its hash)."""
    return {
        "id": key.id,
        "bot_id": key.bot_id,
        "kind": key.kind,
        "status": key_status(key, now),
        "created_at": iso_z(key.created_at),
        "revoked_at": iso_z(key.revoked_at) if key.revoked_at is not None else None,
        "last_used_at": iso_z(key.last_used_at) if key.last_used_at is not None else None,
    }


def check_overlap(overlap: timedelta) -> timedelta:
    """``overlap`` when a rotation may use it (0 to ``MAX_OVERLAP``); else :class:`InvalidOverlap`."""
    if overlap < timedelta(0) or overlap > MAX_OVERLAP:
        raise InvalidOverlap(
            f"The overlap must be between 0 seconds and {MAX_OVERLAP.days} days "
            f"({int(MAX_OVERLAP.total_seconds())} seconds)."
        )
    return overlap


async def create_keys(store: Store, bot_id: str, *, now: datetime, actor: Actor | None = None) -> IssuedKeys:
    """Create an SDK key and a secret key for ``bot_id`` (only their hashes are stored), audited as ``actor``'s
    change when one is given, in one transaction."""
    secrets = {kind: new_secret(prefix) for kind, prefix in KIND_PREFIXES.items()}
    records = [_new_record(bot_id, kind, secret, now) for kind, secret in secrets.items()]
    sdk, secret = records
    audit = None
    if actor is not None:
        audit = actor.audit("keys_created", bot_id, now, sdk_key_id=sdk.id, secret_key_id=secret.id)
    await store.credentials.create_api_keys(records, audit)
    log.info("created keys %s and %s for bot %s", sdk.id, secret.id, bot_id)
    return IssuedKeys(
        bot_id=bot_id,
        sdk_key=secrets["sdk"],
        secret_key=secrets["secret"],
        sdk_record=sdk,
        secret_record=secret,
    )


class Keys:
    """API keys over one store, with this worker's memory of the valid keys it has read."""

    def __init__(
        self,
        store: Store,
        *,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        cache_seconds: float = KEY_CACHE_SECONDS,
    ) -> None:
        self.store = store
        self.clock = clock
        self._monotonic = monotonic
        self._cache_seconds = cache_seconds
        self._found: dict[str, tuple[float, ApiKeyRecord]] = {}
        self._noting: set[asyncio.Task[None]] = set()

    async def create(self, bot_id: str, actor: Actor) -> IssuedKeys:
        """A new SDK key and secret key for ``bot_id`` (the bot's other keys go on working)."""
        return await create_keys(self.store, bot_id, now=self.clock(), actor=actor)

    async def list(self, bot_id: str) -> list[ApiKeyRecord]:
        """The bot's keys, newest first, revoked ones included."""
        return await self.store.credentials.list_api_keys(bot_id)

    async def get(self, key_id: str, *, bot_id: str | None = None) -> ApiKeyRecord:
        """The key ``key_id`` (of ``bot_id``, when given: another bot's is not found)."""
        key = await self.store.credentials.get_api_key(key_id)
        if key is None or (bot_id is not None and key.bot_id != bot_id):
            raise KeyNotFound(f"There is no API key {key_id[:100]!r}" + (" for this bot." if bot_id else "."))
        return key

    async def revoke(
        self, key_id: str, actor: Actor, *, bot_id: str | None = None, allow_self: bool = False
    ) -> ApiKeyRecord:
        """Revoke a key now (a retiring key too). Revoking a revoked key changes nothing. The key ``actor`` is
        calling with is refused unless ``allow_self``: that would lock the caller out."""
        if actor.key_id == key_id and not allow_self:
            raise KeyInUse(
                f"{key_id} is the key making this request; revoking it locks this caller out. Rotate it instead, "
                'or send {"revoke_own_key": true} to revoke it anyway.'
            )
        key = await self.get(key_id, bot_id=bot_id)
        now = self.clock()
        if not is_usable(key, now):
            return key
        revoked = await self.store.credentials.revoke_api_key(
            key.id, now, actor.audit("key_revoked", key.bot_id, now, api_key_id=key.id)
        )
        self._forget(key)
        if revoked is None:  # revoked by someone else meanwhile
            return await self.get(key_id, bot_id=bot_id)
        log.info("revoked %s key %s of bot %s", key.kind, key.id, key.bot_id)
        return revoked

    async def rotate(
        self,
        key_id: str,
        actor: Actor,
        *,
        overlap: timedelta = DEFAULT_OVERLAP,
        bot_id: str | None = None,
    ) -> RotatedKey:
        """A new key of the same kind; the old one goes on working for ``overlap`` and then stops. Only an active
        key (neither revoked nor already retiring) is rotated."""
        check_overlap(overlap)
        key = await self.get(key_id, bot_id=bot_id)
        if key.revoked_at is not None:
            raise KeyNotActive(
                f"{key.id} is already revoked or retiring; rotate the key that replaced it instead."
            )
        now = self.clock()
        retires_at = now + overlap
        secret = new_secret(KIND_PREFIXES[key.kind])
        new = _new_record(key.bot_id, key.kind, secret, now)
        # The key changed is api_key_id (the detail's key_id names who changed it, as on every admin event).
        audit = actor.audit(
            "key_rotated",
            key.bot_id,
            now,
            api_key_id=key.id,
            new_api_key_id=new.id,
            retires_at=iso_z(retires_at),
        )
        retired = await self.store.credentials.rotate_api_key(key.id, retires_at, new, audit)
        if retired is None:
            raise KeyNotActive(f"{key.id} was revoked or rotated at the same moment; nothing was changed.")
        self._forget(key)
        log.info(
            "rotated %s key %s of bot %s to %s, retiring at %s",
            key.kind,
            key.id,
            key.bot_id,
            new.id,
            retires_at,
        )
        return RotatedKey(secret=secret, key=new, retired=retired)

    async def find(self, key_hash: str) -> ApiKeyRecord | None:
        """The key with this hash if it authenticates now; None for an unknown, revoked or retired key."""
        now = self.clock()
        entry = self._found.get(key_hash)
        if entry is not None and entry[0] > self._monotonic():
            return entry[1] if is_usable(entry[1], now) else None
        key = await self.store.credentials.find_api_key(key_hash)
        if key is None or not is_usable(key, now):
            self._found.pop(key_hash, None)
            return None
        self._remember(key_hash, key)
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_PRECISION:
            task = asyncio.create_task(self._note_used(key, now))
            self._noting.add(task)
            task.add_done_callback(self._noting.discard)
        return key

    async def settled(self) -> None:
        """Wait for the ``last_used_at`` writes under way (on shutdown, and in tests)."""
        while self._noting:
            await asyncio.gather(*self._noting, return_exceptions=True)

    async def _note_used(self, key: ApiKeyRecord, now: datetime) -> None:
        try:
            await self.store.credentials.note_api_key_used(key.id, now)
        except Exception:  # best effort: the request it came from has been answered already
            log.warning("could not record that key %s was used", key.id, exc_info=True)

    def _remember(self, key_hash: str, key: ApiKeyRecord) -> None:
        moment = self._monotonic()
        # Keys are few; expired entries are dropped as new ones come, so the memory stays that small.
        self._found = {h: entry for h, entry in self._found.items() if entry[0] > moment}
        self._found[key_hash] = (moment + self._cache_seconds, key)

    def _forget(self, key: ApiKeyRecord) -> None:
        self._found.pop(key.key_hash, None)


def _new_record(bot_id: str, kind: str, secret: str, now: datetime) -> ApiKeyRecord:
    return ApiKeyRecord(
        id=new_public_id(KEY_ID_PREFIX),
        bot_id=bot_id,
        kind=kind,
        key_hash=hash_secret(secret),
        created_at=now,
        revoked_at=None,
    )
