"""Fixtures for the outside services tests talk to: PostgreSQL, Redis, and a store on each database.

Which services, and how a missing one skips or fails: ``tests/helpers/services.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import secrets
import shutil
import signal
import time
from collections.abc import AsyncIterator, Callable, Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

import asyncpg
import pytest
import redis
import sqlalchemy as sa

from rejoinder.store import Store
from rejoinder.store.migrate import schema
from tests.helpers.services import (
    NO_QUOTAS,
    POSTGRES_HOST,
    POSTGRES_PORT,
    POSTGRES_USER,
    REDIS_HOST,
    REDIS_PORT,
    REDIS_TEST_DB,
    unreachable,
)

_DATABASE_PREFIX = "rejoinder_test_"  # then the pid of the test process, so that orphans can be recognised

T = TypeVar("T")


# Quotas are off for the whole run, in this process and in every process a test starts.
os.environ.update(NO_QUOTAS)

# Every process the suite starts inherits this mark (tests copy os.environ and drop only REJOINDER_ variables),
# so the end of the run can find any that a test left behind.
RUN_MARK = "SUITE_RUN_MARK"
os.environ[RUN_MARK] = f"{os.getpid()}-{secrets.token_hex(4)}"
_LEFTOVER_GRACE = 10.0  # seconds for processes being shut down (a browser, a server after SIGTERM) to exit


def _marked_processes() -> dict[int, str]:
    """Processes other than this one that carry this run's mark, with their command lines."""
    mark = f"{RUN_MARK}={os.environ[RUN_MARK]}".encode()
    found: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if mark in (entry / "environ").read_bytes().split(b"\0"):
                found[int(entry.name)] = (
                    (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
                )
        except OSError:
            continue  # gone meanwhile, or a zombie
    return found


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any process a test started outlived it, and end those processes."""
    if not Path("/proc").is_dir():
        return
    deadline = time.monotonic() + _LEFTOVER_GRACE
    leftovers = _marked_processes()
    while leftovers and time.monotonic() < deadline:
        time.sleep(0.2)
        leftovers = _marked_processes()
    if not leftovers:
        return
    for pid in leftovers:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
    listing = "\n".join(f"  {pid}: {command}" for pid, command in sorted(leftovers.items()))
    print(f"\n{len(leftovers)} process(es) started by the tests were still running (now killed):\n{listing}")
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an event loop running in the main thread for as long as the (session-wide)
    browser is open, and pytest-asyncio cannot run a test's loop beside it.
    """
    browser_tests = Path(__file__).resolve().parent / "e2e"
    items.sort(key=lambda item: browser_tests in Path(item.path).parents)


def _run_isolated(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine on its own thread and event loop: usable from sync fixtures and async tests alike."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coroutine).result()


async def _postgres_admin(*statements: str, database: str = "postgres") -> None:
    connection = await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database=database, timeout=3
    )
    try:
        for statement in statements:
            await connection.execute(statement)
    finally:
        await connection.close()


async def _migrate(url: str) -> None:
    store = Store.from_url(url)
    try:
        await store.upgrade()
    finally:
        await store.close()


async def _drop_orphaned_databases() -> None:
    """Drop test databases left by runs that were killed before their teardown (their process is gone)."""
    connection = await asyncpg.connect(
        host=POSTGRES_HOST, port=POSTGRES_PORT, user=POSTGRES_USER, database="postgres", timeout=3
    )
    try:
        names = await connection.fetch(
            "SELECT datname FROM pg_database WHERE datname LIKE $1", f"{_DATABASE_PREFIX}%"
        )
        for (name,) in names:
            pid = name.removeprefix(_DATABASE_PREFIX).split("_")[0]
            if pid.isdigit() and not _process_alive(int(pid)):
                await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, only not ours to signal
    return True


@functools.cache
def _sweep_orphaned_databases_once() -> None:
    _run_isolated(_drop_orphaned_databases())


def _create_postgres_database() -> tuple[str, str]:
    """A new empty database: (its name, its URL). Skips (or fails, in CI) when PostgreSQL is down."""
    name = f"{_DATABASE_PREFIX}{os.getpid()}_{secrets.token_hex(4)}"
    try:
        _sweep_orphaned_databases_once()
        _run_isolated(_postgres_admin(f'CREATE DATABASE "{name}"'))
    except (OSError, TimeoutError, asyncpg.PostgresError) as error:
        unreachable(f"PostgreSQL not reachable at {POSTGRES_HOST}:{POSTGRES_PORT}", error)
    return name, f"postgresql://{POSTGRES_USER}@{POSTGRES_HOST}:{POSTGRES_PORT}/{name}"


def _drop_postgres_database(name: str) -> None:
    _run_isolated(_postgres_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for this test module, dropped afterwards."""
    name, url = _create_postgres_database()
    yield url
    _drop_postgres_database(name)


@pytest.fixture
def make_postgres_url() -> Iterator[Callable[[], str]]:
    """A factory of fresh, empty PostgreSQL databases, all dropped after the test."""
    created: list[str] = []

    def make() -> str:
        name, url = _create_postgres_database()
        created.append(name)
        return url

    yield make
    for name in created:
        _drop_postgres_database(name)


@pytest.fixture(scope="session")
def redis_url() -> str:
    """The URL of a Redis database reserved for tests (use ``redis_prefix`` for the keys you create)."""
    url = f"redis://{REDIS_HOST}:{REDIS_PORT}/{REDIS_TEST_DB}"
    client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
    try:
        client.ping()
    except redis.RedisError as error:
        unreachable(f"Redis not reachable at {REDIS_HOST}:{REDIS_PORT}", error)
    finally:
        client.close()
    return url


@pytest.fixture
def redis_prefix(redis_url: str) -> Iterator[str]:
    """A key/channel prefix unique to this test; every key under it is deleted afterwards."""
    prefix = f"rejoinder-test-{secrets.token_hex(6)}:"
    yield prefix
    client = redis.Redis.from_url(redis_url, socket_connect_timeout=2, socket_timeout=2)
    try:
        keys = list(client.scan_iter(match=f"{prefix}*", count=500))
        if keys:
            client.delete(*keys)
    finally:
        client.close()


@pytest.fixture(scope="session")
def migrated_sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated, empty SQLite file to copy (cheaper than migrating a new file for every test)."""
    path = tmp_path_factory.mktemp("template") / "rejoinder.db"
    _run_isolated(_migrate(f"sqlite:///{path}"))
    return path


@pytest.fixture(scope="module")
def migrated_postgres_url(postgres_url: str) -> str:
    """This module's PostgreSQL database, migrated."""
    _run_isolated(_migrate(postgres_url))
    return postgres_url


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A migrated, empty database on each backend: a fresh SQLite file, or this module's PostgreSQL database
    (emptied again after the test)."""
    if request.param == "sqlite":
        path = tmp_path / "rejoinder.db"
        shutil.copyfile(request.getfixturevalue("migrated_sqlite_template"), path)
        yield f"sqlite:///{path}"
        return
    url = str(request.getfixturevalue("migrated_postgres_url"))
    yield url
    # DELETE, not TRUNCATE: on a handful of rows it avoids TRUNCATE's file rewrites.
    deletes = "; ".join(f'DELETE FROM "{table.name}"' for table in reversed(schema().sorted_tables))
    _run_isolated(_postgres_admin(deletes, database=sa.make_url(url).database or ""))


@pytest.fixture
async def store(database_url: str) -> AsyncIterator[Store]:
    """A :class:`Store` on a migrated, empty database of each backend."""
    store = Store.from_url(database_url)
    yield store
    await store.close()
