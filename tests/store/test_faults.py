"""Database faults surface as StoreUnavailable (a 503 upstream) and never leave a half-saved turn."""

from __future__ import annotations

import errno
import socket
import sqlite3
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest
import sqlalchemy as sa

from rejoinder.store import StorageFull, Store, StoreUnavailable
from rejoinder.store.errors import unavailable_as_store_error
from tests.store.factories import start, turn


@pytest.fixture
def closed_port() -> int:
    """A local TCP port that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
async def sqlite_store(tmp_path: Path) -> AsyncIterator[Store]:
    store = Store.from_url(f"sqlite:///{tmp_path / 'faults.db'}", busy_timeout=0.1)
    await store.upgrade()
    yield store
    await store.close()


async def test_an_unreachable_postgresql_is_unavailable(closed_port: int) -> None:
    store = Store.from_url(f"postgresql://postgres@127.0.0.1:{closed_port}/rejoinder")
    try:
        assert await store.ping() is False
        with pytest.raises(StoreUnavailable, match="database unavailable"):
            await store.conversations.get("cnv_a")
        with pytest.raises(StoreUnavailable):
            await store.conversations.commit_turn(turn("cnv_a"))
        with pytest.raises(StoreUnavailable):
            await store.upgrade()
    finally:
        await store.close()


async def test_a_sqlite_database_locked_beyond_the_busy_timeout_is_unavailable(
    sqlite_store: Store, tmp_path: Path
) -> None:
    version = await start(sqlite_store, "cnv_a")
    holder = sqlite3.connect(tmp_path / "faults.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(StoreUnavailable, match="locked"):
            await sqlite_store.conversations.commit_turn(
                turn("cnv_a", version=version, customer="while locked")
            )
        failure = sqlite_store.recent_write_failure()
        assert failure is not None and "locked" in str(failure.error)
        assert not isinstance(failure.error, StorageFull)
        # Readers are not blocked by a writer in WAL mode.
        conversation = await sqlite_store.conversations.get("cnv_a")
        assert conversation is not None and conversation.version == version
    finally:
        holder.execute("ROLLBACK")
        holder.close()

    committed = await sqlite_store.conversations.commit_turn(turn("cnv_a", version=version, customer="after"))
    assert [m.seq for m in committed.messages] == [3, 4]  # nothing of the failed attempt was kept
    assert sqlite_store.recent_write_failure() is None  # a write succeeded since


@pytest.mark.parametrize(
    ("orig", "full"),
    [
        (type("PgError", (Exception,), {"sqlstate": "53100"})("could not extend file"), True),
        (type("PgError", (Exception,), {"sqlstate": "53300"})("too many connections"), False),
        (type("SqliteError", (Exception,), {"sqlite_errorname": "SQLITE_FULL"})("disk is full"), True),
        (type("SqliteError", (Exception,), {"sqlite_errorname": "SQLITE_BUSY"})("locked"), False),
    ],
)
async def test_a_full_disk_on_either_database_is_storage_full(orig: Exception, full: bool) -> None:
    error = sa.exc.OperationalError("INSERT …", {}, orig)
    with pytest.raises(StoreUnavailable) as raised:
        async with unavailable_as_store_error():
            raise error
    assert isinstance(raised.value, StorageFull) is full
    with pytest.raises(StorageFull):
        async with unavailable_as_store_error():
            raise OSError(errno.ENOSPC, "No space left on device")


async def test_ping_answers_true_for_a_live_database(store: Store) -> None:
    assert await store.ping() is True


async def test_postgresql_connections_cut_by_a_restart_are_replaced(
    make_postgres_url: Callable[[], str],
) -> None:
    url = make_postgres_url()
    store = Store.from_url(url)
    try:
        await store.upgrade()
        await start(store, "cnv_a")
        database = sa.make_url(url).database
        admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="postgres", timeout=3)
        try:
            # What a server restart does to every open connection of the pool.
            cut = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE datname = $1 AND pid <> pg_backend_pid()",
                database,
            )
        finally:
            await admin.close()
        assert cut >= 1

        conversation = await store.conversations.get("cnv_a")

        assert conversation is not None and conversation.version == 1
    finally:
        await store.close()
