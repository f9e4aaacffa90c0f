"""``rejoinder --help`` and each command's help: quick to start, flags shown as flags."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from tests.helpers.processes import COMMAND_TIMEOUT

# What the commands themselves use, and --help must not load: each costs tenths of a second or more to import.
# (pydantic is not among them: typer itself reads a command's parameters with it.)
HEAVY = [
    "alembic",
    "asyncio",
    "fastapi",
    "httpx",
    "jinja2",
    "pydantic_settings",
    "rich",
    "sqlalchemy",
    "starlette",
    "uvicorn",
    "yaml",
]
COMMANDS = [
    [],
    ["chat"],
    ["serve"],
    ["demo"],
    ["test"],
    ["init"],
    ["skills"],
    ["skills", "check"],
    ["skills", "graph"],
    ["db"],
    ["db", "upgrade"],
    ["keys"],
    ["keys", "create"],
    ["users"],
    ["users", "create"],
    ["users", "list"],
]
PROBE = """
import json, sys
command, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.argv = ["rejoinder", *command, "--help"]
from rejoinder.cli import main
try:
    main()
except SystemExit as exit:
    assert exit.code in (0, None), exit.code
print(json.dumps(sorted(name for name in heavy if name in sys.modules)))
"""


def help_of(command: list[str]) -> tuple[str, list[str]]:
    """The help text of ``rejoinder COMMAND --help`` and the heavy modules it imported."""
    result = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(command), json.dumps(HEAVY)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert result.returncode == 0, result.stderr
    text, _, imported = result.stdout.rstrip("\n").rpartition("\n")
    return text, json.loads(imported)


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "rejoinder")
def test_help_imports_nothing_heavy(command: list[str]) -> None:
    text, imported = help_of(command)
    assert text.startswith("Usage: rejoinder")
    assert imported == []


@pytest.mark.parametrize(
    "command", [[], ["keys", "create"], ["test"]], ids=lambda c: " ".join(c) or "rejoinder"
)
def test_flags_are_shown_without_a_value(command: list[str]) -> None:
    text, _ = help_of(command)
    assert "<bool>" not in text
    [help_line] = [line.split() for line in text.splitlines() if line.split()[:1] == ["--help"]]
    assert help_line == ["--help", "Show", "this", "message", "and", "exit."]
