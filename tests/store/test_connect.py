"""How the store sets up SQLite: WAL, foreign keys, a busy timeout, and write transactions that lock up front."""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa

from rejoinder.store.connect import create_engine, writer
from rejoinder.store.urls import normalize_url


async def test_sqlite_runs_in_wal_mode_with_foreign_keys_and_a_busy_timeout(tmp_path: Path) -> None:
    engine = create_engine(
        normalize_url(f"sqlite:///{tmp_path / 'new-dir' / 'rejoinder.db'}"), busy_timeout=2.5
    )
    try:
        async with engine.connect() as connection:
            pragmas = {
                name: (await connection.exec_driver_sql(f"PRAGMA {name}")).scalar()
                for name in ("journal_mode", "synchronous", "busy_timeout", "foreign_keys")
            }
    finally:
        await engine.dispose()
    assert (tmp_path / "new-dir" / "rejoinder.db").exists()
    assert pragmas == {"journal_mode": "wal", "synchronous": 1, "busy_timeout": 2500, "foreign_keys": 1}


async def test_sqlite_writers_that_read_first_wait_for_each_other_instead_of_failing(tmp_path: Path) -> None:
    engine = create_engine(normalize_url(f"sqlite:///{tmp_path / 'rejoinder.db'}"), busy_timeout=2)
    async with writer(engine).begin() as connection:
        await connection.exec_driver_sql("CREATE TABLE counter (n INTEGER NOT NULL)")
    first_has_read = asyncio.Event()

    async def increment(*, first: bool) -> None:
        if not first:
            await first_has_read.wait()
        async with writer(engine).begin() as connection:
            n = (await connection.exec_driver_sql("SELECT count(*) FROM counter")).scalar()
            if first:
                first_has_read.set()
                await asyncio.sleep(0.05)  # the other writer starts while this one holds its snapshot
            await connection.execute(sa.text("INSERT INTO counter (n) VALUES (:n)"), {"n": n})

    try:
        # A deferred BEGIN would let both read, and the second to write would fail with SQLITE_BUSY.
        await asyncio.gather(increment(first=True), increment(first=False))
        async with engine.connect() as connection:
            seen = (await connection.exec_driver_sql("SELECT n FROM counter ORDER BY n")).scalars().all()
    finally:
        await engine.dispose()
    assert seen == [0, 1]
