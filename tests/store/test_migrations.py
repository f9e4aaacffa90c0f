"""Migrations: they build exactly the tables the code uses, are safe to re-run, and configure SQLite as intended."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from rejoinder.store import Store
from rejoinder.store.migrate import head_revision, revisions_between, schema
from tests.store.factories import start


@pytest.fixture(params=["sqlite", "postgres"])
def fresh_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database nobody has migrated yet."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'fresh' / 'nested' / 'rejoinder.db'}"
    make: Callable[[], str] = request.getfixturevalue("make_postgres_url")
    return make()


def schema_differences(connection: sa.Connection) -> list[object]:
    return list(compare_metadata(MigrationContext.configure(connection), schema()))


async def test_upgrade_builds_the_schema_the_code_declares(store: Store) -> None:
    differences = await store.database.read(schema_differences)
    assert differences == []


async def test_upgrading_a_fresh_database_then_again_changes_nothing(fresh_url: str) -> None:
    store = Store.from_url(fresh_url)
    try:
        assert await store.current_revision() is None
        await store.upgrade()
        assert await store.current_revision() == head_revision()
        version = await start(store, "cnv_a")

        await store.upgrade()

        assert await store.current_revision() == head_revision()
        conversation = await store.conversations.get("cnv_a")
        assert conversation is not None and conversation.version == version
    finally:
        await store.close()


def test_workers_upgrading_at_once_all_succeed(fresh_url: str) -> None:
    """Like several server processes starting together: separate event loops, one database."""

    async def upgrade() -> str | None:
        store = Store.from_url(fresh_url)
        try:
            # Workers that block each other make the test fail, not hang.
            await asyncio.wait_for(store.upgrade(), timeout=20)
            return await store.current_revision()
        finally:
            await store.close()

    with ThreadPoolExecutor(max_workers=3) as workers:
        revisions = list(workers.map(lambda _: asyncio.run(upgrade()), range(3)))

    assert revisions == [head_revision()] * 3


async def test_upgrades_of_different_databases_at_once_do_not_trample_each_other(
    tmp_path: Path, make_postgres_url: Callable[[], str]
) -> None:
    stores = [Store.from_url(f"sqlite:///{tmp_path / f'db{n}.sqlite'}") for n in range(2)]
    stores.append(Store.from_url(make_postgres_url()))
    try:
        await asyncio.gather(*(s.upgrade() for s in stores))
        assert [await s.current_revision() for s in stores] == [head_revision()] * 3
    finally:
        for s in stores:
            await s.close()


def test_revisions_between_lists_what_an_upgrade_applies() -> None:
    head = head_revision()
    assert head is not None
    applied = revisions_between(None, head)
    assert applied[-1].id == head and applied[0].title
    assert revisions_between(head, head) == []
