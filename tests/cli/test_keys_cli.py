"""``rejoinder keys create``: a database path with a typo is refused before anything is created."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from rejoinder.config import get_settings
from tests.shop_backend import SHOP_DIR


def test_keys_for_a_database_in_a_missing_directory_are_refused_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    missing = tmp_path / "no" / "such"
    monkeypatch.setenv("REJOINDER_DATABASE_URL", f"sqlite:///{missing / 'keys.db'}")
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, ["keys", "create", str(SHOP_DIR)])
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 1
    assert f"the directory {missing} does not exist" in result.stderr
    assert not (tmp_path / "no").exists()
