"""SQLite calls run on the store's own threads: writes waiting together commit together, each turn still atomic
and failing alone; the WAL is checkpointed off the commit path; the event loop never waits for SQLite."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from rejoinder.store import DuplicateClientMessage, Store, VersionConflict
from rejoinder.store.sqlite_threads import SQLiteThreads
from tests.store.factories import start, turn


@pytest.fixture
async def sqlite_store(tmp_path: Path, migrated_sqlite_template: Path) -> AsyncIterator[Store]:
    path = tmp_path / "rejoinder.db"
    shutil.copyfile(migrated_sqlite_template, path)
    store = Store.from_url(f"sqlite:///{path}", busy_timeout=2.0)
    yield store
    await store.close()


def threads_of(store: Store) -> SQLiteThreads:
    threads = store.sqlite_threads
    assert threads is not None
    return threads


async def hold_the_writer(store: Store) -> tuple[threading.Event, asyncio.Task[None]]:
    """Keep the writer thread busy until the returned event is set: writes sent meanwhile queue up."""
    release, busy, loop = threading.Event(), asyncio.Event(), asyncio.get_running_loop()

    def block(_connection: sa.Connection) -> None:
        loop.call_soon_threadsafe(busy.set)
        release.wait(10)

    holder = asyncio.create_task(threads_of(store).write(block))
    await asyncio.wait_for(busy.wait(), 5)
    return release, holder


def size(path: Path) -> int:
    return path.stat().st_size


async def test_writes_waiting_together_commit_together_and_a_failing_turn_fails_alone(
    sqlite_store: Store,
) -> None:
    versions = {cid: await start(sqlite_store, cid, client_message_id=f"{cid}-1") for cid in "abcd"}
    release, holder = await hold_the_writer(sqlite_store)
    commits_before = threads_of(sqlite_store).commits

    batch = [
        turn("a", version=versions["a"], customer="fine"),
        turn("b", version=versions["b"] + 5, customer="stale"),  # version check fails
        turn("c", version=versions["c"], customer="again", client_message_id="c-1"),  # duplicate id
        turn("d", version=versions["d"], customer="also fine", replies=["x", "y"]),
    ]
    tasks = [asyncio.create_task(sqlite_store.conversations.commit_turn(write)) for write in batch]
    await asyncio.sleep(0.05)  # all four are queued behind the held writer
    release.set()
    await holder
    results = await asyncio.gather(*tasks, return_exceptions=True)

    # One transaction for the four (the held write was one more).
    assert threads_of(sqlite_store).commits == commits_before + 2
    a, b, c, d = results
    assert not isinstance(a, BaseException) and [m.seq for m in a.messages] == [3, 4]
    assert isinstance(b, VersionConflict)
    assert isinstance(c, DuplicateClientMessage)
    assert not isinstance(d, BaseException) and [m.seq for m in d.messages] == [3, 4, 5]
    for cid, expected_messages in {"a": 4, "b": 2, "c": 2, "d": 5}.items():
        conversation = await sqlite_store.conversations.get(cid)
        assert conversation is not None
        assert conversation.last_seq == expected_messages
        stored = await sqlite_store.conversations.messages_after(cid)
        assert [m.seq for m in stored] == list(range(1, expected_messages + 1))
    # The failed turn's update of its conversation row was undone with its messages: it can still go on.
    c_row = await sqlite_store.conversations.get("c")
    assert c_row is not None and c_row.version == versions["c"]
    retried = await sqlite_store.conversations.commit_turn(turn("c", version=versions["c"], customer="next"))
    assert [m.seq for m in retried.messages] == [3, 4]


async def test_a_write_that_waited_past_the_busy_timeout_is_refused_unrun(tmp_path: Path) -> None:
    store = Store.from_url(f"sqlite:///{tmp_path / 'slow.db'}", busy_timeout=0.2)
    try:
        await store.upgrade()
        release, holder = await hold_the_writer(store)
        late = asyncio.create_task(store.conversations.commit_turn(turn("cnv_late")))
        await asyncio.sleep(0.4)
        release.set()
        await holder
        with pytest.raises(Exception, match="busy"):
            await late
        assert await store.conversations.get("cnv_late") is None
    finally:
        await store.close()


async def test_the_writer_checkpoints_the_wal_into_the_database_when_idle(sqlite_store: Store) -> None:
    path = Path(threads_of(sqlite_store).engine.url.database or "")
    await start(sqlite_store, "cnv_a")  # opens the writer's connection
    size_before = size(path)
    for n in range(40):
        await sqlite_store.conversations.commit_turn(turn(f"cnv_{n}", customer="x" * 2000))

    # The file grows while the checkpoint runs, before its counter moves: wait for both.
    deadline = time.monotonic() + 15
    threads = threads_of(sqlite_store)
    while (threads.checkpoints < 1 or size(path) <= size_before + 40 * 2000) and time.monotonic() < deadline:  # noqa: ASYNC110 - a file, not an event
        await asyncio.sleep(0.02)

    # Commits never checkpoint (wal_autocheckpoint=0): the database file grew because the writer checkpointed.
    assert threads.checkpoints >= 1
    assert size(path) > size_before + 40 * 2000


async def test_a_wal_past_its_size_bound_is_truncated(sqlite_store: Store) -> None:
    threads = threads_of(sqlite_store)
    threads.idle_checkpoint = 60.0  # no idle checkpoints: only the size bound acts
    threads.wal_size_limit = 256 * 1024
    wal = Path(f"{threads_of(sqlite_store).engine.url.database}-wal")
    largest = 0
    for n in range(200):
        await sqlite_store.conversations.commit_turn(turn(f"cnv_{n}", customer="x" * 3000))
        largest = max(largest, size(wal))
    assert threads.checkpoints >= 1
    # Without the bound the WAL would hold all 200 turns (600 KB of text alone).
    assert largest < threads.wal_size_limit + 64 * 1024
    assert await sqlite_store.conversations.get("cnv_199") is not None


async def test_under_writes_that_never_pause_the_wal_starts_over_without_a_full_checkpoint(
    sqlite_store: Store,
) -> None:
    threads = threads_of(sqlite_store)
    threads.idle_checkpoint = 60.0  # the writer is never idle here
    threads.busy_checkpoint_commits = 5
    threads.restart_frames = 32
    threads.wal_size_limit = 1 << 30  # the hard bound never acts
    wal = Path(f"{threads_of(sqlite_store).engine.url.database}-wal")
    await start(sqlite_store, "cnv_first")
    largest = 0
    writing = 8

    async def write(worker: int) -> None:
        nonlocal largest, writing
        for n in range(60):
            await sqlite_store.conversations.commit_turn(turn(f"cnv_{worker}_{n}", customer="x" * 2000))
            largest = max(largest, size(wal))
        writing -= 1

    async def read() -> None:  # readers keep snapshots open now and then, as they do in a server
        while writing:
            await sqlite_store.conversations.get("cnv_first")

    await asyncio.gather(*(write(worker) for worker in range(8)), read())

    # Eight writers keep the writer busy: only copying the WAL's tail between commits lets it start over.
    # Never starting over, it would hold all 480 turns: about 6 MB.
    assert largest < 1_500_000, f"the WAL grew to {largest:,} bytes"
    assert threads.truncations == 0
    assert await sqlite_store.conversations.get("cnv_7_59") is not None


async def test_the_event_loop_runs_while_a_write_waits_for_the_sqlite_lock(sqlite_store: Store) -> None:
    version = await start(sqlite_store, "cnv_a")
    holder = sqlite3.connect(threads_of(sqlite_store).engine.url.database or "", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        write = asyncio.create_task(sqlite_store.conversations.commit_turn(turn("cnv_a", version=version)))
        gaps: list[float] = []
        last = time.perf_counter()
        for _ in range(30):  # 0.3 s while the writer thread waits in SQLite's busy handler
            await asyncio.sleep(0.01)
            now = time.perf_counter()
            gaps.append(now - last)
            last = now
        assert not write.done()
        # Reads are served meanwhile, from their own threads.
        assert (await sqlite_store.conversations.get("cnv_a")) is not None
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    committed = await write
    assert [m.seq for m in committed.messages] == [3, 4]
    assert max(gaps) < 0.2  # a blocked loop would have stalled for the whole wait


async def test_a_call_cancelled_before_it_ran_is_never_run(sqlite_store: Store) -> None:
    await start(sqlite_store, "cnv_a")
    release, holder = await hold_the_writer(sqlite_store)
    cancelled = asyncio.create_task(sqlite_store.conversations.commit_turn(turn("cnv_b")))
    await asyncio.sleep(0.02)
    cancelled.cancel()
    release.set()
    await holder
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    await start(sqlite_store, "cnv_c")  # the writer went on
    assert await sqlite_store.conversations.get("cnv_b") is None


async def test_a_call_made_while_the_store_closes_never_keeps_close_waiting(tmp_path: Path) -> None:
    # A background write (a key's last use, say) that arrives during close() starts the threads again; the old
    # threads must still stop, and close() return.
    def one(connection: sa.Connection) -> int:
        return int(connection.exec_driver_sql("SELECT 1").scalar_one())

    engine = sa.create_engine(f"sqlite:///{tmp_path / 'closing.db'}")
    for _ in range(40):
        threads = SQLiteThreads(engine, busy_timeout=2.0)
        await threads.write(one)  # a write: the writer asks for a checkpoint, as after a turn
        before = set(threading.enumerate())
        closing = asyncio.create_task(asyncio.to_thread(threads.close))
        await asyncio.sleep(0)
        assert await threads.read(one) == 1  # starts the threads again while close() runs
        await asyncio.wait_for(closing, 10)
        await asyncio.wait_for(asyncio.to_thread(threads.close), 10)
        started = {thread for thread in threading.enumerate() if thread.name.startswith("rejoinder-sqlite")}
        assert not started - before, "threads of the store outlived its close()"
    engine.dispose()
