"""``rejoinder serve`` and ``rejoinder chat`` refuse to start while a variable under the bot's ``env:`` is unset."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.bots import ROOT

REJOINDER = str(Path(sys.executable).with_name("rejoinder"))

pytestmark = pytest.mark.timeout(120)


def run(command: list[str], tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environment = {key: value for key, value in os.environ.items() if key != "SHOP_BACKEND"}
    environment |= {"REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'env.db'}", "COLUMNS": "300", **env}
    return subprocess.run(
        [REJOINDER, *command],
        cwd=ROOT,
        env=environment,
        input="hello\n",
        capture_output=True,
        text=True,
        timeout=90,
    )


@pytest.mark.parametrize("command", ["chat", "serve"])
def test_an_unset_variable_stops_the_start_naming_it(command: str, tmp_path: Path) -> None:
    result = run([command, "examples/shop"], tmp_path)
    assert result.returncode == 2
    assert result.stderr == (
        f"rejoinder {command} examples/shop: SHOP_BACKEND is not set "
        "(listed under env: in examples/shop/rejoinder.yaml)\n"
    )
    assert result.stdout == ""
    assert not (tmp_path / "env.db").exists()  # refused before touching the database


def test_an_empty_variable_is_refused_too(tmp_path: Path) -> None:
    result = run(["chat", "examples/shop"], tmp_path, SHOP_BACKEND="")
    assert result.returncode == 2
    assert "SHOP_BACKEND is empty (listed under env: in examples/shop/rejoinder.yaml)" in result.stderr


def test_with_the_variable_set_the_chat_runs(tmp_path: Path) -> None:
    result = run(["chat", "examples/shop"], tmp_path, SHOP_BACKEND="http://127.0.0.1:9")
    assert result.returncode == 0, result.stderr
    assert "I'm the Demo Shop assistant" in result.stdout
