"""Database URLs: the spellings people use are accepted and run on the async drivers we ship."""

from __future__ import annotations

from pathlib import Path

import pytest

from rejoinder.store import InvalidDatabaseURL, normalize_url
from rejoinder.store.urls import check_url, shown_url


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("sqlite:///rejoinder.db", "sqlite+pysqlite:///rejoinder.db"),
        ("sqlite:///./data/rejoinder.db", "sqlite+pysqlite:///./data/rejoinder.db"),
        ("sqlite:////var/lib/rejoinder/db.sqlite", "sqlite+pysqlite:////var/lib/rejoinder/db.sqlite"),
        ("sqlite+pysqlite:///rejoinder.db", "sqlite+pysqlite:///rejoinder.db"),
        ("sqlite+aiosqlite:///rejoinder.db", "sqlite+pysqlite:///rejoinder.db"),
        ("postgresql://app@db.internal/rejoinder", "postgresql+asyncpg://app@db.internal/rejoinder"),
        ("postgres://app:pw@127.0.0.1:5433/rj", "postgresql+asyncpg://app:pw@127.0.0.1:5433/rj"),
        ("postgresql+psycopg://app@h/rj", "postgresql+asyncpg://app@h/rj"),
        ("postgresql+psycopg2://app@h/rj", "postgresql+asyncpg://app@h/rj"),
        ("postgresql+asyncpg://app@h/rj", "postgresql+asyncpg://app@h/rj"),
        ("  postgresql://app@h/rj\n", "postgresql+asyncpg://app@h/rj"),
        ("postgresql://app@h/rj?sslmode=require", "postgresql+asyncpg://app@h/rj?ssl=require"),
    ],
)
def test_accepted_urls_are_normalised_to_the_async_drivers(given: str, expected: str) -> None:
    assert normalize_url(given).render_as_string(hide_password=False) == expected


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("mysql://root@localhost/shop", "unsupported database 'mysql'"),
        ("postgresql+pg8000://app@h/rj", "unsupported database 'postgresql+pg8000'"),
        ("rejoinder.db", "not a database URL"),
        ("", "not a database URL"),
    ],
)
def test_other_urls_are_refused_naming_the_accepted_forms(given: str, reason: str) -> None:
    with pytest.raises(InvalidDatabaseURL) as refused:
        normalize_url(given)
    message = str(refused.value)
    assert reason in message
    assert "sqlite:///" in message and "postgresql://" in message and "+psycopg" in message


@pytest.mark.parametrize("given", ["sqlite://", "sqlite:///:memory:"])
def test_in_memory_sqlite_is_refused_with_the_reason(given: str) -> None:
    with pytest.raises(InvalidDatabaseURL, match="in-memory"):
        normalize_url(given)


def test_a_refused_url_never_echoes_its_password() -> None:
    with pytest.raises(InvalidDatabaseURL) as refused:
        normalize_url("mysql://root:hunter2@localhost/shop")
    assert "hunter2" not in str(refused.value)


def test_check_url_wants_the_directory_of_a_sqlite_file_to_exist(tmp_path: Path) -> None:
    assert check_url(f"sqlite:///{tmp_path / 'rejoinder.db'}").database == str(tmp_path / "rejoinder.db")
    assert check_url("sqlite:///rejoinder.db").database == "rejoinder.db"  # the working directory
    assert check_url("postgresql://app@db.internal/rejoinder").database == "rejoinder"
    with pytest.raises(InvalidDatabaseURL, match=f"the directory {tmp_path / 'nope'} does not exist"):
        check_url(f"sqlite:///{tmp_path / 'nope' / 'rejoinder.db'}")
    with pytest.raises(InvalidDatabaseURL, match="unsupported database"):
        check_url("mysql://root@localhost/shop")


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("sqlite:///./x.db", "sqlite:///./x.db"),
        ("postgres://app:hunter2@h/rj\n", "postgres://app:***@h/rj"),
        ("postgresql+psycopg://app@h/rj", "postgresql+psycopg://app@h/rj"),
        ("not a url", "not a url"),
    ],
)
def test_shown_url_is_the_url_as_given_without_its_password(given: str, shown: str) -> None:
    assert shown_url(given) == shown
