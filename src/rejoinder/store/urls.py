"""Database URLs: accept the usual SQLAlchemy spellings, run on the async drivers we ship."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.exc import ArgumentError

ACCEPTED_FORMS = (
    "sqlite:///path/to/file.db or postgresql://user@host/db "
    "(driver suffixes +aiosqlite, +pysqlite, +asyncpg, +psycopg, +psycopg2 and the scheme postgres:// are accepted)"
)

_SQLITE_DRIVERS = {"sqlite", "sqlite+aiosqlite", "sqlite+pysqlite"}
_POSTGRES_DRIVERS = {
    f"{scheme}{suffix}"
    for scheme in ("postgresql", "postgres")
    for suffix in ("", "+asyncpg", "+psycopg", "+psycopg2")
}
_MEMORY_DATABASES = {"", ":memory:"}


class InvalidDatabaseURL(ValueError):
    """The database URL is not one this server can use."""


def normalize_url(url: str) -> sa.URL:
    """Parse ``url`` and point it at ``sqlite+pysqlite`` or ``postgresql+asyncpg``."""
    try:
        parsed = sa.make_url(url.strip())
    except ArgumentError:
        raise InvalidDatabaseURL(f"not a database URL; use {ACCEPTED_FORMS}") from None
    driver = parsed.drivername.lower()
    if driver in _SQLITE_DRIVERS:
        if parsed.database in _MEMORY_DATABASES or parsed.database is None:
            raise InvalidDatabaseURL(
                "in-memory SQLite databases are not supported (every connection would see its own database); "
                "use a file, e.g. sqlite:///./rejoinder.db"
            )
        return parsed.set(drivername="sqlite+pysqlite")
    if driver in _POSTGRES_DRIVERS:
        query = dict(parsed.query)
        # libpq spells it sslmode, asyncpg spells it ssl (same values).
        if "sslmode" in query:
            query["ssl"] = query.pop("sslmode")
        return parsed.set(drivername="postgresql+asyncpg", query=query)
    raise InvalidDatabaseURL(f"unsupported database {parsed.drivername!r}; use {ACCEPTED_FORMS}")


def check_url(url: str) -> sa.URL:
    """``normalize_url``, and for a SQLite file, its directory must exist.

    The store would create the missing directories; for a URL a person typed, a missing directory is far more often
    a typo than a wish, so commands refuse it, naming the directory.
    """
    normalized = normalize_url(url)
    database = normalized.database or ""
    if normalized.get_backend_name() == "sqlite" and not database.startswith("file:"):
        directory = Path(database).parent
        if not directory.is_dir():
            what = "is not a directory" if directory.exists() else "does not exist"
            raise InvalidDatabaseURL(
                f"the directory {directory} {what}; create it first, or correct the path"
            )
    return normalized


def shown_url(url: str) -> str:
    """The URL as the user gave it, for messages: its password hidden, its driver as written."""
    try:
        return sa.make_url(url.strip()).render_as_string(hide_password=True)
    except ArgumentError:
        return url.strip()
