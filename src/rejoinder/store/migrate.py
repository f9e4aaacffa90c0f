"""Alembic, driven programmatically on a connection the store already holds (no sync driver needed)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from weakref import WeakKeyDictionary

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from rejoinder.store.tables import metadata

ALEMBIC_INI = Path(__file__).with_name("alembic.ini")

_MIGRATION_LOCK_KEY = 0x72656A6F696E6472  # "rejoindr"

_upgrade_locks: WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = WeakKeyDictionary()


@dataclass(frozen=True)
class Revision:
    id: str
    title: str


def schema() -> sa.MetaData:
    """Every table the migrations build."""
    return metadata


def alembic_config() -> Config:
    """The packaged Alembic configuration (scripts under ``rejoinder/store/migrations``)."""
    return Config(str(ALEMBIC_INI))


def head_revision() -> str | None:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def current_revision(connection: sa.Connection) -> str | None:
    """The revision the database is at (``None`` for a database never migrated)."""
    return MigrationContext.configure(connection).get_current_revision()


def upgrade_lock() -> asyncio.Lock:
    """One upgrade at a time per event loop.

    Alembic keeps the running migration in module globals (``context``, ``op``); two upgrades interleaving on
    one loop, even on different databases, would trample each other.
    """
    return _upgrade_locks.setdefault(asyncio.get_running_loop(), asyncio.Lock())


def lock_out_other_migrations(connection: sa.Connection) -> None:
    """Make other processes' upgrades wait until this transaction ends (several workers may start at once).

    PostgreSQL needs an advisory lock for that; on SQLite the write lock taken at BEGIN IMMEDIATE already does it.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK_KEY})


def upgrade(connection: sa.Connection) -> None:
    """Apply every missing migration inside the connection's current transaction."""
    lock_out_other_migrations(connection)
    config = alembic_config()
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def revisions_between(older: str | None, newer: str | None) -> list[Revision]:
    """The revisions after ``older`` up to ``newer``, oldest first."""
    if newer is None or older == newer:
        return []
    scripts = ScriptDirectory.from_config(alembic_config())
    found = [
        Revision(id=script.revision, title=(script.doc or "").strip())
        for script in scripts.iterate_revisions(newer, older or "base")
    ]
    return list(reversed(found))
