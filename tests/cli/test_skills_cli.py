"""``rejoinder skills check`` and ``rejoinder skills graph``."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from rejoinder.cli import app
from tests.helpers.processes import COMMAND_TIMEOUT

FIXTURES = Path(__file__).parents[1] / "fixtures" / "skills"
VALID_BOT = FIXTURES / "valid_bot"
BROKEN = FIXTURES / "broken"

runner = CliRunner()


def test_check_a_valid_bot_exits_0() -> None:
    result = runner.invoke(app, ["skills", "check", str(VALID_BOT)])
    assert result.exit_code == 0, result.output
    assert result.stdout == "0 errors, 0 warnings in 2 skills\n"


def test_check_prints_every_problem_and_exits_1_on_errors() -> None:
    missing = BROKEN / "missing_target.yaml"
    loop = BROKEN / "endless_loop.yaml"
    result = runner.invoke(app, ["skills", "check", str(VALID_BOT), str(missing), str(loop)])

    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{missing}:13: error: skill 'login_resume', node 'after_login': "
        "branches[0].next: no node 'welcom_back' in this skill (did you mean 'welcome_back'?)",
        f"{missing}:15: warning: skill 'login_resume', node 'welcome_back': "
        "unreachable: no path leads here from start 'wait_login'",
        f"{loop}:4: error: skill 'nagging', node 'remind': "
        "can loop forever without waiting for the customer: remind → again → remind (no question on the way)",
        "2 errors, 1 warning in 4 skills",
    ]


def test_warnings_alone_exit_0() -> None:
    result = runner.invoke(app, ["skills", "check", str(BROKEN / "unreachable.yaml")])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[-1] == "0 errors, 1 warning in 1 skill"
    assert "unreachable.yaml:8: warning: skill 'greeting', node 'goodbye'" in result.stdout


def test_check_a_path_that_does_not_exist(tmp_path: Path) -> None:
    result = runner.invoke(app, ["skills", "check", str(tmp_path / "nope")])
    assert result.exit_code == 1
    assert result.stdout.splitlines() == [
        f"{tmp_path / 'nope'}: error: no such file or directory",
        "1 error, 0 warnings in 0 skills",
    ]


def test_check_needs_a_path() -> None:
    result = runner.invoke(app, ["skills", "check"])
    assert result.exit_code == 2


def test_graph_prints_mermaid_by_default_and_dot_on_request() -> None:
    skill = str(VALID_BOT / "skills" / "login_resume.yaml")
    mermaid = runner.invoke(app, ["skills", "graph", skill])
    assert mermaid.exit_code == 0, mermaid.output
    assert mermaid.stdout.startswith("flowchart TD\n")
    assert '    n2 -.->|"on_error"| n6' in mermaid.stdout

    dot = runner.invoke(app, ["skills", "graph", skill, "--format", "dot"])
    assert dot.exit_code == 0
    assert dot.stdout.startswith('digraph "login_resume" {')


def test_graph_of_a_broken_skill_explains_why(tmp_path: Path) -> None:
    path = BROKEN / "unknown_node_type.yaml"
    result = runner.invoke(app, ["skills", "graph", str(path)])
    assert result.exit_code == 1
    assert f"{path}:5: error: skill 'greeting', node 'greet': unknown node type 'mesage'" in result.stderr
    assert result.stdout == ""


def test_svg_without_graphviz_exits_1_with_the_reason(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    result = runner.invoke(
        app, ["skills", "graph", str(VALID_BOT / "skills" / "welcome.yml"), "--format", "svg"]
    )
    assert result.exit_code == 1
    assert (
        result.stderr == "rejoinder skills: install Graphviz (`dot`) for svg, or use --format mermaid|dot\n"
    )


def test_svg_to_a_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    fake = tmp_path / "dot"
    fake.write_text('#!/bin/sh\nprintf "<svg>"; cat >/dev/null; printf "</svg>"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}")
    output = tmp_path / "welcome.svg"

    args = [
        "skills",
        "graph",
        str(VALID_BOT / "skills" / "welcome.yml"),
        "--format",
        "svg",
        "--output",
        str(output),
    ]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert output.read_text() == "<svg></svg>"


def test_the_installed_command_keeps_long_lines_whole_when_piped(tmp_path: Path) -> None:
    # A deep path makes the line far longer than the 40 columns asked for: it must not wrap.
    deep = tmp_path / ("a_rather_long_directory_name_" * 3) / "skills"
    deep.mkdir(parents=True)
    skill = shutil.copy(BROKEN / "unknown_field.yaml", deep / "login.yaml")
    command = Path(sys.executable).parent / "rejoinder"

    result = subprocess.run(
        [str(command), "skills", "check", str(skill)],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "40", "TERM": "xterm-256color"},
        timeout=COMMAND_TIMEOUT,
        check=False,
    )
    assert result.returncode == 1, result.stderr
    assert result.stdout.splitlines() == [
        f"{skill}:8: error: skill 'login_resume', node 'send_token': unknown field 'tiemout' (did you mean 'timeout'?)",
        "1 error, 0 warnings in 1 skill",
    ]
    assert "\x1b[" not in result.stdout
