"""``rejoinder init``: a new bot that checks clean and passes its own conversation tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app

REJOINDER = str(Path(sys.executable).with_name("rejoinder"))

pytestmark = pytest.mark.timeout(120)
runner = CliRunner()


def test_init_makes_a_bot_that_checks_clean_and_passes_its_tests(tmp_path: Path) -> None:
    bot = tmp_path / "Support Desk"
    made = runner.invoke(app, ["init", str(bot)])
    assert made.exit_code == 0, made.output
    for command in ("rejoinder test", "rejoinder chat", "rejoinder serve", "rejoinder keys create"):
        assert command in made.stdout
    assert (bot / "rejoinder.yaml").read_text().count("id: support-desk\n") == 1

    checked = runner.invoke(app, ["skills", "check", str(bot)])
    assert checked.exit_code == 0, checked.output
    assert checked.stdout.splitlines()[-1] == "0 errors, 0 warnings in 2 skills"

    # The installed command, as a user runs it after `init`.
    tested = subprocess.run([REJOINDER, "test", str(bot)], capture_output=True, text=True, timeout=90)
    assert tested.returncode == 0, tested.stdout + tested.stderr
    assert tested.stdout.splitlines()[-1] == "4 passed, 0 failed"


def test_the_scaffold_shows_the_node_types_a_designer_starts_with(tmp_path: Path) -> None:
    assert runner.invoke(app, ["init", str(tmp_path / "bot")]).exit_code == 0
    skills = "".join(path.read_text() for path in sorted((tmp_path / "bot" / "skills").glob("*.yaml")))
    for shown in ("type: question", "type: condition", "type: assign", "type: jump", "generate_token("):
        assert shown in skills


def test_init_refuses_a_directory_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    refused = runner.invoke(app, ["init", str(tmp_path)])
    assert refused.exit_code == 1
    assert refused.stderr == (
        f"rejoinder init: {tmp_path} is not empty; choose a new directory, "
        "or pass --force to write the bot's files into it\n"
    )
    assert sorted(path.name for path in tmp_path.iterdir()) == ["notes.txt"]


def test_init_with_force_writes_beside_what_is_there(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    made = runner.invoke(app, ["init", str(tmp_path), "--force"])
    assert made.exit_code == 0, made.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert (tmp_path / "skills" / "welcome.yaml").is_file()


def test_init_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "bot"
    target.write_text("")
    refused = runner.invoke(app, ["init", str(target)])
    assert refused.exit_code == 1
    assert "is a file, not a directory" in refused.stderr
