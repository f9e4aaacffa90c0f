"""The seed's story through the real `rejoinder chat` process: start, leave, log in, resume by token."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

from tests.helpers.processes import COMMAND_TIMEOUT
from tests.helpers.shop_backend import SHOP_DIR, running_backend

REJOINDER = Path(sys.executable).parent / "rejoinder"


def chat(args: list[str], stdin: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(REJOINDER), "chat", str(SHOP_DIR), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=COMMAND_TIMEOUT,
    )


def test_login_and_resume_through_the_terminal(tmp_path: Path) -> None:
    with running_backend() as (base_url, shop):
        env = {
            **os.environ,
            "REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
            "SHOP_BACKEND": base_url,
            "COLUMNS": "200",
        }
        first = chat([], "hello\nMy orders\n", env)
        assert first.returncode == 0, first.stderr
        assert "What can I do for you?" in first.stdout
        assert "[1] My orders" in first.stdout
        assert "you › My orders" in first.stdout  # a piped transcript shows the customer's lines
        assert "To see your orders you need to log in first." in first.stdout
        assert "Please log in here: http://127.0.0.1:" in first.stdout

        # The bot sent the token to the shop's backend with its Integrate node; the customer logs in there.
        [(conversation_id, token)] = shop.tokens.items()
        assert token.startswith("rjt_") and token not in first.stdout
        with urllib.request.urlopen(f"{base_url}/login?conversation={conversation_id}&name=Ann") as page:
            assert token in page.read().decode()

        resumed = chat(["--resume", token], "RESUME\n", env)
        assert resumed.returncode == 0, resumed.stderr
        assert f"resumed conversation {conversation_id}" in resumed.stdout
        # the whole earlier history comes back first, then the bot goes on from the question it waited at
        assert resumed.stdout.index("What can I do for you?") < resumed.stdout.index("Welcome back, Ann!")
        assert "Your orders: A-1001 (shipped), A-1002 (being packed)." in resumed.stdout


def test_choices_by_number_and_an_unknown_token(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "SHOP_BACKEND": f"http://127.0.0.1:{_closed_port()}",
        "COLUMNS": "200",
    }
    hours = chat(["--event", "welcome"], "2\n", env)
    assert hours.returncode == 0, hours.stderr
    assert "We're open every day from 9:00 to 18:00." in hours.stdout

    refused = chat(["--resume", "rjt_" + "x" * 43], "", env)
    assert refused.returncode == 1
    assert "No conversation belongs to this token" in refused.stderr


def test_a_broken_bot_says_where(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    (bot / "skills").mkdir(parents=True)
    (bot / "rejoinder.yaml").write_text("id: broken\n")
    (bot / "skills" / "a.yaml").write_text("id: a\nstart: x\nnodes:\n  x:\n    type: mesage\n    text: hi\n")
    result = subprocess.run(
        [str(REJOINDER), "chat", str(bot)],
        input="",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env={**os.environ, "REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'c.db'}"},
    )
    assert result.returncode == 1
    assert "a.yaml:5" in result.stderr and "mesage" in result.stderr


def test_a_database_in_a_missing_directory_is_refused_naming_it(tmp_path: Path) -> None:
    missing = tmp_path / "no" / "such"
    env = {**os.environ, "REJOINDER_DATABASE_URL": f"sqlite:///{missing / 'chat.db'}", "COLUMNS": "300"}
    result = chat(["--event", "welcome"], "", env)
    assert result.returncode == 1
    assert f"the directory {missing} does not exist" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "no").exists()


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_failure_the_skill_handles_is_a_note_and_one_it_does_not_is_an_error(tmp_path: Path) -> None:
    bot = tmp_path / "bot"
    (bot / "skills").mkdir(parents=True)
    (bot / "rejoinder.yaml").write_text(
        "id: calls\nenv: [BACKEND]\nintegrate: {allow_hosts: ['127.0.0.1'], timeout: 5}\n"
    )
    (bot / "skills" / "call.yaml").write_text(
        "id: call\ntriggers: {events: [handled, unhandled], default: true}\nstart: handled\nnodes:\n"
        "  handled: {type: integrate, url: '{{ env.BACKEND }}/a', save_status: code, on_error: down, next: bye}\n"
        "  down: {type: message, text: 'No answer ({{ code }}).', next: unhandled}\n"
        "  unhandled: {type: integrate, url: '{{ env.BACKEND }}/b', next: bye}\n"
        "  bye: {type: end}\n"
    )
    env = {
        **os.environ,
        "REJOINDER_DATABASE_URL": f"sqlite:///{tmp_path / 'chat.db'}",
        "BACKEND": f"http://127.0.0.1:{_closed_port()}",
        "COLUMNS": "300",
    }
    result = subprocess.run(
        [str(REJOINDER), "chat", str(bot), "--event", "handled"],
        input="",
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
        env=env,
    )
    assert result.returncode == 0, result.stderr
    assert "bot › No answer ()." in result.stdout  # no status: shown as nothing, never "None"
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2, result.stderr  # one line per failure: no log lines repeating them
    assert lines[0].startswith("· handled by on_error: node 'handled': outside call failed: ")
    assert lines[1].startswith("! skill error: node 'unhandled': outside call failed: ")
    assert "None" not in result.stdout + result.stderr
