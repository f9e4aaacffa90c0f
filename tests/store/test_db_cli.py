"""``rejoinder db upgrade`` against the configured database."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from rejoinder.config import get_settings
from rejoinder.store.migrate import head_revision

Runner = Callable[[str], tuple[int, str, str]]


@pytest.fixture
def run(monkeypatch: pytest.MonkeyPatch) -> Iterator[Runner]:
    """Run ``rejoinder db upgrade`` with REJOINDER_DATABASE_URL set: (exit code, stdout, stderr)."""

    def invoke(database_url: str) -> tuple[int, str, str]:
        monkeypatch.setenv("REJOINDER_DATABASE_URL", database_url)
        get_settings.cache_clear()
        result = CliRunner().invoke(app, ["db", "upgrade"])
        return result.exit_code, result.stdout, result.stderr

    yield invoke
    get_settings.cache_clear()


def test_upgrade_creates_the_schema_then_has_nothing_to_do(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    url = f"sqlite:///{tmp_path / 'data' / 'rejoinder.db'}"

    first = run(url)
    second = run(url)

    head = head_revision()
    assert first[0] == 0 and f"created the schema ({head})" in first[1] and f"applied {head}" in first[1]
    assert second[0] == 0 and "nothing to do" in second[1]
    assert (tmp_path / "data" / "rejoinder.db").exists()
    # The URL as given, not the driver the store runs it on.
    assert first[1].startswith(f"{url}: ") and "pysqlite" not in first[1] + second[1]


def test_a_missing_directory_is_an_error_naming_it_and_nothing_is_created(
    run: Runner, tmp_path: Path
) -> None:
    url = f"sqlite:///{tmp_path / 'dta' / 'deeper' / 'rejoinder.db'}"
    exit_code, out, err = run(url)
    assert exit_code == 1 and out == ""
    assert err.strip() == (
        f"rejoinder db upgrade: REJOINDER_DATABASE_URL={url}: the directory {tmp_path / 'dta' / 'deeper'} "
        "does not exist; create it first, or correct the path"
    )
    assert not (tmp_path / "dta").exists()


def test_a_file_where_the_directory_should_be_is_an_error(run: Runner, tmp_path: Path) -> None:
    (tmp_path / "data").write_text("")
    exit_code, _, err = run(f"sqlite:///{tmp_path / 'data' / 'rejoinder.db'}")
    assert exit_code == 1 and f"the directory {tmp_path / 'data'} is not a directory" in err


def test_upgrade_on_postgresql(run: Runner, postgres_url: str) -> None:
    given = postgres_url.replace("postgresql://", "postgres://")
    exit_code, out, _ = run(given)
    assert exit_code == 0 and "created the schema" in out
    assert out.startswith("postgres://") and "asyncpg" not in out


def test_a_bad_url_is_refused_naming_the_accepted_forms(run: Runner) -> None:
    exit_code, _, err = run("mysql://root@localhost/shop")
    assert exit_code == 1
    assert "REJOINDER_DATABASE_URL" in err and "sqlite:///" in err and "postgresql://" in err


def test_an_unreachable_database_is_a_one_line_error_without_the_password(run: Runner) -> None:
    exit_code, _, err = run("postgresql://admin:hunter2@127.0.0.1:1/shop")
    assert exit_code == 1
    assert "database unavailable" in err and "127.0.0.1:1" in err and "hunter2" not in err
    assert len(err.strip().splitlines()) == 1
