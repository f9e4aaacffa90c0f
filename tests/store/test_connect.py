"""How the store sets up SQLite: WAL, foreign keys, a busy timeout, and write transactions that lock up front."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import sqlalchemy as sa

from rejoinder.store.connect import create_sqlite_sync_engine
from rejoinder.store.database import Database
from rejoinder.store.urls import normalize_url


def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_sqlite_sync_engine(
        normalize_url(f"sqlite:///{tmp_path / 'new-dir' / 'rejoinder.db'}"), busy_timeout=2.5
    )
    try:
        with engine.connect() as connection:
            pragmas = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        engine.dispose()
    assert (tmp_path / "new-dir" / "rejoinder.db").exists()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 2500, "foreign_keys": 1}


async def test_sqlite_writers_of_two_workers_that_read_first_wait_for_each_other_instead_of_failing(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'rejoinder.db'}"
    # Two workers on one file: each has its own writer thread, only SQLite's lock keeps them apart.
    first, second = Database.from_url(url, busy_timeout=5), Database.from_url(url, busy_timeout=5)
    first_has_read = threading.Event()

    def create(connection: sa.Connection) -> None:
        connection.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")

    def increment(connection: sa.Connection, *, pause: bool) -> None:
        n = connection.exec_driver_sql("SELECT count(*) FROM counter").scalar()
        if pause:
            first_has_read.set()
            time.sleep(0.2)  # the other worker writes while this one holds what it read
        connection.execute(sa.text("INSERT INTO counter (n) VALUES (:n)"), {"n": n})

    def counted(connection: sa.Connection) -> list[int]:
        return list(connection.exec_driver_sql("SELECT n FROM counter ORDER BY n").scalars())

    try:
        await first.write(create)
        reading_first = asyncio.create_task(first.write(lambda connection: increment(connection, pause=True)))
        assert await asyncio.to_thread(first_has_read.wait, 30)
        # A deferred BEGIN would let this one read 0, and its write would then fail with SQLITE_BUSY.
        await second.write(lambda connection: increment(connection, pause=False))
        await reading_first
        seen = await second.read(counted)
    finally:
        await first.close()
        await second.close()
    assert seen == [0, 1]
