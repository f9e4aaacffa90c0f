"""API keys: a pair is created, listed, revoked at once, rotated with an overlap during which both keys work; each
worker remembers valid keys for a bounded time; every change is audited with who made it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from rejoinder.credentials import hash_secret
from rejoinder.service.accounts import CLI_ACTOR
from rejoinder.service.errors import InvalidOverlap, KeyInUse, KeyNotActive, KeyNotFound
from rejoinder.service.keys import KEY_CACHE_SECONDS, Keys, key_status
from rejoinder.service.resume import Actor
from rejoinder.store import Store
from rejoinder.store.records import AuditRecord


class Clock:
    """Wall time and monotonic time that move together, only when a test says so."""

    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        self.seconds = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def monotonic(self) -> float:
        return self.seconds

    def advance(self, delta: timedelta) -> None:
        self.now += delta
        self.seconds += delta.total_seconds()


@pytest.fixture
def clock() -> Clock:
    return Clock()


def worker(store: Store, clock: Clock) -> Keys:
    """The keys of one server process on ``store``."""
    return Keys(store, clock=clock, monotonic=clock.monotonic)


async def audit_trail(store: Store, bot_id: str) -> list[AuditRecord]:
    events, _cursor = await store.audit.list(bot_id=bot_id)
    return list(reversed(events))


async def test_a_pair_is_created_listed_and_audited(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)

    assert issued.sdk_key.startswith("pk_") and issued.secret_key.startswith("sk_")
    listed = await keys.list("shop")
    assert {key.id for key in listed} == {issued.sdk_record.id, issued.secret_record.id}
    assert {key.kind for key in listed} == {"sdk", "secret"}
    assert all(key_status(key, clock()) == "active" for key in listed)
    # Only hashes are stored: the secret is nowhere in the records.
    assert all(issued.sdk_key not in repr(key) and issued.secret_key not in repr(key) for key in listed)
    assert await keys.list("other") == []

    (event,) = await audit_trail(store, "shop")
    assert event.kind == "keys_created"
    assert event.detail == {
        "key_id": "cli",
        "sdk_key_id": issued.sdk_record.id,
        "secret_key_id": issued.secret_record.id,
    }


async def test_revoking_stops_a_key_at_once(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    sdk_hash = hash_secret(issued.sdk_key)
    assert await keys.find(sdk_hash) is not None  # now remembered by this worker

    actor = Actor(key_id="console:ada@example.com", ip="10.0.0.9", user_agent="Firefox")
    revoked = await keys.revoke(issued.sdk_record.id, actor)

    assert revoked.revoked_at == clock()
    assert key_status(revoked, clock()) == "revoked"
    assert await keys.find(sdk_hash) is None
    assert await keys.find(hash_secret(issued.secret_key)) is not None  # the other key of the pair goes on
    event = (await audit_trail(store, "shop"))[-1]
    assert (event.kind, event.ip, event.user_agent) == ("key_revoked", "10.0.0.9", "Firefox")
    assert event.detail == {"key_id": "console:ada@example.com", "api_key_id": issued.sdk_record.id}

    # Revoking it again changes nothing and writes nothing.
    clock.advance(timedelta(minutes=5))
    again = await keys.revoke(issued.sdk_record.id, actor)
    assert again.revoked_at == revoked.revoked_at
    assert len(await audit_trail(store, "shop")) == 2


async def test_a_rotated_key_works_during_the_overlap_and_not_after(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    old_hash = hash_secret(issued.secret_key)

    rotated = await keys.rotate(issued.secret_record.id, CLI_ACTOR, overlap=timedelta(hours=1))

    assert rotated.secret.startswith("sk_") and rotated.key.kind == "secret"
    assert rotated.key.id != issued.secret_record.id
    assert rotated.retired.revoked_at == clock() + timedelta(hours=1)
    new_hash = hash_secret(rotated.secret)
    assert await keys.find(old_hash) is not None and await keys.find(new_hash) is not None
    statuses = {key.id: key_status(key, clock()) for key in await keys.list("shop")}
    assert statuses == {
        issued.sdk_record.id: "active",
        issued.secret_record.id: "retiring",
        rotated.key.id: "active",
    }

    clock.advance(timedelta(minutes=59))
    assert await keys.find(old_hash) is not None
    clock.advance(timedelta(minutes=1))
    assert await keys.find(old_hash) is None  # its retirement, even though this worker remembers it
    assert await keys.find(new_hash) is not None
    # Another worker, which never saw it, refuses it as well.
    assert await worker(store, clock).find(old_hash) is None

    event = (await audit_trail(store, "shop"))[-1]
    assert event.kind == "key_rotated"
    assert event.detail == {
        "key_id": "cli",
        "api_key_id": issued.secret_record.id,
        "new_api_key_id": rotated.key.id,
        "retires_at": "2026-12-03T13:00:00.000Z",
    }


async def test_a_rotation_without_overlap_stops_the_old_key_at_once(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    rotated = await keys.rotate(issued.sdk_record.id, CLI_ACTOR, overlap=timedelta(0))
    assert await keys.find(hash_secret(issued.sdk_key)) is None
    assert await keys.find(hash_secret(rotated.secret)) is not None


async def test_only_an_active_key_is_rotated(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    await keys.rotate(issued.sdk_record.id, CLI_ACTOR)
    with pytest.raises(KeyNotActive):
        await keys.rotate(issued.sdk_record.id, CLI_ACTOR)  # retiring already
    await keys.revoke(issued.secret_record.id, CLI_ACTOR)
    with pytest.raises(KeyNotActive):
        await keys.rotate(issued.secret_record.id, CLI_ACTOR)
    assert len(await keys.list("shop")) == 3  # one rotation made one key, the refused ones none


async def test_two_rotations_of_one_key_at_once_make_one_new_key(store: Store, clock: Clock) -> None:
    issued = await worker(store, clock).create("shop", CLI_ACTOR)
    results = await asyncio.gather(
        *(worker(store, clock).rotate(issued.sdk_record.id, CLI_ACTOR) for _ in range(2)),
        return_exceptions=True,
    )
    assert sorted(type(result).__name__ for result in results) == ["KeyNotActive", "RotatedKey"]
    assert len(await worker(store, clock).list("shop")) == 3


async def test_revoking_a_retiring_key_stops_it_now(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    await keys.rotate(issued.sdk_record.id, CLI_ACTOR, overlap=timedelta(days=1))
    clock.advance(timedelta(minutes=10))
    revoked = await keys.revoke(issued.sdk_record.id, CLI_ACTOR)
    assert revoked.revoked_at == clock()
    assert await keys.find(hash_secret(issued.sdk_key)) is None


async def test_a_key_revoked_on_another_worker_stops_here_within_the_cache_time(
    store: Store, clock: Clock
) -> None:
    here, there = worker(store, clock), worker(store, clock)
    issued = await here.create("shop", CLI_ACTOR)
    key_hash = hash_secret(issued.sdk_key)
    assert await here.find(key_hash) is not None

    await there.revoke(issued.sdk_record.id, CLI_ACTOR)

    assert await there.find(key_hash) is None
    clock.advance(timedelta(seconds=KEY_CACHE_SECONDS - 1))
    assert await here.find(key_hash) is not None  # the bounded staleness: still remembered as valid
    clock.advance(timedelta(seconds=1))
    assert await here.find(key_hash) is None


async def test_refusals(store: Store, clock: Clock) -> None:
    keys = worker(store, clock)
    issued = await keys.create("shop", CLI_ACTOR)
    with pytest.raises(KeyNotFound):
        await keys.revoke("key_000000000000000000000000", CLI_ACTOR)
    with pytest.raises(KeyNotFound):  # another bot's key is unknown to this bot's caller
        await keys.rotate(issued.sdk_record.id, CLI_ACTOR, bot_id="other")
    for overlap in (timedelta(seconds=-1), timedelta(days=31)):
        with pytest.raises(InvalidOverlap):
            await keys.rotate(issued.sdk_record.id, CLI_ACTOR, overlap=overlap)
    caller = Actor(key_id=issued.secret_record.id)
    with pytest.raises(KeyInUse):
        await keys.revoke(issued.secret_record.id, caller)
    assert await keys.find(hash_secret(issued.secret_key)) is not None
    await keys.revoke(issued.secret_record.id, caller, allow_self=True)
    assert await keys.find(hash_secret(issued.secret_key)) is None
    assert await keys.find(hash_secret("sk_unknown")) is None
