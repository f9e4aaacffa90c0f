"""A bot with an unknown filter, test or function gets errors at file and line from every command, no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app

runner = CliRunner()

SKILL = """\
id: bad
triggers: {default: true}
start: s
nodes:
  s:
    type: assign
    set:
      t: make_token(ttl="30m")
    next: m
  m:
    type: message
    text: "{{ x | shout }}"
    next: c
  c:
    type: condition
    branches:
      - if: y is truthy
        next: e
    else: e
  e:
    type: end
"""


@pytest.fixture
def bad_bot(tmp_path: Path) -> Path:
    (tmp_path / "skills").mkdir()
    (tmp_path / "rejoinder.yaml").write_text("id: bad\nname: Bad\n")
    (tmp_path / "skills" / "bad.yaml").write_text(SKILL)
    return tmp_path


def test_skills_check_reports_each_at_its_line(bad_bot: Path) -> None:
    result = runner.invoke(app, ["skills", "check", str(bad_bot)])
    assert result.exit_code == 1
    assert result.exception is None or isinstance(result.exception, SystemExit)
    skill = bad_bot / "skills" / "bad.yaml"
    lines = result.stdout.splitlines()
    assert lines[0].startswith(f"{skill}:8: error:") and "no function named 'make_token'" in lines[0]
    assert lines[1].startswith(f"{skill}:12: error:") and "No filter named 'shout'" in lines[1]
    assert lines[2].startswith(f"{skill}:17: error:") and "No test named 'truthy'" in lines[2]
    assert "Traceback" not in result.output


def test_chat_refuses_the_bot_with_the_same_errors(bad_bot: Path) -> None:
    result = runner.invoke(app, ["chat", str(bad_bot)], input="hi\n")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    assert "bad.yaml:12" in result.output and "No filter named 'shout'" in result.output
