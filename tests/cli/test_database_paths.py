"""Commands that open REJOINDER_DATABASE_URL refuse a SQLite path whose directory is missing, before creating anything.

(``db upgrade`` and ``chat`` are covered with the rest of their behaviour, in tests/store/test_db_cli.py and
tests/cli/test_chat_story.py.)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from rejoinder.config import get_settings
from tests.helpers.shop_backend import SHOP_DIR

# Without the check, `serve` would go on to serve (on any free port, below): the timeout then fails the test.
pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def missing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory that does not exist, with REJOINDER_DATABASE_URL pointing at a file inside it."""
    directory = tmp_path / "no" / "such"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", f"sqlite:///{directory / 'rejoinder.db'}")
    get_settings.cache_clear()
    yield directory
    get_settings.cache_clear()
    assert not (tmp_path / "no").exists()


@pytest.mark.parametrize("command", [["keys", "create"], ["serve", "--port", "0"]], ids=" ".join)
def test_a_database_in_a_missing_directory_is_refused_naming_it(missing: Path, command: list[str]) -> None:
    result = CliRunner().invoke(app, [*command, str(SHOP_DIR)])
    assert result.exit_code == 1
    assert f"REJOINDER_DATABASE_URL: the directory {missing} does not exist" in result.stderr
