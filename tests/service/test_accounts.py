"""Console accounts: passwords hashed with argon2id, sign-in refusals that cannot be told apart, failed sign-ins
limited per account and per IP, and sessions that end (signed out, idle, too old, user disabled)."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Literal

import pytest
from argon2 import PasswordHasher

from rejoinder.service.accounts import CLI_ACTOR, Accounts, ConsoleSession, RecentSessions, SignInLimits
from rejoinder.service.errors import (
    AccountExists,
    InvalidAccount,
    LastOwner,
    SignInRefused,
    SignInThrottled,
)
from rejoinder.store import Store
from rejoinder.store.records import ConsoleSessionRecord, ConsoleUserRecord
from rejoinder.store.tables import audit_events
from tests.helpers.console import FAST_HASHER, PASSWORD


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        self.monotonic = 1000.0

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)
        self.monotonic += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def make_accounts(store: Store, clock: Clock, **options: object) -> Accounts:
    limits = SignInLimits.in_memory(account_limit=3, ip_limit=5, window=60, clock=lambda: clock.monotonic)
    settings: dict[str, object] = {
        "limits": limits,
        "hasher": FAST_HASHER,
        "idle_timeout": 600,
        "lifetime": 3600,
        "clock": clock,
    }
    settings.update(options)
    return Accounts(store.users, **settings)  # type: ignore[arg-type]


async def audit_kinds(store: Store) -> list[str]:
    return await store.database.read(
        lambda connection: [
            row.kind for row in connection.execute(audit_events.select().order_by(audit_events.c.id))
        ]
    )


async def test_passwords_are_stored_as_argon2id_and_only_so(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock, hasher=PasswordHasher())
    user = await accounts.create_user("Ada@Example.com", "owner", PASSWORD, CLI_ACTOR)
    stored = await store.users.by_email("ada@example.com")
    assert stored is not None and stored.id == user.id
    assert stored.email == "ada@example.com"
    assert stored.password_hash.startswith("$argon2id$")
    assert "m=65536" in stored.password_hash  # memory-hard: 64 MiB
    assert PASSWORD not in stored.password_hash
    assert await audit_kinds(store) == ["console_user_created"]


async def test_a_hash_under_old_parameters_is_made_again_at_sign_in(store: Store, clock: Clock) -> None:
    await make_accounts(store, clock).create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    stronger = PasswordHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)
    accounts = make_accounts(store, clock, hasher=stronger)
    await accounts.sign_in("ada@example.com", PASSWORD)
    stored = await store.users.by_email("ada@example.com")
    assert stored is not None and "m=16384,t=2" in stored.password_hash
    await accounts.sign_in("ada@example.com", PASSWORD)  # the new hash verifies


async def test_wrong_password_unknown_email_and_disabled_account_are_refused_alike(
    store: Store, clock: Clock
) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    gone = await accounts.create_user("bob@example.com", "viewer", PASSWORD, CLI_ACTOR)
    await accounts.disable_user(gone.id, CLI_ACTOR)
    refusals: list[tuple[type[SignInRefused], str, str]] = []
    for email, password in [
        ("ada@example.com", "not the password"),
        ("nobody@example.com", PASSWORD),
        ("bob@example.com", PASSWORD),
    ]:
        with pytest.raises(SignInRefused) as refused:
            await accounts.sign_in(email, password, ip=f"10.0.0.{len(refusals)}")
        refusals.append((type(refused.value), refused.value.code, str(refused.value)))
    assert len(set(refusals)) == 1
    signed_in = await accounts.sign_in("ADA@example.com ", PASSWORD)
    assert signed_in.user.email == "ada@example.com"


async def test_failed_sign_ins_are_limited_per_account(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    for attempt in range(3):
        with pytest.raises(SignInRefused):
            await accounts.sign_in("ada@example.com", "guess", ip=f"10.0.1.{attempt}")
    # From yet another address, even the right password waits now.
    with pytest.raises(SignInThrottled) as throttled:
        await accounts.sign_in("ada@example.com", PASSWORD, ip="10.0.1.99")
    assert 0 < throttled.value.retry_after <= 60
    clock.advance(61)
    assert (
        await accounts.sign_in("ada@example.com", PASSWORD, ip="10.0.1.99")
    ).user.email == "ada@example.com"


async def test_failed_sign_ins_are_limited_per_ip(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    for attempt in range(5):
        with pytest.raises(SignInRefused):
            await accounts.sign_in(f"user{attempt}@example.com", "guess", ip="2001:db8::1")
    # The same /64: another address of the same subscriber.
    with pytest.raises(SignInThrottled):
        await accounts.sign_in("ada@example.com", PASSWORD, ip="2001:db8::2")
    assert (await accounts.sign_in("ada@example.com", PASSWORD, ip="10.0.2.1")).user.role == "owner"


async def test_a_session_ends_after_its_idle_timeout(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    signed_in = await accounts.sign_in("ada@example.com", PASSWORD)
    for _ in range(3):  # requests within the idle timeout keep it alive, past the idle timeout in total
        clock.advance(500)
        assert await accounts.session(signed_in.secret) is not None
    clock.advance(601)
    assert await accounts.session(signed_in.secret) is None


async def test_a_session_ends_at_its_lifetime_however_busy(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    signed_in = await accounts.sign_in("ada@example.com", PASSWORD)
    for _ in range(7):
        clock.advance(500)
        assert await accounts.session(signed_in.secret) is not None
    clock.advance(101)  # 3601 s after signing in
    assert await accounts.session(signed_in.secret) is None


async def test_signing_out_ends_the_session_and_is_audited(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    signed_in = await accounts.sign_in("ada@example.com", PASSWORD)
    other = await accounts.sign_in("ada@example.com", PASSWORD)
    found = await accounts.session(signed_in.secret)
    assert found is not None
    await accounts.sign_out(found, CLI_ACTOR)
    assert await accounts.session(signed_in.secret) is None
    assert await accounts.session(other.secret) is not None  # only that browser is signed out
    assert await accounts.session("rjc_" + "x" * 43) is None
    assert (await audit_kinds(store))[-1] == "console_signed_out"


async def test_disabling_or_resetting_a_password_ends_the_users_sessions(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    bob = await accounts.create_user("bob@example.com", "editor", PASSWORD, CLI_ACTOR)
    before_reset = await accounts.sign_in("bob@example.com", PASSWORD)
    await accounts.reset_password(bob.id, "a brand new password", CLI_ACTOR)
    assert await accounts.session(before_reset.secret) is None
    with pytest.raises(SignInRefused):
        await accounts.sign_in("bob@example.com", PASSWORD)
    before_disable = await accounts.sign_in("bob@example.com", "a brand new password")
    await accounts.disable_user(bob.id, CLI_ACTOR)
    assert await accounts.session(before_disable.secret) is None
    assert (await store.users.by_email("bob@example.com")).disabled_at is not None  # type: ignore[union-attr]


async def test_accounts_are_checked(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock)
    owner = await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    with pytest.raises(AccountExists):
        await accounts.create_user("ADA@example.com", "viewer", PASSWORD, CLI_ACTOR)
    with pytest.raises(InvalidAccount, match="at least 12"):
        await accounts.create_user("bob@example.com", "viewer", "short", CLI_ACTOR)
    with pytest.raises(InvalidAccount, match="role"):
        await accounts.create_user("bob@example.com", "admin", PASSWORD, CLI_ACTOR)
    with pytest.raises(InvalidAccount, match="email"):
        await accounts.create_user("not an email", "viewer", PASSWORD, CLI_ACTOR)
    with pytest.raises(LastOwner):
        await accounts.disable_user(owner.id, CLI_ACTOR)
    assert [user.email for user in await accounts.list_users()] == ["ada@example.com"]


async def test_hashes_run_off_the_event_loop_a_few_at_a_time(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock, concurrent_hashes=2)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    running = 0
    most = 0

    class CountingHasher(PasswordHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> Literal[True]:
            nonlocal running, most
            running += 1
            most = max(most, running)
            try:
                time.sleep(0.2)  # long enough that the next in line overlaps it, however busy the machine
                return super().verify(hash, password)
            finally:
                running -= 1

    accounts.hasher = CountingHasher(time_cost=2, memory_cost=16 * 1024, parallelism=1)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    beating = asyncio.create_task(ticker())
    try:
        results = await asyncio.gather(
            *(accounts.sign_in("ada@example.com", "wrong", ip=f"10.9.0.{n}") for n in range(2)),
            *(accounts.sign_in("nobody@example.com", "wrong", ip=f"10.9.1.{n}") for n in range(4)),
            return_exceptions=True,
        )
    finally:
        beating.cancel()
    assert all(isinstance(result, SignInRefused) for result in results)
    assert most == 2
    assert ticks > 0  # the loop went on while passwords were checked


# ------------------------------------------------------------------------------------------ sessions kept a while


def counting_session_reads(accounts: Accounts) -> list[str]:
    """The hashes this service reads sessions from the store by, from now on."""
    reads: list[str] = []
    read = accounts.users.session

    async def counted(session_hash: str) -> tuple[ConsoleSessionRecord, ConsoleUserRecord] | None:
        reads.append(session_hash)
        return await read(session_hash)

    accounts.users.session = counted  # type: ignore[method-assign]
    return reads


async def test_a_session_is_read_from_the_store_once_per_recheck(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock, session_recheck=5)
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    signed_in = await accounts.sign_in("ada@example.com", PASSWORD)
    reads = counting_session_reads(accounts)
    for _ in range(4):
        assert await accounts.session(signed_in.secret) is not None
        clock.advance(1)
    assert reads == []  # kept since signing in
    clock.advance(1)  # 5 s after signing in
    assert await accounts.session(signed_in.secret) is not None
    assert len(reads) == 1


async def test_a_session_ended_by_another_worker_ends_here_within_the_recheck(
    store: Store, clock: Clock
) -> None:
    here = make_accounts(store, clock, session_recheck=5)
    elsewhere = make_accounts(store, clock, session_recheck=5)  # another worker, or the command line
    await here.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    bob = await here.create_user("bob@example.com", "editor", PASSWORD, CLI_ACTOR)

    signed_out = await here.sign_in("ada@example.com", PASSWORD)
    found = await elsewhere.session(signed_out.secret)
    assert found is not None
    await elsewhere.sign_out(found, CLI_ACTOR)
    assert await elsewhere.session(signed_out.secret) is None  # at once where it was done
    clock.advance(4.9)
    assert await here.session(signed_out.secret) is not None  # kept here since signing in, 4.9 s ago
    clock.advance(0.1)
    assert await here.session(signed_out.secret) is None

    before_reset = await here.sign_in("bob@example.com", PASSWORD)
    await elsewhere.reset_password(bob.id, "a brand new password", CLI_ACTOR)
    clock.advance(4.9)
    assert await here.session(before_reset.secret) is not None
    clock.advance(0.1)
    assert await here.session(before_reset.secret) is None

    before_disable = await here.sign_in("bob@example.com", "a brand new password")
    await elsewhere.disable_user(bob.id, CLI_ACTOR)
    clock.advance(4.9)
    assert await here.session(before_disable.secret) is not None
    clock.advance(0.1)
    assert await here.session(before_disable.secret) is None


async def test_a_kept_session_still_ends_when_idle_or_too_old(store: Store, clock: Clock) -> None:
    accounts = make_accounts(store, clock, session_recheck=10_000)  # kept longer than it lives
    await accounts.create_user("ada@example.com", "owner", PASSWORD, CLI_ACTOR)
    idle = await accounts.sign_in("ada@example.com", PASSWORD)
    clock.advance(601)
    assert await accounts.session(idle.secret) is None

    busy = await accounts.sign_in("ada@example.com", PASSWORD)
    for _ in range(7):
        clock.advance(500)
        assert await accounts.session(busy.secret) is not None
    clock.advance(101)  # 3601 s after signing in
    assert await accounts.session(busy.secret) is None


def test_recent_sessions_are_bounded_the_least_recently_used_dropped_first() -> None:
    now = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    recent = RecentSessions(timedelta(seconds=5), size=2)
    first, second, third = (console_session(n, now) for n in range(3))
    recent.keep(first, now)
    recent.keep(second, now)
    assert recent.get(first.session.session_hash, now) == first  # now the most recently used
    recent.keep(third, now)
    assert len(recent) == 2
    assert recent.get(second.session.session_hash, now) is None
    assert recent.get(first.session.session_hash, now) == first
    assert recent.get(third.session.session_hash, now + timedelta(seconds=5)) is None  # read 5 s ago


def console_session(n: int, at: datetime) -> ConsoleSession:
    user = ConsoleUserRecord(f"usr_{n}", f"u{n}@example.com", "hash", "viewer", at, at, None)
    return ConsoleSession(
        ConsoleSessionRecord(f"csn_{n}", f"{n:064x}", user.id, at, at, at + timedelta(hours=1), None), user
    )
